//! `cargo xtask <command>`: set-up, eBPF build, tests, demo and benchmarks.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

mod bench;
mod cluster_bench;
mod ops_bench;
mod demo;
mod latency;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Build the XDP object with nightly for bpfel-unknown-none.
    BuildEbpf,
    /// Set up, build everything, run every test (root needed for the XDP tests).
    Test {
        /// Extra arguments for `cargo test` (after --).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run edns on a veth harness, querying it in each mode.
    Demo,
    /// Run the fuzz targets (cargo fuzz, nightly; root for the XDP one), each for a bounded time.
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Set up, build (release), and run the benchmarks (`bench cluster`: the cluster's replication).
    Bench {
        /// `cluster`: only the cluster replication benchmark; `reload`: only the live-reload timing.
        #[arg(value_enum)]
        what: Option<BenchWhat>,
        /// Records for `bench cluster`.
        #[arg(long, default_value_t = 10_000)]
        records: u32,
        /// New records per second for `bench cluster`.
        #[arg(long, default_value_t = 5_000)]
        rate: u32,
        /// Passes over the query file per dnsperf run (each run also stops after --seconds).
        #[arg(long, default_value_t = 500_000)]
        passes: u64,
        /// Seconds per flood run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Only the rate-limiting run (the README's figures come from a full run).
        #[arg(long)]
        rrl_only: bool,
        /// Only the per-query cost table (BPF_PROG_TEST_RUN).
        #[arg(long)]
        testrun_only: bool,
        /// Only the cost of each step of a stripe answer (a build with checkpoints).
        #[arg(long)]
        stages: bool,
        /// Only the latency percentiles (edns XDP, edns userspace, knotd XDP).
        #[arg(long)]
        latency_only: bool,
        /// Only the queue scaling run (kxdpgun, veth with one and two queues).
        #[arg(long)]
        queues_only: bool,
        /// Only the loopback dnsperf run (edns userspace against knotd) and the responder's cost.
        #[arg(long)]
        loopback_only: bool,
        /// Interleaved rounds of the latency table.
        #[arg(long, default_value_t = 5)]
        latency_rounds: usize,
    },
    /// The responder's cost per query in-process (run by `bench` from a release build).
    #[command(hide = true)]
    ResponderCost,
    /// One open-loop latency run (used by `bench` inside the client namespace).
    #[command(hide = true)]
    LatencyProbe {
        #[arg(long)]
        server: std::net::SocketAddr,
        #[arg(long)]
        qps: u64,
        #[arg(long)]
        seconds: u64,
        /// Query names, comma-separated, sent in turn.
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchWhat {
    Cluster,
    Reload,
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The middle value (the upper one of an even count) of benchmark figures.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU seconds (user + system) process `pid` has used.
pub fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// Runs a command, failing with its name when it does not succeed.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let st = cmd.status().with_context(|| format!("cannot start {shown}"))?;
    if !st.success() {
        bail!("{shown} failed: {st}");
    }
    Ok(())
}

fn have(bin: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {bin} >/dev/null 2>&1")).status().map(|s| s.success()).unwrap_or(false)
}

/// Debian packages the tests, demo and benchmarks use, with a binary each provides.
const PACKAGES: &[(&str, &str)] = &[
    ("knot-dnsutils", "kdig"),
    ("knot-dnsutils", "kxdpgun"),
    ("knot", "knotd"),
    ("dnsperf", "dnsperf"),
    ("bpftool", "bpftool"),
    ("iproute2", "ip"),
    ("ethtool", "ethtool"),
    ("unbound", "unbound"),
    ("tcpdump", "tcpdump"),
    // Virtual servers and exporters of the health and metrics tests.
    ("haproxy", "haproxy"),
    ("prometheus-node-exporter", "prometheus-node-exporter"),
    // Path metrics from each site (RTT, loss, hops).
    ("prometheus-blackbox-exporter", "prometheus-blackbox-exporter"),
    // promtool checks the /metrics exposition.
    ("prometheus", "promtool"),
    // A real browser for the status page.
    ("chromium", "chromium"),
    ("openssl", "openssl"),
    // BIND 9 as an LDNS that sends DNS cookies.
    ("bind9", "named"),
    // A delegation checker.
    ("zonemaster-cli", "zonemaster-cli"),
    // systemd-analyze verifies the unit in dist/; setpriv runs edns with only its capabilities.
    ("systemd", "systemd-analyze"),
    ("util-linux", "setpriv"),
];

fn setup() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().filter(|(_, b)| !have(b)).map(|(p, _)| *p).collect();
    if !missing.is_empty() {
        let mut pkgs = missing.clone();
        pkgs.dedup();
        eprintln!("setup: installing Debian packages {pkgs:?}");
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        // Packaged daemons must not hold port 53 or run beside the tests.
        for svc in ["knot", "unbound", "haproxy", "prometheus", "prometheus-node-exporter", "prometheus-blackbox-exporter", "named", "bind9"] {
            let _ = Command::new("sh").arg("-c").arg(format!("service {svc} stop >/dev/null 2>&1")).status();
        }
    }
    let toolchains = String::from_utf8(Command::new("rustup").args(["toolchain", "list"]).output()?.stdout)?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("setup: installing the nightly toolchain");
        run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let comps = String::from_utf8(
        Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]).output()?.stdout,
    )?;
    if !comps.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to nightly");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    if !Command::new("bpf-linker").arg("--version").output().map(|o| o.status.success()).unwrap_or(false) {
        install_bpf_linker()?;
    }
    if !Command::new("cargo").args(["fuzz", "--version"]).output().map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("setup: installing cargo-fuzz");
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// Fuzz targets in `fuzz/`, run in turn for `seconds` each; a crash fails.
const FUZZ_TARGETS: [&str; 2] = ["responder", "xdp_frames"];

fn fuzz(seconds: u64) -> anyhow::Result<()> {
    for target in FUZZ_TARGETS {
        eprintln!("fuzz: {target} for {seconds} s");
        run(cargo()
            .args(["+nightly", "fuzz", "run", "-O", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .current_dir(root().join("fuzz")))
        .with_context(|| format!("fuzz target {target} failed (its crash input is under fuzz/artifacts/{target}/)"))?;
    }
    Ok(())
}

/// bpf-linker 0.13 against the nightly's own LLVM (Debian has no LLVM 22):
/// a prefix whose lib/ links rustc's libLLVM.
fn install_bpf_linker() -> anyhow::Result<()> {
    eprintln!("setup: building bpf-linker against nightly's LLVM (a few minutes, once)");
    let sysroot = String::from_utf8(Command::new("rustc").args(["+nightly", "--print", "sysroot"]).output()?.stdout)?;
    let libdir = Path::new(sysroot.trim()).join("lib");
    let lib = std::fs::read_dir(&libdir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        .with_context(|| format!("no libLLVM.so.*-rust-* in {}", libdir.display()))?;
    let home = std::env::var("HOME").context("HOME is not set")?;
    let prefix = Path::new(&home).join(".cache/edns/llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    for name in ["libLLVM.so", lib.as_str()] {
        let link = prefix.join("lib").join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(libdir.join(&lib), &link)?;
    }
    run(Command::new("cargo")
        .args(["+nightly", "install", "bpf-linker", "--version", "^0.13", "--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", &prefix))
}

/// A cargo command with the variables of the outer `cargo run` removed, so
/// `+nightly` and the eBPF crate's own config take effect.
pub fn cargo() -> Command {
    let mut c = Command::new("cargo");
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO") && k != "CARGO_HOME" || k == "RUSTUP_TOOLCHAIN" || k.starts_with("RUSTC") || k == "RUSTFLAGS" {
            c.env_remove(&k);
        }
    }
    c
}

pub fn build_ebpf() -> anyhow::Result<()> {
    run(cargo().args(["+nightly", "build", "--release"]).current_dir(root().join("edns-ebpf")))
}

/// The object with stage checkpoints, for `bench --stages` only.
pub fn build_ebpf_stages() -> anyhow::Result<PathBuf> {
    let dir = root().join("edns-ebpf/target/stages");
    run(cargo().args(["+nightly", "build", "--release", "--features", "stages", "--target-dir"]).arg(&dir).current_dir(root().join("edns-ebpf")))?;
    Ok(dir.join("bpfel-unknown-none/release/edns-ebpf"))
}

/// Runs `cargo test`, echoing its output, and closes with one line that
/// totals every test binary: cargo's own last line is that of the last
/// binary, which may hold no tests at all.
fn test_with_summary(cmd: &mut Command) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().context("cannot start cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let num = |label: &str| -> u64 {
                rest.split(';').find_map(|p| p.trim().strip_suffix(label)).and_then(|n| n.trim().trim_start_matches("ok.").trim_start_matches("FAILED.").trim().parse().ok()).unwrap_or(0)
            };
            passed += num(" passed");
            failed += num(" failed");
        }
    }
    let st = child.wait()?;
    println!("\ntests: {passed} passed, {failed} failed");
    if !st.success() {
        bail!("cargo test failed: {st}");
    }
    if passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup(),
        Cmd::BuildEbpf => build_ebpf(),
        Cmd::Test { args } => {
            setup()?;
            build_ebpf()?;
            run(cargo().args(["build", "--workspace", "--bins"]).current_dir(root()))?;
            // A short bounded fuzz run of each target first (CI has 90 minutes),
            // so the test summary stays the closing line.
            let secs: u64 = std::env::var("EDNS_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
            fuzz(secs)?;
            test_with_summary(cargo().args(["test", "--workspace"]).args(&args).current_dir(root()))
        }
        Cmd::Fuzz { seconds } => {
            setup()?;
            build_ebpf()?;
            fuzz(seconds)
        }
        Cmd::Demo => {
            setup()?;
            build_ebpf()?;
            run(cargo().args(["build", "--release", "-p", "edns-user"]).current_dir(root()))?;
            demo::run()
        }
        Cmd::ResponderCost => bench::responder_cost(),
        Cmd::LatencyProbe { server, qps, seconds, names } => latency::probe_main(server, qps, seconds, &names),
        Cmd::Bench { what, records, rate, passes, seconds, rrl_only, testrun_only, stages, latency_only, queues_only, loopback_only, latency_rounds } => {
            setup()?;
            build_ebpf()?;
            run(cargo().args(["build", "--release", "-p", "edns-user"]).current_dir(root()))?;
            if rrl_only {
                return bench::rrl_only(seconds);
            }
            if testrun_only {
                return bench::testrun_table();
            }
            if stages {
                return bench::stages_table(&build_ebpf_stages()?);
            }
            if queues_only {
                return bench::queues_only(seconds);
            }
            if loopback_only {
                return bench::loopback_table(passes, seconds);
            }
            if latency_only {
                return latency::table(latency_rounds, seconds);
            }
            if what == Some(BenchWhat::Cluster) {
                return cluster_bench::run(records, rate);
            }
            if what == Some(BenchWhat::Reload) {
                return ops_bench::run(10_000);
            }
            bench::run(passes, seconds, latency_rounds, &build_ebpf_stages()?)
        }
    }
}
