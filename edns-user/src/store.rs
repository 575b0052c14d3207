//! Where the mutable selection state lives: VS states, round-robin counters
//! and persistence records. With XDP attached the BPF maps are the one copy
//! (the kernel reads and updates them too); without it, process memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use edns_common::{is_timely, LdnsKey, PersistKey, PersistRecord};

/// Record-clock ([`now_ns`]) nanoseconds as wall-clock milliseconds, given
/// the offset between the clocks ([`wall_offset_ns`]): how records' times
/// leave the node (cluster gossip, snapshot file).
pub fn wall_ms(record_ns: u64, offset_ns: i64) -> u64 {
    ((record_ns as i128 + offset_ns as i128) / 1_000_000).max(0) as u64
}

/// Wall-clock milliseconds back to record-clock nanoseconds.
pub fn record_ns(wall_ms: u64, offset_ns: i64) -> u64 {
    (wall_ms as i128 * 1_000_000 - offset_ns as i128).max(0) as u64
}

/// Wall-clock minus record-clock ([`now_ns`]) nanoseconds.
pub fn wall_offset_ns() -> i64 {
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    wall - now_ns() as i64
}

/// A persistence key's requester as 44 hex digits (kind, prefix length,
/// group, address): how the cluster and the snapshot file name it.
pub fn ldns_key_hex(k: &LdnsKey) -> String {
    let mut b = vec![k.kind, k.prefix_len];
    b.extend_from_slice(&k.group.to_be_bytes());
    b.extend_from_slice(&k.addr);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn ldns_key_from_hex(hex: &str) -> Option<LdnsKey> {
    if hex.len() != 44 || !hex.is_ascii() {
        return None;
    }
    let b: Vec<u8> = (0..22).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect::<Option<_>>()?;
    Some(LdnsKey { kind: b[0], prefix_len: b[1], _pad: [0; 2], group: u32::from_be_bytes([b[2], b[3], b[4], b[5]]), addr: b[6..22].try_into().ok()? })
}

/// Nanoseconds on CLOCK_MONOTONIC: the controller's clock, and the one
/// persistence records are stamped with here and in the XDP program, which
/// reads it to the tick (`bpf_ktime_get_coarse_ns`, up to two ticks
/// behind, where `bpf_ktime_get_boot_ns` cost a persistence hit 27 ns on a VM).
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds on CLOCK_BOOTTIME (suspend included): the clock the XDP
/// program's rate limits and cookie timestamps read.
pub fn boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; both clocks exist on Linux >= 2.6.39.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Errors (a BPF map syscall failing) reach the caller: a query then gets
/// SERVFAIL and the control endpoint an HTTP error, never a guessed state.
pub trait Store: Send + Sync {
    /// `VS_MARKED_UP | VS_AVAILABLE` bits of a VS.
    fn vs_state(&self, vs: u32) -> anyhow::Result<u32>;
    fn set_vs_state(&self, vs: u32, state: u32) -> anyhow::Result<()>;
    /// Clears the marked-up bit (Fig. 3 block 325).
    fn mark_down(&self, vs: u32) -> anyhow::Result<()> {
        self.set_vs_state(vs, self.vs_state(vs)? & !edns_common::VS_MARKED_UP)
    }
    /// Returns the wide IP's round-robin counter and advances it.
    fn next_counter(&self, wide_ip: u32) -> anyhow::Result<u64>;
    fn persist_get(&self, key: &PersistKey) -> anyhow::Result<Option<PersistRecord>>;
    fn persist_put(&self, key: &PersistKey, rec: &PersistRecord) -> anyhow::Result<()>;
    /// Deletes a record; deleting one that is not there is no error.
    fn persist_delete(&self, key: &PersistKey) -> anyhow::Result<()>;
    /// Every record, sorted by key.
    fn persist_list(&self) -> anyhow::Result<Vec<(PersistKey, PersistRecord)>>;
}

/// Deletes the records `model` has no use for: their wide IP is gone or no
/// longer dynamic, or their VS left its pool. Returns how many.
pub fn drop_orphans(model: &crate::model::Model, store: &dyn Store) -> anyhow::Result<usize> {
    let mut n = 0;
    for (k, r) in store.persist_list()? {
        let fits = model.wide_ips.get(k.wide_ip as usize).is_some_and(|w| matches!(w.mode, crate::model::ModeConfig::Dynamic { .. }) && w.pool.contains(&r.vs));
        if !fits {
            store.persist_delete(&k)?;
            n += 1;
        }
    }
    Ok(n)
}

/// One config's view of the store. A reload retires it: from then on the
/// old config's writers (its probes, schedules, cluster merges, all with
/// the old config's ids) are refused instead of writing under new ids.
pub struct GenStore {
    inner: std::sync::Arc<dyn Store>,
    retired: std::sync::RwLock<bool>,
}

impl GenStore {
    pub fn new(inner: std::sync::Arc<dyn Store>) -> GenStore {
        GenStore { inner, retired: std::sync::RwLock::new(false) }
    }
    /// Waits for the operations under way, then refuses the rest.
    pub fn retire(&self) {
        *self.retired.write().unwrap() = true;
    }
    /// Runs `f` unless retired, and keeps it from being retired meanwhile.
    pub fn while_current<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let g = self.retired.read().unwrap();
        (!*g).then(f)
    }
    fn guard(&self) -> anyhow::Result<std::sync::RwLockReadGuard<'_, bool>> {
        let g = self.retired.read().unwrap();
        anyhow::ensure!(!*g, "the config this was for has been replaced by a reload");
        Ok(g)
    }
}

impl Store for GenStore {
    fn vs_state(&self, vs: u32) -> anyhow::Result<u32> {
        let _g = self.guard()?;
        self.inner.vs_state(vs)
    }
    fn set_vs_state(&self, vs: u32, state: u32) -> anyhow::Result<()> {
        let _g = self.guard()?;
        self.inner.set_vs_state(vs, state)
    }
    fn next_counter(&self, wide_ip: u32) -> anyhow::Result<u64> {
        let _g = self.guard()?;
        self.inner.next_counter(wide_ip)
    }
    fn persist_get(&self, key: &PersistKey) -> anyhow::Result<Option<PersistRecord>> {
        let _g = self.guard()?;
        self.inner.persist_get(key)
    }
    fn persist_put(&self, key: &PersistKey, rec: &PersistRecord) -> anyhow::Result<()> {
        let _g = self.guard()?;
        self.inner.persist_put(key, rec)
    }
    fn persist_delete(&self, key: &PersistKey) -> anyhow::Result<()> {
        let _g = self.guard()?;
        self.inner.persist_delete(key)
    }
    fn persist_list(&self) -> anyhow::Result<Vec<(PersistKey, PersistRecord)>> {
        let _g = self.guard()?;
        self.inner.persist_list()
    }
}

/// Copies `from`'s records, VS states and round-robin counters (written
/// with `old`'s ids) into `to` by name for `new`; records naming what
/// `new` lacks are left behind and counted. Records already in `to` stay
/// unless `from`'s are newer (a catch-up after the swap).
pub fn carry_by_name(old: &crate::model::Model, from: &dyn Store, new: &crate::model::Model, to: &dyn Store, states: bool) -> anyhow::Result<usize> {
    let ids = new.renumber(old);
    let mut dropped = 0;
    for (k, r) in from.persist_list()? {
        match ids.record(k, r) {
            Some((k, r)) => put_if_newer(to, &k, &r)?,
            None => dropped += 1,
        }
    }
    if states {
        for i in 0..old.vss.len() as u32 {
            if let Some(j) = ids.vs(i) {
                to.set_vs_state(j, from.vs_state(i)?)?;
            }
        }
    }
    Ok(dropped)
}

/// Writes `rec` unless the store holds a newer one for `key`.
pub fn put_if_newer(to: &dyn Store, key: &PersistKey, rec: &PersistRecord) -> anyhow::Result<()> {
    if to.persist_get(key)?.is_none_or(|mine| mine.last_ns < rec.last_ns) {
        to.persist_put(key, rec)?;
    }
    Ok(())
}

/// Process-memory store, used when no XDP program is attached.
/// Like the kernel's LRU hash it holds at most `capacity` records.
pub struct MemoryStore {
    vs: Vec<AtomicU32>,
    counters: Vec<AtomicU64>,
    records: Mutex<HashMap<PersistKey, PersistRecord, foldhash::fast::RandomState>>,
    capacity: usize,
}

impl MemoryStore {
    pub fn new(initial_vs_states: Vec<u32>, wide_ips: usize, capacity: usize) -> MemoryStore {
        MemoryStore {
            vs: initial_vs_states.into_iter().map(AtomicU32::new).collect(),
            counters: (0..wide_ips).map(|_| AtomicU64::new(0)).collect(),
            records: Mutex::new(HashMap::default()),
            capacity,
        }
    }
}

impl Store for MemoryStore {
    fn vs_state(&self, vs: u32) -> anyhow::Result<u32> {
        Ok(self.vs[vs as usize].load(Ordering::Relaxed))
    }
    fn set_vs_state(&self, vs: u32, state: u32) -> anyhow::Result<()> {
        self.vs[vs as usize].store(state, Ordering::Relaxed);
        Ok(())
    }
    fn next_counter(&self, wide_ip: u32) -> anyhow::Result<u64> {
        Ok(self.counters[wide_ip as usize].fetch_add(1, Ordering::Relaxed))
    }
    fn persist_get(&self, key: &PersistKey) -> anyhow::Result<Option<PersistRecord>> {
        Ok(self.records.lock().unwrap().get(key).copied())
    }
    fn persist_put(&self, key: &PersistKey, rec: &PersistRecord) -> anyhow::Result<()> {
        let mut m = self.records.lock().unwrap();
        if !m.contains_key(key) && m.len() >= self.capacity {
            // Full: drop expired records, then the least recently used
            // sixteenth, so the cost of a full table is paid once per
            // capacity/16 inserts rather than on every one.
            let now = now_ns();
            m.retain(|_, r| is_timely(now, r.last_ns, r.ttl_secs));
            if m.len() >= self.capacity {
                let mut by_age: Vec<(u64, PersistKey)> = m.iter().map(|(k, r)| (r.last_ns, *k)).collect();
                by_age.sort_unstable();
                for (_, k) in by_age.iter().take((self.capacity / 16).max(1)) {
                    m.remove(k);
                }
            }
        }
        m.insert(*key, *rec);
        Ok(())
    }
    fn persist_delete(&self, key: &PersistKey) -> anyhow::Result<()> {
        self.records.lock().unwrap().remove(key);
        Ok(())
    }
    fn persist_list(&self) -> anyhow::Result<Vec<(PersistKey, PersistRecord)>> {
        let mut v: Vec<_> = self.records.lock().unwrap().iter().map(|(k, r)| (*k, *r)).collect();
        v.sort_by_key(|(k, _)| *k);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edns_common::LdnsKey;

    fn key(n: u8) -> PersistKey {
        let mut a = [0u8; 16];
        a[15] = n;
        PersistKey { wide_ip: 0, ldns: LdnsKey::addr(a) }
    }

    #[test]
    fn a_full_memory_store_evicts_expired_then_least_recently_used_records() {
        let s = MemoryStore::new(vec![], 1, 32);
        let now = now_ns();
        let rec = |last_ns, ttl_secs| PersistRecord { vs: 0, ttl_secs, created_ns: 0, last_ns, hits: 1, node_id: 0, generation: 0 };
        for n in 0..32u8 {
            // Record 5 is expired; the others are timely, older for lower n.
            let r = if n == 5 { rec(0, 1) } else { rec(now - 1_000 + n as u64, 600) };
            s.persist_put(&key(n), &r).unwrap();
        }
        let keys = |s: &MemoryStore| -> Vec<u8> { s.persist_list().unwrap().iter().map(|(k, _)| k.ldns.addr[15]).collect() };
        s.persist_put(&key(100), &rec(now, 600)).unwrap();
        let left = keys(&s);
        assert!(!left.contains(&5), "the expired record makes room: {left:?}");
        assert_eq!(left.len(), 32);
        // Full with nothing expired: the oldest sixteenth (2 of 32) goes.
        s.persist_put(&key(101), &rec(now, 600)).unwrap();
        let left = keys(&s);
        assert!(!left.contains(&0) && !left.contains(&1) && left.contains(&2), "{left:?}");
        assert!(left.contains(&100) && left.contains(&101));
        assert_eq!(left.len(), 31);
    }
}
