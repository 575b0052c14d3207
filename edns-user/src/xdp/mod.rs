//! The XDP data plane: loads and attaches `edns-ebpf`, fills its maps from
//! the model, and serves as the [`Store`] so the kernel and the controller
//! share one copy of VS states, round-robin counters and persistence records.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{bail, Context};
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use edns_common::{counter, CookieSecrets, ListenKey, PersistKey, PersistRecord, SacEntry, Settings, TopologyAddr, WideIpEntry, SAC_HAS_V6};

use crate::model::{ip16, Model};
use crate::store::Store;

mod names;
pub mod pin;
use pin::{Layout, Pins, ID_MAPS, STATE_MAPS};

/// The object `cargo xtask build-ebpf` produced when this binary was built
/// (empty when it had not been built).
static EMBEDDED_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/edns-ebpf.o"));

/// Map capacities fixed in the object (see edns-ebpf/src/maps.rs).
/// RR_COUNTERS' size; WIDE_IPS is sized to each config when loaded.
pub const MAX_WIDE_IPS: u32 = 131072;
pub const MAX_SACS: u32 = 4096;
pub const MAX_VSS: u32 = 8192;
pub const MAX_TOPOLOGY: u32 = 65536;

/// Reads the eBPF object: `path`, or the embedded one.
pub fn object_bytes(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read eBPF object {}", p.display())),
        None if EMBEDDED_OBJECT.is_empty() => {
            bail!("this edns was built without its eBPF object: run `cargo xtask build-ebpf` and rebuild, or pass --bpf-object")
        }
        None => Ok(EMBEDDED_OBJECT.to_vec()),
    }
}

/// Loads the object with map sizes from the model (maps not yet filled).
pub fn load(model: &Model, object: &[u8]) -> anyhow::Result<Ebpf> {
    load_pinned(model, object, None)
}

/// Like [`load`]; with `pins`, the state maps are the ones pinned there
/// (made and pinned when absent).
fn load_pinned(model: &Model, object: &[u8], pins: Option<(&Pins, &Path)>) -> anyhow::Result<Ebpf> {
    if model.wide_ips.len() as u32 > MAX_WIDE_IPS || model.sacs.len() as u32 > MAX_SACS || model.vss.len() as u32 > MAX_VSS {
        bail!("config exceeds data-plane capacity ({MAX_WIDE_IPS} wide IPs, {MAX_SACS} SACs, {MAX_VSS} VSs)");
    }
    if model.topology.len() as u32 > MAX_TOPOLOGY {
        bail!("config has {} topology rules; the data plane holds {MAX_TOPOLOGY}", model.topology.len());
    }
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries("PERSISTENCE", model.server.persistence_capacity)
        .map_max_entries("WIDE_IPS", (model.wide_ips.len() as u32).max(1))
        .map_max_entries("NAME_SLOTS", 1 << name_table(model).0)
        .map_max_entries("RRL", model.server.rrl.map(|r| r.capacity).unwrap_or(1));
    let paths: Vec<(&str, std::path::PathBuf)> = pins.map(|(p, _)| STATE_MAPS.iter().map(|m| (*m, p.map(m))).collect()).unwrap_or_default();
    for (m, path) in &paths {
        loader.map_pin_path(m, path.as_path());
    }
    if let Some((_, jumps)) = pins {
        loader.map_pin_path("JUMPS", jumps);
    }
    loader.load(object).context("cannot load the eBPF object (verifier log above, if any)")
}

pub struct DataPlane {
    /// The program's maps; a reload replaces them with a new program's.
    maps: RwLock<Arc<Maps>>,
    /// aya-log reader, taken by whoever drains it (`edns run --xdp-log`).
    pub logger: Mutex<Option<aya_log::EbpfLogger<&'static dyn log::Log>>>,
    /// Wildcard listen entries (IPv6?, port): answered for the interface's addresses only.
    wildcard: Vec<(bool, u16)>,
    /// Where the link and state maps are pinned (none: they go with us).
    pins: Option<Pins>,
    /// Our handle on the XDP link (pinned, so dropping it detaches nothing).
    link: Mutex<Option<aya::programs::links::FdLink>>,
    /// How the program was loaded, to load the next one the same way.
    source: Option<Source>,
}

struct Source {
    iface: String,
    skb: bool,
    object: Vec<u8>,
    log: bool,
}

/// A new program attached, its maps not yet the controller's.
pub struct PendingReload {
    maps: Maps,
    link: Option<aya::programs::links::FdLink>,
    takeover: Takeover,
}

/// NAME_SLOTS for the model's wide IPs whose names the fast path takes:
/// (bits, slots, ids left out).
fn name_table(model: &Model) -> (u32, Vec<u32>, Vec<u32>) {
    let names: Vec<(u64, u32)> = model.wide_ips.iter().filter_map(|w| Some((model.qname_key(w)?.name_hash(), w.id))).collect();
    names::slots(&names)
}

/// One loaded program's maps, as the controller holds them.
pub struct Maps {
    /// Owns the programs (the link, pinned, is apart).
    _ebpf: Option<Ebpf>,
    settings: Mutex<Array<MapData, Settings>>,
    vs_states: Mutex<Array<MapData, u32>>,
    rr_counters: Mutex<Array<MapData, u64>>,
    persistence: Mutex<HashMap<MapData, PersistKey, PersistRecord>>,
    counters: PerCpuArray<MapData, u64>,
    cookie_secrets: Mutex<Array<MapData, CookieSecrets>>,
    groups: Mutex<LpmTrie<MapData, TopologyAddr, u32>>,
    wide_ips: Mutex<Array<MapData, WideIpEntry>>,
    listen: Mutex<HashMap<MapData, ListenKey, u32>>,
    /// LISTEN keys `sync_listen` put there.
    synced: Mutex<Vec<ListenKey>>,
}

/// What starting on a pinned data plane found and kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// A previous run's program was attached and has been replaced by ours.
    pub link: bool,
    /// Its records, VS states and counters were kept in place.
    pub state: bool,
    /// They were carried by name into fresh maps (the config moved ids).
    pub carried: bool,
    /// Records dropped: their wide IP or VS is gone, or left the pool.
    pub dropped_records: usize,
}

impl Takeover {
    /// True when records and states came from the pinned maps.
    pub fn kept(&self) -> bool {
        self.state || self.carried
    }
}

/// Loads the programs, links `edns` to `edns_answer` and `edns_admit`
/// through JUMPS, and returns the entry program (to attach or to run with
/// BPF_PROG_TEST_RUN).
pub fn load_programs(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    for (slot, name) in [(0u32, "edns_answer"), (1, "edns_admit")] {
        let p: &mut Xdp = ebpf.program_mut(name).with_context(|| format!("eBPF object has no program {name}"))?.try_into()?;
        p.load().with_context(|| format!("the verifier refused {name}"))?;
        let fd = p.fd()?.try_clone()?;
        let mut jumps: ProgramArray<_> = borrow(ebpf, "JUMPS")?;
        jumps.set(slot, &fd, 0)?;
    }
    let entry: &mut Xdp = ebpf.program_mut("edns").context("eBPF object has no program edns")?.try_into()?;
    entry.load().context("the verifier refused edns")?;
    Ok(entry)
}

/// Attaches the `edns_pass` program to `iface` (driver mode); the returned
/// Ebpf keeps it attached until dropped.
pub fn attach_pass(iface: &str, object: Option<&Path>) -> anyhow::Result<Ebpf> {
    let bytes = object_bytes(object)?;
    let mut ebpf = EbpfLoader::new().map_max_entries("PERSISTENCE", 1).load(&bytes)?;
    let p: &mut Xdp = ebpf.program_mut("edns_pass").context("eBPF object has no program edns_pass")?.try_into()?;
    p.load()?;
    p.attach(iface, XdpMode::Driver).with_context(|| format!("cannot attach edns_pass to {iface}"))?;
    Ok(ebpf)
}

/// Loads the programs without attaching and reports, per program, how many
/// instructions the verifier processed (of its 1,000,000 limit).
pub fn verify(model: &Model, object: Option<&Path>) -> anyhow::Result<Vec<(String, u32)>> {
    let bytes = object_bytes(object)?;
    let mut ebpf = load(model, &bytes)?;
    load_programs(&mut ebpf)?;
    let mut out = Vec::new();
    for name in ["edns", "edns_answer", "edns_admit"] {
        let p: &Xdp = ebpf.program(name).context("missing program")?.try_into()?;
        out.push((name.to_string(), p.info()?.verified_instruction_count().unwrap_or(0)));
    }
    Ok(out)
}

/// Takes a map the controller keeps using (it keeps the map's fd open).
fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<T> {
    let m = ebpf.take_map(name).with_context(|| format!("eBPF object has no map {name}"))?;
    T::try_from(m).with_context(|| format!("map {name} has an unexpected type"))
}

/// Borrows a map that is only filled once; it stays owned by `ebpf`.
fn borrow<'a, T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> anyhow::Result<T> {
    let m = ebpf.map_mut(name).with_context(|| format!("eBPF object has no map {name}"))?;
    T::try_from(m).with_context(|| format!("map {name} has an unexpected type"))
}

impl DataPlane {
    fn maps(&self) -> Arc<Maps> {
        self.maps.read().unwrap().clone()
    }

    /// Loads, fills the maps, then attaches to `iface` (skb = generic XDP).
    /// With `pins`, a data plane a previous run left pinned there is taken
    /// over: its state kept, its program replaced by ours in one step.
    pub fn attach(
        model: &Model,
        iface: &str,
        skb: bool,
        object: Option<&Path>,
        vs_states: &[u32],
        log: bool,
        pins: Option<Pins>,
    ) -> anyhow::Result<(DataPlane, Takeover)> {
        let source = Source { iface: iface.to_string(), skb, object: object_bytes(object)?, log };
        let mut logger = None;
        let (maps, wildcard, link, takeover) = bring_up(model, &source, vs_states, pins.as_ref(), if log { Some(&mut logger) } else { None })?;
        let dp = DataPlane {
            maps: RwLock::new(Arc::new(maps)),
            logger: Mutex::new(logger),
            wildcard,
            pins,
            link: Mutex::new(link),
            source: Some(source),
        };
        if takeover.kept() {
            // Records of what this config no longer has go last.
            let dropped = takeover.dropped_records + crate::store::drop_orphans(model, &dp)?;
            tracing::info!(dropped_records = dropped, "records taken over; those for wide IPs or VSs this config lacks dropped");
            return Ok((dp, Takeover { dropped_records: dropped, ..takeover }));
        }
        Ok((dp, takeover))
    }

    /// Readies a new program for `model` with this one's state (kept in
    /// place, or carried by name when ids moved) and puts it behind the
    /// pinned link in one step, so no name is ever half-configured in the
    /// kernel. The controller keeps using the old maps until
    /// [`DataPlane::commit_reload`]. `vs_states`: those of `model`'s VSs.
    pub fn prepare_reload(&self, model: &Model, vs_states: &[u32]) -> anyhow::Result<PendingReload> {
        let (Some(source), Some(pins)) = (&self.source, &self.pins) else {
            bail!("a live reload with XDP needs the data plane pinned (edns run without --no-pin)");
        };
        let (maps, _, link, takeover) = bring_up(model, source, vs_states, Some(pins), None)?;
        Ok(PendingReload { maps, link, takeover })
    }

    /// The controller's side of the swap: from now on it reads and writes
    /// the new program's maps. Returns the old ones, for [`DataPlane::finish_reload`].
    pub fn commit_reload(&self, p: PendingReload) -> (Arc<Maps>, Takeover) {
        let previous = std::mem::replace(&mut *self.maps.write().unwrap(), Arc::new(p.maps));
        *self.link.lock().unwrap() = p.link;
        (previous, p.takeover)
    }

    /// After the swap: records the old program or controller wrote since
    /// they were carried, then (last) the records `model` has no use for.
    /// Returns how many were dropped.
    pub fn finish_reload(&self, old: &Model, model: &Model, previous: Arc<Maps>, t: Takeover) -> anyhow::Result<usize> {
        if t.carried {
            self.catch_up(old, model, &previous)?;
        }
        drop(previous);
        Ok(t.dropped_records + crate::store::drop_orphans(model, self)?)
    }

    /// Copies records of `previous` (written with `old`'s ids) that are
    /// missing here or newer there, renumbered for `model`.
    fn catch_up(&self, old: &Model, model: &Model, previous: &Maps) -> anyhow::Result<()> {
        let c = carry_records(&previous.persistence.lock().unwrap(), &model.renumber(old))?;
        for (k, r) in c.records {
            crate::store::put_if_newer(self, &k, &r)?;
        }
        Ok(())
    }

    /// Detaches for good: unpins the link and the maps and drops our link
    /// handle, so nothing holds the program any more.
    pub fn detach_for_good(&self) -> anyhow::Result<()> {
        let Some(p) = &self.pins else { return Ok(()) };
        drop(self.link.lock().unwrap().take());
        p.remove_all()?;
        tracing::info!(pins = %p.dir.display(), "XDP data plane unpinned; it detaches as edns exits");
        Ok(())
    }

    pub fn pins(&self) -> Option<&Pins> {
        self.pins.as_ref()
    }

    /// True when the link is pinned (the program outlives this process).
    pub fn pinned(&self) -> bool {
        self.link.lock().unwrap().is_some()
    }

    /// Fills every map from the model and takes the ones the controller
    /// keeps using. `log` turns on aya-log output of every verdict; `mac`
    /// is the interface's, to which query frames must be addressed.
    pub fn fill(model: &Model, ebpf: &mut Ebpf, vs_states: &[u32], log: bool, mac: Option<[u8; 6]>) -> anyhow::Result<DataPlane> {
        let states: Vec<Option<u32>> = vs_states.iter().map(|s| Some(*s)).collect();
        let (maps, wildcard) = fill_some(model, ebpf, &states, log, mac)?;
        Ok(DataPlane { maps: RwLock::new(Arc::new(maps)), logger: Mutex::new(None), wildcard, pins: None, link: Mutex::new(None), source: None })
    }
}

/// The listen addresses on `dns_port` for the data plane to compare in
/// place of LISTEN lookups, and how many; none when a wildcard makes LISTEN
/// follow the interface, or when there are more than the settings hold.
fn inline_listen(model: &Model, dns_port: u16) -> ([[u8; 16]; edns_common::MAX_INLINE_LISTEN], u32) {
    let mut out = [[0u8; 16]; edns_common::MAX_INLINE_LISTEN];
    let ours: Vec<_> = model.server.listen.iter().filter(|a| a.port() == dns_port).collect();
    if ours.len() > out.len() || ours.iter().any(|a| a.ip().is_unspecified()) {
        return (out, 0);
    }
    let mut n = 0;
    for a in ours {
        let addr = ip16(a.ip());
        if !out[..n].contains(&addr) {
            out[n] = addr;
            n += 1;
        }
    }
    (out, n as u32)
}

/// Fills every map of a loaded program; a `None` state leaves the map's as it is.
fn fill_some(model: &Model, ebpf: &mut Ebpf, vs_states: &[Option<u32>], log: bool, mac: Option<[u8; 6]>) -> anyhow::Result<(Maps, Vec<(bool, u16)>)> {
        let mut settings: Array<_, Settings> = take(ebpf, "SETTINGS")?;
        let dns_port = model.server.listen.first().map(|a| a.port()).unwrap_or(53);
        let rrl = model.server.rrl;
        let inline = inline_listen(model, dns_port);
        let (name_bits, name_slots, unplaced) = name_table(model);
        settings.set(
            0,
            Settings {
                dns_port,
                edns_payload: model.server.edns_payload,
                log: log as u32,
                mac: mac.unwrap_or_default(),
                check_mac: mac.is_some() as u16,
                rrl_interval_ns: rrl.map(|r| r.interval_ns()).unwrap_or(0),
                rrl_tolerance_ns: rrl.map(|r| r.tolerance_ns()).unwrap_or(0),
                rrl_slip: rrl.map(|r| r.slip).unwrap_or(0),
                rrl_v4_prefix: rrl.map(|r| r.ipv4_prefix).unwrap_or(24),
                rrl_v6_prefix: rrl.map(|r| r.ipv6_prefix).unwrap_or(56),
                groups: model.groups.snapshot().iter().any(|g| !g.members.is_empty()) as u16,
                nsid: nsid_bytes(model),
                nsid_len: model.server.nsid.as_ref().map(|n| n.len().min(edns_common::MAX_NSID) as u32).unwrap_or(0),
                nsid_sum_even: nsid_sum(model, false),
                nsid_sum_odd: nsid_sum(model, true),
                stop_at: 0,
                listen: inline.0,
                listen_len: inline.1,
                name_bits,
            },
            0,
        )?;

        let mut listen: HashMap<_, ListenKey, u32> = take(ebpf, "LISTEN")?;
        let mut wildcard = Vec::new();
        for a in &model.server.listen {
            if a.port() != dns_port {
                tracing::warn!(listen = %a, dns_port, "the XDP fast path answers on one port; queries to this address go to userspace");
                continue;
            }
            if a.ip().is_unspecified() {
                // Only the interface's own addresses, kept by `sync_listen`.
                wildcard.push((a.is_ipv6(), dns_port));
                continue;
            }
            listen.insert(ListenKey { addr: ip16(a.ip()), port: dns_port, _pad: 0 }, 1, 0)?;
        }
        let mut wide_ips: Array<_, WideIpEntry> = take(ebpf, "WIDE_IPS")?;
        // Entries first: a name in NAME_SLOTS is never without its entry.
        for w in &model.wide_ips {
            wide_ips.set(w.id, w.entry(), 0)?;
        }
        for w in model.wide_ips.iter().filter(|w| model.qname_key(w).is_none()) {
            tracing::warn!(wide_ip = %w.name, "name longer than the XDP fast path takes, or with a zero byte in a label; answered in userspace");
        }
        for id in unplaced {
            tracing::warn!(wide_ip = %model.wide_ips[id as usize].name, "no NAME_SLOTS room within its probes; answered in userspace");
        }
        let mut slots: Array<_, u32> = borrow(ebpf, "NAME_SLOTS")?;
        for (slot, v) in name_slots.iter().enumerate().filter(|(_, v)| **v != 0) {
            slots.set(slot as u32, *v, 0)?;
        }
        let mut sacs: Array<_, SacEntry> = borrow(ebpf, "SACS")?;
        for (i, s) in model.sacs.iter().enumerate() {
            let e = SacEntry {
                addr4: s.address.octets(),
                flags: if s.address6.is_some() { SAC_HAS_V6 } else { 0 },
                addr6: s.address6.map(|a| a.octets()).unwrap_or([0; 16]),
            };
            sacs.set(i as u32, e, 0)?;
        }
        let mut states: Array<_, u32> = take(ebpf, "VS_STATES")?;
        for (i, s) in vs_states.iter().enumerate() {
            if let Some(s) = s {
                states.set(i as u32, *s, 0)?;
            }
        }
        let mut groups: LpmTrie<_, TopologyAddr, u32> = take(ebpf, "GROUPS")?;
        for g in model.groups.snapshot() {
            for m in &g.members {
                groups.insert(&group_key(m), g.id, 0)?;
            }
        }
        let mut topo: LpmTrie<_, TopologyAddr, u32> = borrow(ebpf, "TOPOLOGY")?;
        for r in &model.topology {
            let (addr, len) = r.mapped();
            topo.insert(&Key::new(len, addr), r.sac, 0)?;
        }
    let maps = Maps {
        _ebpf: None,
        settings: Mutex::new(settings),
        vs_states: Mutex::new(states),
        rr_counters: Mutex::new(take(ebpf, "RR_COUNTERS")?),
        persistence: Mutex::new(take(ebpf, "PERSISTENCE")?),
        counters: take(ebpf, "COUNTERS")?,
        cookie_secrets: Mutex::new(take(ebpf, "COOKIE_SECRETS")?),
        groups: Mutex::new(groups),
        wide_ips: Mutex::new(wide_ips),
        listen: Mutex::new(listen),
        synced: Mutex::new(Vec::new()),
    };
    Ok((maps, wildcard))
}

/// Loads a program for `model` (state maps pinned at `pins` taken over or
/// carried by name), fills its maps and attaches it — behind the pinned
/// link when there is one, replacing the program there in one step.
type Logger = aya_log::EbpfLogger<&'static dyn log::Log>;
fn bring_up(
    model: &Model,
    source: &Source,
    vs_states: &[u32],
    pins: Option<&Pins>,
    logger: Option<&mut Option<Logger>>,
) -> anyhow::Result<(Maps, Vec<(bool, u16)>, Option<aya::programs::links::FdLink>, Takeover)> {
    let iface = source.iface.as_str();
    let mut takeover = Takeover::default();
    let new_layout = Layout::of(model, source.skb);
    let (mut carry, mut kept_layout) = (None, None);
    if let Some(p) = pins {
        p.prepare()?;
        (carry, kept_layout) = adopt_pinned_maps(p, model, &new_layout)?;
        takeover.state = kept_layout.is_some();
    }
    let jumps = pins.map(|p| p.new_jumps());
    let mut ebpf = load_pinned(model, &source.object, pins.zip(jumps.as_deref()))?;
    // The logger takes its ring buffer before the programs load.
    if let Some(l) = logger {
        *l = Some(aya_log::EbpfLogger::init(&mut ebpf).context("cannot set up aya-log")?);
    }
    // Taken over in place: keep the states, set only those of new VSs.
    let states: Vec<Option<u32>> = match &kept_layout {
        Some(old) => model.vss.iter().enumerate().map(|(i, v)| (old.vss.get(i) != Some(&v.name)).then_some(vs_states[i])).collect(),
        None => vs_states.iter().map(|s| Some(*s)).collect(),
    };
    let (maps, wildcard) = fill_some(model, &mut ebpf, &states, source.log, Some(iface_mac(iface)?))?;
    sync_listen(&maps, &wildcard, iface)?;
    if let Some(c) = carry.take() {
        takeover.dropped_records += maps.put_carried(c)?;
        takeover.carried = true;
    }
    let prog = load_programs(&mut ebpf)?;
    let mode = if source.skb { XdpMode::Skb } else { XdpMode::Driver };
    let link = match pins {
        Some(p) => {
            let (link, replaced) = attach_pinned(prog, p, iface, mode)?;
            takeover.link = replaced;
            let pinned_mode = kept_layout.as_ref().map(|l| l.mode.clone()).filter(|_| replaced);
            if pinned_mode.as_ref().is_some_and(|m| *m != new_layout.mode) {
                tracing::warn!(iface, pinned = ?pinned_mode, "the pinned link keeps the mode it was attached in; `edns detach` first to change it");
            }
            p.remove_old_jumps(jumps.as_deref())?;
            p.write_layout(&Layout { mode: pinned_mode.unwrap_or(new_layout.mode.clone()), ..new_layout })?;
            link
        }
        None => {
            prog.attach(iface, mode).with_context(|| format!("cannot attach XDP ({mode:?}) to {iface}"))?;
            None
        }
    };
    tracing::info!(iface, ?mode, pinned = pins.map(|p| p.dir.display().to_string()), took_over = takeover.link, kept_state = takeover.state, carried_state = takeover.carried, dropped_records = takeover.dropped_records, "XDP data plane attached");
    Ok((Maps { _ebpf: Some(ebpf), ..maps }, wildcard, link, takeover))
}

impl Maps {
    /// Writes records, VS states and counters carried by name from pinned
    /// maps whose ids no longer fit; returns the records dropped.
    fn put_carried(&self, c: Carried) -> anyhow::Result<usize> {
        for (k, r) in &c.records {
            self.persistence.lock().unwrap().insert(k, r, 0)?;
        }
        for (vs, s) in &c.vs_states {
            self.vs_states.lock().unwrap().set(*vs, *s, 0)?;
        }
        for (w, n) in &c.rr_counters {
            self.rr_counters.lock().unwrap().set(*w, *n, 0)?;
        }
        tracing::info!(records = c.records.len(), dropped = c.dropped, "records carried by name into maps for the new config's ids");
        Ok(c.dropped)
    }
}

impl DataPlane {

    /// Rewrites a wide IP's entry with the persistence TTL now in force
    /// (its schedule's window changed); the kernel judges records by it.
    pub fn set_persistence_ttl(&self, w: &crate::model::WideIp, ttl: u32) -> anyhow::Result<()> {
        let entry = WideIpEntry { persistence_ttl: ttl, ..w.entry() };
        self.maps().wide_ips.lock().unwrap().set(w.id, entry, 0)?;
        Ok(())
    }

    /// Changes the settings the programs read.
    pub fn update_settings(&self, change: impl FnOnce(&mut Settings)) -> anyhow::Result<()> {
        let maps = self.maps();
        let mut m = maps.settings.lock().unwrap();
        let mut s = m.get(&0, 0)?;
        change(&mut s);
        m.set(0, s, 0)?;
        Ok(())
    }

    /// Brings the GROUPS trie from `old` to `new` members. The settings'
    /// `groups` flag (the kernel reads the trie only when it is set) is
    /// set after the first member goes in and cleared before the last
    /// comes out.
    pub fn update_groups(&self, old: &[crate::groups::LdnsGroup], new: &[crate::groups::LdnsGroup]) -> anyhow::Result<()> {
        let any = new.iter().any(|g| !g.members.is_empty());
        if !any {
            self.update_settings(|s| s.groups = 0)?;
        }
        self.update_group_members(old, new)?;
        if any {
            self.update_settings(|s| s.groups = 1)?;
        }
        Ok(())
    }

    fn update_group_members(&self, old: &[crate::groups::LdnsGroup], new: &[crate::groups::LdnsGroup]) -> anyhow::Result<()> {
        let maps = self.maps();
        let mut t = maps.groups.lock().unwrap();
        for g in old {
            for m in g.members.iter().filter(|m| !new.iter().any(|n| n.id == g.id && n.members.contains(m))) {
                found(t.remove(&group_key(m)))?;
            }
        }
        for g in new {
            for m in &g.members {
                t.insert(&group_key(m), g.id, 0)?;
            }
        }
        Ok(())
    }

    /// True when a wildcard `listen` makes the LISTEN map follow the interface's addresses.
    pub fn has_wildcard_listen(&self) -> bool {
        !self.wildcard.is_empty()
    }

    /// Puts the addresses `iface` has now into LISTEN for each wildcard
    /// listen of their family, and takes out those it no longer has. A
    /// wildcard listen never answers for broadcast, multicast or another
    /// host's address: only for what the interface holds.
    pub fn sync_listen(&self, iface: &str) -> anyhow::Result<Vec<IpAddr>> {
        sync_listen(&self.maps(), &self.wildcard, iface)
    }

    /// The cookie secrets in the map now.
    pub fn cookie_secrets(&self) -> anyhow::Result<CookieSecrets> {
        Ok(self.maps().cookie_secrets.lock().unwrap().get(&0, 0)?)
    }

    /// The cookie secrets the kernel makes and checks server cookies with.
    pub fn set_cookie_secrets(&self, s: &CookieSecrets) -> anyhow::Result<()> {
        self.maps().cookie_secrets.lock().unwrap().set(0, *s, 0)?;
        Ok(())
    }

    /// Data-plane counters summed over CPUs, by name.
    pub fn counters(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for i in 0..counter::COUNT {
            let per_cpu = self.maps().counters.get(&i, 0)?;
            out.push((counter::NAMES[i as usize].to_string(), per_cpu.iter().sum()));
        }
        Ok(out)
    }
}

/// State read from pinned maps whose ids the new config does not keep,
/// renumbered by name.
struct Carried {
    records: Vec<(PersistKey, PersistRecord)>,
    vs_states: Vec<(u32, u32)>,
    rr_counters: Vec<(u32, u64)>,
    dropped: usize,
}

/// Decides which pinned state maps the new program uses as they are; the
/// others are read (when their ids can be renumbered by name) and unpinned,
/// so the loader makes them afresh. Returns what to carry over, or the
/// layout kept in place.
fn adopt_pinned_maps(p: &Pins, model: &Model, new: &Layout) -> anyhow::Result<(Option<Carried>, Option<Layout>)> {
    use std::mem::size_of;
    let rrl_cap = new.rrl_capacity;
    let shapes: [(&str, usize, usize, u32); 6] = [
        ("PERSISTENCE", size_of::<PersistKey>(), size_of::<PersistRecord>(), model.server.persistence_capacity),
        ("VS_STATES", 4, 4, MAX_VSS),
        ("RR_COUNTERS", 4, 8, MAX_WIDE_IPS),
        ("COUNTERS", 4, 8, counter::COUNT),
        ("RRL", 16, size_of::<edns_common::RrlBucket>(), rrl_cap),
        ("COOKIE_SECRETS", 4, size_of::<CookieSecrets>(), 1),
    ];
    let old = p.read_layout();
    let id_maps_there = ID_MAPS.iter().all(|m| p.map(m).exists());
    let fits = |m: &str| shapes.iter().find(|s| s.0 == m).is_some_and(|(_, k, v, n)| pin::pinned_map_fits(&p.map(m), *k, *v, *n));
    let keep = id_maps_there && old.as_ref().is_some_and(|o| o.keeps_ids(new)) && ID_MAPS.iter().all(|m| fits(m));
    let mut carry = None;
    if id_maps_there && !keep {
        match &old {
            Some(o) => carry = Some(read_carried(p, o, model)?),
            None => tracing::warn!(dir = %p.dir.display(), "pinned records without a layout: their ids cannot be read, so they are not taken over"),
        }
    }
    for m in STATE_MAPS {
        let id_map = ID_MAPS.contains(&m);
        if p.map(m).exists() && ((id_map && !keep) || !fits(m)) {
            pin::remove_if_there(&p.map(m))?;
        }
    }
    Ok((carry, if keep { old } else { None }))
}

/// The records of `map` renumbered by `ids` (those naming what the new
/// config lacks are counted as dropped).
fn carry_records(map: &HashMap<MapData, PersistKey, PersistRecord>, ids: &crate::model::Renumber) -> anyhow::Result<Carried> {
    let (mut records, mut dropped) = (Vec::new(), 0);
    for kv in map.iter() {
        let Some((k, r)) = found(kv)? else { continue };
        match ids.record(k, r) {
            Some(kr) => records.push(kr),
            None => dropped += 1,
        }
    }
    Ok(Carried { records, vs_states: Vec::new(), rr_counters: Vec::new(), dropped })
}

/// Reads the pinned id maps written with `old` and renumbers them for `model`.
fn read_carried(p: &Pins, old: &Layout, model: &Model) -> anyhow::Result<Carried> {
    use aya::maps::Map;
    let open = |m: &str| MapData::from_pin(p.map(m)).with_context(|| format!("cannot open pinned map {}", p.map(m).display()));
    let ids = model.renumber_from(&old.wide_ips, &old.vss, &old.groups);
    let persistence: HashMap<MapData, PersistKey, PersistRecord> = HashMap::try_from(Map::LruHashMap(open("PERSISTENCE")?))?;
    let Carried { records, dropped, .. } = carry_records(&persistence, &ids)?;
    let states: Array<MapData, u32> = Array::try_from(Map::Array(open("VS_STATES")?))?;
    let vs_states = (0..old.vss.len() as u32).filter_map(|i| Some((ids.vs(i)?, states.get(&i, 0).ok()?))).collect();
    let rr: Array<MapData, u64> = Array::try_from(Map::Array(open("RR_COUNTERS")?))?;
    let rr_counters = (0..old.wide_ips.len() as u32).filter_map(|i| Some((ids.wide_ip(i)?, rr.get(&i, 0).ok()?))).collect();
    Ok(Carried { records, vs_states, rr_counters, dropped })
}

/// Attaches `prog` behind the link pinned at `p` (replacing the program a
/// previous run left there, in one step), or attaches it afresh and pins
/// the new link. Returns our link handle and whether one was replaced.
fn attach_pinned(prog: &mut Xdp, p: &Pins, iface: &str, mode: XdpMode) -> anyhow::Result<(Option<aya::programs::links::FdLink>, bool)> {
    use aya::programs::links::{FdLink, PinnedLink};
    use aya::programs::xdp::XdpLink;
    if p.link().exists() {
        let replaced = PinnedLink::from_pin(p.link())
            .map_err(anyhow::Error::from)
            .and_then(|l| XdpLink::try_from(FdLink::from(l)).map_err(anyhow::Error::from))
            .and_then(|l| prog.attach_to_link(l).map_err(anyhow::Error::from));
        match replaced {
            Ok(id) => {
                let link = FdLink::try_from(prog.take_link(id)?)?;
                return Ok((Some(link), true));
            }
            // The interface went away and came back, or the pin is stale.
            Err(e) => {
                tracing::warn!(iface, error = %format!("{e:#}"), "the pinned XDP link cannot be taken over; attaching afresh");
                pin::remove_if_there(&p.link())?;
            }
        }
    }
    let id = prog.attach(iface, mode).with_context(|| format!("cannot attach XDP ({mode:?}) to {iface}"))?;
    match FdLink::try_from(prog.take_link(id)?) {
        Ok(link) => {
            let pinned = link.pin(p.link()).with_context(|| format!("cannot pin the XDP link at {}", p.link().display()))?;
            Ok((Some(FdLink::from(pinned)), false))
        }
        Err(_) => {
            // Taking it out detached it: attach again, left with the program.
            prog.attach(iface, mode).with_context(|| format!("cannot attach XDP ({mode:?}) to {iface}"))?;
            tracing::warn!(iface, "XDP attached through netlink (no bpf_link on this kernel): not pinned, it detaches when edns exits");
            Ok((None, false))
        }
    }
}

fn sync_listen(maps: &Maps, wildcard: &[(bool, u16)], iface: &str) -> anyhow::Result<Vec<IpAddr>> {
    if wildcard.is_empty() {
        return Ok(Vec::new());
    }
    let mut addrs: Vec<IpAddr> = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()?.filter(|i| i.interface_name == iface) {
        let Some(a) = ifa.address else { continue };
        if let Some(v4) = a.as_sockaddr_in() {
            addrs.push(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = a.as_sockaddr_in6() {
            addrs.push(IpAddr::V6(v6.ip()));
        }
    }
    let want: Vec<ListenKey> = wildcard
        .iter()
        .flat_map(|(v6, port)| {
            addrs.iter().filter(move |a| a.is_ipv6() == *v6).map(move |a| ListenKey { addr: ip16(*a), port: *port, _pad: 0 })
        })
        .collect();
    let mut map = maps.listen.lock().unwrap();
    let mut synced = maps.synced.lock().unwrap();
    for k in synced.iter().filter(|k| !want.contains(k)) {
        found(map.remove(k))?;
    }
    for k in &want {
        map.insert(*k, 1, 0)?;
    }
    *synced = want;
    Ok(addrs)
}

/// A group member as the GROUPS trie holds it (IPv4 mapped into IPv6).
fn group_key(m: &ipnet::IpNet) -> Key<TopologyAddr> {
    let bits = if m.addr().is_ipv4() { 96 } else { 0 } + m.prefix_len() as u32;
    Key::new(bits, ip16(m.addr()))
}

fn nsid_bytes(model: &Model) -> [u8; edns_common::MAX_NSID] {
    let mut out = [0u8; edns_common::MAX_NSID];
    if let Some(n) = &model.server.nsid {
        let l = n.len().min(out.len());
        out[..l].copy_from_slice(&n[..l]);
    }
    out
}

/// The NSID's bytes summed as 16-bit words from an even (or odd) offset.
fn nsid_sum(model: &Model, odd: bool) -> u32 {
    let n = model.server.nsid.as_deref().unwrap_or(&[]);
    n.iter().enumerate().map(|(i, b)| (*b as u32) << if (i % 2 == 0) != odd { 8 } else { 0 }).sum()
}

/// The MAC address of an interface, from sysfs.
fn iface_mac(iface: &str) -> anyhow::Result<[u8; 6]> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let bytes: Vec<u8> = text.trim().split(':').map(|h| u8::from_str_radix(h, 16)).collect::<Result<_, _>>().with_context(|| format!("{path}: {text:?} is not a MAC"))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("{path}: {text:?} is not a 6-byte MAC"))
}

/// Missing keys are `None`; any other map error is an error.
/// (A delete of a key gone meanwhile — the kernel evicted it, or a query
/// replaced it — reports ENOENT from the syscall.)
fn found<T>(r: Result<T, aya::maps::MapError>) -> anyhow::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Store for DataPlane {
    fn vs_state(&self, vs: u32) -> anyhow::Result<u32> {
        Ok(self.maps().vs_states.lock().unwrap().get(&vs, 0)?)
    }
    fn set_vs_state(&self, vs: u32, state: u32) -> anyhow::Result<()> {
        self.maps().vs_states.lock().unwrap().set(vs, state, 0)?;
        Ok(())
    }
    fn next_counter(&self, wide_ip: u32) -> anyhow::Result<u64> {
        // Read and write are not atomic with the kernel's add; an increment
        // lost in between only repeats a round-robin position.
        let maps = self.maps();
        let mut m = maps.rr_counters.lock().unwrap();
        let v = m.get(&wide_ip, 0)?;
        m.set(wide_ip, v.wrapping_add(1), 0)?;
        Ok(v)
    }
    fn persist_get(&self, key: &PersistKey) -> anyhow::Result<Option<PersistRecord>> {
        found(self.maps().persistence.lock().unwrap().get(key, 0))
    }
    fn persist_put(&self, key: &PersistKey, rec: &PersistRecord) -> anyhow::Result<()> {
        self.maps().persistence.lock().unwrap().insert(key, rec, 0)?;
        Ok(())
    }
    fn persist_delete(&self, key: &PersistKey) -> anyhow::Result<()> {
        found(self.maps().persistence.lock().unwrap().remove(key))?;
        Ok(())
    }
    fn persist_list(&self) -> anyhow::Result<Vec<(PersistKey, PersistRecord)>> {
        let maps = self.maps();
        let m = maps.persistence.lock().unwrap();
        let mut v = Vec::new();
        for r in m.iter() {
            // A key deleted while iterating (by LRU eviction) is skipped.
            if let Some(kv) = found(r)? {
                v.push(kv);
            }
        }
        v.sort_by_key(|(k, _)| *k);
        Ok(v)
    }
}

/// Keeps LISTEN in step with `iface`'s addresses while edns runs: resyncs
/// on every address notification from netlink (RTNLGRP_IPV4_IFADDR and
/// RTNLGRP_IPV6_IFADDR), and every 30 s in case one was missed.
pub fn spawn_listen_sync(dp: std::sync::Arc<DataPlane>, iface: String) -> anyhow::Result<()> {
    use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
    let mut s = TokioSocket::new(NETLINK_ROUTE)?;
    s.socket_mut().bind(&SocketAddr::new(0, 0))?;
    s.socket_mut().add_membership(libc::RTNLGRP_IPV4_IFADDR)?;
    s.socket_mut().add_membership(libc::RTNLGRP_IPV6_IFADDR)?;
    tokio::spawn(async move {
        loop {
            let changed = tokio::time::timeout(std::time::Duration::from_secs(30), s.recv_from_full()).await;
            if let Ok(Err(e)) = &changed {
                tracing::warn!(error = %e, "netlink address notifications failed; resyncing every 30 s");
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            }
            match dp.sync_listen(&iface) {
                Ok(addrs) if changed.is_ok() => tracing::info!(%iface, ?addrs, "XDP answers for the interface's addresses"),
                Ok(_) => {}
                Err(e) => tracing::error!(%iface, error = %e, "cannot update the LISTEN map"),
            }
        }
    });
    Ok(())
}
