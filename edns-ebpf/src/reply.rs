//! Turning the query into its answer in place: grow the tail, append the
//! answer RR (and a fresh OPT RR), swap addresses and ports, fix lengths and
//! checksums. Checksums are summed from the values written plus the
//! question's sum taken while parsing, never by re-reading the packet.

use aya_ebpf::helpers::generated::{bpf_xdp_load_bytes, bpf_xdp_store_bytes};
use aya_ebpf::helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail};
use aya_ebpf::programs::XdpContext;
use edns_common::counter;

use network_types::eth::EthHdr;
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};
use network_types::udp::UdpHdr;

use crate::csum;
use crate::mem;
use crate::parse::{bytes_of, ptr_at, Query, COOKIE_MAX, MAX_PREFIX, DNS_HLEN, IPV4_HLEN, OPTION_HLEN, OPT_LEN, QTYPE_AAAA, UDP_HLEN};
use edns_common::{SacEntry, Settings, CLIENT_COOKIE_LEN, ECS_MAX, MAX_NSID, OPTION_COOKIE, OPTION_ECS, OPTION_NSID};

const DNS_QR_AA: u16 = 0x8400;
/// Truncated: the resolver retries over TCP.
const DNS_TC: u16 = 0x0200;
/// Query flags carried into the answer: RD and CD.
const DNS_KEEP: u16 = 0x0110;
/// Answer RR without RDATA: pointer, type, class, TTL, RDLENGTH.
const RR_HLEN: usize = 12;

/// Grows the frame by `delta` bytes when its tail has no room (a driver or
/// veth's copied skb whose buffer ends close to the frame): takes the room
/// from the headroom instead, and moves the `prefix` bytes that matter (all
/// headers and the question) to the new start through per-CPU scratch, so
/// the frame reads as if its tail had grown.
#[inline(always)]
fn grow_at_head(ctx: &XdpContext, delta: i32, prefix: usize, buf: &mut [u8; MAX_PREFIX]) -> Result<(), u32> {
    if !(1..=64).contains(&delta) || prefix == 0 || prefix > MAX_PREFIX {
        return Err(counter::PASS_NO_ROOM);
    }
    let p = buf.as_mut_ptr() as *mut core::ffi::c_void;
    unsafe {
        if bpf_xdp_load_bytes(ctx.ctx, 0, p, prefix as u32) != 0
            || bpf_xdp_adjust_head(ctx.ctx, -delta) != 0
            || bpf_xdp_store_bytes(ctx.ctx, 0, p, prefix as u32) != 0
        {
            return Err(counter::PASS_NO_ROOM);
        }
    }
    Ok(())
}

/// Writes the answer; `Err(counter)` leaves the packet to be passed up.
/// `sac`: whose address the answer RR carries (the type asked), none for
/// TC=1 without one (a rate-limit slip); `cookie`: the query's cookie and
/// the fresh server cookie, for a COOKIE option; `subnet`: the ECS option
/// data to echo and its length.
#[inline(always)]
pub fn build(
    ctx: &XdpContext,
    q: &Query,
    sac: Option<&SacEntry>,
    ttl: u32,
    settings: &Settings,
    cookie: Option<(&[u8; COOKIE_MAX], &[u8; 16])>,
    subnet: Option<(&[u8; ECS_MAX], usize)>,
    prefix_buf: &mut [u8; MAX_PREFIX],
) -> Result<(), u32> {
    let truncated = sac.is_none();
    let v6_answer = q.qtype == QTYPE_AAAA;
    let rdlen: usize = if v6_answer { 16 } else { 4 };
    // TC=1 (a rate-limit slip): the question and OPT, no answer RR.
    let rr_len = if truncated { 0 } else { RR_HLEN + rdlen };
    // The COOKIE option: client cookie and a fresh server cookie.
    let cookie_rdlen = if cookie.is_some() { OPTION_HLEN + COOKIE_MAX } else { 0 };
    // The NSID option, when asked and configured (RFC 5001).
    let nsid_len = if q.nsid && settings.nsid_len as usize <= MAX_NSID { settings.nsid_len as usize } else { 0 };
    let nsid_rdlen = if nsid_len > 0 { OPTION_HLEN + nsid_len } else { 0 };
    // Bounded here, once, so every offset after it stays bounded.
    // (Read through the stack and masked: LLVM would otherwise fold the
    // check into the arithmetic and the verifier lose the bound.)
    let ecs_len = match subnet {
        Some((_, len)) => (unsafe { core::ptr::read_volatile(&len) }) & 31,
        None => 0,
    };
    if subnet.is_some() && (ecs_len == 0 || ecs_len > ECS_MAX) {
        return Err(counter::PASS_INTERNAL);
    }
    let ecs_rdlen = if ecs_len > 0 { OPTION_HLEN + ecs_len } else { 0 };
    let opt_len = if q.has_opt { OPT_LEN + nsid_rdlen + ecs_rdlen + cookie_rdlen } else { 0 };
    let dns_len = q.q_end + rr_len + opt_len;
    // Through the stack, so LLVM cannot fold the pointers into 32-bit
    // arithmetic ("32-bit pointer arithmetic prohibited").
    let frame_len = unsafe { core::ptr::read_volatile(&(ctx.data_end() - ctx.data())) };
    let delta = (q.dns_off + dns_len) as i32 - frame_len as i32;
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        grow_at_head(ctx, delta, q.dns_off + q.q_end, prefix_buf)?;
    }
    let udp_len = UDP_HLEN + dns_len;
    // UDP checksum: pseudo-header length and protocol, then the UDP length field.
    let mut sum: u32 = 17 + 2 * udp_len as u32;

    // DNS header: ID kept, flags, counts.
    let h = ptr_at::<[u8; DNS_HLEN]>(ctx, q.dns_off).ok_or(counter::PASS_NO_ROOM)?;
    unsafe {
        let old = *h;
        let tc = if truncated { DNS_TC } else { 0 };
        let f = (DNS_QR_AA | tc | (u16::from_be_bytes([old[2], old[3]]) & DNS_KEEP)).to_be_bytes();
        let new = [old[0], old[1], f[0], f[1], 0, 1, 0, !truncated as u8, 0, 0, 0, q.has_opt as u8];
        sum += csum::sum(&new, 0);
        mem::copy(h, &new);
    }
    sum += q.qsum;

    // Answer: owner is a pointer to the question name (offset 12). The
    // answer RR and OPT start where the question ends (sums: its parity).
    if let Some(sac) = sac {
        let t = ttl.to_be_bytes();
        let rr = [0xc0, 0x0c, 0, q.qtype as u8, 0, 1, t[0], t[1], t[2], t[3], 0, rdlen as u8];
        let a = ptr_at::<[u8; RR_HLEN]>(ctx, q.dns_off + q.q_end).ok_or(counter::PASS_NO_ROOM)?;
        unsafe { *a = rr };
        sum += csum::sum(&rr, q.q_end);
        let rd_off = q.dns_off + q.q_end + RR_HLEN;
        if v6_answer {
            let r = ptr_at::<[u8; 16]>(ctx, rd_off).ok_or(counter::PASS_NO_ROOM)?;
            mem::copy(r, &sac.addr6);
            sum += csum::sum(&sac.addr6, q.q_end);
        } else {
            let r = ptr_at::<[u8; 4]>(ctx, rd_off).ok_or(counter::PASS_NO_ROOM)?;
            unsafe { *r = sac.addr4 };
            sum += csum::sum(&sac.addr4, q.q_end);
        }
    }
    // The answer RR is even in length: the OPT has the question end's parity.
    let opt_off = q.dns_off + q.q_end + rr_len;
    if q.has_opt {
        let p = settings.edns_payload.to_be_bytes();
        // DO copied (RFC 3225): the high bit of the flags.
        let opt = [0, 0, 41, p[0], p[1], 0, 0, (q.dnssec_ok as u8) << 7, 0, 0, (nsid_rdlen + ecs_rdlen + cookie_rdlen) as u8];
        let o = ptr_at::<[u8; OPT_LEN]>(ctx, opt_off).ok_or(counter::PASS_NO_ROOM)?;
        mem::copy(o, &opt);
        sum += csum::sum(&opt, q.q_end); // the answer RR is even in length
        // Frame offsets have the parity of segment offsets (headers are even).
        let mut at = opt_off + OPT_LEN;
        if nsid_len > 0 {
            sum += write_nsid(ctx, at, settings, nsid_len)?;
            at += OPTION_HLEN + nsid_len;
        }
        if let Some((data, _)) = subnet {
            sum += write_subnet(ctx, at, data, ecs_len)?;
            at += ecs_rdlen;
        }
        if let Some((client, server)) = cookie {
            sum += write_cookie(ctx, at, client, server)?;
        }
    }

    // Ethernet: swap MACs.
    let eth = unsafe { &mut *ptr_at::<EthHdr>(ctx, 0).ok_or(counter::PASS_NO_ROOM)? };
    core::mem::swap(&mut eth.src_addr, &mut eth.dst_addr);

    // IP: swap addresses (their sum, taken while parsing, is the pseudo
    // header's), new length, TTL 64.
    sum += q.addr_sum;
    if q.v6 {
        let ip = unsafe { &mut *ptr_at::<Ipv6Hdr>(ctx, q.l3_off).ok_or(counter::PASS_NO_ROOM)? };
        ip.set_payload_len(udp_len as u16);
        ip.hop_limit = 64;
        core::mem::swap(&mut ip.src_addr, &mut ip.dst_addr);
    } else {
        let ip = unsafe { &mut *ptr_at::<Ipv4Hdr>(ctx, q.l3_off).ok_or(counter::PASS_NO_ROOM)? };
        ip.set_tot_len((IPV4_HLEN + udp_len) as u16);
        ip.ttl = 64;
        ip.check = [0, 0];
        core::mem::swap(&mut ip.src_addr, &mut ip.dst_addr);
        ip.set_checksum(csum::complement(csum::sum(bytes_of::<_, IPV4_HLEN>(ip), 0)));
    }

    // UDP: swap ports, new length, checksum.
    let udp = unsafe { &mut *ptr_at::<UdpHdr>(ctx, q.l4_off).ok_or(counter::PASS_NO_ROOM)? };
    sum += csum::sum(&udp.src, 0) + csum::sum(&udp.dst, 0);
    let mut check = csum::complement(sum);
    if check == 0 {
        check = 0xffff; // 0 means "no checksum" over IPv4 and is illegal over IPv6
    }
    core::mem::swap(&mut udp.src, &mut udp.dst);
    udp.set_len(udp_len as u16);
    udp.set_checksum(check);
    Ok(())
}

/// Writes the NSID option (header, then the configured identifier copied
/// from the settings map by the helper: it checks the bounds) at `off`;
/// returns its sum for the UDP checksum, the identifier's precomputed.
#[inline(always)]
fn write_nsid(ctx: &XdpContext, off: usize, settings: &Settings, len: usize) -> Result<u32, u32> {
    let l = (len as u16).to_be_bytes();
    let head = [0, OPTION_NSID as u8, l[0], l[1]];
    let h = ptr_at::<[u8; OPTION_HLEN]>(ctx, off).ok_or(counter::PASS_NO_ROOM)?;
    unsafe { *h = head };
    if len == 0 || len > MAX_NSID {
        return Err(counter::PASS_INTERNAL);
    }
    let src = settings.nsid.as_ptr() as *mut core::ffi::c_void;
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, (off + OPTION_HLEN) as u32, src, len as u32) } != 0 {
        return Err(counter::PASS_NO_ROOM);
    }
    // The data starts 4 bytes on: same parity as the header.
    Ok(csum::sum(&head, off) + if off & 1 == 1 { settings.nsid_sum_odd } else { settings.nsid_sum_even })
}

/// Writes the ECS option (header, then `len` bytes of `data` copied by the
/// helper, which checks the bounds) at `off`; returns its sum for the UDP
/// checksum (`data` is zero after `len`, so all of it can be summed).
#[inline(always)]
fn write_subnet(ctx: &XdpContext, off: usize, data: &[u8; ECS_MAX], len: usize) -> Result<u32, u32> {
    if len == 0 || len > ECS_MAX {
        return Err(counter::PASS_INTERNAL);
    }
    let head = [0, OPTION_ECS as u8, 0, len as u8];
    let h = ptr_at::<[u8; OPTION_HLEN]>(ctx, off).ok_or(counter::PASS_NO_ROOM)?;
    unsafe { *h = head };
    let src = data.as_ptr() as *mut core::ffi::c_void;
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, (off + OPTION_HLEN) as u32, src, len as u32) } != 0 {
        return Err(counter::PASS_NO_ROOM);
    }
    Ok(csum::sum(&head, off) + csum::sum(data, off))
}

/// Writes the COOKIE option (header, the client cookie of `client`,
/// `server`) at `off` byte by byte (an array this size would not fit the
/// stack beside the rest); returns its sum for the UDP checksum.
#[inline(always)]
fn write_cookie(ctx: &XdpContext, off: usize, client: &[u8; COOKIE_MAX], server: &[u8; 16]) -> Result<u32, u32> {
    let o = ptr_at::<[u8; OPTION_HLEN + COOKIE_MAX]>(ctx, off).ok_or(counter::PASS_NO_ROOM)? as *mut u8;
    let head = [0, OPTION_COOKIE as u8, 0, COOKIE_MAX as u8];
    let client = client.first_chunk::<CLIENT_COOKIE_LEN>().ok_or(counter::PASS_INTERNAL)?;
    unsafe {
        mem::copy(o as *mut [u8; OPTION_HLEN], &head);
        mem::copy(o.add(OPTION_HLEN) as *mut [u8; CLIENT_COOKIE_LEN], client);
        mem::copy(o.add(OPTION_HLEN + CLIENT_COOKIE_LEN) as *mut [u8; 16], server);
    }
    // Header, client and server cookie: 4 and 8 bytes apart, one parity.
    Ok(csum::sum(&head, off) + csum::sum(client, off) + csum::sum(server, off))
}
