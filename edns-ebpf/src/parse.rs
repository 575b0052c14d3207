//! Query parsing. Everything not fully understood returns `Err(counter)`:
//! the packet goes up with XDP_PASS and the reason is counted.

use aya_ebpf::programs::XdpContext;
use network_types::eth::EthHdr;
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};
use network_types::udp::UdpHdr;
use network_types::vlan::VlanHdr;
use edns_common::{
    counter, is_group_destination, is_martian_source, lower_word, unspecified, name_hash_word, ClientSubnet, ListenKey, QnameKey, Requester, Settings, CLIENT_COOKIE_LEN, ECS_MAX, MAX_INLINE_LISTEN, NAME_HASH_BASIS,
    MAX_QNAME_WIRE, OPTION_COOKIE, OPTION_ECS, OPTION_NSID, SERVER_COOKIE_LEN,
};

use crate::csum;
use crate::mem;
use crate::maps::{opaque, LISTEN};

pub const ETH_HLEN: usize = EthHdr::LEN;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
pub const IPV4_HLEN: usize = Ipv4Hdr::LEN;
pub const IPV6_HLEN: usize = Ipv6Hdr::LEN;
pub const UDP_HLEN: usize = UdpHdr::LEN;
pub const DNS_HLEN: usize = 12;
const IPPROTO_UDP: u8 = 17;
pub const QTYPE_A: u16 = 1;
pub const QTYPE_AAAA: u16 = 28;
const QTYPE_OPT: u16 = 41;
const QCLASS_IN: u16 = 1;
/// An OPT RR without options: root name, type, class, TTL, RDLENGTH.
pub const OPT_LEN: usize = 11;
/// Longest part of a query frame up to the end of its question.
pub const MAX_PREFIX: usize = ETH_HLEN + 8 + IPV6_HLEN + UDP_HLEN + DNS_HLEN + MAX_QNAME_WIRE + 4;
/// A COOKIE option's header (code, length).
pub const OPTION_HLEN: usize = 4;
/// Client cookie and a version-1 server cookie.
pub const COOKIE_MAX: usize = CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN;
/// Longest OPT RDATA the fast path reads: NSID, COOKIE and ECS, each once.
pub const MAX_OPTIONS: usize = 3 * OPTION_HLEN + COOKIE_MAX + ECS_MAX;
/// Where the OPT's options may start, from the DNS message start.
pub const MAX_OPTIONS_AT: usize = DNS_HLEN + MAX_QNAME_WIRE + 4 + OPT_LEN;
/// Largest offset of the DNS message in a frame (two VLAN tags, IPv6).
pub const MAX_DNS_OFF: usize = ETH_HLEN + 8 + IPV6_HLEN + UDP_HLEN;

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

/// A header of type `T` at `off`, in place (no copy onto the stack).
#[inline(always)]
fn header<'a, T>(ctx: &XdpContext, off: usize) -> Result<&'a T, u32> {
    ptr_at::<T>(ctx, off).map(|p| unsafe { &*p }).ok_or(counter::PASS_NOT_DNS)
}

/// A header's bytes, for checksum sums.
#[inline(always)]
pub fn bytes_of<T, const N: usize>(h: &T) -> &[u8; N] {
    const { assert!(core::mem::size_of::<T>() == N) };
    unsafe { &*(h as *const T as *const [u8; N]) }
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
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
    /// The OPT's DO bit (RFC 3225), copied into the answer's OPT.
    pub dnssec_ok: bool,
    /// COOKIE option data: 0 (none), 8 (client cookie) or 24 (client and
    /// a 16-byte server cookie) bytes of [`Scratch::cookie`].
    pub cookie_len: usize,
    /// The query asked for the NSID (an empty NSID option).
    pub nsid: bool,
    /// ECS option data: its length (0: none).
    pub ecs_len: usize,
    /// The LDNS: source address, IPv4 mapped into IPv6.
    pub ldns: [u8; 16],
    /// One's-complement sum of the question's 16-bit words as received, so
    /// the answer's UDP checksum needs no second pass over the packet.
    pub qsum: u32,
    /// Sum of the source and destination addresses (the UDP pseudo
    /// header's, either way round).
    pub addr_sum: u32,
}

/// Where the OPT's options lie, offsets from the DNS message start; kept
/// out of [`Query`], which `edns_answer` copies onto its full stack.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Options {
    /// The options: where they start and their length (0: none), walked by `edns_admit`.
    pub at: usize,
    pub len: usize,
    /// Where the COOKIE's and the ECS option's data start.
    pub cookie_at: usize,
    pub ecs_at: usize,
}

/// Per-CPU scratch: the parsed query, its lowercased qname (its words
/// only: see `fold_name`), its cookie,
/// and room to build a server cookie (none of it fits the BPF stack).
#[repr(C)]
pub struct Scratch {
    pub key: QnameKey,
    /// The key's hash ([`edns_common::QnameKey::name_hash`]).
    pub name_hash: u64,
    /// The wide IP it names (set by `edns` once the names compared equal).
    pub wide_ip: u32,
    pub q: Query,
    pub opts: Options,
    /// Destination address, IPv4 mapped into IPv6.
    pub dst: [u8; 16],
    pub dport: u16,
    pub cookie: [u8; COOKIE_MAX],
    pub fresh: [u8; SERVER_COOKIE_LEN],
    pub msg: [u8; 32],
    /// Non-zero: rate limited, answer with TC=1 only (set by `edns_admit`).
    pub rrl_slip: u32,
    /// What `edns_admit` judged the query's cookie (a `counter`), 0 when
    /// there is no cookie to answer with.
    pub cookie_verdict: u32,
    /// With a cookie: the UDP checksum's sum without the cookie's bytes,
    /// for `edns_admit` to finish (0: no checksum to verify).
    pub pending_sum: u32,
    /// Room to move a frame's headers and question when it grows at the head.
    pub prefix: [u8; MAX_PREFIX],
    /// The LDNS group of the source (0: none).
    pub group: u32,
    /// The query's ECS option data as received (zero after `ecs_len`),
    /// its scope byte rewritten for the answer's echo.
    pub ecs_raw: [u8; ECS_MAX],
    /// The client subnet it holds (family 0: none).
    pub subnet: ClientSubnet,
    /// Non-zero when `req` holds the requester the client subnet makes
    /// for the query's wide IP (set by `edns_admit`; `edns_answer`'s
    /// stack has no room to compute it).
    pub subnet_req: u32,
    /// Who the answer is for: `addr` and `ident` from the source (set by
    /// `edns`), all of it from a client subnet when `subnet_req`.
    pub req: Requester,
}

/// The two 8-byte halves of an address, for comparing in two steps.
#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    let (h, l) = a.split_at(8);
    (u64::from_ne_bytes(h.try_into().unwrap_or([0; 8])), u64::from_ne_bytes(l.try_into().unwrap_or([0; 8])))
}

/// `addr`:`port` is an address edns listens on: compared with the
/// settings' inline list (all on the DNS port) when it holds them all,
/// else looked up in LISTEN (a wildcard listen, where LISTEN follows the
/// interface). `addr` is read in place (per-CPU scratch): a copy into a
/// stack key is made only for the map.
#[inline(always)]
pub fn is_own(settings: &Settings, addr: &[u8; 16], port: u16) -> bool {
    let n = settings.listen_len as usize;
    if n == 0 {
        return is_in_listen(addr, port);
    }
    let (a0, a1) = halves(addr);
    let mut hit = false;
    let mut i = 0;
    while i < MAX_INLINE_LISTEN {
        let (b0, b1) = halves(&settings.listen[i]);
        hit |= i < n && a0 == b0 && a1 == b1;
        i += 1;
    }
    hit
}

/// LISTEN holds `addr`:`port` (its key written in words: see [`mem::store_words`]).
#[inline(always)]
fn is_in_listen(addr: &[u8; 16], port: u16) -> bool {
    let [a0, a1, a2, a3] = mem::addr_words(addr);
    let mut key = core::mem::MaybeUninit::uninit();
    unsafe { LISTEN.get(mem::store_words::<ListenKey, 5>(&mut key, [a0, a1, a2, a3, port as u32])).is_some() }
}

/// `dst`:`port` is an address edns listens on, or a wildcard listen (only
/// ever in LISTEN, never in the inline list) takes it.
#[inline(always)]
pub fn is_listen_destination(settings: &Settings, dst: &[u8; 16], port: u16, v6: bool) -> bool {
    is_own(settings, dst, port) || (settings.listen_len == 0 && is_in_listen(&unspecified(v6), port))
}

/// A MAC address as one number (a 4- and a 2-byte load, not six).
#[inline(always)]
fn mac48(m: &[u8; 6]) -> u64 {
    u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as u64 | (u16::from_ne_bytes([m[4], m[5]]) as u64) << 32
}

/// The ingress policy the kernel would apply, for a UDP frame to our port:
/// never answer a source no resolver can have, a frame not addressed to
/// us, or a corrupt one. Each is dropped (a flood of them costs the stack
/// nothing) and counted by reason.
#[inline(always)]
fn ingress(ctx: &XdpContext, settings: &Settings, ldns: &[u8; 16], dst: &[u8; 16], v6: bool, sport: u16) -> Result<(), u32> {
    let eth = header::<EthHdr>(ctx, 0)?;
    // A group source MAC or port 0 is spoofed; our own address as source too.
    if eth.src_addr[0] & 1 != 0 || sport == 0 || is_martian_source(ldns, v6) || is_own(settings, ldns, settings.dns_port) {
        return Err(counter::DROP_MARTIAN_SOURCE);
    }
    let other_mac = settings.check_mac != 0 && mac48(&eth.dst_addr) != mac48(&settings.mac);
    if eth.dst_addr[0] & 1 != 0 || other_mac || is_group_destination(dst) {
        return Err(counter::DROP_NOT_FOR_US);
    }
    Ok(())
}

/// Walks the OPT's options (for `edns_admit`, whose single state per
/// option is cheap to verify; in `edns` every qname length is a state of
/// its own): an empty NSID, a COOKIE of 8 or 24 bytes and an ECS of up to
/// 20, each at most once, in any order. Anything else goes up. Records
/// where each lies and returns the sum of the option headers.
#[inline(always)]
pub fn options(ctx: &XdpContext, q: &mut Query, o: &mut Options) -> Result<u32, u32> {
    // Re-establish for the verifier the bounds `edns` checked.
    if q.dns_off > MAX_DNS_OFF || o.at > MAX_OPTIONS_AT || o.len > MAX_OPTIONS {
        return Err(counter::PASS_INTERNAL);
    }
    let end = o.at + o.len;
    let mut at = o.at;
    let mut sum = 0u32;
    let mut n = 0;
    while n < 3 && at < end {
        let h = read::<OPTION_HLEN>(ctx, q.dns_off + at)?;
        sum += csum::sum(&h, at);
        let (code, len) = (be16([h[0], h[1]]), be16([h[2], h[3]]) as usize);
        let data = at + OPTION_HLEN;
        if data + len > end {
            return Err(counter::PASS_UNPARSED);
        }
        if code == OPTION_NSID && len == 0 && !q.nsid {
            q.nsid = true;
        } else if code == OPTION_COOKIE && (len == CLIENT_COOKIE_LEN || len == COOKIE_MAX) && q.cookie_len == 0 {
            q.cookie_len = len;
            o.cookie_at = data;
        } else if code == OPTION_ECS && len <= ECS_MAX && q.ecs_len == 0 && len != 0 {
            q.ecs_len = len;
            o.ecs_at = data;
        } else {
            return Err(counter::PASS_UNPARSED); // another option, or one the controller judges
        }
        at = data + len;
        n += 1;
    }
    if at != end {
        return Err(counter::PASS_UNPARSED);
    }
    Ok(sum)
}

/// The UDP checksum's sum over the pseudo header and the UDP and DNS
/// headers, to which the question's and OPT's sums taken while parsing are
/// added. `None`: no checksum to verify (zero over IPv4); zero over IPv6
/// is refused (RFC 8200 §8.1).
#[inline(always)]
fn udp_partial_sum(addr_sum: u32, v6: bool, udp: &[u8; UDP_HLEN], dns: &[u8; DNS_HLEN]) -> Result<Option<u32>, u32> {
    if udp[6] | udp[7] == 0 {
        return if v6 { Err(counter::DROP_BAD_CHECKSUM) } else { Ok(None) };
    }
    let pseudo = addr_sum + IPPROTO_UDP as u32 + be16([udp[4], udp[5]]) as u32;
    Ok(Some(pseudo + csum::sum(udp, 0) + csum::sum(dns, UDP_HLEN)))
}

/// 8 bytes of the packet from `off`, little-endian; where the frame ends
/// within them (after the type and class, or a question cut short), the
/// bytes it has and zeros.
#[inline(always)]
fn packet_word(ctx: &XdpContext, off: usize) -> u64 {
    if let Ok(b) = read::<8>(ctx, off) {
        return u64::from_le_bytes(b);
    }
    let mut w = 0u64;
    let mut k = 0;
    while k < 8 {
        let Ok(b) = read::<1>(ctx, off + k) else { break };
        w |= (b[0] as u64) << (8 * k);
        k += 1;
    }
    w
}

/// Reads the name 8 bytes at a time into `key`, lowercased, up to its
/// first zero byte (the rest of that word zeroed; the words after it keep
/// what a longer name left: only the name's words are ever read); returns the name's length to that
/// byte, the sum of its 16-bit words as received (the question starts at
/// an even offset of the UDP segment) and the name hash of the key.
///
/// The labels are not walked: a name is answered here only when the key
/// equals a wide IP's name, which is a well-formed name ending at its only
/// zero byte (its root), so an equal key has the same labels. Anything
/// else (a zero within a label, a compression pointer, a length over 63)
/// matches no wide IP and goes up as an unknown name.
#[inline(always)]
fn fold_name(ctx: &XdpContext, qname_off: usize, key: &mut QnameKey) -> Result<(usize, u32, u64), u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let words = key.name.as_mut_ptr() as *mut u64;
    let mut le = 0u64;
    let mut hash = NAME_HASH_BASIS;
    let mut i = 0;
    while i < MAX_QNAME_WIRE / 8 {
        let mut w = packet_word(ctx, qname_off + i * 8);
        // The lowest byte flagged is the first zero (borrows flag only above it).
        let zero = w.wrapping_sub(ONES) & !w & (0x80 * ONES);
        let last = zero != 0;
        let k = if last { zero.trailing_zeros() as usize / 8 } else { 7 };
        w &= u64::MAX >> (56 - 8 * k);
        le += csum::lanes(w);
        let lower = lower_word(w);
        unsafe { core::ptr::write_unaligned(words.add(i), lower) };
        hash = name_hash_word(hash, lower);
        if last {
            return Ok((i * 8 + k + 1, csum::finish(le, 0), hash));
        }
        i += 1;
    }
    Err(counter::PASS_UNPARSED) // longer than the key
}

/// Parses Ethernet (up to two VLAN tags), IPv4 without options or IPv6
/// without extension headers, UDP to `dns_port`, and a DNS query with one
/// question of class IN, type A or AAAA, and at most an option-less OPT RR.
/// Frames to our port that fail the ingress policy or a checksum are
/// dropped (`DROP_*`).
/// The lowercased qname goes to `key` (per-CPU scratch: it would not fit
/// the 512-byte BPF stack beside everything else).
#[inline(always)]
pub fn parse(ctx: &XdpContext, settings: &Settings, s: &mut Scratch) -> Result<(), u32> {
    let dns_port = settings.dns_port;
    // Addresses and results go straight into the per-CPU scratch: the BPF
    // stack (512 bytes) holds only the headers being read.
    let key = &mut s.key;
    let q = &mut s.q;
    let dst = &mut s.dst;
    q.cookie_len = 0;
    q.nsid = false;
    q.ecs_len = 0;
    // (Where the options lie is read only when `len` is not 0; four zero
    // stores would become a byte-at-a-time memset call.)
    s.opts.len = 0;
    s.subnet.family = 0;
    s.subnet_req = 0;
    s.cookie_verdict = 0;
    s.rrl_slip = 0;
    let mut l3_off = ETH_HLEN;
    let mut proto = u16::from_be(header::<EthHdr>(ctx, 0)?.ether_type);
    let mut tags = 0;
    while tags < 2 && (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
        proto = u16::from_be(header::<VlanHdr>(ctx, l3_off)?.ether_type);
        l3_off += VlanHdr::LEN;
        tags += 1;
    }
    // IPv4 header sum (0xffff when it verifies); IPv6 has none.
    let mut ip_sum = 0xffffu32;
    // The addresses' sum, for the UDP pseudo header here and in the answer.
    let addr_sum;
    let (v6, l4_off, ip_payload_len) = match proto {
        ETH_P_IPV4 => {
            let ip = header::<Ipv4Hdr>(ctx, l3_off)?;
            if ip.proto != IPPROTO_UDP {
                return Err(counter::PASS_NOT_DNS);
            }
            // Version 4 without options; no fragments (MF or an offset).
            if ip.vihl != 0x45 || be16(ip.frags) & 0x3fff != 0 {
                return Err(counter::PASS_UNPARSED);
            }
            let total = ip.tot_len() as usize;
            if total < IPV4_HLEN {
                return Err(counter::PASS_UNPARSED);
            }
            let h = bytes_of::<_, IPV4_HLEN>(ip);
            ip_sum = csum::sum(h, 0);
            // Source and destination, side by side from byte 12.
            addr_sum = csum::sum(h.last_chunk::<8>().ok_or(counter::PASS_INTERNAL)?, 0);
            // IPv4-mapped IPv6, built in a register: a zeroed array would
            // become a memset call.
            let mapped = |a: [u8; 4]| ((0xffffu128 << 32) | u32::from_be_bytes(a) as u128).to_be_bytes();
            q.ldns = mapped(ip.src_addr);
            *dst = mapped(ip.dst_addr);
            (false, l3_off + IPV4_HLEN, total - IPV4_HLEN)
        }
        ETH_P_IPV6 => {
            let ip = header::<Ipv6Hdr>(ctx, l3_off)?;
            if ip.next_hdr != IPPROTO_UDP {
                return Err(counter::PASS_NOT_DNS);
            }
            if ip.vcf[0] >> 4 != 6 {
                return Err(counter::PASS_UNPARSED);
            }
            mem::copy(&mut q.ldns, &ip.src_addr);
            mem::copy(dst, &ip.dst_addr);
            // Source and destination, side by side from byte 8.
            addr_sum = csum::sum(bytes_of::<_, IPV6_HLEN>(ip).last_chunk::<32>().ok_or(counter::PASS_INTERNAL)?, 0);
            (true, l3_off + IPV6_HLEN, ip.payload_len() as usize)
        }
        _ => return Err(counter::PASS_NOT_DNS),
    };
    crate::stage!(settings, 1);
    let udp_hdr = header::<UdpHdr>(ctx, l4_off)?;
    let dport = udp_hdr.dst_port();
    if dport != dns_port {
        return Err(counter::PASS_NOT_DNS);
    }
    ingress(ctx, settings, &q.ldns, dst, v6, udp_hdr.src_port())?;
    if !csum::verifies(ip_sum) {
        return Err(counter::DROP_BAD_CHECKSUM);
    }
    crate::stage!(settings, 2);
    let udp_len = udp_hdr.len() as usize;
    let udp = bytes_of::<_, UDP_HLEN>(udp_hdr);
    if udp_len != ip_payload_len || udp_len < UDP_HLEN + DNS_HLEN {
        return Err(counter::PASS_UNPARSED);
    }
    let dns_len = udp_len - UDP_HLEN;
    let dns_off = l4_off + UDP_HLEN;
    let h = unsafe { &*ptr_at::<[u8; DNS_HLEN]>(ctx, dns_off).ok_or(counter::PASS_UNPARSED)? };
    // QR = 0 and opcode QUERY; one question, no answer or authority, at most one additional.
    if h[2] & 0xf8 != 0 || be16([h[4], h[5]]) != 1 || h[6] | h[7] | h[8] | h[9] | h[10] != 0 || h[11] > 1 {
        return Err(counter::PASS_UNPARSED);
    }
    let has_opt = h[11] == 1;
    // Summed now: a pointer into the packet kept across the name walk would
    // carry a different range on each of its paths, and the verifier would
    // walk everything after it once per name length.
    let partial = udp_partial_sum(addr_sum, v6, udp, h);

    // QNAME: read, summed, lowercased into the key and hashed 8 bytes at a time.
    let qname_off = dns_off + DNS_HLEN;
    let (name_len, mut qsum, hash) = fold_name(ctx, qname_off, key)?;
    // Opaque: one verifier state after the name, not one per length.
    let name_len = opaque(name_len as u32) as usize;
    if name_len == 0 || name_len > MAX_QNAME_WIRE {
        return Err(counter::PASS_INTERNAL);
    }
    s.name_hash = hash;
    crate::stage!(settings, 3);
    let q_end = DNS_HLEN + name_len + 4;
    let tc = read::<4>(ctx, qname_off + name_len)?;
    qsum += csum::sum(&tc, name_len); // the name started at an even offset
    let qtype = be16([tc[0], tc[1]]);
    if be16([tc[2], tc[3]]) != QCLASS_IN || (qtype != QTYPE_A && qtype != QTYPE_AAAA) {
        return Err(counter::PASS_UNPARSED);
    }
    let mut opt_sum = 0u32;
    let mut dnssec_ok = false;
    if has_opt {
        // Root owner, type OPT, version 0, and nothing after it; its
        // options are walked by `edns_admit`.
        let o = unsafe { &*ptr_at::<[u8; OPT_LEN]>(ctx, dns_off + q_end).ok_or(counter::PASS_UNPARSED)? };
        let rdlen = be16([o[9], o[10]]) as usize;
        if o[0] != 0 || be16([o[1], o[2]]) != QTYPE_OPT || o[6] != 0 || dns_len != q_end + OPT_LEN + rdlen || rdlen > MAX_OPTIONS {
            return Err(counter::PASS_UNPARSED);
        }
        s.opts.at = q_end + OPT_LEN;
        s.opts.len = rdlen;
        dnssec_ok = o[7] & 0x80 != 0;
        // The OPT starts where the question ends: odd when the name length is.
        opt_sum = csum::sum(o, q_end);
    } else if dns_len != q_end {
        return Err(counter::PASS_UNPARSED);
    }
    crate::stage!(settings, 4);
    // Verified here, or with the options' bytes by `edns_admit`.
    s.pending_sum = 0;
    if let Some(partial) = partial? {
        let sum = partial + qsum + opt_sum;
        if s.opts.len != 0 {
            s.pending_sum = sum;
        } else if !csum::verifies(sum) {
            return Err(counter::DROP_BAD_CHECKSUM);
        }
    }
    q.l3_off = l3_off;
    q.l4_off = l4_off;
    q.dns_off = dns_off;
    q.q_end = q_end;
    q.qtype = qtype;
    q.v6 = v6;
    q.has_opt = has_opt;
    q.dnssec_ok = dnssec_ok;
    s.dport = dport;
    q.qsum = qsum;
    q.addr_sum = addr_sum;
    Ok(())
}
