//! Load figures of SACs and VSs, scraped from the Prometheus exporters
//! operators already run (HAProxy's built-in exporter, node_exporter, ...).
//!
//! Each exporter is scraped on its own schedule; every selector that names it
//! is evaluated right away (the sum of the matching series) and kept with the
//! scrape's time. Counters become rates over the last two scrapes; CPU is the
//! busy share of `node_cpu_seconds_total` over the last two scrapes. A figure
//! older than the exporter's `stale_after`, or whose series are missing, is
//! *unknown* (never zero), and says why.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_parse::{Sample, Scrape, Value};
use serde::{Deserialize, Serialize};

use crate::model::{CapacitySource, MetricSel, Model};

/// A load figure as the methods see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    Known { value: f64, age_secs: f64 },
    Unknown { reason: String },
    /// No source configured.
    None,
}

impl Figure {
    pub fn value(&self) -> Option<f64> {
        match self {
            Figure::Known { value, .. } => Some(*value),
            _ => None,
        }
    }
    pub fn why(&self) -> String {
        match self {
            Figure::Known { value, .. } => format!("{value}"),
            Figure::Unknown { reason } => reason.clone(),
            Figure::None => "no source configured".into(),
        }
    }
}

/// The four figures of one VS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VsFigures {
    pub connections: Figure,
    pub packet_rate: Figure,
    pub cpu: Figure,
    pub capacity: Figure,
}

/// Sums of one selector at one scrape: all matching series, and for CPU
/// also those in mode "idle".
#[derive(Debug, Clone, Copy)]
struct Reading {
    sum: f64,
    idle: f64,
    at: Instant,
}

#[derive(Debug, Clone, Default)]
struct Series {
    last: Option<Reading>,
    prev: Option<Reading>,
    /// Why the last scrape gave nothing for this selector.
    missing: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connections,
    PacketRate,
    Cpu,
    Capacity,
}

/// Last scrape of an exporter.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExporterStatus {
    pub name: String,
    pub url: String,
    pub last_ok_age_secs: Option<f64>,
    pub last_error: Option<String>,
    pub scrapes: u64,
    pub failures: u64,
}

pub struct Metrics {
    model: Arc<Model>,
    /// Per VS, per kind (index of [`Kind`]).
    series: Mutex<Vec<[Series; 4]>>,
    exporters: Mutex<Vec<(ExporterStatus, Option<Instant>)>>,
}

const KINDS: [Kind; 4] = [Kind::Connections, Kind::PacketRate, Kind::Cpu, Kind::Capacity];

fn selector(model: &Model, vs: usize, kind: Kind) -> Option<&MetricSel> {
    let m = &model.vss[vs].metrics;
    match kind {
        Kind::Connections => m.connections.as_ref(),
        Kind::PacketRate => m.packet_rate.as_ref(),
        Kind::Cpu => m.cpu.as_ref(),
        Kind::Capacity => match &m.capacity {
            Some(CapacitySource::Metric(s)) => Some(s),
            _ => None,
        },
    }
}

/// A sample's number, whatever its type (histograms and summaries: none).
pub(crate) fn sample_value(s: &Sample) -> Option<f64> {
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
        _ => None,
    }
}

/// Sum over the series of `sel` in a scrape; `None` when none matches.
fn read(scrape: &Scrape, sel: &MetricSel, at: Instant) -> Option<Reading> {
    let (mut sum, mut idle, mut n) = (0.0, 0.0, 0);
    for s in scrape.samples.iter().filter(|s| s.metric == sel.metric) {
        if !sel.labels.iter().all(|(k, v)| s.labels.get(k) == Some(v.as_str())) {
            continue;
        }
        let Some(v) = sample_value(s) else { continue };
        sum += v;
        if s.labels.get("mode") == Some("idle") {
            idle += v;
        }
        n += 1;
    }
    (n > 0).then_some(Reading { sum, idle, at })
}

impl Metrics {
    pub fn new(model: Arc<Model>) -> Metrics {
        let series = model.vss.iter().map(|_| Default::default()).collect();
        let exporters = model
            .exporters
            .iter()
            .map(|e| (ExporterStatus { name: e.name.clone(), url: e.url.clone(), ..Default::default() }, None))
            .collect();
        Metrics { model, series: Mutex::new(series), exporters: Mutex::new(exporters) }
    }

    /// Takes what `old` (an earlier config's) scraped from exporters this
    /// config has with the same URL, and the series of VSs whose sources
    /// read the same, by name: figures stay known across a reload.
    pub fn carry_from(&self, old: &Metrics) {
        let same_exporter = |new_ex: u32| {
            let e = &self.model.exporters[new_ex as usize];
            old.model.exporters.iter().position(|o| o.name == e.name && o.url == e.url).map(|i| i as u32)
        };
        {
            let before = old.exporters.lock().unwrap();
            let mut now = self.exporters.lock().unwrap();
            for (i, slot) in now.iter_mut().enumerate() {
                if let Some(j) = same_exporter(i as u32) {
                    *slot = before[j as usize].clone();
                }
            }
        }
        let before = old.series.lock().unwrap();
        let mut now = self.series.lock().unwrap();
        let by_name = old.model.vs_ids();
        for (i, v) in self.model.vss.iter().enumerate() {
            let Some(&j) = by_name.get(v.name.as_str()) else { continue };
            for (k, kind) in KINDS.iter().enumerate() {
                let (Some(a), Some(b)) = (selector(&self.model, i, *kind), selector(&old.model, j as usize, *kind)) else { continue };
                if same_exporter(a.exporter) == Some(b.exporter) && a.metric == b.metric && a.labels == b.labels {
                    now[i][k] = before[j as usize][k].clone();
                }
            }
        }
    }

    /// Takes one scrape of exporter `ex` (exposition text) taken at `at`.
    pub fn ingest(&self, ex: u32, text: &str, at: Instant) -> anyhow::Result<()> {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))?;
        let mut series = self.series.lock().unwrap();
        for (vs, per_kind) in series.iter_mut().enumerate() {
            for (k, kind) in KINDS.iter().enumerate() {
                let Some(sel) = selector(&self.model, vs, *kind).filter(|s| s.exporter == ex) else { continue };
                let s = &mut per_kind[k];
                match read(&scrape, sel, at) {
                    Some(r) => {
                        s.prev = s.last.replace(r);
                        s.missing = None;
                    }
                    None => {
                        s.prev = None;
                        s.last = None;
                        s.missing = Some(format!("no series {}{} in the last scrape", sel.metric, labels_text(sel)));
                    }
                }
            }
        }
        let mut e = self.exporters.lock().unwrap();
        e[ex as usize].0.scrapes += 1;
        e[ex as usize].0.last_error = None;
        e[ex as usize].1 = Some(at);
        Ok(())
    }

    /// Notes a failed scrape (the figures then age into staleness).
    pub fn scrape_failed(&self, ex: u32, error: String) {
        let mut e = self.exporters.lock().unwrap();
        e[ex as usize].0.failures += 1;
        e[ex as usize].0.last_error = Some(error);
    }

    pub fn exporters(&self) -> Vec<ExporterStatus> {
        let now = Instant::now();
        self.exporters
            .lock()
            .unwrap()
            .iter()
            .map(|(s, ok)| ExporterStatus { last_ok_age_secs: ok.map(|t| (now - t).as_secs_f64()), ..s.clone() })
            .collect()
    }

    fn figure(&self, s: &Series, sel: &MetricSel, kind: Kind, now: Instant) -> Figure {
        let ex = &self.model.exporters[sel.exporter as usize];
        let Some(last) = s.last else {
            let reason = s.missing.clone().unwrap_or_else(|| {
                let err = self.exporters.lock().unwrap()[sel.exporter as usize].0.last_error.clone();
                match err {
                    Some(e) => format!("exporter {:?} not scraped yet: {e}", ex.name),
                    None => format!("exporter {:?} not scraped yet", ex.name),
                }
            });
            return Figure::Unknown { reason };
        };
        let age = now.saturating_duration_since(last.at);
        if age > ex.stale_after {
            let err = self.exporters.lock().unwrap()[sel.exporter as usize].0.last_error.clone();
            let mut reason =
                format!("stale: exporter {:?} last scraped {:.1} s ago (stale_after {} ms)", ex.name, age.as_secs_f64(), ex.stale_after.as_millis());
            if let Some(e) = err {
                reason.push_str(&format!("; last error: {e}"));
            }
            return Figure::Unknown { reason };
        }
        let age_secs = age.as_secs_f64();
        let value = match kind {
            Kind::Connections | Kind::Capacity => last.sum,
            Kind::PacketRate | Kind::Cpu => {
                let Some(prev) = s.prev else {
                    return Figure::Unknown { reason: "a rate needs two scrapes; one so far".into() };
                };
                let dt = last.at.saturating_duration_since(prev.at).as_secs_f64();
                let (d_sum, d_idle) = (last.sum - prev.sum, last.idle - prev.idle);
                if dt <= 0.0 || d_sum < 0.0 || d_idle < 0.0 {
                    return Figure::Unknown { reason: "counter reset between the last two scrapes".into() };
                }
                if kind == Kind::PacketRate {
                    d_sum / dt
                } else if d_sum == 0.0 {
                    return Figure::Unknown { reason: "no CPU time passed between the last two scrapes".into() };
                } else {
                    1.0 - d_idle / d_sum
                }
            }
        };
        Figure::Known { value, age_secs }
    }

    /// The figures of one VS now.
    pub fn figures(&self, vs: u32) -> VsFigures {
        let now = Instant::now();
        let series = self.series.lock().unwrap();
        let per_kind = &series[vs as usize];
        let get = |k: usize| match selector(&self.model, vs as usize, KINDS[k]) {
            Some(sel) => self.figure(&per_kind[k], sel, KINDS[k], now),
            None => Figure::None,
        };
        let capacity = match &self.model.vss[vs as usize].metrics.capacity {
            Some(CapacitySource::Fixed(v)) => Figure::Known { value: *v, age_secs: 0.0 },
            _ => get(3),
        };
        VsFigures { connections: get(0), packet_rate: get(1), cpu: get(2), capacity }
    }
}

fn labels_text(sel: &MetricSel) -> String {
    if sel.labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = sel.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

/// Starts one scrape loop per exporter; the tasks end with the runtime.
pub fn spawn_scrapers(metrics: Arc<Metrics>, tasks: &crate::tasks::Tasks) -> anyhow::Result<()> {
    for (i, ex) in metrics.model.exporters.iter().enumerate() {
        let client = reqwest::Client::builder()
            .timeout(ex.timeout)
            .no_proxy()
            .use_rustls_tls()
            .build()?;
        let (ex, metrics) = (ex.clone(), metrics.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(ex.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let at = Instant::now();
                let r = async {
                    let resp = client.get(&ex.url).send().await?.error_for_status()?;
                    anyhow::Ok(resp.text().await?)
                }
                .await;
                match r.and_then(|text| metrics.ingest(i as u32, &text, at)) {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::debug!(exporter = %ex.name, error = %e, "scrape failed");
                        metrics.scrape_failed(i as u32, format!("{e:#}"));
                    }
                }
            }
        });
    }
    Ok(())
}
