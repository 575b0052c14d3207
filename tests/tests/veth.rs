//! edns with its XDP program attached to a veth in a server namespace,
//! queried from a client namespace by real clients (kdig, unbound as the
//! LDNS); the counters show which answers came from XDP.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use edns_tests::{kdig, require_root, tmpdir, workspace, EdnsProc, VethHarness};

fn demo_config() -> String {
    std::fs::read_to_string(workspace().join("examples/demo.toml")).unwrap()
}

fn stats(e: &EdnsProc) -> serde_json::Value {
    e.ctl(&["stats"]).unwrap()
}

fn xdp(s: &serde_json::Value, name: &str) -> u64 {
    s["xdp"][name].as_u64().unwrap_or_else(|| panic!("no xdp.{name} in {s}"))
}

fn userspace_queries(s: &serde_json::Value) -> u64 {
    s["dns"]["queries"].as_u64().unwrap()
}

fn start(h: &VethHarness) -> EdnsProc {
    EdnsProc::start(&demo_config(), Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap()
}

#[test]
fn kdig_answers_come_from_xdp_in_every_mode_and_misses_go_up_once() {
    require_root();
    let h = VethHarness::new().unwrap();
    let ldns: Vec<IpAddr> = ["198.18.1.10", "198.18.2.20", "198.18.3.30", "198.18.4.40"].iter().map(|s| s.parse().unwrap()).collect();
    h.add_client_addrs(&ldns).unwrap();
    let e = start(&h);
    let server = SocketAddr::new(h.server_ip, 53);
    let ask = |src: IpAddr, name: &str, t: &str| kdig(Some(&h.client), server, Some(src), &[name, t]).unwrap();

    let s0 = stats(&e);
    // Stripe, pool east/vs1 east/vs2 west/vs1: SAC of pool[ip mod 3].
    for src in &ldns {
        let IpAddr::V4(v4) = src else { unreachable!() };
        let want = ["192.0.2.10", "192.0.2.10", "198.51.100.20"][(u32::from(*v4) % 3) as usize];
        assert_eq!(ask(*src, "www.gslb.example.", "A").answer(), want, "LDNS {src}");
    }
    // Topology.
    assert_eq!(ask(ldns[0], "geo.gslb.example.", "A").answer(), "192.0.2.10");
    assert_eq!(ask(ldns[1], "GEO.gslb.example.", "A").answer(), "198.51.100.20");
    let s1 = stats(&e);
    assert_eq!(xdp(&s1, "answered_stripe") - xdp(&s0, "answered_stripe"), 4, "{s1}");
    assert_eq!(xdp(&s1, "answered_topology") - xdp(&s0, "answered_topology"), 2, "{s1}");
    assert_eq!(userspace_queries(&s1), userspace_queries(&s0), "nothing reached userspace: {s1}");

    // Dynamic: the first query misses and goes up; the controller writes the
    // record into the map; the next ones are persistence hits in XDP.
    let first = ask(ldns[2], "shop.gslb.example.", "A").answer().to_string();
    let s2 = stats(&e);
    assert_eq!(xdp(&s2, "pass_persist_miss") - xdp(&s1, "pass_persist_miss"), 1, "{s2}");
    assert_eq!(userspace_queries(&s2) - userspace_queries(&s1), 1);
    for _ in 0..3 {
        assert_eq!(ask(ldns[2], "shop.gslb.example.", "A").answer(), first);
    }
    let s3 = stats(&e);
    assert_eq!(xdp(&s3, "answered_persistence") - xdp(&s2, "answered_persistence"), 3, "{s3}");
    assert_eq!(userspace_queries(&s3), userspace_queries(&s2));
    let recs = e.ctl(&["records"]).unwrap();
    let rec = recs.as_array().unwrap().iter().find(|r| r["ldns"] == "198.18.3.30").expect("record");
    assert_eq!(rec["hits"], 4, "one miss + three kernel hits: {recs}");

    // AAAA where the SAC has no address6: XDP passes, userspace says NODATA.
    let nodata = ask(ldns[0], "geo.gslb.example.", "AAAA");
    assert_eq!((nodata.status.as_str(), nodata.answers.len()), ("NOERROR", 0));
    assert_eq!(xdp(&stats(&e), "pass_no_address") - xdp(&s3, "pass_no_address"), 1);

    // A VS marked down through the controller changes what XDP answers.
    e.ctl(&["set-vs", "west/vs1", "down"]).unwrap();
    assert_eq!(ask(ldns[1], "geo.gslb.example.", "A").answer(), "192.0.2.10");
}

#[test]
fn ipv6_queries_over_the_veth_are_answered_in_xdp() {
    require_root();
    let h = VethHarness::new().unwrap();
    let e = start(&h);
    let s0 = stats(&e);
    let server: SocketAddr = "[fd00:edd5::1]:53".parse().unwrap();
    let src: IpAddr = "fd00:edd5::2".parse().unwrap();
    let IpAddr::V6(v6) = src else { unreachable!() };
    let want = ["192.0.2.10", "192.0.2.10", "198.51.100.20"][(u128::from(v6) % 3) as usize];
    let d = kdig(Some(&h.client), server, Some(src), &["www.gslb.example.", "A"]).unwrap();
    assert_eq!(d.answer(), want);
    // geo from an unmatched IPv6 LDNS: stripe over east/vs1, west/vs1.
    let d = kdig(Some(&h.client), server, Some(src), &["geo.gslb.example.", "AAAA", "+edns"]).unwrap();
    let s1 = stats(&e);
    if u128::from(v6) % 2 == 1 {
        assert_eq!(d.answer(), "2001:db8::20");
        assert_eq!(xdp(&s1, "answered_topology") - xdp(&s0, "answered_topology"), 1, "{s1}");
    } else {
        assert!(d.answers.is_empty());
    }
    assert_eq!(xdp(&s1, "answered_stripe") - xdp(&s0, "answered_stripe"), 1, "{s1}");
}

/// unbound in the client namespace as a real LDNS on 127.0.0.1:53: it
/// sends from `ldns` and reaches edns through a stub zone; `module_config`
/// and `extra` server lines (e.g. the subnet cache) as a test needs. Killed
/// on drop.
struct Unbound {
    child: std::process::Child,
    dir: edns_tests::TmpDir,
}

impl Unbound {
    fn start(h: &VethHarness, ldns: IpAddr, module_config: &str, extra: &str) -> Unbound {
        let dir = tmpdir();
        let conf = dir.join("unbound.conf");
        std::fs::write(
            &conf,
            format!(
                "server:\n  interface: 127.0.0.1\n  port: 53\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n  module-config: \"{module_config}\"\n  outgoing-interface: {ldns}\n  do-ip6: no\n  qname-minimisation: no\n  do-not-query-localhost: no\n  root-hints: \"\"\n  access-control: 0.0.0.0/0 allow\n{extra}\nstub-zone:\n  name: \"gslb.example.\"\n  stub-addr: {srv}@53\n",
                d = dir.display(),
                srv = h.server_ip
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("unbound.log")).unwrap();
        let child = h.client.cmd("unbound").args(["-d", "-c"]).arg(&conf).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        Unbound { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("unbound.log")).unwrap_or_default()
    }

    /// The first NOERROR answer to `name` from `src` (unbound takes a moment to start).
    fn first_answer(&mut self, h: &VethHarness, src: Option<IpAddr>, name: &str) -> edns_tests::Dig {
        let resolver: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match kdig(Some(&h.client), resolver, src, &[name, "A"]) {
                Ok(d) if d.status == "NOERROR" => return d,
                r => {
                    assert!(Instant::now() < deadline, "unbound did not answer: {r:?}\n{}", self.log());
                    assert!(self.child.try_wait().unwrap().is_none(), "unbound exited: {}", self.log());
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn unbound_as_the_ldns_resolves_through_the_xdp_fast_path() {
    require_root();
    let h = VethHarness::new().unwrap();
    let ldns: IpAddr = "198.18.1.10".parse().unwrap();
    h.add_client_addrs(&[ldns]).unwrap();
    let e = start(&h);
    let mut unbound = Unbound::start(&h, ldns, "iterator", "  use-caps-for-id: yes\n");
    let resolver: SocketAddr = "127.0.0.1:53".parse().unwrap();
    let s0 = stats(&e);
    let d = unbound.first_answer(&h, None, "geo.gslb.example.");
    // unbound asked from 198.18.1.10, which topology maps to east.
    assert_eq!(d.answer(), "192.0.2.10", "{}", d.text);
    let www = kdig(Some(&h.client), resolver, None, &["www.gslb.example.", "A"]).unwrap();
    let want = ["192.0.2.10", "192.0.2.10", "198.51.100.20"][(u32::from("198.18.1.10".parse::<std::net::Ipv4Addr>().unwrap()) % 3) as usize];
    assert_eq!(www.answer(), want);
    let s1 = stats(&e);
    assert!(xdp(&s1, "answered_topology") > xdp(&s0, "answered_topology"), "{s1}");
    assert!(xdp(&s1, "answered_stripe") > xdp(&s0, "answered_stripe"), "{s1}");
}

#[test]
fn xdp_log_flag_reports_kernel_verdicts_through_aya_log() {
    require_root();
    let h = VethHarness::new().unwrap();
    let e = EdnsProc::start_full(
        &edns_tests::edns_bin(false),
        &demo_config(),
        Some(&h.server),
        &["--iface", &h.server_if, "--xdp", "native", "--xdp-log"],
        &[("EDNS_LOG", "info,edns=debug,edns_ebpf=debug")],
    )
    .unwrap();
    let server = SocketAddr::new(h.server_ip, 53);
    kdig(Some(&h.client), server, Some(h.client_ip), &["www.gslb.example.", "A"]).unwrap();
    kdig(Some(&h.client), server, Some(h.client_ip), &["nope.gslb.example.", "A"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (tx, pass) = (
        format!("action 3 outcome counter {}", edns_common::counter::ANSWERED_STRIPE),
        format!("action 2 outcome counter {}", edns_common::counter::PASS_UNKNOWN_NAME),
    );
    loop {
        let log = e.log_text();
        if log.contains(&tx) && log.contains(&pass) {
            break;
        }
        assert!(Instant::now() < deadline, "no aya-log lines {tx:?} and {pass:?} in:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn generic_skb_mode_answers_in_xdp_too() {
    require_root();
    let h = VethHarness::new().unwrap();
    let e = EdnsProc::start(&demo_config(), Some(&h.server), &["--iface", &h.server_if, "--xdp", "skb"]).unwrap();
    let s0 = stats(&e);
    let d = kdig(Some(&h.client), SocketAddr::new(h.server_ip, 53), Some(h.client_ip), &["geo.gslb.example.", "A"]).unwrap();
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    let s1 = stats(&e);
    assert_eq!(xdp(&s1, "answered_topology") - xdp(&s0, "answered_topology"), 1, "{s1}");
    assert_eq!(userspace_queries(&s1), userspace_queries(&s0));
    let link = h.server.ip(&["link", "show", &h.server_if]).unwrap();
    assert!(String::from_utf8_lossy(&link.stdout).contains("xdpgeneric"), "attached in generic mode");
}

#[test]
fn xdp_mode_flags_are_checked() {
    let dir = edns_tests::tmpdir();
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, demo_config()).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(edns_tests::edns_bin(false)).arg("run").arg("--config").arg(&cfg).args(args).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--xdp", "native"]).contains("--xdp native needs --iface"));
    assert!(run(&["--iface", "lo"]).contains("--iface given with --xdp off"));
    assert!(run(&["--xdp-log"]).contains("--xdp-log needs --xdp native or skb"));
}

/// NSID with XDP attached: the kernel answers it with the identifier, as
/// the controller does.
#[test]
fn nsid_is_answered_with_xdp_attached() {
    require_root();
    let h = VethHarness::new().unwrap();
    let cfg = demo_config().replace("[server]\n", "[server]\nnsid = \"edns-veth\"\n");
    let e = EdnsProc::start(&cfg, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let server = SocketAddr::new(h.server_ip, 53);
    let d = kdig(Some(&h.client), server, None, &["www.gslb.example.", "A", "+nsid"]).unwrap();
    assert!(d.text.contains("edns-veth") && d.answers.len() == 1, "{}", d.text);
    let s = stats(&e);
    assert_eq!((xdp(&s, "answered_stripe"), userspace_queries(&s)), (1, 0), "answered in XDP: {s}");
    let both = kdig(Some(&h.client), server, None, &["www.gslb.example.", "A", "+nsid", "+cookie"]).unwrap();
    assert!(both.text.contains("edns-veth") && both.text.contains(";; COOKIE:"), "NSID and a cookie: {}", both.text);
    let plain = kdig(Some(&h.client), server, None, &["www.gslb.example.", "A", "+edns"]).unwrap();
    assert!(!plain.text.contains("NSID"), "{}", plain.text);
    let s = stats(&e);
    assert_eq!((xdp(&s, "answered_stripe"), userspace_queries(&s)), (3, 0), "all in XDP: {s}");
}

/// DNS cookies answered in the kernel: a client cookie alone gets a fresh
/// server cookie, a returned valid one is recognised, a forged one is
/// answered with a fresh cookie too; none of them reaches userspace.
#[test]
fn kdig_cookies_are_answered_in_xdp_with_fresh_server_cookies() {
    require_root();
    let h = VethHarness::new().unwrap();
    let e = start(&h);
    let server = SocketAddr::new(h.server_ip, 53);
    let cookie_of = |text: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(";; COOKIE: "))
            .unwrap_or_else(|| panic!("no COOKIE in:\n{text}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let s0 = stats(&e);
    let first = kdig(Some(&h.client), server, None, &["www.gslb.example.", "A", "+cookie=0102030405060708"]).unwrap();
    assert_eq!(first.answers.len(), 1, "{}", first.text);
    let full = cookie_of(&first.text);
    assert_eq!(full.len(), 48, "client 8 + server 16 bytes: {}", first.text);
    assert!(full.starts_with("0102030405060708") && full[16..].starts_with("01000000"), "{full}");
    let again = kdig(Some(&h.client), server, None, &["www.gslb.example.", "A", &format!("+cookie={full}")]).unwrap();
    assert_eq!(again.answers.len(), 1, "{}", again.text);
    let forged = format!("{}{}", &full[..16], "0100000000000000deadbeefdeadbeef");
    let bad = kdig(Some(&h.client), server, None, &["www.gslb.example.", "A", &format!("+cookie={forged}")]).unwrap();
    assert_eq!(bad.answers.len(), 1, "a forged cookie is still answered: {}", bad.text);
    assert_ne!(cookie_of(&bad.text)[16..], forged[16..], "with a fresh server cookie");
    let s1 = stats(&e);
    let d = |n: &str| xdp(&s1, n) - xdp(&s0, n);
    assert_eq!((d("cookie_client_only"), d("cookie_valid"), d("cookie_bad")), (1, 1, 1), "{s1}");
    assert_eq!(d("answered_stripe"), 3, "{s1}");
    assert_eq!(userspace_queries(&s1), userspace_queries(&s0), "all three in XDP: {s1}");
}

/// BIND 9 from Debian as the LDNS, in its shipped default of sending DNS
/// cookies: its queries are answered in XDP (cookie and all), ≥ 99% of
/// them. answer_ttl = 0 makes BIND ask again for every client query.
#[test]
fn bind9_as_the_ldns_is_answered_in_xdp_cookies_and_all() {
    require_root();
    let h = VethHarness::new().unwrap();
    let cfg = demo_config().replace("answer_ttl = 30", "answer_ttl = 0");
    let e = EdnsProc::start(&cfg, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let dir = tmpdir();
    let conf = dir.join("named.conf");
    std::fs::write(
        &conf,
        format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  listen-on port 5300 {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  recursion yes;\n  allow-query {{ any; }};\n  dnssec-validation no;\n  qname-minimization off;\n  query-source address {src};\n}};\ncontrols {{ }};\nzone \"gslb.example\" {{\n  type static-stub;\n  server-addresses {{ {srv}; }};\n}};\n",
            d = dir.display(),
            src = h.client_ip,
            srv = h.server_ip
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("named.log")).unwrap();
    let mut named = h.client.cmd("named").args(["-g", "-c"]).arg(&conf).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let resolver: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let named_log = || std::fs::read_to_string(dir.join("named.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match kdig(Some(&h.client), resolver, None, &["www.gslb.example.", "A"]) {
            Ok(d) if d.status == "NOERROR" && d.answers.len() == 1 => break,
            r => {
                assert!(Instant::now() < deadline, "named did not answer: {r:?}\n{}", named_log());
                assert!(named.try_wait().unwrap().is_none(), "named exited: {}", named_log());
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let s0 = stats(&e);
    const N: u64 = 200;
    for _ in 0..N {
        let d = kdig(Some(&h.client), resolver, None, &["www.gslb.example.", "A"]).unwrap();
        assert_eq!(d.answers.len(), 1, "{}", d.text);
    }
    let s1 = stats(&e);
    let d = |n: &str| xdp(&s1, n) - xdp(&s0, n);
    let in_xdp = d("answered_stripe");
    let up = userspace_queries(&s1) - userspace_queries(&s0);
    let with_cookie = d("cookie_client_only") + d("cookie_valid") + d("cookie_bad");
    println!("BIND 9 as LDNS: {in_xdp} answered in XDP, {up} in userspace; cookies: {with_cookie} ({} valid)", d("cookie_valid"));
    assert!(in_xdp >= N * 99 / 100, "only {in_xdp} of {N} in XDP ({up} went up): {s1}");
    assert!(with_cookie >= in_xdp * 99 / 100 && d("cookie_valid") >= N * 9 / 10, "BIND sent cookies and returned ours: {s1}");
    let _ = named.kill();
    let _ = named.wait();
}

/// Hostile and malformed frames over the veth, as an attacker in the
/// client's network would send them: none is answered (every one is
/// dropped in XDP, counted by reason), while a well-formed control query in
/// the same batch is answered.
#[test]
fn crafted_frames_of_every_refused_class_get_no_answer_over_the_veth() {
    use edns_tests::packet::{dns_query, Frame};
    require_root();
    let h = VethHarness::new().unwrap();
    let e = start(&h);
    let mac = |ns: &edns_tests::Netns, iface: &str| ns.mac(iface).unwrap();
    let (server_mac, client_mac) = (mac(&h.server, &h.server_if), mac(&h.client, &h.client_if));
    let q = dns_query(0x5150, false, "www.gslb.example.", 1, None);
    let frame = |src: &str, dst: &str| {
        let mut b = Frame::udp(src.parse().unwrap(), dst.parse().unwrap(), 53, q.clone()).build();
        b[..6].copy_from_slice(&server_mac);
        b[6..12].copy_from_slice(&client_mac);
        b
    };
    let mut refused: Vec<(&str, Vec<u8>)> = Vec::new();
    for src in ["127.0.0.1", "0.1.2.3", "224.0.0.251", "240.0.0.9", "255.255.255.255", "198.18.0.1"] {
        refused.push((src, frame(src, "198.18.0.1")));
    }
    refused.push(("::1 over IPv6", frame("::1", "fd00:edd5::1")));
    refused.push(("ff02::1 over IPv6", frame("ff02::1", "fd00:edd5::1")));
    let mut b = frame("198.18.5.5", "198.18.0.1");
    b[6] |= 1;
    refused.push(("group source MAC", b));
    let mut f = Frame::udp("198.18.5.5".parse().unwrap(), "198.18.0.1".parse().unwrap(), 53, q.clone());
    f.sport = 0;
    let mut b = f.build();
    b[..6].copy_from_slice(&server_mac);
    b[6..12].copy_from_slice(&client_mac);
    refused.push(("source port 0", b));
    let mut b = frame("198.18.5.5", "198.18.0.1");
    b[5] ^= 0x20;
    refused.push(("another host's MAC", b));
    let mut b = frame("198.18.5.5", "255.255.255.255");
    b[..6].copy_from_slice(&[0xff; 6]);
    refused.push(("broadcast", b));
    let mut b = frame("198.18.5.5", "198.18.0.1");
    b[25] ^= 1;
    refused.push(("bad IPv4 header checksum", b));
    let mut b = frame("198.18.5.5", "198.18.0.1");
    b[41] ^= 1;
    refused.push(("bad UDP checksum", b));
    let mut b = frame("fd00:edd5::5", "fd00:edd5::1");
    b[60] = 0;
    b[61] = 0;
    refused.push(("zero UDP checksum over IPv6", b));
    let dir = tmpdir();
    let file = dir.join("frames.hex");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut lines: Vec<String> = refused.iter().map(|(_, b)| hex(b)).collect();
    lines.push(hex(&frame(&h.client_ip.to_string(), "198.18.0.1"))); // the control query
    std::fs::write(&file, lines.join("\n")).unwrap();
    let s0 = stats(&e);
    let out = h
        .client
        .cmd("python3")
        .arg(workspace().join("tests/fixtures/send_frames.py"))
        .args([&h.client_if, file.to_str().unwrap(), "1.5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().next(), Some("answers 1"), "only the control query is answered:\n{text}");
    assert!(text.contains(&format!("to {}", h.client_ip)), "{text}");
    let s1 = stats(&e);
    let d = |n: &str| xdp(&s1, n) - xdp(&s0, n);
    assert_eq!(d("drop_martian_source") + d("drop_not_for_us") + d("drop_bad_checksum"), refused.len() as u64, "every refused frame dropped in XDP: {s1}");
    assert_eq!(userspace_queries(&s1), userspace_queries(&s0), "none reached userspace: {s1}");
}

/// Userspace with a wildcard listen: a query sent to the subnet's broadcast
/// address or to a multicast group is not answered (once per socket, and
/// to whoever the source claims to be); a query to a second address of the
/// server is answered from that address.
#[test]
fn wildcard_userspace_answers_from_the_queried_address_and_never_to_broadcast_or_multicast() {
    require_root();
    let h = VethHarness::new().unwrap();
    h.server.ip(&["addr", "add", "198.18.0.9/15", "dev", &h.server_if]).unwrap();
    let cfg = demo_config().replace("listen = [\"198.18.0.1:53\", \"[fd00:edd5::1]:53\"]", "listen = [\"0.0.0.0:53\", \"[::]:53\"]");
    assert!(cfg.contains("0.0.0.0:53"), "{cfg}");
    let e = EdnsProc::start(&cfg, Some(&h.server), &[]).unwrap();
    // kdig checks the answer's source: an answer from another address would be ignored.
    let d = kdig(Some(&h.client), "198.18.0.9:53".parse().unwrap(), None, &["www.gslb.example.", "A"]).unwrap();
    assert_eq!(d.answers.len(), 1, "{}", d.text);
    assert!(d.text.contains("From 198.18.0.9@53"), "{}", d.text);
    let q = edns_tests::packet::dns_query(0x4242, false, "www.gslb.example.", 1, None);
    let hex: String = q.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket,sys\nq=bytes.fromhex('{hex}')\nn=0\nfor dst in ['198.19.255.255','255.255.255.255','224.0.0.251']:\n    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n    s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\n    s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('{c}'))\n    s.bind(('{c}',0))\n    s.settimeout(1.0)\n    s.sendto(q,(dst,53))\n    try:\n        s.recvfrom(4096); n+=1; print('answered',dst)\n    except socket.timeout:\n        pass\nprint('answers',n)\n",
        c = h.client_ip
    );
    let before = e.ctl(&["stats"]).unwrap()["dns"]["dropped"].as_u64().unwrap();
    let out = h.client.cmd("python3").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("answers 0"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let after = e.ctl(&["stats"]).unwrap()["dns"]["dropped"].as_u64().unwrap();
    assert!(after > before, "the broadcast queries that reached a socket were dropped and counted ({before} -> {after})");
}

/// XDP with a wildcard listen answers for the interface's own addresses
/// only, following them as they change (netlink); a query to the subnet's
/// broadcast address, even in a unicast frame, is answered by nobody.
#[test]
fn xdp_wildcard_listen_follows_the_interface_addresses_and_never_answers_broadcast() {
    require_root();
    let h = VethHarness::new().unwrap();
    let cfg = demo_config().replace("listen = [\"198.18.0.1:53\", \"[fd00:edd5::1]:53\"]", "listen = [\"0.0.0.0:53\", \"[::]:53\"]");
    let e = EdnsProc::start(&cfg, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let ask = |server: &str| kdig(Some(&h.client), SocketAddr::new(server.parse().unwrap(), 53), None, &["www.gslb.example.", "A"]);
    let s0 = stats(&e);
    assert_eq!(ask("198.18.0.1").unwrap().answers.len(), 1);
    let s1 = stats(&e);
    assert_eq!(xdp(&s1, "answered_stripe") - xdp(&s0, "answered_stripe"), 1, "{s1}");
    // A new address: XDP answers for it once netlink has told edns.
    h.server.ip(&["addr", "add", "198.18.0.10/15", "dev", &h.server_if]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = xdp(&stats(&e), "answered_stripe");
        let d = ask("198.18.0.10").unwrap();
        assert_eq!(d.answers.len(), 1, "{}", d.text);
        if xdp(&stats(&e), "answered_stripe") == before + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the new address was never answered in XDP: {}", e.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The directed broadcast in a frame to the server's own MAC.
    let mac = |ns: &edns_tests::Netns, iface: &str| ns.mac(iface).unwrap();
    let q = edns_tests::packet::dns_query(0x7777, false, "www.gslb.example.", 1, None);
    let mut b = edns_tests::packet::Frame::udp(h.client_ip, "198.19.255.255".parse().unwrap(), 53, q).build();
    b[..6].copy_from_slice(&mac(&h.server, &h.server_if));
    b[6..12].copy_from_slice(&mac(&h.client, &h.client_if));
    let dir = tmpdir();
    let file = dir.join("frames.hex");
    std::fs::write(&file, b.iter().map(|x| format!("{x:02x}")).collect::<String>()).unwrap();
    let s2 = stats(&e);
    let out = h.client.cmd("python3").arg(workspace().join("tests/fixtures/send_frames.py")).args([&h.client_if, file.to_str().unwrap(), "1.0"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("answers 0"), "{text}");
    let s3 = stats(&e);
    assert_eq!(xdp(&s3, "pass_not_ours") - xdp(&s2, "pass_not_ours"), 1, "not ours in XDP: {s3}");
    // Removed again: no longer answered in XDP.
    h.server.ip(&["addr", "del", "198.18.0.10/15", "dev", &h.server_if]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let s4 = stats(&e);
    let _ = ask("198.18.0.10");
    let s5 = stats(&e);
    assert_eq!(xdp(&s5, "answered_stripe"), xdp(&s4, "answered_stripe"), "{s5}");
}

/// Zonemaster (Debian's zonemaster-cli) checks the delegation of the zone
/// served by edns with two in-zone name servers whose addresses come from
/// the zone file: nothing at WARNING or above but what this harness's
/// addresses cause (RFC 2544 benchmarking space, no reverse zone).
#[test]
fn zonemaster_finds_nothing_wrong_with_a_delegation_to_edns() {
    require_root();
    let h = VethHarness::new().unwrap();
    h.server.ip(&["addr", "add", "198.18.0.3/15", "dev", &h.server_if]).unwrap();
    let dir = tmpdir();
    std::fs::write(
        dir.join("gslb.example.zone"),
        "$ORIGIN gslb.example.\n$TTL 300\nns1 A 198.18.0.1\nns2 A 198.18.0.3\n@ MX 10 mail\nmail A 192.0.2.25\n",
    )
    .unwrap();
    let cfg = demo_config()
        .replace("listen = [\"198.18.0.1:53\", \"[fd00:edd5::1]:53\"]", "listen = [\"198.18.0.1:53\", \"198.18.0.3:53\"]")
        .replace("nameservers = [\"ns1.gslb.example.\"]", "nameservers = [\"ns1.gslb.example.\", \"ns2.gslb.example.\"]")
        .replace("[server]\n", &format!("[server]\nzone_file = {:?}\n", dir.join("gslb.example.zone").display().to_string()));
    let _e = EdnsProc::start(&cfg, Some(&h.server), &[]).unwrap();
    let out = h
        .client
        .cmd("zonemaster-cli")
        .args(["--no-ipv6", "--ns", "ns1.gslb.example/198.18.0.1", "--ns", "ns2.gslb.example/198.18.0.3", "gslb.example", "--level", "WARNING", "--show-testcase", "--no-count"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let findings: Vec<&str> = text.lines().filter(|l| l.contains("WARNING") || l.contains("ERROR") || l.contains("CRITICAL")).collect();
    assert!(text.contains("Testcase"), "zonemaster ran: {text}{}", String::from_utf8_lossy(&out.stderr));
    // ADDRESS01: the harness's 198.18.0.0/15; ADDRESS02: no reverse zone for it.
    let unexpected: Vec<&&str> = findings.iter().filter(|l| !l.contains("ADDRESS01") && !l.contains("ADDRESS02")).collect();
    assert!(unexpected.is_empty(), "zonemaster found:\n{}", unexpected.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n"));
}

/// Prefix persistence with XDP attached: LDNSes in one /24 share one record
/// (created by the first, hit in the kernel by the others); another /24
/// gets its own.
#[test]
fn ldnses_of_one_prefix_share_one_persistence_record_in_xdp() {
    require_root();
    let h = VethHarness::new().unwrap();
    let cfg = demo_config().replace("persistence_ttl = 600\n", "persistence_ttl = 600\npersist_mask_v4 = 24\n");
    assert!(cfg.contains("persist_mask_v4 = 24"), "{cfg}");
    let e = EdnsProc::start(&cfg, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let same: Vec<IpAddr> = ["198.18.7.10", "198.18.7.20", "198.18.7.30"].iter().map(|s| s.parse().unwrap()).collect();
    let other: IpAddr = "198.18.8.10".parse().unwrap();
    h.add_client_addrs(&same).unwrap();
    h.add_client_addrs(&[other]).unwrap();
    let server = SocketAddr::new(h.server_ip, 53);
    let ask = |src: IpAddr| kdig(Some(&h.client), server, Some(src), &["shop.gslb.example.", "A"]).unwrap().answer().to_string();
    let s0 = stats(&e);
    let first = ask(same[0]);
    for src in &same[1..] {
        assert_eq!(ask(*src), first, "{src} shares the /24's record");
    }
    let s1 = stats(&e);
    assert_eq!(xdp(&s1, "answered_persistence") - xdp(&s0, "answered_persistence"), 2, "kernel hits: {s1}");
    ask(other);
    let recs = e.ctl(&["records"]).unwrap();
    let prefixes: Vec<&str> = recs.as_array().unwrap().iter().map(|r| r["ldns"].as_str().unwrap()).collect();
    assert!(prefixes.contains(&"198.18.7.0/24") && prefixes.contains(&"198.18.8.0/24"), "{recs}");
    let rec = recs.as_array().unwrap().iter().find(|r| r["ldns"] == "198.18.7.0/24").unwrap();
    assert_eq!(rec["hits"], 3, "{rec}");
}

/// An LDNS group (Fig. 5) with XDP attached: members asking from several
/// addresses get one SAC from the stripe and share one persistence record
/// (kernel hits after the first); topology still matches each member's own
/// address.
#[test]
fn members_of_an_ldns_group_are_one_requester_in_xdp() {
    require_root();
    let h = VethHarness::new().unwrap();
    let members: Vec<IpAddr> = ["198.18.1.10", "198.18.2.10", "198.18.9.1", "198.18.9.2"].iter().map(|s| s.parse().unwrap()).collect();
    h.add_client_addrs(&members).unwrap();
    let cfg = demo_config() + "\n[[ldns_group]]\nname = \"resolvers\"\nid = 7\nmembers = [\"198.18.1.10\", \"198.18.2.10\", \"198.18.9.0/24\"]\n";
    let e = EdnsProc::start(&cfg, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let server = SocketAddr::new(h.server_ip, 53);
    let ask = |src: IpAddr, name: &str| kdig(Some(&h.client), server, Some(src), &[name, "A"]).unwrap().answer().to_string();
    // Stripe over [east/vs1, east/vs2, west/vs1] reads the group id 7: 7 mod 3 = 1 -> east/vs2 -> east.
    for m in &members {
        assert_eq!(ask(*m, "www.gslb.example."), "192.0.2.10", "{m}");
    }
    let s0 = stats(&e);
    let first = ask(members[0], "shop.gslb.example.");
    for m in &members[1..] {
        assert_eq!(ask(*m, "shop.gslb.example."), first, "{m} shares the group's record");
    }
    let s1 = stats(&e);
    assert_eq!(xdp(&s1, "answered_persistence") - xdp(&s0, "answered_persistence"), 3, "{s1}");
    let recs = e.ctl(&["records"]).unwrap();
    let rec = recs.as_array().unwrap().iter().find(|r| r["ldns"] == "group resolvers").unwrap_or_else(|| panic!("{recs}"));
    assert_eq!(rec["hits"], 4);
    // Topology: each member's own address (198.18.1.0/24 -> east, 198.18.2.0/24 -> west).
    assert_eq!(ask(members[0], "geo.gslb.example."), "192.0.2.10");
    assert_eq!(ask(members[1], "geo.gslb.example."), "198.51.100.20");
}

/// A group's members_file is re-read when it changes, and the kernel's
/// GROUPS trie follows: an address added to the file joins the group (its
/// next query is a kernel hit on the group's record); a bad file is refused
/// with its line and the old list stays.
#[test]
fn an_ldns_group_members_file_is_reloaded_without_restart_and_a_bad_one_refused() {
    require_root();
    let h = VethHarness::new().unwrap();
    let (a, b): (IpAddr, IpAddr) = ("198.18.9.1".parse().unwrap(), "198.18.9.2".parse().unwrap());
    h.add_client_addrs(&[a, b]).unwrap();
    let dir = tmpdir();
    let file = dir.join("members.txt");
    std::fs::write(&file, "# resolvers of one operator\n198.18.9.1\n").unwrap();
    let cfg = demo_config() + &format!("\n[[ldns_group]]\nname = \"op\"\nmembers_file = {:?}\n", file.display().to_string());
    let e = EdnsProc::start(&cfg, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let server = SocketAddr::new(h.server_ip, 53);
    let ask = |src: IpAddr| kdig(Some(&h.client), server, Some(src), &["shop.gslb.example.", "A"]).unwrap().answer().to_string();
    let group_hits = || {
        let recs = e.ctl(&["records"]).unwrap();
        recs.as_array().unwrap().iter().find(|r| r["ldns"] == "group op").map(|r| r["hits"].as_u64().unwrap()).unwrap_or(0)
    };
    ask(a);
    assert_eq!(group_hits(), 1);
    ask(b); // not a member yet: a record of its own
    assert_eq!(group_hits(), 1);
    std::thread::sleep(Duration::from_millis(1100)); // a new mtime
    std::fs::write(&file, "# resolvers of one operator\n198.18.9.1\n198.18.9.2\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while group_hits() < 2 {
        assert!(Instant::now() < deadline, "198.18.9.2 never joined the group: {}", e.log_text());
        std::thread::sleep(Duration::from_millis(200));
        ask(b);
    }
    let s0 = stats(&e);
    ask(b);
    assert_eq!(xdp(&stats(&e), "answered_persistence") - xdp(&s0, "answered_persistence"), 1, "a kernel hit on the group's record");
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&file, "198.18.9.1\n198.18.9.2\nnot-an-address\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !e.log_text().contains("members_file refused") {
        assert!(Instant::now() < deadline, "the bad file was not reported: {}", e.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(e.log_text().contains("line=3"), "{}", e.log_text());
    let before = group_hits();
    ask(b);
    assert_eq!(group_hits(), before + 1, "the old list stays");
}

/// The kernel reads the GROUPS trie only while a group has members (a flag
/// in its settings): a group whose first member arrives live is read from
/// the next query on, and once its last member leaves the source is its
/// own requester again.
#[test]
fn a_groups_first_member_added_live_is_read_by_the_kernel_and_its_last_removed_is_not() {
    require_root();
    let h = VethHarness::new().unwrap();
    let b: IpAddr = "198.18.9.2".parse().unwrap();
    h.add_client_addrs(&[b]).unwrap();
    let dir = tmpdir();
    let file = dir.join("members.txt");
    std::fs::write(&file, "# no members yet\n").unwrap();
    let cfg = demo_config() + &format!("\n[[ldns_group]]\nname = \"op\"\nmembers_file = {:?}\n", file.display().to_string());
    let e = EdnsProc::start(&cfg, Some(&h.server), &["--iface", &h.server_if, "--xdp", "native"]).unwrap();
    let server = SocketAddr::new(h.server_ip, 53);
    let ask = || kdig(Some(&h.client), server, Some(b), &["shop.gslb.example.", "A"]).unwrap().answer().to_string();
    let hits = |ldns: &str| {
        let recs = e.ctl(&["records"]).unwrap();
        recs.as_array().unwrap().iter().find(|r| r["ldns"] == ldns).map(|r| r["hits"].as_u64().unwrap()).unwrap_or(0)
    };
    let kernel_hits = || xdp(&stats(&e), "answered_persistence");
    ask();
    ask();
    assert_eq!((hits("198.18.9.2"), kernel_hits()), (2, 1), "its own record, a kernel hit on it");
    std::thread::sleep(Duration::from_millis(1100)); // a new mtime
    std::fs::write(&file, "198.18.9.2\n").unwrap();
    edns_tests::wait_until(Duration::from_secs(5), "198.18.9.2 joining the group", || {
        ask();
        hits("group op") > 0
    });
    let (own, k0) = (hits("198.18.9.2"), kernel_hits());
    ask();
    assert_eq!((hits("group op"), hits("198.18.9.2"), kernel_hits()), (2, own, k0 + 1), "a kernel hit on the group's record");
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&file, "# all gone\n").unwrap();
    edns_tests::wait_until(Duration::from_secs(5), "198.18.9.2 leaving the group", || {
        ask();
        hits("198.18.9.2") > own
    });
    let (group, k1) = (hits("group op"), kernel_hits());
    ask();
    assert_eq!((hits("group op"), kernel_hits()), (group, k1 + 1), "a kernel hit on its own record again");
}

/// EDNS Client Subnet with XDP attached: kdig's subnets from several LDNS
/// addresses are answered in the kernel, for the subnet (an independent
/// Fig. 3 walk over its address) and with the scope read; a malformed one
/// goes up and gets FORMERR.
#[test]
fn kdig_client_subnets_are_answered_in_xdp_with_the_scope_read() {
    require_root();
    let h = VethHarness::new().unwrap();
    let ldnses: Vec<IpAddr> = ["198.18.9.10", "198.18.9.20", "198.18.10.30"].iter().map(|s| s.parse().unwrap()).collect();
    h.add_client_addrs(&ldnses).unwrap();
    let e = start(&h);
    let server = SocketAddr::new(h.server_ip, 53);
    let pool = ["192.0.2.10", "192.0.2.10", "198.51.100.20"];
    let s0 = stats(&e);
    let mut asked = 0;
    for net in ["203.0.113.0", "198.51.100.0", "100.64.7.0", "192.0.2.0", "10.9.8.0"] {
        let net: std::net::Ipv4Addr = net.parse().unwrap();
        let want = pool[edns_tests::fig3(net, &[true; 3])];
        for (i, src) in ldnses.iter().enumerate() {
            let subnet = format!("+subnet={}/{}", std::net::Ipv4Addr::from(u32::from(net) | 77), [24, 32, 28][i]);
            let d = kdig(Some(&h.client), server, Some(*src), &["cdn.gslb.example.", "A", &subnet]).unwrap();
            assert_eq!(d.answer(), want, "{}", d.text);
            let echo = d.text.lines().find_map(|l| l.strip_prefix(";; CLIENT-SUBNET: ")).unwrap_or_else(|| panic!("no subnet echoed\n{}", d.text));
            assert!(echo.ends_with("/24"), "scope 24 (the /24 maximum read): {echo}");
            asked += 1;
        }
    }
    let s1 = stats(&e);
    assert_eq!(xdp(&s1, "ecs_answered") - xdp(&s0, "ecs_answered"), asked, "every one answered in the kernel: {s1}");
    assert_eq!(userspace_queries(&s1), userspace_queries(&s0), "none went up: {s1}");
    // A scope in a query is malformed: up to the controller, FORMERR.
    let mut q = edns_tests::packet::dns_query(9, false, "cdn.gslb.example.", 1, Some(1232));
    edns_tests::packet::add_option(&mut q, 8, &[0, 1, 24, 24, 192, 0, 2], false);
    let reply = h.client_udp_exchange(ldnses[0], server, &q).expect("an answer");
    assert_eq!(reply[3] & 0x0f, 1, "FORMERR: {reply:02x?}");
    assert_eq!(xdp(&stats(&e), "pass_bad_ecs") - xdp(&s1, "pass_bad_ecs"), 1);
}

/// unbound as a real LDNS with its subnet cache (`module-config:
/// "subnetcache iterator"`, `send-client-subnet`) sends its clients'
/// subnets to edns; with XDP attached those queries are answered in the
/// kernel, each client /24 on its own stripe position.
#[test]
fn unbound_with_subnetcache_sends_client_subnets_that_xdp_answers() {
    require_root();
    let h = VethHarness::new().unwrap();
    let ldns: IpAddr = "198.18.1.10".parse().unwrap();
    let clients: Vec<IpAddr> = (1..=12).map(|i| format!("198.18.{}.{}", 100 + i, 7 * i).parse().unwrap()).collect();
    h.add_client_addrs(&[ldns]).unwrap();
    h.add_client_addrs(&clients).unwrap();
    let e = start(&h);
    let subnet = format!("  send-client-subnet: {}\n  max-client-subnet-ipv4: 24\n", h.server_ip);
    let mut unbound = Unbound::start(&h, ldns, "subnetcache iterator", &subnet);
    let resolver: SocketAddr = "127.0.0.1:53".parse().unwrap();
    unbound.first_answer(&h, Some(clients[0]), "www.gslb.example.");
    let s0 = stats(&e);
    let pool = ["192.0.2.10", "192.0.2.10", "198.51.100.20"];
    for c in &clients {
        let d = kdig(Some(&h.client), resolver, Some(*c), &["cdn.gslb.example.", "A"]).unwrap();
        let IpAddr::V4(v4) = c else { unreachable!() };
        let net = std::net::Ipv4Addr::from(u32::from(*v4) & 0xffff_ff00);
        assert_eq!(d.answer(), pool[edns_tests::fig3(net, &[true; 3])], "client {c}: its /24's stripe position\n{}", d.text);
    }
    let s1 = stats(&e);
    let kernel = xdp(&s1, "ecs_answered") - xdp(&s0, "ecs_answered");
    let userspace = s1["dns"]["client_subnet"].as_u64().unwrap() - s0["dns"]["client_subnet"].as_u64().unwrap();
    println!("unbound's client-subnet queries: {kernel} answered in XDP, {userspace} in userspace");
    assert!(kernel >= clients.len() as u64, "one upstream query per client /24, answered in XDP: {s1}\n{}", unbound.log());
    assert_eq!(userspace, 0, "{s1}");
}

/// Time-of-day persistence TTL with XDP attached and an injected clock
/// (`--clock-start`, ten seconds before a window opens): before the edge a
/// record is judged by the 1 s default and expires in the kernel; at the
/// edge the controller rewrites the wide IP's TTL, without a restart, and
/// the kernel keeps a record two seconds old as a hit.
#[test]
fn the_persistence_ttl_switches_at_the_schedules_window_edge_in_xdp() {
    require_root();
    let h = VethHarness::new().unwrap();
    let cfg = demo_config().replace(
        "persistence_ttl = 600\n",
        "persistence_ttl = 1\npersistence_schedule = [{ days = [\"mon\"], start = \"08:00\", end = \"09:00\", time_zone = \"Europe/Berlin\", ttl = 3600 }]\n",
    );
    assert!(cfg.contains("persistence_schedule"), "{cfg}");
    // Monday 30 November 2026, 07:59:50 in Berlin.
    let args = ["--iface", &h.server_if, "--xdp", "native", "--clock-start", "2026-11-30T07:59:50+01:00"];
    let e = EdnsProc::start(&cfg, Some(&h.server), &args).unwrap();
    let ldns: IpAddr = "198.18.11.10".parse().unwrap();
    h.add_client_addrs(&[ldns]).unwrap();
    let server = SocketAddr::new(h.server_ip, 53);
    let ask = || kdig(Some(&h.client), server, Some(ldns), &["shop.gslb.example.", "A"]).unwrap().answer().to_string();
    let ttl_in_force = || {
        let w = e.ctl(&["wide-ips"]).unwrap();
        w.as_array().unwrap().iter().find(|w| w["name"] == "shop.gslb.example.").unwrap()["persistence_ttl_secs"].as_u64().unwrap()
    };
    assert_eq!(ttl_in_force(), 1, "before the window");
    ask();
    std::thread::sleep(Duration::from_millis(1500));
    let s0 = stats(&e);
    ask();
    let s1 = stats(&e);
    assert_eq!(ttl_in_force(), 1, "still before the window (the test ran too slowly otherwise)");
    assert_eq!(xdp(&s1, "pass_persist_expired") - xdp(&s0, "pass_persist_expired"), 1, "expired under 1 s in the kernel: {s1}");
    // The window opens: the TTL in force becomes 3600 in both paths.
    edns_tests::wait_until(Duration::from_secs(15), "the window to open", || ttl_in_force() == 3600);
    ask();
    std::thread::sleep(Duration::from_millis(2000));
    let s2 = stats(&e);
    ask();
    let s3 = stats(&e);
    assert_eq!(xdp(&s3, "answered_persistence") - xdp(&s2, "answered_persistence"), 1, "a 2 s old record is a kernel hit now: {s3}");
    assert_eq!(xdp(&s3, "pass_persist_expired"), xdp(&s2, "pass_persist_expired"), "{s3}");
    let recs = e.ctl(&["records"]).unwrap();
    assert_eq!(recs[0]["ttl_secs"], 3600, "{recs}");
}
