//! The validated, immutable view of a config that the responder serves.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use edns_common::{Mode, QnameKey, WideIpEntry, MAX_POOL};
use hickory_proto::rr::Name;
use ipnet::IpNet;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// Lowercased zone apex.
    pub zone: Name,
    pub nameservers: Vec<Name>,
    pub answer_ttl: u32,
    pub control: Option<SocketAddr>,
    pub node_id: u32,
    pub edns_payload: u16,
    pub persistence_capacity: u32,
    pub soa: Soa,
}

#[derive(Debug, Clone)]
pub struct Soa {
    pub mname: Name,
    pub rname: Name,
    pub serial: u32,
    pub refresh: i32,
    pub retry: i32,
    pub expire: i32,
    /// Negative-caching TTL (RFC 2308), also the SOA record's TTL.
    pub minimum: u32,
}

impl Soa {
    pub fn defaults(zone: &Name, mname: &Name, ttl: u32) -> Soa {
        let rname = Name::from_ascii("hostmaster").unwrap().append_domain(zone).expect("zone name fits");
        Soa { mname: mname.clone(), rname, serial: 1, refresh: 3600, retry: 600, expire: 604800, minimum: ttl }
    }
}

#[derive(Debug, Clone)]
pub struct Sac {
    pub name: String,
    pub address: Ipv4Addr,
    pub address6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone)]
pub struct Vs {
    /// "sac/vs"
    pub name: String,
    pub sac: u32,
    pub initially_up: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    RoundRobin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeConfig {
    Stripe,
    Topology,
    Dynamic { method: Method, persistence_ttl: u32 },
}

impl ModeConfig {
    pub fn mode(&self) -> Mode {
        match self {
            ModeConfig::Stripe => Mode::Stripe,
            ModeConfig::Topology => Mode::Topology,
            ModeConfig::Dynamic { .. } => Mode::Dynamic,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            ModeConfig::Stripe => "stripe",
            ModeConfig::Topology => "topology",
            ModeConfig::Dynamic { .. } => "dynamic",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WideIp {
    pub id: u32,
    pub name: Name,
    pub mode: ModeConfig,
    /// Global VS ids, the circular list in config order.
    pub pool: Vec<u32>,
    /// SAC of each pool entry.
    pub pool_sac: Vec<u32>,
    pub answer_ttl: u32,
}

impl WideIp {
    /// The data-plane view of this wide IP.
    pub fn entry(&self) -> WideIpEntry {
        let mut pool_vs = [u32::MAX; MAX_POOL];
        let mut pool_sac = [u32::MAX; MAX_POOL];
        pool_vs[..self.pool.len()].copy_from_slice(&self.pool);
        pool_sac[..self.pool.len()].copy_from_slice(&self.pool_sac);
        WideIpEntry {
            id: self.id,
            mode: self.mode.mode() as u32,
            answer_ttl: self.answer_ttl,
            pool_len: self.pool.len() as u32,
            persistence_ttl: match self.mode {
                ModeConfig::Dynamic { persistence_ttl, .. } => persistence_ttl,
                _ => 0,
            },
            _pad: 0,
            pool_vs,
            pool_sac,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TopologyRule {
    pub net: IpNet,
    pub sac: u32,
}

/// An address as the maps and persistence keys carry it: IPv4 mapped into
/// IPv6 (`::ffff:a.b.c.d`), so one 16-byte layout serves both families.
pub fn ip16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl TopologyRule {
    /// The rule as an IPv6 prefix (IPv4 mapped), as the LPM trie holds it.
    pub fn mapped(&self) -> ([u8; 16], u32) {
        let mapped_bits = if self.net.addr().is_ipv4() { 96 } else { 0 };
        (ip16(self.net.addr()), mapped_bits + self.net.prefix_len() as u32)
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    pub server: ServerConfig,
    pub sacs: Vec<Sac>,
    pub vss: Vec<Vs>,
    pub wide_ips: Vec<WideIp>,
    pub topology: Vec<TopologyRule>,
    by_name: HashMap<Vec<u8>, u32>,
}

/// Lowercased wire form of a name: the wide IP table's key.
pub fn wire_lower(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    out
}

impl Model {
    pub fn new(server: ServerConfig, sacs: Vec<Sac>, vss: Vec<Vs>, wide_ips: Vec<WideIp>, topology: Vec<TopologyRule>) -> Model {
        let by_name = wide_ips.iter().map(|w| (wire_lower(&w.name), w.id)).collect();
        Model { server, sacs, vss, wide_ips, topology, by_name }
    }

    pub fn wide_ip(&self, qname: &Name) -> Option<&WideIp> {
        self.by_name.get(&wire_lower(qname)).map(|id| &self.wide_ips[*id as usize])
    }

    pub fn wide_ip_by_name(&self, name: &str) -> Option<&WideIp> {
        let n = Name::from_ascii(name).ok()?;
        self.wide_ip(&n)
    }

    pub fn vs_by_name(&self, name: &str) -> Option<u32> {
        self.vss.iter().position(|v| v.name == name).map(|i| i as u32)
    }

    /// Fast-path key of a wide IP, `None` when its name is too long for XDP.
    pub fn qname_key(&self, w: &WideIp) -> Option<QnameKey> {
        QnameKey::from_wire(&wire_lower(&w.name))
    }

    /// Longest-prefix match of the LDNS address in the topology table.
    pub fn topology_match(&self, ldns: IpAddr) -> Option<u32> {
        let ip = match ldns {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.topology
            .iter()
            .filter(|r| r.net.contains(&ip))
            .max_by_key(|r| r.net.prefix_len())
            .map(|r| r.sac)
    }

    /// True when some wide IP lies strictly below `name` (an empty non-terminal).
    pub fn has_names_below(&self, name: &Name) -> bool {
        let lname = name.to_lowercase();
        self.wide_ips.iter().any(|w| {
            let wl = w.name.to_lowercase();
            lname.zone_of(&wl) && wl != lname
        })
    }
}
