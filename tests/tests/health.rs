//! Health probes against real services in site namespaces, observed through
//! DNS answers (kdig from several LDNS addresses in the client namespace),
//! in userspace mode and with XDP attached.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use edns_tests::sites::{config, http_vs, median, test_pki, Site};
use edns_tests::{kdig, require_root, tmpdir, wait_until, EdnsProc, VethHarness};

const EAST: &str = "192.0.2.10";
const WEST: &str = "198.51.100.20";

/// Probe timing of the failover tests.
const INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 100;
const UP_AFTER: u64 = 2;
const DOWN_AFTER: u64 = 2;

fn ldns_addrs(h: &VethHarness, n: u8) -> Vec<IpAddr> {
    let v: Vec<IpAddr> = (0..n).map(|i| IpAddr::from([198, 18, 40, 10 + i])).collect();
    h.add_client_addrs(&v).unwrap();
    v
}

struct Failover {
    h: VethHarness,
    east: Site,
    _west: Site,
    e: EdnsProc,
    ldns: Vec<IpAddr>,
}

fn failover_setup(xdp: bool) -> (Failover, edns_tests::sites::Service, edns_tests::sites::Service) {
    let h = VethHarness::new().unwrap();
    let east = Site::new(&h.server, 0).unwrap();
    let west = Site::new(&h.server, 1).unwrap();
    let east_http = http_vs(&east, 8080, &[], &h.server).unwrap();
    let west_http = http_vs(&west, 8080, &[], &h.server).unwrap();
    let config = format!(
        r#"{}
[[monitor]]
name = "web"
type = "http"
interval_ms = {INTERVAL_MS}
timeout_ms = {TIMEOUT_MS}
up_after = {UP_AFTER}
down_after = {DOWN_AFTER}
path = "/health"
expect_status = 200
expect_body = "ok"
{}{}
[[wide_ip]]
name = "www.gslb.example."
mode = "stripe"
pool = ["east/vs1", "west/vs1"]
"#,
        config::server("127.0.0.1:8053"),
        config::sac("east", EAST, east.at(8080), "web", "", ""),
        config::sac("west", WEST, west.at(8080), "web", "", ""),
    );
    let extra: &[&str] = if xdp { &["--iface", &h.server_if, "--xdp", "native"] } else { &[] };
    let e = EdnsProc::start(&config, Some(&h.server), extra).unwrap();
    let ldns = ldns_addrs(&h, 6);
    wait_until(Duration::from_secs(5), "both VSs probed up", || {
        ["east/vs1", "west/vs1"].iter().all(|n| {
            let v = e.vs(n);
            v["probes"].as_u64().unwrap() >= 1 && v["marked_up"] == true && v["available"] == true
        })
    });
    (Failover { h, east, _west: west, e, ldns }, east_http, west_http)
}

impl Failover {
    fn ask(&self, src: IpAddr) -> String {
        let d = kdig(Some(&self.h.client), SocketAddr::new(self.h.server_ip, 53), Some(src), &["www.gslb.example.", "A"]).unwrap();
        d.answer().to_string()
    }
}

/// Kills and restarts east's HTTP server 10 times; each time, LDNSes whose
/// stripe lands on east must get west within down_after × interval +
/// timeout, and east again after up_after successes. Prints the medians.
fn kill_and_restart_cycles(xdp: bool) {
    require_root();
    let (f, mut east_http, _west_http) = failover_setup(xdp);
    // The stripe over two VSs: even addresses -> east, odd -> west.
    let on_east: Vec<IpAddr> = f.ldns.iter().copied().filter(|a| f.ask(*a) == EAST).collect();
    assert_eq!(on_east.len(), 3, "half of the LDNSes stripe to east");
    let before = f.e.ctl(&["stats"]).unwrap();
    let bound = Duration::from_millis(DOWN_AFTER * INTERVAL_MS + TIMEOUT_MS);
    let (mut downs, mut ups) = (Vec::new(), Vec::new());
    for run in 0..10 {
        east_http.kill();
        let t0 = Instant::now();
        wait_until(Duration::from_secs(3), "east avoided", || f.ask(on_east[run % 3]) == WEST);
        let down = t0.elapsed();
        // kdig's own start and query time, ~20 ms, is inside the measurement.
        assert!(down <= bound + Duration::from_millis(150), "run {run}: failover took {down:?}, bound {bound:?}");
        downs.push(down);
        for a in &on_east {
            assert_eq!(f.ask(*a), WEST, "run {run}: LDNS {a} still sent to the dead VS");
        }
        wait_until(Duration::from_secs(3), "east marked down", || f.e.vs("east/vs1")["probe_marked_up"] == false);
        // From before the start: a probe may succeed while it starts.
        let t1 = Instant::now();
        east_http = http_vs(&f.east, 8080, &[], &f.h.server).unwrap();
        wait_until(Duration::from_secs(3), "east back", || f.ask(on_east[run % 3]) == EAST);
        let up = t1.elapsed();
        // One success makes it available; marked (and chosen) only at the up_after-th.
        let min_up = Duration::from_millis((UP_AFTER - 1) * INTERVAL_MS * 9 / 10);
        assert!(up >= min_up, "run {run}: back after {up:?}, before {UP_AFTER} successes could have happened");
        assert!(up <= Duration::from_millis(UP_AFTER * INTERVAL_MS * 12 / 10 + TIMEOUT_MS + 300), "run {run}: back only after {up:?}");
        ups.push(up);
    }
    let mode = if xdp { "XDP" } else { "userspace" };
    println!(
        "{mode}: kill -> first answer without the VS: median {:?} (min {:?}, max {:?}) over 10 runs; restart -> first answer with it: median {:?}",
        median(downs.clone()),
        downs.iter().min().unwrap(),
        downs.iter().max().unwrap(),
        median(ups)
    );
    let after = f.e.ctl(&["stats"]).unwrap();
    if xdp {
        // Every answer came from the kernel, reading the probe results from the maps.
        assert_eq!(after["dns"]["queries"], before["dns"]["queries"], "no query reached userspace: {after}");
        assert!(after["xdp"]["answered_stripe"].as_u64().unwrap() > before["xdp"]["answered_stripe"].as_u64().unwrap() + 40);
    }
    let log = f.e.log_text();
    assert!(log.contains("VS state changed") && log.contains("MarkedDown") && log.contains("consecutive failures (down_after 2)"), "{log}");
}

#[test]
fn a_killed_vs_is_avoided_within_the_probe_bound_and_returns_after_up_after_successes_userspace() {
    kill_and_restart_cycles(false);
}

#[test]
fn a_killed_vs_is_avoided_within_the_probe_bound_and_returns_after_up_after_successes_xdp() {
    kill_and_restart_cycles(true);
}

/// Every monitor type judges a real service: tcp connect, http body,
/// https with the certificate checked (self-signed fails; trusted through
/// ca_file passes; tls_verify = false passes), dns rcode and address. A VS
/// flapping on every probe never changes its marked state; a VS starting
/// `initial = "down"` whose service is dead is never answered.
#[test]
fn each_monitor_type_judges_a_real_service_and_flapping_never_changes_marked() {
    require_root();
    let h = VethHarness::new().unwrap();
    let site = Site::new(&h.server, 0).unwrap();
    let dir = tmpdir();
    let (ca, cert, key) = test_pki(&dir, "vs.test", site.addr).unwrap();
    let (ca, c, k) = (ca.to_str().unwrap(), cert.to_str().unwrap(), key.to_str().unwrap());
    let _plain = http_vs(&site, 8080, &[], &h.server).unwrap();
    let _wrong_body = http_vs(&site, 8081, &["--body", "degraded"], &h.server).unwrap();
    let _tls = http_vs(&site, 8443, &["--tls", c, k], &h.server).unwrap();
    let _flap = http_vs(&site, 8082, &["--flap"], &h.server).unwrap();
    // A real DNS server as the target of the dns monitors: another edns.
    let dns_cfg = edns_tests::example_config("203.0.113.2:5300".parse().unwrap(), "127.0.0.1:8054".parse().unwrap());
    let _dns = EdnsProc::start(&dns_cfg, Some(&site.ns), &[]).unwrap();
    let t = |p: u16| site.at(p).to_string();
    let monitors = format!(
        r#"
[[monitor]]
name = "tcp"
type = "tcp"
interval_ms = 200
timeout_ms = 150

[[monitor]]
name = "body"
type = "http"
interval_ms = 200
timeout_ms = 150
path = "/health"
expect_body = "ok"

[[monitor]]
name = "strict_tls"
type = "https"
interval_ms = 200
timeout_ms = 150
path = "/health"

[[monitor]]
name = "ca_tls"
type = "https"
interval_ms = 200
timeout_ms = 150
host = "vs.test"
ca_file = "{ca}"
path = "/health"

[[monitor]]
name = "lax_tls"
type = "https"
interval_ms = 200
timeout_ms = 150
tls_verify = false
path = "/health"

[[monitor]]
name = "dns_ok"
type = "dns"
interval_ms = 200
timeout_ms = 150
query_name = "www.gslb.example."
expect_rcode = "NOERROR"
expect_address = "198.51.100.20"

[[monitor]]
name = "dns_wrong"
type = "dns"
interval_ms = 200
timeout_ms = 150
query_name = "www.gslb.example."
expect_address = "192.0.2.77"

[[monitor]]
name = "flappy"
type = "http"
interval_ms = 100
timeout_ms = 80
up_after = 2
down_after = 2
path = "/health"

[[monitor]]
name = "cold"
type = "http"
interval_ms = 200
timeout_ms = 150
initial = "down"
up_after = 1
"#
    );
    // Each VS in a SAC of its own, so the answer names it.
    let vss = [
        ("tcp", "tcp", t(8080), true),
        ("body_ok", "body", t(8080), true),
        ("body_bad", "body", t(8081), false),
        ("strict", "strict_tls", t(8443), false),
        ("ca", "ca_tls", t(8443), true),
        ("lax", "lax_tls", t(8443), true),
        ("dns_ok", "dns_ok", t(5300), true),
        ("dns_wrong", "dns_wrong", t(5300), false),
        ("flap", "flappy", t(8082), true),
        ("cold", "cold", t(8099), false),
    ];
    let mut cfg = config::server("127.0.0.1:8053") + &monitors;
    for (i, (name, mon, target, _)) in vss.iter().enumerate() {
        cfg += &format!(
            "\n[[sac]]\nname = \"{name}\"\naddress = \"192.0.2.{}\"\nvirtual_servers = [{{ name = \"vs\", target = \"{target}\", monitor = \"{mon}\" }}]\n",
            100 + i
        );
        // global_availability: the VS when up, else the all-down fallback.
        cfg += &format!(
            "\n[[wide_ip]]\nname = \"{name}.gslb.example.\"\nmode = \"dynamic\"\nmethod = \"global_availability\"\npersistence_ttl = 1\nall_down = \"fallback\"\nfallback_address = \"203.0.113.200\"\npool = [\"{name}/vs\"]\n"
        );
    }
    let e = EdnsProc::start(&cfg, Some(&h.server), &[]).unwrap();
    // Enough probes for every threshold: 2 s of 200 ms (flappy: 100 ms) intervals.
    let mut flap_marked = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        let f = e.vs("flap/vs");
        flap_marked.push(f["probe_marked_up"] == true);
        assert!(f["consecutive_failures"].as_u64().unwrap() <= 1, "{f}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(flap_marked.iter().all(|m| *m), "a VS flapping on every probe was marked down");
    let flap = e.vs("flap/vs");
    assert!(flap["probes"].as_u64().unwrap() >= 12, "{flap}");
    let ldns = ldns_addrs(&h, 2);
    for (i, (name, _, _, up)) in vss.iter().enumerate() {
        let v = e.vs(&format!("{name}/vs"));
        assert!(v["probes"].as_u64().unwrap() >= 3, "{name}: {v}");
        if *name != "flap" {
            assert_eq!(v["marked_up"] == true && v["available"] == true, *up, "{name}: {v}");
        }
        for src in &ldns {
            let d = kdig(Some(&h.client), SocketAddr::new(h.server_ip, 53), Some(*src), &[&format!("{name}.gslb.example."), "A"]).unwrap();
            let want = if *up || *name == "flap" && v["available"] == true { format!("192.0.2.{}", 100 + i) } else { "203.0.113.200".into() };
            if *name != "flap" {
                assert_eq!(d.answer(), want, "{name} from {src}: {v}");
            }
        }
    }
    let detail = |n: &str| e.vs(n)["last_probe"]["detail"].as_str().unwrap().to_string();
    assert!(detail("strict/vs").to_lowercase().contains("certificate"), "{}", detail("strict/vs"));
    assert!(detail("body_bad/vs").contains("lacks \"ok\""), "{}", detail("body_bad/vs"));
    assert!(detail("dns_wrong/vs").contains("lacks 192.0.2.77"), "{}", detail("dns_wrong/vs"));
    assert!(detail("cold/vs").contains("refused"), "{}", detail("cold/vs"));
    let log = e.log_text();
    assert!(!log.lines().any(|l| l.contains("flap/vs") && l.contains("Marked")), "flapping changed marked:\n{log}");
}

/// The admin state wins over probes until `auto`: down avoids a healthy VS;
/// drain keeps a timely persistence record on it but sends new LDNSes
/// elsewhere. Observed through DNS with XDP attached (persistence hits are
/// kernel answers).
#[test]
fn admin_down_and_drain_win_over_probes_until_auto() {
    require_root();
    let h = VethHarness::new().unwrap();
    let east = Site::new(&h.server, 0).unwrap();
    let west = Site::new(&h.server, 1).unwrap();
    let _e1 = http_vs(&east, 8080, &[], &h.server).unwrap();
    let _w1 = http_vs(&west, 8080, &[], &h.server).unwrap();
    let cfg = config::server("127.0.0.1:8053")
        + "\n[[monitor]]\nname = \"web\"\ntype = \"http\"\ninterval_ms = 200\ntimeout_ms = 100\npath = \"/health\"\n"
        + &config::sac("east", EAST, east.at(8080), "web", "", "")
        + &config::sac("west", WEST, west.at(8080), "web", "", "")
        + &config::dynamic("shop.gslb.example.", "\"global_availability\"", 600, &["east/vs1", "west/vs1"]);
    let e = EdnsProc::start(&cfg, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let ldns = ldns_addrs(&h, 4);
    let ask = |src: IpAddr| {
        kdig(Some(&h.client), SocketAddr::new(h.server_ip, 53), Some(src), &["shop.gslb.example.", "A"]).unwrap().answer().to_string()
    };
    wait_until(Duration::from_secs(5), "probes", || e.vs("east/vs1")["probes"].as_u64().unwrap() >= 2);
    assert_eq!(ask(ldns[0]), EAST, "global availability: the first VS up");

    e.ctl(&["set-vs", "east/vs1", "drain"]).unwrap();
    let v = e.vs("east/vs1");
    assert_eq!((v["admin"].as_str(), v["marked_up"].as_bool(), v["available"].as_bool()), (Some("drain"), Some(false), Some(true)));
    let hits_before = e.ctl(&["stats"]).unwrap()["xdp"]["answered_persistence"].as_u64().unwrap();
    assert_eq!(ask(ldns[0]), EAST, "draining: the timely record keeps its VS");
    assert_eq!(e.ctl(&["stats"]).unwrap()["xdp"]["answered_persistence"].as_u64().unwrap(), hits_before + 1, "a kernel hit");
    assert_eq!(ask(ldns[1]), WEST, "draining: no new LDNSes");

    e.ctl(&["set-vs", "east/vs1", "down"]).unwrap();
    std::thread::sleep(Duration::from_millis(500)); // probes keep succeeding
    assert_eq!(e.vs("east/vs1")["probe_marked_up"], true);
    assert_eq!(ask(ldns[0]), WEST, "admin down wins over healthy probes");

    e.ctl(&["set-vs", "east/vs1", "auto"]).unwrap();
    assert_eq!(ask(ldns[2]), EAST, "auto: probes decide again");
    let log = e.log_text();
    assert!(log.contains("cause=\"admin\"") || log.contains("cause=admin"), "{log}");
}

/// Every all-down policy answered to a real client, with XDP attached (the
/// kernel passes the non-round-robin policies up): the VS's service is dead
/// and its monitor starts down.
#[test]
fn every_all_down_policy_answers_as_documented() {
    require_root();
    let h = VethHarness::new().unwrap();
    let site = Site::new(&h.server, 0).unwrap();
    let mut cfg = config::server("127.0.0.1:8053")
        + &format!(
            r#"
[[monitor]]
name = "web"
type = "http"
interval_ms = 200
timeout_ms = 100
initial = "down"

[[sac]]
name = "east"
address = "{EAST}"
virtual_servers = [{{ name = "vs1", target = "{}", monitor = "web" }}, {{ name = "vs2", target = "{}", monitor = "web" }}]
"#,
            site.at(8080),
            site.at(8081)
        );
    let policies = [
        ("stripe-rr", "stripe", ""),
        ("consistent-rr", "stripe_consistent", ""),
        ("topo-rr", "topology", "all_down = \"round_robin\""),
        ("topo-fallback", "topology", "all_down = \"fallback\"\nfallback_address = \"203.0.113.99\"\nfallback_address6 = \"2001:db8::99\""),
        ("ring-refused", "stripe_consistent", "all_down = \"refused\""),
        ("dyn-servfail", "dynamic", "all_down = \"servfail\"\nmethod = \"round_robin\"\npersistence_ttl = 60"),
        ("dyn-rr", "dynamic", "method = \"round_robin\"\npersistence_ttl = 60"),
    ];
    for (name, mode, extra) in policies {
        cfg += &format!("\n[[wide_ip]]\nname = \"{name}.gslb.example.\"\nmode = \"{mode}\"\n{extra}\npool = [\"east/vs1\", \"east/vs2\"]\n");
    }
    let e = EdnsProc::start(&cfg, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let src = ldns_addrs(&h, 1)[0];
    let ask = |name: &str, t: &str| kdig(Some(&h.client), SocketAddr::new(h.server_ip, 53), Some(src), &[&format!("{name}.gslb.example."), t]).unwrap();
    for name in ["stripe-rr", "consistent-rr", "topo-rr", "dyn-rr"] {
        assert_eq!(ask(name, "A").answer(), EAST, "{name}: round robin over the pool regardless of state");
    }
    let fb = ask("topo-fallback", "A");
    assert_eq!((fb.status.as_str(), fb.answer()), ("NOERROR", "203.0.113.99"));
    assert_eq!(ask("topo-fallback", "AAAA").answer(), "2001:db8::99");
    assert_eq!(ask("ring-refused", "A").status, "REFUSED");
    assert_eq!(ask("dyn-servfail", "A").status, "SERVFAIL");
    let s = e.ctl(&["stats"]).unwrap();
    assert!(s["xdp"]["pass_all_down"].as_u64().unwrap() >= 3, "{s}");
    assert!(s["xdp"]["answered_fallback_rr"].as_u64().unwrap() >= 3, "{s}");
}
