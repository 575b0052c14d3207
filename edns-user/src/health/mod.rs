//! Which virtual servers can serve: the one VS state model of controller and
//! kernel, driven by health probes and by the operator.
//!
//! Per VS the controller keeps
//! - **marked** (Fig. 3's "marked up"): follows the monitor's thresholds,
//!   `up_after` consecutive successes to mark up, `down_after` consecutive
//!   failures to mark down; without a monitor, the config's `up`;
//! - **available**: the freshest knowledge, false from the first failed
//!   probe until the next success (what the stripe walk's N − 1 recompute and
//!   persistence hits check);
//! - **admin**: `auto` (follow the above) or an override set with `edns ctl`
//!   that wins until cleared: `up`, `down`, `drain` (no new LDNSes; timely
//!   persistence records keep their VS while it is available), `unavailable`
//!   (marked but gone).
//!
//! The effective bits go to the [`Store`] (the BPF maps with XDP) whenever
//! they change, so the kernel answers from them within one probe interval.

mod probe;
mod runner;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edns_common::{VS_AVAILABLE, VS_MARKED_UP, VS_UP};
use serde::{Deserialize, Serialize};

use crate::model::Model;
use crate::store::Store;

pub use probe::probe;
pub use runner::spawn_monitors;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admin {
    Auto,
    Up,
    Down,
    Drain,
    Unavailable,
}

impl Admin {
    pub fn parse(s: &str) -> Option<Admin> {
        Some(match s {
            "auto" => Admin::Auto,
            "up" => Admin::Up,
            "down" => Admin::Down,
            "drain" => Admin::Drain,
            "unavailable" => Admin::Unavailable,
            _ => return None,
        })
    }
}

/// The last probe of a VS.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub ok: bool,
    pub latency: Duration,
    /// What the probe saw: "HTTP 200", "connection refused", "timed out", ...
    pub detail: String,
    pub at: Instant,
}

/// Health of one VS.
#[derive(Debug, Clone)]
pub struct VsHealth {
    pub marked: bool,
    pub available: bool,
    pub admin: Admin,
    /// Consecutive successes and failures.
    pub ok_run: u32,
    pub fail_run: u32,
    pub last: Option<ProbeResult>,
    pub probes: u64,
    /// When marked last changed (or the process started).
    pub since: Instant,
}

/// What a probe result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    MarkedUp,
    MarkedDown,
    Unavailable,
    Available,
}

impl VsHealth {
    pub fn new(up: bool) -> VsHealth {
        VsHealth {
            marked: up,
            available: up,
            admin: Admin::Auto,
            ok_run: 0,
            fail_run: 0,
            last: None,
            probes: 0,
            since: Instant::now(),
        }
    }

    /// Applies one probe result with the monitor's thresholds.
    pub fn on_probe(&mut self, ok: bool, up_after: u32, down_after: u32) -> Transition {
        self.probes += 1;
        let was = (self.marked, self.available);
        if ok {
            self.ok_run = self.ok_run.saturating_add(1);
            self.fail_run = 0;
            self.available = true;
            if !self.marked && self.ok_run >= up_after {
                self.marked = true;
            }
        } else {
            self.fail_run = self.fail_run.saturating_add(1);
            self.ok_run = 0;
            self.available = false;
            if self.marked && self.fail_run >= down_after {
                self.marked = false;
            }
        }
        if self.marked != was.0 {
            self.since = Instant::now();
        }
        match (was, (self.marked, self.available)) {
            ((false, _), (true, _)) => Transition::MarkedUp,
            ((true, _), (false, _)) => Transition::MarkedDown,
            ((_, true), (_, false)) => Transition::Unavailable,
            ((_, false), (_, true)) => Transition::Available,
            _ => Transition::None,
        }
    }

    /// The `VS_MARKED_UP | VS_AVAILABLE` bits the data plane sees.
    pub fn bits(&self) -> u32 {
        let avail = if self.available { VS_AVAILABLE } else { 0 };
        match self.admin {
            Admin::Up => VS_UP,
            Admin::Down => 0,
            Admin::Unavailable => VS_MARKED_UP,
            Admin::Drain => avail,
            Admin::Auto => avail | if self.marked { VS_MARKED_UP } else { 0 },
        }
    }
}

/// Health of every VS, and the writer of their bits into the store.
pub struct Health {
    pub model: Arc<Model>,
    store: Arc<dyn Store>,
    vs: Mutex<Vec<VsHealth>>,
    /// With a cluster: which VSs this node probes, and who hears its results.
    sharing: std::sync::OnceLock<Sharing>,
    /// Hears every admin override (by VS name) when one changes.
    admin_sink: std::sync::OnceLock<AdminSink>,
}

/// Where admin overrides are kept: (VS name, override) for each that is not `auto`.
pub type AdminSink = Box<dyn Fn(&[(String, Admin)]) + Send + Sync>;

/// Shared probing (`[cluster]`): each VS is probed by one node.
struct Sharing {
    probes_here: Box<dyn Fn(u32) -> bool + Send + Sync>,
    publish: Box<dyn Fn(u32, &VsHealth) + Send + Sync>,
}

impl Health {
    /// Starts from the model's initial states (which the store already holds).
    pub fn new(model: Arc<Model>, store: Arc<dyn Store>) -> Health {
        let vs = model.vss.iter().map(|v| VsHealth::new(v.initially_up)).collect();
        Health { model, store, vs: Mutex::new(vs), sharing: std::sync::OnceLock::new(), admin_sink: std::sync::OnceLock::new() }
    }

    /// `sink` hears the admin overrides whenever one changes.
    pub fn keep_admin(&self, sink: AdminSink) {
        let _ = self.admin_sink.set(sink);
    }

    /// Starts from the states the store holds (a data plane taken over):
    /// what the last run's probes found stays until the next probe.
    pub fn from_store(model: Arc<Model>, store: Arc<dyn Store>) -> anyhow::Result<Health> {
        let health = Health::new(model, store);
        for (i, h) in health.vs.lock().unwrap().iter_mut().enumerate() {
            let s = health.store.vs_state(i as u32)?;
            *h = VsHealth::new(s & VS_MARKED_UP != 0);
            h.available = s & VS_AVAILABLE != 0;
        }
        Ok(health)
    }

    /// Takes the state of the VSs `old` (an earlier config's) also has, by
    /// name: probe runs, last result, admin overrides.
    pub fn carry_from(&self, old: &Health) {
        let before = old.vs.lock().unwrap();
        let mut now = self.vs.lock().unwrap();
        let by_name = old.model.vs_ids();
        for (i, v) in self.model.vss.iter().enumerate() {
            if let Some(j) = by_name.get(v.name.as_str()) {
                now[i] = before[*j as usize].clone();
            }
        }
    }

    /// Shares probing with a cluster: `probes_here(vs)` says whether this
    /// node probes `vs` now; `publish` hears each result it records.
    pub fn share(&self, probes_here: Box<dyn Fn(u32) -> bool + Send + Sync>, publish: Box<dyn Fn(u32, &VsHealth) + Send + Sync>) {
        let _ = self.sharing.set(Sharing { probes_here, publish });
    }

    /// True unless a cluster gave `vs` to another node.
    pub fn probes_here(&self, vs: u32) -> bool {
        self.sharing.get().is_none_or(|s| (s.probes_here)(vs))
    }

    /// A peer's probe view of `vs` (the prober applied the same monitor's
    /// thresholds): taken as this node's, the bits written when they change.
    pub fn adopt(&self, vs: u32, v: crate::cluster::ProbeView, from_node: u32) -> anyhow::Result<()> {
        let mut all = self.vs.lock().unwrap();
        let h = &mut all[vs as usize];
        let before = h.bits();
        let was = (h.marked, h.available);
        if h.marked != v.marked {
            h.since = Instant::now();
        }
        (h.marked, h.available, h.ok_run, h.fail_run, h.probes) = (v.marked, v.available, v.ok_run, v.fail_run, v.probes);
        h.last = Some(ProbeResult { ok: v.ok, latency: v.latency, detail: v.detail, at: Instant::now() });
        if was != (h.marked, h.available) {
            tracing::info!(vs = %self.model.vss[vs as usize].name, cause = "peer probe", node = from_node, marked = h.marked, available = h.available, "VS state changed");
        }
        let after = h.bits();
        if after != before {
            self.store.set_vs_state(vs, after)?;
        }
        Ok(())
    }

    pub fn snapshot(&self) -> Vec<VsHealth> {
        self.vs.lock().unwrap().clone()
    }

    /// Sets (or with `Admin::Auto` clears) the operator's override.
    pub fn set_admin(&self, vs: u32, admin: Admin) -> anyhow::Result<()> {
        let mut all = self.vs.lock().unwrap();
        let h = &mut all[vs as usize];
        let before = h.admin;
        h.admin = admin;
        // Written even when unchanged: the walk may have marked it down since.
        self.store.set_vs_state(vs, h.bits())?;
        tracing::info!(
            vs = %self.model.vss[vs as usize].name,
            cause = "admin",
            from = ?before,
            to = ?admin,
            marked = h.marked,
            available = h.available,
            "VS admin state set"
        );
        if let Some(sink) = self.admin_sink.get() {
            let kept: Vec<(String, Admin)> =
                all.iter().enumerate().filter(|(_, h)| h.admin != Admin::Auto).map(|(i, h)| (self.model.vss[i].name.clone(), h.admin)).collect();
            sink(&kept);
        }
        Ok(())
    }

    /// Records a probe result; logs and writes the bits when they change.
    pub fn record_probe(&self, vs: u32, result: ProbeResult) -> anyhow::Result<Transition> {
        let m = &self.model.vss[vs as usize];
        let Some(mon) = m.monitor.map(|i| &self.model.monitors[i as usize]) else {
            anyhow::bail!("VS {} has no monitor", m.name);
        };
        let mut all = self.vs.lock().unwrap();
        let h = &mut all[vs as usize];
        let before = h.bits();
        let t = h.on_probe(result.ok, mon.up_after, mon.down_after);
        let (ok, latency_ms, detail) = (result.ok, result.latency.as_secs_f64() * 1e3, result.detail.clone());
        h.last = Some(result);
        if t != Transition::None {
            let threshold = match t {
                Transition::MarkedUp => format!("{} consecutive successes (up_after {})", h.ok_run, mon.up_after),
                Transition::MarkedDown => format!("{} consecutive failures (down_after {})", h.fail_run, mon.down_after),
                _ => "first probe of a new outcome".to_string(),
            };
            tracing::info!(
                vs = %m.name,
                cause = "probe",
                monitor = %mon.name,
                change = ?t,
                probe_ok = ok,
                latency_ms = format!("{latency_ms:.1}"),
                detail = %detail,
                %threshold,
                admin = ?h.admin,
                "VS state changed"
            );
        }
        let after = h.bits();
        if after != before {
            self.store.set_vs_state(vs, after)?;
        }
        if let Some(s) = self.sharing.get() {
            (s.publish)(vs, h);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_mark_down_after_down_after_failures_and_up_after_up_after_successes() {
        let mut h = VsHealth::new(true);
        assert_eq!(h.on_probe(false, 2, 3), Transition::Unavailable);
        assert_eq!(h.bits(), VS_MARKED_UP, "marked, not available after one failure");
        assert_eq!(h.on_probe(false, 2, 3), Transition::None);
        assert_eq!(h.on_probe(false, 2, 3), Transition::MarkedDown);
        assert_eq!(h.bits(), 0);
        assert_eq!(h.on_probe(true, 2, 3), Transition::Available);
        assert_eq!(h.bits(), VS_AVAILABLE, "available again, not yet marked");
        assert_eq!(h.on_probe(true, 2, 3), Transition::MarkedUp);
        assert_eq!(h.bits(), VS_UP);
    }

    #[test]
    fn flapping_faster_than_the_thresholds_never_changes_marked() {
        let mut h = VsHealth::new(true);
        for i in 0..100 {
            h.on_probe(i % 2 == 0, 2, 2);
            assert!(h.marked, "probe {i}");
        }
        let mut h = VsHealth::new(false);
        for i in 0..100 {
            h.on_probe(i % 2 == 0, 2, 2);
            assert!(!h.marked, "probe {i}");
        }
    }

    #[test]
    fn admin_overrides_win_over_probes_and_drain_keeps_only_availability() {
        let mut h = VsHealth::new(true);
        h.admin = Admin::Down;
        assert_eq!(h.bits(), 0);
        h.admin = Admin::Drain;
        assert_eq!(h.bits(), VS_AVAILABLE, "drain: no new LDNSes, records may stay");
        h.on_probe(false, 1, 1);
        assert_eq!(h.bits(), 0, "a draining VS that died keeps no records");
        h.admin = Admin::Up;
        assert_eq!(h.bits(), VS_UP);
        h.admin = Admin::Auto;
        assert_eq!(h.bits(), 0);
    }
}
