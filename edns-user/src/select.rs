//! Selection for one request: the patent's modes over the shared no_std
//! functions of `edns-common`, with state read from and written to a [`Store`].

use std::net::IpAddr;
use std::sync::Arc;

use edns_common::{
    is_timely, round_robin_any, round_robin_up, stripe, topology_pick, LdnsKey, PersistKey, PersistRecord, PoolMask,
    MAX_POOL, VS_AVAILABLE, VS_MARKED_UP,
};
use serde::Serialize;

use crate::model::{ip16, Method, ModeConfig, Model, WideIp};
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
    /// Dynamic mode with no VS up: round robin over the pool, no record.
    DynamicFallbackRoundRobin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub vs: u32,
    pub sac: u32,
    pub how: How,
}

pub struct Selector {
    pub model: Arc<Model>,
    pub store: Arc<dyn Store>,
}

impl Selector {
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

    fn stripe(&self, w: &WideIp, ldns: &[u8; 16], stripe_how: How) -> anyhow::Result<Decision> {
        let (marked, available) = self.masks(w)?;
        let s = stripe(ldns, marked, available);
        for pos in 0..w.pool.len() {
            if s.marked_down & (1 << pos) != 0 {
                self.store.mark_down(w.pool[pos])?;
            }
        }
        Ok(match s.pos {
            Some(pos) => self.decision(w, pos, stripe_how),
            None => {
                let pos = round_robin_any(self.store.next_counter(w.id)?, w.pool.len() as u32);
                self.decision(w, pos, How::StripeFallbackRoundRobin)
            }
        })
    }

    /// Chooses the VS for `ldns` asking for wide IP `w` at `now_ns` (CLOCK_BOOTTIME).
    pub fn select(&self, w: &WideIp, ldns: IpAddr, now_ns: u64) -> anyhow::Result<Decision> {
        let addr = ip16(ldns);
        match w.mode {
            ModeConfig::Stripe => self.stripe(w, &addr, How::Stripe),
            ModeConfig::Topology => {
                if let Some(sac) = self.model.topology_match(ldns) {
                    let (marked, available) = self.masks(w)?;
                    let mut pool_sac = [u32::MAX; MAX_POOL];
                    pool_sac[..w.pool.len()].copy_from_slice(&w.pool_sac);
                    if let Some(pos) = topology_pick(sac, &pool_sac, w.pool.len() as u32, marked & available) {
                        return Ok(self.decision(w, pos, How::Topology));
                    }
                }
                self.stripe(w, &addr, How::TopologyFallbackStripe)
            }
            ModeConfig::Dynamic { method, persistence_ttl } => {
                let key = PersistKey { wide_ip: w.id, ldns: LdnsKey::addr(addr) };
                // Fig. 9: a timely record whose VS is still available is refreshed and used.
                if let Some(mut rec) = self.store.persist_get(&key)? {
                    let pos = w.pool.iter().position(|v| *v == rec.vs);
                    if let (true, Some(pos)) = (is_timely(now_ns, rec.last_ns, rec.ttl_secs), pos) {
                        if self.store.vs_state(rec.vs)? & VS_AVAILABLE != 0 {
                            rec.last_ns = now_ns;
                            rec.hits += 1;
                            self.store.persist_put(&key, &rec)?;
                            return Ok(self.decision(w, pos as u32, How::PersistenceHit));
                        }
                    }
                    // Block 935: expired (or its VS gone): delete before re-balancing.
                    self.store.persist_delete(&key)?;
                }
                let (marked, available) = self.masks(w)?;
                let counter = self.store.next_counter(w.id)?;
                let pos = match method {
                    Method::RoundRobin => round_robin_up(counter, marked & available),
                };
                match pos {
                    Some(pos) => {
                        let d = self.decision(w, pos, How::PersistenceNew);
                        let rec = PersistRecord {
                            vs: d.vs,
                            ttl_secs: persistence_ttl,
                            created_ns: now_ns,
                            last_ns: now_ns,
                            hits: 1,
                            node_id: self.model.server.node_id,
                            _pad: 0,
                        };
                        self.store.persist_put(&key, &rec)?;
                        Ok(d)
                    }
                    None => {
                        let pos = round_robin_any(counter, w.pool.len() as u32);
                        Ok(self.decision(w, pos, How::DynamicFallbackRoundRobin))
                    }
                }
            }
        }
    }
}
