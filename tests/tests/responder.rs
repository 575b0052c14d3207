//! The userspace responder against real clients on loopback: kdig from many
//! 127.x.y.z LDNS source addresses, raw UDP/TCP sockets for malformed input.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use edns_tests::{example_config, fig3, kdig, loopback_ports, EdnsProc};
use rand::{Rng, SeedableRng};

const EAST: &str = "192.0.2.10";
const WEST: &str = "198.51.100.20";

fn start_example() -> EdnsProc {
    let (dns, control) = loopback_ports();
    EdnsProc::start(&example_config(dns, control), None, &[]).unwrap()
}

/// Random LDNS addresses in 127.0.0.0/8 (each is a valid source on lo).
fn ldns_addrs(n: usize, seed: u64) -> Vec<Ipv4Addr> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v: Vec<Ipv4Addr> = (0..n).map(|_| Ipv4Addr::new(127, rng.random(), rng.random(), rng.random_range(1..255))).collect();
    v.sort();
    v.dedup();
    v
}

/// SAC address of each pool entry of www.gslb.example. (east/vs1, east/vs2, west/vs1).
const WWW_POOL: [&str; 3] = [EAST, EAST, WEST];

fn query_all(e: &EdnsProc, name: &str, ldns: &[Ipv4Addr]) -> HashMap<Ipv4Addr, String> {
    ldns.iter()
        .map(|ip| {
            let d = kdig(None, e.dns, Some(IpAddr::V4(*ip)), &[name, "A"]).unwrap();
            assert_eq!(d.status, "NOERROR", "{}", d.text);
            (*ip, d.answer().to_string())
        })
        .collect()
}

#[test]
fn stripe_answers_for_500_ldns_addresses_match_an_independent_fig3_walk() {
    let e = start_example();
    let ldns = ldns_addrs(500, 1);
    let got = query_all(&e, "www.gslb.example.", &ldns);
    for ip in &ldns {
        let want = WWW_POOL[fig3(*ip, &[true, true, true])];
        assert_eq!(got[ip], want, "LDNS {ip} (= {})", u32::from(*ip));
    }
    // Both SACs are chosen: the check above is not vacuous.
    assert!(got.values().any(|a| a == EAST) && got.values().any(|a| a == WEST));
}

#[test]
fn marking_a_vs_down_moves_exactly_the_ldnses_fig3_says_and_marking_it_up_restores_them() {
    let e = start_example();
    let ldns = ldns_addrs(300, 2);
    let before = query_all(&e, "www.gslb.example.", &ldns);
    e.ctl(&["set-vs", "west/vs1", "down"]).unwrap();
    let after = query_all(&e, "www.gslb.example.", &ldns);
    let mut moved = 0;
    for ip in &ldns {
        // Pool entry chosen with west/vs1 marked down; the SAC may stay the same.
        let want = WWW_POOL[fig3(*ip, &[true, true, false])];
        assert_eq!(after[ip], want, "LDNS {ip}");
        if after[ip] != before[ip] {
            moved += 1;
        }
    }
    assert!(moved > 50, "only {moved} of {} LDNSes moved", ldns.len());
    assert!(after.values().all(|a| a == EAST));
    e.ctl(&["set-vs", "west/vs1", "up"]).unwrap();
    assert_eq!(query_all(&e, "www.gslb.example.", &ldns), before);
}

#[test]
fn unavailable_candidate_is_marked_down_and_the_walk_recomputes_with_n_minus_1() {
    let e = start_example();
    // 127.0.0.1 = 2130706433; 2130706433 % 3 = 2 -> X = 3 -> west/vs1.
    let ip: Ipv4Addr = "127.0.0.1".parse().unwrap();
    assert_eq!(fig3(ip, &[true, true, true]), 2);
    e.ctl(&["set-vs", "west/vs1", "unavailable"]).unwrap();
    let vs = e.ctl(&["vs"]).unwrap();
    assert_eq!(vs[2]["marked_up"], true, "{vs}");
    let d = kdig(None, e.dns, Some(IpAddr::V4(ip)), &["www.gslb.example.", "A"]).unwrap();
    // N - 1 = 2 over {east/vs1, east/vs2}: 2130706433 % 2 + 1 = 2 -> east/vs2.
    assert_eq!(d.answer(), EAST);
    let vs = e.ctl(&["vs"]).unwrap();
    assert_eq!(vs[2]["name"], "west/vs1");
    assert_eq!(vs[2]["marked_up"], false, "block 325 marks the candidate down: {vs}");
}

#[test]
fn all_vs_unavailable_falls_back_to_round_robin_over_the_whole_pool() {
    let e = start_example();
    for vs in ["east/vs1", "east/vs2", "west/vs1"] {
        e.ctl(&["set-vs", vs, "down"]).unwrap();
    }
    let ip = Some(IpAddr::V4("127.9.9.9".parse().unwrap()));
    let answers: Vec<String> =
        (0..6).map(|_| kdig(None, e.dns, ip, &["www.gslb.example.", "A"]).unwrap().answer().to_string()).collect();
    // Round robin over east/vs1, east/vs2, west/vs1 regardless of state.
    assert_eq!(answers, [EAST, EAST, WEST, EAST, EAST, WEST]);
}

#[test]
fn topology_matches_the_ldns_prefix_and_falls_back_to_stripe() {
    let e = start_example();
    let q = |ip: &str| kdig(None, e.dns, Some(ip.parse().unwrap()), &["geo.gslb.example.", "A"]).unwrap().answer().to_string();
    for i in 1..20u8 {
        assert_eq!(q(&format!("127.1.{i}.{}", 200 - i)), EAST);
        assert_eq!(q(&format!("127.2.{}.{i}", 3 * i)), WEST);
    }
    // No prefix matches: stripe over [east/vs1, west/vs1].
    for ip in ldns_addrs(40, 3).into_iter().filter(|ip| ip.octets()[1] > 2) {
        let want = [EAST, WEST][fig3(ip, &[true, true])];
        assert_eq!(q(&ip.to_string()), want, "LDNS {ip}");
    }
    // The matched SAC has no VS up: stripe among the rest.
    e.ctl(&["set-vs", "west/vs1", "down"]).unwrap();
    assert_eq!(q("127.2.0.9"), EAST);
}

fn dynamic_config(ttl: u32) -> (String, SocketAddr) {
    let (dns, control) = loopback_ports();
    (example_config(dns, control).replace("persistence_ttl = 600", &format!("persistence_ttl = {ttl}")), dns)
}

fn records(e: &EdnsProc) -> Vec<serde_json::Value> {
    e.ctl(&["records"]).unwrap().as_array().unwrap().clone()
}

#[test]
fn persistence_record_is_refreshed_while_timely_then_expires_and_is_rebalanced() {
    let (cfg, _) = dynamic_config(2);
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    let a = Some(IpAddr::V4("127.5.0.1".parse().unwrap()));
    let b = Some(IpAddr::V4("127.5.0.2".parse().unwrap()));
    let shop = |src| kdig(None, e.dns, src, &["shop.gslb.example.", "A"]).unwrap().answer().to_string();

    let first = shop(a);
    let r = records(&e);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["ldns"], "127.5.0.1");
    assert_eq!(r[0]["hits"], 1);
    assert_eq!(r[0]["ttl_secs"], 2);
    // Round robin gives the next LDNS the other SAC...
    let other = shop(b);
    assert_ne!(first, other);
    // ...while the first LDNS keeps its SAC and its record counts hits.
    for hits in 2..=4 {
        assert_eq!(shop(a), first);
        let r = records(&e);
        let ra = r.iter().find(|x| x["ldns"] == "127.5.0.1").unwrap();
        assert_eq!(ra["hits"], hits);
        assert!(ra["last_request_age_secs"].as_f64().unwrap() < 1.0);
    }
    // Let it expire: the record is replaced (hits back to 1) by a fresh balance.
    std::thread::sleep(Duration::from_millis(2300));
    let expired = records(&e);
    assert!(expired.iter().all(|x| x["expires_in_secs"].as_f64().unwrap() < 0.0), "{expired:?}");
    let again = shop(a);
    let r = records(&e);
    let ra = r.iter().find(|x| x["ldns"] == "127.5.0.1").unwrap();
    assert_eq!(ra["hits"], 1, "{r:?}");
    assert!(ra["created_age_secs"].as_f64().unwrap() < 1.0);
    // Round robin counter is at 2 after two balances: pool[2 % 2] = east/vs1.
    assert_eq!(again, EAST);
    assert_eq!(ra["vs"], "east/vs1");
}

#[test]
fn persistence_record_whose_vs_went_unavailable_is_rebalanced() {
    let (cfg, _) = dynamic_config(600);
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    let a = Some(IpAddr::V4("127.6.0.1".parse().unwrap()));
    let shop = || kdig(None, e.dns, a, &["shop.gslb.example.", "A"]).unwrap().answer().to_string();
    assert_eq!(shop(), EAST); // first balance: round robin position 0
    e.ctl(&["set-vs", "east/vs1", "unavailable"]).unwrap();
    assert_eq!(shop(), WEST);
    let r = records(&e);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["vs"], "west/vs1");
    assert_eq!(r[0]["hits"], 1);
}

fn zone_with_many_nameservers() -> (String, SocketAddr) {
    let (dns, control) = loopback_ports();
    let ns: Vec<String> = (0..40).map(|i| format!("\"a-rather-long-nameserver-name-{i:02}.gslb.example.\"")).collect();
    let cfg = example_config(dns, control).replace(
        "nameservers = [\"ns1.gslb.example.\"]",
        &format!("nameservers = [{}]\nedns_payload = 4096", ns.join(", ")),
    );
    (cfg, dns)
}

#[test]
fn oversize_udp_answer_sets_tc_and_the_tcp_retry_gets_everything() {
    let (cfg, _) = zone_with_many_nameservers();
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    let udp = kdig(None, e.dns, None, &["gslb.example.", "NS", "+notcp", "+ignore"]).unwrap();
    assert!(udp.flags.contains(&"tc".to_string()), "{}", udp.text);
    assert!(udp.answers.is_empty());
    // kdig retries over TCP on TC by default.
    let retried = kdig(None, e.dns, None, &["gslb.example.", "NS"]).unwrap();
    assert_eq!(retried.answers.len(), 40, "{}", retried.text);
    assert!(retried.text.contains("(TCP)"), "{}", retried.text);
    // The client's EDNS payload size is honoured: 1400 is too small for ~2 kB...
    let mid = kdig(None, e.dns, None, &["gslb.example.", "NS", "+notcp", "+ignore", "+bufsize=1400"]).unwrap();
    assert!(mid.flags.contains(&"tc".to_string()), "{}", mid.text);
    // ...4096 (also our edns_payload here) is not.
    let big = kdig(None, e.dns, None, &["gslb.example.", "NS", "+notcp", "+bufsize=4096"]).unwrap();
    assert!(!big.flags.contains(&"tc".to_string()));
    assert_eq!(big.answers.len(), 40);
}

#[test]
fn zone_apex_unknown_names_foreign_names_and_aaaa() {
    let (dns, control) = loopback_ports();
    let cfg = example_config(dns, control).replace(
        "address = \"198.51.100.20\"",
        "address = \"198.51.100.20\"\naddress6 = \"2001:db8::20\"",
    );
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    let q = |args: &[&str]| kdig(None, e.dns, None, args).unwrap();

    let soa = q(&["gslb.example.", "SOA"]);
    assert_eq!(soa.status, "NOERROR");
    assert!(soa.flags.contains(&"aa".to_string()));
    assert!(soa.answer().starts_with("ns1.gslb.example. hostmaster.gslb.example. 1 "), "{}", soa.text);
    assert_eq!(q(&["gslb.example.", "NS"]).answer(), "ns1.gslb.example.");

    let nx = q(&["nope.gslb.example.", "A"]);
    assert_eq!(nx.status, "NXDOMAIN");
    assert!(nx.authority[0].starts_with("SOA "), "{}", nx.text);
    assert!(nx.flags.contains(&"aa".to_string()));

    let foreign = q(&["www.example.com.", "A"]);
    assert_eq!(foreign.status, "REFUSED");
    assert!(!foreign.flags.contains(&"aa".to_string()));

    // 127.0.0.1 stripes to west/vs1 (2130706433 % 3 = 2), which has an address6.
    let six = q(&["www.gslb.example.", "AAAA"]);
    assert_eq!(six.answer(), "2001:db8::20");
    // geo from 127.1/16 is east, which has none: NODATA with the SOA.
    let nodata = kdig(None, e.dns, Some("127.1.0.5".parse().unwrap()), &["geo.gslb.example.", "AAAA"]).unwrap();
    assert_eq!(nodata.status, "NOERROR");
    assert!(nodata.answers.is_empty());
    assert!(nodata.authority[0].starts_with("SOA "));
    // Other types at a wide IP: NODATA.
    let mx = q(&["www.gslb.example.", "MX"]);
    assert_eq!((mx.status.as_str(), mx.answers.len()), ("NOERROR", 0));
    // Class CH is not ours.
    assert_eq!(q(&["www.gslb.example.", "A", "-c", "CH"]).status, "REFUSED");
}

#[test]
fn edns_is_echoed_with_our_payload_size_and_version_1_gets_badvers() {
    let e = start_example();
    let d = kdig(None, e.dns, None, &["www.gslb.example.", "A", "+bufsize=4000"]).unwrap();
    assert!(d.text.contains("UDP size: 1232 B"), "{}", d.text);
    let plain = kdig(None, e.dns, None, &["www.gslb.example.", "A", "+noedns"]).unwrap();
    assert!(!plain.text.contains("EDNS PSEUDOSECTION"));
    let v1 = kdig(None, e.dns, None, &["www.gslb.example.", "A", "+edns=1"]).unwrap();
    assert_eq!(v1.status, "BADVERS", "{}", v1.text);
}

/// A raw query: header fields then the question in wire form.
fn raw_query(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16, rest: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [id, flags, qd, an, ns, ar] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(rest);
    v
}

fn udp_exchange(server: SocketAddr, pkt: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    s.send_to(pkt, server).unwrap();
    let mut buf = [0u8; 2048];
    s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

const WWW_WIRE: &[u8] = b"\x03www\x04gslb\x07example\x00\x00\x01\x00\x01";

#[test]
fn question_case_is_preserved_and_the_answer_points_at_it() {
    let e = start_example();
    let q = raw_query(0xbeef, 0x0100, 1, 0, 0, 0, b"\x03WwW\x04GSlb\x07exAMPLE\x00\x00\x01\x00\x01");
    let r = udp_exchange(e.dns, &q).expect("answer");
    assert_eq!(&r[..2], &[0xbe, 0xef]);
    assert_eq!(&r[12..12 + 22], &q[12..]);
    // Answer owner is a pointer to the question name (offset 12).
    assert_eq!(&r[34..36], &[0xc0, 0x0c]);
}

#[test]
fn malformed_queries_get_formerr_or_are_dropped_and_the_server_keeps_answering() {
    let e = start_example();
    let formerr = |pkt: &[u8], what: &str| {
        let r = udp_exchange(e.dns, pkt).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(&r[..2], &pkt[..2], "{what}: id");
        assert_eq!(r[2] & 0x80, 0x80, "{what}: QR");
        assert_eq!(r[3] & 0x0f, 1, "{what}: rcode must be FORMERR");
    };
    let dropped = |pkt: &[u8], what: &str| assert!(udp_exchange(e.dns, pkt).is_none(), "{what}: must not be answered");

    dropped(b"\x12\x34\x01", "shorter than a header");
    dropped(&raw_query(1, 0x8000, 1, 0, 0, 0, WWW_WIRE), "a response (QR=1)");
    formerr(&raw_query(2, 0x0100, 1, 0, 0, 0, b""), "QDCOUNT=1 without a question");
    formerr(&raw_query(3, 0x0100, 1, 0, 0, 0, b"\x03www\x04gslb\x07exa"), "truncated name");
    formerr(&raw_query(4, 0x0100, 1, 0, 0, 0, b"\x40www\x00\x00\x01\x00\x01"), "bad label length 0x40");
    formerr(&raw_query(5, 0x0100, 1, 0, 0, 0, b"\xc0\x0c\x00\x01\x00\x01"), "compression pointer loop");
    formerr(&raw_query(6, 0x0100, 2, 0, 0, 0, WWW_WIRE), "QDCOUNT=2 with one question");
    let mut two = WWW_WIRE.to_vec();
    two.extend_from_slice(WWW_WIRE);
    formerr(&raw_query(7, 0x0100, 2, 0, 0, 0, &two), "two questions");
    let mut opt2 = WWW_WIRE.to_vec();
    for _ in 0..2 {
        opt2.extend_from_slice(b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00");
    }
    formerr(&raw_query(8, 0x0100, 1, 0, 0, 2, &opt2), "two OPT records");

    // Random garbage: whatever comes back is a response to that ID, never a crash.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..300 {
        let len = rng.random_range(12..120);
        let mut pkt: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        pkt[2] &= 0x7f; // a query, so it is not dropped outright
        if let Some(r) = udp_exchange(e.dns, &pkt) {
            assert_eq!(&r[..2], &pkt[..2], "garbage #{i}");
            assert_eq!(r[2] & 0x80, 0x80);
        }
    }
    // Garbage over TCP: the connection may close, the server stays.
    let mut t = TcpStream::connect(e.dns).unwrap();
    t.write_all(b"\x00\x05\xff\xff\xff\xff\xff\x00\x02\x12").unwrap();
    let mut sink = Vec::new();
    t.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = t.read_to_end(&mut sink);

    let ok = kdig(None, e.dns, None, &["www.gslb.example.", "A"]).unwrap();
    assert_eq!(ok.status, "NOERROR");
    let mut e = e;
    assert!(e.alive());
}

#[test]
fn unknown_opcode_gets_notimp() {
    let e = start_example();
    // Opcode 2 (STATUS).
    let r = udp_exchange(e.dns, &raw_query(9, 0x1000, 1, 0, 0, 0, WWW_WIRE)).unwrap();
    assert_eq!(r[3] & 0x0f, 4, "NOTIMP");
    assert_eq!((r[2] >> 3) & 0x0f, 2, "opcode echoed");
}

#[test]
fn ctl_records_lists_every_fig6_field() {
    let e = start_example();
    kdig(None, e.dns, Some("127.7.0.7".parse().unwrap()), &["shop.gslb.example.", "A"]).unwrap();
    let r = records(&e);
    let keys: Vec<&str> = r[0].as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for k in ["wide_ip", "ldns", "vs", "sac", "address", "ttl_secs", "last_request_age_secs", "created_age_secs", "hits", "node_id"] {
        assert!(keys.contains(&k), "missing {k}: {keys:?}");
    }
    assert_eq!(r[0]["wide_ip"], "shop.gslb.example.");
    assert_eq!(r[0]["ttl_secs"], 600);
    // The table form prints the same record.
    let out = std::process::Command::new(edns_tests::edns_bin(false))
        .args(["ctl", "--control", &e.control.to_string(), "records"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("127.7.0.7") && text.contains("shop.gslb.example."), "{text}");
    // Unknown VS and bad state are refused with a reason.
    let bad = e.ctl(&["set-vs", "east/nope", "down"]).unwrap_err().to_string();
    assert!(bad.contains("no virtual server"), "{bad}");
    let bad = e.ctl(&["set-vs", "east/vs1", "sideways"]).unwrap_err().to_string();
    assert!(bad.contains("not one of up, down, drain, auto, unavailable"), "{bad}");
}

#[test]
fn do_is_copied_into_the_opt_and_cd_rd_into_header_only_errors() {
    let e = start_example();
    let d = kdig(None, e.dns, None, &["www.gslb.example.", "A", "+dnssec"]).unwrap();
    assert!(d.text.contains("flags: do"), "DO copied (RFC 3225): {}", d.text);
    let plain = kdig(None, e.dns, None, &["www.gslb.example.", "A", "+edns"]).unwrap();
    assert!(plain.text.contains("EDNS PSEUDOSECTION") && !plain.text.contains("flags: do"), "{}", plain.text);
    // An unparseable query with RD and CD set: FORMERR with both copied.
    let r = udp_exchange(e.dns, &raw_query(9, 0x0110, 1, 0, 0, 0, b"\x03www\x04gslb\x07exa")).expect("FORMERR");
    assert_eq!(r[3] & 0x0f, 1, "FORMERR");
    assert_eq!((r[2] & 0x01, r[3] & 0x10), (0x01, 0x10), "RD and CD copied: {r:02x?}");
}

/// AXFR and IXFR are refused at once, and over TCP the stream is closed so
/// the client does not wait for more.
#[test]
fn zone_transfers_are_refused_at_once_and_tcp_is_closed() {
    let e = start_example();
    for (qtype, name) in [(252u16, "AXFR"), (251, "IXFR")] {
        let mut q = b"\x04gslb\x07example\x00".to_vec();
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        let pkt = raw_query(10, 0, 1, 0, 0, 0, &q);
        let r = udp_exchange(e.dns, &pkt).expect("an answer over UDP");
        assert_eq!(r[3] & 0x0f, 5, "{name} over UDP: REFUSED");
        let mut t = TcpStream::connect(e.dns).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut framed = (pkt.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&pkt);
        t.write_all(&framed).unwrap();
        let started = std::time::Instant::now();
        let mut all = Vec::new();
        t.read_to_end(&mut all).expect("the server closes the stream");
        assert!(started.elapsed() < Duration::from_secs(1), "{name}: closed after {:?}", started.elapsed());
        assert!(all.len() > 2 + 12, "{name}: one framed response");
        assert_eq!(all[2 + 3] & 0x0f, 5, "{name} over TCP: REFUSED");
    }
    let kd = kdig(None, e.dns, None, &["gslb.example.", "AXFR"]);
    let text = match kd {
        Ok(d) => d.text,
        Err(err) => err.to_string(),
    };
    assert!(text.to_lowercase().contains("refused"), "kdig AXFR: {text}");
}

/// The README's dual-stack advice: one wildcard address per family on one
/// port, UDP and TCP, on a default system (net.ipv6.bindv6only = 0).
#[test]
fn wildcard_listen_on_both_families_binds_and_answers_each() {
    let port = edns_tests::free_port();
    let control = SocketAddr::from(([127, 0, 0, 1], edns_tests::free_port()));
    let cfg = example_config(SocketAddr::from(([127, 0, 0, 1], port)), control)
        .replace(&format!("listen = [\"127.0.0.1:{port}\"]"), &format!("listen = [\"0.0.0.0:{port}\", \"[::]:{port}\"]"));
    assert!(cfg.contains("[::]"), "{cfg}");
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    for server in [SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::new("::1".parse().unwrap(), port)] {
        let d = kdig(None, server, None, &["www.gslb.example.", "A"]).unwrap();
        assert_eq!(d.status, "NOERROR", "UDP to {server}: {}", d.text);
        let t = kdig(None, server, None, &["www.gslb.example.", "A", "+tcp"]).unwrap();
        assert_eq!(t.status, "NOERROR", "TCP to {server}: {}", t.text);
    }
    drop(e);
}

#[test]
fn nsid_is_returned_only_when_asked() {
    let (dns, control) = loopback_ports();
    let cfg = example_config(dns, control).replace("[server]\n", "[server]\nnsid = \"edns-test-1\"\n");
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    let d = kdig(None, e.dns, None, &["www.gslb.example.", "A", "+nsid"]).unwrap();
    assert!(d.text.contains("edns-test-1"), "NSID asked: {}", d.text);
    assert_eq!(d.answers.len(), 1);
    let plain = kdig(None, e.dns, None, &["www.gslb.example.", "A", "+edns"]).unwrap();
    assert!(!plain.text.contains("NSID"), "not asked: {}", plain.text);
    // Without a configured nsid nothing is added.
    let bare = start_example();
    let d = kdig(None, bare.dns, None, &["www.gslb.example.", "A", "+nsid"]).unwrap();
    assert!(!d.text.contains("edns-test"), "{}", d.text);
}

/// Cookies in userspace: a fresh server cookie for a client cookie; a
/// malformed option is FORMERR; `cookies = false` turns them off; a fixed
/// `cookie_secret` makes cookies another node with the same secret accepts.
#[test]
fn cookies_are_answered_with_fresh_server_cookies_and_malformed_ones_get_formerr() {
    let (dns, control) = loopback_ports();
    let secret = "00112233445566778899aabbccddeeff";
    let cfg = example_config(dns, control).replace("[server]\n", &format!("[server]\ncookie_secret = \"{secret}\"\n"));
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    let d = kdig(None, e.dns, Some("127.0.0.9".parse().unwrap()), &["www.gslb.example.", "A", "+cookie=a1b2c3d4e5f60718"]).unwrap();
    let line = d.text.lines().find(|l| l.starts_with(";; COOKIE: ")).unwrap_or_else(|| panic!("{}", d.text)).to_string();
    let hex = line.split_whitespace().nth(2).unwrap();
    assert_eq!(hex.len(), 48, "{line}");
    let bytes: Vec<u8> = (0..24).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    let key: [u8; 16] = (0..16).map(|i| u8::from_str_radix(&secret[2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<_>>().try_into().unwrap();
    let server: [u8; 16] = bytes[8..].try_into().unwrap();
    let ldns = edns_user::model::ip16("127.0.0.9".parse().unwrap());
    let now = edns_user::cookies::wall_secs() as u32;
    assert!(edns_common::server_cookie_valid(&key, &bytes[..8].try_into().unwrap(), &server, &ldns, now), "{line}");
    // A malformed COOKIE option (12 bytes: neither 8 nor 16..=40).
    let mut q = b"\x03www\x04gslb\x07example\x00\x00\x01\x00\x01\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x10\x00\x0a\x00\x0c".to_vec();
    q.extend_from_slice(&[7; 12]);
    let r = udp_exchange(e.dns, &raw_query(11, 0, 1, 0, 0, 1, &q)).expect("an answer");
    assert_eq!(r[3] & 0x0f, 1, "FORMERR: {r:02x?}");
    let s = e.ctl(&["stats"]).unwrap();
    assert_eq!((s["cookies"]["client_only"].as_u64(), s["cookies"]["malformed"].as_u64()), (Some(1), Some(1)), "{s}");
    // Off: no option in the answer.
    let (dns, control) = loopback_ports();
    let off = EdnsProc::start(&example_config(dns, control).replace("[server]\n", "[server]\ncookies = false\n"), None, &[]).unwrap();
    let d = kdig(None, off.dns, None, &["www.gslb.example.", "A", "+cookie"]).unwrap();
    assert!(!d.text.contains(";; COOKIE:"), "{}", d.text);
}

/// Static data of the example zone file beside the wide IPs: the name
/// server's address (also as additional data of the apex NS), MX, TXT, CAA,
/// SRV, a CNAME followed into a wide IP, a CNAME out of the zone, a
/// referral with glue for a delegated child, NODATA and NXDOMAIN.
#[test]
fn static_zone_data_answers_beside_the_wide_ips() {
    let e = start_example();
    let ask = |name: &str, t: &str| kdig(None, e.dns, None, &[name, t, "+norec"]).unwrap();
    assert_eq!(ask("ns1.gslb.example.", "A").answer(), "127.0.0.1");
    let ns = ask("gslb.example.", "NS");
    assert_eq!(ns.answer(), "ns1.gslb.example.");
    assert!(ns.text.contains("ADDITIONAL: 1") && ns.text.contains("ns1.gslb.example.   \t300\tIN\tA\t127.0.0.1"), "glue: {}", ns.text);
    assert_eq!(ask("gslb.example.", "MX").answer(), "10 mail.gslb.example.");
    assert_eq!(ask("gslb.example.", "TXT").answer(), "\"v=spf1 -all\"");
    assert!(ask("gslb.example.", "CAA").answer().contains("letsencrypt.org"));
    assert_eq!(ask("_sip._udp.gslb.example.", "SRV").answer(), "10 5 5060 sip.gslb.example.");
    let store = ask("store.gslb.example.", "A");
    assert_eq!(store.answers, ["shop.gslb.example.", "192.0.2.10"], "CNAME then the wide IP's answer: {}", store.text);
    assert_eq!(ask("docs.gslb.example.", "A").answers, ["docs.other.example."]);
    let referral = ask("host.lab.gslb.example.", "A");
    assert_eq!((referral.status.as_str(), referral.answers.len()), ("NOERROR", 0));
    assert!(!referral.flags.contains(&"aa".to_string()), "a referral is not authoritative: {}", referral.text);
    assert!(referral.authority.iter().any(|a| a.contains("ns.lab.gslb.example.")), "{}", referral.text);
    assert!(referral.text.contains("192.0.2.53"), "glue: {}", referral.text);
    let nodata = ask("mail.gslb.example.", "AAAA");
    assert_eq!((nodata.status.as_str(), nodata.answers.len()), ("NOERROR", 0));
    assert_eq!(ask("_udp.gslb.example.", "A").status, "NOERROR", "an empty non-terminal");
    assert_eq!(ask("nothere.gslb.example.", "A").status, "NXDOMAIN");
    // The wide IPs still answer as before.
    assert_eq!(ask("geo.gslb.example.", "A").status, "NOERROR");
}

/// Rate limiting in userspace (the queries that reach the controller):
/// a prefix gets its burst over UDP, then every other limited query is
/// dropped and every second one gets TC=1 with no data; TCP is not limited.
#[test]
fn userspace_rate_limiting_drops_and_slips_past_the_burst_but_not_over_tcp() {
    let (dns, control) = loopback_ports();
    let cfg = example_config(dns, control) + "\n[rrl]\nresponses_per_second = 1\nburst = 3\nslip = 2\n";
    let e = EdnsProc::start(&cfg, None, &[]).unwrap();
    let mut got = Vec::new();
    for i in 0..7u16 {
        let r = udp_exchange(e.dns, &raw_query(100 + i, 0, 1, 0, 0, 0, WWW_WIRE));
        got.push(match r {
            None => "drop",
            Some(r) if r[2] & 0x02 != 0 && r[6..8] == [0, 0] => "tc",
            Some(r) if r[6..8] == [0, 1] => "answer",
            Some(r) => panic!("unexpected {r:02x?}"),
        });
    }
    assert_eq!(got, ["answer", "answer", "answer", "drop", "tc", "drop", "tc"]);
    let t = kdig(None, e.dns, None, &["www.gslb.example.", "A", "+tcp"]).unwrap();
    assert_eq!(t.answers.len(), 1, "TCP is not limited: {}", t.text);
    let s = e.ctl(&["stats"]).unwrap();
    assert_eq!((s["rrl"]["dropped"].as_u64(), s["rrl"]["slipped"].as_u64()), (Some(2), Some(2)), "{s}");
}
