//! Where the mutable selection state lives: VS states, round-robin counters
//! and persistence records. With XDP attached the BPF maps are the one copy
//! (the kernel reads and updates them too); without it, process memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use edns_common::{is_timely, PersistKey, PersistRecord};

/// Nanoseconds of CLOCK_BOOTTIME, the clock `bpf_ktime_get_boot_ns()` reads.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; CLOCK_BOOTTIME exists on Linux >= 2.6.39.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
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

/// Process-memory store, used when no XDP program is attached.
pub struct MemoryStore {
    vs: Vec<AtomicU32>,
    counters: Vec<AtomicU64>,
    records: Mutex<HashMap<PersistKey, PersistRecord>>,
    capacity: usize,
}

impl MemoryStore {
    pub fn new(initial_vs_states: Vec<u32>, wide_ips: usize, capacity: usize) -> MemoryStore {
        MemoryStore {
            vs: initial_vs_states.into_iter().map(AtomicU32::new).collect(),
            counters: (0..wide_ips).map(|_| AtomicU64::new(0)).collect(),
            records: Mutex::new(HashMap::new()),
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
            // Full: drop expired records first, then the least recently used,
            // as the kernel's LRU hash does.
            let now = now_ns();
            m.retain(|_, r| is_timely(now, r.last_ns, r.ttl_secs));
            if m.len() >= self.capacity {
                if let Some(oldest) = m.iter().min_by_key(|(_, r)| r.last_ns).map(|(k, _)| *k) {
                    m.remove(&oldest);
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
