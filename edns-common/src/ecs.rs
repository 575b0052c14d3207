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
/// (Aligned: the XDP program copies it whole on its stack, where the verifier
/// refuses misaligned access.)
#[repr(C, align(4))]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{LDNS_KIND_ADDR, LDNS_KIND_GROUP, MAX_POOL};

    fn data(bytes: &[u8]) -> ([u8; ECS_MAX], usize) {
        let mut d = [0; ECS_MAX];
        d[..bytes.len()].copy_from_slice(bytes);
        (d, bytes.len())
    }

    fn wide_ip(ecs: bool, mask_v4: u8, mask_v6: u8) -> WideIpEntry {
        WideIpEntry {
            id: 0,
            mode: 0,
            answer_ttl: 30,
            pool_len: 1,
            persistence_ttl: 60,
            all_down: 0,
            persist_mask_v4: mask_v4,
            persist_mask_v6: mask_v6,
            ecs_max_v4: 24,
            ecs_max_v6: 56,
            flags: if ecs { WIDE_IP_ECS } else { 0 },
            pool_vs: [0; MAX_POOL],
            pool_sac: [0; MAX_POOL],
            name: crate::maps::QnameKey { name: [0; crate::maps::MAX_QNAME_WIRE] },
        }
    }

    const LDNS: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];

    #[test]
    fn subnets_of_both_families_parse_into_the_mapped_form() {
        let (d, n) = data(&[0, 1, 20, 0, 10, 1, 0x30]);
        let s = parse_client_subnet(&d, n).unwrap();
        assert_eq!((s.family, s.source), (1, 20));
        assert_eq!(s.addr, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 0x30, 0]);
        let (d, n) = data(&[0, 2, 56, 0, 0x20, 0x01, 0x0d, 0xb8, 1, 2, 3]);
        let s = parse_client_subnet(&d, n).unwrap();
        assert_eq!((s.family, s.source), (2, 56));
        assert_eq!(&s.addr[..8], &[0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 0]);
        // RFC 7871 §6's refusals: too many or too few bytes, a bit past the
        // prefix, a scope, an unknown family, a prefix past the family.
        for bad in [&[0, 1, 20, 0, 10, 1, 0x30, 0][..], &[0, 1, 20, 0, 10, 1], &[0, 1, 20, 0, 10, 1, 0x38], &[0, 1, 20, 8, 10, 1, 0x30], &[0, 3, 0, 0], &[0, 2, 129, 0]] {
            let (d, n) = data(bad);
            assert_eq!(parse_client_subnet(&d, n), None, "{bad:?}");
        }
    }

    #[test]
    fn the_subnet_replaces_ldns_and_group_only_with_ecs_on_and_a_nonzero_source() {
        let (d, n) = data(&[0, 1, 32, 0, 198, 51, 100, 7]);
        let s = parse_client_subnet(&d, n).unwrap();
        let off = requester(&LDNS, 5, &s, &wide_ip(false, 32, 128));
        assert_eq!((off.addr, off.persist.kind, off.ecs_bits), (LDNS, LDNS_KIND_GROUP, 0));
        let zero = ClientSubnet { family: 1, source: 0, _pad: [0; 2], addr: [0; 16] };
        assert_eq!(requester(&LDNS, 0, &zero, &wide_ip(true, 32, 128)).persist.kind, LDNS_KIND_ADDR);
        // On: cut to the /24 maximum; persistence cut further by a /20 mask.
        let r = requester(&LDNS, 5, &s, &wide_ip(true, 20, 128));
        assert_eq!(&r.addr[12..], &[198, 51, 100, 0]);
        assert_eq!(r.ident, r.addr, "the group no longer applies");
        assert_eq!((r.persist.kind, r.persist.prefix_len, &r.persist.addr[12..]), (LDNS_KIND_SUBNET, 96 + 20, &[198, 51, 96, 0][..]));
        assert_eq!((ecs_scope(&r, true, false), ecs_scope(&r, true, true), ecs_scope(&r, false, false)), (24, 20, 0));
    }

    #[test]
    fn an_ipv6_subnet_that_reads_as_ipv4_mapped_is_cut_as_ipv6() {
        let mut bytes = [0u8; 20];
        bytes[..4].copy_from_slice(&[0, 2, 128, 0]);
        bytes[4..].copy_from_slice(&LDNS);
        let s = parse_client_subnet(&bytes, 20).unwrap();
        let r = requester(&[0x20; 16], 0, &s, &wide_ip(true, 32, 128));
        assert_eq!(r.addr, [0; 16], "cut to the IPv6 maximum, /56");
        assert_eq!(r.ecs_bits, 56);
    }
}
