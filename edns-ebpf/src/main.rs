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

mod csum;
mod maps;
mod mem;
mod parse;
mod reply;
mod select;

use aya_ebpf::helpers::bpf_ktime_get_boot_ns;
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;
use aya_ebpf::helpers::generated::bpf_xdp_load_bytes;
use edns_common::{
    counter, ecs_scope, name_slot, NAME_PROBES, parse_client_subnet, set_requester, rrl_allow, rrl_key, server_cookie_valid_with, server_cookie_with, stripe_key,
    RrlBucket, CLIENT_COOKIE_LEN, ECS_MAX, MAX_POOL, MAX_QNAME_WIRE, SAC_HAS_V6, SERVER_COOKIE_LEN, WIDE_IP_ECS,
};

use crate::maps::{count, COOKIE_SECRETS, GROUPS, RRL, JUMPS, JUMP_ADMIT, JUMP_ANSWER, SACS, SCRATCH, NAME_SLOTS, SETTINGS, WIDE_IPS};
use crate::parse::{Scratch, COOKIE_MAX, DNS_HLEN, ETH_HLEN, IPV6_HLEN, MAX_DNS_OFF, MAX_OPTIONS, MAX_OPTIONS_AT, QTYPE_AAAA, UDP_HLEN};

/// The names' first `words` words are the same, compared 8 bytes at a
/// time: enough when one of them is a well-formed name ending within them
/// (zero after its root): the other ends at the same byte.
#[inline(always)]
fn same_name(a: &edns_common::QnameKey, b: &edns_common::QnameKey, words: usize) -> bool {
    let (a, b) = (a.name.as_ptr() as *const u64, b.name.as_ptr() as *const u64);
    let mut diff = 0u64;
    let mut i = 0;
    while i < MAX_QNAME_WIRE / 8 && i < words {
        diff |= unsafe { core::ptr::read_unaligned(a.add(i)) ^ core::ptr::read_unaligned(b.add(i)) };
        i += 1;
    }
    diff == 0
}

/// The wide IP the query's name is, looked for in its NAME_SLOTS probes.
#[inline(always)]
fn find_wide_ip(settings: &edns_common::Settings, scratch: &Scratch) -> Result<u32, u32> {
    // The query's name ends within its words; a stored name is zero after its root.
    let words = (scratch.q.q_end - DNS_HLEN - 4 + 7) / 8;
    let mut probe = 0;
    while probe < NAME_PROBES {
        let slot = name_slot(scratch.name_hash, settings.name_bits, probe);
        let id = match NAME_SLOTS.get(slot) {
            Some(&v) if v != 0 => v - 1,
            _ => break, // an empty slot ends the probes
        };
        let w = WIDE_IPS.get(id).ok_or(counter::PASS_INTERNAL)?;
        if same_name(&w.name, &scratch.key, words) {
            return Ok(id);
        }
        probe += 1;
    }
    Err(counter::PASS_UNKNOWN_NAME)
}

/// With the `stages` feature (the bench's build), returns here when
/// SETTINGS' `stop_at` names this checkpoint; otherwise nothing.
macro_rules! stage {
    ($settings:expr, $n:expr) => {
        #[cfg(feature = "stages")]
        if $settings.stop_at == $n {
            return Err(counter::PASS_INTERNAL);
        }
    };
}
pub(crate) use stage;

/// Counts the outcome (a `counter` index: how it was answered, or why it
/// went up) and, with `edns run --xdp-log` (the settings' `log`), logs it.
#[inline(always)]
fn verdict(ctx: &XdpContext, settings: Option<&edns_common::Settings>, r: Result<u32, u32>) -> u32 {
    let (action, outcome) = match r {
        Ok(how) => (xdp_action::XDP_TX, how),
        Err(reason) if counter::is_drop(reason) => (xdp_action::XDP_DROP, reason),
        Err(reason) => (xdp_action::XDP_PASS, reason),
    };
    count(outcome);
    if settings.is_some_and(|s| s.log != 0) {
        debug!(ctx, "edns xdp: action {} outcome counter {}", action, outcome);
    }
    action
}

#[xdp]
pub fn edns(ctx: XdpContext) -> u32 {
    count(counter::PACKETS);
    let settings = SETTINGS.get(0);
    let r = match settings {
        Some(s) => parse_and_jump(&ctx, s),
        None => Err(counter::PASS_INTERNAL),
    };
    verdict(&ctx, settings, r)
}

#[inline(always)]
fn parse_and_jump(ctx: &XdpContext, settings: &edns_common::Settings) -> Result<u32, u32> {
    let scratch = unsafe { &mut *SCRATCH.get_ptr_mut(0).ok_or(counter::PASS_INTERNAL)? };
    parse::parse(ctx, settings, scratch)?;
    stage!(settings, 5);
    // A name that is not a wide IP goes up here, before the tail call;
    // counted as unparsed when its labels are malformed (`fold_name` read
    // it to its first zero byte without walking them).
    scratch.wide_ip = find_wide_ip(settings, scratch).map_err(|reason| {
        let name_len = scratch.q.q_end.wrapping_sub(DNS_HLEN + 4);
        if reason == counter::PASS_UNKNOWN_NAME && scratch.key.labels_len() != Some(name_len) { counter::PASS_UNPARSED } else { reason }
    })?;
    // Only queries to an address edns listens on: never answer for a
    // destination that is someone else's. (Here, not in `edns_answer`,
    // whose stack is full.)
    if !parse::is_listen_destination(settings, &scratch.dst, scratch.dport, scratch.q.v6) {
        return Err(counter::PASS_NOT_OURS);
    }
    stage!(settings, 6);
    // The source's LDNS group, for the stripe key and the persistence key.
    let group = if settings.groups != 0 { GROUPS.get(mem::host_key(&mut core::mem::MaybeUninit::uninit(), &scratch.q.ldns)).copied().unwrap_or(0) } else { 0 };
    scratch.group = group;
    // The requester as the source makes it; a client subnet may replace it
    // (`edns_admit`).
    scratch.req.addr = scratch.q.ldns;
    scratch.req.ident = stripe_key(&scratch.q.ldns, group);
    stage!(settings, 7);
    // A constant index at each call site: the JIT makes those direct jumps,
    // where one shared site would be an indirect jump through a retpoline.
    // (The barrier after each keeps LLVM from merging the two.)
    if scratch.opts.len != 0 || settings.rrl_interval_ns != 0 {
        unsafe { JUMPS.tail_call(ctx, JUMP_ADMIT) };
        core::hint::black_box(());
    } else {
        unsafe { JUMPS.tail_call(ctx, JUMP_ANSWER) };
        core::hint::black_box(());
    }
    Err(counter::PASS_INTERNAL) // the tail call returned: no such program
}

/// Between parsing and answering, for a query with EDNS options or when
/// rate limiting is on: the options (NSID, COOKIE, ECS) walked and the
/// checksum finished over them, the client subnet parsed, the fresh server
/// cookie and the verdict on the received one, then the rate limit (drop,
/// or answer TC=1), into scratch. A program of its own for the stack and
/// the verifier: SipHash and the bucket beside the answer's selection and
/// rewrite would not fit one 512-byte frame.
#[xdp]
pub fn edns_admit(ctx: XdpContext) -> u32 {
    let settings = SETTINGS.get(0);
    let r = match (SCRATCH.get_ptr_mut(0), settings) {
        (Some(s), Some(settings)) => admit(&ctx, unsafe { &mut *s }, settings),
        _ => Err(counter::PASS_INTERNAL),
    };
    if let Err(reason) = r {
        return verdict(&ctx, settings, Err(reason));
    }
    unsafe { JUMPS.tail_call(&ctx, JUMP_ANSWER) };
    verdict(&ctx, settings, Err(counter::PASS_INTERNAL))
}

#[xdp]
pub fn edns_answer(ctx: XdpContext) -> u32 {
    let settings = SETTINGS.get(0);
    let r = match settings {
        Some(s) => answer(&ctx, s),
        None => Err(counter::PASS_INTERNAL),
    };
    verdict(&ctx, settings, r)
}

#[inline(always)]
fn answer(ctx: &XdpContext, settings: &edns_common::Settings) -> Result<u32, u32> {
    stage!(settings, 8);
    let scratch = unsafe { &mut *SCRATCH.get_ptr_mut(0).ok_or(counter::PASS_INTERNAL)? };
    let q = scratch.q;
    // Re-establish for the verifier the bounds `edns` checked.
    if q.l3_off > ETH_HLEN + 8
        || q.l4_off > ETH_HLEN + 8 + IPV6_HLEN
        || q.dns_off > ETH_HLEN + 8 + IPV6_HLEN + UDP_HLEN
        || q.q_end > DNS_HLEN + MAX_QNAME_WIRE + 4
    {
        return Err(counter::PASS_INTERNAL);
    }
    if scratch.rrl_slip != 0 {
        // Rate limited, this one slips: TC=1 and no data, whatever the name.
        let Scratch { cookie, fresh, prefix, cookie_verdict, .. } = scratch;
        let cookie = if *cookie_verdict != 0 { Some((&*cookie, &*fresh)) } else { None };
        reply::build(ctx, &q, None, 0, settings, cookie, None, prefix)?;
        return Ok(counter::ANSWERED_RRL_SLIP);
    }
    // The name was checked against the entry's by `edns`.
    let w = WIDE_IPS.get(scratch.wide_ip).ok_or(counter::PASS_UNKNOWN_NAME)?;
    stage!(settings, 9);
    // A copy of what the stripe walks read many times: one value on the
    // stack keeps the verifier's states few.
    let (addr, ident) = (scratch.req.addr, scratch.req.ident);
    let choice = select::choose(w, &addr, &ident, scratch)?;
    let pos = choice.pos as usize;
    if pos >= MAX_POOL {
        return Err(counter::PASS_INTERNAL);
    }
    stage!(settings, 10);
    let sac = SACS.get(w.pool_sac[pos]).ok_or(counter::PASS_NO_ADDRESS)?;
    if q.qtype == QTYPE_AAAA && sac.flags & SAC_HAS_V6 == 0 {
        return Err(counter::PASS_NO_ADDRESS); // NODATA is the controller's
    }
    let judged = scratch.cookie_verdict;
    // The client subnet echoed with the scope the answer read (RFC 7871).
    let echo = w.flags & WIDE_IP_ECS != 0 && scratch.subnet.family != 0;
    if echo {
        let how = choice.how;
        scratch.ecs_raw[3] =
            if scratch.subnet_req != 0 { ecs_scope(&scratch.req, how != counter::ANSWERED_FALLBACK_RR, how == counter::ANSWERED_PERSISTENCE) } else { 0 };
    }
    let Scratch { cookie, fresh, prefix, ecs_raw, .. } = scratch;
    let cookie = if judged != 0 { Some((&*cookie, &*fresh)) } else { None };
    let subnet = if echo { Some((&*ecs_raw, q.ecs_len)) } else { None };
    reply::build(ctx, &q, Some(sac), w.answer_ttl, settings, cookie, subnet, prefix)?;
    if judged != 0 {
        count(judged);
    }
    if echo {
        count(counter::ECS_ANSWERED);
    }
    select::commit(&choice);
    Ok(choice.how)
}

/// The admission of `edns_admit`: options, cookie, then rate limit.
#[inline(always)]
fn admit(ctx: &XdpContext, scratch: &mut Scratch, settings: &edns_common::Settings) -> Result<(), u32> {
    if scratch.opts.len != 0 {
        let mut sum = parse::options(ctx, &mut scratch.q, &mut scratch.opts)?;
        sum += read_cookie(ctx, scratch)?;
        sum += read_subnet(ctx, scratch)?;
        if scratch.pending_sum != 0 && !csum::verifies(scratch.pending_sum + sum) {
            return Err(counter::DROP_BAD_CHECKSUM);
        }
        if scratch.q.ecs_len != 0 {
            scratch.subnet = parse_client_subnet(&scratch.ecs_raw, scratch.q.ecs_len).ok_or(counter::PASS_BAD_ECS)?;
            subnet_requester(scratch);
        }
    }
    cookie(scratch)?;
    scratch.rrl_slip = rate_limit(settings, &scratch.q.ldns, scratch.cookie_verdict)? as u32;
    Ok(())
}

/// Response rate limiting per source prefix (GCRA in `edns-common`):
/// `Ok(false)` answers, `Ok(true)` answers with TC=1 only (every
/// `rrl_slip`-th limited query, so a real resolver retries over TCP),
/// `Err` drops. A query with our valid server cookie is not limited: its
/// source is not spoofed.
#[inline(always)]
fn rate_limit(settings: &edns_common::Settings, ldns: &[u8; 16], cookie: u32) -> Result<bool, u32> {
    if settings.rrl_interval_ns == 0 || cookie == counter::COOKIE_VALID {
        return Ok(false);
    }
    let key = rrl_key(ldns, settings.rrl_v4_prefix, settings.rrl_v6_prefix);
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let Some(b) = RRL.get_ptr_mut(&key) else {
        // A new prefix: its first response, and the bucket starts from it.
        let fresh = RrlBucket { tat_ns: now + settings.rrl_interval_ns, limited: 0 };
        let _ = RRL.insert(&key, &fresh, 0);
        return Ok(false);
    };
    let b = unsafe { &mut *b };
    match rrl_allow(b.tat_ns, now, settings.rrl_interval_ns, settings.rrl_tolerance_ns) {
        Some(tat) => {
            b.tat_ns = tat;
            Ok(false)
        }
        None => {
            b.limited += 1;
            if settings.rrl_slip != 0 && b.limited % settings.rrl_slip as u64 == 0 {
                Ok(true)
            } else {
                Err(counter::DROP_RATE_LIMITED)
            }
        }
    }
}

/// With a client subnet and ECS on for the query's wide IP: the requester
/// it makes, into scratch for `edns_answer`.
#[inline(always)]
fn subnet_requester(scratch: &mut Scratch) {
    let Some(w) = WIDE_IPS.get(scratch.wide_ip) else { return };
    if w.flags & WIDE_IP_ECS != 0 && scratch.subnet.source != 0 {
        set_requester(&mut scratch.req, &scratch.q.ldns, scratch.group, &scratch.subnet, w);
        scratch.subnet_req = 1;
    }
}

/// Copies the cookie's bytes (if any) into scratch; returns their sum for
/// the UDP checksum.
#[inline(always)]
fn read_cookie(ctx: &XdpContext, scratch: &mut Scratch) -> Result<u32, u32> {
    let q = &scratch.q;
    if q.cookie_len == 0 {
        return Ok(0);
    }
    // Re-establish for the verifier the bounds `edns` checked.
    let at = scratch.opts.cookie_at;
    if q.dns_off > MAX_DNS_OFF || at > MAX_OPTIONS_AT + MAX_OPTIONS {
        return Err(counter::PASS_INTERNAL);
    }
    let off = q.dns_off + at;
    let c = parse::read::<CLIENT_COOKIE_LEN>(ctx, off)?;
    let mut sum = csum::sum(&c, at);
    scratch.cookie[..CLIENT_COOKIE_LEN].copy_from_slice(&c);
    if q.cookie_len == COOKIE_MAX {
        let sc = parse::read::<SERVER_COOKIE_LEN>(ctx, off + CLIENT_COOKIE_LEN)?;
        sum += csum::sum(&sc, at); // 8 bytes on: same parity
        scratch.cookie[CLIENT_COOKIE_LEN..].copy_from_slice(&sc);
    }
    Ok(sum)
}

/// Copies the ECS option's bytes (if any) into scratch, zero after them
/// (the parser and the echo's checksum read all `ECS_MAX`); returns their
/// sum for the UDP checksum.
#[inline(always)]
fn read_subnet(ctx: &XdpContext, scratch: &mut Scratch) -> Result<u32, u32> {
    let len = scratch.q.ecs_len;
    if len == 0 {
        return Ok(0);
    }
    let at = scratch.opts.ecs_at;
    if scratch.q.dns_off > MAX_DNS_OFF || at > MAX_OPTIONS_AT + MAX_OPTIONS || len > ECS_MAX {
        return Err(counter::PASS_INTERNAL);
    }
    let raw = &mut scratch.ecs_raw;
    let mut i = 0;
    while i < ECS_MAX {
        raw[i] = 0;
        i += 1;
    }
    let dst = raw.as_mut_ptr() as *mut core::ffi::c_void;
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, (scratch.q.dns_off + at) as u32, dst, len as u32) } != 0 {
        return Err(counter::PASS_UNPARSED);
    }
    Ok(csum::sum(raw, at))
}

/// For a query with a COOKIE option (and cookies on): a fresh server
/// cookie into `scratch.fresh`, and the counter judging the one received.
#[inline(always)]
fn cookie(scratch: &mut Scratch) -> Result<(), u32> {
    scratch.cookie_verdict = 0;
    if !scratch.q.has_opt || scratch.q.cookie_len == 0 {
        return Ok(());
    }
    let s = COOKIE_SECRETS.get(0).ok_or(counter::PASS_INTERNAL)?;
    if s.enabled == 0 {
        return Ok(()); // cookies off: answered without one, as the controller does
    }
    // Wall time is positive: unsigned arithmetic (BPF has no signed division).
    let now = (unsafe { bpf_ktime_get_boot_ns() }.wrapping_add(s.wall_offset_ns as u64) / 1_000_000_000) as u32;
    // References into the scratch, never copies: the stack is small.
    let Scratch { q, cookie, fresh, msg, .. } = scratch;
    let (client, server) = cookie.split_at(CLIENT_COOKIE_LEN);
    let client: &[u8; 8] = client.try_into().map_err(|_| counter::PASS_INTERNAL)?;
    let server: &[u8; 16] = server.try_into().map_err(|_| counter::PASS_INTERNAL)?;
    *fresh = server_cookie_with(&s.current, client, &q.ldns, now, msg);
    scratch.cookie_verdict = if q.cookie_len == CLIENT_COOKIE_LEN {
        counter::COOKIE_CLIENT_ONLY
    } else if server_cookie_valid_with(&s.current, client, server, &q.ldns, now, msg)
        || (s.has_previous != 0 && server_cookie_valid_with(&s.previous, client, server, &q.ldns, now, msg))
    {
        counter::COOKIE_VALID
    } else {
        counter::COOKIE_BAD
    };
    Ok(())
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
