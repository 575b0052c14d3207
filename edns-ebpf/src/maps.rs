//! The data plane's maps. Layouts come from `edns-common`; capacities must
//! match `edns-user/src/xdp.rs`.

use crate::parse::Scratch;
use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray};
use edns_common::{counter, CookieSecrets, ListenKey, RrlBucket, PersistKey, PersistRecord, SacEntry, Settings, TopologyAddr, WideIpEntry};

#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Destinations (address, port) the data plane answers for.
#[map]
pub static LISTEN: HashMap<ListenKey, u32> = HashMap::with_max_entries(64, 0);

/// Slot ([`edns_common::name_slot`] of the name hash) -> wide IP id + 1
/// (0: empty). Open addressing in an array: a lookup is a few loads where
/// a hash map's is a hash, a bucket walk and a key compare (~10 ns).
/// The entry in WIDE_IPS holds the name, compared on each probe.
#[map]
pub static NAME_SLOTS: Array<u32> = Array::with_max_entries(16, 0);

/// Wide IP id -> its entry. An array: the answering program finds the
/// entry by the id the parsing one found, without hashing again.
#[map]
pub static WIDE_IPS: Array<WideIpEntry> = Array::with_max_entries(4096, 0);

/// SAC id -> answer addresses.
#[map]
pub static SACS: Array<SacEntry> = Array::with_max_entries(4096, 0);

/// Global VS id -> VS_MARKED_UP | VS_AVAILABLE.
#[map]
pub static VS_STATES: Array<u32> = Array::with_max_entries(8192, 0);

/// Wide IP id -> round-robin counter (shared with the controller).
#[map]
pub static RR_COUNTERS: Array<u64> = Array::with_max_entries(131072, 0);

/// LDNS prefix (IPv4 mapped into IPv6) -> SAC id. BPF_F_NO_PREALLOC is required for LPM tries.
#[map]
pub static TOPOLOGY: LpmTrie<TopologyAddr, u32> = LpmTrie::with_max_entries(65536, 1);

/// (wide IP, LDNS) -> persistence record; the controller sets the capacity at load.
#[map]
pub static PERSISTENCE: LruHashMap<PersistKey, PersistRecord> = LruHashMap::with_max_entries(1 << 20, 0);

/// Per-CPU hand-over from the parsing program to the answering one (and
/// room for the qname key, which would not fit the stack).
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU slots values pass through to hide their history from the
/// verifier (see select::opaque).
#[map]
pub static OPAQUE: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Tail-call targets: [`JUMP_ANSWER`] is `edns_answer`, [`JUMP_ADMIT`]
/// is `edns_admit` (each program has its own 512-byte stack).
#[map]
pub static JUMPS: ProgramArray = ProgramArray::with_max_entries(2, 0);
pub const JUMP_ANSWER: u32 = 0;
pub const JUMP_ADMIT: u32 = 1;

/// LDNS address prefix (IPv4 mapped into IPv6) -> LDNS group id (Fig. 5).
#[map]
pub static GROUPS: LpmTrie<TopologyAddr, u32> = LpmTrie::with_max_entries(65536, 1);

/// Response rate limiting: source prefix -> bucket; the controller sets the capacity.
#[map]
pub static RRL: LruHashMap<[u8; 16], RrlBucket> = LruHashMap::with_max_entries(65536, 0);

/// DNS cookie secrets and the wall-clock offset (one entry, the controller's).
#[map]
pub static COOKIE_SECRETS: Array<CookieSecrets> = Array::with_max_entries(1, 0);

/// Per-CPU: the jiffies at this CPU's last coarse-clock reading, and the
/// reading (see select::coarse_now).
#[map]
pub static TICK: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

#[inline(always)]
pub fn count(idx: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(idx) {
        // Per-CPU slot: no other writer.
        unsafe { *c += 1 };
    }
}

/// Passes a value through a per-CPU map slot. The verifier does not track
/// precision across a map load, so values computed by loops
/// (masks, positions, a name's length) stop tying the loops' states to exact values, and the
/// loops' paths can be pruned instead of explored one by one.
#[inline(always)]
pub(crate) fn opaque(v: u32) -> u32 {
    match OPAQUE.get_ptr_mut(0) {
        Some(p) => unsafe {
            core::ptr::write_volatile(p, v);
            core::ptr::read_volatile(p)
        },
        None => 0,
    }
}
