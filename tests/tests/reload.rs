//! Live reload (SIGHUP, `edns ctl reload`): a changed config is served
//! without a restart — new wide IPs answer, removed ones go, records and VS
//! states of what stays are kept (also when every id moved), records of a
//! removed VS are dropped and counted; a bad config is refused with file
//! and line and the running one keeps serving; under a fixed-rate load
//! with XDP attached no query goes unanswered across reloads.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use edns_tests::{example_config, kdig, load, loopback_ports, require_root, wait_until, workspace, EdnsProc, PinnedDataPlane, VethHarness};

/// `edns ctl reload` (text), and whether it succeeded.
fn ctl_reload(e: &EdnsProc) -> (bool, String) {
    let out = e.ctl_command(&["reload"]).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// A SAC first (every VS id moves), a wide IP first (every wide IP id
/// moves), geo removed, west/vs1 out of shop's pool.
fn moved(config: &str) -> String {
    config
        .replacen("[[sac]]\nname = \"east\"", "[[sac]]\nname = \"north\"\naddress = \"192.0.2.99\"\nvirtual_servers = [{ name = \"vs1\" }]\n\n[[sac]]\nname = \"east\"", 1)
        .replacen("[[wide_ip]]\nname = \"www.gslb.example.\"", "[[wide_ip]]\nname = \"new.gslb.example.\"\nmode = \"stripe\"\npool = [\"north/vs1\"]\n\n[[wide_ip]]\nname = \"www.gslb.example.\"", 1)
        .replace("[[wide_ip]]\nname = \"geo.gslb.example.\"\nmode = \"topology\"\npool = [\"east/vs1\", \"west/vs1\"]\n", "")
        .replace("persistence_ttl = 600\npool = [\"east/vs1\", \"west/vs1\"]", "persistence_ttl = 600\npool = [\"east/vs1\", \"north/vs1\"]")
}

fn stat(e: &EdnsProc, name: &str) -> u64 {
    e.ctl(&["stats"]).unwrap()["operations"][name].as_u64().unwrap()
}

#[test]
fn a_reload_serves_the_new_config_and_keeps_records_and_states_by_name() {
    let (dns, control) = loopback_ports();
    let cfg = example_config(dns, control);
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    let ask = |src: &str, name: &str| kdig(None, dns, Some(src.parse::<IpAddr>().unwrap()), &[name, "A"]).unwrap();
    let ldns: Vec<String> = (1..=6).map(|i| format!("127.0.9.{i}")).collect();
    for l in &ldns {
        ask(l, "shop.gslb.example.");
    }
    let before = e.records();
    let on_west = before.iter().filter(|r| r.2 == "west/vs1").count();
    assert!(on_west > 0 && on_west < before.len(), "{before:?}");
    e.ctl(&["set-vs", "east/vs2", "drain"]).unwrap();

    let new_cfg = moved(&cfg);
    assert!(new_cfg.contains("north") && !new_cfg.contains("geo.gslb"), "{new_cfg}");
    std::fs::write(&e.config, &new_cfg).unwrap();
    let (ok, text) = ctl_reload(&e);
    assert!(ok, "{text}");
    assert!(text.contains("added new.gslb.example.") && text.contains("removed geo.gslb.example.") && text.contains("added north/vs1"), "{text}");
    assert!(text.contains(&format!("dropped (their wide IP or VS went): {on_west}")), "{text}");

    assert_eq!(ask("127.0.9.1", "new.gslb.example.").answer(), "192.0.2.99");
    assert_eq!(ask("127.0.9.1", "geo.gslb.example.").status, "NXDOMAIN");
    let kept: Vec<_> = before.iter().filter(|r| r.2 == "east/vs1").cloned().collect();
    assert_eq!(e.records(), kept, "east/vs1's records kept by name; west/vs1 left shop's pool");
    for (_, l, _) in &kept {
        assert_eq!(ask(l, "shop.gslb.example.").answer(), "192.0.2.10", "{l} keeps its SAC");
    }
    assert_eq!(e.vs("east/vs2")["admin"], "drain", "admin overrides are kept");
    assert_eq!(stat(&e, "reloads"), 1);
    assert_eq!(stat(&e, "reload_dropped_records"), on_west as u64);

    // SIGHUP does the same: back to the first config.
    std::fs::write(&e.config, &cfg).unwrap();
    unsafe { libc::kill(e.pid() as i32, libc::SIGHUP) };
    wait_until(Duration::from_secs(5), "SIGHUP reload", || stat(&e, "reloads") == 2);
    assert_eq!(ask("127.0.9.1", "new.gslb.example.").status, "NXDOMAIN");
    assert_eq!(ask("127.1.0.1", "geo.gslb.example.").answer(), "192.0.2.10");
    assert_eq!(e.records(), kept, "records kept across the second reload too");
}

#[test]
fn a_bad_config_is_refused_with_file_and_line_and_the_running_one_stays() {
    let (dns, control) = loopback_ports();
    let cfg = example_config(dns, control);
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    let ask = |name: &str| kdig(None, dns, Some("127.0.0.1".parse().unwrap()), &[name, "A"]).unwrap();
    let www = ask("www.gslb.example.").answer().to_string();

    let bad = cfg.replace("pool = [\"east/vs1\", \"east/vs2\", \"west/vs1\"]", "pool = [\"east/vs1\", \"east/vs9\"]");
    std::fs::write(&e.config, &bad).unwrap();
    let line = bad.lines().position(|l| l.contains("east/vs9")).unwrap() + 1;
    let (ok, text) = ctl_reload(&e);
    assert!(!ok);
    assert!(text.contains(&format!("{}:{line}:", e.config.display())) && text.contains("names no virtual server"), "{text}");
    // The same through SIGHUP: logged, counted, nothing changes.
    unsafe { libc::kill(e.pid() as i32, libc::SIGHUP) };
    wait_until(Duration::from_secs(5), "SIGHUP refused", || stat(&e, "reloads_refused") == 2);
    assert!(e.log_text().contains("reload refused: the running config stays"), "{}", e.log_text());
    // A change that needs a restart is refused with the reason.
    std::fs::write(&e.config, cfg.replace(&dns.to_string(), &SocketAddr::new(dns.ip(), dns.port() + 1).to_string())).unwrap();
    let (ok, text) = ctl_reload(&e);
    assert!(!ok && text.contains("server.listen changed, which needs a restart"), "{text}");
    assert_eq!(stat(&e, "reloads"), 0);
    assert_eq!(stat(&e, "reloads_refused"), 3);
    assert_eq!(ask("www.gslb.example.").answer(), www);
    assert_eq!(ask("geo.gslb.example.").status, "NOERROR");
}

#[test]
fn xdp_reloads_under_load_lose_no_query_and_move_ids_with_records_kept() {
    require_root();
    let h = VethHarness::new().unwrap();
    let ldns: Vec<IpAddr> = (10..20).map(|i| format!("198.18.7.{i}").parse().unwrap()).collect();
    h.add_client_addrs(&ldns).unwrap();
    let pinned = PinnedDataPlane::new().unwrap();
    let cfg = std::fs::read_to_string(workspace().join("examples/demo.toml")).unwrap();
    let e = pinned.start_bin(&edns_tests::edns_bin(false), &cfg, &h, &[]).unwrap();
    let server = SocketAddr::new(h.server_ip, 53);
    for l in &ldns {
        kdig(Some(&h.client), server, Some(*l), &["shop.gslb.example.", "A"]).unwrap();
    }
    let before = e.records();
    let kept: Vec<_> = before.iter().filter(|r| r.2 == "east/vs1").cloned().collect();

    // 2,000 q/s for 8 s of stripe, persistence hits and names XDP passes up
    // (NXDOMAIN from the controller), while the config is reloaded 4 times,
    // each time moving every id.
    let gen = load::start(&h, &load::stripe_hits_and_passed_up(&ldns), 2000, 8).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let mut took = Vec::new();
    for i in 0..4 {
        std::fs::write(&e.config, if i % 2 == 0 { moved(&cfg) } else { cfg.clone() }).unwrap();
        let t = Instant::now();
        let (ok, text) = ctl_reload(&e);
        assert!(ok, "{text}");
        took.push(t.elapsed().as_millis());
        std::thread::sleep(Duration::from_millis(1000));
    }
    let k = load::Report::wait(gen).unwrap();
    let summary = k.summary(&["stripe", "persistence_hit", "passed_up"]);
    println!("4 reloads under load (each {took:?} ms as ctl saw it): {summary}");
    for kind in ["stripe", "persistence_hit", "passed_up"] {
        assert!(k.sent(kind) > 500, "{summary}");
        assert_eq!(k.unanswered(kind), 0, "{kind}: {summary}");
    }
    // Back on the first config: the records on east/vs1 survived two id moves.
    let after: Vec<_> = e.records().into_iter().filter(|r| r.2 == "east/vs1").collect();
    for r in &kept {
        assert!(after.contains(r), "{r:?} kept: {after:?}");
    }
    // After a reload to the moved config the new wide IP is answered in XDP.
    std::fs::write(&e.config, moved(&cfg)).unwrap();
    assert!(ctl_reload(&e).0);
    let stripe_before = e.ctl(&["stats"]).unwrap()["xdp"]["answered_stripe"].as_u64().unwrap();
    assert_eq!(kdig(Some(&h.client), server, Some(ldns[0]), &["new.gslb.example.", "A"]).unwrap().answer(), "192.0.2.99");
    assert_eq!(e.ctl(&["stats"]).unwrap()["xdp"]["answered_stripe"].as_u64().unwrap(), stripe_before + 1, "answered by the new program");
    assert_eq!(kdig(Some(&h.client), server, Some(ldns[0]), &["geo.gslb.example.", "A"]).unwrap().status, "NXDOMAIN");
}

#[test]
fn a_groups_records_follow_its_name_when_a_reload_renumbers_the_groups() {
    let (dns, control) = loopback_ports();
    let groups = |first: &str, second: &str| {
        let g = |n: &str, net: &str| format!("\n[[ldns_group]]\nname = \"{n}\"\nmembers = [\"{net}\"]\n");
        let net = |n: &str| if n == "alpha" { "127.0.5.0/24" } else { "127.0.6.0/24" };
        g(first, net(first)) + &g(second, net(second))
    };
    let cfg = example_config(dns, control);
    let e = EdnsProc::start(&(cfg.clone() + &groups("alpha", "beta")), None, &[]).unwrap();
    let ask = |src: &str| kdig(None, dns, Some(src.parse::<IpAddr>().unwrap()), &["shop.gslb.example.", "A"]).unwrap().answer().to_string();
    let (a, b) = (ask("127.0.5.1"), ask("127.0.6.1"));
    assert_ne!(a, b, "round robin gave the two groups different SACs");
    let before = e.records();
    assert_eq!(before.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["group alpha", "group beta"], "{before:?}");
    // Swapped: alpha is now id 2, beta id 1.
    std::fs::write(&e.config, cfg + &groups("beta", "alpha")).unwrap();
    let (ok, text) = ctl_reload(&e);
    assert!(ok, "{text}");
    assert_eq!(e.records(), before, "each group keeps its own record");
    assert_eq!((ask("127.0.5.2"), ask("127.0.6.2")), (a, b), "members keep their group's SAC");
}
