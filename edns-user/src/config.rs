//! The TOML configuration and its validation into a [`Model`].
//!
//! Every error names the file, line, column and the problem; a config that
//! fails any check is refused whole.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::model::{Method, Model, ModeConfig, Sac, Soa, TopologyRule, Vs, WideIp};
use edns_common::MAX_POOL;

/// A config error located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: Spanned<RawServer>,
    #[serde(default)]
    sac: Vec<Spanned<RawSac>>,
    #[serde(default)]
    wide_ip: Vec<Spanned<RawWideIp>>,
    #[serde(default)]
    topology: Vec<Spanned<RawTopology>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Vec<Spanned<String>>,
    zone: Spanned<String>,
    nameservers: Spanned<Vec<Spanned<String>>>,
    #[serde(default = "default_answer_ttl")]
    answer_ttl: u32,
    control: Option<Spanned<String>>,
    /// Identifies this node in persistence records shared with other nodes.
    #[serde(default)]
    node_id: u32,
    /// EDNS UDP payload size advertised in responses.
    #[serde(default = "default_edns_payload")]
    edns_payload: Spanned<u16>,
    /// Capacity of the persistence table (records); the oldest are evicted.
    #[serde(default = "default_persistence_capacity")]
    persistence_capacity: Spanned<u32>,
    soa: Option<RawSoa>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoa {
    rname: Option<Spanned<String>>,
    #[serde(default = "default_serial")]
    serial: u32,
    #[serde(default = "default_refresh")]
    refresh: i32,
    #[serde(default = "default_retry")]
    retry: i32,
    #[serde(default = "default_expire")]
    expire: i32,
    minimum: Option<u32>,
}

fn default_answer_ttl() -> u32 {
    30
}
fn default_edns_payload() -> Spanned<u16> {
    Spanned::new(0..0, 1232)
}
fn default_persistence_capacity() -> Spanned<u32> {
    Spanned::new(0..0, 1 << 20)
}
fn default_serial() -> u32 {
    1
}
fn default_refresh() -> i32 {
    3600
}
fn default_retry() -> i32 {
    600
}
fn default_expire() -> i32 {
    604800
}
fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSac {
    name: Spanned<String>,
    address: Spanned<String>,
    address6: Option<Spanned<String>>,
    virtual_servers: Vec<Spanned<RawVs>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVs {
    name: Spanned<String>,
    /// Initial state: marked up and available.
    #[serde(default = "default_true")]
    up: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWideIp {
    name: Spanned<String>,
    mode: Spanned<String>,
    method: Option<Spanned<String>>,
    persistence_ttl: Option<Spanned<u32>>,
    answer_ttl: Option<u32>,
    pool: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    ldns: Spanned<String>,
    sac: Spanned<String>,
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Model, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        line: 0,
        column: 0,
        message: format!("cannot read config: {e}"),
    })?;
    parse(path, &text)
}

/// Validates config text; `path` only names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<Model, ConfigError> {
    let cx = Cx { path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        cx.err_at(at, e.message().trim().to_string())
    })?;
    build(&cx, raw)
}

struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn err_at(&self, offset: usize, message: String) -> ConfigError {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        ConfigError { file: self.path.to_owned(), line, column, message }
    }
    fn err<T>(&self, at: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.err_at(at.span().start, message.into())
    }
}

fn parse_fqdn(cx: &Cx, s: &Spanned<String>, what: &str) -> Result<Name, ConfigError> {
    let v = s.get_ref();
    if !v.ends_with('.') {
        return Err(cx.err(s, format!("{what} {v:?} must be fully qualified (end with '.')")));
    }
    let name = Name::from_ascii(v).map_err(|e| cx.err(s, format!("{what} {v:?} is not a valid DNS name: {e}")))?;
    Ok(name)
}

fn build(cx: &Cx, raw: RawConfig) -> Result<Model, ConfigError> {
    let server = raw.server.get_ref();

    let mut listen = Vec::new();
    for l in &server.listen {
        let a: SocketAddr = l
            .get_ref()
            .parse()
            .map_err(|e| cx.err(l, format!("listen address {:?} is not IP:PORT: {e}", l.get_ref())))?;
        if listen.contains(&a) {
            return Err(cx.err(l, format!("listen address {a} given twice")));
        }
        listen.push(a);
    }
    if listen.is_empty() {
        return Err(cx.err(&raw.server, "server.listen must name at least one address"));
    }

    let zone = parse_fqdn(cx, &server.zone, "zone")?.to_lowercase();
    let mut nameservers = Vec::new();
    for ns in server.nameservers.get_ref() {
        nameservers.push(parse_fqdn(cx, ns, "nameserver")?);
    }
    if nameservers.is_empty() {
        return Err(cx.err(&server.nameservers, "server.nameservers must name at least one nameserver"));
    }
    let control = match &server.control {
        None => None,
        Some(c) => Some(
            c.get_ref()
                .parse::<SocketAddr>()
                .map_err(|e| cx.err(c, format!("control address {:?} is not IP:PORT: {e}", c.get_ref())))?,
        ),
    };
    if *server.edns_payload.get_ref() < 512 {
        return Err(cx.err(&server.edns_payload, "edns_payload must be at least 512"));
    }
    if *server.persistence_capacity.get_ref() == 0 {
        return Err(cx.err(&server.persistence_capacity, "persistence_capacity must be at least 1"));
    }
    let soa = match &server.soa {
        None => Soa::defaults(&zone, &nameservers[0], server.answer_ttl),
        Some(s) => {
            let rname = match &s.rname {
                Some(r) => parse_fqdn(cx, r, "soa.rname")?,
                None => Soa::defaults(&zone, &nameservers[0], server.answer_ttl).rname,
            };
            Soa {
                mname: nameservers[0].clone(),
                rname,
                serial: s.serial,
                refresh: s.refresh,
                retry: s.retry,
                expire: s.expire,
                minimum: s.minimum.unwrap_or(server.answer_ttl),
            }
        }
    };

    // SACs and their virtual servers; VS ids are global, in config order.
    let mut sacs: Vec<Sac> = Vec::new();
    let mut vss: Vec<Vs> = Vec::new();
    let mut sac_ids: HashMap<String, u32> = HashMap::new();
    let mut vs_ids: HashMap<String, u32> = HashMap::new();
    for s in &raw.sac {
        let s = s.get_ref();
        let name = s.name.get_ref().clone();
        if name.is_empty() || name.contains('/') {
            return Err(cx.err(&s.name, format!("SAC name {name:?} must be non-empty and contain no '/'")));
        }
        if sac_ids.contains_key(&name) {
            return Err(cx.err(&s.name, format!("duplicate SAC name {name:?}")));
        }
        let address: Ipv4Addr = s
            .address
            .get_ref()
            .parse()
            .map_err(|e| cx.err(&s.address, format!("SAC {name:?}: address {:?} is not an IPv4 address: {e}", s.address.get_ref())))?;
        let address6 = match &s.address6 {
            None => None,
            Some(a) => Some(a.get_ref().parse::<Ipv6Addr>().map_err(|e| {
                cx.err(a, format!("SAC {name:?}: address6 {:?} is not an IPv6 address: {e}", a.get_ref()))
            })?),
        };
        let id = sacs.len() as u32;
        if s.virtual_servers.is_empty() {
            return Err(cx.err(&s.name, format!("SAC {name:?} has no virtual_servers")));
        }
        for v in &s.virtual_servers {
            let v = v.get_ref();
            let vname = v.name.get_ref();
            if vname.is_empty() || vname.contains('/') {
                return Err(cx.err(&v.name, format!("VS name {vname:?} must be non-empty and contain no '/'")));
            }
            let full = format!("{name}/{vname}");
            if vs_ids.contains_key(&full) {
                return Err(cx.err(&v.name, format!("duplicate virtual server {full:?}")));
            }
            vs_ids.insert(full.clone(), vss.len() as u32);
            vss.push(Vs { name: full, sac: id, initially_up: v.up });
        }
        sac_ids.insert(name.clone(), id);
        sacs.push(Sac { name, address, address6 });
    }

    let mut wide_ips: Vec<WideIp> = Vec::new();
    for w in &raw.wide_ip {
        let w = w.get_ref();
        let name = parse_fqdn(cx, &w.name, "wide IP name")?;
        if !zone.zone_of(&name) || name.to_lowercase() == zone {
            return Err(cx.err(&w.name, format!("wide IP {name} is not below the zone {zone}")));
        }
        if wide_ips.iter().any(|o| o.name.to_lowercase() == name.to_lowercase()) {
            return Err(cx.err(&w.name, format!("duplicate wide IP {name}")));
        }
        let mode = match w.mode.get_ref().as_str() {
            "stripe" | "topology" => {
                if let Some(m) = &w.method {
                    return Err(cx.err(m, format!("method applies to mode \"dynamic\" only, not {:?}", w.mode.get_ref())));
                }
                if let Some(t) = &w.persistence_ttl {
                    return Err(cx.err(t, format!("persistence_ttl applies to mode \"dynamic\" only, not {:?}", w.mode.get_ref())));
                }
                if w.mode.get_ref() == "stripe" {
                    ModeConfig::Stripe
                } else {
                    ModeConfig::Topology
                }
            }
            "dynamic" => {
                let method = match &w.method {
                    None => return Err(cx.err(&w.mode, "mode \"dynamic\" needs a method (\"round_robin\")")),
                    Some(m) => match m.get_ref().as_str() {
                        "round_robin" => Method::RoundRobin,
                        "packet_rate" | "cpu" | "connections" | "rtt" | "packet_loss" | "hops" | "availability" => {
                            return Err(cx.err(m, format!("method {:?} needs metrics from health probes, which this build does not have yet; use \"round_robin\"", m.get_ref())))
                        }
                        other => return Err(cx.err(m, format!("unknown method {other:?}; known: \"round_robin\""))),
                    },
                };
                let ttl = match &w.persistence_ttl {
                    None => return Err(cx.err(&w.mode, "mode \"dynamic\" needs persistence_ttl (seconds)")),
                    Some(t) => *t.get_ref(),
                };
                ModeConfig::Dynamic { method, persistence_ttl: ttl }
            }
            other => {
                return Err(cx.err(&w.mode, format!("unknown mode {other:?}; known: \"stripe\", \"topology\", \"dynamic\"")))
            }
        };
        let mut pool = Vec::new();
        for p in w.pool.get_ref() {
            let id = *vs_ids
                .get(p.get_ref())
                .ok_or_else(|| cx.err(p, format!("pool entry {:?} names no virtual server (expected \"sac/vs\")", p.get_ref())))?;
            if pool.contains(&id) {
                return Err(cx.err(p, format!("pool entry {:?} listed twice", p.get_ref())));
            }
            pool.push(id);
        }
        if pool.is_empty() {
            return Err(cx.err(&w.pool, format!("wide IP {name} has an empty pool")));
        }
        if pool.len() > MAX_POOL {
            return Err(cx.err(&w.pool, format!("wide IP {name} has {} pool entries; at most {MAX_POOL}", pool.len())));
        }
        wide_ips.push(WideIp {
            id: wide_ips.len() as u32,
            name,
            mode,
            pool_sac: pool.iter().map(|v| vss[*v as usize].sac).collect(),
            pool,
            answer_ttl: w.answer_ttl.unwrap_or(server.answer_ttl),
        });
    }

    let mut topology: Vec<TopologyRule> = Vec::new();
    for t in &raw.topology {
        let t = t.get_ref();
        let net: IpNet = t
            .ldns
            .get_ref()
            .parse()
            .map_err(|e| cx.err(&t.ldns, format!("topology ldns {:?} is not a prefix like 192.0.2.0/24: {e}", t.ldns.get_ref())))?;
        if net.trunc() != net {
            return Err(cx.err(&t.ldns, format!("topology prefix {net} has host bits set (did you mean {}?)", net.trunc())));
        }
        let sac = *sac_ids
            .get(t.sac.get_ref())
            .ok_or_else(|| cx.err(&t.sac, format!("topology names unknown SAC {:?}", t.sac.get_ref())))?;
        if topology.iter().any(|r| r.net == net) {
            return Err(cx.err(&t.ldns, format!("duplicate topology prefix {net}")));
        }
        topology.push(TopologyRule { net, sac });
    }

    Ok(Model::new(crate::model::ServerConfig {
        listen,
        zone,
        nameservers,
        answer_ttl: server.answer_ttl,
        control,
        node_id: server.node_id,
        edns_payload: *server.edns_payload.get_ref(),
        persistence_capacity: *server.persistence_capacity.get_ref(),
        soa,
    }, sacs, vss, wide_ips, topology))
}
