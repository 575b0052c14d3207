//! The control endpoint (HTTP/JSON) and the `edns ctl` client that calls it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use edns_common::{VS_AVAILABLE, VS_MARKED_UP};
use serde::{Deserialize, Serialize};

use crate::dns::Responder;
use crate::health::{Admin, Health};
use crate::metrics::{ExporterStatus, VsFigures};
use crate::store::now_ns;

/// Data-plane counters by name, summed over CPUs.
pub type CounterSource = Box<dyn Fn() -> anyhow::Result<Vec<(String, u64)>> + Send + Sync>;

/// What the handlers read: the config in force.
pub struct Control {
    pub responder: Arc<Responder>,
    pub health: Arc<Health>,
    /// Data-plane counters, when an XDP program is attached.
    pub xdp_counters: Option<CounterSource>,
    /// Reload and restart counts.
    pub ops: Option<Arc<crate::live::OpsStats>>,
    /// The cluster this node is part of, if any.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Path measurements, when a SAC has a `path_probe`.
    pub paths: Option<Arc<crate::paths::Paths>>,
}

type Reload = Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<serde_json::Value, String>> + Send>> + Send + Sync>;

/// The router's state: the current [`Control`], replaced at each reload.
pub struct ControlHandle {
    current: std::sync::RwLock<Arc<Control>>,
    reload: std::sync::OnceLock<Reload>,
}

impl ControlHandle {
    pub fn new(c: Arc<Control>) -> ControlHandle {
        ControlHandle { current: std::sync::RwLock::new(c), reload: std::sync::OnceLock::new() }
    }
    pub fn get(&self) -> Arc<Control> {
        self.current.read().unwrap().clone()
    }
    pub fn set(&self, c: Arc<Control>) {
        *self.current.write().unwrap() = c;
    }
    /// What `POST /v1/reload` runs.
    pub fn set_reload(&self, r: Reload) {
        let _ = self.reload.set(r);
    }
}

type Shared = State<Arc<ControlHandle>>;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordView {
    pub wide_ip: String,
    pub ldns: String,
    pub vs: String,
    pub sac: String,
    pub address: String,
    /// The wide IP's persistence TTL in force, which judges the record.
    pub ttl_secs: u32,
    /// The TTL in force when the record was made.
    pub created_ttl_secs: u32,
    /// Seconds since the last request (the Fig. 6 time stamp).
    pub last_request_age_secs: f64,
    pub created_age_secs: f64,
    /// Negative once the record is no longer timely.
    pub expires_in_secs: f64,
    pub hits: u64,
    pub node_id: u32,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeView {
    pub ok: bool,
    pub latency_ms: f64,
    pub age_secs: f64,
    pub detail: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct VsView {
    pub name: String,
    pub sac: String,
    pub address: String,
    /// What the data plane sees (admin override applied).
    pub marked_up: bool,
    pub available: bool,
    pub admin: Admin,
    pub monitor: Option<String>,
    pub target: Option<String>,
    /// The probes' own view, before any admin override.
    pub probe_marked_up: bool,
    pub probe_available: bool,
    pub last_probe: Option<ProbeView>,
    pub consecutive_ok: u32,
    pub consecutive_failures: u32,
    pub probes: u64,
    /// Seconds since probe_marked_up last changed (or since start).
    pub marked_for_secs: f64,
    pub metrics: Option<VsFigures>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct WideIpView {
    pub name: String,
    pub mode: String,
    /// The method chain (dynamic mode).
    pub methods: Vec<String>,
    pub all_down: String,
    /// The method that balanced last (null: none yet, or every method lacked data).
    pub last_method: Option<String>,
    pub last_age_secs: Option<f64>,
    /// Why earlier methods of the chain were skipped at the last balancing.
    pub skipped: Vec<String>,
    /// Persistence TTL in force (dynamic mode; it may follow the schedule).
    pub persistence_ttl_secs: Option<u32>,
    /// The schedule's windows, e.g. "mon,tue 08:00-18:00 Europe/Berlin ttl 3600".
    pub persistence_schedule: Vec<String>,
    /// EDNS Client Subnet: the longest prefixes read (null: off).
    pub ecs_max_prefix: Option<(u8, u8)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StateQuery {
    pub state: String,
}

/// A schedule window as text: "mon,tue 08:00-18:00 Europe/Berlin ttl 3600".
fn window_text(w: &crate::select::schedule::Window) -> String {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let days: Vec<&str> = (0..7).filter(|i| w.days[*i]).map(|i| DAYS[i]).collect();
    let hm = |s: u32| format!("{:02}:{:02}", s / 3600, s % 3600 / 60);
    format!("{} {}-{} {} ttl {}", days.join(","), hm(w.start), hm(w.end), w.zone_name, w.ttl)
}

/// Text form of an LDNS key address (IPv4-mapped shown as IPv4).
pub fn ldns_text(addr: [u8; 16]) -> IpAddr {
    crate::model::unmapped(IpAddr::V6(Ipv6Addr::from(addr)))
}

/// An LDNS key as text: the address, a prefix as ADDR/LEN, or a client
/// subnet as "subnet ADDR/LEN".
pub fn ldns_key_text(k: &edns_common::LdnsKey) -> String {
    let ip = ldns_text(k.addr);
    let len = if ip.is_ipv4() { k.prefix_len.saturating_sub(96) } else { k.prefix_len };
    match k.kind {
        edns_common::LDNS_KIND_PREFIX => format!("{ip}/{len}"),
        edns_common::LDNS_KIND_SUBNET => format!("subnet {ip}/{len}"),
        _ => ip.to_string(),
    }
}

pub(crate) type HttpError = (StatusCode, String);

fn internal(e: anyhow::Error) -> HttpError {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

pub(crate) fn records(c: &Control) -> Result<Vec<RecordView>, HttpError> {
    let m = &c.responder.model;
    let now = now_ns();
    let secs = |ns: i128| ns as f64 / 1e9;
    let list = c.responder.selector.store.persist_list().map_err(internal)?;
    Ok(list
        .into_iter()
        .map(|(k, r)| {
            // A record naming no wide IP or VS of this config (written by
            // another config or node) is shown by its ids, not hidden.
            let wide_ip = m.wide_ips.get(k.wide_ip as usize).map(|w| w.name.to_string()).unwrap_or(format!("#{}", k.wide_ip));
            let vs = m.vss.get(r.vs as usize);
            let sac = vs.map(|v| &m.sacs[v.sac as usize]);
            let ttl = if (k.wide_ip as usize) < m.wide_ips.len() { c.responder.selector.ttls.get(k.wide_ip) } else { r.ttl_secs };
            RecordView {
                wide_ip,
                ldns: if k.ldns.kind == edns_common::LDNS_KIND_GROUP {
                    let name = m.groups.name_of(k.ldns.group).unwrap_or(format!("#{}", k.ldns.group));
                    format!("group {name}")
                } else {
                    ldns_key_text(&k.ldns)
                },
                vs: vs.map(|v| v.name.clone()).unwrap_or(format!("#{}", r.vs)),
                sac: sac.map(|s| s.name.clone()).unwrap_or_default(),
                address: sac.map(|s| s.address.to_string()).unwrap_or_default(),
                ttl_secs: ttl,
                created_ttl_secs: r.ttl_secs,
                last_request_age_secs: secs(now as i128 - r.last_ns as i128),
                created_age_secs: secs(now as i128 - r.created_ns as i128),
                expires_in_secs: secs(r.last_ns as i128 + ttl as i128 * 1_000_000_000 - now as i128),
                hits: r.hits,
                node_id: r.node_id,
            }
        })
        .collect())
}

pub(crate) fn vs_view(c: &Control) -> Result<Vec<VsView>, HttpError> {
    let m = &c.responder.model;
    let health = c.health.snapshot();
    m.vss
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = c.responder.selector.store.vs_state(i as u32).map_err(internal)?;
            let sac = &m.sacs[v.sac as usize];
            let h = &health[i];
            let figures = c.responder.selector.metrics.figures(i as u32);
            let has_metrics = v.metrics != Default::default();
            Ok(VsView {
                name: v.name.clone(),
                sac: sac.name.clone(),
                address: sac.address.to_string(),
                marked_up: s & VS_MARKED_UP != 0,
                available: s & VS_AVAILABLE != 0,
                admin: h.admin,
                monitor: v.monitor.map(|x| m.monitors[x as usize].name.clone()),
                target: v.target.map(|t| t.to_string()),
                probe_marked_up: h.marked,
                probe_available: h.available,
                last_probe: h.last.as_ref().map(|p| ProbeView {
                    ok: p.ok,
                    latency_ms: p.latency.as_secs_f64() * 1e3,
                    age_secs: p.at.elapsed().as_secs_f64(),
                    detail: p.detail.clone(),
                }),
                consecutive_ok: h.ok_run,
                consecutive_failures: h.fail_run,
                probes: h.probes,
                marked_for_secs: h.since.elapsed().as_secs_f64(),
                metrics: has_metrics.then_some(figures),
            })
        })
        .collect()
}

pub(crate) fn wide_ip_view(c: &Control) -> Vec<WideIpView> {
    let last = c.responder.selector.last.lock().unwrap().clone();
    c.responder
        .model
        .wide_ips
        .iter()
        .map(|w| {
            let l = last[w.id as usize].as_ref();
            WideIpView {
                name: w.name.to_string(),
                mode: w.mode.name().to_string(),
                methods: match &w.mode {
                    crate::model::ModeConfig::Dynamic { methods, .. } => methods.iter().map(|m| m.name().to_string()).collect(),
                    _ => Vec::new(),
                },
                all_down: match w.all_down {
                    crate::model::AllDown::RoundRobin => "round_robin".into(),
                    crate::model::AllDown::Fallback(a, Some(b)) => format!("fallback {a} {b}"),
                    crate::model::AllDown::Fallback(a, None) => format!("fallback {a}"),
                    crate::model::AllDown::Refused => "refused".into(),
                    crate::model::AllDown::ServFail => "servfail".into(),
                },
                last_method: l.map(|l| l.method.map(|m| m.name().to_string()).unwrap_or_else(|| "round_robin (no data)".into())),
                last_age_secs: l.and_then(|l| l.at).map(|t| t.elapsed().as_secs_f64()),
                skipped: l.map(|l| l.skipped.clone()).unwrap_or_default(),
                persistence_ttl_secs: matches!(w.mode, crate::model::ModeConfig::Dynamic { .. }).then(|| c.responder.selector.ttls.get(w.id)),
                persistence_schedule: w.schedule.windows.iter().map(window_text).collect(),
                ecs_max_prefix: w.ecs,
            }
        })
        .collect()
}

async fn set_vs(
    State(h): Shared,
    Path((sac, vs)): Path<(String, String)>,
    Query(q): Query<StateQuery>,
) -> Result<Json<VsView>, HttpError> {
    let c = h.get();
    let name = format!("{sac}/{vs}");
    let id = c
        .responder
        .model
        .vs_by_name(&name)
        .ok_or((StatusCode::NOT_FOUND, format!("no virtual server {name:?}")))?;
    let admin = Admin::parse(&q.state).ok_or_else(|| {
        (StatusCode::BAD_REQUEST, format!("state {:?} is not one of up, down, drain, auto, unavailable", q.state))
    })?;
    c.health.set_admin(id, admin).map_err(internal)?;
    Ok(Json(vs_view(&c)?.swap_remove(id as usize)))
}

async fn stats(State(h): Shared) -> Result<Json<serde_json::Value>, HttpError> {
    let c = h.get();
    let exporters: Vec<ExporterStatus> = c.responder.selector.metrics.exporters();
    let mut v = serde_json::json!({ "dns": &*c.responder.stats, "cookies": &c.responder.cookies.stats, "exporters": exporters });
    if let Some(l) = &c.responder.rrl {
        v["rrl"] = serde_json::to_value(&l.stats).map_err(|e| internal(e.into()))?;
    }
    if let Some(f) = &c.xdp_counters {
        let counters = f().map_err(internal)?;
        v["xdp"] = counters.into_iter().map(|(k, n)| (k, serde_json::Value::from(n))).collect();
    }
    if let Some(cl) = &c.cluster {
        v["cluster"] = cl.view();
    }
    if let Some(o) = &c.ops {
        v["operations"] = serde_json::to_value(&**o).unwrap_or_default();
    }
    if let Some(p) = &c.paths {
        v["paths"] = p.stats().into_iter().map(|(sac, s)| (sac, serde_json::to_value(s).unwrap_or_default())).collect();
    }
    Ok(Json(v))
}

/// `/`: the status page.
async fn status_page(State(h): Shared) -> Result<axum::response::Html<String>, HttpError> {
    crate::status::render(&h.get()).map(axum::response::Html).map_err(internal)
}

/// `/metrics`: OpenMetrics text when the scraper asks for it (Prometheus
/// does), else Prometheus's text format 0.0.4.
async fn prometheus_metrics(
    State(h): Shared,
    headers: axum::http::HeaderMap,
) -> Result<([(axum::http::header::HeaderName, &'static str); 1], String), HttpError> {
    let text = crate::telemetry::render(&h.get()).map_err(internal)?;
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        return Ok(([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text));
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::telemetry::to_prometheus_text(&text)))
}

#[derive(Debug, Deserialize)]
pub struct PathsQuery {
    pub ldns: Option<IpAddr>,
}

async fn paths_view(State(h): Shared, axum::extract::Query(q): axum::extract::Query<PathsQuery>) -> Json<Vec<crate::paths::PathView>> {
    Json(h.get().paths.as_ref().map(|p| p.view(q.ldns)).unwrap_or_default())
}

/// `POST /v1/reload`: 200 with what changed, or 409 with why the config
/// was refused (file:line) and the running one stays.
async fn reload(State(h): Shared) -> Result<Json<serde_json::Value>, HttpError> {
    let r = h.reload.get().ok_or((StatusCode::NOT_IMPLEMENTED, "reload is not available here".to_string()))?;
    r().await.map(Json).map_err(|e| (StatusCode::CONFLICT, e))
}

/// With a token configured every request must carry
/// `Authorization: Bearer TOKEN`; anything else gets 401.
async fn require_token(
    State(h): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let c = h.get();
    let Some(token) = &c.responder.model.server.control_token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| same_secret(g.trim().as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    tracing::warn!(path = %req.uri().path(), with_token = given.is_some(), "control request refused: wrong or missing bearer token");
    (StatusCode::UNAUTHORIZED, [(axum::http::header::WWW_AUTHENTICATE, "Bearer realm=\"edns\"")], "a valid bearer token is required\n").into_response()
}

/// Equality whose time does not depend on where the inputs differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

pub fn router(c: Arc<ControlHandle>) -> Router {
    Router::new()
        .route("/v1/records", get(|State(h): Shared| async move { records(&h.get()).map(Json) }))
        .route("/v1/vs", get(|State(h): Shared| async move { vs_view(&h.get()).map(Json) }))
        .route("/v1/vs/{sac}/{vs}", post(set_vs))
        .route("/v1/reload", post(reload))
        .route("/v1/wide-ips", get(|State(h): Shared| async move { Json(wide_ip_view(&h.get())) }))
        .route("/v1/stats", get(stats))
        .route("/v1/paths", get(paths_view))
        .route("/metrics", get(prometheus_metrics))
        .route("/", get(status_page))
        .layer(axum::middleware::from_fn_with_state(c.clone(), require_token))
        .with_state(c)
}

/// Blocking client for `edns ctl`.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Client {
    pub fn new(addr: SocketAddr, token: Option<String>) -> Client {
        Client {
            base: format!("http://{addr}"),
            agent: ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(5)).build(),
            token,
        }
    }

    fn call(&self, req: ureq::Request) -> anyhow::Result<serde_json::Value> {
        let url = req.url().to_string();
        let req = match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        };
        match req.call() {
            Ok(r) => r.into_json().with_context(|| format!("bad JSON from {url}")),
            Err(ureq::Error::Status(code, r)) => {
                bail!("{url}: HTTP {code}: {}", r.into_string().unwrap_or_default())
            }
            Err(e) => Err(e).with_context(|| format!("cannot reach the control endpoint at {}", self.base)),
        }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.call(self.agent.get(&format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.call(self.agent.post(&format!("{}{path}", self.base)))
    }

    pub fn set_vs(&self, name: &str, state: &str) -> anyhow::Result<serde_json::Value> {
        let (sac, vs) = name.split_once('/').with_context(|| format!("VS name {name:?} is not \"sac/vs\""))?;
        self.call(self.agent.post(&format!("{}/v1/vs/{sac}/{vs}", self.base)).query("state", state))
    }
}
