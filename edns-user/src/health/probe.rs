//! One probe of one target: TCP connect, HTTP(S) GET, or a DNS query.
//! `Ok(detail)` is a success, `Err(detail)` a failure; the caller bounds
//! the time.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::RData;
use tokio::net::{TcpStream, UdpSocket};

use crate::model::{DnsCheck, HttpCheck, MonitorKind};

/// Most of a body read when looking for `expect_body`.
const BODY_LIMIT: usize = 64 * 1024;

/// A client per monitored VS: the https settings and the Host/SNI name
/// pinned to the target are per monitor and target.
pub fn http_client(check: &HttpCheck, target: SocketAddr, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // A health check judges the answer it gets, it follows nothing.
        .redirect(reqwest::redirect::Policy::none())
        // Never through a proxy from the environment: the target is what is probed.
        .no_proxy()
        .pool_max_idle_per_host(0)
        .use_rustls_tls()
        .danger_accept_invalid_certs(!check.verify);
    if let Some(ca) = &check.ca_file {
        let pem = std::fs::read(ca).map_err(|e| anyhow::anyhow!("cannot read ca_file {}: {e}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
            b = b.add_root_certificate(cert);
        }
    }
    if let Some(host) = &check.host {
        b = b.resolve(host, target);
    }
    Ok(b.build()?)
}

pub fn http_url(check: &HttpCheck, target: SocketAddr) -> String {
    let scheme = if check.tls { "https" } else { "http" };
    match &check.host {
        Some(h) => format!("{scheme}://{h}:{}{}", target.port(), check.path),
        None => format!("{scheme}://{target}{}", check.path),
    }
}

async fn http(client: &reqwest::Client, url: &str, check: &HttpCheck) -> Result<String, String> {
    let mut resp = client.get(url).send().await.map_err(|e| describe(&e))?;
    let status = resp.status().as_u16();
    if status != check.expect_status {
        return Err(format!("HTTP {status}, expected {}", check.expect_status));
    }
    let Some(want) = &check.expect_body else { return Ok(format!("HTTP {status}")) };
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() >= BODY_LIMIT {
            break;
        }
    }
    if String::from_utf8_lossy(&body).contains(want.as_str()) {
        Ok(format!("HTTP {status}, body has {want:?}"))
    } else {
        Err(format!("HTTP {status}, body lacks {want:?}"))
    }
}

/// reqwest's error with its causes (the TLS or socket reason is the last one).
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

async fn dns(target: SocketAddr, check: &DnsCheck) -> Result<String, String> {
    let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let sock = UdpSocket::bind(bind).await.map_err(|e| format!("bind: {e}"))?;
    sock.connect(target).await.map_err(|e| format!("connect: {e}"))?;
    let id: u16 = rand::random();
    let mut q = Message::new(id, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(check.qname.clone(), check.qtype));
    let bytes = q.to_vec().map_err(|e| format!("cannot encode query: {e}"))?;
    sock.send(&bytes).await.map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 4096];
    // Anything that is not the answer to this query (a stray or spoofed
    // datagram) is ignored; the caller's timeout ends the wait.
    let resp = loop {
        let n = sock.recv(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.metadata.id == id && m.metadata.message_type == MessageType::Response => break m,
            _ => continue,
        }
    };
    let rcode = resp.metadata.response_code;
    if rcode != check.rcode {
        return Err(format!("rcode {rcode}, expected {}", check.rcode));
    }
    let Some(want) = check.address else { return Ok(format!("rcode {rcode}")) };
    let has = resp.answers.iter().any(|r| match (&r.data, want) {
        (RData::A(a), IpAddr::V4(w)) => a.0 == w,
        (RData::AAAA(a), IpAddr::V6(w)) => a.0 == w,
        _ => false,
    });
    if has {
        Ok(format!("rcode {rcode}, answer has {want}"))
    } else {
        Err(format!("rcode {rcode}, answer lacks {want}"))
    }
}

/// One probe, bounded by `timeout`.
pub async fn probe(
    kind: &MonitorKind,
    target: SocketAddr,
    timeout: Duration,
    client: Option<&reqwest::Client>,
) -> Result<String, String> {
    let work = async {
        match kind {
            MonitorKind::Tcp => TcpStream::connect(target).await.map(|_| "connected".to_string()).map_err(|e| e.to_string()),
            MonitorKind::Http(check) => match client {
                Some(c) => http(c, &http_url(check, target), check).await,
                None => Err("no HTTP client".into()),
            },
            MonitorKind::Dns(check) => dns(target, check).await,
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    }
}
