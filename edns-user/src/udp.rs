//! UDP with the destination of each datagram (IP_PKTINFO, IPV6_RECVPKTINFO):
//! a query to a broadcast or multicast address is never answered, and an
//! answer leaves from the address the query was sent to, which a wildcard
//! bind (`0.0.0.0`, `::`) on a host with several addresses needs — a
//! resolver drops an answer from another address.

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

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

/// Room for the control messages `recv` asks for, made once per socket loop.
pub fn cmsg_buffer() -> Vec<u8> {
    nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo)
}

fn recv_one(fd: i32, buf: &mut [u8], space: &mut Vec<u8>) -> std::io::Result<(usize, SocketAddr, Option<Destination>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(space), MsgFlags::empty()).map_err(std::io::Error::from)?;
    let peer = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in().map(|v4| SocketAddr::from((v4.ip(), v4.port()))).or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port()))))
        })
        .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
    let mut dst = None;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        match c {
            ControlMessageOwned::Ipv4PacketInfo(pi) => {
                dst = Some(Destination {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr))),
                    local: Some(Ipv4Addr::from(u32::from_be(pi.ipi_spec_dst.s_addr))),
                })
            }
            ControlMessageOwned::Ipv6PacketInfo(pi) => dst = Some(Destination { addr: IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)), local: None }),
            _ => {}
        }
    }
    Ok((msg.bytes, peer, dst))
}

/// Receives one datagram: its length, source and destination.
/// `cmsg` comes from [`cmsg_buffer`], reused across calls.
pub async fn recv(sock: &UdpSocket, buf: &mut [u8], cmsg: &mut Vec<u8>) -> std::io::Result<(usize, SocketAddr, Option<Destination>)> {
    loop {
        sock.readable().await?;
        match sock.try_io(Interest::READABLE, || recv_one(sock.as_raw_fd(), buf, cmsg)) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

fn send_one(fd: i32, data: &[u8], to: SocketAddr, from: Option<IpAddr>) -> std::io::Result<usize> {
    let iov = [IoSlice::new(data)];
    let r = match (to, from) {
        (SocketAddr::V4(t), Some(IpAddr::V4(f))) => {
            let pi = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr { s_addr: u32::from(f).to_be() },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            sendmsg(fd, &iov, &[ControlMessage::Ipv4PacketInfo(&pi)], MsgFlags::empty(), Some(&SockaddrIn::from(t)))
        }
        (SocketAddr::V6(t), Some(IpAddr::V6(f))) => {
            let pi = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: f.octets() }, ipi6_ifindex: 0 };
            sendmsg(fd, &iov, &[ControlMessage::Ipv6PacketInfo(&pi)], MsgFlags::empty(), Some(&SockaddrIn6::from(t)))
        }
        (SocketAddr::V4(t), _) => sendmsg(fd, &iov, &[], MsgFlags::empty(), Some(&SockaddrIn::from(t))),
        (SocketAddr::V6(t), _) => sendmsg(fd, &iov, &[], MsgFlags::empty(), Some(&SockaddrIn6::from(t))),
    };
    r.map_err(std::io::Error::from)
}

/// Sends `data` to `to`, from the address `from` when given.
pub async fn send(sock: &UdpSocket, data: &[u8], to: SocketAddr, from: Option<IpAddr>) -> std::io::Result<usize> {
    loop {
        sock.writable().await?;
        match sock.try_io(Interest::WRITABLE, || send_one(sock.as_raw_fd(), data, to, from)) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}
