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
    println!("\n== counters (edns ctl stats): xdp.* from the data plane, dns.* from userspace");
    ctl_table(&e, &["stats"])?;
    println!("\ndemo done; namespaces and edns are removed on exit");
    Ok(())
}
