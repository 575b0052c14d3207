//! The userspace request path: any bytes from any source are either
//! dropped or answered with a parseable DNS message for the same ID —
//! never a panic. A plain question (answered on the bytes) gets the
//! very bytes the general path gives.
#![no_main]

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use edns_user::cookies::{wall_secs, Cookies};
use edns_user::dns::{Responder, Transport};
use edns_user::select::Selector;
use edns_user::store::MemoryStore;
use libfuzzer_sys::fuzz_target;

/// Two responders on the example config, each with its own store and one
/// cookie secret, fed the same queries: one through `respond`, one through
/// the general path only.
fn responders() -> &'static (Responder, Responder) {
    static R: OnceLock<(Responder, Responder)> = OnceLock::new();
    R.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let model = Arc::new(edns_user::config::load(&root.join("examples/edns.toml")).expect("the example config"));
        let r = || {
            let store = Arc::new(MemoryStore::new(model.initial_vs_states(), model.wide_ips.len(), 4096));
            let cookies = Arc::new(Cookies::new(model.server.cookies.enabled, Some(*b"fuzz-the-cookie!")));
            Responder::with_cookies(model.clone(), Selector::new(model.clone(), store), cookies)
        };
        (r(), r())
    })
}

fuzz_target!(|input: &[u8]| {
    // The first bytes choose the source address and transport.
    if input.len() < 5 {
        return;
    }
    let src = IpAddr::from([input[0], input[1], input[2], input[3]]);
    let transport = if input[4] & 1 == 0 { Transport::Udp } else { Transport::Tcp };
    let query = &input[5..];
    let (responder, general) = responders();
    let second = wall_secs();
    let out = responder.respond(query, src, transport);
    if query.len() >= 12 && query[2] & 0x80 == 0 {
        let reference = general.respond_general(query, src, transport);
        // A server cookie carries the second it was made in.
        if edns_user::dns::plain::PlainQuery::parse(query).is_some() && wall_secs() == second {
            assert_eq!(out, reference, "a plain question answered as the general path does");
        }
    }
    if let Some(out) = out {
        assert_eq!(&out[..2], &query[..2], "the answer carries the query's ID");
        assert!(out[2] & 0x80 != 0, "QR set");
        hickory_proto::op::Message::from_vec(&out).expect("a parseable answer");
        if transport == Transport::Udp {
            assert!(out.len() <= 1232, "a UDP answer within our EDNS payload size");
        }
    }
});
