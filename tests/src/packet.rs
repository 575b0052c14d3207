//! Building and checking Ethernet/IP/UDP frames for BPF_PROG_TEST_RUN
//! fixtures, independent of the code under test.

use std::net::IpAddr;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// One's-complement sum of big-endian 16-bit words.
pub fn sum16(data: &[u8]) -> u32 {
    data.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum()
}

pub fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, udp_len: usize) -> u32 {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    sum16(&p) + 17 + udp_len as u32
}

/// A frame description; `build` makes the bytes.
#[derive(Clone, Debug)]
pub struct Frame {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub vlans: Vec<u16>,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn udp(src: IpAddr, dst: IpAddr, dport: u16, payload: Vec<u8>) -> Frame {
        Frame { src, dst, sport: 40000, dport, vlans: vec![], payload }
    }

    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&SERVER_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        for (i, v) in self.vlans.iter().enumerate() {
            // outer tag 802.1ad when there are two
            let tpid: u16 = if self.vlans.len() == 2 && i == 0 { 0x88a8 } else { 0x8100 };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&v.to_be_bytes());
        }
        let udp_len = 8 + self.payload.len();
        let mut udp = Vec::new();
        udp.extend_from_slice(&self.sport.to_be_bytes());
        udp.extend_from_slice(&self.dport.to_be_bytes());
        udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&self.payload);
        let mut c = fold(pseudo_sum(self.src, self.dst, udp_len) + sum16(&udp));
        if c == 0 {
            c = 0xffff;
        }
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0];
                ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                let c = fold(sum16(&ip));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut ip = vec![0x60, 0, 0, 0];
                ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
                ip.extend_from_slice(&[17, 64]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                f.extend_from_slice(&ip);
            }
            _ => panic!("mixed families"),
        }
        f.extend_from_slice(&udp);
        f
    }
}

impl Frame {
    /// The frame an answer to `self` carrying `dns` must be, byte for byte:
    /// addresses, ports and MACs swapped, IPv4 ID and flags kept, TTL 64.
    pub fn expected_answer(&self, dns: Vec<u8>) -> Vec<u8> {
        let back = Frame { src: self.dst, dst: self.src, sport: self.dport, dport: self.sport, vlans: self.vlans.clone(), payload: dns };
        let mut b = back.build();
        let (dst, src) = (b[0..6].to_vec(), b[6..12].to_vec());
        b[0..6].copy_from_slice(&src);
        b[6..12].copy_from_slice(&dst);
        b
    }
}

/// An answer frame checked for well-formedness against the query frame:
/// MACs, addresses, ports swapped; lengths and checksums right. Returns the
/// DNS payload, or a description of what is wrong.
pub fn check_answer(query: &Frame, out: &[u8]) -> Result<Vec<u8>, String> {
    let err = |m: &str| Err(format!("{m}: {out:02x?}"));
    if out.len() < 14 || out[0..6] != CLIENT_MAC || out[6..12] != SERVER_MAC {
        return err("MACs not swapped");
    }
    let mut off = 12;
    for v in &query.vlans {
        if out[off + 2..off + 4] != v.to_be_bytes() {
            return err("VLAN tag changed");
        }
        off += 4;
    }
    let etype = u16::from_be_bytes([out[off], out[off + 1]]);
    off += 2;
    let (l4, src, dst) = match etype {
        0x0800 => {
            let ip = &out[off..off + 20];
            if fold(sum16(ip)) != 0 {
                return err("bad IPv4 header checksum");
            }
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            if off + total != out.len() {
                return err("IPv4 total length does not match the frame");
            }
            let s = IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap());
            let d = IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap());
            (off + 20, s, d)
        }
        0x86dd => {
            let ip = &out[off..off + 40];
            let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            if off + 40 + plen != out.len() {
                return err("IPv6 payload length does not match the frame");
            }
            let s = IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
            let d = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
            (off + 40, s, d)
        }
        _ => return err("not IP"),
    };
    if src != query.dst || dst != query.src {
        return err("addresses not swapped");
    }
    let udp = &out[l4..];
    if u16::from_be_bytes([udp[0], udp[1]]) != query.dport || u16::from_be_bytes([udp[2], udp[3]]) != query.sport {
        return err("ports not swapped");
    }
    if u16::from_be_bytes([udp[4], udp[5]]) as usize != udp.len() {
        return err("UDP length does not match");
    }
    if udp[6..8] == [0, 0] {
        return err("UDP checksum missing");
    }
    if fold(pseudo_sum(src, dst, udp.len()) + sum16(udp)) != 0 {
        return err("bad UDP checksum");
    }
    Ok(udp[8..].to_vec())
}

/// A DNS query in wire form: `name` as given (case kept), `qtype`, with an
/// option-less OPT RR advertising `edns` when given.
pub fn dns_query(id: u16, rd: bool, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&(if rd { 0x0100u16 } else { 0 }).to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, edns.is_some() as u8]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    if let Some(size) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    q
}

/// A query built by [`dns_query`] with an OPT, given a COOKIE option
/// carrying `cookie` (8 or 8 + 16 bytes).
pub fn with_cookie(mut dns: Vec<u8>, cookie: &[u8]) -> Vec<u8> {
    let n = dns.len();
    assert_eq!(&dns[n - 11..n - 8], &[0, 0, 41], "the query ends with an option-less OPT");
    dns[n - 2..].copy_from_slice(&((4 + cookie.len()) as u16).to_be_bytes());
    dns.extend_from_slice(&[0, 10]);
    dns.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
    dns.extend_from_slice(cookie);
    dns
}

/// Adds an EDNS option to the query's OPT (its last RR), before or after
/// the options it has.
pub fn add_option(dns: &mut Vec<u8>, code: u16, data: &[u8], first: bool) {
    let n = dns.len();
    // The OPT: from the end, the root name and type 41 whose RDLENGTH reaches the end.
    let opt = (0..n - 10)
        .rev()
        .find(|&i| dns[i..i + 3] == [0, 0, 41] && u16::from_be_bytes([dns[i + 9], dns[i + 10]]) as usize == n - i - 11)
        .expect("the query ends with an OPT");
    let rdlen = u16::from_be_bytes([dns[opt + 9], dns[opt + 10]]) + 4 + data.len() as u16;
    dns[opt + 9..opt + 11].copy_from_slice(&rdlen.to_be_bytes());
    let at = if first { opt + 11 } else { n };
    let mut option = code.to_be_bytes().to_vec();
    option.extend_from_slice(&(data.len() as u16).to_be_bytes());
    option.extend_from_slice(data);
    dns.splice(at..at, option);
}

/// ECS option data (RFC 7871) for `addr`/`source`: family, source and
/// scope prefix lengths, and the address cut to the bytes the prefix needs.
pub fn ecs_data(addr: std::net::IpAddr, source: u8) -> Vec<u8> {
    let (family, octets) = match addr {
        std::net::IpAddr::V4(a) => (1u16, a.octets().to_vec()),
        std::net::IpAddr::V6(a) => (2u16, a.octets().to_vec()),
    };
    let n = (source as usize).div_ceil(8);
    let mut out = family.to_be_bytes().to_vec();
    out.extend_from_slice(&[source, 0]);
    out.extend_from_slice(&octets[..n]);
    if source % 8 != 0 {
        out[3 + n] &= 0xffu8 << (8 - source % 8);
    }
    out
}
