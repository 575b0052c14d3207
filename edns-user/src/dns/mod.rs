//! Request handling: DNS wire bytes in, DNS wire bytes out. Zone logic lives
//! here; which VS answers lives in [`crate::select`].

pub mod ecs;
pub mod plain;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use edns_common::ClientSubnet as Subnet;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use serde::Serialize;

use crate::cookies::{Cookies, Verdict};
use crate::model::Model;
use crate::zone::Lookup;
use crate::select::{Outcome, Selector};
use crate::store::now_ns;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Largest UDP response without EDNS (RFC 1035).
const CLASSIC_UDP_LIMIT: usize = 512;

#[derive(Default, Serialize)]
pub struct Stats {
    pub queries: AtomicU64,
    pub dropped: AtomicU64,
    pub noerror: AtomicU64,
    pub nxdomain: AtomicU64,
    pub refused: AtomicU64,
    pub formerr: AtomicU64,
    pub notimp: AtomicU64,
    pub servfail: AtomicU64,
    pub badvers: AtomicU64,
    pub truncated: AtomicU64,
    /// Queries that carried a well-formed client subnet (ECS).
    pub client_subnet: AtomicU64,
    /// Queries by transport.
    pub udp_queries: AtomicU64,
    pub tcp_queries: AtomicU64,
}

impl Stats {
    fn count(&self, rcode: ResponseCode) {
        let c = match rcode {
            ResponseCode::NoError => &self.noerror,
            ResponseCode::NXDomain => &self.nxdomain,
            ResponseCode::Refused => &self.refused,
            ResponseCode::FormErr => &self.formerr,
            ResponseCode::NotImp => &self.notimp,
            ResponseCode::BADVERS => &self.badvers,
            _ => &self.servfail,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct Responder {
    pub model: Arc<Model>,
    pub selector: Selector,
    /// Shared with the responders of earlier configs (a reload keeps counting).
    pub stats: Arc<Stats>,
    pub cookies: Arc<Cookies>,
    /// Rate limiting of UDP answers (`[rrl]`).
    pub rrl: Option<crate::rrl::Limiter>,
}

/// Who asks: the LDNS, the client subnet it sent (family 0: none), and
/// where the wide IP's answer leaves the ECS scope to echo (`None`: no ECS
/// in the response).
struct Asker {
    src: IpAddr,
    subnet: Subnet,
    scope: std::cell::Cell<Option<u8>>,
    /// Selection already made for the question's wide IP (the plain path's,
    /// when it could not write the answer itself).
    picked: std::cell::Cell<Option<Picked>>,
}

/// What selection gave a wide IP: the SAC's (or fallback) addresses, or the
/// RCODE to answer with.
type Picked = Result<(Ipv4Addr, Option<Ipv6Addr>), ResponseCode>;

/// The client subnet's address as its family reads.
fn subnet_addr(s: &Subnet) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(s.addr);
    match s.family {
        edns_common::ECS_FAMILY_V4 => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)),
        _ => IpAddr::V6(v6),
    }
}

use plain::{FLAG_CD, FLAG_QR, FLAG_RD, OPCODE_MASK};

impl Responder {
    /// A responder with cookies as the config says (a random secret unless one is set).
    pub fn new(model: Arc<Model>, selector: Selector) -> Responder {
        let c = &model.server.cookies;
        let cookies = Arc::new(Cookies::new(c.enabled, c.secret));
        Responder::with_cookies(model, selector, cookies)
    }

    pub fn with_cookies(model: Arc<Model>, selector: Selector, cookies: Arc<Cookies>) -> Responder {
        Responder::with_stats(model, selector, cookies, Arc::new(Stats::default()))
    }

    pub fn with_stats(model: Arc<Model>, selector: Selector, cookies: Arc<Cookies>, stats: Arc<Stats>) -> Responder {
        let rrl = model.server.rrl.map(crate::rrl::Limiter::new);
        Responder { model, selector, stats, cookies, rrl }
    }

    /// Answers one query; `None` means drop it (too short to carry an ID, or
    /// a response, which must never be answered). A plain question for a
    /// wide IP is answered on the bytes ([`plain`]); the rest through hickory.
    pub fn respond(&self, query: &[u8], src: IpAddr, transport: Transport) -> Option<Vec<u8>> {
        self.stats.queries.fetch_add(1, Ordering::Relaxed);
        match transport {
            Transport::Udp => &self.stats.udp_queries,
            Transport::Tcp => &self.stats.tcp_queries,
        }
        .fetch_add(1, Ordering::Relaxed);
        if query.len() < 12 || u16::from_be_bytes([query[2], query[3]]) & FLAG_QR != 0 {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if let Some(p) = plain::PlainQuery::parse(query) {
            if let Some(w) = self.model.wide_ip_by_wire(p.name) {
                return self.respond_plain(&p, w, query, src, transport);
            }
        }
        self.general(query, src, transport, None, None)
    }

    /// The general path alone, as [`Responder::respond`] takes it for any
    /// query that is not plain (the tests hold both paths to the same bytes).
    pub fn respond_general(&self, query: &[u8], src: IpAddr, transport: Transport) -> Option<Vec<u8>> {
        self.general(query, src, transport, None, None)
    }

    /// Rate limiting's verdict (UDP only, and not for a source `proven` by
    /// our valid server cookie): `Some(slip)`, or `None` to drop.
    fn admit(&self, transport: Transport, src: IpAddr, proven: impl FnOnce() -> bool) -> Option<bool> {
        let (Transport::Udp, Some(l)) = (transport, &self.rrl) else { return Some(false) };
        if proven() {
            return Some(false);
        }
        match l.admit(src, now_ns()) {
            crate::rrl::Admit::Answer => Some(false),
            crate::rrl::Admit::Slip => Some(true),
            crate::rrl::Admit::Drop => None,
        }
    }

    /// A plain question for wide IP `w`: an address answer written on the
    /// bytes; any other outcome (an error, AAAA without an IPv6 address, a
    /// slip) through the general path, with the selection already made.
    fn respond_plain(&self, p: &plain::PlainQuery, w: &crate::model::WideIp, query: &[u8], src: IpAddr, transport: Transport) -> Option<Vec<u8>> {
        // With cookies off, a COOKIE option is ignored, as the general path does.
        let cookie = p.cookie.filter(|_| self.cookies.enabled());
        let ldns = crate::model::ip16(src);
        if self.admit(transport, src, || cookie.is_some_and(|c| self.cookies.is_valid(c, &ldns)))? {
            return self.general(query, src, transport, Some(true), None);
        }
        let asker = Asker { src, subnet: Subnet::default(), scope: Default::default(), picked: Default::default() };
        let picked = self.pick(w, &asker);
        let rdata = match (picked, p.qtype) {
            (Ok((v4, _)), plain::TYPE_A) => &v4.octets()[..],
            (Ok((_, Some(v6))), plain::TYPE_AAAA) => &v6.octets()[..],
            _ => return self.general(query, src, transport, Some(false), Some(picked)),
        };
        // Judged (and counted) only here: the general path judges its own.
        let echo = match cookie.map(|c| self.cookie_echo(c, &ldns)) {
            None => None,
            Some(Ok(echo)) => Some(echo),
            // Not a plain cookie's length: never here, but the general path knows the answer.
            Some(Err(())) => return self.general(query, src, transport, Some(false), Some(picked)),
        };
        self.stats.count(ResponseCode::NoError);
        Some(p.address_answer(w.answer_ttl, rdata, self.model.server.edns_payload, echo.as_deref()))
    }

    /// The general path: the query decoded into a hickory `Message`, the
    /// answer encoded from one. `admitted`: rate limiting's verdict when
    /// already taken; `picked`: the selection when already made.
    fn general(&self, query: &[u8], src: IpAddr, transport: Transport, admitted: Option<bool>, picked: Option<Picked>) -> Option<Vec<u8>> {
        let req = match Message::from_vec(query) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%src, error = %e, "malformed query, FORMERR");
                return Some(self.bare_error(query, ResponseCode::FormErr));
            }
        };
        let slip = match admitted {
            Some(slip) => slip,
            // Unless our valid server cookie proves the source.
            None => self.admit(transport, src, || self.has_valid_cookie(&req, src))?,
        };
        let resp = self.answer(&req, query, src, picked);
        if slip {
            // TC=1 and no data: a real resolver asks again over TCP. No
            // client subnet either: nothing was answered for it.
            let mut t = resp.truncate();
            if let Some(e) = t.edns.as_mut() {
                e.options_mut().remove(EdnsCode::Subnet);
            }
            return t.to_vec().ok();
        }
        self.stats.count(resp.metadata.response_code);
        let limit = match (transport, &req.edns) {
            (Transport::Tcp, _) => u16::MAX as usize,
            (Transport::Udp, None) => CLASSIC_UDP_LIMIT,
            (Transport::Udp, Some(e)) => {
                (e.max_payload().min(self.model.server.edns_payload) as usize).max(CLASSIC_UDP_LIMIT)
            }
        };
        let bytes = match resp.to_vec() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(%src, error = %e, "cannot encode response, SERVFAIL");
                return Some(self.bare_error(query, ResponseCode::ServFail));
            }
        };
        if bytes.len() <= limit {
            return Some(bytes);
        }
        self.stats.truncated.fetch_add(1, Ordering::Relaxed);
        resp.truncate().to_vec().ok()
    }

    /// A header-only error response built from the raw query header, for
    /// queries hickory cannot parse.
    fn bare_error(&self, query: &[u8], rcode: ResponseCode) -> Vec<u8> {
        self.stats.count(rcode);
        let flags = u16::from_be_bytes([query[2], query[3]]);
        let out = FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | (u16::from(rcode) & 0xf);
        let mut b = vec![0u8; 12];
        b[..2].copy_from_slice(&query[..2]);
        b[2..4].copy_from_slice(&out.to_be_bytes());
        b
    }

    fn answer(&self, req: &Message, raw: &[u8], src: IpAddr, picked: Option<Picked>) -> Message {
        let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
        resp.metadata.authoritative = true;
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.checking_disabled = req.metadata.checking_disabled;
        resp.add_queries(req.queries.iter().cloned());
        if let Some(req_edns) = &req.edns {
            let mut e = Edns::new();
            e.set_max_payload(self.model.server.edns_payload);
            e.set_version(0);
            // RFC 3225: DO is copied into the response.
            e.set_dnssec_ok(req_edns.flags().dnssec_ok);
            // RFC 5001: our identifier, only to a query that asks for it.
            if let (Some(id), Some(_)) = (&self.model.server.nsid, req_edns.option(EdnsCode::NSID)) {
                if let Ok(p) = NSIDPayload::new(id.clone()) {
                    e.options_mut().insert(EdnsOption::NSID(p));
                }
            }
            let cookie = self.cookie_option(req_edns, src);
            if let Some(Ok(data)) = &cookie {
                e.options_mut().insert(EdnsOption::Unknown(u16::from(EdnsCode::Cookie), data.clone()));
            }
            resp.set_edns(e);
            if let Some(Err(())) = cookie {
                resp.metadata.response_code = ResponseCode::FormErr;
                return resp;
            }
        }
        let Ok(subnet) = self.client_subnet(req, raw, src) else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp;
        };
        if req.metadata.op_code != OpCode::Query {
            resp.metadata.response_code = ResponseCode::NotImp;
            return resp;
        }
        if let Some(e) = &req.edns {
            if e.version() > 0 {
                resp.metadata.response_code = ResponseCode::BADVERS;
                return resp;
            }
        }
        if req.queries.len() != 1 {
            resp.queries.clear();
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp;
        }
        let q = &req.queries[0];
        let asker = Asker { src, subnet, scope: Default::default(), picked: std::cell::Cell::new(picked) };
        resp.metadata.response_code = self.resolve(q, &asker, &mut resp);
        if let (Some(scope), Some(e), true) = (asker.scope.get(), resp.edns.as_mut(), subnet.family != 0) {
            // Between NSID and COOKIE, where the kernel writes it.
            let echo = EdnsOption::Subnet(ClientSubnet::new(subnet_addr(&subnet), subnet.source, scope));
            let opts: &mut Vec<(EdnsCode, EdnsOption)> = e.options_mut().as_mut();
            let at = opts.iter().position(|(c, _)| *c == EdnsCode::Cookie).unwrap_or(opts.len());
            opts.insert(at, (EdnsCode::Subnet, echo));
        }
        resp
    }

    /// The query's client subnet (family 0: none); `Err` for a malformed
    /// one, which RFC 7871 §6 has a server refuse with FORMERR.
    fn client_subnet(&self, req: &Message, raw: &[u8], src: IpAddr) -> Result<Subnet, ()> {
        if req.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)).is_none() {
            return Ok(Subnet::default());
        }
        match ecs::client_subnet(raw) {
            Ok(s) => {
                self.stats.client_subnet.fetch_add(1, Ordering::Relaxed);
                Ok(s.unwrap_or_default())
            }
            Err(()) => {
                tracing::debug!(%src, "malformed client subnet, FORMERR");
                Err(())
            }
        }
    }

    /// True when the query carries our valid server cookie (not counted).
    fn has_valid_cookie(&self, req: &Message, src: IpAddr) -> bool {
        let Some(EdnsOption::Unknown(_, data)) = req.edns.as_ref().and_then(|e| e.option(EdnsCode::Cookie)) else { return false };
        self.cookies.enabled() && self.cookies.is_valid(data, &crate::model::ip16(src))
    }

    /// The response's COOKIE option data for a query that sent one:
    /// `Err` for a malformed option (FORMERR), `None` without one or with
    /// cookies off.
    fn cookie_option(&self, e: &Edns, src: IpAddr) -> Option<Result<Vec<u8>, ()>> {
        if !self.cookies.enabled() {
            return None;
        }
        let data = match e.option(EdnsCode::Cookie)? {
            EdnsOption::Unknown(_, d) => d,
            _ => return None, // a COOKIE always parses as an unknown option
        };
        Some(self.cookie_echo(data, &crate::model::ip16(src)))
    }

    /// The response's COOKIE option data for a query's COOKIE `data` from
    /// `ldns`, judged and counted: `Err` for a malformed option (FORMERR).
    fn cookie_echo(&self, data: &[u8], ldns: &[u8; 16]) -> Result<Vec<u8>, ()> {
        match self.cookies.judge(data, ldns) {
            Verdict::Malformed => Err(()),
            _ => {
                let client: [u8; 8] = data[..8].try_into().expect("judged at least 8 bytes");
                Ok(self.cookies.response_option(&client, ldns))
            }
        }
    }

    fn soa_record(&self) -> Record {
        let s = &self.model.server.soa;
        Record::from_rdata(
            self.model.server.zone.clone(),
            s.minimum,
            RData::SOA(SOA::new(s.mname.clone(), s.rname.clone(), s.serial, s.refresh, s.retry, s.expire, s.minimum)),
        )
    }

    fn resolve(&self, q: &Query, asker: &Asker, resp: &mut Message) -> ResponseCode {
        let zone = &self.model.server.zone;
        let qname = q.name();
        if q.query_class() != DNSClass::IN || !zone.zone_of(qname) {
            resp.metadata.authoritative = false;
            return ResponseCode::Refused;
        }
        let qtype = q.query_type();
        // No zone transfers: refused at once (RFC 5936 §2.2.1 allows it).
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            resp.metadata.authoritative = false;
            return ResponseCode::Refused;
        }
        // hickory compares names case-insensitively: no lowercased copy.
        if *qname == *zone {
            let ttl = self.model.server.answer_ttl;
            if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                let mut soa = self.soa_record();
                soa.name = qname.clone(); // the question's spelling, so it compresses
                resp.add_answer(soa);
            }
            if matches!(qtype, RecordType::NS | RecordType::ANY) {
                for ns in &self.model.server.nameservers {
                    resp.add_answer(Record::from_rdata(qname.clone(), ttl, RData::NS(NS(ns.clone()))));
                    // In-zone name servers' addresses, so a resolver needs no second query.
                    for a in self.model.server.static_zone.addresses(ns) {
                        resp.add_additional(a.clone());
                    }
                }
            }
            // Other apex data (MX, TXT, CAA, ...) from the zone file.
            if let Lookup::Records(rs) = self.model.server.static_zone.lookup(qname, qtype) {
                if !matches!(qtype, RecordType::SOA | RecordType::NS) {
                    for r in rs {
                        resp.add_answer(r.clone());
                    }
                }
            }
            if resp.answers.is_empty() {
                resp.add_authority(self.soa_record());
            }
            return ResponseCode::NoError;
        }
        let Some(w) = self.model.wide_ip(qname) else {
            return self.resolve_static(qname, qtype, asker, resp);
        };
        self.answer_wide_ip(w, qname, qtype, asker, resp)
    }

    /// Static data: a referral below a zone cut, a CNAME (followed once into
    /// a wide IP or static data of the zone), records, NODATA or NXDOMAIN.
    fn resolve_static(&self, qname: &Name, qtype: RecordType, asker: &Asker, resp: &mut Message) -> ResponseCode {
        let zone = &self.model.server.static_zone;
        match zone.lookup(qname, qtype) {
            Lookup::Delegation { ns, glue } => {
                // A referral: not authoritative for the child's data.
                resp.metadata.authoritative = false;
                for r in ns {
                    resp.add_authority(r.clone());
                }
                for r in glue {
                    resp.add_additional(r.clone());
                }
                ResponseCode::NoError
            }
            Lookup::Cname(c) => {
                let mut c = c.clone();
                c.name = qname.clone(); // the question's spelling, so it compresses
                resp.add_answer(c.clone());
                let RData::CNAME(target) = &c.data else { return ResponseCode::NoError };
                let target = &target.0;
                if !self.model.server.zone.zone_of(target) {
                    return ResponseCode::NoError; // the resolver follows it elsewhere
                }
                if let Some(w) = self.model.wide_ip(target) {
                    return self.answer_wide_ip(w, target, qtype, asker, resp);
                }
                // One step only: the resolver asks again for anything further.
                if let Lookup::Records(rs) = zone.lookup(target, qtype) {
                    for r in rs {
                        resp.add_answer(r.clone());
                    }
                }
                ResponseCode::NoError
            }
            Lookup::Records(rs) => {
                if rs.is_empty() {
                    resp.add_authority(self.soa_record());
                }
                for r in rs {
                    resp.add_answer(r.clone());
                }
                ResponseCode::NoError
            }
            Lookup::None => {
                resp.add_authority(self.soa_record());
                // An empty non-terminal exists (NODATA); anything else does not.
                if self.model.has_names_below(qname) || zone.has_names_below(qname) {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                }
            }
        }
    }

    /// The wide IP's answer for `owner` (the question, or a CNAME's target).
    fn answer_wide_ip(&self, w: &crate::model::WideIp, qname: &Name, qtype: RecordType, asker: &Asker, resp: &mut Message) -> ResponseCode {
        // A wide IP with ECS echoes the client subnet (RFC 7871 §7.2.1),
        // scope 0 unless the answer came from the address.
        if w.ecs.is_some() {
            asker.scope.set(Some(0));
        }
        if !matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY) {
            resp.add_authority(self.soa_record());
            return ResponseCode::NoError;
        }
        let (v4, v6) = match asker.picked.take().unwrap_or_else(|| self.pick(w, asker)) {
            Ok(addrs) => addrs,
            // The all-down policy chose an error: no data to give.
            Err(rcode) => {
                resp.metadata.authoritative = rcode != ResponseCode::Refused;
                return rcode;
            }
        };
        let rdata = match qtype {
            RecordType::AAAA => v6.map(|a| RData::AAAA(AAAA(a))),
            _ => Some(RData::A(A(v4))),
        };
        match rdata {
            // The answer owner is the question name itself, so it compresses to 0xC00C.
            Some(rd) => {
                resp.add_answer(Record::from_rdata(qname.clone(), w.answer_ttl, rd));
            }
            None => {
                resp.add_authority(self.soa_record());
            }
        }
        ResponseCode::NoError
    }

    /// Selection for wide IP `w` (and, with ECS on, the scope to echo).
    fn pick(&self, w: &crate::model::WideIp, asker: &Asker) -> Picked {
        let src = asker.src;
        let selection = match self.selector.select(w, src, &asker.subnet, now_ns()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(wide_ip = %w.name, %src, error = %e, "selection failed, SERVFAIL");
                return Err(ResponseCode::ServFail);
            }
        };
        if w.ecs.is_some() {
            asker.scope.set(Some(selection.scope));
        }
        match selection.outcome {
            Outcome::Vs(d) => {
                tracing::debug!(wide_ip = %w.name, %src, vs = %self.model.vss[d.vs as usize].name, how = ?d.how, "selected");
                let sac = &self.model.sacs[d.sac as usize];
                Ok((sac.address, sac.address6))
            }
            Outcome::Fallback(v4, v6) => Ok((v4, v6)),
            Outcome::Refused => Err(ResponseCode::Refused),
            Outcome::ServFail => Err(ResponseCode::ServFail),
        }
    }
}
