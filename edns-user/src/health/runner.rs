//! The probe schedule: one task per monitored VS, jittered, with a global
//! bound on probes in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Semaphore;

use super::{probe, probe::http_client, Health, ProbeResult};
use crate::model::MonitorKind;

/// Most probes in flight at once, over all monitors.
pub const MAX_PROBES_IN_FLIGHT: usize = 256;

/// A delay of `d` ± 10%, so probes of many VSs do not fall in step.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.9..1.1))
}

/// Starts probing every VS that has a monitor; the tasks end with the runtime.
pub fn spawn_monitors(health: Arc<Health>, tasks: &crate::tasks::Tasks) -> anyhow::Result<usize> {
    let permits = Arc::new(Semaphore::new(MAX_PROBES_IN_FLIGHT));
    let mut n = 0;
    for (id, vs) in health.model.vss.iter().enumerate() {
        let (Some(m), Some(target)) = (vs.monitor, vs.target) else { continue };
        let mon = health.model.monitors[m as usize].clone();
        let client = match &mon.kind {
            MonitorKind::Http(check) => Some(http_client(check, target, mon.timeout)?),
            _ => None,
        };
        let (health, permits) = (health.clone(), permits.clone());
        tasks.spawn(async move {
            // The first probe soon after start, spread over a tenth of the interval.
            let first = mon.interval.mul_f64(rand::rng().random_range(0.0..0.1));
            tokio::time::sleep(first).await;
            loop {
                let started = Instant::now();
                // In a cluster one node probes each VS; the others hear its results.
                if !health.probes_here(id as u32) {
                    tokio::time::sleep(jittered(mon.interval)).await;
                    continue;
                }
                let r = {
                    let _permit = permits.acquire().await.expect("semaphore never closed");
                    let t0 = Instant::now();
                    let r = probe(&mon.kind, target, mon.timeout, client.as_ref()).await;
                    let latency = t0.elapsed();
                    let (ok, detail) = match r {
                        Ok(d) => (true, d),
                        Err(d) => (false, d),
                    };
                    ProbeResult { ok, latency, detail, at: Instant::now() }
                };
                if let Err(e) = health.record_probe(id as u32, r) {
                    tracing::error!(vs = %health.model.vss[id].name, error = %e, "cannot record probe result");
                }
                let next = jittered(mon.interval).saturating_sub(started.elapsed());
                tokio::time::sleep(next).await;
            }
        });
        n += 1;
    }
    Ok(n)
}
