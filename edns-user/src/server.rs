//! UDP and TCP listeners on every `listen` address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::dns::Transport;
use crate::live::Live;

/// Idle time after which a TCP connection is closed (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// One UDP socket per core on each address (SO_REUSEPORT: the kernel
/// spreads queries over them), each served by its own thread.
fn udp_sockets(addr: &SocketAddr) -> anyhow::Result<Vec<socket2::Socket>> {
    // SO_REUSEPORT would let a second edns share the port silently; a plain
    // bind first fails with "address in use" if anything holds it.
    // (IPv6 sockets are IPv6-only, so `[::]` beside `0.0.0.0` on one port binds.)
    let socket = |reuse_port: bool| -> std::io::Result<socket2::Socket> {
        let s = socket2::Socket::new(socket2::Domain::for_address(*addr), socket2::Type::DGRAM, None)?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_port(reuse_port)?;
        // Blocking, woken at least this often to see whether to stop.
        s.set_read_timeout(Some(UDP_WAKE))?;
        crate::udp::enable_pktinfo(&s, addr.is_ipv6())?;
        s.bind(&(*addr).into())?;
        Ok(s)
    };
    drop(socket(false).with_context(|| format!("cannot bind UDP {addr}"))?);
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (0..n).map(|_| socket(true)).collect::<std::io::Result<Vec<_>>>().with_context(|| format!("cannot bind UDP {addr}"))
}

/// How often an idle UDP worker looks at its stop flag.
const UDP_WAKE: Duration = Duration::from_millis(200);

/// The UDP worker threads of one `serve`: told to stop when it is dropped.
struct UdpWorkers {
    stop: Arc<AtomicBool>,
}

impl Drop for UdpWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A TCP listener on one family only: `[::]:53` must not claim the IPv4
/// port that `0.0.0.0:53` binds beside it (net.ipv6.bindv6only = 0).
fn tcp_listener(addr: &SocketAddr) -> std::io::Result<TcpListener> {
    let s = socket2::Socket::new(socket2::Domain::for_address(*addr), socket2::Type::STREAM, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&(*addr).into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Binds every listen address (UDP and TCP) and serves until the future
/// is dropped or a listener fails.
pub async fn serve(responder: Arc<Live>, listen: &[SocketAddr]) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let workers = UdpWorkers { stop: Arc::new(AtomicBool::new(false)) };
    // A worker that ends (it only does by panicking) ends the server, as a
    // dead socket in the SO_REUSEPORT group would silently lose its share.
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel::<String>();
    for addr in listen {
        let udp = udp_sockets(addr)?;
        let tcp = tcp_listener(addr).with_context(|| format!("cannot bind TCP {addr}"))?;
        tracing::info!(%addr, udp_sockets = udp.len(), "serving DNS on UDP and TCP");
        for (i, sock) in udp.into_iter().enumerate() {
            let (r, stop, tx, rt) = (responder.clone(), workers.stop.clone(), ended_tx.clone(), tokio::runtime::Handle::current());
            std::thread::Builder::new().name(format!("edns-udp-{i}")).spawn(move || {
                let _rt = rt.enter();
                let why = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| udp_worker(&r, &sock, &stop))) {
                    Ok(()) => "stopped".to_string(),
                    Err(_) => format!("UDP worker {i} panicked"),
                };
                let _ = tx.send(why);
            })?;
        }
        tasks.spawn(tcp_loop(responder.clone(), tcp));
    }
    tokio::select! {
        r = tasks.join_next() => match r {
            Some(r) => r.context("listener task panicked")?,
            None => Ok(()),
        },
        Some(why) = ended.recv() => anyhow::bail!("{why}"),
    }
}

/// Serves one UDP socket: a batch of queries in, their answers out.
fn udp_worker(responder: &Live, sock: &socket2::Socket, stop: &AtomicBool) {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let mut batch = crate::udp::Batch::default();
    let mut answers = Vec::with_capacity(crate::udp::BATCH);
    while !stop.load(Ordering::Relaxed) {
        match batch.recv(fd) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => continue,
            Err(e) => {
                // ICMP errors from earlier sends surface here; they are not
                // fatal. A pause, so an error that repeats cannot spin a core.
                tracing::debug!(error = %e, "UDP receive error");
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        answers.clear();
        for q in batch.received() {
            // Never an answer to a broadcast or multicast query: it would come
            // once per socket and reflect to whoever the source claims to be.
            if q.dst.is_some_and(|d| !d.is_unicast_to_us()) {
                responder.stats().dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %q.peer, dst = ?q.dst, "query to a broadcast or multicast address dropped");
                continue;
            }
            if let Some(out) = responder.respond(q.data, q.peer.ip(), Transport::Udp) {
                // From the address the query went to (a wildcard bind would pick one by route).
                answers.push((out, q.peer, q.dst.map(|d| d.addr)));
            }
        }
        let failed = crate::udp::send_batch(fd, &answers);
        if failed > 0 {
            tracing::debug!(failed, "UDP sends failed");
        }
    }
}

async fn tcp_loop(responder: Arc<Live>, listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let r = responder.clone();
        tokio::spawn(async move {
            if let Err(e) = tcp_conn(r, stream, peer).await {
                tracing::debug!(%peer, error = %e, "TCP connection ended");
            }
        });
    }
}

async fn tcp_conn(responder: Arc<Live>, mut stream: TcpStream, peer: SocketAddr) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 65535];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Err(_) => return Ok(()), // idle
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        let n = u16::from_be_bytes(len) as usize;
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf[..n])).await.context("TCP read timed out")??;
        match responder.respond(&buf[..n], peer.ip(), Transport::Tcp) {
            Some(out) => {
                let mut framed = Vec::with_capacity(out.len() + 2);
                framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
                framed.extend_from_slice(&out);
                stream.write_all(&framed).await?;
                // A refused zone transfer ends the stream: the client stops
                // waiting for more messages at once.
                if is_refused_transfer(&buf[..n], &out) {
                    stream.shutdown().await?;
                    return Ok(());
                }
            }
            // Unanswerable garbage on a stream: the framing can't be trusted any more.
            None => return Ok(()),
        }
    }
}

/// True when `query` asked for AXFR or IXFR and `response` refused it.
fn is_refused_transfer(query: &[u8], response: &[u8]) -> bool {
    use hickory_proto::rr::RecordType;
    let refused = response.len() >= 4 && response[3] & 0x0f == u8::from(hickory_proto::op::ResponseCode::Refused.low());
    refused
        && hickory_proto::op::Message::from_vec(query)
            .ok()
            .and_then(|m| m.queries.first().map(|q| matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR)))
            .unwrap_or(false)
}
