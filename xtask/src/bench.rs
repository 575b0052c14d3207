//! `cargo xtask bench`: dnsperf against edns (userspace path) and against
//! knotd serving an equivalent static zone, side by side in one run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use edns_tests::{edns_bin, example_config, free_port, tmpdir, EdnsProc};

/// A knotd serving gslb.example. with the A records edns would answer.
struct Knotd {
    child: Child,
}

impl Drop for Knotd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_knotd(dir: &Path, addr: SocketAddr) -> anyhow::Result<Knotd> {
    let zone = "$ORIGIN gslb.example.\n$TTL 30\n@ SOA ns1 hostmaster 1 3600 600 604800 30\n@ NS ns1\nwww A 198.51.100.20\nshop A 192.0.2.10\ngeo A 192.0.2.10\n";
    std::fs::write(dir.join("gslb.example.zone"), zone)?;
    let conf = format!(
        "server:\n  rundir: \"{d}\"\n  listen: {ip}@{port}\n  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\ndatabase:\n  storage: \"{d}\"\nlog:\n  - target: stderr\n    any: warning\nzone:\n  - domain: gslb.example.\n    file: \"{d}/gslb.example.zone\"\n",
        d = dir.display(),
        ip = addr.ip(),
        port = addr.port()
    );
    std::fs::write(dir.join("knot.conf"), conf)?;
    let child = Command::new("knotd")
        .arg("-c")
        .arg(dir.join("knot.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("knotd.log"))?)
        .spawn()
        .context("cannot start knotd")?;
    let k = Knotd { child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if edns_tests::kdig(None, addr, None, &["www.gslb.example.", "A"]).map(|d| d.status == "NOERROR").unwrap_or(false) {
            return Ok(k);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("knotd did not answer: {}", std::fs::read_to_string(dir.join("knotd.log")).unwrap_or_default())
}

pub struct Perf {
    pub qps: f64,
    pub completed_pct: f64,
}

/// dnsperf bounded by `queries` and `seconds`, whichever comes first.
pub fn dnsperf(server: SocketAddr, queries_file: &Path, queries: u64, seconds: u64, clients: u32) -> anyhow::Result<Perf> {
    let out = Command::new("dnsperf")
        .args(["-s", &server.ip().to_string(), "-p", &server.port().to_string()])
        .arg("-d")
        .arg(queries_file)
        .args(["-n", &queries.to_string(), "-l", &seconds.to_string(), "-c", &clients.to_string(), "-q", "200", "-t", "2"])
        .output()
        .context("cannot run dnsperf")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |label: &str| -> anyhow::Result<String> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|s| s.trim().to_string())
            .with_context(|| format!("no {label:?} in dnsperf output:\n{text}"))
    };
    let qps: f64 = field("Queries per second:")?.parse()?;
    // "Queries completed:    12345 (99.99%)"
    let completed = field("Queries completed:")?;
    let pct: f64 = completed.split('(').nth(1).and_then(|s| s.strip_suffix("%)")).context("completed %")?.parse()?;
    Ok(Perf { qps, completed_pct: pct })
}

pub fn run(queries: u64, seconds: u64) -> anyhow::Result<()> {
    let dir = tmpdir();
    let qfile = dir.join("queries.txt");
    // dnsperf cycles through the file: one name per mode.
    std::fs::write(&qfile, "www.gslb.example. A\ngeo.gslb.example. A\nshop.gslb.example. A\n")?;
    let edns_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let control = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let knot_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let e = EdnsProc::start_bin(&edns_bin(true), &example_config(edns_addr, control), None, &[])?;
    let _k = start_knotd(&dir, knot_addr)?;
    println!("dnsperf on loopback, {queries} queries or {seconds} s per run, 4 clients; edns and knotd alternate, 3 rounds each\n");
    let (mut best_e, mut best_k) = (0f64, 0f64);
    for round in 1..=3 {
        let pe = dnsperf(edns_addr, &qfile, queries, seconds, 4)?;
        let pk = dnsperf(knot_addr, &qfile, queries, seconds, 4)?;
        println!(
            "round {round}: edns userspace {:>9.0} qps ({:.2}% completed)   knotd {:>9.0} qps ({:.2}% completed)   ratio {:.2}",
            pe.qps,
            pe.completed_pct,
            pk.qps,
            pk.completed_pct,
            pe.qps / pk.qps
        );
        best_e = best_e.max(pe.qps);
        best_k = best_k.max(pk.qps);
    }
    println!("\nbest: edns userspace {best_e:.0} qps, knotd {best_k:.0} qps, edns/knotd = {:.2}", best_e / best_k);
    drop(e);
    Ok(())
}
