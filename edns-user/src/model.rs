//! The validated, immutable view of a config that the responder serves.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::time::Duration;

use edns_common::{
    Mode, QnameKey, WideIpEntry, ALL_DOWN_FALLBACK, ALL_DOWN_REFUSED, ALL_DOWN_ROUND_ROBIN, ALL_DOWN_SERVFAIL, MAX_POOL, WIDE_IP_ECS,
};
use hickory_proto::rr::Name;
use ipnet::IpNet;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// Lowercased zone apex.
    pub zone: Name,
    pub nameservers: Vec<Name>,
    pub answer_ttl: u32,
    pub control: Option<ControlAddr>,
    /// Bearer token every control request must carry, when set.
    pub control_token: Option<String>,
    pub node_id: u32,
    pub edns_payload: u16,
    pub persistence_capacity: u32,
    pub soa: Soa,
    /// RFC 5001 name server identifier, when configured.
    pub nsid: Option<Vec<u8>>,
    pub cookies: CookieConfig,
    /// Static records beside the wide IPs (`zone_file`).
    pub static_zone: crate::zone::StaticZone,
    /// Response rate limiting in XDP (`[rrl]`), off when absent.
    pub rrl: Option<RrlConfig>,
    /// Where persistence records are kept across restarts and reboots.
    pub persistence_snapshot: Option<std::path::PathBuf>,
    pub snapshot_interval: std::time::Duration,
}

/// Where the control endpoint listens when `control` is not set.
pub const DEFAULT_CONTROL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8053);

/// The control endpoint's address: the default (its bind may fail softly:
/// another edns on this host holds it) or one the config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAddr {
    Default(SocketAddr),
    Configured(SocketAddr),
}

impl ControlAddr {
    pub fn addr(&self) -> SocketAddr {
        match self {
            ControlAddr::Default(a) | ControlAddr::Configured(a) => *a,
        }
    }
}

/// `[cluster]`: this node's id, gossip addresses and pace.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: u32,
    pub gossip: SocketAddr,
    pub advertise: SocketAddr,
    pub seeds: Vec<String>,
    pub interval: std::time::Duration,
    pub sync_timeout: std::time::Duration,
    pub cluster_id: String,
}

/// Response rate limiting per source prefix, as Knot and BIND have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrlConfig {
    pub responses_per_second: u32,
    pub burst: u32,
    /// Every `slip`-th limited query gets a TC=1 answer; 0 drops them all.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Source prefixes tracked at once (LRU).
    pub capacity: u32,
}

impl RrlConfig {
    /// Nanoseconds one response costs a prefix (the GCRA emission interval).
    pub fn interval_ns(&self) -> u64 {
        1_000_000_000 / self.responses_per_second as u64
    }
    /// How far ahead of now a prefix may run: (burst - 1) intervals.
    pub fn tolerance_ns(&self) -> u64 {
        (self.burst as u64 - 1) * self.interval_ns()
    }
}

/// DNS cookies (RFC 7873, RFC 9018 server cookies).
#[derive(Debug, Clone)]
pub struct CookieConfig {
    pub enabled: bool,
    /// A fixed secret (shared by the nodes of an anycast set); none: random, rotated.
    pub secret: Option<[u8; 16]>,
    pub rotate: Duration,
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
    /// The blackbox exporter measuring paths from this site.
    pub path_probe: Option<PathProbe>,
}

/// A SAC's blackbox exporter: its `/probe` URL and module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathProbe {
    pub url: String,
    pub module: String,
}

/// `[paths]`: how LDNS paths are measured and weighed.
#[derive(Debug, Clone)]
pub struct PathConfig {
    /// LDNSes in one prefix share a measurement.
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    /// Per SAC.
    pub max_probes_per_sec: u32,
    /// Prefixes waiting per SAC; the oldest drop first.
    pub queue: usize,
    /// A measurement older than this is unknown.
    pub ttl: std::time::Duration,
    /// Probes kept per path.
    pub window: usize,
    /// Probes per measurement round of a prefix.
    pub probes_per_round: u32,
    /// Of one request to an exporter.
    pub timeout: std::time::Duration,
    pub qos: QosWeights,
}

/// Weights of `quality_of_service` (0: not read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QosWeights {
    pub rtt: f64,
    pub loss: f64,
    pub hops: f64,
    pub cpu: f64,
    pub connections: f64,
    pub packet_rate: f64,
    pub capacity: f64,
}

impl Default for PathConfig {
    fn default() -> PathConfig {
        PathConfig {
            prefix_v4: 24,
            prefix_v6: 48,
            max_probes_per_sec: 20,
            queue: 1000,
            ttl: std::time::Duration::from_secs(300),
            window: 10,
            probes_per_round: 5,
            timeout: std::time::Duration::from_secs(2),
            qos: QosWeights { rtt: 1.0, loss: 1.0, hops: 0.5, cpu: 0.0, connections: 0.0, packet_rate: 0.0, capacity: 0.0 },
        }
    }
}

#[derive(Debug, Clone)]
pub struct Vs {
    /// "sac/vs"
    pub name: String,
    pub sac: u32,
    /// State before any probe: the config's `up`, or the monitor's `initial`.
    pub initially_up: bool,
    /// Address the monitor probes.
    pub target: Option<SocketAddr>,
    /// Index into [`Model::monitors`].
    pub monitor: Option<u32>,
    /// Share of the `ratio` method.
    pub weight: u32,
    /// Where this VS's load figures come from (its own, else its SAC's).
    pub metrics: MetricSources,
}

/// A health monitor (`[[monitor]]`).
#[derive(Debug, Clone)]
pub struct Monitor {
    pub name: String,
    pub kind: MonitorKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub up_after: u32,
    pub down_after: u32,
    pub initial_up: bool,
}

#[derive(Debug, Clone)]
pub enum MonitorKind {
    /// A TCP connect.
    Tcp,
    /// GET `path`; `tls` for https, `verify` checks the certificate.
    Http(HttpCheck),
    /// A query for `qname`/`qtype`, expecting `rcode` and optionally `address`.
    Dns(DnsCheck),
}

#[derive(Debug, Clone)]
pub struct HttpCheck {
    pub tls: bool,
    pub verify: bool,
    /// Extra trust anchor (PEM) besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Host header and TLS server name; default: the target address.
    pub host: Option<String>,
    pub path: String,
    pub expect_status: u16,
    pub expect_body: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DnsCheck {
    pub qname: Name,
    pub qtype: hickory_proto::rr::RecordType,
    pub rcode: hickory_proto::op::ResponseCode,
    pub address: Option<IpAddr>,
}

/// A Prometheus text endpoint (`[[exporter]]`).
#[derive(Debug, Clone)]
pub struct Exporter {
    pub name: String,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// A value older than this is unknown.
    pub stale_after: Duration,
}

/// One series selector: metric name plus label matchers, summed over matches.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSel {
    pub exporter: u32,
    pub metric: String,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CapacitySource {
    Fixed(f64),
    Metric(MetricSel),
}

/// Sources of the load figures the dynamic methods use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricSources {
    /// A gauge: connections being served.
    pub connections: Option<MetricSel>,
    /// A counter: its rate over the last two scrapes.
    pub packet_rate: Option<MetricSel>,
    /// node_exporter's `node_cpu_seconds_total`: busy share over the last two scrapes.
    pub cpu: Option<MetricSel>,
    /// Most connections the VS takes.
    pub capacity: Option<CapacitySource>,
}

/// Dynamic balancing methods, tried in the wide IP's chain order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    RoundRobin,
    Ratio,
    LeastConnections,
    LowestPacketRate,
    LowestCpu,
    MostCapacity,
    GlobalAvailability,
    LowestRtt,
    LowestLoss,
    FewestHops,
    QualityOfService,
}

impl Method {
    pub const ALL: [(&'static str, Method); 11] = [
        ("round_robin", Method::RoundRobin),
        ("ratio", Method::Ratio),
        ("least_connections", Method::LeastConnections),
        ("lowest_packet_rate", Method::LowestPacketRate),
        ("lowest_cpu", Method::LowestCpu),
        ("most_capacity", Method::MostCapacity),
        ("global_availability", Method::GlobalAvailability),
        ("lowest_rtt", Method::LowestRtt),
        ("lowest_loss", Method::LowestLoss),
        ("fewest_hops", Method::FewestHops),
        ("quality_of_service", Method::QualityOfService),
    ];
    /// True for the methods that need load figures from exporters.
    pub fn reads_metrics(self) -> bool {
        matches!(self, Method::LeastConnections | Method::LowestPacketRate | Method::LowestCpu | Method::MostCapacity | Method::QualityOfService)
    }
    /// True for the methods that need path measurements (RTT, loss, hops).
    pub fn reads_paths(self) -> bool {
        matches!(self, Method::LowestRtt | Method::LowestLoss | Method::FewestHops | Method::QualityOfService)
    }
    pub fn name(self) -> &'static str {
        Method::ALL.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// What a wide IP answers when no VS of its pool is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllDown {
    /// The patent's round robin over the whole pool, regardless of state.
    RoundRobin,
    /// A fixed address (and optionally an IPv6 one; AAAA is NODATA without it).
    Fallback(Ipv4Addr, Option<Ipv6Addr>),
    Refused,
    ServFail,
}

impl AllDown {
    pub fn code(&self) -> u32 {
        match self {
            AllDown::RoundRobin => ALL_DOWN_ROUND_ROBIN,
            AllDown::Fallback(..) => ALL_DOWN_FALLBACK,
            AllDown::Refused => ALL_DOWN_REFUSED,
            AllDown::ServFail => ALL_DOWN_SERVFAIL,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeConfig {
    Stripe,
    StripeConsistent,
    Topology,
    /// `methods` is the chain: preferred, alternate, fallback, ...
    Dynamic { methods: Vec<Method>, persistence_ttl: u32 },
}

impl ModeConfig {
    pub fn mode(&self) -> Mode {
        match self {
            ModeConfig::Stripe => Mode::Stripe,
            ModeConfig::StripeConsistent => Mode::StripeConsistent,
            ModeConfig::Topology => Mode::Topology,
            ModeConfig::Dynamic { .. } => Mode::Dynamic,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            ModeConfig::Stripe => "stripe",
            ModeConfig::StripeConsistent => "stripe_consistent",
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
    pub all_down: AllDown,
    /// Persistence masks (dynamic mode): 32 and 128 key records by address.
    pub persist_mask_v4: u8,
    pub persist_mask_v6: u8,
    /// EDNS Client Subnet: `Some((v4, v6))`, the longest prefixes read.
    pub ecs: Option<(u8, u8)>,
    /// Persistence TTLs by time of day (dynamic mode; empty: none).
    pub schedule: crate::select::schedule::Schedule,
}

impl WideIp {
    /// The fields of [`WideIp::entry`] that say who the answer is for
    /// (persistence masks, client-subnet maxima, the ECS flag), the rest
    /// zero: what `edns_common::requester` reads, built per query without
    /// the pool and name copies.
    pub fn requester_view(&self) -> WideIpEntry {
        WideIpEntry {
            persist_mask_v4: self.persist_mask_v4,
            persist_mask_v6: self.persist_mask_v6,
            ecs_max_v4: self.ecs.map_or(0, |e| e.0),
            ecs_max_v6: self.ecs.map_or(0, |e| e.1),
            flags: if self.ecs.is_some() { WIDE_IP_ECS } else { 0 },
            ..bytemuck::Zeroable::zeroed()
        }
    }

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
            all_down: self.all_down.code(),
            pool_vs,
            pool_sac,
            name: QnameKey::from_wire(&wire_lower(&self.name)).unwrap_or(QnameKey { name: [0; edns_common::MAX_QNAME_WIRE] }),
            ..self.requester_view()
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

/// An IPv4-mapped IPv6 address as the IPv4 address it carries (how a
/// dual-stack socket may report an IPv4 LDNS), so IPv4 prefixes match it.
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
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
    pub monitors: Vec<Monitor>,
    pub exporters: Vec<Exporter>,
    /// LDNS groups (Fig. 5), whose members files may change while edns runs.
    pub groups: std::sync::Arc<crate::groups::GroupTable>,
    /// Several nodes as one virtual EDNS (`[cluster]`).
    pub cluster: Option<ClusterConfig>,
    /// Path measurement (`[paths]`).
    pub paths: PathConfig,
    by_name: HashMap<Vec<u8>, u32, foldhash::fast::RandomState>,
}

/// The ids of an earlier config renumbered for this one, by name: how
/// records, VS states and counters follow a config that moved ids.
pub struct Renumber {
    wide_ips: Vec<Option<u32>>,
    vss: Vec<Option<u32>>,
    groups: HashMap<u32, Option<u32>>,
}

impl Renumber {
    pub fn wide_ip(&self, old: u32) -> Option<u32> {
        self.wide_ips.get(old as usize).copied().flatten()
    }

    pub fn vs(&self, old: u32) -> Option<u32> {
        self.vss.get(old as usize).copied().flatten()
    }

    /// A record with this config's ids (a group's record follows the
    /// group's name); `None` when its wide IP, VS or group is gone.
    pub fn record(&self, mut key: edns_common::PersistKey, mut rec: edns_common::PersistRecord) -> Option<(edns_common::PersistKey, edns_common::PersistRecord)> {
        if key.ldns.kind == edns_common::LDNS_KIND_GROUP {
            key.ldns.group = self.groups.get(&key.ldns.group).copied().flatten()?;
        }
        key.wide_ip = self.wide_ip(key.wide_ip)?;
        rec.vs = self.vs(rec.vs)?;
        Some((key, rec))
    }
}

/// Lowercased wire form of a name: the wide IP table's key.
pub fn wire_lower(name: &Name) -> Vec<u8> {
    let mut buf = [0u8; 255];
    wire_lower_into(name, &mut buf).to_vec()
}

/// [`wire_lower`] into `buf` (a name's wire form is at most 255 bytes),
/// for lookups that need no allocation.
pub fn wire_lower_into<'a>(name: &Name, buf: &'a mut [u8; 255]) -> &'a [u8] {
    let mut n = 0;
    for label in name.iter() {
        // hickory keeps names within 255 wire bytes; stop short rather than panic.
        if n + 1 + label.len() >= buf.len() {
            break;
        }
        buf[n] = label.len() as u8;
        for (d, b) in buf[n + 1..n + 1 + label.len()].iter_mut().zip(label) {
            *d = b.to_ascii_lowercase();
        }
        n += 1 + label.len();
    }
    buf[n] = 0;
    &buf[..n + 1]
}

impl Model {
    pub fn new(server: ServerConfig, sacs: Vec<Sac>, vss: Vec<Vs>, wide_ips: Vec<WideIp>, topology: Vec<TopologyRule>) -> Model {
        let by_name = wide_ips.iter().map(|w| (wire_lower(&w.name), w.id)).collect();
        Model { server, sacs, vss, wide_ips, topology, monitors: Vec::new(), exporters: Vec::new(), groups: Default::default(), cluster: None, paths: PathConfig::default(), by_name }
    }

    /// VS states before any probe or admin action: marked up and available, or neither.
    pub fn initial_vs_states(&self) -> Vec<u32> {
        self.vss.iter().map(|v| if v.initially_up { edns_common::VS_UP } else { 0 }).collect()
    }

    pub fn wide_ip(&self, qname: &Name) -> Option<&WideIp> {
        let mut buf = [0u8; 255];
        self.by_name.get(wire_lower_into(qname, &mut buf)).map(|id| &self.wide_ips[*id as usize])
    }

    /// The wide IP of a name as it came on the wire (uncompressed, any case).
    pub fn wide_ip_by_wire(&self, wire: &[u8]) -> Option<&WideIp> {
        let mut buf = [0u8; 255];
        let lower = buf.get_mut(..wire.len())?;
        lower.copy_from_slice(wire);
        // Label lengths (at most 63) are below 'A': only letters change.
        lower.make_ascii_lowercase();
        self.by_name.get(&*lower).map(|id| &self.wide_ips[*id as usize])
    }

    pub fn wide_ip_by_name(&self, name: &str) -> Option<&WideIp> {
        let n = Name::from_ascii(name).ok()?;
        self.wide_ip(&n)
    }

    /// The wide IPs' names, in id order.
    pub fn wide_ip_names(&self) -> Vec<String> {
        self.wide_ips.iter().map(|w| w.name.to_string()).collect()
    }

    /// The VSs' names, in id order.
    pub fn vs_names(&self) -> Vec<String> {
        self.vss.iter().map(|v| v.name.clone()).collect()
    }

    /// VS name → id.
    pub fn vs_ids(&self) -> HashMap<&str, u32> {
        self.vss.iter().enumerate().map(|(i, v)| (v.name.as_str(), i as u32)).collect()
    }

    /// The LDNS groups as (name, id).
    pub fn group_ids(&self) -> Vec<(String, u32)> {
        self.groups.snapshot().into_iter().map(|g| (g.name, g.id)).collect()
    }

    /// The ids of a config whose wide IPs, VSs (names in id order) and
    /// groups were these, renumbered for this one.
    pub fn renumber_from(&self, wide_ips: &[String], vss: &[String], groups: &[(String, u32)]) -> Renumber {
        let vs = self.vs_ids();
        let now = self.group_ids();
        Renumber {
            wide_ips: wide_ips.iter().map(|n| self.wide_ip_by_name(n).map(|w| w.id)).collect(),
            vss: vss.iter().map(|n| vs.get(n.as_str()).copied()).collect(),
            groups: groups.iter().map(|(n, id)| (*id, now.iter().find(|(m, _)| m == n).map(|(_, j)| *j))).collect(),
        }
    }

    /// `old`'s ids renumbered for this config.
    pub fn renumber(&self, old: &Model) -> Renumber {
        self.renumber_from(&old.wide_ip_names(), &old.vs_names(), &old.group_ids())
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
        let ip = unmapped(ldns);
        self.topology
            .iter()
            .filter(|r| r.net.contains(&ip))
            .max_by_key(|r| r.net.prefix_len())
            .map(|r| r.sac)
    }

    /// The id of the LDNS group `ldns` belongs to, 0 when none (groups do
    /// not overlap, so the first match is the only one).
    pub fn group_of(&self, ldns: IpAddr) -> u32 {
        self.groups.group_of(unmapped(ldns))
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

#[cfg(test)]
mod tests {
    use edns_common::{requester, ClientSubnet, ECS_FAMILY_V4};

    /// The selector builds only the requester's fields per query: the view
    /// zeroes the rest (pool, name, mode, TTLs), and the requester it makes
    /// is the one the whole entry (the kernel's) makes, for every wide IP of
    /// the demo, with and without a client subnet and a group — so
    /// `requester` reads nothing the view leaves out.
    #[test]
    fn the_requester_view_gives_the_same_requester_as_the_entry() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let model = crate::config::load(&root.join("examples/demo.toml")).unwrap();
        let mut addr = [0u8; 16];
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12..].copy_from_slice(&[198, 51, 100, 77]);
        let subnets = [ClientSubnet::default(), ClientSubnet { family: ECS_FAMILY_V4, source: 32, _pad: [0; 2], addr }];
        let ldns = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 3, 7];
        for w in &model.wide_ips {
            for s in &subnets {
                for group in [0, 2] {
                    assert_eq!(requester(&ldns, group, s, &w.requester_view()), requester(&ldns, group, s, &w.entry()), "{}", w.name);
                }
            }
        }
    }
}
