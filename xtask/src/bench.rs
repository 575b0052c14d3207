//! `cargo xtask bench`: every figure is a ratio measured side by side in one
//! run (the machines are shared and noisy).
//!
//! 1. Per-query cost of the XDP program through BPF_PROG_TEST_RUN: stripe,
//!    topology, persistence hit with 1k and 1M records, against the
//!    `edns_pass` (XDP_PASS) floor.
//! 2. Floods on the veth harness: kxdpgun and dnsperf against edns XDP, edns
//!    userspace-only and knotd in XDP mode.
//! 3. dnsperf on loopback: edns userspace against knotd.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use edns_common::{LdnsKey, PersistKey, PersistRecord};
use edns_tests::packet::{add_option, dns_query, with_cookie, Frame};
use edns_tests::xdp::{XdpUnderTest, XDP_PASS, XDP_TX};
use edns_tests::{edns_bin, example_config, free_port, kdig, tmpdir, EdnsProc, Netns, VethHarness};
use edns_user::store::{now_ns, Store};

/// knotd serving gslb.example. with the A records edns would answer.
struct Knotd {
    child: Child,
}

impl Drop for Knotd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_knotd(dir: &Path, addr: SocketAddr, ns: Option<&Netns>, xdp_iface: Option<&str>) -> anyhow::Result<Knotd> {
    let zone = "$ORIGIN gslb.example.\n$TTL 30\n@ SOA ns1 hostmaster 1 3600 600 604800 30\n@ NS ns1\nwww A 198.51.100.20\nshop A 192.0.2.10\ngeo A 192.0.2.10\n";
    std::fs::write(dir.join("gslb.example.zone"), zone)?;
    let xdp = xdp_iface.map(|i| format!("xdp:\n  listen: {i}@{}\n", addr.port())).unwrap_or_default();
    let conf = format!(
        "server:\n  rundir: \"{d}\"\n  listen: {ip}@{port}\n  udp-workers: 2\n  tcp-workers: 1\n  background-workers: 1\n{xdp}database:\n  storage: \"{d}\"\nlog:\n  - target: stderr\n    any: warning\nzone:\n  - domain: gslb.example.\n    file: \"{d}/gslb.example.zone\"\n",
        d = dir.display(),
        ip = addr.ip(),
        port = addr.port()
    );
    std::fs::write(dir.join("knot.conf"), conf)?;
    let mut cmd = match ns {
        Some(n) => n.cmd("knotd"),
        None => Command::new("knotd"),
    };
    let child = cmd
        .arg("-c")
        .arg(dir.join("knot.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("knotd.log"))?)
        .spawn()
        .context("cannot start knotd")?;
    let k = Knotd { child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if kdig(ns, addr, None, &["www.gslb.example.", "A"]).map(|d| d.status == "NOERROR").unwrap_or(false) {
            return Ok(k);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("knotd did not answer: {}", std::fs::read_to_string(dir.join("knotd.log")).unwrap_or_default())
}

pub struct Perf {
    pub sent_qps: f64,
    pub reply_qps: f64,
    pub answered_pct: f64,
    /// Replies received in the whole run.
    pub replies: f64,
}

fn field<'a>(text: &'a str, label: &str) -> anyhow::Result<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
        .with_context(|| format!("no {label:?} in:\n{text}"))
}

/// dnsperf bounded by `seconds` (and by `passes` over the query file).
fn dnsperf(ns: Option<&Netns>, server: SocketAddr, queries: &Path, passes: u64, seconds: u64) -> anyhow::Result<Perf> {
    dnsperf_threads(ns, server, queries, passes, seconds, 1)
}

/// [`dnsperf`] with `threads` sending threads.
fn dnsperf_threads(ns: Option<&Netns>, server: SocketAddr, queries: &Path, passes: u64, seconds: u64, threads: u32) -> anyhow::Result<Perf> {
    let mut cmd = match ns {
        Some(n) => n.cmd("dnsperf"),
        None => Command::new("dnsperf"),
    };
    let out = cmd
        .args(["-s", &server.ip().to_string(), "-p", &server.port().to_string()])
        .arg("-d")
        .arg(queries)
        .args(["-n", &passes.to_string(), "-l", &seconds.to_string(), "-c", "4", "-q", "200", "-t", "2", "-T", &threads.to_string()])
        .output()
        .context("cannot run dnsperf")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let qps: f64 = field(&text, "Queries per second:")?.parse()?;
    let sent: f64 = field(&text, "Queries sent:")?.parse()?;
    let completed = field(&text, "Queries completed:")?;
    let pct: f64 = completed.split('(').nth(1).and_then(|s| s.strip_suffix("%)")).context("completed %")?.parse()?;
    let elapsed: f64 = field(&text, "Run time (s):")?.parse()?;
    Ok(Perf { sent_qps: sent / elapsed, reply_qps: qps, answered_pct: pct, replies: qps * elapsed })
}

/// kxdpgun from the client veth, random sources in `local`, at `qps` offered.
fn kxdpgun(h: &VethHarness, queries: &Path, qps: u64, seconds: u64, local: &str) -> anyhow::Result<Perf> {
    kxdpgun_on(&h.client, &h.client_if, h.server_ip, queries, qps, seconds, local)
}

/// kxdpgun in `ns` on `iface` against `server`.
fn kxdpgun_on(ns: &Netns, iface: &str, server: IpAddr, queries: &Path, qps: u64, seconds: u64, local: &str) -> anyhow::Result<Perf> {
    let out = ns
        .cmd("kxdpgun")
        .args(["-t", &seconds.to_string(), "-Q", &qps.to_string(), "-I", iface, "-l", local, "-i"])
        .arg(queries)
        .arg(server.to_string())
        .output()
        .context("cannot run kxdpgun")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "total queries:     1222210 (407403 pps)" / "total replies: ... (407403 pps) (100%)"
    let pps = |label: &str| -> anyhow::Result<f64> {
        let f = field(&text, label)?;
        Ok(f.split('(').nth(1).and_then(|s| s.split_whitespace().next()).context("pps")?.parse()?)
    };
    let sent = pps("total queries:")?;
    let replies = pps("total replies:").unwrap_or(0.0);
    Ok(Perf { sent_qps: sent, reply_qps: replies, answered_pct: if sent > 0.0 { 100.0 * replies / sent } else { 0.0 }, replies: replies * seconds as f64 })
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Median of `rounds` round means, the cases interleaved round by round so
/// that machine noise falls on all of them alike.
fn interleaved(
    x: &mut XdpUnderTest,
    cases: &[(String, &'static str, Vec<u8>, u32)],
    rounds: u32,
    runs: u32,
) -> anyhow::Result<Vec<(String, Duration)>> {
    let mut means: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (_, prog, frame, verdict)) in cases.iter().enumerate() {
            means[i].push(x.mean_time(prog, frame, runs, *verdict)?);
        }
    }
    Ok(cases
        .iter()
        .zip(means)
        .map(|((name, ..), mut m)| {
            m.sort();
            (name.clone(), m[m.len() / 2])
        })
        .collect())
}

/// Section 2b: response rate limiting. kxdpgun floods from one /24 (as a
/// spoofer aiming at one victim network would) while a real LDNS in
/// another /24 asks with kdig; the data plane's counters say how the flood
/// was answered.
/// Just the rate-limiting run.
pub fn queues_only(seconds: u64) -> anyhow::Result<()> {
    edns_tests::require_root();
    let dir = tmpdir();
    let mix = dir.join("mix.txt");
    std::fs::write(&mix, "www.gslb.example. A\ngeo.gslb.example. A\n")?;
    queue_scaling(&mix, 500_000, seconds)
}

pub fn rrl_only(seconds: u64) -> anyhow::Result<()> {
    let dir = tmpdir();
    let mix = dir.join("mix.txt");
    std::fs::write(&mix, "www.gslb.example. A\ngeo.gslb.example. A\n")?;
    rrl_under_a_spoofed_flood(&mix, seconds)
}

fn rrl_under_a_spoofed_flood(queries: &Path, seconds: u64) -> anyhow::Result<()> {
    const RATE: u64 = 1000;
    println!("\n### Rate limiting under a spoofed flood ({seconds} s)\n");
    println!("[rrl] responses_per_second = {RATE}, slip = 2, per /24. kxdpgun floods from 198.19.7.0/24 as fast as it can; a real LDNS (kdig, 198.18.0.2) asks every 10 ms.\n");
    // The client side becomes a bridge: the LDNS on it (198.18.0.2), the
    // generator in a namespace of its own behind it (198.18.0.3), so that
    // kxdpgun's XDP program, which takes every DNS reply on its interface,
    // does not take the LDNS's too.
    let h = VethHarness::bare()?;
    let gen = Netns::new("ednsG")?;
    let (g_br, g_gen) = (edns_tests::unique("gb"), edns_tests::unique("gg"));
    h.client.ip(&["link", "add", "br0", "type", "bridge"])?;
    h.client.ip(&["link", "set", &h.client_if, "master", "br0"])?;
    h.client.ip(&["addr", "del", "198.18.0.2/15", "dev", &h.client_if])?;
    h.client.ip(&["addr", "add", "198.18.0.2/15", "dev", "br0"])?;
    h.client.ip(&["link", "set", "br0", "up"])?;
    edns_tests::sh(Command::new("ip").args(["link", "add", &g_br, "netns", &h.client.name, "type", "veth", "peer", "name", &g_gen, "netns", &gen.name]))?;
    h.client.ip(&["link", "set", &g_br, "master", "br0"])?;
    h.client.ip(&["link", "set", &g_br, "up"])?;
    gen.ip(&["addr", "add", "198.18.0.3/15", "dev", &g_gen])?;
    gen.ip(&["link", "set", &g_gen, "up"])?;
    let dir = tmpdir();
    edns_tests::attach_xdp_pass(&h.client, &h.client_if, &dir.join("pass-client.log"))?;
    edns_tests::attach_xdp_pass(&h.client, &g_br, &dir.join("pass-bridge.log"))?;
    edns_tests::sh(h.client.cmd("ethtool").args(["-K", "br0", "tx", "off"]))?;
    h.server.ip(&["route", "add", "198.19.0.0/16", "via", "198.18.0.3"])?;
    let config = std::fs::read_to_string(crate::root().join("examples/demo.toml"))? + &format!("\n[rrl]\nresponses_per_second = {RATE}\nslip = 2\n");
    let e = EdnsProc::start_bin(&edns_bin(true), &config, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"])?;
    let counters = |e: &EdnsProc| -> anyhow::Result<serde_json::Value> { Ok(e.ctl(&["stats"])?["xdp"].clone()) };
    let before = counters(&e)?;
    let (flood, ldns) = std::thread::scope(|s| {
        let ldns = s.spawn(|| {
            let (mut asked, mut answered) = (0u32, 0u32);
            let end = Instant::now() + Duration::from_secs(seconds.saturating_sub(1).max(1));
            std::thread::sleep(Duration::from_millis(500)); // the flood is under way
            while Instant::now() < end {
                asked += 1;
                if kdig(Some(&h.client), SocketAddr::new(h.server_ip, 53), Some(h.client_ip), &["www.gslb.example.", "A"]).is_ok_and(|d| d.answers.len() == 1) {
                    answered += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (asked, answered)
        });
        let flood = kxdpgun_on(&gen, &g_gen, h.server_ip, queries, 2_000_000, seconds, "198.19.7.0/24");
        (flood, ldns.join().expect("the LDNS thread"))
    });
    let flood = flood?;
    let after = counters(&e)?;
    let d = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
    // The LDNS's answers are counted there too.
    let full = (d("answered_stripe") + d("answered_topology")).saturating_sub(ldns.1 as u64);
    println!("| | queries | full answers | TC=1 (slip) | dropped |\n| --- | --- | --- | --- | --- |");
    println!(
        "| flood, 198.19.7.0/24 | {:.0}/s offered | {:.0}/s | {:.0}/s | {:.0}/s |",
        flood.sent_qps,
        full as f64 / seconds as f64,
        d("answered_rrl_slip") as f64 / seconds as f64,
        d("drop_rate_limited") as f64 / seconds as f64
    );
    println!("| real LDNS, 198.18.0.2 | {} asked | {} answered ({:.1}%) | | |", ldns.0, ldns.1, 100.0 * ldns.1 as f64 / ldns.0.max(1) as f64);
    Ok(())
}

/// Section 1: per-query cost through BPF_PROG_TEST_RUN, 1,000,000 runs per
/// case in 10 interleaved rounds. Returns rows of (case, cost, floor).
fn testrun_costs() -> anyhow::Result<Vec<(String, Duration, Duration)>> {
    const ROUNDS: u32 = 10;
    const RUNS: u32 = 100_000;
    let model = edns_user::config::load(&crate::root().join("examples/demo.toml")).map_err(anyhow::Error::from)?;
    let mut x = XdpUnderTest::new(&model)?;
    let server = v4("198.18.0.1");
    let frame = |src: &str, name: &str| Frame::udp(v4(src), server, 53, dns_query(0x1234, true, name, 1, Some(1232))).build();
    let www = frame("198.18.3.7", "www.gslb.example.");
    // 10.0.0.7 will hold a record (vs 0 = east/vs1, in shop's pool).
    let shop_frame = frame("10.0.0.7", "shop.gslb.example.");
    let shop = model.wide_ip_by_name("shop.gslb.example.").context("shop")?.id;
    let now = now_ns();
    let dp = x.dataplane.clone();
    let fill = |from: u32, to: u32| -> anyhow::Result<()> {
        for n in from..to {
            let ldns = edns_user::model::ip16(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)));
            let rec = PersistRecord { vs: 0, ttl_secs: 3600, created_ns: now, last_ns: now, hits: 1, node_id: 0, generation: 0 };
            dp.persist_put(&PersistKey { wide_ip: shop, ldns: LdnsKey::addr(ldns) }, &rec)?;
        }
        Ok(())
    };
    let floor = ("XDP_PASS floor (edns_pass)".to_string(), "edns_pass", www.clone(), XDP_PASS);
    // Cookies on, as `edns run` has them: a client cookie alone, and one
    // with the server cookie we made (BIND's second query onwards).
    let secrets = edns_common::CookieSecrets {
        current: [7; 16],
        enabled: 1,
        wall_offset_ns: edns_user::cookies::wall_offset_ns(),
        ..Default::default()
    };
    x.dataplane.set_cookie_secrets(&secrets)?;
    let client = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let src = "198.18.3.7";
    let server_cookie = edns_common::server_cookie(&[7; 16], &client, &edns_user::model::ip16(v4(src)), edns_user::cookies::wall_secs() as u32);
    let cookie_frame = |cookie: &[u8]| {
        Frame::udp(v4(src), server, 53, with_cookie(dns_query(0x1234, true, "www.gslb.example.", 1, Some(1232)), cookie)).build()
    };
    let client_only = cookie_frame(&client);
    let valid = cookie_frame(&[&client[..], &server_cookie].concat());
    // A resolver sending its client's /24 (as large public resolvers do on
    // every query) to a wide IP with ECS on.
    let ecs_frame = {
        let mut q = dns_query(0x1234, true, "cdn.gslb.example.", 1, Some(1232));
        add_option(&mut q, 8, &[0, 1, 24, 0, 198, 51, 101], false);
        Frame::udp(v4(src), server, 53, q).build()
    };
    fill(0, 1_000)?;
    let small = interleaved(
        &mut x,
        &[
            floor.clone(),
            ("unknown name, parsed and passed".to_string(), "edns", frame("198.18.3.7", "nope.gslb.example."), XDP_PASS),
            ("stripe answer".to_string(), "edns", www.clone(), XDP_TX),
            ("stripe answer, client cookie".to_string(), "edns", client_only, XDP_TX),
            ("stripe answer, valid server cookie".to_string(), "edns", valid, XDP_TX),
            ("stripe answer, client subnet (ECS /24)".to_string(), "edns", ecs_frame, XDP_TX),
            ("topology answer".to_string(), "edns", frame("198.18.1.9", "geo.gslb.example."), XDP_TX),
            ("persistence hit, 1000 records".to_string(), "edns", shop_frame, XDP_TX),
        ],
        ROUNDS,
        RUNS,
    )?;
    // Larger tables: the scale section.
    Ok(small.iter().map(|(n, d)| (n.clone(), *d, small[0].1)).collect())
}

pub struct Server {
    edns: Option<EdnsProc>,
    _knot: Option<(Knotd, edns_tests::TmpDir)>,
}

impl Server {
    /// (frames the XDP program saw, frames it answered with XDP_TX).
    fn xdp_counts(&self) -> Option<(u64, u64)> {
        let s = self.edns.as_ref()?.ctl(&["stats"]).ok()?;
        let x = s.get("xdp")?;
        let n = |k: &str| x[k].as_u64().unwrap_or(0);
        Some((n("packets"), n("answered_stripe") + n("answered_topology") + n("answered_persistence") + n("answered_fallback_rr")))
    }
}

/// Frames the veth pair lost: on the client side, frames the generator sent
/// that the server's receive ring had no room for (xmit errors) and drops in
/// the generator's receive path; on the server side, XDP_TX errors.
fn veth_losses(h: &VethHarness) -> String {
    let stat = |ns: &Netns, iface: &str, keys: &[&str]| -> u64 {
        let out = ns.cmd("ethtool").args(["-S", iface]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        out.lines()
            .filter_map(|l| l.trim().split_once(": "))
            .filter(|(k, _)| keys.iter().any(|want| k.ends_with(want)))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum()
    };
    format!(
        "client xdp_xmit_errors {} (queries the server's ring had no room for), client drops {}, server xdp_tx_errors {}",
        stat(&h.client, &h.client_if, &["xdp_xmit_errors"]),
        stat(&h.client, &h.client_if, &["drops"]),
        stat(&h.server, &h.server_if, &["xdp_tx_errors", "xdp_xmit_errors"])
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    EdnsXdp,
    EdnsUser,
    KnotXdp,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::EdnsXdp => "edns XDP",
            Target::EdnsUser => "edns userspace only",
            Target::KnotXdp => "knotd 3.2.6 XDP",
        }
    }
}

pub fn start_server(p: Target, h: &VethHarness) -> anyhow::Result<Server> {
    let config = std::fs::read_to_string(crate::root().join("examples/demo.toml"))?;
    let bin = edns_bin(true);
    Ok(match p {
        Target::EdnsXdp => Server {
            edns: Some(EdnsProc::start_bin(&bin, &config, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"])?),
            _knot: None,
        },
        Target::EdnsUser => Server { edns: Some(EdnsProc::start_bin(&bin, &config, Some(&h.server), &[])?), _knot: None },
        Target::KnotXdp => Server {
            edns: None,
            _knot: {
                let dir = tmpdir();
                Some((start_knotd(&dir, SocketAddr::new(h.server_ip, 53), Some(&h.server), Some(&h.server_if))?, dir))
            },
        },
    })
}

/// dnsperf with two sending threads against edns XDP on a veth with one
/// queue each way, then two. On a veth the frame's queue picks the
/// receiving NAPI: with one queue both senders' frames meet in one NAPI
/// (one CPU at a time runs the XDP program), with two each CPU runs its
/// own. (kxdpgun sends from one thread on a veth: it takes its thread
/// count from the combined channels, which a veth does not have.)
pub fn queue_scaling(queries: &Path, passes: u64, seconds: u64) -> anyhow::Result<()> {
    const ROUNDS: usize = 3;
    // (replies/s, µs of CPU per reply) per round, for one queue and two.
    let mut got = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (i, queues) in [1u32, 2].into_iter().enumerate() {
            let h = VethHarness::with_queues(queues)?;
            let _s = start_server(Target::EdnsXdp, &h)?;
            let (cpu0, t0) = (CpuTimes::now()?, Instant::now());
            let r = dnsperf_threads(Some(&h.client), SocketAddr::new(h.server_ip, 53), queries, passes, seconds, 2)?;
            let cpu = CpuTimes::now()?.since(&cpu0);
            anyhow::ensure!(r.answered_pct == 100.0, "{queues} queues: {:.1}% answered", r.answered_pct);
            got[i].push((r.reply_qps, cpu.busy_secs() * 1e6 / (r.reply_qps * t0.elapsed().as_secs_f64())));
        }
    }
    let med = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| crate::median(v.iter().map(f).collect());
    println!("| queues (veth numrxqueues/numtxqueues) | replies/s (median of {ROUNDS}; each round) | × one queue | µs of CPU per reply (both cores, dnsperf included) |\n| --- | --- | --- | --- |");
    let one = med(&got[0], |r| r.0);
    for (i, runs) in got.iter().enumerate() {
        let each: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.0)).collect();
        println!("| {} | {:.0} ({}) | {:.2} | {:.2} |", i + 1, med(runs, |r| r.0), each.join(", "), med(runs, |r| r.0) / one, med(runs, |r| r.1));
    }
    Ok(())
}

/// Busy and total jiffies per CPU, from /proc/stat.
struct CpuTimes(Vec<(u64, u64)>);

impl CpuTimes {
    fn now() -> anyhow::Result<CpuTimes> {
        let text = std::fs::read_to_string("/proc/stat")?;
        let per_cpu = text
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .map(|l| {
                let v: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                let total: u64 = v.iter().take(8).sum();
                // idle and iowait are the 4th and 5th fields.
                (total - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0), total)
            })
            .collect();
        Ok(CpuTimes(per_cpu))
    }

    fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes(self.0.iter().zip(&before.0).map(|(a, b)| (a.0 - b.0, a.1 - b.1)).collect())
    }

    /// Each CPU's busy share, e.g. "cpu0 98% busy, cpu1 41% busy".
    fn busy_shares(&self) -> String {
        let parts: Vec<String> = self.0.iter().enumerate().map(|(i, (busy, total))| format!("cpu{i} {:.0}% busy", 100.0 * *busy as f64 / (*total).max(1) as f64)).collect();
        parts.join(", ")
    }

    fn busy_secs(&self) -> f64 {
        // USER_HZ is 100 on Linux.
        self.0.iter().map(|(b, _)| *b as f64 / 100.0).sum()
    }
}

/// Section 1 as a table.
pub fn testrun_table() -> anyhow::Result<()> {
    edns_tests::require_root();
    println!("## 1. Per-query cost, BPF_PROG_TEST_RUN (kernel-timed single runs; median of 10 interleaved rounds of 100,000)\n");
    println!("| case | ns/query | × XDP_PASS floor (same rounds) |\n| --- | --- | --- |");
    for (name, d, floor) in testrun_costs()? {
        println!("| {name} | {:.1} | {:.2} |", d.as_secs_f64() * 1e9, d.as_secs_f64() / floor.as_secs_f64());
    }
    scale_table()
}

pub fn run(passes: u64, seconds: u64, latency_rounds: usize, stages_object: &Path) -> anyhow::Result<()> {
    edns_tests::require_root();
    let dir = tmpdir();
    let mix = dir.join("mix.txt");
    std::fs::write(&mix, "www.gslb.example. A\ngeo.gslb.example. A\n")?;
    let shop = dir.join("shop.txt");
    std::fs::write(&shop, "shop.gslb.example. A\n")?;

    testrun_table()?;
    stages_table(stages_object)?;

    println!("\n## 2. Floods on the veth harness ({seconds} s each)\n");
    println!("kxdpgun: random LDNS sources from 198.19.0.0/16, names www (stripe) and geo (topology), offered as fast as it can (-Q 2000000).");
    println!("dnsperf: one source, same names, 4 clients, 200 outstanding, one sending thread (-T 1) or two (-T 2).\n");
    println!("| server | generator | sent q/s | replies/s | answered | seen in XDP / XDP_TX |\n| --- | --- | --- | --- | --- | --- |");
    let mut notes = Vec::new();
    let mut cpu_notes = Vec::new();
    for p in [Target::EdnsXdp, Target::EdnsUser, Target::KnotXdp] {
        {
            let h = VethHarness::bare()?;
            h.route_via_client("198.19.0.0/16")?;
            let s = start_server(p, &h)?;
            let runs: Vec<(&str, &Path, &str)> = if p == Target::EdnsXdp {
                // Second run: one LDNS asking for a dynamic wide IP: a miss, then persistence hits.
                vec![("", &mix, "198.19.0.0/16"), (" (persistence hits)", &shop, "198.18.0.2/32")]
            } else {
                vec![("", &mix, "198.19.0.0/16")]
            };
            for (label, file, local) in runs {
                let before = s.xdp_counts();
                let r = kxdpgun(&h, file, 2_000_000, seconds, local)?;
                let xdp = match (before, s.xdp_counts()) {
                    (Some((p0, a0)), Some((p1, a1))) => format!("{} / {}", p1 - p0, a1 - a0),
                    _ => "-".to_string(),
                };
                println!("| {}{label} | kxdpgun | {:.0} | {:.0} | {:.1}% | {xdp} |", p.name(), r.sent_qps, r.reply_qps, r.answered_pct);
                notes.push(format!("{}{label}: {}", p.name(), veth_losses(&h)));
            }
        }
        {
            let h = VethHarness::new()?;
            let _s = start_server(p, &h)?;
            // One dnsperf thread, then two: on a veth the receiving XDP
            // program runs in the softirq of the CPU that sent the frame.
            for threads in [1, 2] {
                let (before, t0) = (CpuTimes::now()?, Instant::now());
                let r = dnsperf_threads(Some(&h.client), SocketAddr::new(h.server_ip, 53), &mix, passes, seconds, threads)?;
                let cpu = CpuTimes::now()?.since(&before);
                println!("| {} | dnsperf -T {threads} | {:.0} | {:.0} | {:.1}% | |", p.name(), r.sent_qps, r.reply_qps, r.answered_pct);
                cpu_notes.push(format!(
                    "{}, dnsperf -T {threads}: {}; {:.2} µs of CPU (both cores, dnsperf included) per reply",
                    p.name(),
                    cpu.busy_shares(),
                    cpu.busy_secs() * 1e6 / (r.reply_qps * t0.elapsed().as_secs_f64())
                ));
            }
        }
    }
    println!("\nveth counters after the kxdpgun runs (cumulative per harness):");
    for n in notes {
        println!("- {n}");
    }
    println!("\nCPU during the dnsperf runs (/proc/stat; with XDP on a veth the answer is computed in the softirq of the CPU that sent the query):");
    for n in cpu_notes {
        println!("- {n}");
    }

    println!("\nScaling with queues (dnsperf -T 2 against edns XDP, {seconds} s each):\n");
    queue_scaling(&mix, passes, seconds)?;

    println!("\n## 3. Latency at fixed rates on the veth harness\n");
    crate::latency::table(latency_rounds, seconds)?;

    rrl_under_a_spoofed_flood(&mix, seconds)?;

    loopback_table(passes, seconds)
}

/// Section 4: dnsperf on loopback, the userspace path against knotd, in
/// alternating rounds, with each server's CPU per reply; then the
/// responder's own cost per query, plain path against general path.
pub fn loopback_table(passes: u64, seconds: u64) -> anyhow::Result<()> {
    const ROUNDS: usize = 5;
    edns_tests::require_root();
    let dir = tmpdir();
    println!("\n## 4. dnsperf on loopback, userspace against knotd ({ROUNDS} alternating rounds)\n");
    let qfile = dir.join("queries.txt");
    std::fs::write(&qfile, "www.gslb.example. A\ngeo.gslb.example. A\nshop.gslb.example. A\n")?;
    let edns_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let control = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let knot_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let e = EdnsProc::start_bin(&edns_bin(true), &example_config(edns_addr, control), None, &[])?;
    let k = start_knotd(&dir, knot_addr, None, None)?;
    // Replies per second, and the server's CPU (user + system) per reply in µs.
    let measure = |addr: SocketAddr, pid: u32| -> anyhow::Result<(f64, f64)> {
        let cpu = crate::cpu_secs(pid)?;
        let p = dnsperf(None, addr, &qfile, passes, seconds)?;
        Ok((p.reply_qps, (crate::cpu_secs(pid)? - cpu) * 1e6 / p.replies))
    };
    let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    println!("| round | edns userspace q/s | knotd q/s | ratio | edns CPU µs/reply | knotd CPU µs/reply |\n| --- | --- | --- | --- | --- | --- |");
    for round in 1..=ROUNDS {
        let (qe, ce) = measure(edns_addr, e.pid())?;
        let (qk, ck) = measure(knot_addr, k.child.id())?;
        println!("| {round} | {qe:.0} | {qk:.0} | {:.2} | {ce:.2} | {ck:.2} |", qe / qk);
        ratios.push(qe / qk);
        cpu_ratios.push(ce / ck);
    }
    let (lo, hi) = ratios.iter().fold((f64::MAX, 0f64), |(l, h), r| (l.min(*r), h.max(*r)));
    println!("\nedns/knotd replies/s: median {:.2} ({lo:.2}–{hi:.2}); CPU per reply, edns/knotd: median {:.2}", crate::median(ratios), crate::median(cpu_ratios));
    // Timed in a release build: xtask itself is built for debugging.
    crate::run(crate::cargo().args(["run", "--release", "--quiet", "-p", "xtask", "--", "responder-cost"]).current_dir(crate::root()))
}

/// The responder's cost per query in-process, no sockets: `respond()` (a
/// plain question for a wide IP is answered on the bytes) against the
/// general path alone (hickory decode and encode), interleaved; without and
/// with a client cookie (what BIND sends).
pub fn responder_cost() -> anyhow::Result<()> {
    const ROUNDS: usize = 11;
    const RUNS: u32 = 100_000;
    use edns_user::dns::{Responder, Transport};
    let model = std::sync::Arc::new(edns_user::config::load(&crate::root().join("examples/edns.toml")).map_err(anyhow::Error::from)?);
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(edns_user::store::MemoryStore::new(vec![edns_common::VS_UP; model.vss.len()], model.wide_ips.len(), 1 << 20));
    let r = Responder::new(model.clone(), edns_user::select::Selector::new(model.clone(), store));
    let src = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 7));
    let plain: Vec<Vec<u8>> = ["www.gslb.example.", "geo.gslb.example.", "shop.gslb.example."].iter().map(|n| dns_query(0x1234, true, n, 1, Some(1232))).collect();
    // The OPT record is last: its RDLENGTH grows by the COOKIE option.
    let cookie: Vec<Vec<u8>> = plain.iter().map(|q| [&q[..q.len() - 2], &[0, 12, 0, 10, 0, 8][..], b"clientck"].concat()).collect();
    let time = |queries: &[Vec<u8>], f: &dyn Fn(&[u8]) -> Option<Vec<u8>>| {
        let t = Instant::now();
        for i in 0..RUNS {
            std::hint::black_box(f(&queries[i as usize % queries.len()]));
        }
        t.elapsed().as_secs_f64() * 1e9 / f64::from(RUNS)
    };
    let respond = |q: &[u8]| r.respond(q, src, Transport::Udp);
    let general = |q: &[u8]| r.respond_general(q, src, Transport::Udp);
    let runs: [(&str, &[Vec<u8>], &dyn Fn(&[u8]) -> Option<Vec<u8>>); 4] = [
        ("plain question answered on the bytes (`respond`)", &plain, &respond),
        ("general path (hickory decode and encode)", &plain, &general),
        ("with a client cookie, on the bytes (`respond`)", &cookie, &respond),
        ("with a client cookie, general path", &cookie, &general),
    ];
    let mut ns = vec![Vec::new(); runs.len()];
    for _ in 0..ROUNDS {
        for (i, (_, queries, f)) in runs.iter().enumerate() {
            ns[i].push(time(queries, *f));
        }
    }
    let ns: Vec<f64> = ns.into_iter().map(crate::median).collect();
    println!("\nThe responder alone (in-process, no sockets; www, geo and shop in turn with an OPT record; medians of {ROUNDS} interleaved rounds of {RUNS}):\n");
    println!("| path | ns/query | × plain |\n| --- | --- | --- |");
    for ((what, _, _), n) in runs.iter().zip(&ns) {
        println!("| {what} | {n:.0} | {:.2} |", n / ns[0]);
    }
    Ok(())
}

/// Where a stripe answer's time goes: a build of the program that stops at
/// checkpoints (`--features stages`), each checkpoint timed like the
/// per-query cost table, interleaved with the others and the floor.
pub fn stages_table(object: &Path) -> anyhow::Result<()> {
    const ROUNDS: usize = 10;
    const RUNS: u32 = 100_000;
    const STAGES: [&str; 11] = [
        "Ethernet, VLAN and IP headers read",
        "UDP port; ingress policy (martian source, our own addresses compared; MAC); IPv4 header checksum",
        "question name: read, summed, lowercased and hashed 8 bytes at a time, to its first zero byte",
        "type, class, OPT; UDP checksum verified (end of parse)",
        "(parse returned: SETTINGS and SCRATCH lookups)",
        "NAME_SLOTS probe by the name's hash, WIDE_IPS entry, name compared; destination among the listen addresses",
        "GROUPS (LPM trie) lookup, only while a group has members (none here); stripe key",
        "tail call into edns_answer (a direct jump); SETTINGS lookup",
        "WIDE_IPS entry again, by the id found (array)",
        "selection (stripe walk over VS_STATES)",
        "SACS lookup; answer written; counters (the whole answer)",
    ];
    edns_tests::require_root();
    let model = edns_user::config::load(&crate::root().join("examples/demo.toml")).map_err(anyhow::Error::from)?;
    let mut x = XdpUnderTest::with_object(&model, object)?;
    let www = Frame::udp(v4("198.18.3.7"), v4("198.18.0.1"), 53, dns_query(0x1234, true, "www.gslb.example.", 1, Some(1232))).build();
    let mut floor = Vec::new();
    let mut at: Vec<Vec<Duration>> = vec![Vec::new(); STAGES.len()];
    for _ in 0..ROUNDS {
        floor.push(x.mean_time("edns_pass", &www, RUNS, XDP_PASS)?);
        for (i, times) in at.iter_mut().enumerate() {
            // Stage 11 is the whole answer: no checkpoint.
            let stop = if i + 1 == STAGES.len() { 0 } else { i as u32 + 1 };
            x.stop_at(stop)?;
            times.push(x.mean_time("edns", &www, RUNS, if stop == 0 { XDP_TX } else { XDP_PASS })?);
        }
    }
    x.stop_at(0)?;
    let median = |v: Vec<Duration>| crate::median(v.iter().map(|d| d.as_secs_f64() * 1e9).collect());
    let floor = median(floor);
    println!("\n### Where a stripe answer's time goes (BPF_PROG_TEST_RUN, a build that stops at each checkpoint, never the one edns embeds; medians of {ROUNDS} interleaved rounds of {RUNS})\n");
    println!("| up to and including | ns | step | × floor |\n| --- | --- | --- | --- |");
    println!("| XDP_PASS floor (edns_pass) | {floor:.0} | | 1.00 |");
    let mut prev = floor;
    for (name, times) in STAGES.iter().zip(at) {
        let t = median(times);
        println!("| {name} | {t:.0} | {:+.0} | {:.2} |", t - prev, t / floor);
        prev = t;
    }
    Ok(())
}

/// Section 1b: scale. Persistence hits with 1,000, 1,000,000 and
/// 10,000,000 records (a table sized for them), and a config of 100,000
/// wide IPs: how long it takes to load and fill, and what a stripe answer
/// for one of them costs beside one for the small config's.
pub fn scale_table() -> anyhow::Result<()> {
    const ROUNDS: u32 = 10;
    const RUNS: u32 = 100_000;
    edns_tests::require_root();
    let demo = std::fs::read_to_string(crate::root().join("examples/demo.toml"))?;
    let server = v4("198.18.0.1");
    let frame = |src: &str, name: &str| Frame::udp(v4(src), server, 53, dns_query(0x1234, true, name, 1, Some(1232))).build();
    println!("\n### Scale (BPF_PROG_TEST_RUN as above)\n");
    println!("| case | ns/query | × XDP_PASS floor | × the smallest |\n| --- | --- | --- | --- |");

    // Persistence: one table of 16M records' capacity, filled in steps.
    let dir = tmpdir();
    let big = dir.join("big.toml");
    std::fs::write(&big, demo.replacen("[server]\n", "[server]\npersistence_capacity = 16000000\n", 1))?;
    let model = edns_user::config::load(&big).map_err(anyhow::Error::from)?;
    let mut x = XdpUnderTest::new(&model)?;
    let shop = model.wide_ip_by_name("shop.gslb.example.").context("shop")?.id;
    let now = now_ns();
    let mut filled = 0u32;
    let mut first = None;
    for records in [1_000u32, 1_000_000, 10_000_000] {
        let t = Instant::now();
        for n in filled..records {
            // 10.x.y.z; the frame's source, 10.0.0.7, among the first thousand.
            let ldns = edns_user::model::ip16(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)));
            let rec = PersistRecord { vs: 0, ttl_secs: 3600, created_ns: now, last_ns: now, hits: 1, node_id: 0, generation: 0 };
            x.dataplane.persist_put(&PersistKey { wide_ip: shop, ldns: LdnsKey::addr(ldns) }, &rec)?;
        }
        let fill_s = t.elapsed().as_secs_f64();
        filled = records;
        let www = frame("198.18.3.7", "www.gslb.example.");
        let r = interleaved(
            &mut x,
            &[("floor".into(), "edns_pass", www, XDP_PASS), ("hit".into(), "edns", frame("10.0.0.7", "shop.gslb.example."), XDP_TX)],
            ROUNDS,
            RUNS,
        )?;
        let (floor, hit) = (r[0].1.as_secs_f64() * 1e9, r[1].1.as_secs_f64() * 1e9);
        let base = *first.get_or_insert(hit);
        println!("| persistence hit, {records} records (filled in {fill_s:.1} s) | {hit:.1} | {:.2} | {:.2} |", hit / floor, hit / base);
    }
    drop(x);

    // 100,000 wide IPs.
    let mut text = demo.clone();
    for i in 0..100_000 {
        text.push_str(&format!("\n[[wide_ip]]\nname = \"w{i}.gslb.example.\"\nmode = \"stripe\"\npool = [\"east/vs1\", \"east/vs2\", \"west/vs1\"]\n"));
    }
    let many = dir.join("many.toml");
    std::fs::write(&many, &text)?;
    // Read and checked by the release binary, as `edns run` would.
    let t = Instant::now();
    let out = Command::new(edns_bin(true)).arg("check-config").arg(&many).output()?;
    anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let parse_s = t.elapsed().as_secs_f64();
    let model = edns_user::config::load(&many).map_err(anyhow::Error::from)?;
    let t = Instant::now();
    let mut x = XdpUnderTest::new(&model)?;
    let fill_s = t.elapsed().as_secs_f64();
    let www = frame("198.18.3.7", "www.gslb.example.");
    let r = interleaved(
        &mut x,
        &[
            ("floor".into(), "edns_pass", www.clone(), XDP_PASS),
            ("www".into(), "edns", www, XDP_TX),
            ("w99999".into(), "edns", frame("198.18.3.7", "w99999.gslb.example."), XDP_TX),
        ],
        ROUNDS,
        RUNS,
    )?;
    let ns = |i: usize| r[i].1.as_secs_f64() * 1e9;
    println!("| stripe answer, 100,006 wide IPs configured (www) | {:.1} | {:.2} | |", ns(1), ns(1) / ns(0));
    println!("| stripe answer, 100,006 wide IPs configured (w99999, the last) | {:.1} | {:.2} | {:.2} |", ns(2), ns(2) / ns(0), ns(2) / ns(1));
    println!("\n100,006 wide IPs: config read and checked in {parse_s:.2} s (`edns check-config`, release build); programs loaded and maps filled in {fill_s:.1} s (from this bench, a debug build).");
    Ok(())
}
