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

use crate::select::schedule::{Schedule, Window};
use crate::model::{
    AllDown, CapacitySource, DnsCheck, Exporter, HttpCheck, MetricSel, MetricSources, Method, Model, ModeConfig, Monitor,
    MonitorKind, Sac, Soa, TopologyRule, Vs, WideIp,
};
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
    #[serde(default)]
    monitor: Vec<Spanned<RawMonitor>>,
    #[serde(default)]
    exporter: Vec<Spanned<RawExporter>>,
    rrl: Option<Spanned<RawRrl>>,
    #[serde(default)]
    ldns_group: Vec<Spanned<RawLdnsGroup>>,
    cluster: Option<Spanned<RawCluster>>,
    paths: Option<Spanned<RawPaths>>,
}

/// Path measurement: prefixes, budget, cache, and the QoS weights.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    prefix_v4: Option<Spanned<u8>>,
    prefix_v6: Option<Spanned<u8>>,
    max_probes_per_sec: Option<Spanned<u32>>,
    queue: Option<Spanned<usize>>,
    ttl_secs: Option<Spanned<u64>>,
    window: Option<Spanned<usize>>,
    probes_per_round: Option<Spanned<u32>>,
    timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    qos: std::collections::BTreeMap<String, Spanned<f64>>,
}

/// A SAC's blackbox exporter.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPathProbe {
    url: Spanned<String>,
    module: Spanned<String>,
}

/// Several edns nodes as one virtual EDNS (Fig. 4).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    node_id: Spanned<u32>,
    /// Gossip listen address (UDP).
    gossip: Spanned<String>,
    /// The address peers reach this node's gossip at (default: `gossip`).
    advertise: Option<Spanned<String>>,
    #[serde(default)]
    seeds: Vec<Spanned<String>>,
    #[serde(default = "default_gossip_interval")]
    interval_ms: Spanned<u64>,
    /// How long a starting node waits for the cluster's state before it answers.
    #[serde(default = "default_sync_timeout")]
    sync_timeout_ms: u64,
    #[serde(default = "default_cluster_id")]
    cluster_id: String,
}

fn default_snapshot_interval() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}

fn default_gossip_interval() -> Spanned<u64> {
    Spanned::new(0..0, 200)
}

fn default_sync_timeout() -> u64 {
    3000
}

fn default_cluster_id() -> String {
    "edns".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdnsGroup {
    name: Spanned<String>,
    /// The stable integer the stripe walks read for every member (default: position, from 1).
    id: Option<Spanned<u32>>,
    #[serde(default)]
    members: Vec<Spanned<String>>,
    /// One address or prefix per line, re-read when it changes.
    members_file: Option<Spanned<String>>,
}

fn build_groups(cx: &Cx, raw: &[Spanned<RawLdnsGroup>]) -> Result<Vec<crate::groups::LdnsGroup>, ConfigError> {
    let mut out: Vec<crate::groups::LdnsGroup> = Vec::new();
    let mut seen: Vec<(IpNet, String)> = Vec::new();
    for (i, g) in raw.iter().enumerate() {
        let g = g.get_ref();
        let name = name_ok(cx, &g.name, "LDNS group")?;
        if out.iter().any(|o| o.name == name) {
            return Err(cx.err(&g.name, format!("duplicate LDNS group {name:?}")));
        }
        let id = g.id.as_ref().map(|v| *v.get_ref()).unwrap_or(i as u32 + 1);
        if id == 0 {
            return Err(cx.err(g.id.as_ref().unwrap(), "an LDNS group id is at least 1"));
        }
        if let Some(o) = out.iter().find(|o| o.id == id) {
            let at = g.id.as_ref().map(|v| v.span().start).unwrap_or(g.name.span().start);
            return Err(cx.err_at(at, format!("LDNS group id {id} is {:?}'s too", o.name)));
        }
        let mut members = Vec::new();
        for m in &g.members {
            let net = crate::groups::parse_member(m.get_ref()).map_err(|e| cx.err(m, e))?;
            if let Some((other, owner)) = seen.iter().find(|(o, _)| o.contains(&net.addr()) || net.contains(&o.addr())) {
                return Err(cx.err(m, format!("{net} overlaps {other} of LDNS group {owner:?}: groups must not overlap")));
            }
            seen.push((net, name.clone()));
            members.push(net);
        }
        let inline = members.clone();
        let members_file = match &g.members_file {
            None => None,
            Some(f) => {
                let p = Path::new(f.get_ref());
                let path = cx.path.parent().map(|d| d.join(p)).unwrap_or_else(|| p.to_owned());
                let text = std::fs::read_to_string(&path).map_err(|e| cx.err(f, format!("cannot read members_file {}: {e}", path.display())))?;
                let from_file = crate::groups::parse_members_file(&text)
                    .map_err(|(line, message)| ConfigError { file: path.clone(), line, column: 1, message })?;
                for net in from_file {
                    if let Some((other, owner)) = seen.iter().find(|(o, _)| o.contains(&net.addr()) || net.contains(&o.addr())) {
                        return Err(cx.err(f, format!("{net} in {} overlaps {other} of LDNS group {owner:?}: groups must not overlap", path.display())));
                    }
                    seen.push((net, name.clone()));
                    members.push(net);
                }
                Some(path)
            }
        };
        out.push(crate::groups::LdnsGroup { name, id, members, inline, members_file });
    }
    Ok(out)
}


#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRrl {
    responses_per_second: Spanned<u32>,
    /// Responses a prefix may get at once (default: one second's worth).
    burst: Option<Spanned<u32>>,
    #[serde(default = "default_slip")]
    slip: Spanned<u32>,
    #[serde(default = "default_v4_prefix")]
    ipv4_prefix: Spanned<u8>,
    #[serde(default = "default_v6_prefix")]
    ipv6_prefix: Spanned<u8>,
    #[serde(default = "default_rrl_capacity")]
    capacity: Spanned<u32>,
}

fn default_slip() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}
fn default_v4_prefix() -> Spanned<u8> {
    Spanned::new(0..0, 24)
}
fn default_v6_prefix() -> Spanned<u8> {
    Spanned::new(0..0, 56)
}
fn default_rrl_capacity() -> Spanned<u32> {
    Spanned::new(0..0, 65536)
}

fn build_rrl(cx: &Cx, raw: &RawRrl) -> Result<crate::model::RrlConfig, ConfigError> {
    let rate = *raw.responses_per_second.get_ref();
    if rate == 0 || rate > 1_000_000 {
        return Err(cx.err(&raw.responses_per_second, "responses_per_second must be 1 to 1000000"));
    }
    let burst = raw.burst.as_ref().map(|b| *b.get_ref()).unwrap_or(rate);
    if burst == 0 {
        return Err(cx.err(raw.burst.as_ref().unwrap(), "burst must be at least 1"));
    }
    if *raw.ipv4_prefix.get_ref() > 32 {
        return Err(cx.err(&raw.ipv4_prefix, "ipv4_prefix must be 0 to 32"));
    }
    if *raw.ipv6_prefix.get_ref() > 128 {
        return Err(cx.err(&raw.ipv6_prefix, "ipv6_prefix must be 0 to 128"));
    }
    if *raw.capacity.get_ref() == 0 {
        return Err(cx.err(&raw.capacity, "capacity must be at least 1"));
    }
    Ok(crate::model::RrlConfig {
        responses_per_second: rate,
        burst,
        slip: *raw.slip.get_ref(),
        ipv4_prefix: *raw.ipv4_prefix.get_ref(),
        ipv6_prefix: *raw.ipv6_prefix.get_ref(),
        capacity: *raw.capacity.get_ref(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    #[serde(default = "default_interval_ms")]
    interval_ms: Spanned<u64>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: Spanned<u64>,
    #[serde(default = "default_threshold")]
    up_after: Spanned<u32>,
    #[serde(default = "default_threshold")]
    down_after: Spanned<u32>,
    /// State before the first probe: "up" (the patent's assumption) or "down".
    initial: Option<Spanned<String>>,
    // http, https
    path: Option<Spanned<String>>,
    expect_status: Option<Spanned<u16>>,
    expect_body: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    /// https: check the server's certificate (default true).
    tls_verify: Option<Spanned<bool>>,
    ca_file: Option<Spanned<String>>,
    // dns
    query_name: Option<Spanned<String>>,
    query_type: Option<Spanned<String>>,
    expect_rcode: Option<Spanned<String>>,
    expect_address: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExporter {
    name: Spanned<String>,
    url: Spanned<String>,
    #[serde(default = "default_interval_ms")]
    interval_ms: Spanned<u64>,
    timeout_ms: Option<Spanned<u64>>,
    /// Default: three intervals.
    stale_after_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetricSel {
    exporter: Option<Spanned<String>>,
    metric: Option<Spanned<String>>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    /// capacity only: a fixed figure instead of a metric.
    value: Option<Spanned<f64>>,
}

/// Metric sources, on a SAC (for all its VSs) or on one VS.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    connections: Option<Spanned<RawMetricSel>>,
    packet_rate: Option<Spanned<RawMetricSel>>,
    cpu: Option<Spanned<RawMetricSel>>,
    capacity: Option<Spanned<RawMetricSel>>,
}

/// `method = "round_robin"` or `method = ["least_connections", "round_robin"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMethods {
    One(String),
    Chain(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Vec<Spanned<String>>,
    zone: Spanned<String>,
    nameservers: Spanned<Vec<Spanned<String>>>,
    #[serde(default = "default_answer_ttl")]
    answer_ttl: u32,
    /// Control endpoint IP:PORT (default 127.0.0.1:8053), or "none".
    control: Option<Spanned<String>>,
    /// Bearer token the control endpoint requires (needed off loopback).
    control_token: Option<Spanned<String>>,
    /// A file holding the token (relative to the config), instead of `control_token`.
    control_token_file: Option<Spanned<String>>,
    /// Identifies this node in persistence records shared with other nodes.
    #[serde(default)]
    node_id: u32,
    /// EDNS UDP payload size advertised in responses.
    #[serde(default = "default_edns_payload")]
    edns_payload: Spanned<u16>,
    /// Capacity of the persistence table (records); the oldest are evicted.
    #[serde(default = "default_persistence_capacity")]
    persistence_capacity: Spanned<u32>,
    /// Name server identifier returned to queries that ask (RFC 5001).
    nsid: Option<Spanned<String>>,
    /// A file persistence records are written to and loaded from (relative to the config).
    persistence_snapshot: Option<Spanned<String>>,
    #[serde(default = "default_snapshot_interval")]
    snapshot_interval_secs: Spanned<u64>,
    /// An RFC 1035 master file of static data (relative to this config).
    zone_file: Option<Spanned<String>>,
    /// DNS cookies (default on).
    #[serde(default = "default_true")]
    cookies: bool,
    /// A fixed server secret, 32 hex digits (for nodes that must accept each
    /// other's cookies); without it a random secret rotates.
    cookie_secret: Option<Spanned<String>>,
    /// Rotation interval of a random secret (default 26 hours, RFC 7873 §7.1).
    #[serde(default = "default_cookie_rotate")]
    cookie_rotate_secs: Spanned<u64>,
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
fn default_cookie_rotate() -> Spanned<u64> {
    Spanned::new(0..0, 26 * 3600)
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
fn default_interval_ms() -> Spanned<u64> {
    Spanned::new(0..0, 1000)
}
fn default_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 500)
}
fn default_threshold() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}
fn default_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSac {
    name: Spanned<String>,
    address: Spanned<String>,
    address6: Option<Spanned<String>>,
    virtual_servers: Vec<Spanned<RawVs>>,
    /// Load figures of the whole site, for every VS it manages.
    #[serde(default)]
    metrics: RawMetrics,
    /// The blackbox exporter measuring paths from this site to LDNSes.
    path_probe: Option<Spanned<RawPathProbe>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVs {
    name: Spanned<String>,
    /// Initial state of a VS without a monitor: marked up and available.
    #[serde(default = "default_true")]
    up: bool,
    /// IP:PORT the monitor probes.
    target: Option<Spanned<String>>,
    monitor: Option<Spanned<String>>,
    /// Share of the `ratio` method.
    #[serde(default = "default_weight")]
    weight: Spanned<u32>,
    /// This VS's own load figures (override its SAC's).
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWideIp {
    name: Spanned<String>,
    mode: Spanned<String>,
    method: Option<Spanned<RawMethods>>,
    persistence_ttl: Option<Spanned<u32>>,
    answer_ttl: Option<u32>,
    pool: Spanned<Vec<Spanned<String>>>,
    /// No VS up: "round_robin" (default), "fallback", "refused", "servfail".
    all_down: Option<Spanned<String>>,
    /// Dynamic mode: LDNSes in one /N (IPv4) or /M (IPv6) share a persistence record.
    persist_mask_v4: Option<Spanned<u8>>,
    persist_mask_v6: Option<Spanned<u8>>,
    /// EDNS Client Subnet (RFC 7871): the client's subnet replaces the LDNS.
    ecs: Option<Spanned<bool>>,
    /// Longest client-subnet prefixes read (default 24 and 56).
    ecs_max_prefix_v4: Option<Spanned<u8>>,
    ecs_max_prefix_v6: Option<Spanned<u8>>,
    /// Dynamic mode: persistence TTLs by time of day.
    persistence_schedule: Option<Spanned<Vec<Spanned<RawWindow>>>>,
    fallback_address: Option<Spanned<String>>,
    fallback_address6: Option<Spanned<String>>,
}

/// A window of a persistence schedule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    /// "mon" ... "sun".
    days: Spanned<Vec<Spanned<String>>>,
    /// "HH:MM", 00:00 to 23:59; `end` up to 24:00, at or before `start` for a window past midnight.
    start: Spanned<String>,
    end: Spanned<String>,
    /// An IANA time zone, e.g. "Europe/Berlin" or "UTC".
    time_zone: Spanned<String>,
    ttl: Spanned<u32>,
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
    let server = build_server(cx, &raw.server)?;
    let monitors = build_monitors(cx, &raw.monitor)?;
    let exporters = build_exporters(cx, &raw.exporter)?;
    let (sacs, vss, sac_ids, vs_ids) = build_sacs(cx, &raw.sac, &monitors, &exporters)?;
    let mut wide_ips: Vec<WideIp> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for w in &raw.wide_ip {
        let wide_ip = build_wide_ip(cx, w.get_ref(), &server, &vss, &vs_ids, wide_ips.len() as u32)?;
        if !names.insert(crate::model::wire_lower(&wide_ip.name)) {
            return Err(cx.err(&w.get_ref().name, format!("duplicate wide IP {}", wide_ip.name)));
        }
        check_path_sources(cx, w.get_ref(), &wide_ip, &sacs)?;
        wide_ips.push(wide_ip);
    }
    let topology = build_topology(cx, &raw.topology, &sac_ids)?;
    let mut server = server;
    server.rrl = raw.rrl.as_ref().map(|r| build_rrl(cx, r.get_ref())).transpose()?;
    let groups = build_groups(cx, &raw.ldns_group)?;
    let cluster = raw.cluster.as_ref().map(|c| build_cluster(cx, c, &mut server)).transpose()?;
    let mut model = Model::new(server, sacs, vss, wide_ips, topology);
    model.cluster = cluster;
    if let Some(p) = &raw.paths {
        model.paths = build_paths(cx, p.get_ref())?;
    }
    model.groups = std::sync::Arc::new(crate::groups::GroupTable::new(groups));
    model.monitors = monitors;
    model.exporters = exporters;
    Ok(model)
}

/// `[cluster]`: its node id becomes the records' node id.
fn build_cluster(cx: &Cx, raw: &Spanned<RawCluster>, server: &mut crate::model::ServerConfig) -> Result<crate::model::ClusterConfig, ConfigError> {
    let c = raw.get_ref();
    let node_id = *c.node_id.get_ref();
    if node_id == 0 {
        return Err(cx.err(&c.node_id, "a cluster node_id is 1 or more (0 is a node outside any cluster)"));
    }
    if server.node_id != 0 && server.node_id != node_id {
        return Err(cx.err(&c.node_id, format!("[cluster] node_id {node_id} differs from [server] node_id {}", server.node_id)));
    }
    server.node_id = node_id;
    let addr = |s: &Spanned<String>, what: &str| -> Result<SocketAddr, ConfigError> {
        s.get_ref().parse().map_err(|e| cx.err(s, format!("{what} {:?} is not an address:port: {e}", s.get_ref())))
    };
    let gossip = addr(&c.gossip, "gossip")?;
    let advertise = c.advertise.as_ref().map(|a| addr(a, "advertise")).transpose()?.unwrap_or(gossip);
    if advertise.ip().is_unspecified() {
        return Err(cx.err(&c.gossip, "a gossip address of 0.0.0.0 or :: needs advertise = the address peers reach"));
    }
    let interval = *c.interval_ms.get_ref();
    if !(10..=10_000).contains(&interval) {
        return Err(cx.err(&c.interval_ms, "interval_ms is 10 to 10000"));
    }
    for seed in &c.seeds {
        if !seed.get_ref().contains(':') {
            return Err(cx.err(seed, format!("seed {:?} needs a port (host:port)", seed.get_ref())));
        }
    }
    Ok(crate::model::ClusterConfig {
        node_id,
        gossip,
        advertise,
        seeds: c.seeds.iter().map(|s| s.get_ref().clone()).collect(),
        interval: std::time::Duration::from_millis(interval),
        sync_timeout: std::time::Duration::from_millis(c.sync_timeout_ms),
        cluster_id: c.cluster_id.clone(),
    })
}

fn build_server(cx: &Cx, raw: &Spanned<RawServer>) -> Result<crate::model::ServerConfig, ConfigError> {
    let server = raw.get_ref();
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
        return Err(cx.err(raw, "server.listen must name at least one address"));
    }

    let zone = parse_fqdn(cx, &server.zone, "zone")?.to_lowercase();
    let mut nameservers = Vec::new();
    for ns in server.nameservers.get_ref() {
        nameservers.push(parse_fqdn(cx, ns, "nameserver")?);
    }
    if nameservers.is_empty() {
        return Err(cx.err(&server.nameservers, "server.nameservers must name at least one nameserver"));
    }
    let (control, control_token) = build_control(cx, server)?;
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
    let nsid = match &server.nsid {
        None => None,
        Some(n) => {
            let v = n.get_ref();
            if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                return Err(cx.err(n, format!("nsid {v:?} must be 1 to 64 printable ASCII characters")));
            }
            Some(v.as_bytes().to_vec())
        }
    };
    let secret = match &server.cookie_secret {
        None => None,
        Some(h) => {
            let v = h.get_ref();
            let bytes: Option<Vec<u8>> =
                (v.len() == 32).then(|| (0..16).map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16).ok()).collect()).flatten();
            match bytes {
                Some(b) => Some(<[u8; 16]>::try_from(b).expect("16 bytes")),
                None => return Err(cx.err(h, "cookie_secret must be 32 hex digits (16 bytes)")),
            }
        }
    };
    if *server.cookie_rotate_secs.get_ref() < 60 {
        return Err(cx.err(&server.cookie_rotate_secs, "cookie_rotate_secs must be at least 60"));
    }
    let cookies = crate::model::CookieConfig {
        enabled: server.cookies,
        secret,
        rotate: std::time::Duration::from_secs(*server.cookie_rotate_secs.get_ref()),
    };
    let static_zone = match &server.zone_file {
        None => crate::zone::StaticZone::default(),
        Some(f) => load_zone_file(cx, f, &zone)?,
    };
    if *server.snapshot_interval_secs.get_ref() == 0 {
        return Err(cx.err(&server.snapshot_interval_secs, "snapshot_interval_secs must be above 0"));
    }
    let persistence_snapshot = server.persistence_snapshot.as_ref().map(|f| {
        let p = Path::new(f.get_ref());
        cx.path.parent().map(|d| d.join(p)).unwrap_or_else(|| p.to_owned())
    });
    Ok(crate::model::ServerConfig {
        rrl: None,
        persistence_snapshot,
        snapshot_interval: std::time::Duration::from_secs(*server.snapshot_interval_secs.get_ref()),
        static_zone,
        cookies,
        nsid,
        listen,
        zone,
        nameservers,
        answer_ttl: server.answer_ttl,
        control,
        control_token,
        node_id: server.node_id,
        edns_payload: *server.edns_payload.get_ref(),
        persistence_capacity: *server.persistence_capacity.get_ref(),
        soa,
    })
}

/// The control endpoint's address and token. It changes state, so off
/// loopback it needs a token; "none" turns it off.
fn build_control(cx: &Cx, server: &RawServer) -> Result<(Option<crate::model::ControlAddr>, Option<String>), ConfigError> {
    use crate::model::ControlAddr;
    let control = match &server.control {
        None => Some(ControlAddr::Default(crate::model::DEFAULT_CONTROL)),
        Some(c) if c.get_ref() == "none" => None,
        Some(c) => Some(ControlAddr::Configured(
            c.get_ref()
                .parse::<SocketAddr>()
                .map_err(|e| cx.err(c, format!("control address {:?} is not IP:PORT or \"none\": {e}", c.get_ref())))?,
        )),
    };
    let token = match (&server.control_token, &server.control_token_file) {
        (Some(t), Some(_)) => return Err(cx.err(t, "give control_token or control_token_file, not both")),
        (Some(t), None) => Some((t, t.get_ref().clone())),
        (None, Some(f)) => {
            let p = cx.path.parent().map(|d| d.join(f.get_ref())).unwrap_or_else(|| f.get_ref().into());
            let text = std::fs::read_to_string(&p).map_err(|e| cx.err(f, format!("cannot read control_token_file {}: {e}", p.display())))?;
            Some((f, text.trim().to_string()))
        }
        (None, None) => None,
    };
    if let Some((at, t)) = &token {
        if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(cx.err(at, "the control token must be at least 16 printable ASCII characters without spaces"));
        }
    }
    if let (Some(a), None) = (&control, &token) {
        if !a.addr().ip().is_loopback() {
            let at = server.control.as_ref().expect("a non-default address was configured");
            return Err(cx.err(at, format!("control address {} is not loopback: the endpoint changes state, so set control_token or control_token_file", a.addr())));
        }
    }
    Ok((control, token.map(|(_, t)| t)))
}

/// Reads the zone file named at `f` (relative to the config); its errors
/// name the zone file and its line.
fn load_zone_file(cx: &Cx, f: &Spanned<String>, zone: &Name) -> Result<crate::zone::StaticZone, ConfigError> {
    let p = Path::new(f.get_ref());
    let path = cx.path.parent().map(|d| d.join(p)).unwrap_or_else(|| p.to_owned());
    let text = std::fs::read_to_string(&path).map_err(|e| cx.err(f, format!("cannot read zone_file {}: {e}", path.display())))?;
    crate::zone::StaticZone::parse(&text, &path, zone).map_err(|e| ConfigError { file: path.clone(), line: e.line, column: 1, message: e.message })
}

fn name_ok(cx: &Cx, s: &Spanned<String>, what: &str) -> Result<String, ConfigError> {
    let v = s.get_ref();
    if v.is_empty() || v.contains('/') {
        return Err(cx.err(s, format!("{what} name {v:?} must be non-empty and contain no '/'")));
    }
    Ok(v.clone())
}

fn millis(cx: &Cx, v: &Spanned<u64>, what: &str, min: u64) -> Result<std::time::Duration, ConfigError> {
    if *v.get_ref() < min {
        return Err(cx.err(v, format!("{what} must be at least {min} ms")));
    }
    Ok(std::time::Duration::from_millis(*v.get_ref()))
}

/// Fields that only some monitor types take: a field set on another type is an error.
fn only_for<T>(cx: &Cx, field: &Option<Spanned<T>>, name: &str, kind: &str, types: &str) -> Result<(), ConfigError> {
    match field {
        Some(f) => Err(cx.err(f, format!("{name} applies to monitors of type {types}, not {kind:?}"))),
        None => Ok(()),
    }
}

fn build_monitors(cx: &Cx, raw: &[Spanned<RawMonitor>]) -> Result<Vec<Monitor>, ConfigError> {
    let mut out: Vec<Monitor> = Vec::new();
    for m in raw {
        let m = m.get_ref();
        let name = name_ok(cx, &m.name, "monitor")?;
        if out.iter().any(|o| o.name == name) {
            return Err(cx.err(&m.name, format!("duplicate monitor {name:?}")));
        }
        let interval = millis(cx, &m.interval_ms, "interval_ms", 50)?;
        let timeout = millis(cx, &m.timeout_ms, "timeout_ms", 10)?;
        if timeout > interval {
            return Err(cx.err(&m.timeout_ms, "timeout_ms must not exceed interval_ms (probes of one VS never overlap)"));
        }
        for t in [&m.up_after, &m.down_after] {
            if *t.get_ref() == 0 {
                return Err(cx.err(t, "up_after and down_after must be at least 1"));
            }
        }
        let initial_up = match &m.initial {
            None => true,
            Some(i) => match i.get_ref().as_str() {
                "up" => true,
                "down" => false,
                other => return Err(cx.err(i, format!("initial {other:?} is not \"up\" or \"down\""))),
            },
        };
        let kind = build_monitor_kind(cx, m)?;
        out.push(Monitor {
            name,
            kind,
            interval,
            timeout,
            up_after: *m.up_after.get_ref(),
            down_after: *m.down_after.get_ref(),
            initial_up,
        });
    }
    Ok(out)
}

fn build_monitor_kind(cx: &Cx, m: &RawMonitor) -> Result<MonitorKind, ConfigError> {
    let kind = m.kind.get_ref().as_str();
    let http_only = |cx: &Cx| -> Result<(), ConfigError> {
        only_for(cx, &m.path, "path", kind, "http, https")?;
        only_for(cx, &m.expect_status, "expect_status", kind, "http, https")?;
        only_for(cx, &m.expect_body, "expect_body", kind, "http, https")?;
        only_for(cx, &m.host, "host", kind, "http, https")
    };
    let dns_only = |cx: &Cx| -> Result<(), ConfigError> {
        only_for(cx, &m.query_name, "query_name", kind, "dns")?;
        only_for(cx, &m.query_type, "query_type", kind, "dns")?;
        only_for(cx, &m.expect_rcode, "expect_rcode", kind, "dns")?;
        only_for(cx, &m.expect_address, "expect_address", kind, "dns")
    };
    let tls_only = |cx: &Cx| -> Result<(), ConfigError> {
        only_for(cx, &m.tls_verify, "tls_verify", kind, "https")?;
        only_for(cx, &m.ca_file, "ca_file", kind, "https")
    };
    match kind {
        "tcp" => {
            http_only(cx)?;
            dns_only(cx)?;
            tls_only(cx)?;
            Ok(MonitorKind::Tcp)
        }
        "http" | "https" => {
            dns_only(cx)?;
            let tls = kind == "https";
            if !tls {
                tls_only(cx)?;
            }
            let path = m.path.as_ref().map(|p| p.get_ref().clone()).unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                return Err(cx.err(m.path.as_ref().unwrap(), format!("path {path:?} must start with '/'")));
            }
            let ca_file = m.ca_file.as_ref().map(|c| {
                let p = Path::new(c.get_ref());
                // Relative to the config file, as an operator reads it.
                cx.path.parent().map(|d| d.join(p)).unwrap_or_else(|| p.to_owned())
            });
            if let (Some(c), Some(p)) = (&m.ca_file, &ca_file) {
                if !p.is_file() {
                    return Err(cx.err(c, format!("ca_file {} does not exist", p.display())));
                }
            }
            Ok(MonitorKind::Http(HttpCheck {
                tls,
                verify: m.tls_verify.as_ref().map(|v| *v.get_ref()).unwrap_or(true),
                ca_file,
                host: m.host.as_ref().map(|h| h.get_ref().clone()),
                path,
                expect_status: m.expect_status.as_ref().map(|s| *s.get_ref()).unwrap_or(200),
                expect_body: m.expect_body.as_ref().map(|b| b.get_ref().clone()),
            }))
        }
        "dns" => {
            http_only(cx)?;
            tls_only(cx)?;
            let qname = match &m.query_name {
                Some(q) => parse_fqdn(cx, q, "query_name")?,
                None => return Err(cx.err(&m.kind, "a dns monitor needs query_name")),
            };
            let qtype = match &m.query_type {
                None => hickory_proto::rr::RecordType::A,
                Some(t) => t.get_ref().to_uppercase().parse().map_err(|_| cx.err(t, format!("query_type {:?} is not a record type", t.get_ref())))?,
            };
            let rcode = match &m.expect_rcode {
                None => hickory_proto::op::ResponseCode::NoError,
                Some(r) => match r.get_ref().to_uppercase().as_str() {
                    "NOERROR" => hickory_proto::op::ResponseCode::NoError,
                    "NXDOMAIN" => hickory_proto::op::ResponseCode::NXDomain,
                    "REFUSED" => hickory_proto::op::ResponseCode::Refused,
                    "SERVFAIL" => hickory_proto::op::ResponseCode::ServFail,
                    other => return Err(cx.err(r, format!("expect_rcode {other:?} is not NOERROR, NXDOMAIN, REFUSED or SERVFAIL"))),
                },
            };
            let address = match &m.expect_address {
                None => None,
                Some(a) => Some(a.get_ref().parse().map_err(|e| cx.err(a, format!("expect_address {:?}: {e}", a.get_ref())))?),
            };
            Ok(MonitorKind::Dns(DnsCheck { qname, qtype, rcode, address }))
        }
        other => Err(cx.err(&m.kind, format!("unknown monitor type {other:?}; known: tcp, http, https, dns"))),
    }
}

fn build_exporters(cx: &Cx, raw: &[Spanned<RawExporter>]) -> Result<Vec<Exporter>, ConfigError> {
    let mut out: Vec<Exporter> = Vec::new();
    for e in raw {
        let e = e.get_ref();
        let name = name_ok(cx, &e.name, "exporter")?;
        if out.iter().any(|o| o.name == name) {
            return Err(cx.err(&e.name, format!("duplicate exporter {name:?}")));
        }
        let url = e.url.get_ref();
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(cx.err(&e.url, format!("exporter url {url:?} must start with http:// or https://")));
        }
        let interval = millis(cx, &e.interval_ms, "interval_ms", 100)?;
        let timeout = match &e.timeout_ms {
            Some(t) => millis(cx, t, "timeout_ms", 10)?,
            None => interval.min(std::time::Duration::from_secs(5)),
        };
        let stale_after = match &e.stale_after_ms {
            Some(s) => millis(cx, s, "stale_after_ms", 1)?,
            None => interval * 3,
        };
        if stale_after <= interval {
            let at = e.stale_after_ms.as_ref().map(|s| s.span().start).unwrap_or(e.interval_ms.span().start);
            return Err(cx.err_at(at, "stale_after_ms must exceed interval_ms (a rate needs two scrapes)".into()));
        }
        out.push(Exporter { name, url: url.clone(), interval, timeout, stale_after });
    }
    Ok(out)
}

fn build_metric_sel(cx: &Cx, raw: &Spanned<RawMetricSel>, exporters: &[Exporter], kind: &str) -> Result<MetricSel, ConfigError> {
    let r = raw.get_ref();
    let Some(ex) = &r.exporter else { return Err(cx.err(raw, format!("{kind}: name an exporter (exporter = \"...\")"))) };
    let Some(metric) = &r.metric else { return Err(cx.err(raw, format!("{kind}: name a metric (metric = \"...\")"))) };
    if let Some(v) = &r.value {
        return Err(cx.err(v, format!("{kind}: value applies to capacity only")));
    }
    let exporter = exporters
        .iter()
        .position(|e| e.name == *ex.get_ref())
        .ok_or_else(|| cx.err(ex, format!("{kind}: no exporter named {:?}", ex.get_ref())))? as u32;
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    if metric.get_ref().is_empty() || !metric.get_ref().chars().all(ok) {
        return Err(cx.err(metric, format!("{kind}: {:?} is not a Prometheus metric name", metric.get_ref())));
    }
    Ok(MetricSel { exporter, metric: metric.get_ref().clone(), labels: r.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect() })
}

fn build_metrics(cx: &Cx, raw: &RawMetrics, exporters: &[Exporter]) -> Result<MetricSources, ConfigError> {
    let sel = |r: &Option<Spanned<RawMetricSel>>, kind| r.as_ref().map(|r| build_metric_sel(cx, r, exporters, kind)).transpose();
    let capacity = match &raw.capacity {
        None => None,
        Some(c) => match &c.get_ref().value {
            Some(v) if c.get_ref().exporter.is_none() && c.get_ref().metric.is_none() => {
                if v.get_ref().is_nan() || *v.get_ref() <= 0.0 {
                    return Err(cx.err(v, "capacity value must be positive"));
                }
                Some(CapacitySource::Fixed(*v.get_ref()))
            }
            Some(v) => return Err(cx.err(v, "capacity: give either value or exporter and metric")),
            None => Some(CapacitySource::Metric(build_metric_sel(cx, c, exporters, "capacity")?)),
        },
    };
    Ok(MetricSources {
        connections: sel(&raw.connections, "connections")?,
        packet_rate: sel(&raw.packet_rate, "packet_rate")?,
        cpu: sel(&raw.cpu, "cpu")?,
        capacity,
    })
}

/// A VS's sources: its own, else its SAC's, kind by kind.
fn merge_metrics(own: MetricSources, sac: &MetricSources) -> MetricSources {
    MetricSources {
        connections: own.connections.or_else(|| sac.connections.clone()),
        packet_rate: own.packet_rate.or_else(|| sac.packet_rate.clone()),
        cpu: own.cpu.or_else(|| sac.cpu.clone()),
        capacity: own.capacity.or_else(|| sac.capacity.clone()),
    }
}

type SacsOut = (Vec<Sac>, Vec<Vs>, HashMap<String, u32>, HashMap<String, u32>);

fn build_sacs(cx: &Cx, raw: &[Spanned<RawSac>], monitors: &[Monitor], exporters: &[Exporter]) -> Result<SacsOut, ConfigError> {
    // SACs and their virtual servers; VS ids are global, in config order.
    let mut sacs: Vec<Sac> = Vec::new();
    let mut vss: Vec<Vs> = Vec::new();
    let mut sac_ids: HashMap<String, u32> = HashMap::new();
    let mut vs_ids: HashMap<String, u32> = HashMap::new();
    for s in raw {
        let s = s.get_ref();
        let name = name_ok(cx, &s.name, "SAC")?;
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
        let sac_metrics = build_metrics(cx, &s.metrics, exporters)?;
        for v in &s.virtual_servers {
            let vs = build_vs(cx, v.get_ref(), &name, id, monitors, exporters, &sac_metrics)?;
            if vs_ids.contains_key(&vs.name) {
                return Err(cx.err(&v.get_ref().name, format!("duplicate virtual server {:?}", vs.name)));
            }
            vs_ids.insert(vs.name.clone(), vss.len() as u32);
            vss.push(vs);
        }
        sac_ids.insert(name.clone(), id);
        let path_probe = s.path_probe.as_ref().map(|p| build_path_probe(cx, p.get_ref())).transpose()?;
        sacs.push(Sac { name, address, address6, path_probe });
    }
    Ok((sacs, vss, sac_ids, vs_ids))
}

fn build_vs(
    cx: &Cx,
    v: &RawVs,
    sac_name: &str,
    sac: u32,
    monitors: &[Monitor],
    exporters: &[Exporter],
    sac_metrics: &MetricSources,
) -> Result<Vs, ConfigError> {
    let vname = name_ok(cx, &v.name, "VS")?;
    let full = format!("{sac_name}/{vname}");
    let target = match &v.target {
        None => None,
        Some(t) => Some(t.get_ref().parse::<SocketAddr>().map_err(|e| cx.err(t, format!("VS {full:?}: target {:?} is not IP:PORT: {e}", t.get_ref())))?),
    };
    let monitor = match &v.monitor {
        None => None,
        Some(m) => {
            let i = monitors
                .iter()
                .position(|x| x.name == *m.get_ref())
                .ok_or_else(|| cx.err(m, format!("VS {full:?}: no monitor named {:?}", m.get_ref())))?;
            if target.is_none() {
                return Err(cx.err(m, format!("VS {full:?} has a monitor but no target (IP:PORT to probe)")));
            }
            Some(i as u32)
        }
    };
    if *v.weight.get_ref() == 0 {
        return Err(cx.err(&v.weight, "weight must be at least 1"));
    }
    let initially_up = match monitor {
        Some(m) => monitors[m as usize].initial_up,
        None => v.up,
    };
    Ok(Vs {
        name: full,
        sac,
        initially_up,
        target,
        monitor,
        weight: *v.weight.get_ref(),
        metrics: merge_metrics(build_metrics(cx, &v.metrics, exporters)?, sac_metrics),
    })
}

fn build_methods(cx: &Cx, raw: &Spanned<RawMethods>) -> Result<Vec<Method>, ConfigError> {
    // An untagged enum loses the spans inside it: errors point at `method`.
    let names: Vec<&String> = match raw.get_ref() {
        RawMethods::One(m) => vec![m],
        RawMethods::Chain(v) => v.iter().collect(),
    };
    if names.is_empty() {
        return Err(cx.err(raw, "method chain is empty"));
    }
    let known = Method::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    for n in names {
        let m = Method::ALL
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, m)| *m)
            .ok_or_else(|| cx.err(raw, format!("unknown method {n:?}; known: {known}")))?;
        if out.contains(&m) {
            return Err(cx.err(raw, format!("method {n:?} listed twice in the chain")));
        }
        out.push(m);
    }
    Ok(out)
}

/// A method that reads metrics needs a source on at least one VS of the pool.
fn check_method_sources(cx: &Cx, raw: &Spanned<RawMethods>, methods: &[Method], pool: &[u32], vss: &[Vs]) -> Result<(), ConfigError> {
    for m in methods {
        let has = |f: &dyn Fn(&MetricSources) -> bool| pool.iter().any(|v| f(&vss[*v as usize].metrics));
        let ok = match m {
            Method::LeastConnections => has(&|s| s.connections.is_some()),
            Method::LowestPacketRate => has(&|s| s.packet_rate.is_some()),
            Method::LowestCpu => has(&|s| s.cpu.is_some()),
            Method::MostCapacity => has(&|s| s.capacity.is_some() && s.connections.is_some()),
            _ => true,
        };
        if !ok {
            return Err(cx.err(raw, format!("method {:?} reads metrics that no VS of this pool (nor its SAC) names", m.name())));
        }
    }
    Ok(())
}

fn build_path_probe(cx: &Cx, p: &RawPathProbe) -> Result<crate::model::PathProbe, ConfigError> {
    let url = p.url.get_ref();
    if !(url.starts_with("http://") || url.starts_with("https://")) || reqwest::Url::parse(url).is_err() {
        return Err(cx.err(&p.url, format!("path_probe url {url:?} is not an http(s) URL like http://192.0.2.1:9115/probe")));
    }
    let module = p.module.get_ref();
    if !["icmp", "tcp", "dns"].contains(&module.as_str()) {
        return Err(cx.err(&p.module, format!("path_probe module {module:?} is not one of icmp, tcp, dns")));
    }
    Ok(crate::model::PathProbe { url: url.clone(), module: module.clone() })
}

/// A path method needs a SAC of the pool with a `path_probe`.
fn check_path_sources(cx: &Cx, w: &RawWideIp, wide_ip: &WideIp, sacs: &[Sac]) -> Result<(), ConfigError> {
    let ModeConfig::Dynamic { methods, .. } = &wide_ip.mode else { return Ok(()) };
    let probed = wide_ip.pool_sac.iter().any(|s| sacs[*s as usize].path_probe.is_some());
    match (methods.iter().find(|m| m.reads_paths()), &w.method) {
        (Some(m), Some(raw)) if !probed => Err(cx.err(raw, format!("method {:?} reads path metrics, but no SAC of this pool has a path_probe", m.name()))),
        _ => Ok(()),
    }
}

fn build_paths(cx: &Cx, p: &RawPaths) -> Result<crate::model::PathConfig, ConfigError> {
    let mut c = crate::model::PathConfig::default();
    let within = |v: &Option<Spanned<u8>>, max: u8, what: &str| -> Result<Option<u8>, ConfigError> {
        match v {
            Some(x) if *x.get_ref() == 0 || *x.get_ref() > max => Err(cx.err(x, format!("{what} is 1 to {max}"))),
            Some(x) => Ok(Some(*x.get_ref())),
            None => Ok(None),
        }
    };
    c.prefix_v4 = within(&p.prefix_v4, 32, "prefix_v4")?.unwrap_or(c.prefix_v4);
    c.prefix_v6 = within(&p.prefix_v6, 128, "prefix_v6")?.unwrap_or(c.prefix_v6);
    let positive = |v: &Option<Spanned<u64>>, what: &str| -> Result<Option<u64>, ConfigError> {
        match v {
            Some(x) if *x.get_ref() == 0 => Err(cx.err(x, format!("{what} must be above 0"))),
            Some(x) => Ok(Some(*x.get_ref())),
            None => Ok(None),
        }
    };
    let as64 = |v: &Option<Spanned<u32>>| v.as_ref().map(|x| Spanned::new(x.span(), *x.get_ref() as u64));
    let as64u = |v: &Option<Spanned<usize>>| v.as_ref().map(|x| Spanned::new(x.span(), *x.get_ref() as u64));
    c.max_probes_per_sec = positive(&as64(&p.max_probes_per_sec), "max_probes_per_sec")?.map_or(c.max_probes_per_sec, |v| v as u32);
    c.queue = positive(&as64u(&p.queue), "queue")?.map_or(c.queue, |v| v as usize);
    c.window = positive(&as64u(&p.window), "window")?.map_or(c.window, |v| v as usize);
    c.probes_per_round = positive(&as64(&p.probes_per_round), "probes_per_round")?.map_or(c.probes_per_round, |v| v as u32);
    c.ttl = positive(&p.ttl_secs, "ttl_secs")?.map_or(c.ttl, std::time::Duration::from_secs);
    c.timeout = positive(&p.timeout_ms, "timeout_ms")?.map_or(c.timeout, std::time::Duration::from_millis);
    for (k, v) in &p.qos {
        let w = *v.get_ref();
        if !(w >= 0.0 && w.is_finite()) {
            return Err(cx.err(v, format!("qos weight {k} must be 0 or more")));
        }
        let slot = match k.as_str() {
            "rtt" => &mut c.qos.rtt,
            "loss" => &mut c.qos.loss,
            "hops" => &mut c.qos.hops,
            "cpu" => &mut c.qos.cpu,
            "connections" => &mut c.qos.connections,
            "packet_rate" => &mut c.qos.packet_rate,
            "capacity" => &mut c.qos.capacity,
            other => return Err(cx.err(v, format!("qos weight {other:?} is not one of rtt, loss, hops, cpu, connections, packet_rate, capacity"))),
        };
        *slot = w;
    }
    Ok(c)
}

fn build_all_down(cx: &Cx, w: &RawWideIp, mode: &str) -> Result<AllDown, ConfigError> {
    let parse6 = |a: &Spanned<String>| a.get_ref().parse::<Ipv6Addr>().map_err(|e| cx.err(a, format!("fallback_address6 {:?}: {e}", a.get_ref())));
    let policy = match &w.all_down {
        None => AllDown::RoundRobin,
        Some(p) => match p.get_ref().as_str() {
            "round_robin" => AllDown::RoundRobin,
            "refused" => AllDown::Refused,
            "servfail" => AllDown::ServFail,
            "fallback" => {
                let Some(a) = &w.fallback_address else {
                    return Err(cx.err(p, "all_down = \"fallback\" needs fallback_address"));
                };
                let v4 = a.get_ref().parse::<Ipv4Addr>().map_err(|e| cx.err(a, format!("fallback_address {:?}: {e}", a.get_ref())))?;
                AllDown::Fallback(v4, w.fallback_address6.as_ref().map(parse6).transpose()?)
            }
            other => {
                return Err(cx.err(p, format!("all_down {other:?} is not one of round_robin, fallback, refused, servfail")))
            }
        },
    };
    if mode == "stripe" && policy != AllDown::RoundRobin {
        let p = w.all_down.as_ref().unwrap();
        return Err(cx.err(p, "mode \"stripe\" keeps the patent's round-robin fallback when no VS is up; all_down applies to the other modes"));
    }
    if !matches!(policy, AllDown::Fallback(..)) {
        if let Some(f) = [&w.fallback_address, &w.fallback_address6].into_iter().flatten().next() {
            return Err(cx.err(f, "fallback addresses apply with all_down = \"fallback\" only"));
        }
    }
    Ok(policy)
}

fn build_wide_ip(
    cx: &Cx,
    w: &RawWideIp,
    server: &crate::model::ServerConfig,
    vss: &[Vs],
    vs_ids: &HashMap<String, u32>,
    id: u32,
) -> Result<WideIp, ConfigError> {
    let zone = &server.zone;
    let name = parse_fqdn(cx, &w.name, "wide IP name")?;
    if !zone.zone_of(&name) || name.to_lowercase() == *zone {
        return Err(cx.err(&w.name, format!("wide IP {name} is not below the zone {zone}")));
    }
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
    if server.static_zone.names().any(|n| *n == name.to_lowercase()) {
        return Err(cx.err(&w.name, format!("wide IP {name} also has static data in the zone_file")));
    }
    if let Some(cut) = server.static_zone.cut_of(&name) {
        return Err(cx.err(&w.name, format!("wide IP {name} lies in {cut}, delegated in the zone_file")));
    }
    let mode_name = w.mode.get_ref().as_str();
    let mode = match mode_name {
        "stripe" | "stripe_consistent" | "topology" => {
            if let Some(m) = &w.method {
                return Err(cx.err(m, format!("method applies to mode \"dynamic\" only, not {mode_name:?}")));
            }
            if let Some(t) = &w.persistence_ttl {
                return Err(cx.err(t, format!("persistence_ttl applies to mode \"dynamic\" only, not {mode_name:?}")));
            }
            match mode_name {
                "stripe" => ModeConfig::Stripe,
                "stripe_consistent" => ModeConfig::StripeConsistent,
                _ => ModeConfig::Topology,
            }
        }
        "dynamic" => {
            let Some(raw_methods) = &w.method else {
                return Err(cx.err(&w.mode, "mode \"dynamic\" needs a method (e.g. \"round_robin\", or a chain [\"least_connections\", \"round_robin\"])"));
            };
            let methods = build_methods(cx, raw_methods)?;
            check_method_sources(cx, raw_methods, &methods, &pool, vss)?;
            let ttl = match &w.persistence_ttl {
                None => return Err(cx.err(&w.mode, "mode \"dynamic\" needs persistence_ttl (seconds)")),
                Some(t) => *t.get_ref(),
            };
            ModeConfig::Dynamic { methods, persistence_ttl: ttl }
        }
        other => {
            return Err(cx.err(
                &w.mode,
                format!("unknown mode {other:?}; known: \"stripe\", \"stripe_consistent\", \"topology\", \"dynamic\""),
            ))
        }
    };
    let (persist_mask_v4, persist_mask_v6) = build_persist_masks(cx, w, &mode)?;
    Ok(WideIp {
        persist_mask_v4,
        persist_mask_v6,
        ecs: build_ecs(cx, w)?,
        schedule: build_schedule(cx, w, &mode)?,
        id,
        name,
        mode,
        pool_sac: pool.iter().map(|v| vss[*v as usize].sac).collect(),
        pool,
        answer_ttl: w.answer_ttl.unwrap_or(server.answer_ttl),
        all_down: build_all_down(cx, w, mode_name)?,
    })
}

fn build_persist_masks(cx: &Cx, w: &RawWideIp, mode: &ModeConfig) -> Result<(u8, u8), ConfigError> {
    let mut out = (32u8, 128u8);
    for (field, max, slot) in [(&w.persist_mask_v4, 32u8, 0), (&w.persist_mask_v6, 128u8, 1)] {
        let Some(m) = field else { continue };
        if !matches!(mode, ModeConfig::Dynamic { .. }) {
            return Err(cx.err(m, "persistence masks apply to mode \"dynamic\" only"));
        }
        if *m.get_ref() > max {
            return Err(cx.err(m, format!("a persistence mask is 0 to {max}")));
        }
        if slot == 0 {
            out.0 = *m.get_ref();
        } else {
            out.1 = *m.get_ref();
        }
    }
    Ok(out)
}

/// `persistence_schedule`: its windows, dynamic mode only.
fn build_schedule(cx: &Cx, w: &RawWideIp, mode: &ModeConfig) -> Result<Schedule, ConfigError> {
    let Some(raw) = &w.persistence_schedule else { return Ok(Schedule::default()) };
    if !matches!(mode, ModeConfig::Dynamic { .. }) {
        return Err(cx.err(raw, "persistence_schedule applies to mode \"dynamic\" only"));
    }
    let mut windows = Vec::new();
    for rw in raw.get_ref() {
        windows.push(build_window(cx, rw.get_ref())?);
    }
    Ok(Schedule { windows })
}

fn build_window(cx: &Cx, rw: &RawWindow) -> Result<Window, ConfigError> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut days = [false; 7];
    for d in rw.days.get_ref() {
        let i = DAYS
            .iter()
            .position(|n| n.eq_ignore_ascii_case(d.get_ref()))
            .ok_or_else(|| cx.err(d, format!("day {:?} is not one of mon, tue, wed, thu, fri, sat, sun", d.get_ref())))?;
        days[i] = true;
    }
    if !days.contains(&true) {
        return Err(cx.err(&rw.days, "a window needs at least one day"));
    }
    let time = |t: &Spanned<String>, upto: u32| -> Result<u32, ConfigError> {
        let bad = || cx.err(t, format!("{:?} is not a time HH:MM from 00:00 to {}", t.get_ref(), if upto == 24 { "24:00" } else { "23:59" }));
        let (h, m) = t.get_ref().split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m > 59 || h > upto || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(h * 3600 + m * 60)
    };
    let (start, end) = (time(&rw.start, 23)?, time(&rw.end, 24)?);
    if start == end {
        return Err(cx.err(&rw.end, "a window's end equals its start; for a whole day use 00:00 to 24:00"));
    }
    let zone = rw.time_zone.get_ref();
    let time_zone = jiff::tz::TimeZone::get(zone).map_err(|e| cx.err(&rw.time_zone, format!("time_zone {zone:?} is not an IANA time zone: {e}")))?;
    Ok(Window { days, start, end, time_zone, zone_name: zone.clone(), ttl: *rw.ttl.get_ref() })
}

/// `ecs = true` and its longest prefixes; the prefixes only with ECS on.
fn build_ecs(cx: &Cx, w: &RawWideIp) -> Result<Option<(u8, u8)>, ConfigError> {
    let on = w.ecs.as_ref().is_some_and(|e| *e.get_ref());
    let mut out = (24u8, 56u8);
    for (field, max, slot) in [(&w.ecs_max_prefix_v4, 32u8, &mut out.0), (&w.ecs_max_prefix_v6, 128u8, &mut out.1)] {
        let Some(m) = field else { continue };
        if !on {
            return Err(cx.err(m, "ecs_max_prefix_v4/_v6 apply with ecs = true only"));
        }
        if *m.get_ref() == 0 || *m.get_ref() > max {
            return Err(cx.err(m, format!("a client-subnet prefix length is 1 to {max}")));
        }
        *slot = *m.get_ref();
    }
    Ok(on.then_some(out))
}

fn build_topology(cx: &Cx, raw: &[Spanned<RawTopology>], sac_ids: &HashMap<String, u32>) -> Result<Vec<TopologyRule>, ConfigError> {
    let mut topology: Vec<TopologyRule> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in raw {
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
        if !seen.insert(net) {
            return Err(cx.err(&t.ldns, format!("duplicate topology prefix {net}")));
        }
        topology.push(TopologyRule { net, sac });
    }
    Ok(topology)
}
