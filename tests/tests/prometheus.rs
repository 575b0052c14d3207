//! `/metrics` on the control endpoint: OpenMetrics text that promtool
//! (Debian's prometheus package) accepts, counting what the test did —
//! userspace alone on loopback, and with XDP on the veth harness.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use edns_tests::{example_config, kdig, loopback_ports, require_root, workspace, EdnsProc, Netns, VethHarness};

/// GET http://ADDR/metrics (from inside `ns` when given), with `accept`.
fn scrape_as(ns: Option<&Netns>, control: SocketAddr, accept: &str) -> String {
    let script = format!(
        "import urllib.request,sys\nr=urllib.request.Request('http://{control}/metrics',headers={{'Accept':'{accept}'}})\nsys.stdout.write(urllib.request.urlopen(r).read().decode())"
    );
    let mut cmd = match ns {
        Some(n) => n.cmd("python3"),
        None => Command::new("python3"),
    };
    let out = cmd.args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// As Prometheus's text format (what promtool reads).
fn scrape(ns: Option<&Netns>, control: SocketAddr) -> String {
    scrape_as(ns, control, "text/plain")
}

/// `promtool check metrics` on `text`: no error, no lint complaint.
fn promtool_accepts(text: &str) {
    let mut p = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(p.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\n{text}");
}

fn has(text: &str, line: &str) {
    assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
}

#[test]
fn metrics_pass_promtool_and_count_queries_answers_and_states() {
    let (dns, control) = loopback_ports();
    let e = EdnsProc::start(&example_config(dns, control), None, &[]).unwrap();
    let ask = |src: &str, args: &[&str]| kdig(None, dns, Some(src.parse::<IpAddr>().unwrap()), args).unwrap();
    for src in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        ask(src, &["www.gslb.example.", "A"]);
    }
    ask("127.0.0.9", &["shop.gslb.example.", "A"]);
    ask("127.0.0.9", &["shop.gslb.example.", "A"]);
    assert_eq!(ask("127.0.0.9", &["nope.gslb.example.", "A"]).status, "NXDOMAIN");
    ask("127.0.0.9", &["www.gslb.example.", "A", "+tcp"]);
    let text = scrape(None, control);
    promtool_accepts(&text);
    has(&text, "edns_dns_queries_total{transport=\"udp\"} 6");
    has(&text, "edns_dns_queries_total{transport=\"tcp\"} 1");
    has(&text, "edns_dns_responses_total{rcode=\"nxdomain\"} 1");
    has(&text, "edns_dns_responses_total{rcode=\"noerror\"} 6");
    has(&text, "edns_answers_total{wide_ip=\"www.gslb.example.\",mode=\"stripe\",how=\"stripe\"} 4");
    has(&text, "edns_answers_total{wide_ip=\"shop.gslb.example.\",mode=\"dynamic\",how=\"persistence_new\"} 1");
    has(&text, "edns_answers_total{wide_ip=\"shop.gslb.example.\",mode=\"dynamic\",how=\"persistence_hit\"} 1");
    has(&text, "edns_vs_marked_up{vs=\"east/vs1\"} 1.0");
    has(&text, "edns_persistence_records 1");
    has(&text, &format!("edns_build_info{{version=\"{}\"}} 1.0", env!("CARGO_PKG_VERSION")));
    // OpenMetrics to a scraper that asks for it (as Prometheus does).
    let om = scrape_as(None, control, "application/openmetrics-text; version=1.0.0");
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE edns_dns_queries counter"), "{om}");
    // Reloads are counted by outcome; the counters of what stays go on.
    assert!(e.ctl_command(&["reload"]).status().unwrap().success());
    std::fs::write(&e.config, "[server]\nlisten = 5\n").unwrap();
    assert!(!e.ctl_command(&["reload"]).status().unwrap().success());
    let text = scrape(None, control);
    promtool_accepts(&text);
    has(&text, "edns_config_reloads_total{result=\"ok\"} 1");
    has(&text, "edns_config_reloads_total{result=\"refused\"} 1");
    has(&text, "edns_dataplane_takeovers_total 0");
    has(&text, "edns_dns_queries_total{transport=\"udp\"} 6");
    has(&text, "edns_answers_total{wide_ip=\"www.gslb.example.\",mode=\"stripe\",how=\"stripe\"} 4");
    drop(e);
}

#[test]
fn with_xdp_the_data_planes_verdicts_are_in_the_metrics() {
    require_root();
    let h = VethHarness::new().unwrap();
    let cfg = std::fs::read_to_string(workspace().join("examples/demo.toml")).unwrap();
    let e = EdnsProc::start(&cfg, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let server = SocketAddr::new(h.server_ip, 53);
    for _ in 0..3 {
        kdig(Some(&h.client), server, None, &["www.gslb.example.", "A"]).unwrap();
    }
    kdig(Some(&h.client), server, None, &["nope.gslb.example.", "A"]).unwrap();
    let text = scrape(Some(&h.server), e.control);
    promtool_accepts(&text);
    has(&text, "edns_xdp_verdicts_total{verdict=\"answered\",reason=\"stripe\"} 3");
    has(&text, "edns_xdp_verdicts_total{verdict=\"pass\",reason=\"unknown_name\"} 1");
    assert!(text.lines().any(|l| l.starts_with("edns_xdp_packets_total ")), "{text}");
}
