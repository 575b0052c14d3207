//! Katran-style fixtures: input frame -> expected verdict (and answer),
//! through BPF_PROG_TEST_RUN.

use std::net::IpAddr;
use std::path::Path;

use edns_tests::packet::{check_answer, dns_query, Frame};
use edns_tests::xdp::{XdpUnderTest, XDP_PASS, XDP_TX};
use edns_tests::{require_root, workspace};

fn model() -> edns_user::model::Model {
    let p = workspace().join("examples/demo.toml");
    edns_user::config::load(Path::new(&p)).unwrap()
}

fn client() -> IpAddr {
    "198.18.3.7".parse().unwrap()
}
fn server() -> IpAddr {
    "198.18.0.1".parse().unwrap()
}

#[test]
fn a_query_for_a_stripe_wide_ip_is_answered_with_xdp_tx() {
    require_root();
    let mut x = XdpUnderTest::new(&model()).unwrap();
    let f = Frame::udp(client(), server(), 53, dns_query(0x4242, true, "www.gslb.example.", 1, None));
    let (verdict, out) = x.run(&f.build()).unwrap();
    assert_eq!(verdict, XDP_TX, "counters: {:?}", x.counters());
    let dns = check_answer(&f, &out).unwrap();
    println!("{dns:02x?}");
}
