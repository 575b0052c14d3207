//! Static zone data beside the wide IPs (`server.zone_file`): an RFC 1035
//! master file parsed by hickory-proto, for everything that is not a wide
//! IP — addresses of the zone's own name servers (glue), MX, TXT, CAA, SRV,
//! CNAMEs, and delegations of child zones. The apex SOA and NS come from
//! `[server]`.

use std::collections::HashMap;
use std::path::Path;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

/// A zone-file problem: the line (1-based, 0 when unknown) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError {
    pub line: usize,
    pub message: String,
}

/// The static records, by lowercased owner name.
#[derive(Debug, Clone, Default)]
pub struct StaticZone {
    by_name: HashMap<Name, Vec<Record>>,
    /// Owners of NS records below the apex: zone cuts (delegations).
    cuts: Vec<Name>,
}

/// What the static data says about a name.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// At or below a zone cut: a referral with the child's NS records and
    /// the addresses of those of its name servers that lie in our zone.
    Delegation { ns: Vec<&'a Record>, glue: Vec<&'a Record> },
    /// The name holds a CNAME.
    Cname(&'a Record),
    /// The records of the type asked (empty: the name exists, no such data).
    Records(Vec<&'a Record>),
    /// No static data at this name.
    None,
}

impl StaticZone {
    /// Parses `text` (from `path`, for `$INCLUDE`) with `origin` as its default origin.
    pub fn parse(text: &str, path: &Path, origin: &Name) -> Result<StaticZone, ZoneError> {
        let parsed = Parser::new(text, Some(path.to_owned()), Some(origin.clone())).parse();
        let (_, sets) = parsed.map_err(|e| ZoneError { line: failing_line(text, path, origin), message: e.to_string() })?;
        let mut z = StaticZone::default();
        for (_, set) in sets {
            for r in set.records_without_rrsigs() {
                z.by_name.entry(r.name.to_lowercase()).or_default().push(r.clone());
            }
        }
        z.check(text, origin)?;
        Ok(z)
    }

    fn check(&mut self, text: &str, origin: &Name) -> Result<(), ZoneError> {
        let line_of = |name: &Name| {
            let label = name.iter().next().map(|l| String::from_utf8_lossy(l).to_lowercase()).unwrap_or_default();
            text.lines().position(|l| l.to_lowercase().starts_with(&label)).map(|i| i + 1).unwrap_or(0)
        };
        for (name, records) in &self.by_name {
            if !origin.zone_of(name) {
                return Err(ZoneError { line: line_of(name), message: format!("{name} is outside the zone {origin}") });
            }
            let has = |t: RecordType| records.iter().any(|r| r.record_type() == t);
            if name == origin && (has(RecordType::SOA) || has(RecordType::NS)) {
                return Err(ZoneError { line: line_of(name), message: "the apex SOA and NS come from [server] (zone, nameservers, soa); leave them out of the zone file".into() });
            }
            if has(RecordType::CNAME) && records.len() > 1 {
                return Err(ZoneError { line: line_of(name), message: format!("{name} has a CNAME and other data (RFC 1034 §3.6.2)") });
            }
            if name != origin && has(RecordType::NS) {
                self.cuts.push(name.clone());
            }
        }
        Ok(())
    }

    /// Owner names, lowercased.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.by_name.keys()
    }

    /// The zone cut at or above `name`, if it is delegated.
    pub fn cut_of(&self, name: &Name) -> Option<&Name> {
        let n = name.to_lowercase();
        self.cuts.iter().filter(|c| c.zone_of(&n)).max_by_key(|c| c.num_labels())
    }

    /// A and AAAA records of `name` that we hold (glue for a name server).
    pub fn addresses(&self, name: &Name) -> Vec<&Record> {
        self.by_name
            .get(&name.to_lowercase())
            .map(|v| v.iter().filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA)).collect())
            .unwrap_or_default()
    }

    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup<'_> {
        if let Some(cut) = self.cut_of(qname) {
            let ns: Vec<&Record> = self.by_name[cut].iter().filter(|r| r.record_type() == RecordType::NS).collect();
            let glue = ns
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NS(target) => Some(self.addresses(&target.0)),
                    _ => None,
                })
                .flatten()
                .collect();
            return Lookup::Delegation { ns, glue };
        }
        let Some(records) = self.by_name.get(&qname.to_lowercase()) else { return Lookup::None };
        if let Some(c) = records.iter().find(|r| r.record_type() == RecordType::CNAME) {
            if qtype != RecordType::CNAME {
                return Lookup::Cname(c);
            }
        }
        Lookup::Records(records.iter().filter(|r| qtype == RecordType::ANY || r.record_type() == qtype).collect())
    }

    /// True when static data exists strictly below `name` (an empty non-terminal).
    pub fn has_names_below(&self, name: &Name) -> bool {
        let n = name.to_lowercase();
        self.by_name.keys().any(|k| n.zone_of(k) && *k != n)
    }
}

/// The first line at which the file stops parsing: prefixes of the file
/// are parsed until one fails with a problem that is not merely its end
/// (an open parenthesis of a record spanning lines).
fn failing_line(text: &str, path: &Path, origin: &Name) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let mut open = 0i32;
    for k in 1..=lines.len() {
        open += lines[k - 1].matches('(').count() as i32 - lines[k - 1].matches(')').count() as i32;
        if open > 0 {
            continue; // inside a multi-line record: a cut here is no evidence
        }
        let prefix = lines[..k].join("\n");
        if Parser::new(prefix.as_str(), Some(path.to_owned()), Some(origin.clone())).parse().is_err() {
            return k;
        }
    }
    0
}
