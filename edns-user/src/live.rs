//! One config at a time, replaceable while serving. A live reload (SIGHUP,
//! `edns ctl reload`) reads and checks the config file (a bad one is
//! refused with file:line and the running config stays), builds the new
//! config's components beside the running ones with their state carried
//! over by name (VS health and admin overrides, records, answer counts,
//! scraped figures, path measurements), readies the data plane (a new XDP
//! program swapped in behind the pinned link in one step), then swaps the
//! controller over between two queries. Records for wide IPs or VSs the new
//! config lacks are dropped last, and counted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use serde::Serialize;

use crate::cookies::Cookies;
use crate::dns::{Responder, Stats, Transport};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::select::schedule::{Clock, PersistenceTtls};
use crate::select::Selector;
use crate::store::{GenStore, MemoryStore, Store};
use crate::tasks::Tasks;
use crate::xdp::{DataPlane, Takeover};

/// The components serving one config.
pub struct Generation {
    pub model: Arc<Model>,
    /// The store as this config sees it (retired when it is replaced).
    pub store: Arc<GenStore>,
    /// The store itself: the data plane's maps, or process memory.
    base: Arc<dyn Store>,
    pub responder: Arc<Responder>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub paths: Option<Arc<crate::paths::Paths>>,
    pub ttls: Arc<PersistenceTtls>,
    pub tasks: Tasks,
}

/// Counts of reloads and restarts, for `/metrics` and `ctl stats`.
#[derive(Default, Serialize)]
pub struct OpsStats {
    pub reloads: AtomicU64,
    pub reloads_refused: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Records dropped by reloads (their wide IP or VS went).
    pub reload_dropped_records: AtomicU64,
    /// Milliseconds the last successful reload took.
    pub last_reload_ms: AtomicU64,
    /// 1 when this process took over a data plane a previous run left pinned.
    pub takeovers: AtomicU64,
    /// Records dropped when taking over.
    pub takeover_dropped_records: AtomicU64,
}

/// What a reload did.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ReloadReport {
    pub took_ms: f64,
    pub wide_ips: usize,
    pub virtual_servers: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub dropped_records: usize,
}

pub struct Live {
    pub config_path: PathBuf,
    parts: Parts,
    pub ops: Arc<OpsStats>,
    current: RwLock<Arc<Generation>>,
    pub cluster: OnceLock<Arc<crate::cluster::Cluster>>,
    /// Called with the new generation once it serves (the control endpoint's view).
    on_swap: OnceLock<Box<dyn Fn(&Arc<Generation>) + Send + Sync>>,
    reloading: tokio::sync::Mutex<()>,
}

impl Live {
    /// Builds the first generation (not started: see [`Live::start`]).
    pub fn new(
        config_path: PathBuf,
        model: Arc<Model>,
        dataplane: Option<Arc<DataPlane>>,
        takeover: &Takeover,
        cookies: Arc<Cookies>,
        clock: Clock,
    ) -> anyhow::Result<Arc<Live>> {
        let ops = Arc::new(OpsStats::default());
        ops.takeovers.store(takeover.link as u64, Ordering::Relaxed);
        ops.takeover_dropped_records.store(takeover.dropped_records as u64, Ordering::Relaxed);
        let stats = Arc::new(Stats::default());
        let parts = Parts { dataplane, cookies, stats, clock };
        let gen = parts.build(model, None, takeover.kept())?;
        if takeover.kept() {
            tracing::info!("records taken over from the pinned data plane; the snapshot is not loaded over them");
        } else {
            crate::snapshot::load_at_start(&gen.model, gen.store.as_ref(), &gen.ttls);
        }
        Ok(Arc::new(Live {
            config_path,
            parts,
            ops,
            current: RwLock::new(Arc::new(gen)),
            cluster: OnceLock::new(),
            on_swap: OnceLock::new(),
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn current(&self) -> Arc<Generation> {
        self.current.read().unwrap().clone()
    }

    /// Answers one query with the config in force; a reload waits for it.
    pub fn respond(&self, query: &[u8], src: std::net::IpAddr, transport: Transport) -> Option<Vec<u8>> {
        self.current.read().unwrap().responder.respond(query, src, transport)
    }

    /// `f` hears every new generation once it serves.
    pub fn on_swap(&self, f: Box<dyn Fn(&Arc<Generation>) + Send + Sync>) {
        let _ = self.on_swap.set(f);
    }

    /// The controller's counters, shared by every generation's responder.
    pub fn stats(&self) -> &Stats {
        &self.parts.stats
    }

    /// Starts the background tasks of the current generation.
    pub fn start(&self) -> anyhow::Result<()> {
        self.parts.start(&self.current())
    }

    /// Re-reads the config file and serves it; on any error the running
    /// config stays and the error says why (file:line for a bad config).
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        let _one = self.reloading.lock().await;
        let t0 = Instant::now();
        let model = match crate::config::load(&self.config_path) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                self.ops.reloads_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "reload refused: the running config stays");
                return Err(e.to_string());
            }
        };
        let old = self.current();
        if let Err(e) = needs_restart(&old.model, &model) {
            self.ops.reloads_refused.fetch_add(1, Ordering::Relaxed);
            let e = format!("{}: {e}; the running config stays", self.config_path.display());
            tracing::warn!(error = %e, "reload refused");
            return Err(e);
        }
        let r = tokio::task::block_in_place(|| self.swap_to(&old, model.clone()));
        match r {
            Ok(dropped) => {
                let took = t0.elapsed();
                self.ops.reloads.fetch_add(1, Ordering::Relaxed);
                self.ops.reload_dropped_records.fetch_add(dropped as u64, Ordering::Relaxed);
                self.ops.last_reload_ms.store(took.as_millis() as u64, Ordering::Relaxed);
                let names = |m: &Model| [m.wide_ip_names(), m.vs_names()].concat();
                let (before, after) = (names(&old.model), names(&model));
                let not_in = |a: &[String], b: &[String]| {
                    let b: std::collections::HashSet<&String> = b.iter().collect();
                    a.iter().filter(|n| !b.contains(n)).cloned().collect()
                };
                let report = ReloadReport {
                    took_ms: took.as_secs_f64() * 1e3,
                    wide_ips: model.wide_ips.len(),
                    virtual_servers: model.vss.len(),
                    added: not_in(&after, &before),
                    removed: not_in(&before, &after),
                    dropped_records: dropped,
                };
                tracing::info!(took_ms = format!("{:.1}", report.took_ms), wide_ips = report.wide_ips, added = ?report.added, removed = ?report.removed, dropped_records = dropped, "config reloaded");
                Ok(report)
            }
            Err(e) => {
                self.ops.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %format!("{e:#}"), "reload failed: the running config stays");
                Err(format!("{e:#}"))
            }
        }
    }

    /// Builds, readies and swaps in `model`; returns the records dropped.
    fn swap_to(&self, old: &Arc<Generation>, model: Arc<Model>) -> anyhow::Result<usize> {
        let parts = &self.parts;
        let dataplane = &parts.dataplane;
        let gen = Arc::new(parts.build(model.clone(), Some(old), false)?);
        // Everything that can fail happens before the swap.
        let pending = match dataplane {
            Some(dp) => {
                // Only new VSs take these: the others keep (or carry by
                // name) the kernel's own states.
                let states: Vec<u32> = gen.health.snapshot().iter().map(|h| h.bits()).collect();
                Some(dp.prepare_reload(&model, &states)?)
            }
            None => None,
        };
        let committed = {
            // In-flight queries finish first; old writers are refused after.
            let mut cur = self.current.write().unwrap();
            old.store.retire();
            let c = pending.map(|p| dataplane.as_ref().expect("pending implies a data plane").commit_reload(p));
            *cur = gen.clone();
            c
        };
        old.tasks.abort_all();
        if let Some(c) = self.cluster.get() {
            c.rebind(crate::cluster::Parts { model: model.clone(), store: gen.store.clone(), health: gen.health.clone(), ttls: gen.ttls.clone(), paths: gen.paths.clone() });
        }
        // Past the swap nothing turns back: a task that cannot start is logged.
        if let Err(e) = parts.start(&gen) {
            tracing::error!(error = %format!("{e:#}"), "a background task of the new config did not start");
        }
        if let Some(f) = self.on_swap.get() {
            f(&gen);
        }
        let finished = match (committed, dataplane) {
            (Some((previous, t)), Some(dp)) => dp.finish_reload(&old.model, &model, previous, t),
            _ => {
                // What the old config's responder wrote since the copy.
                crate::store::carry_by_name(&old.model, old.base.as_ref(), &model, gen.base.as_ref(), false)
                    .and_then(|dropped| Ok(dropped + crate::store::drop_orphans(&model, gen.base.as_ref())?))
            }
        };
        // The new config serves whatever happens here: logged, not a failed reload.
        Ok(finished.unwrap_or_else(|e| {
            tracing::error!(error = %format!("{e:#}"), "after the reload: records could not all be caught up or dropped");
            0
        }))
    }
}

/// What a config change may not touch without a restart.
fn needs_restart(old: &Model, new: &Model) -> Result<(), String> {
    let (a, b) = (&old.server, &new.server);
    let checks: [(&str, bool); 8] = [
        ("server.listen", a.listen == b.listen),
        ("server.control", a.control == b.control),
        ("server.control_token", a.control_token == b.control_token),
        ("server.persistence_capacity", a.persistence_capacity == b.persistence_capacity),
        ("[rrl] capacity", a.rrl.map(|r| r.capacity) == b.rrl.map(|r| r.capacity)),
        ("server cookies", (a.cookies.enabled, a.cookies.secret, a.cookies.rotate) == (b.cookies.enabled, b.cookies.secret, b.cookies.rotate)),
        ("server.node_id", a.node_id == b.node_id),
        ("[cluster]", format!("{:?}", old.cluster) == format!("{:?}", new.cluster)),
    ];
    let changed: Vec<&str> = checks.iter().filter(|(_, same)| !same).map(|(n, _)| *n).collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(format!("{} changed, which needs a restart (`edns run` again; with XDP it takes over without an outage)", changed.join(", ")))
}

/// What every generation shares.
struct Parts {
    dataplane: Option<Arc<DataPlane>>,
    cookies: Arc<Cookies>,
    stats: Arc<Stats>,
    clock: Clock,
}

impl Parts {
    /// The components for `model`, with `prev`'s state carried by name.
    /// `from_store`: start VS health from the store's states (a takeover).
    fn build(&self, model: Arc<Model>, prev: Option<&Generation>, from_store: bool) -> anyhow::Result<Generation> {
        let base: Arc<dyn Store> = match &self.dataplane {
            Some(dp) => dp.clone(),
            None => {
                let m = Arc::new(MemoryStore::new(model.initial_vs_states(), model.wide_ips.len(), model.server.persistence_capacity as usize));
                if let Some(p) = prev {
                    crate::store::carry_by_name(&p.model, p.base.as_ref(), &model, m.as_ref(), true)?;
                }
                m
            }
        };
        let store = Arc::new(GenStore::new(base.clone()));
        let metrics = Arc::new(Metrics::new(model.clone()));
        let health = Arc::new(if from_store { Health::from_store(model.clone(), store.clone())? } else { Health::new(model.clone(), store.clone()) });
        let paths = model.sacs.iter().any(|s| s.path_probe.is_some()).then(|| Arc::new(crate::paths::Paths::new(model.clone())));
        let ttls = Arc::new(PersistenceTtls::new(&model, (self.clock)()));
        let mut selector = Selector::with_metrics(model.clone(), store.clone(), metrics.clone());
        selector.paths = paths.clone();
        selector.ttls = ttls.clone();
        if let Some(p) = prev {
            metrics.carry_from(&p.metrics);
            health.carry_from(&p.health);
            selector.carry_from(&p.responder.selector);
            if let (Some(new), Some(old)) = (&paths, &p.paths) {
                new.carry_from(old);
            }
        }
        if let Some(pins) = self.dataplane.as_ref().and_then(|dp| dp.pins()).cloned() {
            if prev.is_none() && from_store {
                // The overrides the run we took over from kept, for the VSs still here.
                for (name, admin) in pins.read_admin() {
                    if let Some(vs) = model.vs_by_name(&name) {
                        health.set_admin(vs, admin)?;
                    }
                }
            }
            health.keep_admin(Box::new(move |kept| {
                if let Err(e) = pins.write_admin(kept) {
                    tracing::error!(error = %format!("{e:#}"), "cannot keep the admin overrides");
                }
            }));
        }
        let responder = Arc::new(Responder::with_stats(model.clone(), selector, self.cookies.clone(), self.stats.clone()));
        Ok(Generation { model, store, base, responder, health, metrics, paths, ttls, tasks: Tasks::default() })
    }

    /// Starts `gen`'s background tasks: snapshots, schedules, members
    /// files, path probers, monitors and scrapers.
    fn start(&self, gen: &Arc<Generation>) -> anyhow::Result<()> {
        let model = &gen.model;
        if model.server.persistence_snapshot.is_some() {
            let g = gen.clone();
            gen.tasks.spawn(async move {
                loop {
                    tokio::time::sleep(g.model.server.snapshot_interval).await;
                    let g2 = g.clone();
                    let _ = tokio::task::spawn_blocking(move || crate::snapshot::save_logged(&g2.model, g2.store.as_ref())).await;
                }
            });
        }
        // Persistence TTLs follow their schedules; so does the data plane.
        let (dp, st) = (self.dataplane.clone(), gen.store.clone());
        crate::select::schedule::spawn(
            model.clone(),
            gen.ttls.clone(),
            self.clock.clone(),
            Box::new(move |w, ttl| {
                let Some(dp) = &dp else { return };
                if let Some(Err(e)) = st.while_current(|| dp.set_persistence_ttl(w, ttl)) {
                    tracing::error!(wide_ip = %w.name, error = %e, "cannot update the persistence TTL in WIDE_IPS");
                }
            }),
            &gen.tasks,
        );
        // Members files re-read when they change; the data plane follows.
        let (dp, st) = (self.dataplane.clone(), gen.store.clone());
        crate::groups::spawn_members_reload(
            model.groups.clone(),
            std::time::Duration::from_secs(1),
            Box::new(move |old, new| {
                let Some(dp) = &dp else { return };
                if let Some(Err(e)) = st.while_current(|| dp.update_groups(old, new)) {
                    tracing::error!(error = %e, "cannot update the GROUPS map");
                }
            }),
            &gen.tasks,
        );
        if let Some(p) = &gen.paths {
            p.spawn(&gen.tasks)?;
        }
        let monitored = crate::health::spawn_monitors(gen.health.clone(), &gen.tasks)?;
        crate::metrics::spawn_scrapers(gen.metrics.clone(), &gen.tasks)?;
        if monitored > 0 || !model.exporters.is_empty() {
            tracing::info!(monitored, exporters = model.exporters.len(), "health probes and scrapes started");
        }
        Ok(())
    }
}
