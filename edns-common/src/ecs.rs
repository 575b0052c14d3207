//! EDNS Client Subnet (RFC 7871) and who a query is answered for: the
//! LDNS, its group (Fig. 5), or the client subnet the LDNS sends for its
//! client. One statement for the kernel and the controller.

use crate::maps::{LdnsKey, WideIpEntry, LDNS_KIND_SUBNET, WIDE_IP_ECS};
use crate::select::{cut_bits, persist_ldns, stripe_key};

/// EDNS option code of ECS.
pub const OPTION_ECS: u16 = 8;
/// Longest ECS option data: family, source and scope prefix lengths, and
/// up to 16 address bytes.
pub const ECS_MAX: usize = 20;
/// ECS address families (IANA address family numbers).
pub const ECS_FAMILY_V4: u8 = 1;
pub const ECS_FAMILY_V6: u8 = 2;

/// A client subnet as a query carried it: `family` 0 when there was none.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClientSubnet {
    pub family: u8,
    /// SOURCE PREFIX-LENGTH.
    pub source: u8,
    pub _pad: [u8; 2],
    /// The address, IPv4 mapped into IPv6; no bits set beyond `source`.
    pub addr: [u8; 16],
}

/// Parses an ECS option's data (the first `len` bytes of `data`, the rest
/// zero) strictly, as RFC 7871 §6 asks of a server: a known family, a
/// source prefix within it, a zero scope (§6: "MUST be set to 0 in
/// queries"), exactly as many address bytes as the source prefix needs, and
/// no address bit set beyond it. `None`: malformed, answered with FORMERR.
#[inline(always)]
pub fn parse_client_subnet(data: &[u8; ECS_MAX], len: usize) -> Option<ClientSubnet> {
    let family = u16::from_be_bytes([data[0], data[1]]);
    let (source, scope) = (data[2], data[3]);
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if len < 4 || source > max || scope != 0 || len != 4 + (source as usize).div_ceil(8) {
        return None;
    }
    let mut addr = [0u8; 16];
    // IPv4 lands in the mapped form's last four bytes.
    let base = if family == 1 {
        addr[10] = 0xff;
        addr[11] = 0xff;
        12
    } else {
        0
    };
    let mut i = 0;
    while i < 16 {
        if 4 + i < ECS_MAX && 4 + i < len {
            let b = data[4 + i];
            // Bits of this byte past the source prefix must be zero.
            let from = 8 * i as u32;
            let keep = if source as u32 >= from + 8 { 0xff } else { 0xffu8 << (8 - (source as u32 - from)) };
            if b & !keep != 0 {
                return None;
            }
            if base + i < 16 {
                addr[base + i] = b;
            }
        }
        i += 1;
    }
    Some(ClientSubnet { family: family as u8, source, _pad: [0; 2], addr })
}

/// Who a query is answered for, read by every selection mode.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requester {
    /// The address topology matches: the LDNS's own, or the client subnet.
    pub addr: [u8; 16],
    /// What the stripe walks read: `addr`, or an LDNS group's id.
    pub ident: [u8; 16],
    /// The requester side of a persistence key.
    pub persist: LdnsKey,
    /// Client-subnet bits the answer was chosen from (0: none): the scope
    /// of an answer from the address itself.
    pub ecs_bits: u8,
    /// Client-subnet bits a persistence record covers (`ecs_bits` cut by
    /// the wide IP's persistence mask): the scope of a persistence answer.
    pub persist_bits: u8,
    pub _pad: [u8; 2],
}

/// The requester of a query from `ldns` (in LDNS group `group`, 0: none)
/// carrying client subnet `ecs` (family 0: none), for wide IP `w`. With ECS
/// on for the wide IP and a non-zero source prefix, the client subnet cut
/// to the wide IP's maximum prefix replaces the LDNS (and its group) for
/// topology, stripe and persistence; otherwise the LDNS answers as without.
#[inline(always)]
pub fn requester(ldns: &[u8; 16], group: u32, ecs: &ClientSubnet, w: &WideIpEntry) -> Requester {
    let mut r = Requester { addr: [0; 16], ident: [0; 16], persist: LdnsKey::addr([0; 16]), ecs_bits: 0, persist_bits: 0, _pad: [0; 2] };
    set_requester(&mut r, ldns, group, ecs, w);
    r
}

/// [`requester`] written in place, field by field (the kernel's stack has
/// no room for a temporary).
#[inline(always)]
pub fn set_requester(r: &mut Requester, ldns: &[u8; 16], group: u32, ecs: &ClientSubnet, w: &WideIpEntry) {
    if w.flags & WIDE_IP_ECS == 0 || ecs.family == 0 || ecs.source == 0 {
        r.addr = *ldns;
        r.ident = stripe_key(ldns, group);
        r.persist = persist_ldns(ldns, w.persist_mask_v4, w.persist_mask_v6, group);
        r.ecs_bits = 0;
        r.persist_bits = 0;
        return;
    }
    let v4 = ecs.family == ECS_FAMILY_V4;
    let (max, mask) = if v4 { (w.ecs_max_v4, w.persist_mask_v4) } else { (w.ecs_max_v6, w.persist_mask_v6) };
    let bits = if ecs.source < max { ecs.source } else { max };
    let persist_bits = if mask < bits { mask } else { bits };
    // Bits of the 128-bit (IPv4-mapped) form.
    let wide = |b: u8| if v4 { 96 + b } else { b };
    r.addr = cut_bits(&ecs.addr, wide(bits) as u32);
    r.ident = r.addr;
    // A key kind of its own: a client subnet is not an LDNS of that prefix.
    r.persist = LdnsKey { kind: LDNS_KIND_SUBNET, prefix_len: wide(persist_bits), _pad: [0; 2], group: 0, addr: cut_bits(&r.addr, wide(persist_bits) as u32) };
    r.ecs_bits = bits;
    r.persist_bits = persist_bits;
}

/// The SCOPE PREFIX-LENGTH of an answer for `r`: the client-subnet bits
/// the answer depended on. 0 without a client subnet, and for an answer
/// the address did not choose (round robin with every VS down); the
/// persistence record's prefix for a persistence answer; else the bits
/// read.
#[inline(always)]
pub fn ecs_scope(r: &Requester, from_address: bool, from_persistence: bool) -> u8 {
    if !from_address {
        0
    } else if from_persistence {
        r.persist_bits
    } else {
        r.ecs_bits
    }
}
