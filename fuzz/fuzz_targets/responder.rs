//! The userspace request path: any bytes from any source are either
//! dropped or answered with a parseable DNS message for the same ID —
//! never a panic.
#![no_main]

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use edns_user::dns::{Responder, Transport};
use edns_user::select::Selector;
use edns_user::store::MemoryStore;
use libfuzzer_sys::fuzz_target;

fn responder() -> &'static Responder {
    static R: OnceLock<Responder> = OnceLock::new();
    R.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let model = Arc::new(edns_user::config::load(&root.join("examples/edns.toml")).expect("the example config"));
        let store = Arc::new(MemoryStore::new(model.initial_vs_states(), model.wide_ips.len(), 4096));
        Responder::new(model.clone(), Selector::new(model, store))
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
    if let Some(out) = responder().respond(query, src, transport) {
        assert_eq!(&out[..2], &query[..2], "the answer carries the query's ID");
        assert!(out[2] & 0x80 != 0, "QR set");
        hickory_proto::op::Message::from_vec(&out).expect("a parseable answer");
        if transport == Transport::Udp {
            assert!(out.len() <= 1232, "a UDP answer within our EDNS payload size");
        }
    }
});
