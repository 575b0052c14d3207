//! Selection in the kernel: map reads and writes around the shared
//! `edns_common` functions, mirroring `edns-user/src/select.rs`.

use core::mem::MaybeUninit;
use core::intrinsics::{atomic_and, atomic_xadd, AtomicOrdering};

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};
use edns_common::{
    counter, is_timely, ldns_hash, persist_ldns, pool_mask, rendezvous, round_robin_any, stripe, topology_pick, LdnsKey, Mode, PersistKey,
    WideIpEntry, ALL_DOWN_ROUND_ROBIN, MAX_POOL, VS_AVAILABLE, VS_MARKED_UP,
};

use crate::mem;
use crate::parse::Scratch;
use crate::maps::{opaque, PERSISTENCE, RR_COUNTERS, TICK, TOPOLOGY, VS_STATES};

/// Chosen pool position and the counter that says how.
pub struct Choice {
    pub pos: u32,
    pub how: u32,
    /// Persistence hit to refresh once the answer is certain.
    /// (Raw pointers, null for none: an `Option` of one takes twice the
    /// stack, which `edns_answer` has no room for.)
    pub record: *mut edns_common::PersistRecord,
    pub now: u64,
    /// Round-robin counter to advance once the answer is certain: a query
    /// passed up after choosing (AAAA without address6) must leave it alone,
    /// or the controller's own balancing would skip a position.
    pub rr_counter: *mut u64,
}

/// A pool position made opaque and bounded for indexing.
#[inline(always)]
fn settle(pos: u32) -> u32 {
    opaque(pos) & (MAX_POOL as u32 - 1)
}

#[inline(always)]
fn vs_state(vs: u32) -> u32 {
    match VS_STATES.get(vs) {
        Some(s) => *s,
        None => 0,
    }
}

/// Marked-up and available bits of the pool's `pool_len` VSs (a VS state
/// lookup each: walking all MAX_POOL slots cost a third of a stripe answer).
#[inline(always)]
fn masks(w: &WideIpEntry) -> (u32, u32) {
    let (mut marked, mut available) = (0u32, 0u32);
    let mut pos = 0usize;
    let len = w.pool_len as usize;
    while pos < MAX_POOL && pos < len {
        let s = vs_state(w.pool_vs[pos]);
        // Arithmetic, not branches: BPF has no conditional move.
        marked |= (s & VS_MARKED_UP) << pos;
        available |= ((s & VS_AVAILABLE) >> 1) << pos;
        pos += 1;
    }
    let in_pool = pool_mask(w.pool_len);
    (marked & in_pool, available & in_pool)
}

/// No VS up: the patent's round robin over the whole pool, answered here,
/// or any other all-down policy, which the controller answers.
#[inline(always)]
fn all_down(w: &WideIpEntry) -> Result<Choice, u32> {
    if w.all_down != ALL_DOWN_ROUND_ROBIN {
        return Err(counter::PASS_ALL_DOWN);
    }
    let (c, counter) = match RR_COUNTERS.get_ptr_mut(w.id) {
        Some(p) => (unsafe { core::ptr::read_volatile(p) }, p),
        None => (0, core::ptr::null_mut()),
    };
    Ok(Choice {
        pos: settle(round_robin_any(c, w.pool_len)),
        how: counter::ANSWERED_FALLBACK_RR,
        record: core::ptr::null_mut(),
        now: 0,
        rr_counter: counter,
    })
}

#[inline(always)]
fn consistent_choice(w: &WideIpEntry, ldns: &[u8; 16]) -> Result<Choice, u32> {
    let (marked, available) = masks(w);
    match rendezvous(ldns_hash(ldns), &w.pool_vs, marked & available) {
        Some(pos) => Ok(Choice { pos: settle(pos), how: counter::ANSWERED_CONSISTENT, record: core::ptr::null_mut(), now: 0, rr_counter: core::ptr::null_mut() }),
        None => all_down(w),
    }
}

#[inline(always)]
fn stripe_choice(w: &WideIpEntry, ldns: &[u8; 16], how: u32) -> Result<Choice, u32> {
    let (marked, available) = masks(w);
    let s = stripe(ldns, marked, available);
    if s.marked_down != 0 {
        // Fig. 3 block 325: the unavailable candidates stay marked down.
        let mut pos = 0usize;
        while pos < MAX_POOL {
            if s.marked_down & (1 << pos) != 0 {
                if let Some(p) = VS_STATES.get_ptr_mut(w.pool_vs[pos]) {
                    unsafe { atomic_and::<u32, u32, { AtomicOrdering::Relaxed }>(p, !VS_MARKED_UP) };
                }
            }
            pos += 1;
        }
    }
    match s.pos {
        Some(pos) => Ok(Choice { pos: settle(pos), how, record: core::ptr::null_mut(), now: 0, rr_counter: core::ptr::null_mut() }),
        None => all_down(w),
    }
}

/// Chooses the pool position, or `Err(counter)` to pass up: topology
/// matches `ldns` (the source, or the client subnet), the stripe walks read
/// `ident` (the same, or the source's group id): copies of `s.req`'s
/// fields. Persistence keys on the source with its group and the wide IP's
/// masks, or on the key `edns_admit` made from the client subnet.
#[inline(always)]
pub fn choose(w: &WideIpEntry, ldns: &[u8; 16], ident: &[u8; 16], s: &Scratch) -> Result<Choice, u32> {
    let how = match Mode::from_u32(w.mode) {
        Some(Mode::Stripe) => counter::ANSWERED_STRIPE,
        Some(Mode::Topology) => {
            if let Some(sac) = TOPOLOGY.get(mem::host_key(&mut MaybeUninit::uninit(), ldns)) {
                let (marked, available) = masks(w);
                if let Some(pos) = topology_pick(*sac, &w.pool_sac, w.pool_len, marked & available) {
                    return Ok(Choice { pos: settle(pos), how: counter::ANSWERED_TOPOLOGY, record: core::ptr::null_mut(), now: 0, rr_counter: core::ptr::null_mut() });
                }
            }
            counter::ANSWERED_TOPOLOGY // no match or no VS up: the stripe walk below
        }
        Some(Mode::Dynamic) => return persistence_hit(w, ldns, s),
        Some(Mode::StripeConsistent) => return consistent_choice(w, ident),
        None => return Err(counter::PASS_INTERNAL),
    };
    // One inlined stripe walk serves stripe mode and the topology fallback.
    stripe_choice(w, ident, how)
}

#[inline(always)]
fn persistence_hit(w: &WideIpEntry, ldns: &[u8; 16], s: &Scratch) -> Result<Choice, u32> {
    // (The kernel form of `edns_common::requester`'s persistence key: the
    // subnet's was made by `edns_admit`.)
    let ldns = if s.subnet_req != 0 { s.req.persist } else { persist_ldns(ldns, w.persist_mask_v4, w.persist_mask_v6, s.group) };
    let mut key = MaybeUninit::uninit();
    let rec = PERSISTENCE.get_ptr_mut(persist_key(&mut key, w.id, &ldns)).ok_or(counter::PASS_PERSIST_MISS)?;
    let (vs, last) = unsafe { ((*rec).vs, (*rec).last_ns) };
    let now = coarse_now();
    // The wide IP's TTL in force (it may follow a schedule), not the record's.
    if !is_timely(now, last, w.persistence_ttl) || vs_state(vs) & VS_AVAILABLE == 0 {
        return Err(counter::PASS_PERSIST_EXPIRED);
    }
    let mut pos = 0usize;
    while pos < MAX_POOL {
        if pos as u32 >= w.pool_len {
            break;
        }
        if w.pool_vs[pos] == vs {
            return Ok(Choice { pos: pos as u32, how: counter::ANSWERED_PERSISTENCE, record: rec, now, rr_counter: core::ptr::null_mut() });
        }
        pos += 1;
    }
    Err(counter::PASS_PERSIST_EXPIRED)
}

/// CLOCK_MONOTONIC to the tick, as the controller stamps records
/// (`store::now_ns`; the precise boot clock costs ~27 ns): the coarse
/// clock, which moves only at a tick, read through its helper only when
/// jiffies (a load the verifier inlines) moved since this CPU last read
/// it (-3 ns a persistence hit). The tick moves jiffies just before the
/// clock, so a reading taken in between holds for that tick: the time
/// lags by up to two ticks (8 ms at HZ=250), not one. Persistence TTLs
/// are seconds.
#[inline(always)]
fn coarse_now() -> u64 {
    let j = unsafe { bpf_jiffies64() };
    let Some(t) = TICK.get_ptr_mut(0) else { return unsafe { bpf_ktime_get_coarse_ns() } };
    let t = unsafe { &mut *t };
    if t[0] != j {
        *t = [j, unsafe { bpf_ktime_get_coarse_ns() }];
    }
    t[1]
}

/// A [`PersistKey`] written in words into `key` (see [`mem::store_words`]).
#[inline(always)]
fn persist_key<'a>(key: &'a mut MaybeUninit<mem::Aligned<PersistKey>>, wide_ip: u32, l: &LdnsKey) -> &'a PersistKey {
    let [a0, a1, a2, a3] = mem::addr_words(&l.addr);
    mem::store_words(key, [wide_ip, u32::from_le_bytes([l.kind, l.prefix_len, 0, 0]), l.group, a0, a1, a2, a3])
}

/// Commits the choice once the answer is written. Fig. 9 block 925: refresh
/// the time stamp and count the hit; or advance the round-robin counter
/// (another CPU may have read the same value meanwhile: the round robin then
/// repeats a position, as it can in the controller).
#[inline(always)]
pub fn commit(c: &Choice) {
    let rec = c.record;
    if !rec.is_null() {
        unsafe {
            (*rec).last_ns = c.now;
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut (*rec).hits, 1);
        }
    }
    let p = c.rr_counter;
    if !p.is_null() {
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, 1) };
    }
}
