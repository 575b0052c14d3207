//! Dynamic methods driven by real exporters in site namespaces (HAProxy's
//! built-in Prometheus exporter, Debian's prometheus-node-exporter) and
//! observed through DNS answers to new LDNSes; and the methods that need no
//! metrics (round_robin, ratio, global_availability) with a real client.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use edns_tests::sites::{config, hold_connections, haproxy, http_vs, node_exporter, Site};
use edns_tests::{kdig, require_root, tmpdir, wait_until, EdnsProc, VethHarness};

const EAST: &str = "192.0.2.10";
const WEST: &str = "198.51.100.20";

/// The CPU test loads one core: the tests of this file run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The server block and a monitor for every VS.
fn header() -> String {
    config::server("127.0.0.1:8053")
        + "\n[[monitor]]\nname = \"web\"\ntype = \"http\"\ninterval_ms = 300\ntimeout_ms = 200\npath = \"/health\"\n"
}

struct Bed {
    h: VethHarness,
    east: Site,
    west: Site,
    /// Fresh LDNS addresses handed out by `fresh()`.
    next: std::cell::Cell<u8>,
}

impl Bed {
    fn new() -> Bed {
        let h = VethHarness::new().unwrap();
        let east = Site::new(&h.server, 0).unwrap();
        let west = Site::new(&h.server, 1).unwrap();
        Bed { h, east, west, next: std::cell::Cell::new(0) }
    }
    /// A new LDNS address in the client namespace: no persistence record yet.
    fn fresh(&self) -> IpAddr {
        let n = self.next.get();
        self.next.set(n + 1);
        let a = IpAddr::from([198, 18, 50 + n / 200, 10 + n % 200]);
        self.h.add_client_addrs(&[a]).unwrap();
        a
    }
    fn ask(&self, src: IpAddr, name: &str) -> String {
        let d = kdig(Some(&self.h.client), SocketAddr::new(self.h.server_ip, 53), Some(src), &[name, "A"]).unwrap();
        d.answer().to_string()
    }
    /// Answers to `n` new LDNSes.
    fn new_ldnses(&self, name: &str, n: usize) -> Vec<String> {
        (0..n).map(|_| self.ask(self.fresh(), name)).collect()
    }
}

fn vs_metric(e: &EdnsProc, vs: &str, kind: &str) -> serde_json::Value {
    e.vs(vs)["metrics"][kind].clone()
}

fn known(f: &serde_json::Value) -> Option<f64> {
    f["known"]["value"].as_f64()
}

#[test]
fn least_connections_and_most_capacity_follow_haproxy_and_the_chain_falls_back_when_exporters_stop() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let b = Bed::new();
    let dir = tmpdir();
    let _be = [http_vs(&b.east, 8080, &[], &b.h.server).unwrap(), http_vs(&b.west, 8080, &[], &b.h.server).unwrap()];
    // maxconn: east 50, west 40. Idle: east has more spare; 20 sessions on east: west has.
    let mut hap_east = haproxy(&b.east, &dir, 8080, 50, &b.h.server).unwrap();
    let mut hap_west = haproxy(&b.west, &dir, 8080, 40, &b.h.server).unwrap();
    let sac = |name: &str, addr: &str, site: &Site| {
        let exporter = format!("\n[[exporter]]\nname = \"{name}-haproxy\"\nurl = \"http://{}/metrics\"\ninterval_ms = 200\nstale_after_ms = 800\n", site.at(8404));
        let metric = |kind: &str, m: &str| {
            format!("metrics.{kind} = {{ exporter = \"{name}-haproxy\", metric = \"{m}\", labels = {{ proxy = \"fe\" }} }}\n")
        };
        let metrics = metric("connections", "haproxy_frontend_current_sessions") + &metric("capacity", "haproxy_frontend_limit_sessions");
        exporter + &config::sac(name, addr, site.at(8080), "web", "", &metrics)
    };
    let pool = ["east/vs1", "west/vs1"];
    let cfg = header()
        + &sac("east", EAST, &b.east)
        + &sac("west", WEST, &b.west)
        + &config::dynamic("lc.gslb.example.", r#"["least_connections", "round_robin"]"#, 60, &pool)
        + &config::dynamic("mc.gslb.example.", r#""most_capacity""#, 60, &pool);
    let e = EdnsProc::start(&cfg, Some(&b.h.server), &["--iface", &b.h.server_if, "--xdp", "native"]).unwrap();
    wait_until(Duration::from_secs(5), "figures from both exporters", || {
        ["east/vs1", "west/vs1"].iter().all(|v| known(&vs_metric(&e, v, "connections")) == Some(0.0))
    });
    assert_eq!(known(&vs_metric(&e, "east/vs1", "capacity")), Some(50.0));
    // Idle: equal connections take turns; most spare capacity is east (50 vs 40).
    let idle = b.new_ldnses("lc.gslb.example.", 4);
    assert!(idle.contains(&EAST.to_string()) && idle.contains(&WEST.to_string()), "{idle:?}");
    assert_eq!(b.new_ldnses("mc.gslb.example.", 3), [EAST; 3]);

    // Load on east: 20 sessions held open for 8 s.
    let _load = hold_connections(&b.h.server, b.east.at(80), 20, 8).unwrap();
    wait_until(Duration::from_secs(4), "east's 20 sessions seen", || known(&vs_metric(&e, "east/vs1", "connections")) == Some(20.0));
    assert_eq!(b.new_ldnses("lc.gslb.example.", 6), [WEST; 6], "least connections: every new LDNS to west");
    assert_eq!(b.new_ldnses("mc.gslb.example.", 3), [WEST; 3], "spare 30 on east, 40 on west");
    assert_eq!(e.wide_ip("lc.gslb.example.")["last_method"], "least_connections");

    // Both exporters stop: after stale_after the figures are unknown, the chain goes on to round robin.
    hap_east.kill();
    hap_west.kill();
    // Both: while one figure is still known, least_connections picks that VS.
    wait_until(Duration::from_secs(4), "stale figures", || {
        ["east/vs1", "west/vs1"]
            .iter()
            .all(|v| vs_metric(&e, v, "connections")["unknown"]["reason"].as_str().is_some_and(|r| r.contains("stale")))
    });
    let after = b.new_ldnses("lc.gslb.example.", 4);
    assert!(after.contains(&EAST.to_string()) && after.contains(&WEST.to_string()), "round robin: {after:?}");
    let w = e.wide_ip("lc.gslb.example.");
    assert_eq!(w["last_method"], "round_robin", "{w}");
    let skipped = w["skipped"].to_string();
    assert!(skipped.contains("least_connections: no connections for any VS up") && skipped.contains("stale"), "{w}");
    let out = e.ctl_command(&["wide-ips"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    println!("{table}");
    assert!(table.contains("least_connections > round_robin") && table.contains("skipped least_connections"), "{table}");
}

#[test]
fn lowest_cpu_and_lowest_packet_rate_follow_node_exporter() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let b = Bed::new();
    let _be = [http_vs(&b.east, 8080, &[], &b.h.server).unwrap(), http_vs(&b.west, 8080, &[], &b.h.server).unwrap()];
    let _ne = [node_exporter(&b.east, &b.h.server).unwrap(), node_exporter(&b.west, &b.h.server).unwrap()];
    // /proc/stat is the machine's: east reads CPU 0, west CPU 1. /proc/net/dev
    // is the namespace's: each reads its own veth.
    let sac = |name: &str, addr: &str, site: &Site, cpu: u32| {
        let exporter = format!("\n[[exporter]]\nname = \"{name}-node\"\nurl = \"http://{}/metrics\"\ninterval_ms = 500\nstale_after_ms = 2000\n", site.at(9100));
        let metrics = format!(
            "metrics.cpu = {{ exporter = \"{name}-node\", metric = \"node_cpu_seconds_total\", labels = {{ cpu = \"{cpu}\" }} }}\n\
             metrics.packet_rate = {{ exporter = \"{name}-node\", metric = \"node_network_receive_packets_total\", labels = {{ device = \"{}\" }} }}\n",
            site.iface
        );
        exporter + &config::sac(name, addr, site.at(8080), "web", "", &metrics)
    };
    let pool = ["east/vs1", "west/vs1"];
    let cfg = header()
        + &sac("east", EAST, &b.east, 0)
        + &sac("west", WEST, &b.west, 1)
        + &config::dynamic("cpu.gslb.example.", r#""lowest_cpu""#, 60, &pool)
        + &config::dynamic("pps.gslb.example.", r#""lowest_packet_rate""#, 60, &pool);
    let e = EdnsProc::start(&cfg, Some(&b.h.server), &[]).unwrap();
    wait_until(Duration::from_secs(5), "CPU rates", || known(&vs_metric(&e, "west/vs1", "cpu")).is_some());

    // CPU 0 busy for 4 s (bounded): east's CPU share climbs past west's.
    let _spin = std::process::Command::new("taskset")
        .args(["-c", "0", "timeout", "4", "sh", "-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(3), "CPU 0 busier than CPU 1", || {
        match (known(&vs_metric(&e, "east/vs1", "cpu")), known(&vs_metric(&e, "west/vs1", "cpu"))) {
            (Some(a), Some(b)) => a > 0.8 && a > b + 0.2,
            _ => false,
        }
    });
    assert_eq!(b.new_ldnses("cpu.gslb.example.", 4), [WEST; 4], "lowest CPU: west");

    // 3,000 datagrams to east over ~3 s (bounded): its receive rate climbs.
    let flood = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(3000):\n    s.sendto(b'x',({:?},9))\n    time.sleep(0.001)\n",
        b.east.addr.to_string()
    );
    let _flood = b.h.server.cmd("python3").args(["-c", &flood]).spawn().unwrap();
    wait_until(Duration::from_secs(4), "east's packet rate above west's", || {
        match (known(&vs_metric(&e, "east/vs1", "packet_rate")), known(&vs_metric(&e, "west/vs1", "packet_rate"))) {
            (Some(a), Some(b)) => a > 200.0 && a > 10.0 * b.max(1.0),
            _ => false,
        }
    });
    assert_eq!(b.new_ldnses("pps.gslb.example.", 4), [WEST; 4], "lowest packet rate: west");
}

#[test]
fn round_robin_ratio_and_global_availability_with_a_real_client() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let b = Bed::new();
    let _be = [http_vs(&b.east, 8080, &[], &b.h.server).unwrap(), http_vs(&b.west, 8080, &[], &b.h.server).unwrap()];
    let cfg = header()
        + &config::sac("east", EAST, b.east.at(8080), "web", ", weight = 3", "")
        + &config::sac("west", WEST, b.west.at(8080), "web", ", weight = 1", "")
        + &config::dynamic("rr.gslb.example.", r#""round_robin""#, 60, &["east/vs1", "west/vs1"])
        + &config::dynamic("ratio.gslb.example.", r#""ratio""#, 60, &["east/vs1", "west/vs1"])
        + &config::dynamic("ga.gslb.example.", r#""global_availability""#, 60, &["west/vs1", "east/vs1"]);
    let e = EdnsProc::start(&cfg, Some(&b.h.server), &["--iface", &b.h.server_if, "--xdp", "native"]).unwrap();
    let count = |v: &[String], a: &str| v.iter().filter(|x| *x == a).count();
    let rr = b.new_ldnses("rr.gslb.example.", 8);
    assert_eq!((count(&rr, EAST), count(&rr, WEST)), (4, 4), "{rr:?}");
    let ratio = b.new_ldnses("ratio.gslb.example.", 16);
    assert_eq!((count(&ratio, EAST), count(&ratio, WEST)), (12, 4), "weights 3:1: {ratio:?}");
    assert_eq!(b.new_ldnses("ga.gslb.example.", 3), [WEST; 3], "the first VS of the pool that is up");
    e.ctl(&["set-vs", "west/vs1", "down"]).unwrap();
    assert_eq!(b.new_ldnses("ga.gslb.example.", 2), [EAST; 2]);
    assert_eq!(e.wide_ip("ga.gslb.example.")["last_method"], "global_availability");
}
