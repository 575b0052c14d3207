#![no_std]
#![no_main]

mod maps;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use edns_common::counter;

#[xdp]
pub fn edns(_ctx: XdpContext) -> u32 {
    maps::count(counter::PACKETS);
    maps::count(counter::PASS_UNPARSED);
    xdp_action::XDP_PASS
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
