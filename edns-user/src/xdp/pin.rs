//! The data plane outlives its controller: the XDP link and the maps that
//! hold state (records, VS states, counters, rate-limit buckets, cookie
//! secrets) are pinned in bpffs under `<pin dir>/<interface>/`, so the
//! kernel keeps answering while edns is stopped, upgraded or restarted, and
//! the next `edns run` (or a live reload) takes them over. Maps that only
//! mirror the config are made afresh by each program and swapped in with it,
//! atomically, by replacing the program behind the pinned link.
//!
//! Records, VS states and round-robin counters are indexed by wide IP and VS
//! ids, which are positions in the config. The names behind the pinned ids
//! are kept beside the pins (`<run dir>/<interface>.layout.json`); when a new
//! config keeps every surviving name at its id, the pinned maps are used as
//! they are; otherwise their contents are carried over by name into fresh
//! maps.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::model::Model;

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/edns";
pub const DEFAULT_RUN_DIR: &str = "/run/edns";

/// Maps holding state, pinned and taken over.
pub const STATE_MAPS: [&str; 6] = ["PERSISTENCE", "VS_STATES", "RR_COUNTERS", "COUNTERS", "RRL", "COOKIE_SECRETS"];
/// Of those, the ones whose keys or values are wide IP or VS ids.
pub const ID_MAPS: [&str; 3] = ["PERSISTENCE", "VS_STATES", "RR_COUNTERS"];

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Where one interface's data plane is pinned.
#[derive(Debug, Clone)]
pub struct Pins {
    pub dir: PathBuf,
    pub layout_file: PathBuf,
}

/// The ids the pinned maps were written with, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    pub wide_ips: Vec<String>,
    pub vss: Vec<String>,
    pub persistence_capacity: u32,
    pub rrl_capacity: u32,
    /// "native" or "skb": the mode the pinned link was attached in.
    pub mode: String,
    /// LDNS groups (name, id): records of a group are keyed by its id.
    #[serde(default)]
    pub groups: Vec<(String, u32)>,
}

impl Layout {
    pub fn of(model: &Model, skb: bool) -> Layout {
        Layout {
            wide_ips: model.wide_ip_names(),
            vss: model.vs_names(),
            persistence_capacity: model.server.persistence_capacity,
            rrl_capacity: model.server.rrl.map(|r| r.capacity).unwrap_or(1),
            mode: if skb { "skb" } else { "native" }.into(),
            groups: model.group_ids(),
        }
    }

    /// True when every name both layouts hold has the same id in each, so
    /// maps indexed by the old ids read right with the new ones.
    pub fn keeps_ids(&self, new: &Layout) -> bool {
        let same = |old: &[String], new: &[String]| old.iter().enumerate().all(|(i, n)| new.iter().position(|m| m == n).is_none_or(|j| j == i));
        let groups_same = self.groups.iter().all(|(n, id)| new.groups.iter().all(|(m, jd)| (n == m) == (id == jd)));
        same(&self.wide_ips, &new.wide_ips) && same(&self.vss, &new.vss) && groups_same && self.persistence_capacity == new.persistence_capacity
    }
}

impl Pins {
    pub fn new(pin_dir: &Path, run_dir: &Path, iface: &str) -> Pins {
        Pins { dir: pin_dir.join(iface), layout_file: run_dir.join(format!("{iface}.layout.json")) }
    }

    pub fn link(&self) -> PathBuf {
        self.dir.join("link")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A fresh pin for a program's JUMPS (the kernel empties a program
    /// array once no file or fd refers to it, which would leave a running
    /// program without its tail calls). Each load has its own, so the
    /// program being replaced keeps calling its own programs until the swap.
    pub fn new_jumps(&self) -> PathBuf {
        let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        self.dir.join(format!("JUMPS-{}-{nonce}", std::process::id()))
    }

    /// Removes the JUMPS pins of replaced programs, all but `keep`.
    pub fn remove_old_jumps(&self, keep: Option<&Path>) -> anyhow::Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Ok(()) };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with("JUMPS-") && Some(p.as_path()) != keep {
                remove_if_there(&p)?;
            }
        }
        Ok(())
    }

    /// Makes the pin directory, mounting bpffs first where none is (the
    /// default directory's /sys/fs/bpf, or the directory itself).
    pub fn prepare(&self) -> anyhow::Result<()> {
        let root = self.dir.parent().context("pin directory has no parent")?;
        if !on_bpffs(root) {
            let mount_at = if root == Path::new(DEFAULT_PIN_DIR) { Path::new("/sys/fs/bpf") } else { root };
            std::fs::create_dir_all(mount_at).with_context(|| format!("cannot create {}", mount_at.display()))?;
            if !on_bpffs(mount_at) {
                mount_bpffs(mount_at)?;
                tracing::info!(at = %mount_at.display(), "bpffs mounted for the pinned data plane");
            }
        }
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create pin directory {}", self.dir.display()))?;
        if let Some(d) = self.layout_file.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        Ok(())
    }

    /// The layout the pinned maps hold, if it can be read.
    pub fn read_layout(&self) -> Option<Layout> {
        let text = std::fs::read(&self.layout_file).ok()?;
        match serde_json::from_slice(&text) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(file = %self.layout_file.display(), error = %e, "unreadable layout of the pinned maps: their ids are not trusted");
                None
            }
        }
    }

    pub fn write_layout(&self, l: &Layout) -> anyhow::Result<()> {
        crate::snapshot::write_json_atomically(&self.layout_file, l)
    }

    /// Operators' admin overrides by VS name, kept beside the layout so a
    /// VS drained before an upgrade stays drained after it.
    pub fn admin_file(&self) -> PathBuf {
        self.layout_file.with_file_name(format!("{}.admin.json", self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()))
    }

    pub fn read_admin(&self) -> Vec<(String, crate::health::Admin)> {
        std::fs::read(self.admin_file()).ok().and_then(|t| serde_json::from_slice(&t).ok()).unwrap_or_default()
    }

    pub fn write_admin(&self, overrides: &[(String, crate::health::Admin)]) -> anyhow::Result<()> {
        crate::snapshot::write_json_atomically(&self.admin_file(), overrides)
    }

    /// True when a previous run left a link or maps here.
    pub fn any_pinned(&self) -> bool {
        self.link().exists() || STATE_MAPS.iter().any(|m| self.map(m).exists())
    }

    /// Removes every pin and the layout: the data plane goes for good once
    /// no process holds it (detaching is the caller's, by dropping the link).
    pub fn remove_all(&self) -> anyhow::Result<()> {
        for m in STATE_MAPS {
            remove_if_there(&self.map(m))?;
        }
        self.remove_old_jumps(None)?;
        remove_if_there(&self.link())?;
        remove_if_there(&self.layout_file)?;
        remove_if_there(&self.admin_file())?;
        match std::fs::remove_dir(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("cannot remove {}", self.dir.display())),
            _ => Ok(()),
        }
    }
}

pub fn remove_if_there(p: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("cannot remove {}", p.display())),
        _ => Ok(()),
    }
}

fn on_bpffs(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a statfs the call fills.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

fn mount_bpffs(at: &Path) -> anyhow::Result<()> {
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes())?;
    let kind = c"bpf";
    // SAFETY: valid C strings; no data argument.
    let r = unsafe { libc::mount(kind.as_ptr(), target.as_ptr(), kind.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("cannot mount bpffs at {} (mount -t bpf bpf {0}, or pass --pin-dir)", at.display()));
    }
    Ok(())
}

/// True when the pinned map at `path` has the key and value sizes and
/// capacity this build would make it with.
pub fn pinned_map_fits(path: &Path, key_size: usize, value_size: usize, max_entries: u32) -> bool {
    match aya::maps::MapInfo::from_pin(path) {
        Ok(i) => i.key_size() as usize == key_size && i.value_size() as usize == value_size && i.max_entries() == max_entries,
        Err(_) => false,
    }
}
