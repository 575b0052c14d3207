//! What edns exposes to Prometheus at `/metrics` on the control endpoint
//! (OpenMetrics text, prometheus-client): every scrape reads the live
//! counters and states into a fresh registry, so nothing here keeps state
//! of its own.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::control::Control;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rcode {
    rcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Transport {
    transport: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answer {
    wide_ip: String,
    mode: String,
    how: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Verdict {
    verdict: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Vs {
    vs: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Sac {
    sac: String,
}

fn counter_family<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static>(
    r: &mut Registry,
    name: &str,
    help: &str,
) -> Family<L, Counter> {
    let f = Family::<L, Counter>::default();
    r.register(name, help, f.clone());
    f
}

fn gauge_family<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static>(
    r: &mut Registry,
    name: &str,
    help: &str,
) -> Family<L, Gauge<f64, std::sync::atomic::AtomicU64>> {
    let f = Family::<L, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    r.register(name, help, f.clone());
    f
}

/// The OpenMetrics text of everything edns counts now.
pub fn render(c: &Control) -> anyhow::Result<String> {
    let mut r = Registry::with_prefix("edns");
    // A gauge of 1, not the OpenMetrics info type: Prometheus's own text
    // parser (promtool's) does not know that type.
    let build = gauge_family::<Version>(&mut r, "build_info", "Build information");
    build.get_or_create(&Version { version: env!("CARGO_PKG_VERSION").to_string() }).set(1.0);
    dns(&mut r, c);
    answers(&mut r, c);
    vs_states(&mut r, c);
    persistence(&mut r, c)?;
    if let Some(f) = &c.xdp_counters {
        xdp(&mut r, &f()?);
    }
    if let Some(p) = &c.paths {
        let fam = counter_family::<Sac>(&mut r, "path_probes", "Path probes sent to a site's blackbox exporter");
        let dropped = counter_family::<Sac>(&mut r, "path_probe_queue_drops", "Prefixes dropped from a site's full probe queue");
        for (sac, s) in p.stats() {
            fam.get_or_create(&Sac { sac: sac.clone() }).inc_by(s.sent.load(Ordering::Relaxed));
            dropped.get_or_create(&Sac { sac }).inc_by(s.dropped.load(Ordering::Relaxed));
        }
    }
    if let Some(o) = &c.ops {
        operations(&mut r, o);
    }
    if let Some(cl) = &c.cluster {
        let live: Gauge = Gauge::default();
        live.set(cl.live_nodes().len() as i64);
        r.register("cluster_live_nodes", "Live nodes of the cluster, this one included", live);
        let merged: Counter = Counter::default();
        merged.inc_by(cl.stats.merged_in.load(Ordering::Relaxed));
        r.register("cluster_records_merged", "Persistence records written here from peers' entries", merged);
        let published: Counter = Counter::default();
        published.inc_by(cl.stats.published.load(Ordering::Relaxed));
        r.register("cluster_records_published", "Persistence records this node published", published);
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r)?;
    Ok(out)
}

fn dns(r: &mut Registry, c: &Control) {
    let s = &c.responder.stats;
    let by_transport = counter_family::<Transport>(r, "dns_queries", "DNS queries received by the controller (userspace), by transport");
    by_transport.get_or_create(&Transport { transport: "udp".into() }).inc_by(s.udp_queries.load(Ordering::Relaxed));
    by_transport.get_or_create(&Transport { transport: "tcp".into() }).inc_by(s.tcp_queries.load(Ordering::Relaxed));
    let by_rcode = counter_family::<Rcode>(r, "dns_responses", "DNS responses of the controller, by rcode");
    for (rcode, n) in [
        ("noerror", &s.noerror),
        ("nxdomain", &s.nxdomain),
        ("refused", &s.refused),
        ("formerr", &s.formerr),
        ("notimp", &s.notimp),
        ("servfail", &s.servfail),
        ("badvers", &s.badvers),
    ] {
        by_rcode.get_or_create(&Rcode { rcode: rcode.into() }).inc_by(n.load(Ordering::Relaxed));
    }
    let truncated: Counter = Counter::default();
    truncated.inc_by(s.truncated.load(Ordering::Relaxed));
    r.register("dns_truncated_responses", "UDP responses sent with TC=1 (too large)", truncated);
}

fn answers(r: &mut Registry, c: &Control) {
    let fam = counter_family::<Answer>(r, "answers", "Wide IP answers of the controller, by mode and how the VS was chosen");
    let m = &c.responder.model;
    for (w, counts) in c.responder.selector.answer_counts() {
        let wide = &m.wide_ips[w];
        for (how, n) in counts {
            fam.get_or_create(&Answer { wide_ip: wide.name.to_string(), mode: wide.mode.name().into(), how: how.into() }).inc_by(n);
        }
    }
}

fn vs_states(r: &mut Registry, c: &Control) {
    let marked = gauge_family::<Vs>(r, "vs_marked_up", "1 when the VS is marked up (what the data plane sees)");
    let available = gauge_family::<Vs>(r, "vs_available", "1 when the VS is available");
    let latency = gauge_family::<Vs>(r, "vs_probe_latency_seconds", "Latency of the VS's last health probe");
    let m = &c.health.model;
    for (i, h) in c.health.snapshot().iter().enumerate() {
        let vs = Vs { vs: m.vss[i].name.clone() };
        let bits = h.bits();
        marked.get_or_create(&vs).set(f64::from(u8::from(bits & edns_common::VS_MARKED_UP != 0)));
        available.get_or_create(&vs).set(f64::from(u8::from(bits & edns_common::VS_AVAILABLE != 0)));
        if let Some(l) = &h.last {
            latency.get_or_create(&vs).set(l.latency.as_secs_f64());
        }
    }
}

fn persistence(r: &mut Registry, c: &Control) -> anyhow::Result<()> {
    let records: Gauge = Gauge::default();
    records.set(c.responder.selector.store.persist_list()?.len() as i64);
    r.register("persistence_records", "Persistence records held (the XDP map with a data plane)", records);
    let capacity: Gauge = Gauge::default();
    capacity.set(i64::from(c.responder.model.server.persistence_capacity));
    r.register("persistence_capacity", "Persistence records the table holds at most", capacity);
    Ok(())
}

/// Reloads by outcome, the last one's duration, and takeovers of a pinned data plane.
fn operations(r: &mut Registry, o: &crate::live::OpsStats) {
    let reloads = counter_family::<Outcome>(r, "config_reloads", "Config reloads (SIGHUP, ctl reload): ok, refused (bad config, or a change that needs a restart), failed");
    for (result, n) in [("ok", &o.reloads), ("refused", &o.reloads_refused), ("failed", &o.reloads_failed)] {
        reloads.get_or_create(&Outcome { result: result.into() }).inc_by(n.load(Ordering::Relaxed));
    }
    let dropped: Counter = Counter::default();
    dropped.inc_by(o.reload_dropped_records.load(Ordering::Relaxed));
    r.register("config_reload_dropped_records", "Persistence records reloads dropped (their wide IP or VS went)", dropped);
    let took: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    took.set(o.last_reload_ms.load(Ordering::Relaxed) as f64 / 1e3);
    r.register("config_last_reload_duration_seconds", "How long the last successful reload took", took);
    let takeovers: Counter = Counter::default();
    takeovers.inc_by(o.takeovers.load(Ordering::Relaxed));
    r.register("dataplane_takeovers", "Starts that took over an XDP data plane a previous run left pinned (a restart without an outage)", takeovers);
}

/// The data plane's counters: verdicts by reason, plus what answers carried.
fn xdp(r: &mut Registry, counters: &[(String, u64)]) {
    let verdicts = counter_family::<Verdict>(r, "xdp_verdicts", "XDP verdicts summed over CPUs: answered (XDP_TX), pass (up to the controller), drop; by reason");
    let extras = counter_family::<Verdict>(r, "xdp_answer_options", "XDP answers carrying a cookie (by the verdict on it) or a client subnet");
    let packets: Counter = Counter::default();
    for (name, n) in counters {
        let (verdict, reason) = name.split_once('_').unwrap_or((name.as_str(), ""));
        match verdict {
            "packets" => {
                packets.inc_by(*n);
            }
            "answered" | "pass" | "drop" => {
                verdicts.get_or_create(&Verdict { verdict: verdict.into(), reason: reason.into() }).inc_by(*n);
            }
            _ => {
                extras.get_or_create(&Verdict { verdict: verdict.into(), reason: reason.into() }).inc_by(*n);
            }
        }
    }
    r.register("xdp_packets", "Packets the XDP program saw, summed over CPUs", packets);
}

/// The same metrics in Prometheus's text format 0.0.4, for scrapers that
/// do not ask for OpenMetrics (and promtool): counter families are named
/// with their `_total` suffix, and there is no `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn prometheus_text_names_counter_families_with_total_and_drops_eof() {
        let om = "# HELP edns_x X.\n# TYPE edns_x counter\nedns_x_total 3\n# HELP edns_g G.\n# TYPE edns_g gauge\nedns_g 1\n# EOF\n";
        assert_eq!(
            super::to_prometheus_text(om),
            "# HELP edns_x_total X.\n# TYPE edns_x_total counter\nedns_x_total 3\n# HELP edns_g G.\n# TYPE edns_g gauge\nedns_g 1\n"
        );
    }
}
