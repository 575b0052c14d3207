//! The kernel and userspace paths agree byte for byte.
//!
//! Thousands of random valid queries (random LDNS addresses v4 and v6, name
//! case, qtype, with and without OPT, DO, cookies, NSID, client subnets (ECS),
//! VLAN tags, RD/CD) go through the XDP
//! program (BPF_PROG_TEST_RUN, state in its maps) and through the userspace
//! responder with its own in-memory state, both started from the same config.
//! An XDP answer must equal the userspace answer byte for byte; a query XDP
//! passes up is answered by the controller against the maps (as in
//! production), and that answer must equal the in-memory one too. VS state
//! changes are applied to both along the way. At the end both stores must
//! hold the same VS states, persistence records and counters.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use edns_common::{VS_AVAILABLE, VS_MARKED_UP, VS_UP};
use edns_tests::packet::{add_option, check_answer, dns_query, ecs_data, with_cookie, Frame};
use edns_tests::require_root;
use edns_tests::xdp::{XdpUnderTest, XDP_DROP, XDP_PASS, XDP_TX};
use edns_user::cookies::Cookies;
use edns_user::dns::{Responder, Transport};
use edns_user::select::Selector;
use edns_user::store::{MemoryStore, Store};
use rand::{Rng, SeedableRng};

const CONFIG: &str = r#"
[server]
listen = ["198.18.0.1:53", "[fd00::1]:53"]
nsid = "edns-differential-7"
zone = "gslb.example."
nameservers = ["ns1.gslb.example."]
answer_ttl = 30
control = "127.0.0.1:8053"

[[sac]]
name = "east"
address = "192.0.2.10"
virtual_servers = [{ name = "vs1" }, { name = "vs2" }, { name = "vs3" }]

[[sac]]
name = "west"
address = "198.51.100.20"
address6 = "2001:db8::20"
virtual_servers = [{ name = "vs1" }, { name = "vs2" }]

[[sac]]
name = "north"
address = "203.0.113.30"
address6 = "2001:db8::30"
virtual_servers = [{ name = "vs1" }]

[[wide_ip]]
name = "www.gslb.example."
mode = "stripe"
pool = ["east/vs1", "east/vs2", "west/vs1", "north/vs1", "west/vs2", "east/vs3"]

[[wide_ip]]
name = "one.gslb.example."
mode = "stripe"
pool = ["north/vs1"]

[[wide_ip]]
name = "shop.gslb.example."
mode = "dynamic"
method = "round_robin"
persistence_ttl = 600
pool = ["east/vs1", "west/vs1", "north/vs1"]

[[wide_ip]]
name = "geo.gslb.example."
mode = "topology"
answer_ttl = 5
pool = ["east/vs2", "west/vs2", "north/vs1"]

[[wide_ip]]
name = "deep.sub.gslb.example."
mode = "topology"
pool = ["west/vs1", "east/vs3"]

[[wide_ip]]
name = "pfx.gslb.example."
mode = "dynamic"
method = "round_robin"
persistence_ttl = 600
persist_mask_v4 = 24
persist_mask_v6 = 56
pool = ["east/vs2", "west/vs2", "north/vs1"]

[[wide_ip]]
name = "ring.gslb.example."
mode = "stripe_consistent"
pool = ["east/vs1", "east/vs2", "west/vs1", "north/vs1", "west/vs2", "east/vs3"]

[[wide_ip]]
name = "safe.gslb.example."
mode = "topology"
all_down = "fallback"
fallback_address = "192.0.2.99"
pool = ["east/vs3", "west/vs2"]

[[wide_ip]]
name = "strict.gslb.example."
mode = "stripe_consistent"
all_down = "refused"
pool = ["north/vs1", "west/vs1"]

[[wide_ip]]
name = "ecs.gslb.example."
mode = "stripe"
ecs = true
pool = ["east/vs1", "east/vs2", "west/vs1", "north/vs1", "west/vs2", "east/vs3"]

[[wide_ip]]
name = "ecsgeo.gslb.example."
mode = "topology"
ecs = true
ecs_max_prefix_v4 = 25
ecs_max_prefix_v6 = 48
pool = ["east/vs2", "west/vs2", "north/vs1"]

[[wide_ip]]
name = "ecsdyn.gslb.example."
mode = "dynamic"
method = "round_robin"
persistence_ttl = 600
persist_mask_v4 = 20
ecs = true
pool = ["east/vs1", "west/vs1", "north/vs1"]

[[wide_ip]]
name = "ecsring.gslb.example."
mode = "stripe_consistent"
ecs = true
ecs_max_prefix_v4 = 32
ecs_max_prefix_v6 = 128
pool = ["east/vs1", "east/vs2", "west/vs1", "north/vs1"]

[[ldns_group]]
name = "public"
members = ["198.18.1.128/25", "198.18.3.0/24", "fd00:1:0:8000::/49"]

[[ldns_group]]
name = "isp"
id = 42
members = ["198.18.2.7", "198.18.2.9"]

[[topology]]
ldns = "198.18.1.0/24"
sac = "east"

[[topology]]
ldns = "198.18.2.0/24"
sac = "west"

[[topology]]
ldns = "198.18.2.128/25"
sac = "north"

[[topology]]
ldns = "fd00:1::/32"
sac = "north"
"#;

const NAMES: [&str; 14] = [
    "www.gslb.example.",
    "one.gslb.example.",
    "shop.gslb.example.",
    "geo.gslb.example.",
    "deep.sub.gslb.example.",
    "nope.gslb.example.",
    "ring.gslb.example.",
    "safe.gslb.example.",
    "strict.gslb.example.",
    "pfx.gslb.example.",
    "ecs.gslb.example.",
    "ecsgeo.gslb.example.",
    "ecsdyn.gslb.example.",
    "ecsring.gslb.example.",
];

fn random_case(rng: &mut impl Rng, name: &str) -> String {
    name.chars().map(|c| if rng.random_bool(0.3) { c.to_ascii_uppercase() } else { c }).collect()
}

fn random_ldns(rng: &mut impl Rng, pool: &[IpAddr]) -> IpAddr {
    // A reused pool makes persistence hits likely; fresh ones make misses.
    if rng.random_bool(0.6) {
        return pool[rng.random_range(0..pool.len())];
    }
    match rng.random_range(0..4) {
        0 => IpAddr::V4(Ipv4Addr::new(198, 18, rng.random_range(1..4), rng.random())),
        1 => IpAddr::V4(Ipv4Addr::from(rng.random::<u32>())),
        2 => IpAddr::V6(Ipv6Addr::from((0xfd00_0001u128 << 96) | rng.random::<u64>() as u128)),
        _ => IpAddr::V6(Ipv6Addr::from(rng.random::<u128>())),
    }
}

/// A COOKIE option for some queries: a client cookie alone, with a valid
/// server cookie for this source, or with a forged one.
fn random_cookie(rng: &mut impl Rng, secret: &[u8; 16], src: IpAddr) -> Option<Vec<u8>> {
    let client: [u8; 8] = rng.random();
    match rng.random_range(0..10) {
        0..=2 => Some(client.to_vec()),
        3 | 4 => {
            let now = edns_user::cookies::wall_secs() as u32 - rng.random_range(0..1800);
            let server = edns_common::server_cookie(secret, &client, &edns_user::model::ip16(src), now);
            Some([&client[..], &server].concat())
        }
        5 => Some([&client[..], &rng.random::<[u8; 16]>()].concat()),
        _ => None,
    }
}

/// ECS option data for some queries: a client subnet of a client that
/// comes back (persistence hits) or a fresh one, v4 or v6, with a source
/// prefix up to the family's length (0 included); now and then malformed
/// (an extra address byte, a bit past the prefix, a scope, an unknown
/// family, a prefix longer than the family), which XDP passes up and the
/// controller refuses with FORMERR.
fn random_ecs(rng: &mut impl Rng, clients: &[IpAddr]) -> Option<Vec<u8>> {
    if !rng.random_bool(0.4) {
        return None;
    }
    let client = random_ldns(rng, clients);
    let max = if client.is_ipv4() { 32 } else { 128 };
    let source = match rng.random_range(0..6) {
        0 => 0,
        1 => max,
        2 => if client.is_ipv4() { 24 } else { 56 },
        _ => rng.random_range(1..=max),
    };
    let mut d = ecs_data(client, source);
    match rng.random_range(0..40) {
        0 => d.push(0),                                 // an address byte too many
        1 if source % 8 != 0 => *d.last_mut().unwrap() |= 1, // a bit past the prefix
        2 => d[3] = rng.random_range(1..=source.max(1)), // a scope in a query
        3 => d[1] = 3,                                  // unknown family
        4 if client.is_ipv4() => d[2] = 33,             // longer than IPv4
        _ => {}
    }
    Some(d)
}

/// Adds an empty NSID option to the query's OPT, before or after the options it has.
fn add_nsid(dns: &mut Vec<u8>, first: bool) {
    add_option(dns, 3, &[], first);
}

/// An answer to a query with a cookie ends with the COOKIE option: the
/// client cookie and a fresh server cookie, whose timestamp may differ by a
/// second between paths. Checks it (made with `secret` for this client and
/// source, and fresh), then blanks it so the rest compares byte for byte.
fn server_cookie_checked(mut answer: Vec<u8>, cookie: Option<&[u8]>, secret: &[u8; 16], src: IpAddr) -> Vec<u8> {
    let Some(sent) = cookie else { return answer };
    if answer[3] & 0x0f != 0 || answer.len() < 28 {
        return answer; // an error answer carries what it carries
    }
    let n = answer.len();
    let opt = &answer[n - 28..];
    assert_eq!(&opt[..4], &[0, 10, 0, 24], "COOKIE option at the end: {answer:02x?}");
    assert_eq!(&opt[4..12], &sent[..8], "the client cookie echoed");
    let client: [u8; 8] = opt[4..12].try_into().unwrap();
    let server: [u8; 16] = opt[12..].try_into().unwrap();
    let now = edns_user::cookies::wall_secs() as u32;
    assert!(edns_common::server_cookie_valid(secret, &client, &server, &edns_user::model::ip16(src), now), "a fresh, valid server cookie");
    let ts = u32::from_be_bytes(server[4..8].try_into().unwrap());
    assert!(now.wrapping_sub(ts) <= 2, "fresh: made {} s ago", now.wrapping_sub(ts) as i32);
    answer[n - 16..].fill(0);
    answer
}

/// An independent statement of the ingress policy's source rule: addresses
/// no resolver can send from (RFC 6890), and our own.
fn martian(src: IpAddr) -> bool {
    match src {
        IpAddr::V4(a) => a.octets()[0] == 0 || a.is_loopback() || a.octets()[0] >= 224 || a == Ipv4Addr::new(198, 18, 0, 1),
        IpAddr::V6(a) => {
            a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.to_ipv4_mapped().is_some() || a == "fd00::1".parse::<Ipv6Addr>().unwrap()
        }
    }
}

#[test]
fn xdp_and_userspace_give_byte_identical_answers_and_keep_identical_state() {
    require_root();
    let model = Arc::new(edns_user::config::parse(std::path::Path::new("differential.toml"), CONFIG).unwrap());
    let mut x = XdpUnderTest::new(&model).unwrap();
    let maps: Arc<dyn Store> = x.dataplane.clone();
    let initial = vec![VS_UP; model.vss.len()];
    let mem: Arc<dyn Store> = Arc::new(MemoryStore::new(initial, model.wide_ips.len(), 1 << 20));
    // One cookie secret for the kernel and both userspace responders.
    let cookies = Arc::new(Cookies::new(true, None));
    x.dataplane.set_cookie_secrets(&cookies.secrets()).unwrap();
    let slow_path = Responder::with_cookies(model.clone(), Selector::new(model.clone(), maps.clone()), cookies.clone());
    let reference = Responder::with_cookies(model.clone(), Selector::new(model.clone(), mem.clone()), cookies.clone());
    let secret = cookies.secrets().current;

    let mut rng = rand::rngs::StdRng::seed_from_u64(0xed45);
    // Resolvers that come back (persistence hits); fresh random sources
    // below include martian ones, which XDP must drop.
    let seed = [IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1))];
    let ldns_pool: Vec<IpAddr> = (0..40)
        .map(|_| loop {
            let a = random_ldns(&mut rng, &seed);
            if !martian(a) {
                break a;
            }
        })
        .collect();
    let (mut tx, mut pass, mut dropped, mut with_nsid) = (0u32, 0u32, 0u32, 0u32);
    const QUERIES: u32 = 4000;
    for i in 0..QUERIES {
        // Every 250 queries, change a VS's state in both stores alike.
        if i % 250 == 125 {
            let vs = rng.random_range(0..model.vss.len() as u32);
            // up, down, unavailable (marked but gone), drain (available, not marked)
            let state = [VS_UP, 0, VS_MARKED_UP, VS_AVAILABLE][rng.random_range(0..4)];
            maps.set_vs_state(vs, state).unwrap();
            mem.set_vs_state(vs, state).unwrap();
        }
        // Now and then take every VS down: stripe falls back to round robin.
        if i == 3000 {
            for vs in 0..model.vss.len() as u32 {
                maps.set_vs_state(vs, 0).unwrap();
                mem.set_vs_state(vs, 0).unwrap();
            }
        }
        if i == 3300 {
            for vs in 0..model.vss.len() as u32 {
                maps.set_vs_state(vs, VS_UP).unwrap();
                mem.set_vs_state(vs, VS_UP).unwrap();
            }
        }
        let src = random_ldns(&mut rng, &ldns_pool);
        let pick = NAMES[rng.random_range(0..NAMES.len())];
        let name = random_case(&mut rng, pick);
        let qtype = if rng.random_bool(0.7) { 1 } else { 28 };
        let edns = if rng.random_bool(0.5) { Some(rng.random_range(512..4096)) } else { None };
        let mut dns = dns_query(rng.random(), rng.random(), &name, qtype, edns);
        if rng.random_bool(0.2) {
            dns[3] |= 0x10; // CD
        }
        if edns.is_some() && rng.random_bool(0.5) {
            let n = dns.len();
            dns[n - 4] |= 0x80; // DO, in the OPT's flags
        }
        let cookie = edns.and_then(|_| random_cookie(&mut rng, &secret, src));
        if let Some(c) = &cookie {
            dns = with_cookie(dns, c);
        }
        if edns.is_some() && rng.random_bool(0.2) {
            add_nsid(&mut dns, rng.random_bool(0.5));
        }
        let ecs = edns.and_then(|_| random_ecs(&mut rng, &ldns_pool));
        if let Some(d) = &ecs {
            add_option(&mut dns, 8, d, rng.random_bool(0.5));
        }
        let dst: IpAddr = if src.is_ipv4() { "198.18.0.1".parse().unwrap() } else { "fd00::1".parse().unwrap() };
        let mut f = Frame::udp(src, dst, 53, dns.clone());
        f.sport = rng.random_range(1024..65535);
        f.vlans = match rng.random_range(0..4) {
            0 => vec![rng.random_range(1..4094)],
            1 => vec![rng.random_range(1..4094), rng.random_range(1..4094)],
            _ => vec![],
        };
        let frame = f.build();
        let (verdict, out) = x.run(&frame).unwrap();
        if verdict != XDP_DROP {
            assert!(!martian(src), "query #{i}: martian source {src} not dropped (verdict {verdict})");
        }
        // The reference answers what XDP did not drop (in production the
        // kernel's own checks stop the dropped ones before any socket).
        let want = || {
            let a = reference.respond(&dns, src, Transport::Udp).expect("userspace answers every valid query");
            server_cookie_checked(a, cookie.as_deref(), &secret, src)
        };
        let ctx = || format!("query #{i}: {name} type {qtype} from {src} edns {edns:?} ecs {ecs:02x?} vlans {:?}", f.vlans);
        match verdict {
            XDP_TX => {
                tx += 1;
                let got = check_answer(&f, &out).unwrap_or_else(|e| panic!("{}: {e}", ctx()));
                let got = server_cookie_checked(got, cookie.as_deref(), &secret, src);
                if got.windows(19).any(|w| w == b"edns-differential-7") {
                    with_nsid += 1;
                }
                assert_eq!(got, want(), "{}: XDP answer differs from userspace", ctx());
            }
            XDP_PASS => {
                pass += 1;
                assert_eq!(out, frame, "{}: passed frame changed", ctx());
                let got = slow_path.respond(&dns, src, Transport::Udp).unwrap();
                let got = server_cookie_checked(got, cookie.as_deref(), &secret, src);
                assert_eq!(got, want(), "{}: controller answer over the maps differs", ctx());
            }
            XDP_DROP => {
                // Only a source no resolver can have is dropped here (the
                // frames are otherwise well-formed and addressed to us).
                dropped += 1;
                assert!(martian(src), "{}: dropped a legitimate source", ctx());
            }
            v => panic!("{}: verdict {v}", ctx()),
        }
    }
    let c = |n: &str| x.counter(n);
    println!("{tx} answered in XDP, {pass} passed up, {dropped} martian sources dropped; counters {:?}", x.counters());
    assert!(dropped >= 20 && c("drop_martian_source") == dropped as u64, "martian sources dropped: {dropped}");
    assert!(with_nsid >= 20, "NSID answered in XDP {with_nsid} times");
    for n in ["answered_stripe", "answered_topology", "answered_persistence", "answered_fallback_rr", "answered_consistent", "pass_all_down"] {
        assert!(c(n) >= 20, "{n} = {}: the run must exercise it", c(n));
    }
    for n in ["pass_unknown_name", "pass_persist_miss", "pass_no_address", "cookie_client_only", "cookie_valid", "cookie_bad", "ecs_answered", "pass_bad_ecs"] {
        assert!(c(n) >= 20, "{n} = {}: the run must exercise it", c(n));
    }
    // Same selection state on both sides.
    for vs in 0..model.vss.len() as u32 {
        assert_eq!(maps.vs_state(vs).unwrap(), mem.vs_state(vs).unwrap(), "VS {vs} state");
    }
    let strip = |v: Vec<(edns_common::PersistKey, edns_common::PersistRecord)>| {
        v.into_iter().map(|(k, r)| (k, r.vs, r.hits, r.ttl_secs, r.node_id)).collect::<Vec<_>>()
    };
    let (a, b) = (strip(maps.persist_list().unwrap()), strip(mem.persist_list().unwrap()));
    assert!(!a.is_empty());
    assert!(a.iter().any(|(k, ..)| k.ldns.kind == edns_common::LDNS_KIND_PREFIX), "prefix records (persist masks) exercised");
    assert!(a.iter().any(|(k, ..)| k.ldns.kind == edns_common::LDNS_KIND_GROUP), "group records exercised");
    assert!(a.iter().any(|(k, ..)| k.ldns.kind == edns_common::LDNS_KIND_SUBNET), "client-subnet records exercised");
    assert_eq!(a, b, "persistence records (key, VS, hits, TTL, node)");
    for w in 0..model.wide_ips.len() as u32 {
        assert_eq!(maps.next_counter(w).unwrap(), mem.next_counter(w).unwrap(), "round-robin counter of wide IP {w}");
    }
}
