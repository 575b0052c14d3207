//! `cargo xtask bench reload`: how long a live reload of a config with
//! 10,000 wide IPs takes (release build), in userspace and with XDP
//! attached on the veth harness, when the ids stay (a wide IP changed in
//! place) and when every id moves (one inserted first), with persistence
//! records to keep: `edns ctl reload`'s own figure, median of 5 each.

use std::net::SocketAddr;

use edns_tests::{edns_bin, loopback_ports, sh, workspace, EdnsProc, VethHarness};

/// The demo config (or the loopback example) plus `n` wide IPs, half
/// stripe, half dynamic; `first` inserts one more before them all.
fn config(base: &str, n: usize, first: bool, ttl: u32) -> String {
    let mut c = base.to_string();
    if first {
        c.push_str("\n[[wide_ip]]\nname = \"first.gslb.example.\"\nmode = \"stripe\"\npool = [\"east/vs1\"]\n");
    }
    for i in 0..n {
        let mode = if i % 2 == 0 { format!("mode = \"stripe\"\nanswer_ttl = {ttl}") } else { "mode = \"dynamic\"\nmethod = \"round_robin\"\npersistence_ttl = 600".into() };
        c.push_str(&format!("\n[[wide_ip]]\nname = \"w{i}.gslb.example.\"\n{mode}\npool = [\"east/vs1\", \"west/vs1\"]\n"));
    }
    c
}

fn reload_ms(e: &EdnsProc) -> anyhow::Result<f64> {
    let r = e.ctl(&["reload"])?;
    r["took_ms"].as_f64().ok_or_else(|| anyhow::anyhow!("no took_ms in {r}"))
}

/// Five reloads keeping ids (an answer TTL changed), five moving them.
fn measure(e: &EdnsProc, base: &str, n: usize) -> anyhow::Result<(f64, f64)> {
    let (mut same, mut moved) = (Vec::new(), Vec::new());
    for i in 0..5 {
        std::fs::write(&e.config, config(base, n, false, 30 + i))?;
        same.push(reload_ms(e)?);
    }
    for i in 0..5 {
        std::fs::write(&e.config, config(base, n, i % 2 == 0, 30))?;
        moved.push(reload_ms(e)?);
    }
    Ok((crate::median(same), crate::median(moved)))
}

pub fn run(n: usize) -> anyhow::Result<()> {
    edns_tests::require_root();
    let bin = edns_bin(true);
    let mut rows = Vec::new();

    let (dns, control) = loopback_ports();
    let base = edns_tests::example_config(dns, control);
    let e = EdnsProc::start_bin(&bin, &config(&base, n, false, 30), None, &[])?;
    let records = make_records(None, dns, n.min(2000))?;
    let (same, moved) = measure(&e, &base, n)?;
    rows.push(("userspace only", records, e.ctl(&["records"])?.as_array().map_or(0, |a| a.len()), same, moved));
    drop(e);

    let h = VethHarness::new()?;
    let demo = std::fs::read_to_string(workspace().join("examples/demo.toml"))?;
    let e = EdnsProc::start_bin(&bin, &config(&demo, n, false, 30), Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"])?;
    let records = make_records(Some(&h), SocketAddr::new(h.server_ip, 53), n.min(2000))?;
    let (same, moved) = measure(&e, &demo, n)?;
    rows.push(("XDP (native, veth)", records, e.ctl(&["records"])?.as_array().map_or(0, |a| a.len()), same, moved));

    println!("## Live reload of a config with {n} wide IPs (median of 5 reloads each; `edns ctl reload`'s took_ms)\n");
    println!("| path | records before | records after 10 reloads | ids kept (a TTL changed) | 10,000 ids moved (one wide IP inserted before them) |");
    println!("| --- | --- | --- | --- | --- |");
    for (path, before, after, same, moved) in rows {
        println!("| {path} | {before} | {after} | {same:.0} ms | {moved:.0} ms |");
    }
    Ok(())
}

/// One persistence record per dynamic wide IP (up to `n`), from one LDNS.
fn make_records(h: Option<&VethHarness>, server: SocketAddr, n: usize) -> anyhow::Result<usize> {
    let names: Vec<String> = (0..n * 2).filter(|i| i % 2 == 1).map(|i| format!("w{i}.gslb.example.")).collect();
    let script = format!(
        "import socket,struct\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\nn=0\nfor i,name in enumerate({names:?}):\n    q=struct.pack('>HHHHHH',i&0xffff,0,1,0,0,0)+b''.join(bytes([len(l)])+l.encode() for l in name.rstrip('.').split('.'))+b'\\x00\\x00\\x01\\x00\\x01'\n    s.sendto(q,('{ip}',{port}))\n    try:\n        s.recv(4096); n+=1\n    except socket.timeout:\n        pass\nprint(n)\n",
        ip = server.ip(),
        port = server.port()
    );
    let mut cmd = match h {
        Some(h) => h.client.cmd("python3"),
        None => std::process::Command::new("python3"),
    };
    let out = sh(cmd.args(["-c", &script]))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}
