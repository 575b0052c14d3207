//! The control endpoint (HTTP/JSON) and the `edns ctl` client that calls it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use edns_common::{VS_AVAILABLE, VS_MARKED_UP, VS_UP};
use serde::{Deserialize, Serialize};

use crate::dns::Responder;
use crate::store::now_ns;

/// Shared with the handlers.
pub struct Control {
    pub responder: Arc<Responder>,
    /// Data-plane counters, when an XDP program is attached.
    pub xdp_counters: Option<Box<dyn Fn() -> anyhow::Result<Vec<(String, u64)>> + Send + Sync>>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordView {
    pub wide_ip: String,
    pub ldns: String,
    pub vs: String,
    pub sac: String,
    pub address: String,
    pub ttl_secs: u32,
    /// Seconds since the last request (the Fig. 6 time stamp).
    pub last_request_age_secs: f64,
    pub created_age_secs: f64,
    /// Negative once the record is no longer timely.
    pub expires_in_secs: f64,
    pub hits: u64,
    pub node_id: u32,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct VsView {
    pub name: String,
    pub sac: String,
    pub address: String,
    pub marked_up: bool,
    pub available: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StateQuery {
    pub state: String,
}

/// Text form of an LDNS key address (IPv4-mapped shown as IPv4).
pub fn ldns_text(addr: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(addr);
    v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6))
}

type HttpError = (StatusCode, String);

fn internal(e: anyhow::Error) -> HttpError {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

fn records(c: &Control) -> Result<Vec<RecordView>, HttpError> {
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
            RecordView {
                wide_ip,
                ldns: ldns_text(k.ldns.addr).to_string(),
                vs: vs.map(|v| v.name.clone()).unwrap_or(format!("#{}", r.vs)),
                sac: sac.map(|s| s.name.clone()).unwrap_or_default(),
                address: sac.map(|s| s.address.to_string()).unwrap_or_default(),
                ttl_secs: r.ttl_secs,
                last_request_age_secs: secs(now as i128 - r.last_ns as i128),
                created_age_secs: secs(now as i128 - r.created_ns as i128),
                expires_in_secs: secs(r.last_ns as i128 + r.ttl_secs as i128 * 1_000_000_000 - now as i128),
                hits: r.hits,
                node_id: r.node_id,
            }
        })
        .collect())
}

fn vs_view(c: &Control) -> Result<Vec<VsView>, HttpError> {
    let m = &c.responder.model;
    m.vss
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = c.responder.selector.store.vs_state(i as u32).map_err(internal)?;
            let sac = &m.sacs[v.sac as usize];
            Ok(VsView {
                name: v.name.clone(),
                sac: sac.name.clone(),
                address: sac.address.to_string(),
                marked_up: s & VS_MARKED_UP != 0,
                available: s & VS_AVAILABLE != 0,
            })
        })
        .collect()
}

async fn set_vs(
    State(c): State<Arc<Control>>,
    Path((sac, vs)): Path<(String, String)>,
    Query(q): Query<StateQuery>,
) -> Result<Json<VsView>, HttpError> {
    let name = format!("{sac}/{vs}");
    let id = c
        .responder
        .model
        .vs_by_name(&name)
        .ok_or((StatusCode::NOT_FOUND, format!("no virtual server {name:?}")))?;
    let state = match q.state.as_str() {
        "up" => VS_UP,
        "down" => 0,
        // Still marked up but gone: what a health probe finds between markings.
        "unavailable" => VS_MARKED_UP,
        other => {
            return Err((StatusCode::BAD_REQUEST, format!("state {other:?} is not one of up, down, unavailable")))
        }
    };
    c.responder
        .selector
        .store
        .set_vs_state(id, state)
        .map_err(internal)?;
    tracing::info!(vs = %name, state = %q.state, "VS state set by control");
    Ok(Json(vs_view(&c)?.swap_remove(id as usize)))
}

async fn stats(State(c): State<Arc<Control>>) -> Result<Json<serde_json::Value>, HttpError> {
    let mut v = serde_json::json!({ "dns": &c.responder.stats });
    if let Some(f) = &c.xdp_counters {
        let counters = f().map_err(internal)?;
        v["xdp"] = counters.into_iter().map(|(k, n)| (k, serde_json::Value::from(n))).collect();
    }
    Ok(Json(v))
}

pub fn router(c: Arc<Control>) -> Router {
    Router::new()
        .route("/v1/records", get(|State(c): State<Arc<Control>>| async move { records(&c).map(Json) }))
        .route("/v1/vs", get(|State(c): State<Arc<Control>>| async move { vs_view(&c).map(Json) }))
        .route("/v1/vs/{sac}/{vs}", post(set_vs))
        .route("/v1/stats", get(stats))
        .with_state(c)
}

/// Blocking client for `edns ctl`.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            base: format!("http://{addr}"),
            agent: ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(5)).build(),
        }
    }

    fn call(&self, req: ureq::Request) -> anyhow::Result<serde_json::Value> {
        let url = req.url().to_string();
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

    pub fn set_vs(&self, name: &str, state: &str) -> anyhow::Result<serde_json::Value> {
        let (sac, vs) = name.split_once('/').with_context(|| format!("VS name {name:?} is not \"sac/vs\""))?;
        self.call(self.agent.post(&format!("{}/v1/vs/{sac}/{vs}", self.base)).query("state", state))
    }
}
