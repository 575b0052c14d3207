//! edns with its XDP program attached to a veth in a server namespace,
//! queried from a client namespace with real clients.

use std::net::SocketAddr;

use edns_tests::{kdig, require_root, workspace, EdnsProc, VethHarness};

fn demo_config() -> String {
    std::fs::read_to_string(workspace().join("examples/demo.toml")).unwrap()
}

fn xdp_counter(e: &EdnsProc, name: &str) -> u64 {
    let s = e.ctl(&["stats"]).unwrap();
    s["xdp"][name].as_u64().unwrap_or_else(|| panic!("no xdp.{name} in {s}"))
}

#[test]
fn xdp_program_loads_attaches_to_a_veth_and_sees_the_queries() {
    require_root();
    let h = VethHarness::new().unwrap();
    let e = EdnsProc::start(&demo_config(), Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let server = SocketAddr::new(h.server_ip, 53);
    let before = xdp_counter(&e, "packets");
    for _ in 0..5 {
        let d = kdig(Some(&h.client), server, Some(h.client_ip), &["www.gslb.example.", "A"]).unwrap();
        assert_eq!(d.status, "NOERROR", "{}", d.text);
    }
    let after = xdp_counter(&e, "packets");
    assert!(after >= before + 5, "XDP counted {before} -> {after} packets");
    // The program is attached in driver mode on the server's veth.
    let link = h.server.ip(&["-d", "link", "show", &h.server_if]).unwrap();
    let text = String::from_utf8_lossy(&link.stdout);
    assert!(text.contains("xdp"), "{text}");
}
