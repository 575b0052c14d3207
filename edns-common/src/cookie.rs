//! DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018):
//! Version 1 | Reserved 0 0 0 | Timestamp (seconds, big-endian) |
//! Hash = SipHash-2-4(secret; client cookie | version | reserved |
//! timestamp | client address). One construction for the kernel and the
//! controller. SipHash is written out here for fixed message lengths, the
//! form the BPF verifier takes (constant loop bounds, no slice indexing);
//! its output is checked against the `siphasher` crate in the tests.

use crate::select::is_v4_mapped;

pub const CLIENT_COOKIE_LEN: usize = 8;
pub const SERVER_COOKIE_LEN: usize = 16;
/// EDNS option code of COOKIE.
pub const OPTION_COOKIE: u16 = 10;
/// A server cookie is accepted up to an hour after its timestamp and five
/// minutes before it (RFC 9018 §4.3).
pub const COOKIE_MAX_AGE: u32 = 3600;
pub const COOKIE_MAX_FUTURE: u32 = 300;

/// The server secrets, one entry of the `COOKIE_SECRETS` map: cookies are
/// made with `current` and accepted with `current` or `previous` (the grace
/// period after a rotation).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CookieSecrets {
    pub current: [u8; 16],
    pub previous: [u8; 16],
    /// Non-zero while `previous` is still accepted.
    pub has_previous: u32,
    /// Non-zero when cookies are on (a secret is set).
    pub enabled: u32,
    /// Wall-clock minus CLOCK_BOOTTIME, nanoseconds: the kernel's
    /// `bpf_ktime_get_boot_ns` plus this, in seconds, is the cookie timestamp.
    pub wall_offset_ns: i64,
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[inline(always)]
fn le64<const N: usize>(m: &[u8; N], at: usize) -> u64 {
    u64::from_le_bytes([m[at], m[at + 1], m[at + 2], m[at + 3], m[at + 4], m[at + 5], m[at + 6], m[at + 7]])
}

/// SipHash-2-4 of an `N`-byte message under a 16-byte key.
#[inline(always)]
pub fn siphash24<const N: usize>(key: &[u8; 16], m: &[u8; N]) -> u64 {
    let (k0, k1) = (le64(key, 0), le64(key, 8));
    let mut v = [k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573];
    let mut i = 0;
    while i + 8 <= N {
        let w = le64(m, i);
        v[3] ^= w;
        round(&mut v);
        round(&mut v);
        v[0] ^= w;
        i += 8;
    }
    let mut last = (N as u64 & 0xff) << 56;
    let mut j = 0;
    while i + j < N {
        last |= (m[i + j] as u64) << (8 * j);
        j += 1;
    }
    v[3] ^= last;
    round(&mut v);
    round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The hash part of a server cookie: over the client cookie, the first
/// eight bytes of the server cookie (version, reserved, timestamp) and the
/// client's address (4 bytes for IPv4, 16 for IPv6). `m` is room for the
/// message (the kernel passes per-CPU scratch: the BPF stack is small).
#[inline(always)]
fn cookie_hash(secret: &[u8; 16], client: &[u8; 8], head: &[u8; 8], ldns: &[u8; 16], m: &mut [u8; 32]) -> [u8; 8] {
    let mut i = 0;
    while i < 8 {
        m[i] = client[i];
        m[8 + i] = head[i];
        i += 1;
    }
    let h = if is_v4_mapped(ldns) {
        m[16] = ldns[12];
        m[17] = ldns[13];
        m[18] = ldns[14];
        m[19] = ldns[15];
        let m20: &[u8; 20] = (&m[..20]).try_into().expect("20 of 32 bytes");
        siphash24(secret, m20)
    } else {
        let mut j = 0;
        while j < 16 {
            m[16 + j] = ldns[j];
            j += 1;
        }
        siphash24(secret, m)
    };
    h.to_le_bytes()
}

/// A version-1 server cookie for `client` from `ldns` at wall-clock second `now`.
#[inline(always)]
pub fn server_cookie_with(secret: &[u8; 16], client: &[u8; 8], ldns: &[u8; 16], now: u32, m: &mut [u8; 32]) -> [u8; 16] {
    let t = now.to_be_bytes();
    let head = [1, 0, 0, 0, t[0], t[1], t[2], t[3]];
    let h = cookie_hash(secret, client, &head, ldns, m);
    [head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7], h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]
}

/// [`server_cookie_with`] with its own message buffer.
pub fn server_cookie(secret: &[u8; 16], client: &[u8; 8], ldns: &[u8; 16], now: u32) -> [u8; 16] {
    server_cookie_with(secret, client, ldns, now, &mut [0; 32])
}

/// True when `server` is a version-1 cookie made with `secret` for this
/// client and address, no older than an hour and no more than five minutes
/// ahead of `now` (serial-number arithmetic, RFC 1982).
#[inline(always)]
pub fn server_cookie_valid_with(
    secret: &[u8; 16],
    client: &[u8; 8],
    server: &[u8; 16],
    ldns: &[u8; 16],
    now: u32,
    m: &mut [u8; 32],
) -> bool {
    if server[0] != 1 || server[1] | server[2] | server[3] != 0 {
        return false;
    }
    let ts = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
    let age = now.wrapping_sub(ts);
    let ahead = ts.wrapping_sub(now);
    if age > COOKIE_MAX_AGE && ahead > COOKIE_MAX_FUTURE {
        return false;
    }
    let head = [server[0], server[1], server[2], server[3], server[4], server[5], server[6], server[7]];
    let h = cookie_hash(secret, client, &head, ldns, m);
    let mut diff = 0u8;
    let mut i = 0;
    while i < 8 {
        diff |= h[i] ^ server[8 + i];
        i += 1;
    }
    diff == 0
}

/// [`server_cookie_valid_with`] with its own message buffer.
pub fn server_cookie_valid(secret: &[u8; 16], client: &[u8; 8], server: &[u8; 16], ldns: &[u8; 16], now: u32) -> bool {
    server_cookie_valid_with(secret, client, server, ldns, now, &mut [0; 32])
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::hash::Hasher;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[10] = 0xff;
        x[11] = 0xff;
        x[12..].copy_from_slice(&a);
        x
    }

    #[test]
    fn siphash_matches_the_siphasher_crate_for_both_message_lengths() {
        let key: [u8; 16] = core::array::from_fn(|i| i as u8 * 7 + 1);
        for seed in 0..200u64 {
            let m20: [u8; 20] = core::array::from_fn(|i| (seed.wrapping_mul(31) as u8).wrapping_add(i as u8 * 13));
            let m32: [u8; 32] = core::array::from_fn(|i| (seed.wrapping_mul(17) as u8) ^ (i as u8 * 5));
            let reference = |m: &[u8]| {
                let mut h = siphasher::sip::SipHasher24::new_with_key(&key);
                h.write(m);
                h.finish()
            };
            assert_eq!(siphash24(&key, &m20), reference(&m20));
            assert_eq!(siphash24(&key, &m32), reference(&m32));
        }
    }

    /// RFC 9018 Appendix A.1 and A.2.
    #[test]
    fn server_cookies_match_the_rfc_9018_test_vectors() {
        let secret: [u8; 16] = hex("e5e973e5a6b2a43f48e7dc849e37bfcf");
        let client: [u8; 8] = hex("2464c4abcf10c957");
        let ip = v4([198, 51, 100, 100]);
        let a1: [u8; 16] = hex("010000005cf79f111f8130c3eee29480");
        assert_eq!(server_cookie(&secret, &client, &ip, 1559731985), a1);
        let a2: [u8; 16] = hex("010000005cf7a871d4a564a1442aca77");
        assert_eq!(server_cookie(&secret, &client, &ip, 1559734385), a2);
        // A.1's cookie is valid 40 minutes later (A.2), not after an hour,
        // not for another address or client, not under another secret.
        assert!(server_cookie_valid(&secret, &client, &a1, &ip, 1559734385));
        assert!(!server_cookie_valid(&secret, &client, &a1, &ip, 1559731985 + 3601));
        assert!(server_cookie_valid(&secret, &client, &a1, &ip, 1559731985 - 299), "a little ahead is fine");
        assert!(!server_cookie_valid(&secret, &client, &a1, &ip, 1559731985 - 301));
        assert!(!server_cookie_valid(&secret, &client, &a1, &v4([198, 51, 100, 101]), 1559731990));
        assert!(!server_cookie_valid(&secret, &hex("2464c4abcf10c958"), &a1, &ip, 1559731990));
        assert!(!server_cookie_valid(&[0; 16], &client, &a1, &ip, 1559731990));
        let v6: [u8; 16] = hex("20010db8000000000000000000000053");
        let c6 = server_cookie(&secret, &client, &v6, 1559731985);
        assert!(server_cookie_valid(&secret, &client, &c6, &v6, 1559731985));
        assert!(!server_cookie_valid(&secret, &client, &c6, &ip, 1559731985));
    }
}
