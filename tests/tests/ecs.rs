//! EDNS Client Subnet (RFC 7871) in the controller, against kdig on
//! loopback from many 127.x LDNS addresses: the client subnet replaces the
//! LDNS for the stripe, topology and persistence of a wide IP with
//! `ecs = true`, the answer echoes it with the scope it read, a wide IP
//! without ECS ignores it, and a malformed option gets FORMERR. Expected
//! answers come from an independent Fig. 3 walk over the subnet's address.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use edns_tests::packet::{add_option, dns_query, ecs_data};
use edns_tests::{example_config, fig3, kdig, loopback_ports, Dig, EdnsProc};
use rand::{Rng, SeedableRng};

const EAST: &str = "192.0.2.10";
const WEST: &str = "198.51.100.20";
/// SAC address of each pool entry of cdn. and www. (east/vs1, east/vs2, west/vs1).
const POOL: [&str; 3] = [EAST, EAST, WEST];

const EXTRA: &str = r#"
[[wide_ip]]
name = "cdn.gslb.example."
mode = "stripe"
ecs = true
pool = ["east/vs1", "east/vs2", "west/vs1"]

[[wide_ip]]
name = "fine.gslb.example."
mode = "stripe"
ecs = true
ecs_max_prefix_v4 = 32
pool = ["east/vs1", "east/vs2", "west/vs1"]

[[wide_ip]]
name = "sticky.gslb.example."
mode = "dynamic"
method = "round_robin"
persistence_ttl = 600
persist_mask_v4 = 16
ecs = true
pool = ["east/vs1", "west/vs1"]

[[wide_ip]]
name = "near.gslb.example."
mode = "topology"
ecs = true
pool = ["east/vs1", "west/vs1"]

[[topology]]
ldns = "203.0.113.0/24"
sac = "west"
"#;

fn start() -> EdnsProc {
    let (dns, control) = loopback_ports();
    EdnsProc::start(&(example_config(dns, control) + EXTRA), None, &[]).unwrap()
}

fn ask(e: &EdnsProc, ldns: Ipv4Addr, name: &str, subnet: Option<&str>) -> Dig {
    let opt = subnet.map(|s| format!("+subnet={s}"));
    let mut args = vec![name, "A"];
    args.extend(opt.as_deref());
    let d = kdig(None, e.dns, Some(IpAddr::V4(ldns)), &args).unwrap();
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    d
}

/// The echoed option as kdig prints it ("ADDR/SOURCE/SCOPE"), if any.
fn echoed(d: &Dig) -> Option<String> {
    d.text.lines().find_map(|l| l.strip_prefix(";; CLIENT-SUBNET: ")).map(str::to_string)
}

fn ldns(rng: &mut impl Rng) -> Ipv4Addr {
    Ipv4Addr::new(127, rng.random(), rng.random(), rng.random_range(1..255))
}

#[test]
fn the_client_subnet_replaces_the_ldns_in_the_stripe_and_the_scope_says_what_was_read() {
    let e = start();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7871);
    for _ in 0..40 {
        let net = Ipv4Addr::new(rng.random_range(1..224), rng.random(), rng.random(), 0);
        let host = Ipv4Addr::from(u32::from(net) | rng.random_range(1..255));
        let want = POOL[fig3(net, &[true; 3])];
        // Several LDNSes asking for the same client: one answer, the subnet's.
        for _ in 0..3 {
            let d = ask(&e, ldns(&mut rng), "cdn.gslb.example.", Some(&format!("{host}/24")));
            assert_eq!(d.answer(), want, "{}", d.text);
            assert_eq!(echoed(&d).as_deref(), Some(format!("{net}/24/24").as_str()), "{}", d.text);
        }
        // A longer source prefix is cut to the default maximum, /24: the
        // same answer, and a scope of 24 below the source's 32.
        let d = ask(&e, ldns(&mut rng), "cdn.gslb.example.", Some(&format!("{host}/32")));
        assert_eq!(d.answer(), want, "{}", d.text);
        assert_eq!(echoed(&d).as_deref(), Some(format!("{host}/32/24").as_str()), "{}", d.text);
        // With a /32 maximum the host itself is read.
        let d = ask(&e, ldns(&mut rng), "fine.gslb.example.", Some(&format!("{host}/32")));
        assert_eq!(d.answer(), POOL[fig3(host, &[true; 3])], "{}", d.text);
        assert_eq!(echoed(&d).as_deref(), Some(format!("{host}/32/32").as_str()), "{}", d.text);
    }
}

#[test]
fn a_source_prefix_of_zero_is_answered_for_the_ldns_with_scope_zero() {
    let e = start();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for _ in 0..20 {
        let l = ldns(&mut rng);
        let d = ask(&e, l, "cdn.gslb.example.", Some("0.0.0.0/0"));
        assert_eq!(d.answer(), POOL[fig3(l, &[true; 3])], "{}", d.text);
        assert_eq!(echoed(&d).as_deref(), Some("0.0.0.0/0/0"), "{}", d.text);
    }
}

#[test]
fn a_wide_ip_without_ecs_answers_for_the_ldns_and_echoes_no_subnet() {
    let e = start();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..20 {
        let l = ldns(&mut rng);
        let d = ask(&e, l, "www.gslb.example.", Some("203.0.113.9/24"));
        assert_eq!(d.answer(), POOL[fig3(l, &[true; 3])], "{}", d.text);
        assert_eq!(echoed(&d), None, "RFC 7871: no ECS from a server that did not use it\n{}", d.text);
    }
}

#[test]
fn topology_matches_the_client_subnet_not_the_ldns() {
    let e = start();
    // 127.1/16 is east's by the LDNS; the client in 203.0.113/24 is west's.
    let d = ask(&e, Ipv4Addr::new(127, 1, 2, 3), "near.gslb.example.", Some("203.0.113.50/24"));
    assert_eq!(d.answer(), WEST, "{}", d.text);
    assert_eq!(echoed(&d).as_deref(), Some("203.0.113.0/24/24"), "{}", d.text);
    let d = ask(&e, Ipv4Addr::new(127, 2, 2, 3), "near.gslb.example.", Some("0.0.0.0/0"));
    assert_eq!(d.answer(), WEST, "no subnet: the LDNS's own match\n{}", d.text);
}

#[test]
fn persistence_keys_on_the_client_subnet_cut_by_the_persistence_mask() {
    let e = start();
    // Two clients of one /16 through different LDNSes: one record, one SAC.
    let first = ask(&e, Ipv4Addr::new(127, 0, 9, 1), "sticky.gslb.example.", Some("198.18.5.1/24"));
    assert_eq!(echoed(&first).as_deref(), Some("198.18.5.0/24/16"), "scope: the record's /16\n{}", first.text);
    for (l, c) in [((127, 3, 3, 3), "198.18.77.0/24"), ((127, 4, 4, 4), "198.18.200.0/24"), ((127, 0, 9, 1), "198.18.5.0/24")] {
        let d = ask(&e, Ipv4Addr::new(l.0, l.1, l.2, l.3), "sticky.gslb.example.", Some(c));
        assert_eq!(d.answer(), first.answer(), "{}", d.text);
    }
    let records = e.ctl(&["records"]).unwrap();
    let keys: Vec<&str> = records.as_array().unwrap().iter().map(|r| r["ldns"].as_str().unwrap()).collect();
    assert_eq!(keys, ["subnet 198.18.0.0/16"], "{records:#}");
    assert_eq!(records[0]["hits"], 4, "{records:#}");
}

#[test]
fn malformed_client_subnets_get_formerr_and_the_server_keeps_answering() {
    let e = start();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let exchange = |ecs: &[u8]| {
        let mut q = dns_query(0x7871, false, "cdn.gslb.example.", 1, Some(1232));
        add_option(&mut q, 8, ecs, true);
        s.send_to(&q, e.dns).unwrap();
        let mut buf = [0u8; 1500];
        let n = s.recv(&mut buf).expect("an answer");
        buf[..n].to_vec()
    };
    let good = ecs_data("192.0.2.77".parse().unwrap(), 24);
    let cases: [(&str, Vec<u8>); 5] = [
        ("an address byte too many", [&good[..], &[0]].concat()),
        ("a bit past the prefix", ecs_data("192.0.2.77".parse().unwrap(), 23).iter().enumerate().map(|(i, b)| if i == 6 { b | 1 } else { *b }).collect()),
        ("a scope in a query", { let mut d = good.clone(); d[3] = 24; d }),
        ("an unknown family", { let mut d = good.clone(); d[1] = 3; d }),
        ("a prefix longer than IPv4", [&[0, 1, 33, 0][..], &[192, 0, 2, 77, 0]].concat()),
    ];
    for (what, ecs) in &cases {
        let a = exchange(ecs);
        assert_eq!(&a[..2], &[0x78, 0x71], "{what}: the query's id");
        assert_eq!(a[3] & 0x0f, 1, "{what}: FORMERR, got {a:02x?}");
    }
    let a = exchange(&good);
    assert_eq!(a[3] & 0x0f, 0, "a well-formed subnet is answered: {a:02x?}");
    let d = ask(&e, Ipv4Addr::new(127, 0, 0, 9), "cdn.gslb.example.", None);
    assert_eq!(d.answer(), POOL[fig3(Ipv4Addr::new(127, 0, 0, 9), &[true; 3])]);
}
