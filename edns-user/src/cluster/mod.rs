//! Virtual EDNS (Fig. 4): several nodes share persistence records and
//! probe results through chitchat (scuttlebutt anti-entropy gossip with
//! phi-accrual failure detection), and answer as one.
//!
//! Each node owns a key space in the gossip state:
//! - `r/WIDE_IP/KEY` → [`record::Entry`]: its view of a persistence record
//!   it created or refreshed (wall-clock times; records hold CLOCK_MONOTONIC
//!   locally, converted here). Deleted records become tombstones, which
//!   chitchat garbage-collects after a grace period.
//! - `h/VS` → the probe view of a VS this node probes.
//!
//! Every `interval_ms` a round takes what peers changed, merges each key
//! touched by [`record::merge`] and writes the winner into the local store —
//! the XDP map, so a peer's decision is answered at line rate here — then
//! scans the local store for what this node created, refreshed (by a
//! request in the kernel or the controller) or deleted, and publishes it. A
//! refresh is published only when it extends the record by an eighth of its
//! TTL since this node last published it, never every hit.

pub mod record;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion};
use edns_common::{is_timely, mix64, LdnsKey, PersistKey, PersistRecord};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::health::{Health, VsHealth};
use crate::model::{ClusterConfig, Model};
use crate::select::schedule::PersistenceTtls;
use crate::store::{now_ns, Store};
use record::{merge, Entry, Identity};

/// Counters of what the cluster did.
#[derive(Default, Serialize)]
pub struct Stats {
    /// Records this node published (new, re-made or refreshed).
    pub published: AtomicU64,
    pub tombstones: AtomicU64,
    /// Records written into the local store from peers' entries.
    pub merged_in: AtomicU64,
    pub probes_published: AtomicU64,
    pub probes_adopted: AtomicU64,
    pub rounds: AtomicU64,
}

/// Bookkeeping of one record key on this node.
#[derive(Default)]
struct Mine {
    /// What this node last published for the key.
    published: Option<Entry>,
    /// The latest request time learned from peers when their merge was
    /// written here: a later time stamp is a request answered here.
    base_last_ms: u64,
    /// Hits the merge gave the record beyond this node's own.
    others_hits: u64,
}

/// A peer's node: its id and its incarnation (chitchat generation).
type Peer = (u32, u64);

#[derive(Default)]
struct Replica {
    /// Peers' entries per key.
    peers: HashMap<String, BTreeMap<Peer, Entry>>,
    /// Highest version taken from each peer.
    seen: HashMap<ChitchatId, u64>,
    mine: HashMap<PersistKey, Mine>,
    /// Probe views applied, per VS: the sender and its probe count.
    probe_seen: HashMap<u32, (Peer, u64)>,
}

/// The config-bound pieces the cluster reads and writes.
pub struct Parts {
    pub model: Arc<Model>,
    pub store: Arc<dyn Store>,
    pub health: Arc<Health>,
    pub ttls: Arc<PersistenceTtls>,
    pub paths: Option<Arc<crate::paths::Paths>>,
}

pub struct Cluster {
    pub cfg: ClusterConfig,
    /// What this node serves; a reload replaces it.
    parts: RwLock<Arc<Parts>>,
    handle: ChitchatHandle,
    /// wall-clock ns − record-clock (CLOCK_MONOTONIC) ns, fixed at start so that times
    /// round-trip exactly.
    offset_ns: i64,
    live: RwLock<Vec<u32>>,
    synced: AtomicBool,
    started: Instant,
    /// Rounds that heard peers before this node was synced.
    heard_rounds: Mutex<u32>,
    replica: Mutex<Replica>,
    /// Keys to publish from other tasks (probe views, path wants and measurements).
    probe_tx: mpsc::UnboundedSender<(String, String)>,
    probe_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, String)>>>,
    pub stats: Stats,
    /// For records first learned from a peer: milliseconds from their
    /// creation there to their arrival here (the last `MAX_DELAYS`).
    delays: Mutex<std::collections::VecDeque<u32>>,
}

/// Learn delays kept for the percentiles.
const MAX_DELAYS: usize = 100_000;

impl Cluster {
    /// Joins the cluster (binds the gossip socket) and shares this node's
    /// probing: from now on a monitored VS is probed here only when the
    /// rendezvous over the live nodes picks this node.
    pub async fn start(
        model: Arc<Model>,
        store: Arc<dyn Store>,
        health: Arc<Health>,
        ttls: Arc<PersistenceTtls>,
        paths: Option<Arc<crate::paths::Paths>>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let cfg = model.cluster.clone().ok_or_else(|| anyhow::anyhow!("no [cluster] in the config"))?;
        let generation = jiff::Timestamp::now().as_millisecond() as u64;
        let id = ChitchatId::new(cfg.node_id.to_string(), generation, cfg.advertise);
        let config = ChitchatConfig {
            chitchat_id: id,
            cluster_id: cfg.cluster_id.clone(),
            gossip_interval: cfg.interval,
            listen_addr: cfg.gossip,
            seed_nodes: cfg.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                initial_interval: cfg.interval * 2,
                max_interval: cfg.interval * 50,
                dead_node_grace_period: Duration::from_secs(600),
                ..Default::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V1,
        };
        let handle = spawn_chitchat(config, Vec::new(), &UdpTransport).await?;
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let offset_ns = crate::store::wall_offset_ns();
        let c = Arc::new(Cluster {
            live: RwLock::new(vec![cfg.node_id]),
            synced: AtomicBool::new(cfg.seeds.is_empty()),
            started: Instant::now(),
            heard_rounds: Mutex::new(0),
            cfg,
            parts: RwLock::new(Arc::new(Parts { model, store, health, ttls, paths })),
            handle,
            offset_ns,
            replica: Mutex::new(Replica::default()),
            probe_tx,
            probe_rx: Mutex::new(Some(probe_rx)),
            stats: Stats::default(),
            delays: Mutex::new(std::collections::VecDeque::new()),
        });
        c.share_with(&c.parts());
        tracing::info!(node = c.cfg.node_id, gossip = %c.cfg.gossip, seeds = ?c.cfg.seeds, "joined the cluster");
        Ok(c)
    }

    fn parts(&self) -> Arc<Parts> {
        self.parts.read().unwrap().clone()
    }

    /// Hooks this node's probing and path measurement of `parts` into the cluster.
    fn share_with(self: &Arc<Self>, parts: &Parts) {
        let (here, publish, model) = (self.clone(), self.clone(), parts.model.clone());
        parts.health.share(
            Box::new(move |vs| here.probes_here(vs)),
            Box::new(move |vs, h| {
                let _ = publish.probe_tx.send((format!("h/{}", model.vss[vs as usize].name), probe_view(h)));
            }),
        );
        if let Some(p) = &parts.paths {
            let (here, want, measured, sacs_model) = (self.clone(), self.clone(), self.clone(), parts.model.clone());
            p.share(crate::paths::Sharing {
                probes_here: Box::new(move |sac| here.owner(sac as u64 ^ SAC_SALT) == here.cfg.node_id),
                wanted: Box::new(move |prefix, ldns| {
                    let _ = want.probe_tx.send((format!("w/{prefix}"), ldns.to_string()));
                }),
                measured: Box::new(move |sac, prefix, f| {
                    let now = jiff::Timestamp::now().as_millisecond();
                    let sac = &sacs_model.sacs[sac as usize].name;
                    let _ = measured.probe_tx.send((format!("p/{sac}/{prefix}"), path_view(&f, now)));
                }),
            });
        }
    }

    /// Serves a reloaded config from now on: its health and paths share
    /// through the cluster; what was published stays (keys are by name).
    pub fn rebind(self: &Arc<Self>, parts: Parts) {
        let parts = Arc::new(parts);
        self.share_with(&parts);
        {
            let mut rep = self.replica.lock().unwrap();
            // Keyed by the old ids: rebuilt from the next scan.
            rep.mine.clear();
            rep.probe_seen.clear();
        }
        *self.parts.write().unwrap() = parts;
    }

    /// Runs the replication rounds until the runtime ends.
    pub fn spawn(self: &Arc<Self>) {
        let c = self.clone();
        let mut rx = self.probe_rx.lock().unwrap().take().expect("spawned once");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(c.cfg.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut probes = Vec::new();
                while let Ok(p) = rx.try_recv() {
                    probes.push(p);
                }
                if let Err(e) = c.round(probes).await {
                    tracing::error!(error = %e, "cluster round failed");
                }
            }
        });
    }

    /// Waits until this node has taken the cluster's state (or
    /// `sync_timeout` passed with no peer reachable): it answers from its
    /// own decisions only after that.
    pub async fn wait_synced(&self) {
        while !self.synced.load(Ordering::Relaxed) {
            tokio::time::sleep(self.cfg.interval / 2).await;
        }
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Live node ids, this one included.
    pub fn live_nodes(&self) -> Vec<u32> {
        self.live.read().unwrap().clone()
    }

    /// The live node that probes `vs`: rendezvous hashing over the
    /// membership, so a node's death moves only its VSs.
    pub fn prober_of(&self, vs: u32) -> u32 {
        self.owner(vs as u64 ^ VS_SALT)
    }

    /// The live node rendezvous hashing gives `what` to.
    fn owner(&self, what: u64) -> u32 {
        let h = mix64(what);
        let live = self.live.read().unwrap();
        live.iter().copied().max_by_key(|n| (mix64(h ^ (*n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)), *n)).unwrap_or(self.cfg.node_id)
    }

    pub fn probes_here(&self, vs: u32) -> bool {
        self.prober_of(vs) == self.cfg.node_id
    }

    fn wall_ms(&self, record_ns: u64) -> u64 {
        crate::store::wall_ms(record_ns, self.offset_ns)
    }

    fn record_ns(&self, wall_ms: u64) -> u64 {
        crate::store::record_ns(wall_ms, self.offset_ns)
    }

    /// One round: take peers' changes, merge them in, publish this node's.
    async fn round(&self, probes: Vec<(String, String)>) -> anyhow::Result<()> {
        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
        let full = self.stats.rounds.load(Ordering::Relaxed) % 50 == 1;
        let (changes, live, peers_heard) = self.take_changes(full).await;
        *self.live.write().unwrap() = live;
        let quiet = changes.is_empty();
        let dirty = self.apply_changes(changes, full);
        // Map reads and writes (BPF syscalls with XDP): let the runtime
        // move other tasks off this worker meanwhile.
        let ops = tokio::task::block_in_place(|| -> anyhow::Result<_> {
            self.merge_in(&dirty)?;
            self.scan_local()
        })?;
        self.publish(ops, probes).await;
        if !self.is_synced() {
            self.check_synced(peers_heard, quiet);
        }
        Ok(())
    }

    /// Synced once peers' state has been taken in: a round with nothing new
    /// after hearing them (or, under a steady stream of new records, five
    /// rounds after), or `sync_timeout` with no peer heard.
    fn check_synced(&self, peers_heard: bool, quiet: bool) {
        let mut heard = self.heard_rounds.lock().unwrap();
        if peers_heard {
            *heard += 1;
        }
        let done = (peers_heard && (quiet || *heard >= 5)) || (*heard == 0 && self.started.elapsed() >= self.cfg.sync_timeout);
        if done {
            self.synced.store(true, Ordering::Relaxed);
            tracing::info!(peers_heard, rounds_heard = *heard, after_ms = self.started.elapsed().as_millis() as u64, "cluster state taken; answering");
        }
    }

    /// Peers' keys changed since last taken (all of them when `full`), the
    /// live node ids, and whether any peer's state was heard.
    async fn take_changes(&self, full: bool) -> (Vec<(Peer, String, Option<String>)>, Vec<u32>, bool) {
        let chitchat = self.handle.chitchat();
        let cc = chitchat.lock().await;
        let me = cc.self_chitchat_id().clone();
        let mut live: Vec<u32> = cc.live_nodes().filter_map(|id| id.node_id.parse().ok()).collect();
        live.push(self.cfg.node_id);
        live.sort_unstable();
        live.dedup();
        let mut rep = self.replica.lock().unwrap();
        let mut changes = Vec::new();
        let mut heard = false;
        for (id, state) in cc.node_states() {
            if *id == me {
                continue;
            }
            let Ok(node) = id.node_id.parse::<u32>() else { continue };
            let peer = (node, id.generation_id);
            let seen = rep.seen.entry(id.clone()).or_insert(0);
            heard |= state.max_version() > 0;
            // A peer's state reset (a garbage-collected tombstone): take it all again.
            let from = if full || state.max_version() < *seen { 0 } else { *seen };
            for (k, v) in state.key_values_including_deleted() {
                if v.version > from {
                    changes.push((peer, k.to_string(), (!v.is_deleted()).then(|| v.value.clone())));
                }
            }
            *seen = state.max_version();
        }
        (changes, live, heard)
    }

    /// Applies peers' changes to the replica; returns the record keys touched.
    fn apply_changes(&self, changes: Vec<(Peer, String, Option<String>)>, full: bool) -> HashSet<String> {
        let parts = self.parts();
        let mut rep = self.replica.lock().unwrap();
        if full {
            rep.peers.clear();
        }
        let mut dirty = HashSet::new();
        for (peer, key, value) in changes {
            if let Some(vs_name) = key.strip_prefix("h/") {
                if let Some(v) = value {
                    self.adopt_probe(&mut rep, peer, vs_name, &v);
                }
                continue;
            }
            if key.starts_with("w/") || key.starts_with("p/") {
                if let (Some(v), Some(p)) = (value, &parts.paths) {
                    self.path_news(p, &key, &v);
                }
                continue;
            }
            if !key.starts_with("r/") {
                continue;
            }
            let slot = rep.peers.entry(key.clone()).or_default();
            match value.as_deref().and_then(Entry::from_wire) {
                Some(e) => {
                    slot.insert(peer, e);
                }
                None => {
                    slot.remove(&peer);
                }
            }
            dirty.insert(key);
        }
        if full {
            dirty.extend(rep.peers.keys().cloned());
        }
        dirty
    }

    /// A peer's probe view of a VS this node does not probe: taken as is
    /// (the prober applied the monitor's thresholds, the same config here).
    fn adopt_probe(&self, rep: &mut Replica, peer: Peer, vs_name: &str, view: &str) {
        let parts = self.parts();
        let Some(vs) = parts.model.vs_by_name(vs_name) else { return };
        if self.probes_here(vs) {
            return;
        }
        let Some(v) = parse_probe_view(view) else { return };
        if rep.probe_seen.get(&vs) == Some(&(peer, v.probes)) {
            return;
        }
        rep.probe_seen.insert(vs, (peer, v.probes));
        if let Err(e) = parts.health.adopt(vs, v, peer.0) {
            tracing::error!(vs = vs_name, error = %e, "cannot apply a peer's probe result");
        }
        self.stats.probes_adopted.fetch_add(1, Ordering::Relaxed);
    }

    /// A peer wants a prefix measured (`w/PREFIX` → LDNS: queued here for
    /// the SACs probed here), or measured one (`p/SAC/PREFIX` → figures).
    fn path_news(&self, paths: &crate::paths::Paths, key: &str, value: &str) {
        let parts = self.parts();
        if key.starts_with("w/") {
            if let Ok(ldns) = value.parse() {
                paths.want_from(ldns, false);
            }
        } else if let Some((sac, prefix)) = key.strip_prefix("p/").and_then(|k| k.split_once('/')) {
            let sac = parts.model.sacs.iter().position(|s| s.name == sac);
            if let (Some(sac), Ok(prefix), Some((f, at_ms))) = (sac, prefix.parse(), parse_path_view(value)) {
                let age = (jiff::Timestamp::now().as_millisecond() - at_ms).max(0) as u64;
                paths.adopt(sac as u32, prefix, f, Duration::from_millis(age));
            }
        }
    }

    /// Merges each touched key and writes the winner where it differs from
    /// the local record.
    fn merge_in(&self, dirty: &HashSet<String>) -> anyhow::Result<()> {
        let parts = self.parts();
        let now_ms = self.wall_ms(now_ns());
        let mut rep = self.replica.lock().unwrap();
        let rep = &mut *rep;
        for key in dirty {
            let Some((pk, w)) = self.parse_key(key) else { continue };
            let ttl = parts.ttls.get(w);
            let mine = rep.mine.entry(pk).or_default();
            // The local record takes part too: one made here may not be
            // published yet (a partition healing right after it was made).
            let local = parts.store.persist_get(&pk)?;
            // (This node's own entry once: the record held, fresher than what was published.)
            let own = local.as_ref().and_then(|r| self.entry_of(&parts.model, r, mine.others_hits)).or_else(|| mine.published.clone());
            let peers = rep.peers.get(key).into_iter().flat_map(|m| m.values());
            let Some(m) = merge(peers.chain(own.iter()), now_ms, ttl) else { continue };
            let Some(vs) = parts.model.vs_by_name(&m.vs) else { continue };
            let identity: Identity = (m.generation, m.created_ms, m.creator);
            let same = local.as_ref().is_some_and(|r| self.identity(r) == identity && r.vs == vs);
            if same && local.as_ref().is_some_and(|r| self.wall_ms(r.last_ns) >= m.last_ms) {
                continue;
            }
            let own_now = match (&local, same) {
                (Some(r), true) => r.hits.saturating_sub(mine.others_hits),
                _ => 0,
            };
            // The merge counted this node's own entry once: the rest is the others'.
            let own_counted = own.as_ref().filter(|o| o.identity() == identity).map_or(0, |o| o.hits);
            mine.others_hits = m.hits.saturating_sub(own_counted);
            mine.base_last_ms = m.last_ms;
            let last_ns = self.record_ns(m.last_ms).max(local.as_ref().filter(|_| same).map_or(0, |r| r.last_ns));
            let rec = PersistRecord {
                vs,
                ttl_secs: ttl,
                created_ns: self.record_ns(m.created_ms),
                last_ns,
                hits: mine.others_hits + own_now,
                node_id: m.creator,
                generation: m.generation,
            };
            parts.store.persist_put(&pk, &rec)?;
            self.stats.merged_in.fetch_add(1, Ordering::Relaxed);
            if local.is_none() && m.creator != self.cfg.node_id {
                let mut d = self.delays.lock().unwrap();
                if d.len() == MAX_DELAYS {
                    d.pop_front();
                }
                d.push_back(now_ms.saturating_sub(m.created_ms) as u32);
            }
        }
        Ok(())
    }

    /// The local record as this node's entry (its own hits: beyond `others_hits`).
    fn entry_of(&self, model: &Model, r: &PersistRecord, others_hits: u64) -> Option<Entry> {
        let vs = model.vss.get(r.vs as usize)?;
        Some(Entry {
            generation: r.generation,
            created_ms: self.wall_ms(r.created_ns),
            creator: r.node_id,
            vs: vs.name.clone(),
            last_ms: self.wall_ms(r.last_ns),
            hits: r.hits.saturating_sub(others_hits),
        })
    }

    fn identity(&self, r: &PersistRecord) -> Identity {
        (r.generation, self.wall_ms(r.created_ns), r.node_id)
    }

    /// What this node created, refreshed or lost since it last published:
    /// (key, Some(entry)) to publish, (key, None) for a tombstone. Records
    /// no longer timely are deleted here.
    fn scan_local(&self) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let parts = self.parts();
        let now = now_ns();
        let list = parts.store.persist_list()?;
        let mut rep = self.replica.lock().unwrap();
        let mut present = HashSet::with_capacity(list.len());
        let mut ops = Vec::new();
        for (pk, r) in list {
            let Some(w) = parts.model.wide_ips.get(pk.wide_ip as usize) else { continue };
            let ttl = parts.ttls.get(pk.wide_ip);
            let key = record_key(&w.name.to_string(), &pk.ldns);
            if !is_timely(now, r.last_ns, ttl) {
                parts.store.persist_delete(&pk)?;
                continue;
            }
            present.insert(pk);
            let Some(vs) = parts.model.vss.get(r.vs as usize) else { continue };
            let mine = rep.mine.entry(pk).or_default();
            let last_ms = self.wall_ms(r.last_ns);
            let share_ms = (ttl as u64 * 1000 / 8).max(1);
            let identity = self.identity(&r);
            let due = match &mine.published {
                // Made here, or a learned record answered here since.
                None => mine.base_last_ms == 0 || last_ms > mine.base_last_ms,
                Some(p) => p.identity() != identity || p.vs != vs.name || (last_ms > mine.base_last_ms && last_ms >= p.last_ms + share_ms),
            };
            if !due {
                continue;
            }
            let Some(e) = self.entry_of(&parts.model, &r, mine.others_hits) else { continue };
            ops.push((key, Some(e.to_wire())));
            mine.published = Some(e);
        }
        // Published records gone here (expired, evicted): tombstones.
        let gone: Vec<PersistKey> = rep.mine.keys().filter(|k| !present.contains(k)).copied().collect();
        for pk in gone {
            if let Some(m) = rep.mine.remove(&pk) {
                if m.published.is_some() {
                    if let Some(w) = parts.model.wide_ips.get(pk.wide_ip as usize) {
                        ops.push((record_key(&w.name.to_string(), &pk.ldns), None));
                    }
                }
            }
        }
        Ok(ops)
    }

    async fn publish(&self, ops: Vec<(String, Option<String>)>, probes: Vec<(String, String)>) {
        if ops.is_empty() && probes.is_empty() {
            return;
        }
        let chitchat = self.handle.chitchat();
        let mut cc = chitchat.lock().await;
        let me = cc.self_node_state();
        for (k, v) in ops {
            match v {
                Some(v) => {
                    me.set(k, v);
                    self.stats.published.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    me.delete(&k);
                    self.stats.tombstones.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for (key, value) in probes {
            me.set(key, value);
            self.stats.probes_published.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `r/WIDE_IP/KEY` back to the persistence key and wide IP id.
    fn parse_key(&self, key: &str) -> Option<(PersistKey, u32)> {
        let parts = self.parts();
        let (name, hex) = key.strip_prefix("r/")?.rsplit_once('/')?;
        let w = parts.model.wide_ip_by_name(name)?;
        let ldns = crate::store::ldns_key_from_hex(hex)?;
        Some((PersistKey { wide_ip: w.id, ldns }, w.id))
    }

    /// Percentiles of the learn delays, in ms: (count, p50, p99, max).
    pub fn learn_delays(&self) -> (usize, u32, u32, u32) {
        let mut d: Vec<u32> = self.delays.lock().unwrap().iter().copied().collect();
        if d.is_empty() {
            return (0, 0, 0, 0);
        }
        d.sort_unstable();
        let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
        (d.len(), at(0.5), at(0.99), d[d.len() - 1])
    }

    /// Gossip state size and membership, for `edns ctl stats`.
    pub fn view(&self) -> serde_json::Value {
        let (n, p50, p99, max) = self.learn_delays();
        serde_json::json!({
            "learned": n,
            "learn_delay_p50_ms": p50,
            "learn_delay_p99_ms": p99,
            "learn_delay_max_ms": max,
            "node_id": self.cfg.node_id,
            "live_nodes": self.live_nodes(),
            "synced": self.is_synced(),
            "published": self.stats.published.load(Ordering::Relaxed),
            "tombstones": self.stats.tombstones.load(Ordering::Relaxed),
            "merged_in": self.stats.merged_in.load(Ordering::Relaxed),
            "probes_published": self.stats.probes_published.load(Ordering::Relaxed),
            "probes_adopted": self.stats.probes_adopted.load(Ordering::Relaxed),
            "rounds": self.stats.rounds.load(Ordering::Relaxed),
        })
    }
}

/// The gossip key of a record: its wide IP and its requester as hex.
pub fn record_key(wide_ip: &str, k: &LdnsKey) -> String {
    format!("r/{wide_ip}/{}", crate::store::ldns_key_hex(k))
}

/// Rendezvous salts: VSs and SACs are owned separately.
const VS_SALT: u64 = 0x5eed_0f_ed45;
const SAC_SALT: u64 = 0x5ac5_0f_ed45;

/// Path figures on the wire: "RTT_MS LOSS HOPS PROBES AT_MS" (RTT, hops `-` when unknown).
fn path_view(f: &crate::paths::PathFigures, now_ms: i64) -> String {
    let at = now_ms - (f.age_secs * 1000.0) as i64;
    let rtt = f.rtt_ms.map_or("-".to_string(), |r| r.to_string());
    let hops = f.hops.map_or("-".to_string(), |h| h.to_string());
    format!("{rtt} {} {hops} {} {at}", f.loss, f.probes)
}

fn parse_path_view(s: &str) -> Option<(crate::paths::PathFigures, i64)> {
    let f: Vec<&str> = s.split(' ').collect();
    if f.len() != 5 {
        return None;
    }
    let opt = |x: &str| if x == "-" { Ok(None) } else { x.parse().map(Some) };
    Some((
        crate::paths::PathFigures {
            rtt_ms: opt(f[0]).ok()?,
            loss: f[1].parse().ok()?,
            hops: if f[2] == "-" { None } else { Some(f[2].parse().ok()?) },
            age_secs: 0.0,
            probes: f[3].parse().ok()?,
        },
        f[4].parse().ok()?,
    ))
}

/// A probe view on the wire: "PROBES MARKED AVAILABLE OK_RUN FAIL_RUN OK LATENCY_US DETAIL".
fn probe_view(h: &VsHealth) -> String {
    let (ok, latency, detail) = h.last.as_ref().map_or((false, 0, String::new()), |l| (l.ok, l.latency.as_micros() as u64, l.detail.clone()));
    format!("{} {} {} {} {} {} {} {}", h.probes, h.marked as u8, h.available as u8, h.ok_run, h.fail_run, ok as u8, latency, detail)
}

/// A peer's probe view, as [`Health::adopt`] takes it.
pub struct ProbeView {
    pub probes: u64,
    pub marked: bool,
    pub available: bool,
    pub ok_run: u32,
    pub fail_run: u32,
    pub ok: bool,
    pub latency: Duration,
    pub detail: String,
}

fn parse_probe_view(s: &str) -> Option<ProbeView> {
    let mut f = s.splitn(8, ' ');
    let mut num = || f.next()?.parse::<u64>().ok();
    let (probes, marked, available, ok_run, fail_run, ok, latency) = (num()?, num()?, num()?, num()?, num()?, num()?, num()?);
    Some(ProbeView {
        probes,
        marked: marked == 1,
        available: available == 1,
        ok_run: ok_run as u32,
        fail_run: fail_run as u32,
        ok: ok == 1,
        latency: Duration::from_micros(latency),
        detail: f.next().unwrap_or("").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_round_trip() {
        let k = LdnsKey { kind: 3, prefix_len: 120, _pad: [0; 2], group: 7, addr: [1; 16] };
        let s = record_key("shop.gslb.example.", &k);
        let (_, hex) = s.rsplit_once('/').unwrap();
        assert_eq!(crate::store::ldns_key_from_hex(hex), Some(k));
        assert!(s.starts_with("r/shop.gslb.example./"));
    }

    #[test]
    fn probe_views_round_trip() {
        let v = parse_probe_view("12 1 0 0 1 0 1500 connection refused").unwrap();
        assert_eq!((v.probes, v.marked, v.available, v.fail_run, v.detail.as_str()), (12, true, false, 1, "connection refused"));
    }
}
