//! `cargo xtask demo`: edns with XDP on a veth harness, queried from several
//! LDNS addresses in each mode, printing what it answered and why.

use std::net::{IpAddr, SocketAddr};

use edns_tests::{edns_bin, kdig, EdnsProc, VethHarness};

/// Prints what `edns ctl ARGS` shows an operator (the table form).
fn ctl_table(e: &EdnsProc, args: &[&str]) -> anyhow::Result<()> {
    let out = edns_tests::sh(&mut e.ctl_command(args))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    edns_tests::require_root();
    let config = std::fs::read_to_string(crate::root().join("examples/demo.toml"))?;
    let h = VethHarness::new()?;
    let ldns: Vec<IpAddr> = ["198.18.1.10", "198.18.1.77", "198.18.2.10", "198.18.2.99", "198.18.3.1", "198.18.3.2", "198.18.4.7"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    h.add_client_addrs(&ldns)?;
    println!("== veth harness: edns in netns {} on {} ({}), LDNSes in netns {}", h.server.name, h.server_if, h.server_ip, h.client.name);
    let e = EdnsProc::start_bin(&edns_bin(true), &config, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"])?;
    let server = SocketAddr::new(h.server_ip, 53);
    let ask = |src: IpAddr, name: &str, qtype: &str| -> anyhow::Result<String> {
        let d = kdig(Some(&h.client), server, Some(src), &[name, qtype])?;
        Ok(match (d.answers.is_empty(), d.status.as_str()) {
            (true, "NOERROR") => "NODATA".to_string(),
            (true, _) => d.status,
            (false, _) => d.answers.join(","),
        })
    };
    let round = |title: &str| -> anyhow::Result<()> {
        println!("\n== {title}");
        println!("{:<16} {:<22} {:<22} {:<22}", "LDNS", "www (stripe)", "geo (topology)", "shop (dynamic)");
        for src in &ldns {
            println!(
                "{:<16} {:<22} {:<22} {:<22}",
                src.to_string(),
                ask(*src, "www.gslb.example.", "A")?,
                ask(*src, "geo.gslb.example.", "A")?,
                ask(*src, "shop.gslb.example.", "A")?
            );
        }
        Ok(())
    };
    println!("stripe: pool east/vs1, east/vs2, west/vs1 -> SAC of pool[(LDNS as u32) mod 3]");
    println!("topology: 198.18.1.0/24 -> east, 198.18.2.0/24 -> west, others stripe over east/vs1, west/vs1");
    println!("dynamic: round robin, then the same SAC for 600 s per LDNS");
    round("first queries")?;
    round("same queries again: persistence hits for shop")?;
    println!("\n== persistence records (edns ctl records)");
    ctl_table(&e, &["records"])?;
    println!("\n== marking west/vs1 down (edns ctl set-vs west/vs1 down)");
    ctl_table(&e, &["set-vs", "west/vs1", "down"])?;
    round("after west/vs1 went down: stripe N=2, topology west falls back, shop records on west re-balance")?;
    println!("\n== AAAA (west has address6, east has none -> NODATA)");
    for src in &ldns[2..4] {
        println!("{:<16} geo AAAA -> {}", src.to_string(), ask(*src, "geo.gslb.example.", "AAAA")?);
    }
    ctl_table(&e, &["set-vs", "west/vs1", "up"])?;
    for src in &ldns[2..4] {
        println!("{:<16} geo AAAA -> {} (west/vs1 up again)", src.to_string(), ask(*src, "geo.gslb.example.", "AAAA")?);
    }
    println!("\n== EDNS Client Subnet: cdn (stripe, ecs = true) is answered for the client's /24, in XDP, with the scope read");
    for (src, subnet) in ldns.iter().zip(["203.0.113.77/24", "203.0.113.77/32", "198.51.101.9/24", "0.0.0.0/0"]) {
        let d = kdig(Some(&h.client), server, Some(*src), &["cdn.gslb.example.", "A", &format!("+subnet={subnet}")])?;
        let echo = d.text.lines().find_map(|l| l.strip_prefix(";; CLIENT-SUBNET: ")).unwrap_or("-").to_string();
        println!("{:<16} subnet {subnet:<18} -> {:<16} echoed {echo}", src.to_string(), d.answers.join(","));
    }
    println!("\n== counters (edns ctl stats): xdp.* from the data plane, dns.* from userspace");
    ctl_table(&e, &["stats"])?;
    drop(e);
    health(&h, &ldns)?;
    paths()?;
    println!("\ndemo done; namespaces and edns are removed on exit");
    Ok(())
}

/// Health probes against real services: examples/health.toml with an HTTP
/// server and HAProxy in each site namespace; a VS killed and restarted.
fn health(h: &VethHarness, ldns: &[IpAddr]) -> anyhow::Result<()> {
    use edns_tests::sites::{haproxy, http_vs, Site};
    println!("\n\n==== health probes and metrics (examples/health.toml)");
    let (east, west) = (Site::new(&h.server, 0)?, Site::new(&h.server, 1)?);
    let dir = edns_tests::tmpdir();
    let mut east_http = http_vs(&east, 8080, &[], &h.server)?;
    let _west_http = http_vs(&west, 8080, &[], &h.server)?;
    let _haproxy = [haproxy(&east, &dir, 8080, 100, &h.server)?, haproxy(&west, &dir, 8080, 100, &h.server)?];
    println!("sites: east {} and west {}: HTTP server on :8080 behind HAProxy (:80, exporter :8404)", east.addr, west.addr);
    let config = std::fs::read_to_string(crate::root().join("examples/health.toml"))?;
    let e = EdnsProc::start_bin(&edns_bin(true), &config, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"])?;
    let server = SocketAddr::new(h.server_ip, 53);
    let ask = |src: IpAddr, name: &str| -> anyhow::Result<String> {
        let d = kdig(Some(&h.client), server, Some(src), &[name, "A"])?;
        Ok(if d.answers.is_empty() { d.status } else { d.answers.join(",") })
    };
    let round = |title: &str| -> anyhow::Result<()> {
        println!("\n== {title}");
        println!("{:<16} {:<22} {:<22} {:<22}", "LDNS", "www (stripe)", "ring (consistent)", "shop (dynamic)");
        for src in ldns {
            let (w, r, s) = (ask(*src, "www.gslb.example.")?, ask(*src, "ring.gslb.example.")?, ask(*src, "shop.gslb.example.")?);
            println!("{:<16} {w:<22} {r:<22} {s:<22}", src.to_string());
        }
        Ok(())
    };
    std::thread::sleep(std::time::Duration::from_millis(1500)); // a few probes and scrapes
    println!("\n== edns ctl vs");
    ctl_table(&e, &["vs"])?;
    round("both sites up")?;
    println!("\n== killing east's HTTP server (SIGKILL); waiting 1.2 s (down_after 2 x interval 500 ms + timeout)");
    east_http.kill();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    ctl_table(&e, &["vs"])?;
    round("east down: every answer names west (shop records on east re-balance)")?;
    println!("\n== restarting east's HTTP server; waiting 1.5 s (up_after 2 x interval 500 ms)");
    east_http = http_vs(&east, 8080, &[], &h.server)?;
    std::thread::sleep(std::time::Duration::from_millis(1500));
    ctl_table(&e, &["vs"])?;
    round("east back: stripe and ring return to it; shop keeps its records (persistence)")?;
    println!("\n== edns ctl wide-ips");
    ctl_table(&e, &["wide-ips"])?;
    drop(east_http);
    Ok(())
}

/// Path metrics: three sites, each with a blackbox exporter and its own
/// path (delay, loss, router hops) to the LDNSes; lowest_rtt and
/// quality_of_service before and after the first probe round.
fn paths() -> anyhow::Result<()> {
    use edns_tests::paths::{path_dir, paths_config, site_path, ADDRS, SACS};
    println!("\n\n==== path metrics (RTT, loss, hops from each site's blackbox exporter)");
    let h = VethHarness::new()?;
    let ldns: Vec<IpAddr> = ["198.18.60.10", "198.18.60.20"].iter().map(|s| s.parse().unwrap()).collect();
    h.add_client_addrs(&ldns)?;
    for k in ["all", "default"] {
        edns_tests::sh(h.client.cmd("sysctl").args(["-qw", &format!("net.ipv4.conf.{k}.rp_filter=0")]))?;
    }
    let dir = path_dir();
    let mut paths = Vec::new();
    for (i, (delay, loss, routers)) in [(80, 0.2, 1), (5, 0.5, 3), (30, 0.0, 2)].into_iter().enumerate() {
        let p = site_path(&h.server, &h.client, i as u8, routers, &ldns, &dir)?;
        p.set(delay, loss)?;
        println!("site {} ({}): {delay} ms, {:.0}% loss, {routers} router(s) to the LDNSes; blackbox exporter at {}", SACS[i], ADDRS[i], loss * 100.0, p.probe_url());
        paths.push(p);
    }
    let e = EdnsProc::start_bin(&edns_bin(true), &paths_config(&paths, ""), Some(&h.server), &[])?;
    let server = SocketAddr::new(h.server_ip, 53);
    let ask = |src: IpAddr, name: &str| -> anyhow::Result<String> {
        let d = kdig(Some(&h.client), server, Some(src), &[name, "A"])?;
        Ok(d.answers.join(","))
    };
    println!("\n== {} asks, unmeasured: answered at once by the chain's next method (round_robin)", ldns[0]);
    for name in ["rtt.gslb.example.", "qos.gslb.example."] {
        println!("$ kdig -b {} {name} A  -> {}", ldns[0], ask(ldns[0], name)?);
    }
    println!("\n== the sites' exporters probe 198.18.60.0/24 (8 probes each, at most 20/s per site)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let v = e.ctl(&["paths", &ldns[0].to_string()])?;
        if v.as_array().map(|a| a.len() == 3 && a.iter().all(|p| p["figures"]["probes"].as_u64() >= Some(8))).unwrap_or(false) {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "no probe round: {v}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    println!("$ edns ctl paths {}", ldns[0]);
    ctl_table(&e, &["paths", &ldns[0].to_string()])?;
    println!("\n== {} (a new LDNS of the measured /24) asks", ldns[1]);
    for name in ["rtt.gslb.example.", "loss.gslb.example.", "hops.gslb.example.", "qos.gslb.example."] {
        println!("$ kdig -b {} {name} A  -> {}", ldns[1], ask(ldns[1], name)?);
    }
    Ok(())
}
