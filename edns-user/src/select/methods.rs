//! Dynamic balancing methods over the VSs up, as pure functions of the pool
//! mask, the round-robin counter and the load figures. A method either
//! picks a pool position or says why it cannot (no data, no candidate), and
//! the wide IP's chain then tries the next one.

use edns_common::{nth_set_bit, round_robin_up, PoolMask, MAX_POOL};

use crate::metrics::{Figure, VsFigures};
use crate::model::{Method, QosWeights};
use crate::paths::PathFigures;

/// What a method sees of the pool.
pub struct Candidates<'a> {
    /// Pool positions up (marked and available).
    pub up: PoolMask,
    pub counter: u64,
    /// `weight` of each pool position.
    pub weights: &'a [u32],
    /// Figures of each pool position.
    pub figures: &'a [VsFigures],
    /// "sac/vs" of each pool position, for reasons.
    pub names: &'a [&'a str],
    /// The path from each position's SAC to the LDNS (`None`: unmeasured or stale).
    pub paths: &'a [Option<PathFigures>],
    pub qos: QosWeights,
}

fn positions(mask: PoolMask) -> impl Iterator<Item = usize> {
    (0..MAX_POOL).filter(move |p| mask & (1 << p) != 0)
}

/// Weighted round robin: the counter walks a cycle of total-weight slots.
fn ratio(c: &Candidates) -> Option<u32> {
    let total: u64 = positions(c.up).map(|p| c.weights[p] as u64).sum();
    if total == 0 {
        return None;
    }
    let mut slot = c.counter % total;
    for p in positions(c.up) {
        let w = c.weights[p] as u64;
        if slot < w {
            return Some(p as u32);
        }
        slot -= w;
    }
    None
}

/// The position whose `score` is best (`lower` = smaller wins); VSs up with
/// an unknown figure are left out, and the reason names them. Equal best
/// scores take turns by the counter.
fn best_by(c: &Candidates, what: &str, lower: bool, score: impl Fn(usize) -> Result<f64, String>) -> Result<u32, String> {
    let mut scored: Vec<(usize, f64)> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for p in positions(c.up) {
        match score(p) {
            Ok(v) => scored.push((p, v)),
            Err(why) => unknown.push(format!("{}: {why}", c.names[p])),
        }
    }
    let best = scored.iter().map(|(_, v)| *v).fold(None, |acc: Option<f64>, v| match acc {
        None => Some(v),
        Some(a) => Some(if (v < a) == lower && v != a { v } else { a }),
    });
    let Some(best) = best else {
        return Err(format!("no {what} for any VS up ({})", unknown.join("; ")));
    };
    let mut ties = 0u32;
    let mut mask: PoolMask = 0;
    for (p, v) in &scored {
        if *v == best {
            mask |= 1 << p;
            ties += 1;
        }
    }
    Ok(nth_set_bit(mask, (c.counter % ties as u64) as u32 + 1).expect("ties > 0"))
}

fn known(f: &Figure, what: &str) -> Result<f64, String> {
    match f {
        Figure::Known { value, .. } => Ok(*value),
        Figure::Unknown { reason } => Err(format!("{what} unknown: {reason}")),
        Figure::None => Err(format!("no {what} source")),
    }
}

/// Picks a pool position with `method`, or says why it cannot.
/// `c.up` must not be empty (the all-down policy answers that case).
pub fn pick(method: Method, c: &Candidates) -> Result<u32, String> {
    match method {
        Method::RoundRobin => round_robin_up(c.counter, c.up).ok_or_else(|| "no VS up".into()),
        Method::Ratio => ratio(c).ok_or_else(|| "no VS up".into()),
        Method::GlobalAvailability => positions(c.up).next().map(|p| p as u32).ok_or_else(|| "no VS up".into()),
        Method::LeastConnections => best_by(c, "connections", true, |p| known(&c.figures[p].connections, "connections")),
        Method::LowestPacketRate => best_by(c, "packet rate", true, |p| known(&c.figures[p].packet_rate, "packet rate")),
        Method::LowestCpu => best_by(c, "CPU", true, |p| known(&c.figures[p].cpu, "CPU")),
        Method::MostCapacity => best_by(c, "spare capacity", false, |p| {
            let f = &c.figures[p];
            Ok(known(&f.capacity, "capacity")? - known(&f.connections, "connections")?)
        }),
        Method::LowestRtt => best_by(c, "RTT", true, |p| path(c, p)?.rtt_ms.ok_or_else(|| "no successful probe".into())),
        Method::LowestLoss => best_by(c, "loss", true, |p| Ok(path(c, p)?.loss)),
        Method::FewestHops => best_by(c, "hops", true, |p| path(c, p)?.hops.map(f64::from).ok_or_else(|| "no hop count".into())),
        Method::QualityOfService => quality_of_service(c),
    }
}

fn path(c: &Candidates, p: usize) -> Result<PathFigures, String> {
    c.paths.get(p).copied().flatten().ok_or_else(|| "path unmeasured or stale".to_string())
}

/// The figures `quality_of_service` weighs, lower better, for position `p`:
/// RTT (ms), loss, hops, CPU, connections, packet rate, and spare capacity
/// turned into "used" (capacity − connections, negated).
fn qos_figures(c: &Candidates, p: usize) -> Result<[f64; 7], String> {
    let w = &c.qos;
    let need = |weight: f64, v: Result<f64, String>| if weight > 0.0 { v } else { Ok(0.0) };
    let f = &c.figures[p];
    let path = || path(c, p);
    Ok([
        need(w.rtt, path().and_then(|x| x.rtt_ms.ok_or_else(|| "no successful probe".into())))?,
        need(w.loss, path().map(|x| x.loss))?,
        need(w.hops, path().and_then(|x| x.hops.map(f64::from).ok_or_else(|| "no hop count".into())))?,
        need(w.cpu, known(&f.cpu, "CPU"))?,
        need(w.connections, known(&f.connections, "connections"))?,
        need(w.packet_rate, known(&f.packet_rate, "packet rate"))?,
        need(w.capacity, known(&f.capacity, "capacity").and_then(|k| Ok(-(k - known(&f.connections, "connections")?))))?,
    ])
}

/// `quality_of_service`: each weighted figure normalised over the VSs up
/// with every weighted figure known — min-max to 0..1, 0 the best — and
/// the weighted sum lowest wins.
fn quality_of_service(c: &Candidates) -> Result<u32, String> {
    let w = &c.qos;
    let weights = [w.rtt, w.loss, w.hops, w.cpu, w.connections, w.packet_rate, w.capacity];
    let figures: Vec<(usize, Result<[f64; 7], String>)> = positions(c.up).map(|p| (p, qos_figures(c, p))).collect();
    let known: Vec<(usize, [f64; 7])> = figures.iter().filter_map(|(p, f)| f.as_ref().ok().map(|f| (*p, *f))).collect();
    let (lo, hi) = known.iter().fold(([f64::INFINITY; 7], [f64::NEG_INFINITY; 7]), |(mut lo, mut hi), (_, f)| {
        for i in 0..7 {
            lo[i] = lo[i].min(f[i]);
            hi[i] = hi[i].max(f[i]);
        }
        (lo, hi)
    });
    let score = |f: &[f64; 7]| (0..7).map(|i| if hi[i] > lo[i] { weights[i] * (f[i] - lo[i]) / (hi[i] - lo[i]) } else { 0.0 }).sum::<f64>();
    best_by(c, "quality of service", true, |p| match figures.iter().find(|(q, _)| *q == p) {
        Some((_, Ok(f))) => Ok(score(f)),
        Some((_, Err(e))) => Err(e.clone()),
        None => Err("not up".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(v: Option<f64>) -> Figure {
        match v {
            Some(value) => Figure::Known { value, age_secs: 0.1 },
            None => Figure::Unknown { reason: "stale".into() },
        }
    }

    fn figs(conns: &[Option<f64>], cap: &[Option<f64>]) -> Vec<VsFigures> {
        conns
            .iter()
            .zip(cap)
            .map(|(c, k)| VsFigures { connections: fig(*c), packet_rate: Figure::None, cpu: fig(*c), capacity: fig(*k) })
            .collect()
    }

    fn names(n: usize) -> Vec<&'static str> {
        ["s/vs0", "s/vs1", "s/vs2"][..n].to_vec()
    }

    #[test]
    fn ratio_gives_each_vs_up_its_weight_in_every_cycle() {
        let (weights, f, n) = ([3, 1, 2], figs(&[None; 3], &[None; 3]), names(3));
        let mut count = [0; 3];
        for counter in 0..60 {
            let c = Candidates { up: 0b111, counter, weights: &weights, figures: &f, names: &n, paths: &[], qos: crate::model::PathConfig::default().qos };
            count[pick(Method::Ratio, &c).unwrap() as usize] += 1;
        }
        assert_eq!(count, [30, 10, 20]);
        let c = Candidates { up: 0b110, counter: 0, weights: &weights, figures: &f, names: &n, paths: &[], qos: crate::model::PathConfig::default().qos };
        let picks: Vec<u32> = (0..3).map(|k| pick(Method::Ratio, &Candidates { counter: k, ..c }).unwrap()).collect();
        assert_eq!(picks, [1, 2, 2], "down VSs take no share");
    }

    #[test]
    fn least_connections_skips_unknown_figures_and_fails_when_none_is_known() {
        let (w, n) = ([1, 1, 1], names(3));
        let f = figs(&[Some(50.0), None, Some(7.0)], &[None; 3]);
        let c = Candidates { up: 0b111, counter: 0, weights: &w, figures: &f, names: &n, paths: &[], qos: crate::model::PathConfig::default().qos };
        assert_eq!(pick(Method::LeastConnections, &c), Ok(2));
        let c = Candidates { up: 0b011, ..c };
        assert_eq!(pick(Method::LeastConnections, &c), Ok(0), "position 2 is down");
        let f = figs(&[None, None, None], &[None; 3]);
        let err = pick(Method::LeastConnections, &Candidates { figures: &f, ..c }).unwrap_err();
        assert!(err.contains("no connections for any VS up") && err.contains("s/vs0: connections unknown: stale"), "{err}");
    }

    #[test]
    fn equal_loads_take_turns() {
        let (w, n) = ([1, 1, 1], names(3));
        let f = figs(&[Some(5.0), Some(9.0), Some(5.0)], &[None; 3]);
        let picks: Vec<u32> = (0..4)
            .map(|k| pick(Method::LeastConnections, &Candidates { up: 0b111, counter: k, weights: &w, figures: &f, names: &n, paths: &[], qos: crate::model::PathConfig::default().qos }).unwrap())
            .collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }

    #[test]
    fn most_capacity_takes_the_largest_spare_and_global_availability_the_first_up() {
        let (w, n) = ([1, 1, 1], names(3));
        let f = figs(&[Some(90.0), Some(10.0), Some(0.0)], &[Some(100.0), Some(50.0), None]);
        let c = Candidates { up: 0b111, counter: 0, weights: &w, figures: &f, names: &n, paths: &[], qos: crate::model::PathConfig::default().qos };
        assert_eq!(pick(Method::MostCapacity, &c), Ok(1), "spare 10 vs 40; position 2 lacks capacity");
        assert_eq!(pick(Method::LowestCpu, &c), Ok(2));
        assert_eq!(pick(Method::GlobalAvailability, &Candidates { up: 0b110, ..c }), Ok(1));
    }
}
