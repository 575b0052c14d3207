//! A bounded fixed-rate DNS load from the client namespace
//! (`tests/fixtures/fixed_rate.py`), reported per kind of query.

use std::process::{Child, Stdio};

use crate::{workspace, VethHarness};

/// Starts `rate` q/s for `seconds` to 198.18.0.1:53, round-robin over
/// `pairs` of "SRC,NAME,KIND".
pub fn start(h: &VethHarness, pairs: &[String], rate: u32, seconds: u32) -> anyhow::Result<Child> {
    Ok(h.client
        .cmd("python3")
        .arg(workspace().join("tests/fixtures/fixed_rate.py"))
        .args(["--server", &h.server_ip.to_string(), "--port", "53", "--rate", &rate.to_string(), "--seconds", &seconds.to_string()])
        .args(pairs)
        .stdout(Stdio::piped())
        .spawn()?)
}

/// Per kind: sent, answered, unanswered, and when the unanswered were sent.
pub struct Report(pub serde_json::Value);

impl Report {
    pub fn wait(gen: Child) -> anyhow::Result<Report> {
        let out = gen.wait_with_output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(Report(v["kinds"].clone()))
    }
    pub fn sent(&self, kind: &str) -> u64 {
        self.0[kind]["sent"].as_u64().unwrap_or(0)
    }
    pub fn unanswered(&self, kind: &str) -> u64 {
        self.0[kind]["unanswered"].as_u64().unwrap_or(0)
    }
    /// Send times (s from the load's start) of the unanswered queries.
    pub fn unanswered_at(&self, kind: &str) -> Vec<f64> {
        self.0[kind]["unanswered_at"].as_array().map(|a| a.iter().filter_map(|t| t.as_f64()).collect()).unwrap_or_default()
    }
    /// One line per kind, for the log and assertion messages.
    pub fn summary(&self, kinds: &[&str]) -> String {
        kinds
            .iter()
            .map(|k| {
                let at = self.unanswered_at(k);
                let span = match (at.first(), at.last()) {
                    (Some(a), Some(b)) => format!(" (sent {a}-{b} s)"),
                    _ => String::new(),
                };
                format!("{k}: {} sent, {} unanswered{span}", self.sent(k), self.unanswered(k))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Stripe and persistence-hit queries from each LDNS, and one name XDP
/// passes up (NXDOMAIN from the controller).
pub fn stripe_hits_and_passed_up(ldns: &[std::net::IpAddr]) -> Vec<String> {
    let mut pairs: Vec<String> = Vec::new();
    for l in ldns {
        pairs.push(format!("{l},www.gslb.example.,stripe"));
        pairs.push(format!("{l},shop.gslb.example.,persistence_hit"));
    }
    pairs.push("198.18.0.2,nope.gslb.example.,passed_up".into());
    pairs
}
