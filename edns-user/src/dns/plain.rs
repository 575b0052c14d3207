//! The question nearly every resolver sends for a wide IP — one question,
//! A or AAAA in class IN, at most an OPT record with no option but a COOKIE
//! (a client cookie, or one with a server cookie of our length) — read and
//! answered on the bytes, as the XDP program does, with no hickory
//! `Message` decoded or encoded. Anything else, and any answer other than an
//! address, takes the general path; the tests below hold the two to the
//! same bytes.

use edns_common::{CLIENT_COOKIE_LEN, SERVER_COOKIE_LEN};

/// Header flag bits (second and third header bytes as one u16).
pub const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
pub const FLAG_RD: u16 = 0x0100;
pub const FLAG_CD: u16 = 0x0010;
pub const OPCODE_MASK: u16 = 0x7800;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const OPTION_COOKIE: u16 = 10;
/// The COOKIE option data a plain query may carry: a client cookie alone,
/// or with a server cookie of the length we issue (other lengths: general path).
const COOKIE_LENS: [usize; 2] = [CLIENT_COOKIE_LEN, CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN];
const CLASS_IN: u16 = 1;
/// The DO bit in an OPT record's flags.
const EDNS_DO: u16 = 0x8000;

/// Longest name on the wire (RFC 1035 §2.3.4), the root label included.
const NAME_MAX: usize = 255;

/// A query of the plain shape, borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainQuery<'a> {
    id: [u8; 2],
    flags: u16,
    /// The question name as sent (case kept), root label included.
    pub name: &'a [u8],
    /// Name, type and class: copied into the answer as they came.
    question: &'a [u8],
    /// A (1) or AAAA (28).
    pub qtype: u16,
    /// With an OPT record: its DO bit.
    edns_do: Option<bool>,
    /// The COOKIE option's data, when the OPT record carries one.
    pub cookie: Option<&'a [u8]>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The question name's wire length: uncompressed labels to the root, at
/// most [`NAME_MAX`] bytes.
fn name_len(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let l = *b.get(at)? as usize;
        // A pointer or a reserved label type: the general path judges it.
        if l & 0xc0 != 0 {
            return None;
        }
        at += 1 + l;
        if at > NAME_MAX {
            return None;
        }
        if l == 0 {
            return Some(at);
        }
    }
}

impl<'a> PlainQuery<'a> {
    /// The query, if it has the plain shape and nothing after it.
    pub fn parse(q: &'a [u8]) -> Option<PlainQuery<'a>> {
        let flags = u16_at(q, 2)?;
        if flags & (FLAG_QR | OPCODE_MASK) != 0 {
            return None;
        }
        let counts = [u16_at(q, 4)?, u16_at(q, 6)?, u16_at(q, 8)?, u16_at(q, 10)?];
        if counts[..3] != [1, 0, 0] || counts[3] > 1 {
            return None;
        }
        let name_end = 12 + name_len(q.get(12..)?)?;
        let qtype = u16_at(q, name_end)?;
        if !matches!(qtype, TYPE_A | TYPE_AAAA) || u16_at(q, name_end + 2)? != CLASS_IN {
            return None;
        }
        let end = name_end + 4;
        let (edns_do, cookie, len) = match counts[3] {
            0 => (None, None, end),
            _ => {
                let (dnssec_ok, cookie) = opt(q.get(end..)?)?;
                (Some(dnssec_ok), cookie, end + 11 + cookie.map_or(0, |c| 4 + c.len()))
            }
        };
        (q.len() == len).then_some(PlainQuery { id: [q[0], q[1]], flags, name: &q[12..name_end], question: &q[12..end], qtype, edns_do, cookie })
    }

    /// The answer with one address record (4 bytes for A, 16 for AAAA),
    /// owned by the question name (a pointer to it), and our OPT record
    /// when the query had one, with `cookie` as its COOKIE option's data.
    pub fn address_answer(&self, ttl: u32, rdata: &[u8], edns_payload: u16, cookie: Option<&[u8]>) -> Vec<u8> {
        let cookie_len = cookie.map_or(0, |c| 4 + c.len());
        let mut b = Vec::with_capacity(12 + self.question.len() + 12 + rdata.len() + 11 + cookie_len);
        let flags = FLAG_QR | FLAG_AA | (self.flags & (FLAG_RD | FLAG_CD));
        let arcount = u16::from(self.edns_do.is_some());
        b.extend_from_slice(&self.id);
        for w in [flags, 1, 1, 0, arcount] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.extend_from_slice(self.question);
        b.extend_from_slice(&[0xc0, 12]);
        b.extend_from_slice(&self.qtype.to_be_bytes());
        b.extend_from_slice(&CLASS_IN.to_be_bytes());
        b.extend_from_slice(&ttl.to_be_bytes());
        b.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        b.extend_from_slice(rdata);
        if let Some(dnssec_ok) = self.edns_do {
            // Root owner, OPT, our payload size, extended RCODE 0, version 0, DO copied (RFC 3225).
            b.push(0);
            b.extend_from_slice(&TYPE_OPT.to_be_bytes());
            b.extend_from_slice(&edns_payload.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&(if dnssec_ok { EDNS_DO } else { 0 }).to_be_bytes());
            b.extend_from_slice(&(cookie_len as u16).to_be_bytes());
            if let Some(c) = cookie {
                b.extend_from_slice(&OPTION_COOKIE.to_be_bytes());
                b.extend_from_slice(&(c.len() as u16).to_be_bytes());
                b.extend_from_slice(c);
            }
        }
        b
    }
}

/// An OPT record of version 0 with no option or one COOKIE of a plain
/// length: its DO bit and the cookie's data.
fn opt(rr: &[u8]) -> Option<(bool, Option<&[u8]>)> {
    // root owner, type, payload size, extended RCODE, version, flags, RDLENGTH
    let &[0, _, _, _, _, _, version, _, _, _, _] = rr.get(..11)? else {
        return None;
    };
    if u16_at(rr, 1)? != TYPE_OPT || version != 0 {
        return None;
    }
    let dnssec_ok = u16_at(rr, 7)? & EDNS_DO != 0;
    let cookie = match u16_at(rr, 9)? as usize {
        0 => None,
        rdlen => {
            let len = u16_at(rr, 13)? as usize;
            if u16_at(rr, 11)? != OPTION_COOKIE || rdlen != 4 + len || !COOKIE_LENS.contains(&len) {
                return None;
            }
            Some(rr.get(15..15 + len)?)
        }
    };
    Some((dnssec_ok, cookie))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    use edns_common::VS_UP;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::cookies::{wall_secs, Cookies};
    use crate::dns::{Responder, Transport};
    use crate::select::Selector;
    use crate::store::{MemoryStore, Store};

    /// Wide IPs beside the demo's: one for each all-down policy that answers
    /// no address, and one with its own TTL.
    const EXTRA: &str = r#"
[[wide_ip]]
name = "no.gslb.example."
mode = "topology"
all_down = "refused"
pool = ["east/vs2"]

[[wide_ip]]
name = "fail.gslb.example."
mode = "topology"
all_down = "servfail"
pool = ["west/vs1"]

[[wide_ip]]
name = "brief.gslb.example."
mode = "dynamic"
method = "round_robin"
persistence_ttl = 60
answer_ttl = 7
pool = ["east/vs1", "west/vs1"]
"#;

    /// The demo config with a payload size of our own, `rrl` (a table)
    /// before its first SAC, and the [`EXTRA`] wide IPs.
    fn config(rrl: &str) -> Arc<crate::model::Model> {
        let demo = include_str!("../../../examples/demo.toml");
        let text = demo.replacen("answer_ttl = 30\n", "answer_ttl = 30\nedns_payload = 1400\n", 1).replacen("[[sac]]", &format!("{rrl}[[sac]]"), 1) + EXTRA;
        Arc::new(crate::config::parse(std::path::Path::new("demo.toml"), &text).unwrap())
    }

    /// The cookie secret both responders of a test share.
    const SECRET: [u8; 16] = *b"plain-path-tests";

    /// Two responders on one config, each with its own store and cookie
    /// state (one secret, cookies on or off).
    fn responders_with(model: Arc<crate::model::Model>, cookies: bool) -> (Responder, Responder, Arc<dyn Store>, Arc<dyn Store>) {
        let store = || -> Arc<dyn Store> { Arc::new(MemoryStore::new(vec![VS_UP; model.vss.len()], model.wide_ips.len(), 1 << 16)) };
        let (a, b) = (store(), store());
        let r = |s: &Arc<dyn Store>| {
            Responder::with_cookies(model.clone(), Selector::new(model.clone(), s.clone()), Arc::new(Cookies::new(cookies, Some(SECRET))))
        };
        (r(&a), r(&b), a, b)
    }

    fn responders() -> (Responder, Responder, Arc<dyn Store>, Arc<dyn Store>) {
        responders_with(config(""), true)
    }

    /// `q` (its OPT record last) with a COOKIE option of `data` added.
    fn with_cookie(q: &[u8], data: &[u8]) -> Vec<u8> {
        let mut q = q.to_vec();
        let rdlen = q.len() - 2;
        q[rdlen..].copy_from_slice(&(4 + data.len() as u16).to_be_bytes());
        q.extend_from_slice(&OPTION_COOKIE.to_be_bytes());
        q.extend_from_slice(&(data.len() as u16).to_be_bytes());
        q.extend_from_slice(data);
        q
    }

    /// A COOKIE option to send from `src`: a client cookie alone, with our
    /// valid server cookie, or with a server cookie of our length that is not ours.
    fn some_cookie(rng: &mut impl Rng, src: IpAddr) -> Vec<u8> {
        let client: [u8; 8] = rng.random();
        match rng.random_range(0..3) {
            0 => client.to_vec(),
            1 => Cookies::new(true, Some(SECRET)).response_option(&client, &crate::model::ip16(src)),
            _ => [&client[..], &rng.random::<[u8; 16]>()].concat(),
        }
    }

    /// The cookie verdicts a responder counted.
    fn verdicts(r: &Responder) -> [u64; 4] {
        let s = &r.cookies.stats;
        [&s.client_only, &s.valid, &s.bad, &s.malformed].map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Both answers to `q`, taken within one second of the wall clock (a
    /// server cookie carries the second it was made in).
    fn both(plain: &Responder, general: &Responder, q: &[u8], src: IpAddr) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        loop {
            let t = wall_secs();
            let (a, b) = (plain.respond(q, src, Transport::Udp), general.respond_general(q, src, Transport::Udp));
            if wall_secs() == t {
                return (a, b);
            }
        }
    }

    fn wire_name(name: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for l in name.trim_end_matches('.').split('.') {
            w.push(l.len() as u8);
            w.extend_from_slice(l.as_bytes());
        }
        w.push(0);
        w
    }

    /// A query: header, one question, and an OPT record when `opt` is (DO, payload).
    fn query(id: u16, flags: u16, name: &[u8], qtype: u16, opt: Option<(bool, u16)>) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        for w in [flags, 1, 0, 0, u16::from(opt.is_some())] {
            q.extend_from_slice(&w.to_be_bytes());
        }
        q.extend_from_slice(name);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        if let Some((dnssec_ok, payload)) = opt {
            q.extend_from_slice(&[0, 0, 41]);
            q.extend_from_slice(&payload.to_be_bytes());
            q.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn plain_answers_are_byte_identical_to_the_general_paths_through_every_outcome() {
        let (plain, general, sa, sb) = responders();
        let names = ["www", "shop", "geo", "ring", "safe", "cdn", "no", "fail", "brief"];
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x9a1e);
        let (mut answered_plain, mut other_outcomes) = (0, 0);
        for i in 0..6000u32 {
            // Every VS down for a stretch: fallback, REFUSED, SERVFAIL and round robin.
            if i % 1000 == 500 || i % 1000 == 0 {
                let state = if i % 1000 == 500 { 0 } else { VS_UP };
                for vs in 0..plain.model.vss.len() as u32 {
                    sa.set_vs_state(vs, state).unwrap();
                    sb.set_vs_state(vs, state).unwrap();
                }
            }
            let label = names[rng.random_range(0..names.len())];
            let name: String = format!("{label}.gslb.example.").chars().map(|c| if rng.random_bool(0.5) { c.to_ascii_uppercase() } else { c }).collect();
            let qtype = if rng.random_bool(0.6) { TYPE_A } else { TYPE_AAAA };
            let flags = [0, FLAG_RD, FLAG_CD, FLAG_RD | FLAG_CD, 0x0020][rng.random_range(0..5)];
            let opt = rng.random_bool(0.6).then(|| (rng.random_bool(0.3), rng.random_range(0..4096)));
            let src = match rng.random_range(0..3) {
                0 => IpAddr::V4(Ipv4Addr::new(198, 18, 1, rng.random())),
                1 => IpAddr::V4(Ipv4Addr::from(rng.random::<u32>())),
                _ => IpAddr::V6(Ipv6Addr::from(rng.random::<u128>())),
            };
            let mut q = query(rng.random(), flags, &wire_name(&name), qtype, opt);
            if opt.is_some() && rng.random_bool(0.5) {
                q = with_cookie(&q, &some_cookie(&mut rng, src));
            }
            assert!(PlainQuery::parse(&q).is_some(), "{name}");
            let (a, b) = both(&plain, &general, &q, src);
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(a, b, "query {i}: {name} type {qtype} flags {flags:#x} opt {opt:?} from {src}: {q:?}");
            // An answer record, or an outcome the general path wrote.
            if u16::from_be_bytes([a[6], a[7]]) == 1 && a[3] & 0xf == 0 {
                answered_plain += 1;
            } else {
                other_outcomes += 1;
            }
        }
        assert!(answered_plain > 3000 && other_outcomes > 500, "{answered_plain} addresses, {other_outcomes} other outcomes");
        let counted = verdicts(&plain);
        assert_eq!(counted, verdicts(&general), "each cookie judged once, as the general path does");
        assert!(counted[..3].iter().all(|n| *n > 300), "client-only, valid and bad cookies all sent: {counted:?}");
    }

    #[test]
    fn a_cookie_is_answered_with_a_fresh_server_cookie_or_ignored_when_cookies_are_off() {
        let www = wire_name("www.gslb.example.");
        let src = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 9));
        let client = *b"clientck";
        let q = with_cookie(&query(3, FLAG_RD, &www, TYPE_A, Some((false, 1232))), &client);
        assert_eq!(PlainQuery::parse(&q).unwrap().cookie, Some(&client[..]));
        let (plain, general, _, _) = responders();
        let (a, b) = both(&plain, &general, &q, src);
        let a = a.unwrap();
        assert_eq!(Some(&a), b.as_ref());
        // The answer's last option: COOKIE, the client cookie and our server cookie.
        let option = &a[a.len() - 28..];
        assert_eq!((&option[..4], &option[4..12]), (&[0, 10, 0, 24][..], &client[..]));
        let data = &option[4..];
        assert!(plain.cookies.is_valid(data, &crate::model::ip16(src)), "the server cookie is ours for this source");
        // Sent back, it is judged valid.
        let again = with_cookie(&query(4, FLAG_RD, &www, TYPE_A, Some((false, 1232))), data);
        let (a2, b2) = both(&plain, &general, &again, src);
        assert_eq!(a2, b2);
        assert_eq!(verdicts(&plain), [1, 1, 0, 0]);

        let (plain, general, _, _) = responders_with(config(""), false);
        let (a, b) = both(&plain, &general, &q, src);
        let a = a.unwrap();
        assert_eq!(Some(&a), b.as_ref());
        assert_eq!(&a[a.len() - 2..], &[0, 0], "an OPT without options");
    }

    #[test]
    fn only_the_plain_shape_is_read_on_the_bytes() {
        let www = wire_name("www.gslb.example.");
        let ok = query(7, FLAG_RD, &www, TYPE_A, Some((true, 1232)));
        let p = PlainQuery::parse(&ok).unwrap();
        assert_eq!((p.name, p.qtype, p.edns_do), (&www[..], TYPE_A, Some(true)));
        assert!(PlainQuery::parse(&query(7, 0, &www, TYPE_AAAA, None)).is_some());

        let edit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut q = ok.clone();
            f(&mut q);
            q
        };
        let opt_at = 12 + www.len() + 4;
        let long: Vec<u8> = (0..5).flat_map(|_| std::iter::once(63u8).chain(std::iter::repeat_n(b'a', 63))).chain([0]).collect();
        for (why, q) in [
            ("a response", edit(&|q| q[2] |= 0x80)),
            ("opcode NOTIFY", edit(&|q| q[2] |= 4 << 3)),
            ("two questions", edit(&|q| q[5] = 2)),
            ("an answer record", edit(&|q| q[7] = 1)),
            ("an authority record", edit(&|q| q[9] = 1)),
            ("two additional records", edit(&|q| q[11] = 2)),
            ("type ANY", query(7, 0, &www, 255, None)),
            ("type MX", query(7, 0, &www, 15, None)),
            ("class CH", edit(&|q| q[opt_at - 1] = 3)),
            ("a compression pointer", query(7, 0, &[0xc0, 12], TYPE_A, None)),
            ("a reserved label type", query(7, 0, &[0x41, b'a', 0], TYPE_A, None)),
            ("a name over 255 bytes", query(7, 0, &long, TYPE_A, None)),
            ("EDNS version 1", edit(&|q| q[opt_at + 6] = 1)),
            ("an empty COOKIE", with_cookie(&ok, &[])),
            ("a COOKIE of 12 bytes", with_cookie(&ok, &[7; 12])),
            ("a server cookie of another length", with_cookie(&ok, &[7; 32])),
            ("a COOKIE over 40 bytes", with_cookie(&ok, &[7; 41])),
            ("an NSID option", edit(&|q| q.splice(q.len() - 2.., [0, 4, 0, 3, 0, 0]).for_each(drop))),
            ("a client subnet", edit(&|q| q.splice(q.len() - 2.., [0, 8, 0, 8, 0, 4, 0, 1, 0, 0]).for_each(drop))),
            ("an NSID and a COOKIE", edit(&|q| q.splice(q.len() - 2.., [0, 16, 0, 3, 0, 0, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]).for_each(drop))),
            ("an OPT length past the COOKIE", edit(&|q| q.splice(q.len() - 2.., [0, 13, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0]).for_each(drop))),
            ("a COOKIE cut short", with_cookie(&ok, &[7; 8])[..ok.len() + 11].to_vec()),
            ("an OPT not at the root", edit(&|q| q[opt_at] = 1)),
            ("not an OPT", edit(&|q| q[opt_at + 2] = 1)),
            ("a byte after the message", edit(&|q| q.push(0))),
            ("cut short", ok[..ok.len() - 1].to_vec()),
            ("no name's end", query(7, 0, &www[..www.len() - 1], TYPE_A, None)[..12 + www.len() - 1].to_vec()),
        ] {
            assert_eq!(PlainQuery::parse(&q), None, "{why}");
        }
    }

    #[test]
    fn rate_limited_plain_queries_are_dropped_or_slipped_as_the_general_path_does() {
        let (plain, general, _, _) = responders_with(config("[rrl]\nresponses_per_second = 1\nburst = 1\nslip = 2\n\n"), true);
        let q = query(9, FLAG_RD, &wire_name("www.gslb.example."), TYPE_A, Some((false, 1232)));
        let src = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
        // Within one second: the burst's one answer, then drop, slip, drop, slip.
        let a: Vec<_> = (0..5).map(|_| plain.respond(&q, src, Transport::Udp)).collect();
        let b: Vec<_> = (0..5).map(|_| general.respond_general(&q, src, Transport::Udp)).collect();
        assert_eq!(a, b);
        let tc = |r: &Option<Vec<u8>>| r.as_ref().map(|m| (m[2] & 0x02 != 0, u16::from_be_bytes([m[6], m[7]])));
        assert_eq!(a.iter().map(tc).collect::<Vec<_>>(), [Some((false, 1)), None, Some((true, 0)), None, Some((true, 0))]);
        // Past the limit, our valid server cookie proves the source and is
        // answered; a client cookie alone proves nothing.
        let proven = with_cookie(&q, &Cookies::new(true, Some(SECRET)).response_option(b"clientck", &crate::model::ip16(src)));
        let unproven = with_cookie(&q, b"clientck");
        let ask = |q: &[u8]| (tc(&plain.respond(q, src, Transport::Udp)), tc(&general.respond_general(q, src, Transport::Udp)));
        for _ in 0..3 {
            assert_eq!(ask(&proven), (Some((false, 1)), Some((false, 1))));
            let (a, b) = ask(&unproven);
            assert_eq!(a, b);
            assert_ne!(a, Some((false, 1)), "limited: dropped or slipped");
        }
    }
}
