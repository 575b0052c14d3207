//! The XDP program against a model, on frames built from fuzz input: a
//! query (source, VLAN tags, name and case, type, OPT, header flags) whose
//! DNS bytes are then mutated, with correct checksums, and optionally one
//! header byte corrupted afterwards. The model: a passed frame is
//! unchanged; an answer is well-formed and equals, byte for byte, the
//! userspace responder's answer to the same bytes from the same source
//! (the names used are stateless: stripe, consistent stripe, topology);
//! only martian sources, source port 0 or corrupted frames are dropped,
//! and those never get an answer. Needs root (BPF_PROG_TEST_RUN).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, OnceLock};

use edns_tests::packet::{check_answer, dns_query, Frame};
use edns_tests::xdp::{XdpUnderTest, XDP_DROP, XDP_PASS, XDP_TX};
use edns_user::cookies::Cookies;
use edns_user::dns::{Responder, Transport};
use edns_user::select::Selector;
use edns_user::store::MemoryStore;
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Case {
    src: [u8; 16],
    v6: bool,
    vlans: u8,
    vlan_ids: [u16; 2],
    sport: u16,
    name: u8,
    case_mask: u64,
    aaaa: bool,
    edns: Option<u16>,
    flags: u16,
    mutations: Vec<(u8, u8)>,
    corrupt: Option<(u8, u8)>,
}

const NAMES: [&str; 4] = ["www.gslb.example.", "geo.gslb.example.", "ring.gslb.example.", "nope.gslb.example."];

struct Bed {
    x: XdpUnderTest,
    reference: Responder,
}

fn bed() -> &'static Mutex<Bed> {
    static B: OnceLock<Mutex<Bed>> = OnceLock::new();
    B.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let model = Arc::new(edns_user::config::load(&root.join("examples/demo.toml")).expect("the demo config"));
        let x = XdpUnderTest::new(&model).expect("the XDP object (cargo xtask build-ebpf) and root");
        let store = Arc::new(MemoryStore::new(model.initial_vs_states(), model.wide_ips.len(), 1024));
        // Cookies off on both sides: the kernel's secrets map is left disabled.
        let reference = Responder::with_cookies(model.clone(), Selector::new(model, store), Arc::new(Cookies::new(false, None)));
        Mutex::new(Bed { x, reference })
    })
}

fn martian(src: IpAddr) -> bool {
    match src {
        IpAddr::V4(a) => a.octets()[0] == 0 || a.is_loopback() || a.octets()[0] >= 224 || a == Ipv4Addr::new(198, 18, 0, 1),
        IpAddr::V6(a) => a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.to_ipv4_mapped().is_some() || a == "fd00:edd5::1".parse::<Ipv6Addr>().unwrap(),
    }
}

fuzz_target!(|c: Case| {
    let src = if c.v6 { IpAddr::from(c.src) } else { IpAddr::from([c.src[0], c.src[1], c.src[2], c.src[3]]) };
    let dst: IpAddr = if c.v6 { "fd00:edd5::1".parse().unwrap() } else { "198.18.0.1".parse().unwrap() };
    let name: String = NAMES[c.name as usize % NAMES.len()]
        .chars()
        .enumerate()
        .map(|(i, ch)| if c.case_mask >> (i % 64) & 1 == 1 { ch.to_ascii_uppercase() } else { ch })
        .collect();
    let mut dns = dns_query(0, false, &name, if c.aaaa { 28 } else { 1 }, c.edns);
    dns[2..4].copy_from_slice(&(c.flags & 0x7fff).to_be_bytes()); // a query (QR=0), any other flags
    for (pos, x) in c.mutations.iter().take(8) {
        let n = dns.len();
        dns[*pos as usize % n] ^= x;
    }
    let mut f = Frame::udp(src, dst, 53, dns.clone());
    f.sport = c.sport;
    f.vlans = c.vlan_ids[..(c.vlans % 3) as usize].iter().map(|v| v & 0x0fff).collect();
    let mut frame = f.build();
    let mut corrupted = false;
    if let Some((pos, x)) = c.corrupt {
        if x != 0 {
            let p = pos as usize % frame.len();
            frame[p] ^= x;
            corrupted = true;
        }
    }
    let mut b = bed().lock().unwrap();
    let (verdict, out) = b.x.run(&frame).expect("BPF_PROG_TEST_RUN");
    match verdict {
        XDP_PASS => assert_eq!(out, frame, "a passed frame is unchanged"),
        XDP_DROP => assert!(corrupted || martian(src) || c.sport == 0, "dropped a clean frame from {src}"),
        XDP_TX => {
            assert!(!martian(src) && c.sport != 0, "answered a martian source {src}");
            if !corrupted {
                let got = check_answer(&f, &out).unwrap_or_else(|e| panic!("malformed answer: {e}"));
                let want = b.reference.respond(&dns, src, Transport::Udp).expect("userspace answers what XDP answers");
                assert_eq!(got, want, "XDP and userspace differ for {name} from {src}");
            }
        }
        v => panic!("verdict {v}"),
    }
    if !corrupted && !martian(src) && c.sport != 0 {
        assert_ne!(verdict, XDP_DROP, "a clean frame from {src} was dropped");
    }
});
