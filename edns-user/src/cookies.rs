//! DNS cookies in the controller: the server secrets (current and the
//! previous one, accepted for a grace period after each rotation), their
//! copy in the data plane's `COOKIE_SECRETS` map, and the COOKIE option of
//! a response. The construction is `edns_common::cookie`, shared with XDP.
//!
//! Behaviour (RFC 7873 §5.2, a documented choice): a query with a client
//! cookie alone, a valid server cookie, or a bad or stale one, is answered
//! normally with a fresh server cookie; a malformed COOKIE option (length
//! under 8, 9 to 15, over 40) gets FORMERR. No BADCOOKIE: it would make a
//! resolver retry, which rate limiting can ask for instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use edns_common::{server_cookie, server_cookie_valid, CookieSecrets, CLIENT_COOKIE_LEN, SERVER_COOKIE_LEN};
use serde::Serialize;

/// Where the data plane keeps its copy of the secrets.
pub type SecretsSink = Box<dyn Fn(&CookieSecrets) -> anyhow::Result<()> + Send + Sync>;

#[derive(Default, Serialize)]
pub struct CookieStats {
    pub client_only: AtomicU64,
    pub valid: AtomicU64,
    pub bad: AtomicU64,
    pub malformed: AtomicU64,
    pub rotations: AtomicU64,
}

pub struct Cookies {
    secrets: RwLock<CookieSecrets>,
    sinks: RwLock<Vec<SecretsSink>>,
    pub stats: CookieStats,
}

/// What a query's COOKIE option was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    ClientOnly,
    Valid,
    Bad,
    Malformed,
}

/// Seconds of wall-clock time, the cookie timestamp.
pub fn wall_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Wall-clock minus CLOCK_BOOTTIME in nanoseconds, what the kernel adds to
/// `bpf_ktime_get_boot_ns` for cookie timestamps.
pub fn wall_offset_ns() -> i64 {
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    wall - crate::store::boot_ns() as i64
}

impl Cookies {
    /// Cookies with `secret`, or a random one; `None`: cookies off.
    pub fn new(enabled: bool, secret: Option<[u8; 16]>) -> Cookies {
        let s = CookieSecrets {
            current: secret.unwrap_or_else(rand::random),
            previous: [0; 16],
            has_previous: 0,
            enabled: enabled as u32,
            wall_offset_ns: wall_offset_ns(),
        };
        Cookies { secrets: RwLock::new(s), sinks: RwLock::new(Vec::new()), stats: CookieStats::default() }
    }

    /// Takes the secrets a previous run left in a pinned data plane, so the
    /// server cookies clients hold stay valid across a restart.
    pub fn adopt(&self, pinned: &CookieSecrets) {
        if pinned.current == [0; 16] {
            return;
        }
        let mut s = self.secrets.write().unwrap();
        (s.current, s.previous, s.has_previous) = (pinned.current, pinned.previous, pinned.has_previous);
    }

    pub fn enabled(&self) -> bool {
        self.secrets.read().unwrap().enabled != 0
    }

    pub fn secrets(&self) -> CookieSecrets {
        *self.secrets.read().unwrap()
    }

    /// Adds a copy to keep current (the data plane's map), written now.
    pub fn add_sink(&self, sink: SecretsSink) -> anyhow::Result<()> {
        sink(&self.secrets())?;
        self.sinks.write().unwrap().push(sink);
        Ok(())
    }

    /// Rewrites the wall-clock offset (after a clock step, the kernel's
    /// timestamps follow within a minute).
    pub fn refresh_offset(&self) -> anyhow::Result<()> {
        let s = {
            let mut s = self.secrets.write().unwrap();
            let now = wall_offset_ns();
            if (now - s.wall_offset_ns).abs() < 100_000_000 {
                return Ok(()); // within 0.1 s: nothing to tell the kernel
            }
            s.wall_offset_ns = now;
            *s
        };
        for sink in self.sinks.read().unwrap().iter() {
            sink(&s)?;
        }
        Ok(())
    }

    /// A new current secret; the old one stays accepted until the next rotation.
    pub fn rotate(&self) -> anyhow::Result<()> {
        let s = {
            let mut s = self.secrets.write().unwrap();
            s.previous = s.current;
            s.has_previous = 1;
            s.current = rand::random();
            s.wall_offset_ns = wall_offset_ns();
            *s
        };
        self.stats.rotations.fetch_add(1, Ordering::Relaxed);
        for sink in self.sinks.read().unwrap().iter() {
            sink(&s)?;
        }
        tracing::info!("DNS cookie secret rotated; the previous one is accepted until the next rotation");
        Ok(())
    }

    /// True for a client cookie with our valid server cookie (not counted).
    pub fn is_valid(&self, data: &[u8], ldns: &[u8; 16]) -> bool {
        if data.len() != CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN {
            return false;
        }
        let s = self.secrets();
        let client: [u8; 8] = data[..8].try_into().unwrap();
        let server: [u8; 16] = data[8..].try_into().unwrap();
        let now = wall_secs() as u32;
        server_cookie_valid(&s.current, &client, &server, ldns, now)
            || (s.has_previous != 0 && server_cookie_valid(&s.previous, &client, &server, ldns, now))
    }

    /// Judges a query's COOKIE option data from `ldns` (IPv4 mapped).
    pub fn judge(&self, data: &[u8], ldns: &[u8; 16]) -> Verdict {
        let v = match data.len() {
            CLIENT_COOKIE_LEN => Verdict::ClientOnly,
            // A server cookie of another length than ours is not ours: bad.
            n if (16..=40).contains(&n) => {
                if self.is_valid(data, ldns) {
                    Verdict::Valid
                } else {
                    Verdict::Bad
                }
            }
            _ => Verdict::Malformed,
        };
        let c = match v {
            Verdict::ClientOnly => &self.stats.client_only,
            Verdict::Valid => &self.stats.valid,
            Verdict::Bad => &self.stats.bad,
            Verdict::Malformed => &self.stats.malformed,
        };
        c.fetch_add(1, Ordering::Relaxed);
        v
    }

    /// The response's COOKIE option data: the client cookie and a fresh server cookie.
    pub fn response_option(&self, client: &[u8; 8], ldns: &[u8; 16]) -> Vec<u8> {
        let s = self.secrets();
        let mut out = client.to_vec();
        out.extend_from_slice(&server_cookie(&s.current, client, ldns, wall_secs() as u32));
        out
    }
}

/// Keeps the kernel's wall-clock offset current (checked every minute).
pub fn spawn_offset_refresh(cookies: Arc<Cookies>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = cookies.refresh_offset() {
                tracing::error!(error = %e, "cannot update the cookie clock offset");
            }
        }
    });
}

/// Rotates the secret every `every` (unless it is fixed by the config).
pub fn spawn_rotation(cookies: Arc<Cookies>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await; // the first tick is now
        loop {
            tick.tick().await;
            if let Err(e) = cookies.rotate() {
                tracing::error!(error = %e, "cannot rotate the DNS cookie secret");
            }
        }
    });
}
