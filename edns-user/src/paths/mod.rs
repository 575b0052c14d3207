//! Path metrics from each site: the patent's round-trip time, packet loss
//! and hops between a SAC and the LDNS, measured by the Prometheus blackbox
//! exporter an operator runs next to each site (`path_probe = { url,
//! module }` on the SAC): the controller asks it to probe an LDNS
//! (`/probe?target=LDNS&module=...`) and keeps, per (SAC, LDNS prefix), the
//! last `window` results:
//! - RTT: the median of the successful probes' round trips (the ICMP "rtt"
//!   phase, or the whole probe for other modules);
//! - loss: the share of failed probes in the window;
//! - hops: from the reply's hop limit (ICMP): the smallest standard initial
//!   value (32, 64, 128, 255) at or above it, minus it.
//!
//! Probing never holds up an answer: a query from an unmeasured LDNS is
//! answered at once by the next method of the chain, and its prefix is
//! queued for every SAC's prober, for a round of `probes_per_round` probes
//! (interleaved with other prefixes' rounds). Each prober probes at most
//! `max_probes_per_sec`, from a queue of at most `queue` prefixes that drops
//! the oldest (and counts them); a prefix is queued once, measured results
//! are kept for `ttl_secs`, and refreshed while LDNSes of the prefix keep
//! asking (queued again once half the TTL has passed).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Serialize;
use tokio::sync::Notify;

use crate::model::{Model, PathConfig};

/// Hops from a reply's hop limit: the smallest standard initial value at
/// or above it, minus it.
pub fn hops_from_hop_limit(observed: u8) -> u8 {
    let initial = [32u8, 64, 128, 255].into_iter().find(|i| *i >= observed).unwrap_or(255);
    initial - observed
}

/// One probe's result.
#[derive(Debug, Clone)]
pub struct Sample {
    pub ok: bool,
    pub rtt: Option<Duration>,
    pub hop_limit: Option<u8>,
    pub at: Instant,
}

/// What is known of one (SAC, prefix) path.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    pub samples: VecDeque<Sample>,
}

/// A path's figures for the methods.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct PathFigures {
    pub rtt_ms: Option<f64>,
    pub loss: f64,
    pub hops: Option<u8>,
    pub age_secs: f64,
    pub probes: usize,
}

impl Measurement {
    fn push(&mut self, s: Sample, window: usize) {
        self.samples.push_back(s);
        while self.samples.len() > window {
            self.samples.pop_front();
        }
    }

    pub fn figures(&self) -> Option<PathFigures> {
        let last = self.samples.back()?;
        let mut rtts: Vec<Duration> = self.samples.iter().filter(|s| s.ok).filter_map(|s| s.rtt).collect();
        rtts.sort_unstable();
        let rtt_ms = (!rtts.is_empty()).then(|| {
            let n = rtts.len();
            let mid = if n % 2 == 1 { rtts[n / 2] } else { (rtts[n / 2 - 1] + rtts[n / 2]) / 2 };
            mid.as_secs_f64() * 1e3
        });
        let failed = self.samples.iter().filter(|s| !s.ok).count();
        let hops = self.samples.iter().rev().filter(|s| s.ok).find_map(|s| s.hop_limit).map(hops_from_hop_limit);
        Some(PathFigures {
            rtt_ms,
            loss: failed as f64 / self.samples.len() as f64,
            hops,
            age_secs: last.at.elapsed().as_secs_f64(),
            probes: self.samples.len(),
        })
    }
}

/// Counters of one SAC's prober.
#[derive(Debug, Default, Serialize)]
pub struct ProberStats {
    pub queued: AtomicU64,
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
    /// Dropped from a full queue (the oldest first).
    pub dropped: AtomicU64,
}

/// One SAC's probe queue.
#[derive(Default)]
struct Queue {
    /// Prefix, the LDNS probed for it, probes left in this round.
    items: VecDeque<(IpNet, IpAddr, u32)>,
    queued: HashSet<IpNet>,
}

struct Prober {
    sac: u32,
    url: String,
    module: String,
    queue: Mutex<Queue>,
    wake: Notify,
    stats: ProberStats,
}

/// Path measurements and their probers.
pub struct Paths {
    model: Arc<Model>,
    cfg: PathConfig,
    probers: Vec<Prober>,
    table: Mutex<HashMap<(u32, IpNet), Measurement>>,
    /// In a cluster: figures measured by the node probing that SAC.
    remote: Mutex<HashMap<(u32, IpNet), (PathFigures, Instant)>>,
    sharing: std::sync::OnceLock<Sharing>,
}

/// Shared measurement (`[cluster]`): each SAC's paths are probed by one
/// node; the others ask it for prefixes and take its figures.
pub struct Sharing {
    /// This node probes the SAC's paths.
    pub probes_here: Box<dyn Fn(u32) -> bool + Send + Sync>,
    /// A prefix (and the LDNS to probe) wanted here, for the other probers.
    pub wanted: Box<dyn Fn(IpNet, IpAddr) + Send + Sync>,
    /// A measurement made here, for the other nodes.
    pub measured: Box<dyn Fn(u32, IpNet, PathFigures) + Send + Sync>,
}

impl Paths {
    pub fn new(model: Arc<Model>) -> Paths {
        let cfg = model.paths.clone();
        let probers = model
            .sacs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let p = s.path_probe.as_ref()?;
                Some(Prober { sac: i as u32, url: p.url.clone(), module: p.module.clone(), queue: Default::default(), wake: Notify::new(), stats: Default::default() })
            })
            .collect();
        Paths { model, cfg, probers, table: Mutex::new(HashMap::new()), remote: Mutex::new(HashMap::new()), sharing: std::sync::OnceLock::new() }
    }

    /// Takes the measurements of `old` (an earlier config's) for the SACs
    /// this config has, by name, when the prefix length is the same.
    pub fn carry_from(&self, old: &Paths) {
        if (old.cfg.prefix_v4, old.cfg.prefix_v6) != (self.cfg.prefix_v4, self.cfg.prefix_v6) {
            return;
        }
        let sac = |i: u32| self.model.sacs.iter().position(|s| s.name == old.model.sacs[i as usize].name).map(|j| j as u32);
        let mut t = self.table.lock().unwrap();
        for ((s, net), m) in old.table.lock().unwrap().iter() {
            if let Some(j) = sac(*s) {
                t.insert((j, *net), m.clone());
            }
        }
        let mut r = self.remote.lock().unwrap();
        for ((s, net), m) in old.remote.lock().unwrap().iter() {
            if let Some(j) = sac(*s) {
                r.insert((j, *net), *m);
            }
        }
    }

    /// Shares probing with a cluster.
    pub fn share(&self, s: Sharing) {
        let _ = self.sharing.set(s);
    }

    fn probes_here(&self, sac: u32) -> bool {
        self.sharing.get().is_none_or(|s| (s.probes_here)(sac))
    }

    /// A peer's figures for (SAC, prefix), `age` old.
    pub fn adopt(&self, sac: u32, prefix: IpNet, f: PathFigures, age: Duration) {
        let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        self.remote.lock().unwrap().insert((sac, prefix), (f, at));
    }

    /// The prefix an LDNS is measured by.
    pub fn prefix_of(&self, ldns: IpAddr) -> IpNet {
        let len = if ldns.is_ipv4() { self.cfg.prefix_v4 } else { self.cfg.prefix_v6 };
        IpNet::new(ldns, len).map(|n| n.trunc()).unwrap_or_else(|_| IpNet::from(ldns))
    }

    /// The figures of the path from `sac` to `ldns`, `None` when unmeasured
    /// or older than the TTL (unknown, never best or worst by accident).
    pub fn figures(&self, sac: u32, ldns: IpAddr) -> Option<PathFigures> {
        let f = self.figures_of((sac, self.prefix_of(ldns)))?;
        (f.age_secs <= self.cfg.ttl.as_secs_f64()).then_some(f)
    }

    /// The fresher of this node's measurement and the prober's, any age.
    fn figures_of(&self, key: (u32, IpNet)) -> Option<PathFigures> {
        let local = self.table.lock().unwrap().get(&key).and_then(|m| m.figures());
        let remote = self.remote.lock().unwrap().get(&key).map(|(f, at)| PathFigures { age_secs: at.elapsed().as_secs_f64(), ..*f });
        match (local, remote) {
            (Some(l), Some(r)) => Some(if r.age_secs < l.age_secs { r } else { l }),
            (l, r) => l.or(r),
        }
    }

    /// An LDNS asked for a wide IP balanced on paths: queue its prefix for
    /// every prober that has no fresh measurement of it (never blocks).
    pub fn want(&self, ldns: IpAddr) {
        self.want_from(ldns, true);
    }

    /// `want`, with `forward` false for a peer's want: queued only for the
    /// SACs probed here, never passed on.
    pub fn want_from(&self, ldns: IpAddr, forward: bool) {
        let ldns = crate::model::unmapped(ldns);
        let prefix = self.prefix_of(ldns);
        let mut asked_peers = false;
        for p in &self.probers {
            let age = self.figures(p.sac, ldns).map(|f| f.age_secs);
            if age.is_some_and(|a| a < self.cfg.ttl.as_secs_f64() / 2.0) {
                continue;
            }
            if !self.probes_here(p.sac) {
                // Another node probes this SAC: ask it, once per want.
                if let (false, true, Some(s)) = (asked_peers, forward, self.sharing.get()) {
                    (s.wanted)(prefix, ldns);
                    asked_peers = true;
                }
                continue;
            }
            let mut q = p.queue.lock().unwrap();
            if !q.queued.insert(prefix) {
                continue;
            }
            if q.items.len() >= self.cfg.queue {
                if let Some((old, _, _)) = q.items.pop_front() {
                    q.queued.remove(&old);
                    p.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            q.items.push_back((prefix, ldns, self.cfg.probes_per_round));
            p.stats.queued.fetch_add(1, Ordering::Relaxed);
            drop(q);
            p.wake.notify_one();
        }
    }

    /// Starts one prober task per SAC with a `path_probe`.
    pub fn spawn(self: &Arc<Self>, tasks: &crate::tasks::Tasks) -> anyhow::Result<()> {
        let client = reqwest::Client::builder().no_proxy().timeout(self.cfg.timeout).build()?;
        for i in 0..self.probers.len() {
            let (paths, client) = (self.clone(), client.clone());
            tasks.spawn(async move { paths.run_prober(i, client).await });
        }
        Ok(())
    }

    async fn run_prober(&self, i: usize, client: reqwest::Client) {
        let p = &self.probers[i];
        let gap = Duration::from_secs_f64(1.0 / self.cfg.max_probes_per_sec.max(1) as f64);
        loop {
            let next = p.queue.lock().unwrap().items.pop_front();
            let Some((prefix, target, left)) = next else {
                p.wake.notified().await;
                continue;
            };
            if !self.probes_here(p.sac) {
                // The SAC went to another node (membership changed).
                p.queue.lock().unwrap().queued.remove(&prefix);
                continue;
            }
            let started = Instant::now();
            p.stats.sent.fetch_add(1, Ordering::Relaxed);
            let sample = self.probe(p, &client, target).await;
            match &sample {
                Ok(s) if s.ok => p.stats.answered.fetch_add(1, Ordering::Relaxed),
                _ => p.stats.failed.fetch_add(1, Ordering::Relaxed),
            };
            // An exporter that cannot be asked tells nothing of the path.
            if let Ok(s) = sample {
                let f = {
                    let mut t = self.table.lock().unwrap();
                    let m = t.entry((p.sac, prefix)).or_default();
                    m.push(s, self.cfg.window);
                    m.figures()
                };
                if let (Some(f), Some(share)) = (f, self.sharing.get()) {
                    (share.measured)(p.sac, prefix, f);
                }
            }
            // A round is several probes (loss needs a share), interleaved
            // with other prefixes' rounds.
            {
                let mut q = p.queue.lock().unwrap();
                if left > 1 {
                    q.items.push_back((prefix, target, left - 1));
                } else {
                    q.queued.remove(&prefix);
                }
            }
            tokio::time::sleep(gap.saturating_sub(started.elapsed())).await;
        }
    }

    /// Asks the SAC's exporter to probe `target`.
    async fn probe(&self, p: &Prober, client: &reqwest::Client, target: IpAddr) -> anyhow::Result<Sample> {
        let resp = client.get(&p.url).query(&[("target", target.to_string()), ("module", p.module.clone())]).send().await?;
        anyhow::ensure!(resp.status().is_success(), "exporter answered {}", resp.status());
        let text = resp.text().await?;
        Ok(parse_probe(&text))
    }

    /// Measurements for `edns ctl paths`, optionally of one LDNS's prefix.
    pub fn view(&self, ldns: Option<IpAddr>) -> Vec<PathView> {
        let want = ldns.map(|l| self.prefix_of(crate::model::unmapped(l)));
        let mut keys: HashSet<(u32, IpNet)> = self.table.lock().unwrap().keys().copied().collect();
        keys.extend(self.remote.lock().unwrap().keys().copied());
        let mut out: Vec<PathView> = keys
            .into_iter()
            .filter(|(_, prefix)| want.is_none_or(|w| w == *prefix))
            .filter_map(|(sac, prefix)| {
                Some(PathView { sac: self.model.sacs[sac as usize].name.clone(), prefix: prefix.to_string(), figures: self.figures_of((sac, prefix))? })
            })
            .collect();
        out.sort_by(|a, b| (&a.prefix, &a.sac).cmp(&(&b.prefix, &b.sac)));
        out
    }

    /// Per SAC prober counters.
    pub fn stats(&self) -> Vec<(String, &ProberStats)> {
        self.probers.iter().map(|p| (self.model.sacs[p.sac as usize].name.clone(), &p.stats)).collect()
    }
}

/// One measured path, for `edns ctl paths`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct PathView {
    pub sac: String,
    pub prefix: String,
    pub figures: PathFigures,
}

/// A blackbox exporter `/probe` answer as a sample.
pub fn parse_probe(text: &str) -> Sample {
    let mut ok = false;
    let (mut rtt, mut total, mut hop_limit) = (None, None, None);
    let lines = text.lines().map(|l| Ok::<_, std::io::Error>(l.to_string()));
    if let Ok(scrape) = prometheus_parse::Scrape::parse(lines) {
        for s in &scrape.samples {
            let Some(v) = crate::metrics::sample_value(s) else { continue };
            match s.metric.as_str() {
                "probe_success" => ok = v == 1.0,
                "probe_duration_seconds" => total = Some(v),
                "probe_icmp_duration_seconds" if s.labels.get("phase") == Some("rtt") => rtt = Some(v),
                "probe_icmp_reply_hop_limit" if (1.0..=255.0).contains(&v) => hop_limit = Some(v as u8),
                _ => {}
            }
        }
    }
    let rtt = rtt.or(total).filter(|_| ok).map(Duration::from_secs_f64);
    Sample { ok, rtt, hop_limit: hop_limit.filter(|_| ok), at: Instant::now() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_count_down_from_the_nearest_standard_initial_hop_limit() {
        assert_eq!(hops_from_hop_limit(64), 0);
        assert_eq!(hops_from_hop_limit(61), 3);
        assert_eq!(hops_from_hop_limit(120), 8);
        assert_eq!(hops_from_hop_limit(250), 5);
        assert_eq!(hops_from_hop_limit(30), 2);
    }

    #[test]
    fn an_icmp_probe_answer_gives_rtt_and_hop_limit_and_a_failure_neither() {
        let ok = "probe_icmp_duration_seconds{phase=\"rtt\"} 0.0301\nprobe_icmp_reply_hop_limit 61\nprobe_duration_seconds 0.031\nprobe_success 1\n";
        let s = parse_probe(ok);
        assert!(s.ok);
        assert_eq!(s.rtt, Some(Duration::from_secs_f64(0.0301)));
        assert_eq!(s.hop_limit, Some(61));
        let s = parse_probe("probe_duration_seconds 2.0\nprobe_success 0\n");
        assert!(!s.ok && s.rtt.is_none() && s.hop_limit.is_none());
    }

    #[test]
    fn rtt_is_the_median_loss_the_failed_share_and_hops_the_latest() {
        let mut m = Measurement::default();
        let at = Instant::now();
        for (ok, ms, hl) in [(true, 30, 62), (false, 0, 0), (true, 10, 61), (true, 20, 61)] {
            m.push(Sample { ok, rtt: ok.then(|| Duration::from_millis(ms)), hop_limit: ok.then_some(hl), at }, 3);
        }
        let f = m.figures().unwrap();
        assert_eq!(f.probes, 3, "the window keeps the last 3");
        assert_eq!(f.rtt_ms, Some(15.0));
        assert!((f.loss - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(f.hops, Some(3));
    }
}
