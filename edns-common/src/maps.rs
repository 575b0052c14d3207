//! `#[repr(C)]` plain-old-data layouts of the BPF maps. One definition, used by
//! the kernel program and by the controller that fills the maps.

/// Most virtual servers in one wide IP's pool (pool membership is a `u32` mask).
pub const MAX_POOL: usize = 32;

/// Longest qname, in wire format including the root label, that the XDP fast
/// path matches. Longer names are legal DNS and go up to the controller.
pub const MAX_QNAME_WIRE: usize = 128;

// No separate label limit: the walk is per byte, and every label costs at
// least two bytes, so at most 64 labels fit in MAX_QNAME_WIRE.

/// Selection mode of a wide IP, as stored in [`WideIpEntry::mode`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Stripe = 0,
    Topology = 1,
    Dynamic = 2,
    /// Rendezvous hashing of the LDNS over the VSs up (`stripe_consistent`).
    StripeConsistent = 3,
}

impl Mode {
    pub fn from_u32(v: u32) -> Option<Mode> {
        match v {
            0 => Some(Mode::Stripe),
            1 => Some(Mode::Topology),
            2 => Some(Mode::Dynamic),
            3 => Some(Mode::StripeConsistent),
            _ => None,
        }
    }
}

/// Key of the wide IP table: the qname in DNS wire format, ASCII-lowercased,
/// zero padded. Lowercasing makes 0x20-randomised queries hit the fast path.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct QnameKey {
    pub name: [u8; MAX_QNAME_WIRE],
}

/// The name hash: 64-bit FNV-style over a name's lowercased, zero-padded
/// wire form taken 8 bytes at a time, over the words the name (root label
/// included) touches, so the XDP program hashes an 18-byte name in 3 steps.
/// Its top bits place the name in NAME_SLOTS ([`name_slot`]); the entry a
/// slot leads to holds the name itself, compared on a hit.
pub const NAME_HASH_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const NAME_HASH_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One step of the name hash: the next 8 bytes of the key, read little-endian.
#[inline(always)]
pub fn name_hash_word(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(NAME_HASH_PRIME)
}

/// A name is looked for in this many slots of NAME_SLOTS, from its home
/// slot on (linear probing); the controller sizes the table so that every
/// name of the config lies within them.
pub const NAME_PROBES: u32 = 4;

/// Slot `probe` (from 0) of a name of hash `hash` in a table of `2^bits`
/// slots (1 ≤ bits ≤ 31): the hash's top bits, then the slots after it.
#[inline(always)]
pub fn name_slot(hash: u64, bits: u32, probe: u32) -> u32 {
    let bits = bits.clamp(1, 31);
    ((hash >> (64 - bits)) as u32).wrapping_add(probe) & ((1u32 << bits) - 1)
}

/// ASCII-lowercases 8 bytes at once. Label length bytes (at most 63) and
/// zeros lie below 'A', so a whole wire-format name can be lowercased
/// word by word without finding its labels first.
#[inline(always)]
pub const fn lower_word(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low7 = w & (0x7f * ONES);
    // High bit of each byte: at least 'A', above 'Z', not already above 0x7f.
    let from_a = low7 + 0x3f * ONES;
    let past_z = low7 + 0x25 * ONES;
    let upper = from_a & !past_z & !w & (0x80 * ONES);
    w | (upper >> 2)
}

impl QnameKey {
    /// The wire length of the name, root label included (the whole key if
    /// it has no root label).
    pub fn wire_len(&self) -> usize {
        let mut i = 0;
        while i < MAX_QNAME_WIRE {
            let len = self.name[i] as usize;
            if len == 0 {
                return i + 1;
            }
            i += 1 + len;
        }
        MAX_QNAME_WIRE
    }

    /// The name's wire length when its labels are well formed: lengths of
    /// at most 63, ending in the root label within the key.
    #[inline(always)]
    pub fn labels_len(&self) -> Option<usize> {
        let mut i = 0;
        // Counted labels, for the verifier: it must see the loop end.
        let mut labels = 0;
        while labels < MAX_QNAME_WIRE / 2 && i < MAX_QNAME_WIRE {
            let len = self.name[i] as usize;
            if len == 0 {
                return Some(i + 1);
            }
            if len > 63 {
                return None;
            }
            i += 1 + len;
            labels += 1;
        }
        None
    }

    /// [`name_hash_word`] over the words the name touches.
    pub fn name_hash(&self) -> u64 {
        let words = self.wire_len().div_ceil(8);
        let mut h = NAME_HASH_BASIS;
        let mut i = 0;
        while i < words {
            let mut w = [0u8; 8];
            w.copy_from_slice(&self.name[i * 8..i * 8 + 8]);
            h = name_hash_word(h, u64::from_le_bytes(w));
            i += 1;
        }
        h
    }

    /// Builds the key from a wire-format name (labels plus root), lowercasing it.
    /// Returns `None` when the name does not fit the fast path: longer than
    /// the key, or with a zero byte before its root (the data plane reads a
    /// query's name up to its first zero byte).
    pub fn from_wire(wire: &[u8]) -> Option<QnameKey> {
        if wire.len() > MAX_QNAME_WIRE || wire.iter().position(|&b| b == 0) != Some(wire.len().wrapping_sub(1)) {
            return None;
        }
        let mut name = [0u8; MAX_QNAME_WIRE];
        let mut i = 0;
        while i < wire.len() {
            name[i] = wire[i].to_ascii_lowercase();
            i += 1;
        }
        Some(QnameKey { name })
    }
}

/// One wide IP: everything the data plane needs to answer for it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct WideIpEntry {
    /// Index of the wide IP; keys the round-robin counters and persistence.
    pub id: u32,
    /// [`Mode`] as u32.
    pub mode: u32,
    /// TTL of the A/AAAA answer.
    pub answer_ttl: u32,
    /// Number of valid entries in `pool_vs` / `pool_sac`.
    pub pool_len: u32,
    /// Persistence TTL in force (dynamic mode), seconds: records are timely
    /// by it; the controller rewrites it when a schedule's window changes.
    pub persistence_ttl: u32,
    /// What to answer when no VS of the pool is up: [`ALL_DOWN_ROUND_ROBIN`]
    /// (the patent's fallback, answered in the kernel) or another policy,
    /// which the kernel passes up to the controller.
    pub all_down: u32,
    /// Persistence masks (dynamic mode): LDNSes in one /`persist_mask_v4`
    /// (IPv4) or /`persist_mask_v6` share one record; 32 and 128 key by address.
    pub persist_mask_v4: u8,
    pub persist_mask_v6: u8,
    /// Longest client-subnet prefix (RFC 7871) read, when `flags` has
    /// [`WIDE_IP_ECS`]: longer source prefixes are cut to it.
    pub ecs_max_v4: u8,
    pub ecs_max_v6: u8,
    /// [`WIDE_IP_ECS`].
    pub flags: u32,
    /// Global VS ids of the circular pool list, in config order.
    pub pool_vs: [u32; MAX_POOL],
    /// SAC id managing each pool entry (the answer is that SAC's address).
    pub pool_sac: [u32; MAX_POOL],
    /// The name, lowercased wire form: the hash that keys the entry is
    /// checked against it.
    pub name: QnameKey,
}

/// Address of a SAC: what an answer carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct SacEntry {
    pub addr4: [u8; 4],
    /// [`SAC_HAS_V6`] when `addr6` is configured.
    pub flags: u32,
    pub addr6: [u8; 16],
}
pub const SAC_HAS_V6: u32 = 1;

/// [`WideIpEntry::flags`]: the client subnet of an ECS query replaces the LDNS.
pub const WIDE_IP_ECS: u32 = 1;

/// VS state bits, one `u32` per global VS id.
/// "Marked up" is what the controller last set (Fig. 3's N counts these);
/// "available" is the freshest knowledge at answer time.
pub const VS_MARKED_UP: u32 = 1;
pub const VS_AVAILABLE: u32 = 2;
pub const VS_UP: u32 = VS_MARKED_UP | VS_AVAILABLE;

/// All-down policies ([`WideIpEntry::all_down`]).
pub const ALL_DOWN_ROUND_ROBIN: u32 = 0;
pub const ALL_DOWN_FALLBACK: u32 = 1;
pub const ALL_DOWN_REFUSED: u32 = 2;
pub const ALL_DOWN_SERVFAIL: u32 = 3;

/// What identifies the requester in a persistence record.
pub const LDNS_KIND_ADDR: u8 = 0;
/// An LDNS group (Fig. 5) keyed by `group`.
pub const LDNS_KIND_GROUP: u8 = 1;
/// An LDNS address prefix (`prefix_len` bits of `addr`, persistence masks).
pub const LDNS_KIND_PREFIX: u8 = 2;
/// A client subnet (EDNS Client Subnet): `prefix_len` bits of `addr`.
pub const LDNS_KIND_SUBNET: u8 = 3;

/// The requester side of a persistence key. IPv4 addresses are stored
/// IPv4-mapped (`::ffff:a.b.c.d`) so one layout serves both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct LdnsKey {
    pub kind: u8,
    /// Significant bits of `addr` for [`LDNS_KIND_PREFIX`]; 128 for a host.
    pub prefix_len: u8,
    pub _pad: [u8; 2],
    /// LDNS group id for [`LDNS_KIND_GROUP`], else 0.
    pub group: u32,
    pub addr: [u8; 16],
}

impl LdnsKey {
    pub const fn addr(addr: [u8; 16]) -> LdnsKey {
        LdnsKey { kind: LDNS_KIND_ADDR, prefix_len: 128, _pad: [0; 2], group: 0, addr }
    }
}

/// Key of a persistence record (Fig. 6: wide IP key + LDNS).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PersistKey {
    pub wide_ip: u32,
    pub ldns: LdnsKey,
}

/// A persistence record (Fig. 6's Request_t). Times are CLOCK_MONOTONIC
/// nanoseconds: `bpf_ktime_get_coarse_ns()` (to the tick, up to two ticks
/// behind) in the kernel, the same clock in the controller. Records shared between nodes
/// must be converted to wall time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PersistRecord {
    /// Global VS id the LDNS was referred to.
    pub vs: u32,
    pub ttl_secs: u32,
    pub created_ns: u64,
    /// Last request (the Fig. 6 "time stamp").
    pub last_ns: u64,
    /// Times hit, including the request that created it.
    pub hits: u64,
    /// Node that created the record (clustered edns nodes share records).
    pub node_id: u32,
    /// Incarnation of the record for its key: a record made again after
    /// the previous one expired or lost its VS is one more, and supersedes
    /// it on every node of a cluster.
    pub generation: u32,
}

/// Key of the topology LPM trie: IPv4-mapped or native IPv6 address bytes.
pub type TopologyAddr = [u8; 16];

/// Key of the `LISTEN` map: a destination the data plane answers for,
/// IPv4 mapped into IPv6. The unspecified address (`::`, or `::ffff:0.0.0.0`
/// for IPv4) matches every destination of its family.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ListenKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: u16,
}

/// The unspecified address of a family, as `ListenKey` holds it.
pub const fn unspecified(v6: bool) -> [u8; 16] {
    if v6 {
        [0; 16]
    } else {
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]
    }
}

/// Data-plane settings, one entry in the `SETTINGS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Settings {
    /// UDP port the data plane answers on (host byte order).
    pub dns_port: u16,
    /// EDNS UDP payload size we advertise in an OPT RR.
    pub edns_payload: u16,
    /// Non-zero: log each verdict through aya-log (`edns run --xdp-log`).
    pub log: u32,
    /// The interface's MAC: a unicast query frame to another MAC is dropped.
    pub mac: [u8; 6],
    /// Non-zero when `mac` is set (BPF_PROG_TEST_RUN without an interface may leave it unset).
    pub check_mac: u16,
    /// Response rate limiting: nanoseconds one response costs a source
    /// prefix (1 s / responses_per_second); 0 = off.
    pub rrl_interval_ns: u64,
    /// How far ahead of now a prefix may run: (burst - 1) × interval.
    pub rrl_tolerance_ns: u64,
    /// Every `rrl_slip`-th limited query gets a TC=1 answer (0: none).
    pub rrl_slip: u32,
    /// Prefix lengths that form one requester.
    pub rrl_v4_prefix: u8,
    pub rrl_v6_prefix: u8,
    /// Non-zero when GROUPS holds a member: without one the trie is not read.
    pub groups: u16,
    /// NSID (RFC 5001) returned to queries that ask: `nsid_len` bytes of `nsid` (0: none).
    pub nsid: [u8; MAX_NSID],
    pub nsid_len: u32,
    /// Sum of the NSID's bytes as 16-bit words when it starts at an even
    /// and at an odd offset (for the UDP checksum).
    pub nsid_sum_even: u32,
    pub nsid_sum_odd: u32,
    /// Only read by a `stages` build (the bench's): stop at this checkpoint.
    pub stop_at: u32,
    /// The listen addresses on `dns_port` (IPv4 mapped), compared in place
    /// of LISTEN lookups: the first `listen_len`. 0 when a wildcard listen
    /// makes LISTEN follow the interface's addresses, or there are more than
    /// [`MAX_INLINE_LISTEN`]: then LISTEN is read.
    pub listen: [[u8; 16]; MAX_INLINE_LISTEN],
    pub listen_len: u32,
    /// NAME_SLOTS holds 2^`name_bits` slots ([`name_slot`]).
    pub name_bits: u32,
}

/// Listen addresses the data plane compares inline (more go to LISTEN).
pub const MAX_INLINE_LISTEN: usize = 4;

/// Longest NSID the data plane returns.
pub const MAX_NSID: usize = 64;
/// EDNS option code of NSID.
pub const OPTION_NSID: u16 = 3;

/// Rate-limit state of one source prefix (GCRA: the theoretical arrival
/// time of the next response) and its count of limited queries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct RrlBucket {
    pub tat_ns: u64,
    pub limited: u64,
}

/// Per-CPU counter indices (the `COUNTERS` array).
pub mod counter {
    pub const PACKETS: u32 = 0;
    pub const ANSWERED_STRIPE: u32 = 1;
    pub const ANSWERED_TOPOLOGY: u32 = 2;
    pub const ANSWERED_PERSISTENCE: u32 = 3;
    pub const ANSWERED_FALLBACK_RR: u32 = 4;
    pub const PASS_NOT_DNS: u32 = 5;
    pub const PASS_UNPARSED: u32 = 6;
    pub const PASS_UNKNOWN_NAME: u32 = 7;
    pub const PASS_PERSIST_MISS: u32 = 8;
    pub const PASS_PERSIST_EXPIRED: u32 = 9;
    pub const PASS_NO_ADDRESS: u32 = 10;
    /// bpf_xdp_adjust_tail refused to grow the frame.
    pub const PASS_NO_ROOM: u32 = 11;
    /// A map or the tail call was missing: a loader bug, never expected.
    pub const PASS_INTERNAL: u32 = 12;
    /// A DNS query to an address edns does not listen on.
    pub const PASS_NOT_OURS: u32 = 13;
    pub const ANSWERED_CONSISTENT: u32 = 14;
    /// No VS up and the wide IP's all-down policy is not round robin.
    pub const PASS_ALL_DOWN: u32 = 15;
    /// Dropped (XDP_DROP) from here on: the kernel would never deliver
    /// them, and an answer would reflect to a spoofed or group address.
    /// Source a resolver cannot have (RFC 6890 special-purpose, ours, a
    /// group MAC, port 0).
    pub const DROP_MARTIAN_SOURCE: u32 = 16;
    /// Not addressed to us: another host's MAC, or a broadcast/multicast
    /// destination.
    pub const DROP_NOT_FOR_US: u32 = 17;
    /// Wrong IPv4 header or UDP checksum, or a zero UDP checksum over IPv6.
    pub const DROP_BAD_CHECKSUM: u32 = 18;
    pub const FIRST_DROP: u32 = DROP_MARTIAN_SOURCE;
    pub const LAST_DROP: u32 = DROP_BAD_CHECKSUM;
    /// Answers in XDP to queries with a COOKIE option, by what it held
    /// (counted beside the answering mode).
    pub const COOKIE_CLIENT_ONLY: u32 = 19;
    pub const COOKIE_VALID: u32 = 20;
    pub const COOKIE_BAD: u32 = 21;
    /// Rate limited: dropped, or answered with TC=1 (slip) so a real
    /// resolver retries over TCP.
    pub const DROP_RATE_LIMITED: u32 = 22;
    pub const ANSWERED_RRL_SLIP: u32 = 23;
    /// A malformed client subnet (RFC 7871): the controller answers FORMERR.
    pub const PASS_BAD_ECS: u32 = 24;
    /// Besides how it was answered: the answer echoed a client subnet.
    pub const ECS_ANSWERED: u32 = 25;
    pub const COUNT: u32 = 26;

    /// Outcomes that end in XDP_DROP.
    pub const fn is_drop(c: u32) -> bool {
        (c >= FIRST_DROP && c <= LAST_DROP) || c == DROP_RATE_LIMITED
    }

    pub const NAMES: [&str; COUNT as usize] = [
        "packets",
        "answered_stripe",
        "answered_topology",
        "answered_persistence",
        "answered_fallback_rr",
        "pass_not_dns",
        "pass_unparsed",
        "pass_unknown_name",
        "pass_persist_miss",
        "pass_persist_expired",
        "pass_no_address",
        "pass_no_room",
        "pass_internal",
        "pass_not_ours",
        "answered_consistent",
        "pass_all_down",
        "drop_martian_source",
        "drop_not_for_us",
        "drop_bad_checksum",
        "cookie_client_only",
        "cookie_valid",
        "cookie_bad",
        "drop_rate_limited",
        "answered_rrl_slip",
        "pass_bad_ecs",
        "ecs_answered",
    ];
}

/// aya's own marker, sound for these types: each derives bytemuck's `Pod`,
/// whose derive refuses to compile a type with padding or a non-POD field.
#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for QnameKey {}
    unsafe impl aya::Pod for WideIpEntry {}
    unsafe impl aya::Pod for SacEntry {}
    unsafe impl aya::Pod for LdnsKey {}
    unsafe impl aya::Pod for PersistKey {}
    unsafe impl aya::Pod for PersistRecord {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for ListenKey {}
    unsafe impl aya::Pod for crate::cookie::CookieSecrets {}
    unsafe impl aya::Pod for RrlBucket {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel lowercases the name a word at a time and hashes the words
    /// the name touches (3 here); the controller hashes the stored key built by
    /// `from_wire`: the same value, and the same for any spelling.
    #[test]
    fn the_name_hash_is_the_word_fold_of_the_lowercased_padded_name() {
        let wire = b"\x03WwW\x04gslb\x07example\x00";
        let key = QnameKey::from_wire(wire).unwrap();
        let mut padded = [0u8; MAX_QNAME_WIRE];
        padded[..wire.len()].copy_from_slice(wire);
        let folded = padded.chunks(8).take(3).map(|c| lower_word(u64::from_le_bytes(c.try_into().unwrap()))).fold(NAME_HASH_BASIS, name_hash_word);
        assert_eq!(key.name_hash(), folded);
        assert_eq!(QnameKey::from_wire(b"\x03www\x04GSLB\x07example\x00").unwrap().name_hash(), folded);
        let other = QnameKey::from_wire(b"\x03wwx\x04gslb\x07example\x00").unwrap();
        assert_eq!((key.labels_len(), other.labels_len()), (Some(18), Some(18)));
        // Not for the fast path: a zero byte within a label.
        assert_eq!(QnameKey::from_wire(b"\x03a\x00b\x00"), None);
        let bad = |wire: &[u8]| {
            let mut k = QnameKey { name: [0; MAX_QNAME_WIRE] };
            k.name[..wire.len()].copy_from_slice(wire);
            k.labels_len()
        };
        assert_eq!((bad(b"\x40www\x00"), bad(b"\x03www\xc0\x0c"), bad(&[63; MAX_QNAME_WIRE])), (None, None, None));
        assert_ne!(key.name_hash(), other.name_hash());
    }

    /// Every byte value: letters lowercased as `to_ascii_lowercase` does,
    /// everything else (label lengths, digits, bytes above 0x7f) kept.
    #[test]
    fn lower_word_lowercases_exactly_the_ascii_capitals() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let w = u64::from(b) << (8 * at) | 0x3f00_0041_5a5b_40 & !(0xffu64 << (8 * at));
                let bytes = w.to_le_bytes().map(|x| x.to_ascii_lowercase());
                assert_eq!(lower_word(w), u64::from_le_bytes(bytes), "byte {b:#x} at {at}");
            }
        }
    }
}
