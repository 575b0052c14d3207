//! Query parsing. Everything not fully understood returns `Err(counter)`:
//! the packet goes up with XDP_PASS and the reason is counted.

use aya_ebpf::programs::XdpContext;
use edns_common::{counter, QnameKey, MAX_QNAME_WIRE};

pub const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
pub const DNS_HLEN: usize = 12;
const IPPROTO_UDP: u8 = 17;
pub const QTYPE_A: u16 = 1;
pub const QTYPE_AAAA: u16 = 28;
const QTYPE_OPT: u16 = 41;
const QCLASS_IN: u16 = 1;
/// An OPT RR without options: root name, type, class, TTL, RDLENGTH.
pub const OPT_LEN: usize = 11;

/// Pointer to `T` at `off`, if the packet holds it (a bounds check the verifier sees).
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

#[inline(always)]
pub fn read<const N: usize>(ctx: &XdpContext, off: usize) -> Result<[u8; N], u32> {
    match ptr_at::<[u8; N]>(ctx, off) {
        Some(p) => Ok(unsafe { *p }),
        None => Err(counter::PASS_UNPARSED),
    }
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Zeroes the key's padding with 8-byte stores. A plain `= [0; N]` becomes a
/// call to aya-ebpf's byte-at-a-time memset, a third of the parse cost.
#[inline(always)]
fn zero_key(key: &mut QnameKey) {
    let words = key.name.as_mut_ptr() as *mut u64;
    let mut i = 0;
    while i < MAX_QNAME_WIRE / 8 {
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
}

/// A query the fast path can answer, located in the packet. Handed from the
/// parsing program to the answering one in per-CPU scratch.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Query {
    pub l3_off: usize,
    pub l4_off: usize,
    pub dns_off: usize,
    /// End of the question, relative to `dns_off`.
    pub q_end: usize,
    pub qtype: u16,
    pub v6: bool,
    pub has_opt: bool,
    /// The LDNS: source address, IPv4 mapped into IPv6.
    pub ldns: [u8; 16],
    /// Destination address, IPv4 mapped into IPv6.
    pub dst: [u8; 16],
    pub dport: u16,
    /// One's-complement sum of the question's 16-bit words as received, so
    /// the answer's UDP checksum needs no second pass over the packet.
    pub qsum: u32,
}

/// Per-CPU scratch: the parsed query and its lowercased qname.
#[repr(C)]
pub struct Scratch {
    pub key: QnameKey,
    pub q: Query,
}

/// Parses Ethernet (up to two VLAN tags), IPv4 without options or IPv6
/// without extension headers, UDP to `dns_port`, and a DNS query with one
/// question of class IN, type A or AAAA, and at most an option-less OPT RR.
#[inline(always)]
/// The lowercased qname goes to `key` (per-CPU scratch: it would not fit
/// the 512-byte BPF stack beside everything else).
pub fn parse(ctx: &XdpContext, dns_port: u16, key: &mut QnameKey) -> Result<Query, u32> {
    let mut l3_off = ETH_HLEN;
    let mut proto = be16(read::<2>(ctx, 12).map_err(|_| counter::PASS_NOT_DNS)?);
    let mut tags = 0;
    while tags < 2 && (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
        proto = be16(read::<2>(ctx, l3_off + 2).map_err(|_| counter::PASS_NOT_DNS)?);
        l3_off += 4;
        tags += 1;
    }
    let (ldns, dst): ([u8; 16], [u8; 16]);
    let (v6, l4_off, ip_payload_len) = match proto {
        ETH_P_IPV4 => {
            let h = read::<IPV4_HLEN>(ctx, l3_off).map_err(|_| counter::PASS_NOT_DNS)?;
            if h[9] != IPPROTO_UDP {
                return Err(counter::PASS_NOT_DNS);
            }
            // Version 4 without options; no fragments (MF or an offset).
            if h[0] != 0x45 || be16([h[6], h[7]]) & 0x3fff != 0 {
                return Err(counter::PASS_UNPARSED);
            }
            let total = be16([h[2], h[3]]) as usize;
            if total < IPV4_HLEN {
                return Err(counter::PASS_UNPARSED);
            }
            // IPv4-mapped IPv6, built in a register: a zeroed array would
            // become a memset call.
            let mapped = |a: u32| ((0xffffu128 << 32) | a as u128).to_be_bytes();
            ldns = mapped(u32::from_be_bytes([h[12], h[13], h[14], h[15]]));
            dst = mapped(u32::from_be_bytes([h[16], h[17], h[18], h[19]]));
            (false, l3_off + IPV4_HLEN, total - IPV4_HLEN)
        }
        ETH_P_IPV6 => {
            let h = read::<8>(ctx, l3_off).map_err(|_| counter::PASS_NOT_DNS)?;
            if h[6] != IPPROTO_UDP {
                return Err(counter::PASS_NOT_DNS);
            }
            if h[0] >> 4 != 6 {
                return Err(counter::PASS_UNPARSED);
            }
            ldns = read::<16>(ctx, l3_off + 8).map_err(|_| counter::PASS_NOT_DNS)?;
            dst = read::<16>(ctx, l3_off + 24).map_err(|_| counter::PASS_NOT_DNS)?;
            if ptr_at::<[u8; IPV6_HLEN]>(ctx, l3_off).is_none() {
                return Err(counter::PASS_NOT_DNS);
            }
            (true, l3_off + IPV6_HLEN, be16([h[4], h[5]]) as usize)
        }
        _ => return Err(counter::PASS_NOT_DNS),
    };
    let udp = read::<UDP_HLEN>(ctx, l4_off).map_err(|_| counter::PASS_NOT_DNS)?;
    let dport = be16([udp[2], udp[3]]);
    if dport != dns_port {
        return Err(counter::PASS_NOT_DNS);
    }
    let udp_len = be16([udp[4], udp[5]]) as usize;
    if udp_len != ip_payload_len || udp_len < UDP_HLEN + DNS_HLEN {
        return Err(counter::PASS_UNPARSED);
    }
    let dns_len = udp_len - UDP_HLEN;
    let dns_off = l4_off + UDP_HLEN;
    let h = read::<DNS_HLEN>(ctx, dns_off)?;
    // QR = 0 and opcode QUERY; one question, no answer or authority, at most one additional.
    if h[2] & 0xf8 != 0 || be16([h[4], h[5]]) != 1 || h[6] | h[7] | h[8] | h[9] | h[10] != 0 || h[11] > 1 {
        return Err(counter::PASS_UNPARSED);
    }
    let has_opt = h[11] == 1;

    // QNAME: one pass over at most MAX_QNAME_WIRE bytes, lowercasing into
    // the key. `next` is the offset of the next length byte; lengths over 63
    // (compression pointers, reserved types) are not for the fast path.
    zero_key(key);
    let qname_off = dns_off + DNS_HLEN;
    let mut next = 0usize;
    let mut name_len = 0usize;
    let mut qsum = 0u32;
    let mut i = 0usize;
    while i < MAX_QNAME_WIRE {
        let b = read::<1>(ctx, qname_off + i)?[0];
        // The question starts at an even offset of the UDP segment.
        qsum += (b as u32) << (8 * ((i & 1) ^ 1));
        let out = if i == next {
            if b == 0 {
                name_len = i + 1;
                break;
            }
            if b > 63 {
                return Err(counter::PASS_UNPARSED);
            }
            next = i + b as usize + 1;
            b
        } else if b.is_ascii_uppercase() {
            b | 0x20
        } else {
            b
        };
        unsafe { *key.name.get_unchecked_mut(i) = out };
        i += 1;
    }
    if name_len == 0 {
        return Err(counter::PASS_UNPARSED); // longer than the fast path takes
    }
    let q_end = DNS_HLEN + name_len + 4;
    let tc = read::<4>(ctx, qname_off + name_len)?;
    let hi = 8 * ((name_len & 1) ^ 1) as u32; // shift of an even-offset byte
    qsum += ((tc[0] as u32) << hi) + ((tc[1] as u32) << (8 - hi)) + ((tc[2] as u32) << hi) + ((tc[3] as u32) << (8 - hi));
    let qtype = be16([tc[0], tc[1]]);
    if be16([tc[2], tc[3]]) != QCLASS_IN || (qtype != QTYPE_A && qtype != QTYPE_AAAA) {
        return Err(counter::PASS_UNPARSED);
    }
    if has_opt {
        // Root owner, type OPT, version 0, no options, and nothing after it.
        let o = read::<OPT_LEN>(ctx, dns_off + q_end)?;
        if o[0] != 0 || be16([o[1], o[2]]) != QTYPE_OPT || o[6] != 0 || o[9] | o[10] != 0 || dns_len != q_end + OPT_LEN {
            return Err(counter::PASS_UNPARSED);
        }
    } else if dns_len != q_end {
        return Err(counter::PASS_UNPARSED);
    }
    Ok(Query { l3_off, l4_off, dns_off, q_end, qtype, v6, has_opt, ldns, dst, dport, qsum })
}
