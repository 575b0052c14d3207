//! Per-query latency at fixed rates: an open-loop client (`latency-probe`,
//! run inside the client namespace) sends queries on a schedule, times
//! each answer from its send, and reports percentiles. The driver runs it
//! against each server in interleaved rounds so drift hits all alike.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

/// What one probe run saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub sent: u64,
    pub answered: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// Sends `qps` queries a second for `seconds` to `server`, cycling over
/// `names`, and times each answer (matched by ID; an answer more than a
/// second late, or to an ID reused since, counts as lost).
pub fn probe(server: SocketAddr, qps: u64, seconds: u64, names: &[String]) -> anyhow::Result<Latency> {
    let sock = UdpSocket::bind(if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let rx = sock.try_clone()?;
    let epoch = Instant::now();
    // Send time (ns since epoch, +1 so 0 means none) by query ID.
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..65536).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (sent_at, done) = (sent_at.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let mut lat = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let Ok(n) = rx.recv(&mut buf) else { continue };
                let now = epoch.elapsed().as_nanos() as u64 + 1;
                if n < 12 {
                    continue;
                }
                let id = u16::from_be_bytes([buf[0], buf[1]]) as usize;
                let t = sent_at[id].swap(0, Ordering::Relaxed);
                if t != 0 && now - t < 1_000_000_000 {
                    lat.push(now - t);
                }
            }
            lat
        })
    };
    let queries: Vec<Vec<u8>> = names.iter().map(|n| edns_tests::packet::dns_query(0, true, n, 1, None)).collect();
    let total = qps * seconds;
    let interval = Duration::from_secs_f64(1.0 / qps as f64);
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let mut q = queries[i as usize % queries.len()].clone();
        let id = (i % 65536) as u16;
        q[..2].copy_from_slice(&id.to_be_bytes());
        sent_at[id as usize].store(epoch.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
        let _ = sock.send(&q);
    }
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let mut lat = receiver.join().map_err(|_| anyhow::anyhow!("receiver panicked"))?;
    lat.sort_unstable();
    Ok(Latency {
        sent: total,
        answered: lat.len() as u64,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        p999_us: percentile(&lat, 0.999),
    })
}

/// The probe as a command line (`xtask latency-probe`), for the namespace.
pub fn probe_main(server: SocketAddr, qps: u64, seconds: u64, names: &[String]) -> anyhow::Result<()> {
    // Wake-ups on time: the default 50 µs timer slack is the size of the gaps.
    // SAFETY: PR_SET_TIMERSLACK takes one integer and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64) };
    // Sender and receiver on one CPU, as a resolver's would be: a wake-up
    // across CPUs (an IPI, tens of µs on this VM) would be timed otherwise,
    // and land on some runs and not others.
    // SAFETY: a zeroed cpu_set_t with one bit set, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    let l = probe(server, qps, seconds, names)?;
    println!("{} {} {} {} {}", l.sent, l.answered, l.p50_us, l.p99_us, l.p999_us);
    Ok(())
}

/// Runs the probe inside `ns` and reads its one line back.
pub fn probe_in(ns: &edns_tests::Netns, server: SocketAddr, qps: u64, seconds: u64, names: &str) -> anyhow::Result<Latency> {
    let exe = std::env::current_exe()?;
    let out = ns
        .cmd(exe)
        .args(["latency-probe", "--server", &server.to_string(), "--qps", &qps.to_string(), "--seconds", &seconds.to_string(), "--names", names])
        .output()
        .context("cannot run the latency probe")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    anyhow::ensure!(v.len() == 5, "latency probe printed {text:?}, stderr {}", String::from_utf8_lossy(&out.stderr));
    Ok(Latency { sent: v[0] as u64, answered: v[1] as u64, p50_us: v[2], p99_us: v[3], p999_us: v[4] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<u64> = (1..=1000).map(|x| x * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 500.0);
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&v, 0.999), 999.0);
    }
}

/// Rates the table is measured at: moderate, far below every server's limit.
const RATES: [u64; 2] = [2_000, 20_000];

/// Section: latency percentiles of edns XDP, edns userspace and knotd XDP
/// on the veth harness, `rounds` interleaved rounds of `seconds` per rate.
pub fn table(rounds: usize, seconds: u64) -> anyhow::Result<()> {
    use crate::bench::Target;
    let targets = [Target::EdnsXdp, Target::EdnsUser, Target::KnotXdp];
    let mut got: Vec<Vec<Vec<Latency>>> = vec![vec![Vec::new(); RATES.len()]; targets.len()];
    for _ in 0..rounds {
        for (t, &target) in targets.iter().enumerate() {
            let h = edns_tests::VethHarness::new()?;
            let _s = crate::bench::start_server(target, &h)?;
            let server = SocketAddr::new(h.server_ip, 53);
            // Warm caches and ARP before timing.
            probe_in(&h.client, server, 1_000, 1, "www.gslb.example.,geo.gslb.example.")?;
            for (r, &qps) in RATES.iter().enumerate() {
                got[t][r].push(probe_in(&h.client, server, qps, seconds, "www.gslb.example.,geo.gslb.example.")?);
            }
        }
    }
    println!("Open loop: one client, names www (stripe) and geo (topology), each rate {seconds} s per round; median of {rounds} interleaved rounds (p50 range over rounds in brackets).\n");
    println!("| server | q/s | answered | p50 µs | p99 µs | p99.9 µs |\n| --- | --- | --- | --- | --- | --- |");
    let summary = |t: usize, r: usize, f: fn(&Latency) -> f64| crate::median(got[t][r].iter().map(f).collect());
    for (t, target) in targets.iter().enumerate() {
        for (r, qps) in RATES.iter().enumerate() {
            let runs = &got[t][r];
            let answered: u64 = runs.iter().map(|l| l.answered).sum();
            let sent: u64 = runs.iter().map(|l| l.sent).sum();
            let p50s: Vec<f64> = runs.iter().map(|l| l.p50_us).collect();
            let (lo, hi) = (p50s.iter().cloned().fold(f64::INFINITY, f64::min), p50s.iter().cloned().fold(0.0, f64::max));
            println!(
                "| {} | {qps} | {:.2}% | {:.1} [{lo:.1}–{hi:.1}] | {:.1} | {:.1} |",
                target.name(),
                100.0 * answered as f64 / sent as f64,
                summary(t, r, |l| l.p50_us),
                summary(t, r, |l| l.p99_us),
                summary(t, r, |l| l.p999_us)
            );
        }
    }
    println!("\n| ratio at q/s | p50 | p99 | p99.9 |\n| --- | --- | --- | --- |");
    for (r, qps) in RATES.iter().enumerate() {
        for (name, t) in [("edns XDP / knotd XDP", 0), ("edns userspace / knotd XDP", 1)] {
            let ratio = |f: fn(&Latency) -> f64| summary(t, r, f) / summary(2, r, f);
            println!("| {name} at {qps} | {:.2} | {:.2} | {:.2} |", ratio(|l| l.p50_us), ratio(|l| l.p99_us), ratio(|l| l.p999_us));
        }
    }
    Ok(())
}
