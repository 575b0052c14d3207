//! edns data plane: answers stripe, topology and persistence hits for wide
//! IPs with XDP_TX; everything else goes up to the controller with XDP_PASS.
//!
//! Two programs joined by a tail call, so the verifier checks each alone:
//! `edns` parses (its qname walk yields one verifier state per name length)
//! and `edns_answer` selects and writes the answer, reading the parsed query
//! from per-CPU scratch as one range-bounded state.
#![no_std]
#![no_main]
// Atomic read-modify-write on map values: core's atomic types lack it on BPF.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod maps;
mod parse;
mod reply;
mod select;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;
use edns_common::{counter, unspecified, ListenKey, MAX_POOL, MAX_QNAME_WIRE, SAC_HAS_V6};

use crate::maps::{count, JUMPS, JUMP_ANSWER, LISTEN, SACS, SCRATCH, SETTINGS, WIDE_IPS};
use crate::parse::{DNS_HLEN, ETH_HLEN, IPV6_HLEN, QTYPE_AAAA, UDP_HLEN};

/// Counts the outcome (a `counter` index: how it was answered, or why it
/// went up) and, with `edns run --xdp-log`, logs it.
#[inline(always)]
fn verdict(ctx: &XdpContext, r: Result<u32, u32>) -> u32 {
    let (action, outcome) = match r {
        Ok(how) => (xdp_action::XDP_TX, how),
        Err(reason) if reason >= counter::FIRST_DROP => (xdp_action::XDP_DROP, reason),
        Err(reason) => (xdp_action::XDP_PASS, reason),
    };
    count(outcome);
    if let Some(s) = SETTINGS.get(0) {
        if s.log != 0 {
            debug!(ctx, "edns xdp: action {} outcome counter {}", action, outcome);
        }
    }
    action
}

#[xdp]
pub fn edns(ctx: XdpContext) -> u32 {
    count(counter::PACKETS);
    verdict(&ctx, parse_and_jump(&ctx))
}

#[inline(always)]
fn parse_and_jump(ctx: &XdpContext) -> Result<u32, u32> {
    let settings = SETTINGS.get(0).ok_or(counter::PASS_INTERNAL)?;
    let scratch = unsafe { &mut *SCRATCH.get_ptr_mut(0).ok_or(counter::PASS_INTERNAL)? };
    parse::parse(ctx, settings, scratch)?;
    unsafe { JUMPS.tail_call(ctx, JUMP_ANSWER) };
    Err(counter::PASS_INTERNAL) // the tail call returned: no answer program
}

#[xdp]
pub fn edns_answer(ctx: XdpContext) -> u32 {
    verdict(&ctx, answer(&ctx))
}

#[inline(always)]
fn answer(ctx: &XdpContext) -> Result<u32, u32> {
    let settings = SETTINGS.get(0).ok_or(counter::PASS_INTERNAL)?;
    let scratch = unsafe { &*SCRATCH.get_ptr(0).ok_or(counter::PASS_INTERNAL)? };
    let q = scratch.q;
    // Re-establish for the verifier the bounds `edns` checked.
    if q.l3_off > ETH_HLEN + 8
        || q.l4_off > ETH_HLEN + 8 + IPV6_HLEN
        || q.dns_off > ETH_HLEN + 8 + IPV6_HLEN + UDP_HLEN
        || q.q_end > DNS_HLEN + MAX_QNAME_WIRE + 4
    {
        return Err(counter::PASS_INTERNAL);
    }
    // Only queries to an address edns listens on: never answer for a
    // destination that is someone else's.
    let exact = ListenKey { addr: q.dst, port: q.dport, _pad: 0 };
    let any = ListenKey { addr: unspecified(q.v6), ..exact };
    if unsafe { LISTEN.get(&exact).is_none() && LISTEN.get(&any).is_none() } {
        return Err(counter::PASS_NOT_OURS);
    }
    let w = unsafe { WIDE_IPS.get(&scratch.key) }.ok_or(counter::PASS_UNKNOWN_NAME)?;
    let choice = select::choose(w, &q.ldns)?;
    let pos = choice.pos as usize;
    if pos >= MAX_POOL {
        return Err(counter::PASS_INTERNAL);
    }
    let sac = SACS.get(w.pool_sac[pos]).ok_or(counter::PASS_NO_ADDRESS)?;
    let mut rdata = [0u8; 16];
    if q.qtype == QTYPE_AAAA {
        if sac.flags & SAC_HAS_V6 == 0 {
            return Err(counter::PASS_NO_ADDRESS); // NODATA is the controller's
        }
        rdata = sac.addr6;
    } else {
        rdata[..4].copy_from_slice(&sac.addr4);
    }
    reply::build(ctx, &q, &rdata, w.answer_ttl, settings.edns_payload)?;
    select::commit(&choice);
    Ok(choice.how)
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Passes everything. The floor of the per-packet cost benchmarks, and what
/// test harnesses attach to a veth peer: XDP_TX on a veth delivers only when
/// the peer runs NAPI, which an attached XDP program turns on.
#[xdp]
pub fn edns_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
