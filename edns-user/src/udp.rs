//! UDP with the destination of each datagram (IP_PKTINFO, IPV6_RECVPKTINFO):
//! a query to a broadcast or multicast address is never answered, and an
//! answer leaves from the address the query was sent to, which a wildcard
//! bind (`0.0.0.0`, `::`) on a host with several addresses needs — a
//! resolver drops an answer from another address.

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;

use nix::sys::socket::{
    setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage,
};

/// Asks the kernel for each datagram's destination.
pub fn enable_pktinfo(s: &socket2::Socket, v6: bool) -> std::io::Result<()> {
    let r = if v6 { setsockopt(&s.as_fd(), sockopt::Ipv6RecvPacketInfo, &true) } else { setsockopt(&s.as_fd(), sockopt::Ipv4PacketInfo, &true) };
    r.map_err(std::io::Error::from)
}

/// A received datagram's destination: the header's address and, for
/// IPv4, the local address the kernel matched it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub addr: IpAddr,
    /// IPv4 only: the local address (equal to `addr` for unicast to us).
    pub local: Option<Ipv4Addr>,
}

impl Destination {
    /// Unicast to one of our addresses; broadcast (limited or directed,
    /// which IPv4 shows as a header address that is not the local one) and
    /// multicast are not.
    pub fn is_unicast_to_us(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => !a.is_broadcast() && !a.is_multicast() && self.local.is_none_or(|l| l == a),
            IpAddr::V6(a) => !a.is_multicast(),
        }
    }
}

/// Room for the control messages a receive asks for.
pub fn cmsg_buffer() -> Vec<u8> {
    nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo)
}

/// Datagrams received and answered a batch at a time (recvmmsg and
/// sendmmsg): one system call each way for up to [`BATCH`] queries where
/// the one-at-a-time path makes two per query.
pub const BATCH: usize = 32;

/// Largest datagram a slot holds: a UDP query can be no longer.
const SLOT: usize = 65535;

/// One received datagram of a batch.
pub struct Received<'a> {
    pub data: &'a [u8],
    pub peer: SocketAddr,
    pub dst: Option<Destination>,
}

/// Buffers for batches on one socket, allocated once per worker thread.
pub struct Batch {
    slots: Vec<Vec<u8>>,
    /// (slot, length, source, destination) of each datagram of the last receive.
    got: Vec<(usize, usize, SocketAddr, Option<Destination>)>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch { slots: (0..BATCH).map(|_| vec![0u8; SLOT]).collect(), got: Vec::with_capacity(BATCH) }
    }
}

fn peer_of(a: &SockaddrStorage) -> Option<SocketAddr> {
    a.as_sockaddr_in().map(|v4| SocketAddr::from((v4.ip(), v4.port()))).or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port()))))
}

fn destination_of(c: ControlMessageOwned) -> Option<Destination> {
    match c {
        ControlMessageOwned::Ipv4PacketInfo(pi) => Some(Destination {
            addr: IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr))),
            local: Some(Ipv4Addr::from(u32::from_be(pi.ipi_spec_dst.s_addr))),
        }),
        ControlMessageOwned::Ipv6PacketInfo(pi) => Some(Destination { addr: IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)), local: None }),
        _ => None,
    }
}

impl Batch {
    /// Waits (up to the socket's receive timeout) for at least one datagram
    /// and takes up to [`BATCH`] that are already queued.
    pub fn recv(&mut self, fd: i32) -> std::io::Result<usize> {
        self.got.clear();
        // Fresh headers each time: the kernel shortens each header's name and
        // control lengths to what it wrote, and nix does not restore them.
        let mut headers = nix::sys::socket::MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(cmsg_buffer()));
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self.slots.iter_mut().map(|s| [IoSliceMut::new(s)]).collect();
        let res = nix::sys::socket::recvmmsg(fd, &mut headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None).map_err(std::io::Error::from)?;
        for (slot, m) in res.enumerate() {
            // Without a source, or cut short (data or control), not a query we can answer.
            let Some(peer) = m.address.as_ref().and_then(peer_of) else { continue };
            if m.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
                continue;
            }
            // Without a readable destination it might be a broadcast: not answered.
            let Ok(mut c) = m.cmsgs() else { continue };
            let dst = c.find_map(destination_of);
            self.got.push((slot, m.bytes, peer, dst));
        }
        Ok(self.got.len())
    }

    /// The datagrams of the last [`Batch::recv`].
    pub fn received(&self) -> impl Iterator<Item = Received<'_>> {
        self.got.iter().map(|&(slot, n, peer, dst)| Received { data: &self.slots[slot][..n], peer, dst })
    }
}

/// Sends each answer to its peer, from its address when given, with as
/// few sendmmsg calls as runs of equal source addresses allow. Answers
/// the kernel refuses are skipped (and counted in the returned total of
/// failures), never retried.
pub fn send_batch(fd: i32, answers: &[(Vec<u8>, SocketAddr, Option<IpAddr>)]) -> usize {
    let mut failed = 0;
    let mut start = 0;
    while start < answers.len() {
        let from = answers[start].2;
        let end = start + answers[start..].iter().take_while(|a| a.2 == from).count();
        let mut at = start;
        while at < end {
            match send_run(fd, &answers[at..end], from) {
                Ok(0) | Err(_) => {
                    failed += 1;
                    at += 1;
                }
                Ok(n) => at += n,
            }
        }
        start = end;
    }
    failed
}

fn send_run(fd: i32, run: &[(Vec<u8>, SocketAddr, Option<IpAddr>)], from: Option<IpAddr>) -> std::io::Result<usize> {
    let iovs: Vec<[IoSlice<'_>; 1]> = run.iter().map(|a| [IoSlice::new(&a.0)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = run.iter().map(|a| Some(SockaddrStorage::from(a.1))).collect();
    // Only where the family matches the peer's, and room for exactly that
    // message: the kernel reads every header in the control length.
    let (v4, v6);
    let (cmsgs, cspace) = match (from, run[0].1) {
        (Some(IpAddr::V4(f)), SocketAddr::V4(_)) => {
            v4 = libc::in_pktinfo { ipi_ifindex: 0, ipi_spec_dst: libc::in_addr { s_addr: u32::from(f).to_be() }, ipi_addr: libc::in_addr { s_addr: 0 } };
            (vec![ControlMessage::Ipv4PacketInfo(&v4)], Some(nix::cmsg_space!(libc::in_pktinfo)))
        }
        (Some(IpAddr::V6(f)), SocketAddr::V6(_)) => {
            v6 = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: f.octets() }, ipi6_ifindex: 0 };
            (vec![ControlMessage::Ipv6PacketInfo(&v6)], Some(nix::cmsg_space!(libc::in6_pktinfo)))
        }
        _ => (vec![], None),
    };
    let mut headers = nix::sys::socket::MultiHeaders::<SockaddrStorage>::preallocate(run.len(), cspace);
    let sent = nix::sys::socket::sendmmsg(fd, &mut headers, iovs.iter(), &addrs, &cmsgs, MsgFlags::empty()).map_err(std::io::Error::from)?;
    Ok(sent.count())
}
