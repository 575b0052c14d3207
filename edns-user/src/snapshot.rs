//! Persistence that survives a reboot: the records are written to a
//! snapshot file (`server.persistence_snapshot`) every
//! `snapshot_interval_secs` and at shutdown, and loaded at start.
//!
//! The file is JSON with a format version, times in wall-clock
//! milliseconds (records hold CLOCK_MONOTONIC, which restarts at boot), wide
//! IPs and VSs by name; it is written to a temporary file, synced and
//! renamed over the old one, so a crash leaves the old snapshot or the new
//! one, never half of one. At start a snapshot that cannot be read whole
//! (corrupt, truncated, another version) is reported and skipped, never
//! fatal and never half-loaded; records no longer timely under the TTL in
//! force, or naming a wide IP or VS this config lacks, are skipped and
//! counted.

use std::path::Path;

use edns_common::{is_timely, PersistKey, PersistRecord};
use serde::{Deserialize, Serialize};

use crate::model::Model;
use crate::select::schedule::PersistenceTtls;
use crate::store::{now_ns, Store};

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: String,
    version: u32,
    written_ms: i64,
    records: Vec<Saved>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    wide_ip: String,
    /// The requester (address, prefix, group or client subnet) as hex.
    ldns: String,
    /// For a group's record, the group's name (its id may change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    vs: String,
    ttl_secs: u32,
    created_ms: u64,
    last_ms: u64,
    hits: u64,
    node_id: u32,
    generation: u32,
}

/// Writes every record to `path`, atomically. Returns how many.
pub fn save(model: &Model, store: &dyn Store, path: &Path) -> anyhow::Result<usize> {
    let off = crate::store::wall_offset_ns();
    let ms = |ns: u64| crate::store::wall_ms(ns, off);
    let records: Vec<Saved> = store
        .persist_list()?
        .into_iter()
        .filter_map(|(k, r)| {
            Some(Saved {
                wide_ip: model.wide_ips.get(k.wide_ip as usize)?.name.to_string(),
                ldns: crate::store::ldns_key_hex(&k.ldns),
                group: (k.ldns.kind == edns_common::LDNS_KIND_GROUP).then(|| model.groups.name_of(k.ldns.group)).flatten(),
                vs: model.vss.get(r.vs as usize)?.name.clone(),
                ttl_secs: r.ttl_secs,
                created_ms: ms(r.created_ns),
                last_ms: ms(r.last_ns),
                hits: r.hits,
                node_id: r.node_id,
                generation: r.generation,
            })
        })
        .collect();
    let n = records.len();
    let snap = Snapshot { format: "edns persistence snapshot".into(), version: VERSION, written_ms: jiff::Timestamp::now().as_millisecond(), records };
    write_json_atomically(path, &snap)?;
    Ok(n)
}

/// Writes `value` as JSON to `path` atomically: a temporary file beside
/// it, synced, then renamed over it — a crash leaves the old file or the
/// new one, never half of one.
pub fn write_json_atomically<T: Serialize + ?Sized>(path: &Path, value: &T) -> anyhow::Result<()> {
    use anyhow::Context;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        serde_json::to_writer(&mut f, value)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// What a load did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub records: usize,
    pub expired: usize,
    pub unknown: usize,
}

/// Loads `path` into `store`: the whole file or nothing.
pub fn load(model: &Model, store: &dyn Store, ttls: &PersistenceTtls, path: &Path) -> anyhow::Result<Loaded> {
    let text = std::fs::read(path)?;
    let snap: Snapshot = serde_json::from_slice(&text).map_err(|e| anyhow::anyhow!("not a readable snapshot: {e}"))?;
    anyhow::ensure!(snap.version == VERSION, "snapshot format version {} (this build reads {VERSION})", snap.version);
    let off = crate::store::wall_offset_ns();
    let now = now_ns();
    let ns = |ms: u64| crate::store::record_ns(ms, off);
    let mut out = Loaded::default();
    // Everything checked first, then written: never half a snapshot.
    let mut ready = Vec::new();
    let group_ids: std::collections::HashMap<String, u32> = model.group_ids().into_iter().collect();
    for s in &snap.records {
        let regrouped = |mut k: edns_common::LdnsKey| match &s.group {
            Some(name) => {
                k.group = *group_ids.get(name)?;
                Some(k)
            }
            None => Some(k),
        };
        let ldns = crate::store::ldns_key_from_hex(&s.ldns).and_then(regrouped);
        let (Some(w), Some(vs), Some(ldns)) = (model.wide_ip_by_name(&s.wide_ip), model.vs_by_name(&s.vs), ldns) else {
            out.unknown += 1;
            continue;
        };
        let rec = PersistRecord {
            vs,
            ttl_secs: s.ttl_secs,
            created_ns: ns(s.created_ms),
            last_ns: ns(s.last_ms),
            hits: s.hits,
            node_id: s.node_id,
            generation: s.generation,
        };
        if !is_timely(now, rec.last_ns, ttls.get(w.id)) {
            out.expired += 1;
            continue;
        }
        ready.push((PersistKey { wide_ip: w.id, ldns }, rec));
    }
    for (k, r) in &ready {
        store.persist_put(k, r)?;
    }
    out.records = ready.len();
    Ok(out)
}

/// Loads the snapshot at start, if configured and present; a bad one is
/// reported and skipped.
pub fn load_at_start(model: &Model, store: &dyn Store, ttls: &PersistenceTtls) {
    let Some(path) = &model.server.persistence_snapshot else { return };
    if !path.exists() {
        tracing::info!(path = %path.display(), "no persistence snapshot yet");
        return;
    }
    match load(model, store, ttls, path) {
        Ok(l) => tracing::info!(path = %path.display(), records = l.records, expired = l.expired, unknown = l.unknown, "persistence snapshot loaded"),
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "persistence snapshot skipped: nothing loaded from it"),
    }
}

/// Saves now, logging the outcome.
pub fn save_logged(model: &Model, store: &dyn Store) {
    let Some(path) = &model.server.persistence_snapshot else { return };
    match save(model, store, path) {
        Ok(n) => tracing::debug!(path = %path.display(), records = n, "persistence snapshot written"),
        Err(e) => tracing::error!(path = %path.display(), error = %e, "cannot write the persistence snapshot"),
    }
}
