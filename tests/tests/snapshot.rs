//! Persistence that survives a restart (or a reboot: times are wall-clock
//! in the file): records written at shutdown are loaded at start; a
//! corrupt or truncated snapshot is reported and skipped; expired records
//! are not loaded.

use std::net::IpAddr;

use edns_tests::{example_config, kdig, loopback_ports, tmpdir, wait_until, EdnsProc};

fn config(snapshot: &std::path::Path, ttl: u32) -> (String, std::net::SocketAddr) {
    let (dns, control) = loopback_ports();
    let c = example_config(dns, control)
        .replacen("[server]\n", &format!("[server]\npersistence_snapshot = {:?}\n", snapshot.display().to_string()), 1)
        .replace("persistence_ttl = 600", &format!("persistence_ttl = {ttl}"));
    (c, dns)
}

fn records(e: &EdnsProc) -> Vec<(String, String, u64)> {
    let mut v: Vec<_> = e
        .ctl(&["records"])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["ldns"].as_str().unwrap().to_string(), r["vs"].as_str().unwrap().to_string(), r["hits"].as_u64().unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn records_survive_a_restart_through_the_snapshot_file() {
    let dir = tmpdir();
    let snap = dir.join("records.json");
    let (cfg, dns) = config(&snap, 600);
    let ldns: Vec<IpAddr> = ["127.0.3.1", "127.0.3.2", "127.0.3.3"].iter().map(|s| s.parse().unwrap()).collect();
    let mut e = EdnsProc::start(&cfg, None, &[]).unwrap();
    let answers: Vec<String> = ldns.iter().map(|l| kdig(None, dns, Some(*l), &["shop.gslb.example.", "A"]).unwrap().answer().to_string()).collect();
    kdig(None, dns, Some(ldns[0]), &["shop.gslb.example.", "A"]).unwrap();
    let before = records(&e);
    assert_eq!(before.len(), 3);
    e.stop();
    assert!(snap.exists(), "written at shutdown");
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    assert_eq!(records(&e), before, "the same records, VSs and hits");
    assert!(e.log_text().contains("persistence snapshot loaded"), "{}", e.log_text());
    for (l, want) in ldns.iter().zip(&answers) {
        assert_eq!(kdig(None, dns, Some(*l), &["shop.gslb.example.", "A"]).unwrap().answer(), want, "{l} keeps its SAC");
    }
}

#[test]
fn a_corrupt_or_truncated_snapshot_is_reported_and_skipped() {
    let dir = tmpdir();
    let snap = dir.join("records.json");
    let (cfg, dns) = config(&snap, 600);
    let mut e = EdnsProc::start(&cfg, None, &[]).unwrap();
    for l in ["127.0.4.1", "127.0.4.2"] {
        kdig(None, dns, Some(l.parse().unwrap()), &["shop.gslb.example.", "A"]).unwrap();
    }
    e.stop();
    let whole = std::fs::read(&snap).unwrap();
    for (what, bytes) in [("truncated", whole[..whole.len() / 2].to_vec()), ("corrupt", b"\x00\xffnot json".to_vec()), ("another version", String::from_utf8(whole.clone()).unwrap().replacen("\"version\":1", "\"version\":99", 1).into_bytes())] {
        std::fs::write(&snap, &bytes).unwrap();
        let mut e = EdnsProc::start(&cfg, None, &[]).unwrap();
        assert!(e.log_text().contains("persistence snapshot skipped"), "{what}: {}", e.log_text());
        assert!(records(&e).is_empty(), "{what}: nothing half-loaded");
        assert_eq!(kdig(None, dns, Some("127.0.4.9".parse().unwrap()), &["www.gslb.example.", "A"]).unwrap().status, "NOERROR", "{what}: serving");
        e.stop();
    }
}

#[test]
fn expired_records_are_not_loaded() {
    let dir = tmpdir();
    let snap = dir.join("records.json");
    let (cfg, dns) = config(&snap, 1);
    let mut e = EdnsProc::start(&cfg, None, &[]).unwrap();
    kdig(None, dns, Some("127.0.5.1".parse().unwrap()), &["shop.gslb.example.", "A"]).unwrap();
    e.stop();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    wait_until(std::time::Duration::from_secs(2), "the load logged", || e.log_text().contains("persistence snapshot loaded"));
    assert!(e.log_text().contains("expired=1"), "{}", e.log_text());
    assert!(records(&e).is_empty());
}

#[test]
fn the_periodic_snapshot_survives_a_crash() {
    let dir = tmpdir();
    let snap = dir.join("records.json");
    let (cfg, dns) = config(&snap, 600);
    let cfg = cfg.replacen("[server]\n", "[server]\nsnapshot_interval_secs = 1\n", 1);
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    kdig(None, dns, Some("127.0.6.1".parse().unwrap()), &["shop.gslb.example.", "A"]).unwrap();
    let before = records(&e);
    wait_until(std::time::Duration::from_secs(5), "a periodic snapshot", || std::fs::read_to_string(&snap).is_ok_and(|t| t.contains("shop.gslb.example.")));
    e.kill_hard();
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    assert_eq!(records(&e), before, "SIGKILL lost nothing the last snapshot had");
}

#[test]
fn a_groups_record_follows_its_name_when_the_restarted_config_renumbers_the_groups() {
    let dir = tmpdir();
    let snap = dir.join("records.json");
    let (cfg, dns) = config(&snap, 600);
    let group = |n: &str, net: &str| format!("\n[[ldns_group]]\nname = \"{n}\"\nmembers = [\"{net}\"]\n");
    let (alpha, beta) = (group("alpha", "127.0.5.0/24"), group("beta", "127.0.6.0/24"));
    let mut e = EdnsProc::start(&format!("{cfg}{alpha}{beta}"), None, &[]).unwrap();
    let ask = |src: &str| kdig(None, dns, Some(src.parse().unwrap()), &["shop.gslb.example.", "A"]).unwrap().answer().to_string();
    let (a, b) = (ask("127.0.5.1"), ask("127.0.6.1"));
    assert_ne!(a, b);
    let before = e.records();
    e.stop();
    // beta first: the ids swap.
    let e = EdnsProc::start(&format!("{cfg}{beta}{alpha}"), None, &[]).unwrap();
    assert_eq!(e.records(), before);
    assert_eq!((ask("127.0.5.2"), ask("127.0.6.2")), (a, b), "members keep their group's SAC");
}
