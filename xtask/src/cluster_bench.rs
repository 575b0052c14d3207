//! `cargo xtask bench cluster`: three edns nodes (release build, XDP
//! attached, gossip every 100 ms) on the cluster harness; a paced stream of
//! queries to node A, each with its own client subnet for a dynamic wide IP
//! with ECS, makes one new persistence record per query. Reported: how long
//! a record made on A takes to be in B's and C's maps (from which their XDP
//! programs answer it: the same answer), bytes on the wire per record, and
//! CPU per node.

use std::time::{Duration, Instant};

use edns_tests::cluster::{demo_config, ClusterHarness};
use edns_tests::{edns_bin, sh, workspace, EdnsProc};

const BULK: &str = "\n[[wide_ip]]\nname = \"bulk.gslb.example.\"\nmode = \"dynamic\"\nmethod = \"round_robin\"\npersistence_ttl = 600\necs = true\npool = [\"east/vs1\", \"west/vs1\"]\n";

pub fn run(records: u32, rate: u32) -> anyhow::Result<()> {
    edns_tests::require_root();
    let h = ClusterHarness::new(3)?;
    let base = demo_config() + BULK;
    let bin = edns_bin(true);
    let nodes: Vec<EdnsProc> = (0..3).map(|i| h.start_bin(i, &base, 100, &bin)).collect::<anyhow::Result<_>>()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !nodes.iter().all(|e| e.ctl(&["stats"]).map(|s| s["cluster"]["synced"] == true).unwrap_or(false)) {
        anyhow::ensure!(Instant::now() < deadline, "nodes did not sync");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let bytes0: Vec<(u64, u64)> = (0..3).map(|i| h.node_bytes(i)).collect::<anyhow::Result<_>>()?;
    let cpu0: Vec<f64> = nodes.iter().map(|e| crate::cpu_secs(e.pid())).collect::<anyhow::Result<_>>()?;
    let t0 = Instant::now();
    let out = sh(h.client.cmd("python3").arg(workspace().join("tests/fixtures/ecs_queries.py")).args([
        &h.node_ips[0].to_string(),
        "53",
        "bulk.gslb.example.",
        &records.to_string(),
        &rate.to_string(),
    ]))?;
    let gen = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // Until B and C hold every record A made.
    let learned = |e: &EdnsProc| e.ctl(&["stats"]).map(|s| s["cluster"]["learned"].as_u64().unwrap_or(0)).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while learned(&nodes[1]) < records as u64 || learned(&nodes[2]) < records as u64 {
        anyhow::ensure!(Instant::now() < deadline, "B and C learned {} and {} of {records}", learned(&nodes[1]), learned(&nodes[2]));
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall = t0.elapsed().as_secs_f64();
    let bytes1: Vec<(u64, u64)> = (0..3).map(|i| h.node_bytes(i)).collect::<anyhow::Result<_>>()?;
    let cpu1: Vec<f64> = nodes.iter().map(|e| crate::cpu_secs(e.pid())).collect::<anyhow::Result<_>>()?;
    let made = nodes[0].ctl(&["stats"])?["dns"]["client_subnet"].as_u64().unwrap_or(0);

    println!("## Cluster: record replication (3 nodes, gossip every 100 ms)\n");
    println!("generator ({} /24 client subnets to node A at {rate}/s): {gen}; A answered {made} client-subnet queries in userspace, one new record each\n", records);
    println!("| node | records learned | delay p50 | delay p99 | delay max | rx bytes | tx bytes | CPU (s) | CPU share of {wall:.1} s |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (i, e) in nodes.iter().enumerate() {
        let c = &e.ctl(&["stats"])?["cluster"];
        let (rx, tx) = (bytes1[i].0 - bytes0[i].0, bytes1[i].1 - bytes0[i].1);
        let cpu = cpu1[i] - cpu0[i];
        println!(
            "| {} | {} | {} ms | {} ms | {} ms | {rx} | {tx} | {cpu:.2} | {:.0}% |",
            ["A", "B", "C"][i],
            c["learned"],
            c["learn_delay_p50_ms"],
            c["learn_delay_p99_ms"],
            c["learn_delay_max_ms"],
            100.0 * cpu / wall
        );
    }
    let replica_rx = (bytes1[1].0 - bytes0[1].0 + bytes1[2].0 - bytes0[2].0) as f64 / 2.0;
    let replica_tx = (bytes1[1].1 - bytes0[1].1 + bytes1[2].1 - bytes0[2].1) as f64 / 2.0;
    println!(
        "\nper record: each replica received {:.0} bytes and sent {:.0} bytes (gossip only: B and C get no DNS traffic)",
        replica_rx / records as f64,
        replica_tx / records as f64
    );
    Ok(())
}
