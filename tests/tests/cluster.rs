//! The virtual EDNS (Fig. 4): three edns nodes, each in its own namespace
//! with XDP attached, on one bridge; kdig asks them from a client namespace
//! with several LDNS addresses. Persistence records and probe results are
//! shared through chitchat gossip.

use std::net::IpAddr;
use std::time::Duration;

use edns_tests::cluster::{demo_config, ClusterHarness};
use edns_tests::{require_root, wait_until, EdnsProc};

fn stats(e: &EdnsProc) -> serde_json::Value {
    e.ctl(&["stats"]).unwrap_or_else(|err| panic!("{err}\n{}", e.log_text()))
}

fn xdp(e: &EdnsProc, name: &str) -> u64 {
    stats(e)["xdp"][name].as_u64().unwrap()
}

/// LDNS addresses of the client namespace: 198.18.(base).(1..=n).
fn ldnses(h: &ClusterHarness, base: u8, n: u8) -> Vec<IpAddr> {
    let v: Vec<IpAddr> = (1..=n).map(|i| format!("198.18.{base}.{i}").parse().unwrap()).collect();
    h.add_client_addrs(&v).unwrap();
    v
}

/// Starts every node and waits until each has taken the cluster's state.
fn start_all(h: &ClusterHarness) -> Vec<EdnsProc> {
    let nodes: Vec<EdnsProc> = (0..h.nodes.len()).map(|i| h.start(i, &demo_config(), 100).unwrap()).collect();
    for e in &nodes {
        wait_until(Duration::from_secs(10), "every node synced", || stats(e)["cluster"]["synced"] == true);
    }
    nodes
}

/// The record the node holds for `ldns` at shop. (VS, creator node).
fn record(e: &EdnsProc, ldns: IpAddr) -> Option<(String, u64)> {
    let recs = e.ctl(&["records"]).unwrap();
    recs.as_array().unwrap().iter().find(|r| r["ldns"] == ldns.to_string()).map(|r| (r["vs"].as_str().unwrap().to_string(), r["node_id"].as_u64().unwrap()))
}

#[test]
fn an_ldns_asking_each_node_in_turn_gets_one_sac_and_the_others_answer_it_in_xdp() {
    require_root();
    let h = ClusterHarness::new(3).unwrap();
    let nodes = start_all(&h);
    let ldns = ldnses(&h, 20, 8);
    let before: Vec<u64> = nodes.iter().map(|e| xdp(e, "answered_persistence")).collect();
    for l in &ldns {
        let first = h.ask(0, *l, "shop.gslb.example.").unwrap();
        // The record reaches B and C within a few gossip rounds.
        wait_until(Duration::from_secs(5), "the record on every node", || nodes.iter().all(|e| record(e, *l).is_some()));
        for i in [1, 2] {
            assert_eq!(h.ask(i, *l, "shop.gslb.example.").unwrap(), first, "{l} asking node {i}");
        }
    }
    for i in [1, 2] {
        let hits = xdp(&nodes[i], "answered_persistence") - before[i];
        assert_eq!(hits, ldns.len() as u64, "node {i} answered A's records in its kernel");
    }
}

#[test]
fn a_dead_nodes_records_keep_being_answered_by_the_others() {
    require_root();
    let h = ClusterHarness::new(3).unwrap();
    let mut nodes = start_all(&h);
    let ldns = ldnses(&h, 21, 6);
    let answers: Vec<String> = ldns.iter().map(|l| h.ask(0, *l, "shop.gslb.example.").unwrap()).collect();
    wait_until(Duration::from_secs(5), "the records on B and C", || ldns.iter().all(|l| record(&nodes[1], *l).is_some() && record(&nodes[2], *l).is_some()));
    let a = nodes.remove(0);
    a.kill_hard();
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        for (l, want) in ldns.iter().zip(&answers) {
            for i in [1, 2] {
                assert_eq!(&h.ask(i, *l, "shop.gslb.example.").unwrap(), want, "{l} at node {i} after A died");
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(stats(&nodes[0])["cluster"]["live_nodes"].as_array().unwrap().len() <= 3);
}

#[test]
fn two_nodes_asked_at_once_converge_to_the_record_created_first() {
    require_root();
    let h = ClusterHarness::new(3).unwrap();
    let nodes = start_all(&h);
    let ldns = ldnses(&h, 22, 12);
    // Each LDNS asks A and B at the same moment: both may balance.
    std::thread::scope(|s| {
        for l in &ldns {
            let h = &h;
            s.spawn(move || h.ask(0, *l, "shop.gslb.example.").unwrap());
            s.spawn(move || h.ask(1, *l, "shop.gslb.example.").unwrap());
        }
    });
    // Every node settles on one record per LDNS: the same VS and creator.
    for l in &ldns {
        wait_until(Duration::from_secs(5), "one record everywhere", || {
            let r: Vec<_> = nodes.iter().map(|e| record(e, *l)).collect();
            r[0].is_some() && r.iter().all(|x| *x == r[0])
        });
        let want = h.ask(2, *l, "shop.gslb.example.").unwrap();
        for i in [0, 1] {
            assert_eq!(h.ask(i, *l, "shop.gslb.example.").unwrap(), want, "{l}");
        }
    }
}

#[test]
fn a_partition_heals_with_one_winner_per_key_everywhere() {
    require_root();
    let h = ClusterHarness::new(3).unwrap();
    let nodes = start_all(&h);
    let ldns = ldnses(&h, 23, 10);
    h.partition(2).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Each LDNS asks C (cut off) first, then A: two records per key.
    let mut seen: Vec<Vec<String>> = Vec::new();
    for l in &ldns {
        let c = h.ask(2, *l, "shop.gslb.example.").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let a = h.ask(0, *l, "shop.gslb.example.").unwrap();
        seen.push(vec![c, a]);
    }
    h.heal(2).unwrap();
    for (k, l) in ldns.iter().enumerate() {
        wait_until(Duration::from_secs(10), "one winner per key after the heal", || {
            let r: Vec<_> = nodes.iter().map(|e| record(e, *l)).collect();
            r[0].is_some() && r.iter().all(|x| *x == r[0])
        });
        // C's record was created first: it wins on every node.
        let (_, creator) = record(&nodes[0], *l).unwrap();
        assert_eq!(creator, 3, "{l}: the record created first (on C) wins");
        let answers: Vec<String> = (0..3).map(|i| h.ask(i, *l, "shop.gslb.example.").unwrap()).collect();
        assert!(answers.iter().all(|a| *a == answers[0]), "{l}: {answers:?}");
        assert_eq!(answers[0], seen[k][0], "{l}: C's answer everywhere, so A's side flapped at most once");
    }
}

#[test]
fn a_restarted_node_takes_the_clusters_records_before_answering() {
    require_root();
    let h = ClusterHarness::new(3).unwrap();
    let mut nodes = start_all(&h);
    let ldns = ldnses(&h, 24, 8);
    let answers: Vec<String> = ldns.iter().enumerate().map(|(k, l)| h.ask(k % 2, *l, "shop.gslb.example.").unwrap()).collect();
    wait_until(Duration::from_secs(5), "the records on C", || ldns.iter().all(|l| record(&nodes[2], *l).is_some()));
    let c = nodes.pop().unwrap();
    c.kill_hard();
    let c = h.start(2, &demo_config(), 100).unwrap();
    // It answers only once synced; its first answers are the cluster's.
    wait_until(Duration::from_secs(10), "C answering", || h.ask(2, ldns[0], "www.gslb.example.").is_ok() && stats(&c)["cluster"]["synced"] == true);
    for (l, want) in ldns.iter().zip(&answers) {
        assert_eq!(&h.ask(2, *l, "shop.gslb.example.").unwrap(), want, "{l} at the restarted node");
    }
    assert_eq!(xdp(&c, "pass_persist_miss"), 0, "no record was missing: {}", stats(&c));
}

/// The demo config with both of east's VSs monitored over HTTP at a server
/// in the client namespace that logs each probe.
fn monitored_config() -> String {
    let cfg = demo_config().replace(
        "virtual_servers = [{ name = \"vs1\" }, { name = \"vs2\" }]",
        "virtual_servers = [{ name = \"vs1\", target = \"198.18.0.2:8080\", monitor = \"web\" }, { name = \"vs2\", target = \"198.18.0.2:8080\", monitor = \"web\" }]",
    );
    assert!(cfg.contains("monitor = \"web\""), "{cfg}");
    cfg + "\n[[monitor]]\nname = \"web\"\ntype = \"http\"\ninterval_ms = 200\ntimeout_ms = 150\nup_after = 1\ndown_after = 2\npath = \"/health\"\n"
}

/// Probes the HTTP server logged over `window`, after the nodes settled.
fn probes_in(h: &ClusterHarness, log: &std::path::Path, window: Duration) -> usize {
    std::thread::sleep(Duration::from_secs(1));
    let count = || std::fs::read_to_string(log).unwrap_or_default().lines().count();
    let before = count();
    std::thread::sleep(window);
    let _ = h;
    count() - before
}

#[test]
fn probes_per_vs_with_three_nodes_equal_those_with_one_and_every_node_sees_the_result() {
    require_root();
    let counts: Vec<usize> = [1usize, 3]
        .iter()
        .map(|&n| {
            let h = ClusterHarness::new(n).unwrap();
            let dir = edns_tests::tmpdir();
            let log = dir.join("probes.log");
            let mut vs = h.client.cmd("python3");
            vs.arg(edns_tests::sites::http_vs_script()).args(["198.18.0.2", "8080", "--log"]).arg(&log);
            let mut vs = vs.stdout(std::process::Stdio::piped()).spawn().unwrap();
            let nodes: Vec<EdnsProc> = (0..n).map(|i| h.start(i, &monitored_config(), 100).unwrap()).collect();
            for e in &nodes {
                wait_until(Duration::from_secs(10), "synced", || stats(e)["cluster"]["synced"] == true);
            }
            let c = probes_in(&h, &log, Duration::from_secs(3));
            if n == 3 {
                // The server dies: every node marks east's VSs down, though one probes each.
                vs.kill().unwrap();
                let _ = vs.wait();
                for e in &nodes {
                    wait_until(Duration::from_secs(5), "east/vs1 down on every node", || e.vs("east/vs1")["marked_up"] == false);
                }
                let adopted: u64 = nodes.iter().map(|e| stats(e)["cluster"]["probes_adopted"].as_u64().unwrap()).sum();
                assert!(adopted > 0, "peers' results were taken");
            } else {
                let _ = vs.kill();
                let _ = vs.wait();
            }
            c
        })
        .collect();
    println!("probes in 3 s: one node {}, three nodes {}", counts[0], counts[1]);
    // 2 VSs every 200 ms ±10% jitter: about 30 in 3 s, whatever the node count.
    assert!(counts[0] >= 20, "{counts:?}");
    let ratio = counts[1] as f64 / counts[0] as f64;
    assert!((0.7..=1.3).contains(&ratio), "three nodes probe as much as one, not three times: {counts:?}");
}

/// Lines the probe log gains over `window`.
fn new_probe_lines(log: &std::path::Path, window: Duration) -> Vec<String> {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    let before = read().lines().count();
    std::thread::sleep(window);
    read().lines().skip(before).map(str::to_string).collect()
}

#[test]
fn when_a_prober_dies_the_live_nodes_take_its_vss_over() {
    require_root();
    let h = ClusterHarness::new(3).unwrap();
    let dir = edns_tests::tmpdir();
    let log = dir.join("probes.log");
    let mut vs = h.client.cmd("python3");
    vs.arg(edns_tests::sites::http_vs_script()).args(["198.18.0.2", "8080", "--log"]).arg(&log);
    let _vs = vs.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut nodes: Vec<Option<EdnsProc>> = (0..3).map(|i| Some(h.start(i, &monitored_config(), 100).unwrap())).collect();
    for e in nodes.iter().flatten() {
        wait_until(Duration::from_secs(10), "synced", || stats(e)["cluster"]["synced"] == true);
    }
    std::thread::sleep(Duration::from_secs(1));
    let lines = new_probe_lines(&log, Duration::from_secs(1));
    // The node probing first: it dies.
    let victim = h.node_ips.iter().position(|ip| lines.iter().any(|l| *l == ip.to_string())).expect("some node probes");
    nodes[victim].take().unwrap().kill_hard();
    let dead = h.node_ips[victim].to_string();
    // Once the failure detector has it, the survivors probe both VSs: about 10 probes a second, none from the dead.
    wait_until(Duration::from_secs(20), "both VSs probed by the survivors", || {
        let l = new_probe_lines(&log, Duration::from_secs(1));
        l.len() >= 8 && l.iter().all(|x| *x != dead)
    });
    for e in nodes.iter().flatten() {
        let live = stats(e)["cluster"]["live_nodes"].as_array().unwrap().len();
        assert_eq!(live, 2, "the dead node left the membership");
    }
}
