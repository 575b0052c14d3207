//! Selection for one request: the patent's modes over the shared no_std
//! functions of `edns-common`, with state read from and written to a [`Store`].

pub mod methods;
pub mod schedule;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edns_common::{
    ecs_scope, is_timely, ldns_hash, rendezvous, requester, round_robin_any, stripe, topology_pick, ClientSubnet, PersistKey, PersistRecord,
    PoolMask, Requester, MAX_POOL, VS_AVAILABLE, VS_MARKED_UP,
};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::model::{ip16, AllDown, Method, ModeConfig, Model, WideIp};
use crate::store::Store;

/// How a VS was chosen; reported by the control endpoint and in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    Stripe,
    /// Stripe found N = 0: round robin over the pool regardless of state.
    StripeFallbackRoundRobin,
    Topology,
    /// No prefix matched, or the SAC had no VS up: stripe instead.
    TopologyFallbackStripe,
    PersistenceHit,
    /// Miss or expired record: balanced, new record added.
    PersistenceNew,
    /// No VS up: round robin over the pool, no record (all_down = "round_robin").
    AllDownRoundRobin,
    /// Rendezvous hashing over the VSs up.
    StripeConsistent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub vs: u32,
    pub sac: u32,
    pub how: How,
}

/// What `/metrics` counts answers by: each way a VS is chosen, and the
/// all-down policies that answer without one.
pub const ANSWER_KINDS: [&str; 11] = [
    "stripe",
    "stripe_fallback_round_robin",
    "topology",
    "topology_fallback_stripe",
    "persistence_hit",
    "persistence_new",
    "all_down_round_robin",
    "stripe_consistent",
    "all_down_fallback",
    "all_down_refused",
    "all_down_servfail",
];

impl How {
    /// Index into [`ANSWER_KINDS`].
    fn kind(self) -> usize {
        self as usize
    }

    /// The answer depended on the requester's address (not a round robin
    /// with every VS down): its ECS scope is the bits read.
    pub fn from_address(self) -> bool {
        !matches!(self, How::StripeFallbackRoundRobin | How::AllDownRoundRobin)
    }
}

/// What to answer, and the ECS scope it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    pub outcome: Outcome,
    /// SCOPE PREFIX-LENGTH for a query with a client subnet (RFC 7871).
    pub scope: u8,
}

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The SAC of a chosen VS.
    Vs(Decision),
    /// No VS up, all_down = "fallback".
    Fallback(Ipv4Addr, Option<Ipv6Addr>),
    /// No VS up, all_down = "refused".
    Refused,
    /// No VS up, all_down = "servfail".
    ServFail,
}

/// Which method of a wide IP's chain balanced last, and why earlier ones could not.
#[derive(Debug, Clone, Serialize)]
pub struct LastPick {
    pub method: Option<Method>,
    /// "least_connections: no connections for any VS up (...)", per method skipped.
    pub skipped: Vec<String>,
    #[serde(skip)]
    pub at: Option<Instant>,
}

pub struct Selector {
    pub model: Arc<Model>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Per wide IP, the last dynamic balancing.
    pub last: Mutex<Vec<Option<LastPick>>>,
    /// Per wide IP, the persistence TTL in force (it may follow a schedule).
    pub ttls: Arc<schedule::PersistenceTtls>,
    /// Path measurements, for the methods that read them.
    pub paths: Option<Arc<crate::paths::Paths>>,
    /// Per wide IP, answers by [`ANSWER_KINDS`].
    answered: Vec<[std::sync::atomic::AtomicU64; ANSWER_KINDS.len()]>,
}

impl Selector {
    /// A selector whose load figures stay unknown until an exporter is scraped.
    pub fn new(model: Arc<Model>, store: Arc<dyn Store>) -> Selector {
        let metrics = Arc::new(Metrics::new(model.clone()));
        Selector::with_metrics(model, store, metrics)
    }

    pub fn with_metrics(model: Arc<Model>, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Selector {
        let last = Mutex::new(vec![None; model.wide_ips.len()]);
        let ttls = Arc::new(schedule::PersistenceTtls::new(&model, jiff::Timestamp::now()));
        let answered = (0..model.wide_ips.len()).map(|_| Default::default()).collect();
        Selector { model, store, metrics, last, ttls, paths: None, answered }
    }

    /// Takes the answer counts and last balancing of the wide IPs `old`
    /// (an earlier config's selector) also has, by name.
    pub fn carry_from(&self, old: &Selector) {
        let old_last = old.last.lock().unwrap();
        let mut last = self.last.lock().unwrap();
        for w in &self.model.wide_ips {
            let Some(o) = old.model.wide_ip(&w.name) else { continue };
            for (k, n) in self.answered[w.id as usize].iter().enumerate() {
                n.store(old.answered[o.id as usize][k].load(std::sync::atomic::Ordering::Relaxed), std::sync::atomic::Ordering::Relaxed);
            }
            last[w.id as usize] = old_last[o.id as usize].clone();
        }
    }

    fn masks(&self, w: &WideIp) -> anyhow::Result<(PoolMask, PoolMask)> {
        let (mut marked, mut available) = (0, 0);
        for (pos, vs) in w.pool.iter().enumerate().take(MAX_POOL) {
            let s = self.store.vs_state(*vs)?;
            if s & VS_MARKED_UP != 0 {
                marked |= 1 << pos;
            }
            if s & VS_AVAILABLE != 0 {
                available |= 1 << pos;
            }
        }
        Ok((marked, available))
    }

    fn decision(&self, w: &WideIp, pos: u32, how: How) -> Decision {
        Decision { vs: w.pool[pos as usize], sac: w.pool_sac[pos as usize], how }
    }

    fn stripe(&self, w: &WideIp, ldns: &[u8; 16], stripe_how: How) -> anyhow::Result<Outcome> {
        let (marked, available) = self.masks(w)?;
        let s = stripe(ldns, marked, available);
        for pos in 0..w.pool.len() {
            if s.marked_down & (1 << pos) != 0 {
                self.store.mark_down(w.pool[pos])?;
                tracing::info!(
                    vs = %self.model.vss[w.pool[pos] as usize].name,
                    cause = "stripe walk",
                    wide_ip = %w.name,
                    "VS marked down: the candidate was unavailable (Fig. 3); down until a probe or edns ctl marks it up"
                );
            }
        }
        match s.pos {
            Some(pos) => Ok(Outcome::Vs(self.decision(w, pos, stripe_how))),
            None => self.all_down(w, None, How::StripeFallbackRoundRobin),
        }
    }

    /// No VS of the pool is up: the wide IP's all-down policy. `counter` is
    /// a round-robin value already taken, if any.
    fn all_down(&self, w: &WideIp, counter: Option<u64>, how: How) -> anyhow::Result<Outcome> {
        Ok(match w.all_down {
            AllDown::RoundRobin => {
                let c = match counter {
                    Some(c) => c,
                    None => self.store.next_counter(w.id)?,
                };
                Outcome::Vs(self.decision(w, round_robin_any(c, w.pool.len() as u32), how))
            }
            AllDown::Fallback(v4, v6) => Outcome::Fallback(v4, v6),
            AllDown::Refused => Outcome::Refused,
            AllDown::ServFail => Outcome::ServFail,
        })
    }

    /// Chooses the VS for `ldns` asking for wide IP `w` at `now_ns`
    /// (`store::now_ns`), for the client subnet `ecs` (family 0: none).
    pub fn select(&self, w: &WideIp, ldns: IpAddr, ecs: &ClientSubnet, now_ns: u64) -> anyhow::Result<Selection> {
        // An LDNS group is one requester: the stripe walks read its id and
        // persistence keys on it; topology matches the member's own address.
        // A client subnet (ECS on) replaces both.
        let r = requester(&ip16(ldns), self.model.group_of(ldns), ecs, &w.requester_view());
        let outcome = self.choose(w, &r, ldns, now_ns)?;
        let kind = match outcome {
            Outcome::Vs(d) => d.how.kind(),
            Outcome::Fallback(..) => 8,
            Outcome::Refused => 9,
            Outcome::ServFail => 10,
        };
        if let Some(c) = self.answered.get(w.id as usize) {
            c[kind].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let scope = match outcome {
            Outcome::Vs(d) => ecs_scope(&r, d.how.from_address(), matches!(d.how, How::PersistenceHit | How::PersistenceNew)),
            _ => 0,
        };
        Ok(Selection { outcome, scope })
    }

    /// Per wide IP (by index), the answers of each kind so far.
    pub fn answer_counts(&self) -> Vec<(usize, Vec<(&'static str, u64)>)> {
        self.answered
            .iter()
            .enumerate()
            .map(|(w, c)| (w, ANSWER_KINDS.iter().zip(c).map(|(k, n)| (*k, n.load(std::sync::atomic::Ordering::Relaxed))).collect()))
            .collect()
    }

    fn choose(&self, w: &WideIp, r: &Requester, ldns: IpAddr, now_ns: u64) -> anyhow::Result<Outcome> {
        let ident = r.ident;
        match &w.mode {
            ModeConfig::Stripe => self.stripe(w, &ident, How::Stripe),
            ModeConfig::StripeConsistent => {
                let (marked, available) = self.masks(w)?;
                let mut pool_vs = [u32::MAX; MAX_POOL];
                pool_vs[..w.pool.len()].copy_from_slice(&w.pool);
                match rendezvous(ldns_hash(&ident), &pool_vs, marked & available) {
                    Some(pos) => Ok(Outcome::Vs(self.decision(w, pos, How::StripeConsistent))),
                    None => self.all_down(w, None, How::AllDownRoundRobin),
                }
            }
            ModeConfig::Topology => {
                if let Some(sac) = self.model.topology_match(IpAddr::V6(Ipv6Addr::from(r.addr))) {
                    let (marked, available) = self.masks(w)?;
                    let mut pool_sac = [u32::MAX; MAX_POOL];
                    pool_sac[..w.pool.len()].copy_from_slice(&w.pool_sac);
                    if let Some(pos) = topology_pick(sac, &pool_sac, w.pool.len() as u32, marked & available) {
                        return Ok(Outcome::Vs(self.decision(w, pos, How::Topology)));
                    }
                }
                self.stripe(w, &ident, How::TopologyFallbackStripe)
            }
            ModeConfig::Dynamic { methods, .. } => self.persistent(w, methods, PersistKey { wide_ip: w.id, ldns: r.persist }, ldns, now_ns),
        }
    }

    /// Dynamic mode (Fig. 9): a timely record whose VS is still available
    /// is refreshed and used; otherwise it is deleted (block 935) and the
    /// method chain balances, making a new record — one generation on from
    /// the deleted one, so that it supersedes it on every node of a cluster.
    fn persistent(&self, w: &WideIp, methods: &[Method], key: PersistKey, ldns: IpAddr, now_ns: u64) -> anyhow::Result<Outcome> {
        // The TTL in force now judges old records and makes new ones.
        let ttl = self.ttls.get(w.id);
        let mut generation = 0;
        if let Some(mut rec) = self.store.persist_get(&key)? {
            let pos = w.pool.iter().position(|v| *v == rec.vs);
            if let (true, Some(pos)) = (is_timely(now_ns, rec.last_ns, ttl), pos) {
                if self.store.vs_state(rec.vs)? & VS_AVAILABLE != 0 {
                    rec.last_ns = now_ns;
                    rec.hits += 1;
                    self.store.persist_put(&key, &rec)?;
                    return Ok(Outcome::Vs(self.decision(w, pos as u32, How::PersistenceHit)));
                }
            }
            self.store.persist_delete(&key)?;
            generation = rec.generation.wrapping_add(1);
        }
        let (marked, available) = self.masks(w)?;
        let counter = self.store.next_counter(w.id)?;
        let up = marked & available;
        if up == 0 {
            return self.all_down(w, Some(counter), How::AllDownRoundRobin);
        }
        let pos = self.balance(w, methods, up, counter, ldns);
        let d = self.decision(w, pos, How::PersistenceNew);
        let rec = PersistRecord {
            vs: d.vs,
            ttl_secs: ttl,
            created_ns: now_ns,
            last_ns: now_ns,
            hits: 1,
            node_id: self.model.server.node_id,
            generation,
        };
        self.store.persist_put(&key, &rec)?;
        Ok(Outcome::Vs(d))
    }

    /// The path from each pool position's SAC to `ldns`, when a method of
    /// the chain reads paths; the LDNS is queued for probing if unmeasured
    /// (never waited for: the chain's next method answers meanwhile).
    fn path_figures(&self, w: &WideIp, methods: &[Method], ldns: IpAddr) -> Vec<Option<crate::paths::PathFigures>> {
        match &self.paths {
            Some(p) if methods.iter().any(|m| m.reads_paths()) => {
                let ldns = crate::model::unmapped(ldns);
                p.want(ldns);
                w.pool_sac.iter().map(|s| p.figures(*s, ldns)).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Runs the method chain over the VSs up (`up` non-empty). When every
    /// method lacks data, round robin over the VSs up answers: a GSLB with
    /// VSs up always names one of them.
    fn balance(&self, w: &WideIp, methods: &[Method], up: PoolMask, counter: u64, ldns: IpAddr) -> u32 {
        let figures: Vec<_> = if methods.iter().any(|m| m.reads_metrics()) {
            w.pool.iter().map(|v| self.metrics.figures(*v)).collect()
        } else {
            Vec::new()
        };
        let weights: Vec<u32> = w.pool.iter().map(|v| self.model.vss[*v as usize].weight).collect();
        let names: Vec<&str> = w.pool.iter().map(|v| self.model.vss[*v as usize].name.as_str()).collect();
        let paths = self.path_figures(w, methods, ldns);
        let qos = self.model.paths.qos;
        let c = methods::Candidates { up, counter, weights: &weights, figures: &figures, names: &names, paths: &paths, qos };
        let mut skipped = Vec::new();
        let mut chosen = None;
        for m in methods {
            match methods::pick(*m, &c) {
                Ok(pos) => {
                    chosen = Some((*m, pos));
                    break;
                }
                Err(why) => skipped.push(format!("{}: {why}", m.name())),
            }
        }
        let (method, pos) = match chosen {
            Some((m, pos)) => (Some(m), pos),
            None => {
                skipped.push("every method lacked data: round robin over the VSs up".into());
                (None, edns_common::round_robin_up(counter, up).expect("up is not empty"))
            }
        };
        if !skipped.is_empty() {
            tracing::debug!(wide_ip = %w.name, ?method, skipped = ?skipped, "method chain fell back");
        }
        self.last.lock().unwrap()[w.id as usize] = Some(LastPick { method, skipped, at: Some(Instant::now()) });
        pos
    }
}
