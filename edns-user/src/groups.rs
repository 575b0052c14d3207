//! LDNS groups at run time: members from the config and from each group's
//! `members_file`, which is re-read when it changes (no restart). A bad file
//! is refused with its name and line, and the group keeps its old list.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

/// An LDNS group: resolvers treated as one requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdnsGroup {
    pub name: String,
    /// Stable and non-zero: the stripe walks read it for every member.
    pub id: u32,
    /// Every member: `inline` and the file's.
    pub members: Vec<IpNet>,
    pub inline: Vec<IpNet>,
    pub members_file: Option<PathBuf>,
}

/// The groups, shared by the selector, the control endpoint and the data plane.
#[derive(Debug, Default)]
pub struct GroupTable {
    groups: RwLock<Vec<LdnsGroup>>,
}

impl GroupTable {
    pub fn new(groups: Vec<LdnsGroup>) -> GroupTable {
        GroupTable { groups: RwLock::new(groups) }
    }

    pub fn snapshot(&self) -> Vec<LdnsGroup> {
        self.groups.read().unwrap().clone()
    }

    /// The id of the group `ip` belongs to, 0 when none (groups do not
    /// overlap, so the first match is the only one).
    pub fn group_of(&self, ip: std::net::IpAddr) -> u32 {
        self.groups.read().unwrap().iter().find(|g| g.members.iter().any(|m| m.contains(&ip))).map(|g| g.id).unwrap_or(0)
    }

    pub fn name_of(&self, id: u32) -> Option<String> {
        self.groups.read().unwrap().iter().find(|g| g.id == id).map(|g| g.name.clone())
    }

    fn replace(&self, groups: Vec<LdnsGroup>) {
        *self.groups.write().unwrap() = groups;
    }
}

/// An address or a prefix (host bits refused).
pub fn parse_member(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = s.parse().map_err(|e| format!("member {s:?} is not an address or prefix: {e}"))?;
    if net.trunc() != net {
        return Err(format!("member prefix {net} has host bits set (did you mean {}?)", net.trunc()));
    }
    Ok(net)
}

/// A members file: one address or prefix per line; blank lines and `#`
/// comments are skipped. Errors give the 1-based line.
pub fn parse_members_file(text: &str) -> Result<Vec<IpNet>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        out.push(parse_member(l).map_err(|e| (i + 1, e))?);
    }
    Ok(out)
}

/// The first overlap between members of different groups, described.
pub fn find_overlap(groups: &[LdnsGroup]) -> Option<String> {
    for (i, a) in groups.iter().enumerate() {
        for b in &groups[i + 1..] {
            for x in &a.members {
                if let Some(y) = b.members.iter().find(|y| x.contains(&y.addr()) || y.contains(&x.addr())) {
                    return Some(format!("{x} of LDNS group {:?} overlaps {y} of LDNS group {:?}: groups must not overlap", a.name, b.name));
                }
            }
        }
    }
    None
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Re-reads every `members_file` that changed (checked every `every`),
/// validates the new lists together, and on success installs them and
/// calls `changed(old, new)` (the data plane updates its trie there).
pub fn spawn_members_reload(
    table: Arc<GroupTable>,
    every: Duration,
    changed: Box<dyn Fn(&[LdnsGroup], &[LdnsGroup]) + Send + Sync>,
    tasks: &crate::tasks::Tasks,
) {
    let files: Vec<(usize, PathBuf)> =
        table.snapshot().iter().enumerate().filter_map(|(i, g)| g.members_file.clone().map(|f| (i, f))).collect();
    if files.is_empty() {
        return;
    }
    tasks.spawn(async move {
        let mut seen: Vec<Option<SystemTime>> = files.iter().map(|(_, f)| mtime(f)).collect();
        loop {
            tokio::time::sleep(every).await;
            let now: Vec<Option<SystemTime>> = files.iter().map(|(_, f)| mtime(f)).collect();
            if now == seen {
                continue;
            }
            seen = now;
            let old = table.snapshot();
            let mut new = old.clone();
            let mut bad = false;
            for (i, f) in &files {
                let read = std::fs::read_to_string(f).map_err(|e| (0, e.to_string())).and_then(|t| parse_members_file(&t));
                match read {
                    Ok(members) => new[*i].members = new[*i].inline.iter().copied().chain(members).collect(),
                    Err((line, e)) => {
                        tracing::error!(file = %f.display(), line, error = %e, "members_file refused; the group keeps its old list");
                        bad = true;
                    }
                }
            }
            if bad {
                continue;
            }
            if let Some(o) = find_overlap(&new) {
                tracing::error!(error = %o, "members_file refused; the groups keep their old lists");
                continue;
            }
            if new != old {
                table.replace(new.clone());
                changed(&old, &new);
                tracing::info!(groups = new.len(), "LDNS group members reloaded");
            }
        }
    });
}
