//! Katran-style fixtures through BPF_PROG_TEST_RUN: input frame -> expected
//! verdict, and for answers the exact output frame (built independently).
//! Every frame the parser does not fully understand must pass unchanged.

use std::net::{IpAddr, Ipv4Addr};

use edns_common::{LdnsKey, PersistKey, PersistRecord, VS_MARKED_UP};
use edns_tests::packet::{add_option, check_answer, dns_query, with_cookie, Frame};
use edns_tests::xdp::{XdpUnderTest, XDP_PASS, XDP_TX};
use edns_tests::require_root;
use edns_user::store::{now_ns, Store};


/// The demo config: stripe www (east/vs1, east/vs2, west/vs1), dynamic shop
/// and topology geo (east/vs1, west/vs1), 198.18.1.0/24 -> east,
/// 198.18.2.0/24 -> west; only west has an IPv6 address.
fn model() -> edns_user::model::Model {
    edns_user::config::load(&edns_tests::workspace().join("examples/demo.toml")).unwrap()
}

fn setup() -> XdpUnderTest {
    require_root();
    XdpUnderTest::new(&model()).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const SERVER: &str = "198.18.0.1";

fn frame(src: &str, dns: Vec<u8>) -> Frame {
    let dst = if src.contains(':') { "fd00:edd5::1" } else { SERVER };
    Frame::udp(ip(src), ip(dst), 53, dns)
}

/// The answer edns must give, built by hand: header (QR AA, RD/CD kept),
/// question as received, answer 0xC00C -> rdata, OPT when the query had one.
fn answer_dns(query: &[u8], qtype: u16, rdata: &[u8], ttl: u32, opt: bool) -> Vec<u8> {
    let qend = 12 + query[12..].iter().position(|b| *b == 0).unwrap() + 1 + 4;
    let mut a = query[..2].to_vec();
    let flags = 0x8400 | (u16::from_be_bytes([query[2], query[3]]) & 0x0110);
    a.extend_from_slice(&flags.to_be_bytes());
    a.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, opt as u8]);
    a.extend_from_slice(&query[12..qend]);
    a.extend_from_slice(&[0xc0, 0x0c]);
    a.extend_from_slice(&qtype.to_be_bytes());
    a.extend_from_slice(&[0, 1]);
    a.extend_from_slice(&ttl.to_be_bytes());
    a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    a.extend_from_slice(rdata);
    if opt {
        a.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]); // 1232
    }
    a
}

/// Runs a fixture that must pass: verdict XDP_PASS, frame untouched, and the
/// named counter moved.
fn passes(x: &mut XdpUnderTest, what: &str, bytes: &[u8], counter: &str) {
    let before = x.counter(counter);
    let (v, out) = x.run(bytes).unwrap();
    assert_eq!(v, XDP_PASS, "{what}: verdict");
    assert_eq!(out, bytes, "{what}: a passed frame must be unchanged");
    assert_eq!(x.counter(counter), before + 1, "{what}: counter {counter}; all: {:?}", x.counters());
}

fn answers(x: &mut XdpUnderTest, what: &str, f: &Frame, want_dns: Vec<u8>) {
    let (v, out) = x.run(&f.build()).unwrap();
    assert_eq!(v, XDP_TX, "{what}: verdict; counters {:?}", x.counters());
    check_answer(f, &out).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(out, f.expected_answer(want_dns), "{what}: output frame");
}

// 198.18.3.7 = 3323069191; % 3 = 1 -> X = 2 -> east/vs2 -> east.
const EAST: [u8; 4] = [192, 0, 2, 10];
const WEST: [u8; 4] = [198, 51, 100, 20];

#[test]
fn stripe_answer_is_the_exact_expected_frame_with_and_without_edns_and_vlans() {
    let mut x = setup();
    assert_eq!(u32::from(Ipv4Addr::new(198, 18, 3, 7)) % 3, 1);
    for (opt, vlans) in [(None, vec![]), (Some(4096), vec![]), (None, vec![7]), (Some(1232), vec![100, 7])] {
        let q = dns_query(0xbeef, true, "wWw.GsLb.Example.", 1, opt);
        let mut f = frame("198.18.3.7", q.clone());
        f.vlans = vlans.clone();
        answers(&mut x, &format!("opt {opt:?} vlans {vlans:?}"), &f, answer_dns(&q, 1, &EAST, 30, opt.is_some()));
    }
    assert_eq!(x.counter("answered_stripe"), 4);
}

/// The name is read, lowercased and hashed 8 bytes at a time: names whose
/// ends fall at every offset of a word (and the longest the fast path
/// takes, a 63-byte label among them), sent in mixed case, with and without
/// an OPT (without one the frame ends 4 bytes after the name, inside the
/// name's last word), are answered with the question as sent; a name that
/// differs from a wide IP only in its last word is not.
#[test]
fn names_of_every_length_and_case_are_answered_by_their_own_wide_ip() {
    require_root();
    let names: Vec<String> = (1..=17)
        .map(|n| format!("{}.gslb.example.", "a".repeat(n)))
        .chain([format!("{}.{}.gslb.example.", "b".repeat(63), "c".repeat(43))])
        .collect();
    let mut text = std::fs::read_to_string(edns_tests::workspace().join("examples/demo.toml")).unwrap();
    for n in &names {
        text.push_str(&format!("\n[[wide_ip]]\nname = \"{n}\"\nmode = \"stripe\"\npool = [\"east/vs1\", \"east/vs2\", \"west/vs1\"]\n"));
    }
    let model = edns_user::config::parse(&edns_tests::workspace().join("examples/demo.toml"), &text).unwrap();
    let mut x = XdpUnderTest::new(&model).unwrap();
    for n in &names {
        // Every other letter upper case.
        let mixed: String = n.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect();
        let wire_len = n.len() + 1;
        assert!(wire_len <= 127, "{n}: {wire_len} bytes");
        for opt in [None, Some(1232)] {
            let q = dns_query(0x1d, true, &mixed, 1, opt);
            answers(&mut x, &format!("{mixed} ({wire_len} bytes), opt {opt:?}"), &frame("198.18.3.7", q.clone()), answer_dns(&q, 1, &EAST, 30, opt.is_some()));
        }
        // The same length, its last letter before the zone changed.
        let at = n.find(".gslb").unwrap() - 1;
        let mut other = n.clone();
        other.replace_range(at..at + 1, "z");
        passes(&mut x, &format!("{other}"), &frame("198.18.3.7", dns_query(0x1e, true, &other, 1, None)).build(), "pass_unknown_name");
    }
    // Longest first: what a longer name left behind must not make a
    // shorter one unknown.
    for n in names.iter().rev() {
        let q = dns_query(0x1f, true, n, 1, None);
        answers(&mut x, &format!("{n} after a longer name"), &frame("198.18.3.7", q.clone()), answer_dns(&q, 1, &EAST, 30, false));
    }
    assert_eq!(x.counter("answered_stripe"), 3 * names.len() as u64);
}

/// A client subnet for cdn. (stripe, ECS on, /24 at most): the answer is
/// the stripe over the subnet, not the LDNS, and the OPT echoes the option
/// with its scope; for www. (no ECS) the option is ignored.
#[test]
fn a_client_subnet_is_answered_in_the_kernel_with_its_echo_and_scope() {
    let mut x = setup();
    // LDNS 198.18.3.7 % 3 = 1 -> east; client 198.51.101.0 % 3 = 2 -> west/vs1.
    assert_eq!(u32::from(Ipv4Addr::new(198, 51, 101, 0)) % 3, 2);
    for (source, sent) in [(24u8, vec![198, 51, 101]), (32, vec![198, 51, 101, 77])] {
        let mut q = dns_query(0xec5, true, "cdn.gslb.example.", 1, Some(1232));
        let ecs = [&[0, 1, source, 0][..], &sent].concat();
        add_option(&mut q, 8, &ecs, false);
        let mut want = answer_dns(&q, 1, &WEST, 30, true);
        add_option(&mut want, 8, &[&[0, 1, source, 24][..], &sent].concat(), false);
        answers(&mut x, &format!("ECS /{source}"), &frame("198.18.3.7", q), want);
        // Beside a client cookie (cookies are off in this config, so only
        // the subnet is echoed; the differential test echoes both).
        let mut q = with_cookie(dns_query(0xec6, true, "cdn.gslb.example.", 1, Some(1232)), &[1, 2, 3, 4, 5, 6, 7, 8]);
        add_option(&mut q, 8, &ecs, true);
        let mut want = answer_dns(&q, 1, &WEST, 30, true);
        add_option(&mut want, 8, &[&[0, 1, source, 24][..], &sent].concat(), false);
        answers(&mut x, &format!("ECS /{source} and a cookie"), &frame("198.18.3.7", q), want);
    }
    let mut q = dns_query(0xec7, true, "www.gslb.example.", 1, Some(1232));
    add_option(&mut q, 8, &[0, 1, 24, 0, 198, 51, 100], false);
    answers(&mut x, "ECS for a wide IP without it", &frame("198.18.3.7", q.clone()), answer_dns(&q, 1, &EAST, 30, true));
    assert_eq!(x.counter("ecs_answered"), 4, "www. echoes none");
    // Malformed (a scope in the query): passed up untouched.
    let mut q = dns_query(0xec8, true, "cdn.gslb.example.", 1, Some(1232));
    add_option(&mut q, 8, &[0, 1, 24, 24, 198, 51, 100], false);
    passes(&mut x, "ECS with a scope", &frame("198.18.3.7", q).build(), "pass_bad_ecs");
}

#[test]
fn the_do_bit_is_copied_into_the_answer_opt() {
    let mut x = setup();
    let mut q = dns_query(0xd0, false, "www.gslb.example.", 1, Some(4096));
    let n = q.len();
    q[n - 4] |= 0x80; // DO
    let mut want = answer_dns(&q, 1, &EAST, 30, true);
    let m = want.len();
    want[m - 4] = 0x80;
    answers(&mut x, "DO set", &frame("198.18.3.7", q), want);
}

#[test]
fn ipv6_ldns_gets_a_computed_udp_checksum_and_aaaa_from_the_v6_sac() {
    let mut x = setup();
    // fd00::7 as u128 mod 3 picks the pool entry; find one that lands on west.
    let src = (1..50u16)
        .map(|i| format!("fd00::{i:x}"))
        .find(|s| s.parse::<std::net::Ipv6Addr>().map(|a| u128::from(a) % 3 == 2).unwrap())
        .unwrap();
    let q = dns_query(7, false, "www.gslb.example.", 28, Some(1232));
    let f = frame(&src, q.clone());
    let v6: std::net::Ipv6Addr = "2001:db8::20".parse().unwrap();
    answers(&mut x, "AAAA over IPv6", &f, answer_dns(&q, 28, &v6.octets(), 30, true));
    let q = dns_query(8, false, "www.gslb.example.", 1, None);
    answers(&mut x, "A over IPv6", &frame(&src, q.clone()), answer_dns(&q, 1, &WEST, 30, false));
}

#[test]
fn topology_answers_from_the_lpm_trie_and_falls_back_to_the_stripe() {
    let mut x = setup();
    let q = dns_query(1, true, "geo.gslb.example.", 1, None);
    answers(&mut x, "198.18.1.9 -> east", &frame("198.18.1.9", q.clone()), answer_dns(&q, 1, &EAST, 30, false));
    answers(&mut x, "198.18.2.9 -> west", &frame("198.18.2.9", q.clone()), answer_dns(&q, 1, &WEST, 30, false));
    // No prefix: stripe over [east/vs1, west/vs1]; 198.18.3.7 is odd -> X = 2 -> west.
    answers(&mut x, "no match -> stripe", &frame("198.18.3.7", q.clone()), answer_dns(&q, 1, &WEST, 30, false));
    assert_eq!(x.counter("answered_topology"), 3);
}

#[test]
fn an_unavailable_stripe_candidate_is_marked_down_in_the_map_and_n_minus_1_recomputed() {
    let mut x = setup();
    let dp = x.dataplane.clone();
    // east/vs2 (id 1) is 198.18.3.7's candidate; make it unavailable but marked up.
    dp.set_vs_state(1, VS_MARKED_UP).unwrap();
    let q = dns_query(2, false, "www.gslb.example.", 1, None);
    // N = 2 over {east/vs1, west/vs1}: 3323069191 % 2 = 1 -> X = 2 -> west.
    answers(&mut x, "recompute", &frame("198.18.3.7", q.clone()), answer_dns(&q, 1, &WEST, 30, false));
    assert_eq!(dp.vs_state(1).unwrap(), 0, "the kernel marked east/vs2 down");
    // Every VS down: round robin over the whole pool, regardless of state.
    for vs in 0..3 {
        dp.set_vs_state(vs, 0).unwrap();
    }
    let picks: Vec<[u8; 4]> = (0..3)
        .map(|i| {
            let f = frame("198.18.3.7", dns_query(10 + i, false, "www.gslb.example.", 1, None));
            let (v, out) = x.run(&f.build()).unwrap();
            assert_eq!(v, XDP_TX);
            let dns = check_answer(&f, &out).unwrap();
            dns[dns.len() - 4..].try_into().unwrap()
        })
        .collect();
    assert_eq!(dp.next_counter(0).unwrap(), 3, "the kernel advanced the shared counter");
    assert_eq!(picks, [EAST, EAST, WEST]);
    assert_eq!(x.counter("answered_fallback_rr"), 3);
}

#[test]
fn consistent_stripe_answers_the_rendezvous_winner_and_only_its_ldnses_move_when_it_goes_down() {
    let mut x = setup();
    let dp = x.dataplane.clone();
    let m = model();
    let w = m.wide_ip_by_name("ring.gslb.example.").unwrap().clone();
    let sac_addr = |pos: u32| m.sacs[w.pool_sac[pos as usize] as usize].address.octets();
    let mut pool_vs = [u32::MAX; edns_common::MAX_POOL];
    pool_vs[..w.pool.len()].copy_from_slice(&w.pool);
    let winner = |src: &str, up: u32| {
        edns_common::rendezvous(edns_common::ldns_hash(&edns_user::model::ip16(ip(src))), &pool_vs, up).unwrap()
    };
    let srcs = ["198.18.3.7", "198.18.3.8", "198.18.3.9", "198.18.7.1", "fd00::5"];
    for (i, src) in srcs.iter().enumerate() {
        let q = dns_query(40 + i as u16, false, "ring.gslb.example.", 1, None);
        let pos = winner(src, 0b111);
        answers(&mut x, &format!("{src} -> pool position {pos}"), &frame(src, q.clone()), answer_dns(&q, 1, &sac_addr(pos), 30, false));
    }
    assert_eq!(x.counter("answered_consistent"), srcs.len() as u64);
    assert_eq!(x.counter("answered_stripe"), 0);
    // east/vs2 (pool position 1) down: its LDNSes move, the others stay.
    dp.set_vs_state(w.pool[1], 0).unwrap();
    for src in srcs {
        let q = dns_query(50, false, "ring.gslb.example.", 1, None);
        let (before, after) = (winner(src, 0b111), winner(src, 0b101));
        assert!(before == 1 || before == after, "{src} moved without cause");
        answers(&mut x, &format!("{src} after the down"), &frame(src, q.clone()), answer_dns(&q, 1, &sac_addr(after), 30, false));
    }
}

#[test]
fn all_down_policies_other_than_round_robin_are_passed_to_the_controller() {
    let mut x = setup();
    let dp = x.dataplane.clone();
    let m = model();
    let safe = m.wide_ip_by_name("safe.gslb.example.").unwrap().clone();
    let q = dns_query(60, false, "safe.gslb.example.", 1, None);
    answers(&mut x, "VS up", &frame("198.18.3.7", q.clone()), answer_dns(&q, 1, &EAST, 30, false));
    dp.set_vs_state(safe.pool[0], 0).unwrap();
    passes(&mut x, "no VS up, all_down = fallback", &frame("198.18.3.7", q.clone()).build(), "pass_all_down");
    // The stripe keeps the patent's fallback in the kernel.
    for vs in 0..3 {
        dp.set_vs_state(vs, 0).unwrap();
    }
    let q = dns_query(61, false, "www.gslb.example.", 1, None);
    let (v, _) = x.run(&frame("198.18.3.7", q).build()).unwrap();
    assert_eq!(v, XDP_TX);
    assert_eq!(x.counter("answered_fallback_rr"), 1);
}

#[test]
fn persistence_hits_are_answered_and_refreshed_in_the_kernel_misses_and_stale_records_pass() {
    let mut x = setup();
    let dp = x.dataplane.clone();
    let q = dns_query(3, false, "shop.gslb.example.", 1, None);
    let f = frame("198.18.3.7", q.clone());
    passes(&mut x, "no record", &f.build(), "pass_persist_miss");

    let key = PersistKey { wide_ip: 1, ldns: LdnsKey::addr(edns_user::model::ip16(ip("198.18.3.7"))) };
    let old = now_ns() - 5_000_000_000;
    let rec = PersistRecord { vs: 2, ttl_secs: 600, created_ns: old, last_ns: old, hits: 1, node_id: 0, generation: 0 };
    dp.persist_put(&key, &rec).unwrap();
    answers(&mut x, "timely record -> its SAC", &f, answer_dns(&q, 1, &WEST, 30, false));
    let after = dp.persist_get(&key).unwrap().unwrap();
    assert_eq!(after.hits, 2, "hits bumped");
    assert!(after.last_ns > old + 4_000_000_000, "time stamp refreshed");
    assert_eq!(after.created_ns, old);

    // Expired: the wide IP's TTL in force (a schedule's window changed) is
    // 1 s, the last request 5 s ago; the record's own TTL does not count.
    let m = model();
    let shop = m.wide_ip_by_name("shop.gslb.example.").unwrap();
    dp.set_persistence_ttl(shop, 1).unwrap();
    dp.persist_put(&key, &PersistRecord { ttl_secs: 600, last_ns: old, ..rec }).unwrap();
    passes(&mut x, "expired record", &f.build(), "pass_persist_expired");
    dp.set_persistence_ttl(shop, 600).unwrap();
    answers(&mut x, "timely again under a 600 s TTL", &f, answer_dns(&q, 1, &WEST, 30, false));
    // Timely but its VS is no longer available.
    dp.persist_put(&key, &rec).unwrap();
    dp.set_vs_state(2, VS_MARKED_UP).unwrap();
    passes(&mut x, "VS unavailable", &f.build(), "pass_persist_expired");
    assert_eq!(dp.persist_get(&key).unwrap().unwrap().hits, 1, "a pass does not touch the record");
}

#[test]
fn ethernet_padding_is_trimmed_from_the_answer() {
    let mut x = setup();
    let q = dns_query(4, false, "www.gslb.example.", 1, None);
    let f = frame("198.18.3.7", q.clone());
    let mut padded = f.build();
    padded.extend_from_slice(&[0u8; 12]);
    let (v, out) = x.run(&padded).unwrap();
    assert_eq!(v, XDP_TX);
    assert_eq!(out, f.expected_answer(answer_dns(&q, 1, &EAST, 30, false)));
}

/// Replaces the DNS payload of a valid query frame.
fn with_dns(dns: Vec<u8>) -> Vec<u8> {
    frame("198.18.3.7", dns).build()
}

fn header(flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut h = vec![0x12, 0x34];
    for v in [flags, qd, an, ns, ar] {
        h.extend_from_slice(&v.to_be_bytes());
    }
    h
}

const WWW: &[u8] = b"\x03www\x04gslb\x07example\x00\x00\x01\x00\x01";

#[test]
fn every_truncation_of_a_valid_query_passes_unchanged() {
    let mut x = setup();
    let full = with_dns(dns_query(5, false, "www.gslb.example.", 1, Some(1232)));
    // BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header.
    for len in 14..full.len() {
        let (v, out) = x.run(&full[..len]).unwrap();
        assert_eq!(v, XDP_PASS, "truncated to {len}");
        assert_eq!(out, &full[..len]);
    }
}

#[test]
fn malformed_or_unsupported_dns_passes_unchanged() {
    let mut x = setup();
    let cat = |parts: &[&[u8]]| parts.concat();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("label length 0x40", cat(&[&header(0, 1, 0, 0, 0), b"\x40www\x00\x00\x01\x00\x01"]), "pass_unparsed"),
        ("compression pointer in the question", cat(&[&header(0, 1, 0, 0, 0), b"\x03www\xc0\x0c\x00\x01\x00\x01"]), "pass_unparsed"),
        ("QDCOUNT=2", cat(&[&header(0, 2, 0, 0, 0), WWW, WWW]), "pass_unparsed"),
        ("QDCOUNT=0", header(0, 0, 0, 0, 0), "pass_unparsed"),
        ("ANCOUNT=1", cat(&[&header(0, 1, 1, 0, 0), WWW]), "pass_unparsed"),
        ("ARCOUNT=2", cat(&[&header(0, 1, 0, 0, 2), WWW, b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"]), "pass_unparsed"),
        ("QR=1 (a response)", cat(&[&header(0x8000, 1, 0, 0, 0), WWW]), "pass_unparsed"),
        ("opcode NOTIFY", cat(&[&header(0x2000, 1, 0, 0, 0), WWW]), "pass_unparsed"),
        ("class CH", cat(&[&header(0, 1, 0, 0, 0), b"\x03www\x04gslb\x07example\x00\x00\x01\x00\x03"]), "pass_unparsed"),
        ("type MX", cat(&[&header(0, 1, 0, 0, 0), b"\x03www\x04gslb\x07example\x00\x00\x0f\x00\x01"]), "pass_unparsed"),
        ("trailing bytes", cat(&[&header(0, 1, 0, 0, 0), WWW, b"\x00"]), "pass_unparsed"),
        ("OPT with an unknown option", cat(&[&header(0, 1, 0, 0, 1), WWW, b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x04\xfd\xe9\x00\x00"]), "pass_unparsed"),
        ("OPT version 1", cat(&[&header(0, 1, 0, 0, 1), WWW, b"\x00\x00\x29\x04\xd0\x00\x01\x00\x00\x00\x00"]), "pass_unparsed"),
        ("additional that is not OPT", cat(&[&header(0, 1, 0, 0, 1), WWW, b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"]), "pass_unparsed"),
        ("unknown name", cat(&[&header(0, 1, 0, 0, 0), b"\x04nope\x04gslb\x07example\x00\x00\x01\x00\x01"]), "pass_unknown_name"),
    ];
    for (what, dns, counter) in cases {
        passes(&mut x, what, &with_dns(dns), counter);
    }
    // A name longer than the fast path's 128 wire bytes: legal DNS, answered upstairs.
    let long = format!("{}.{}.gslb.example.", "a".repeat(63), "b".repeat(63));
    passes(&mut x, "name over 128 bytes", &with_dns(dns_query(6, false, &long, 1, None)), "pass_unparsed");
    // AAAA for a SAC without address6: NODATA is the controller's.
    passes(&mut x, "AAAA, no address6", &with_dns(dns_query(6, false, "www.gslb.example.", 28, None)), "pass_no_address");
}

#[test]
fn frames_that_are_not_plain_udp_dns_to_our_port_pass_unchanged() {
    let mut x = setup();
    let q = dns_query(9, false, "www.gslb.example.", 1, None);
    let mut other_port = frame("198.18.3.7", q.clone());
    other_port.dport = 5353;
    passes(&mut x, "UDP to another port", &other_port.build(), "pass_not_dns");
    let good = frame("198.18.3.7", q.clone()).build();
    let mut tcp = good.clone();
    tcp[14 + 9] = 6;
    passes(&mut x, "TCP", &tcp, "pass_not_dns");
    let mut frag = good.clone();
    frag[14 + 6] |= 0x20; // MF
    passes(&mut x, "IPv4 fragment", &frag, "pass_unparsed");
    let mut opts = good.clone();
    opts[14] = 0x46; // IHL 6: options
    passes(&mut x, "IPv4 options", &opts, "pass_unparsed");
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    passes(&mut x, "ARP", &arp, "pass_not_dns");
    let mut v6ext = frame("fd00::7", q.clone()).build();
    v6ext[14 + 6] = 0; // hop-by-hop extension header
    passes(&mut x, "IPv6 extension header", &v6ext, "pass_not_dns");
    let mut not_ours = frame("198.18.3.7", q.clone());
    not_ours.dst = ip("198.18.0.99");
    passes(&mut x, "DNS to an address edns does not listen on", &not_ours.build(), "pass_not_ours");
    let mut bad_len = good.clone();
    bad_len[14 + 20 + 5] += 1; // UDP length disagrees with IP
    passes(&mut x, "UDP length mismatch", &bad_len, "pass_unparsed");
}


/// Runs a fixture that must be dropped, counted under `counter`.
fn drops(x: &mut XdpUnderTest, what: &str, bytes: &[u8], counter: &str) {
    let before = x.counter(counter);
    let (v, _) = x.run(bytes).unwrap();
    assert_eq!(v, edns_tests::xdp::XDP_DROP, "{what}: verdict; counters {:?}", x.counters());
    assert_eq!(x.counter(counter), before + 1, "{what}: counter {counter}; all: {:?}", x.counters());
}

#[test]
fn martian_and_spoofed_sources_are_dropped_never_answered() {
    let mut x = setup();
    let q = dns_query(70, false, "www.gslb.example.", 1, None);
    for src in ["0.1.2.3", "127.0.0.1", "224.0.0.251", "239.255.255.250", "240.0.0.1", "255.255.255.255", "198.18.0.1"] {
        drops(&mut x, src, &frame(src, q.clone()).build(), "drop_martian_source");
    }
    for src in ["::", "::1", "ff02::1", "::ffff:192.0.2.1", "fd00:edd5::1"] {
        drops(&mut x, src, &frame(src, q.clone()).build(), "drop_martian_source");
    }
    let mut f = frame("198.18.3.7", q.clone());
    f.sport = 0;
    drops(&mut x, "source port 0", &f.build(), "drop_martian_source");
    let mut b = frame("198.18.3.7", q.clone()).build();
    b[6] |= 1; // a group source MAC: the answer would go to the group
    drops(&mut x, "group source MAC", &b, "drop_martian_source");
    assert_eq!(x.counter("answered_stripe"), 0);
}

#[test]
fn frames_not_addressed_to_us_are_dropped() {
    let mut x = setup();
    let q = dns_query(71, false, "www.gslb.example.", 1, None);
    let mut b = frame("198.18.3.7", q.clone()).build();
    b[5] ^= 0x10; // another host's MAC
    drops(&mut x, "another host's MAC", &b, "drop_not_for_us");
    let mut b = frame("198.18.3.7", q.clone()).build();
    b[..6].copy_from_slice(&[0xff; 6]);
    drops(&mut x, "broadcast MAC", &b, "drop_not_for_us");
    for dst in ["224.0.0.251", "255.255.255.255"] {
        let f = Frame::udp(ip("198.18.3.7"), ip(dst), 53, q.clone());
        drops(&mut x, dst, &f.build(), "drop_not_for_us");
    }
    let f = Frame::udp(ip("fd00:edd5::7"), ip("ff02::fb"), 53, q.clone());
    drops(&mut x, "ff02::fb", &f.build(), "drop_not_for_us");
    assert_eq!(x.counter("answered_stripe"), 0);
}

#[test]
fn corrupt_checksums_are_dropped_and_a_zero_udp_checksum_only_over_ipv4_is_accepted() {
    let mut x = setup();
    let q = dns_query(72, false, "www.gslb.example.", 1, Some(1232));
    let good = frame("198.18.3.7", q.clone()).build();
    let mut b = good.clone();
    b[25] ^= 0x01; // IPv4 header checksum
    drops(&mut x, "IPv4 header checksum", &b, "drop_bad_checksum");
    let mut b = good.clone();
    b[41] ^= 0x01; // UDP checksum
    drops(&mut x, "UDP checksum over IPv4", &b, "drop_bad_checksum");
    // A payload byte changed in flight, still a valid query: the name's
    // case (byte 55, the first letter) and the OPT's payload size.
    let mut b = good.clone();
    b[55] ^= 0x20;
    drops(&mut x, "qname byte corrupted", &b, "drop_bad_checksum");
    let mut b = good.clone();
    let size_hi = b.len() - 8;
    b[size_hi] ^= 0x01;
    drops(&mut x, "OPT byte corrupted", &b, "drop_bad_checksum");
    let mut b = good.clone();
    b[40] = 0;
    b[41] = 0; // IPv4: zero means no checksum
    let f = frame("198.18.3.7", q.clone());
    let (v, out) = x.run(&b).unwrap();
    assert_eq!(v, XDP_TX, "a zero UDP checksum over IPv4 is allowed");
    check_answer(&f, &out).unwrap();
    let f6 = frame("fd00::9", dns_query(73, false, "www.gslb.example.", 1, None));
    let mut b = f6.build();
    b[60] = 0;
    b[61] = 0; // IPv6 requires one
    drops(&mut x, "zero UDP checksum over IPv6", &b, "drop_bad_checksum");
    let mut b = f6.build();
    b[61] ^= 0x04;
    drops(&mut x, "UDP checksum over IPv6", &b, "drop_bad_checksum");
    // Odd name lengths put the OPT at an odd offset: sums must still verify.
    for name in ["www.gslb.example.", "WWW.gslb.example.", "geo.gslb.example.", "shop.gslb.example."] {
        let f = frame("198.18.1.9", dns_query(74, false, name, 1, Some(1232)));
        let (v, _) = x.run(&f.build()).unwrap();
        assert_ne!(v, edns_tests::xdp::XDP_DROP, "{name}: a correct checksum was refused; {:?}", x.counters());
    }
}

/// A query with `cookie` (8 or 24 bytes) in its OPT.
fn cookie_query(id: u16, name: &str, cookie: &[u8]) -> Vec<u8> {
    edns_tests::packet::with_cookie(dns_query(id, false, name, 1, Some(1232)), cookie)
}

#[test]
fn cookies_are_answered_in_xdp_with_a_fresh_server_cookie() {
    let mut x = setup();
    let secrets = edns_common::CookieSecrets {
        current: [7; 16],
        enabled: 1,
        wall_offset_ns: edns_user::cookies::wall_offset_ns(),
        ..Default::default()
    };
    x.dataplane.set_cookie_secrets(&secrets).unwrap();
    let client = [1, 2, 3, 4, 5, 6, 7, 8];
    let ldns = edns_user::model::ip16(ip("198.18.3.7"));
    for (what, cookie, counter) in [
        ("client cookie alone", client.to_vec(), "cookie_client_only"),
        ("valid server cookie", [&client[..], &edns_common::server_cookie(&[7; 16], &client, &ldns, edns_user::cookies::wall_secs() as u32)].concat(), "cookie_valid"),
        ("forged server cookie", [&client[..], &[1, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0]].concat(), "cookie_bad"),
    ] {
        let f = frame("198.18.3.7", cookie_query(80, "www.gslb.example.", &cookie));
        let (v, out) = x.run(&f.build()).unwrap();
        assert_eq!(v, XDP_TX, "{what}: {:?}", x.counters());
        let dns = check_answer(&f, &out).unwrap_or_else(|e| panic!("{what}: {e}"));
        let opt = &dns[dns.len() - 28..];
        assert_eq!(&opt[..12], &[0, 10, 0, 24, 1, 2, 3, 4, 5, 6, 7, 8], "{what}: option header and client cookie");
        let server: [u8; 16] = opt[12..].try_into().unwrap();
        assert!(edns_common::server_cookie_valid(&[7; 16], &client, &server, &ldns, edns_user::cookies::wall_secs() as u32), "{what}: {server:02x?}");
        assert_eq!(x.counter(counter), 1, "{what}");
    }
}

/// Response rate limiting in XDP: a prefix gets its burst, then limited
/// queries are dropped except every `slip`-th, answered TC=1 with no data;
/// another prefix and a query with our valid server cookie are not limited.
#[test]
fn rate_limiting_drops_past_the_burst_slips_every_second_and_spares_other_prefixes_and_valid_cookies() {
    require_root();
    let text = std::fs::read_to_string(edns_tests::workspace().join("examples/demo.toml")).unwrap()
        + "\n[rrl]\nresponses_per_second = 1\nburst = 5\nslip = 2\n";
    let m = edns_user::config::parse(std::path::Path::new("rrl.toml"), &text).unwrap();
    let mut x = XdpUnderTest::new(&m).unwrap();
    let secrets = edns_common::CookieSecrets { current: [9; 16], enabled: 1, wall_offset_ns: edns_user::cookies::wall_offset_ns(), ..Default::default() };
    x.dataplane.set_cookie_secrets(&secrets).unwrap();
    let q = |id: u16| dns_query(id, false, "www.gslb.example.", 1, None);
    for i in 0..5 {
        let f = frame("198.18.3.7", q(i));
        answers(&mut x, &format!("burst #{i}"), &f, answer_dns(&q(i), 1, &EAST, 30, false));
    }
    let mut verdicts = Vec::new();
    for i in 0..6 {
        let f = frame("198.18.3.7", q(100 + i));
        let (v, out) = x.run(&f.build()).unwrap();
        if v == XDP_TX {
            let dns = check_answer(&f, &out).unwrap();
            assert_eq!(dns[2] & 0x02, 0x02, "TC set");
            assert_eq!(&dns[6..8], &[0, 0], "no answer RR");
            assert_eq!(&dns[12..], &q(100 + i)[12..], "the question echoed");
        }
        verdicts.push(v);
    }
    assert_eq!(verdicts, [edns_tests::xdp::XDP_DROP, XDP_TX, edns_tests::xdp::XDP_DROP, XDP_TX, edns_tests::xdp::XDP_DROP, XDP_TX]);
    assert_eq!((x.counter("drop_rate_limited"), x.counter("answered_rrl_slip")), (3, 3));
    // Another /24: its own bucket.
    answers(&mut x, "another prefix", &frame("198.18.4.9", q(200)), answer_dns(&q(200), 1, &EAST, 30, false));
    // Our valid server cookie proves the source: not limited.
    let client = [5u8; 8];
    let ldns = edns_user::model::ip16(ip("198.18.3.7"));
    let server = edns_common::server_cookie(&[9; 16], &client, &ldns, edns_user::cookies::wall_secs() as u32);
    let f = frame("198.18.3.7", cookie_query(201, "www.gslb.example.", &[&client[..], &server].concat()));
    let (v, _) = x.run(&f.build()).unwrap();
    assert_eq!(v, XDP_TX, "{:?}", x.counters());
    assert_eq!(x.counter("cookie_valid"), 1);
}
