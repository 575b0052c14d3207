//! Persistence TTL by time of day: the patent's "at certain hours, the time
//! to live may be automatically increased". A dynamic wide IP may name
//! windows (days of the week, start and end in an IANA time zone), each
//! with its own persistence TTL; outside every window `persistence_ttl`
//! holds. The TTL in force applies to new records and to the timeliness
//! of existing ones, in both paths: a task re-evaluates the schedules every
//! second and, at a window edge, rewrites the wide IP's entry in the data
//! plane, which reads the TTL from there.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::model::{ModeConfig, Model, WideIp};

/// One window: on `days` (Monday first) from `start` to `end`, seconds of
/// the day in `time_zone`. An `end` at or before `start` runs past
/// midnight into the next day (the window belongs to the day it starts).
#[derive(Debug, Clone)]
pub struct Window {
    pub days: [bool; 7],
    pub start: u32,
    pub end: u32,
    pub time_zone: TimeZone,
    /// The zone's IANA name, as configured (for display).
    pub zone_name: String,
    pub ttl: u32,
}

impl Window {
    /// True when `t` falls in the window (start included, end excluded).
    pub fn contains(&self, t: Timestamp) -> bool {
        let z = t.to_zoned(self.time_zone.clone());
        let day = z.weekday().to_monday_zero_offset() as usize;
        let second = z.hour() as u32 * 3600 + z.minute() as u32 * 60 + z.second() as u32;
        if self.start < self.end {
            self.days[day] && (self.start..self.end).contains(&second)
        } else {
            (self.days[day] && second >= self.start) || (self.days[(day + 6) % 7] && second < self.end)
        }
    }
}

/// A wide IP's windows, in config order: the first that holds wins.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    pub windows: Vec<Window>,
}

impl Schedule {
    /// The persistence TTL in force at `t`: the first window holding it, or `default`.
    pub fn ttl_at(&self, default: u32, t: Timestamp) -> u32 {
        self.windows.iter().find(|w| w.contains(t)).map_or(default, |w| w.ttl)
    }
}

/// The wall clock schedules read; `edns run --clock-start` shifts it (to
/// test a schedule without waiting for the hour).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// A clock that reads `start` now and runs at the normal rate.
pub fn clock_starting_at(start: Timestamp) -> Clock {
    let offset = start.duration_since(Timestamp::now());
    Arc::new(move || Timestamp::now().checked_add(offset).unwrap_or(start))
}

/// The persistence TTL in force per wide IP (0 for modes without
/// persistence), shared by the selector and the schedule task.
pub struct PersistenceTtls {
    ttls: Vec<AtomicU32>,
}

impl PersistenceTtls {
    pub fn new(model: &Model, now: Timestamp) -> PersistenceTtls {
        PersistenceTtls { ttls: model.wide_ips.iter().map(|w| AtomicU32::new(ttl_in_force(w, now))).collect() }
    }

    pub fn get(&self, wide_ip: u32) -> u32 {
        self.ttls.get(wide_ip as usize).map_or(0, |t| t.load(Ordering::Relaxed))
    }

    /// Re-evaluates every schedule at `now`; returns the wide IPs whose
    /// TTL changed, with the old and the new TTL.
    pub fn update(&self, model: &Model, now: Timestamp) -> Vec<(u32, u32, u32)> {
        let mut changed = Vec::new();
        for w in model.wide_ips.iter().filter(|w| !w.schedule.windows.is_empty()) {
            let new = ttl_in_force(w, now);
            let old = self.ttls[w.id as usize].swap(new, Ordering::Relaxed);
            if old != new {
                changed.push((w.id, old, new));
            }
        }
        changed
    }
}

fn ttl_in_force(w: &WideIp, now: Timestamp) -> u32 {
    match &w.mode {
        ModeConfig::Dynamic { persistence_ttl, .. } => w.schedule.ttl_at(*persistence_ttl, now),
        _ => 0,
    }
}

/// What follows a TTL change: the data plane's copy of the wide IP.
pub type TtlSink = Box<dyn Fn(&WideIp, u32) + Send + Sync>;

/// Brings the TTLs to `clock()` now (call before serving, so the data
/// plane starts with the TTL in force), then re-evaluates at every second's
/// edge, logging each change and passing it to `sink`.
pub fn spawn(model: Arc<Model>, ttls: Arc<PersistenceTtls>, clock: Clock, sink: TtlSink, tasks: &crate::tasks::Tasks) {
    if model.wide_ips.iter().all(|w| w.schedule.windows.is_empty()) {
        return;
    }
    let sink = Arc::new(sink);
    let (t, k) = (ttls.clone(), sink.clone());
    let apply = move |model: &Model, now: Timestamp| {
        for (id, old, new) in t.update(model, now) {
            let w = &model.wide_ips[id as usize];
            tracing::info!(wide_ip = %w.name, old, new, at = %now, "persistence TTL changed with the schedule");
            k(w, new);
        }
    };
    apply(&model, clock());
    for w in model.wide_ips.iter().filter(|w| !w.schedule.windows.is_empty()) {
        // The data plane was filled with the default TTL: the one in force now.
        let ttl = ttls.get(w.id);
        sink(w, ttl);
        tracing::info!(wide_ip = %w.name, windows = w.schedule.windows.len(), ttl, "persistence TTL schedule");
    }
    tasks.spawn(async move {
        loop {
            let nanos = Timestamp::now().subsec_nanosecond() as u64;
            tokio::time::sleep(Duration::from_nanos(1_000_000_000 - nanos)).await;
            apply(&model, clock());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[usize], start: &str, end: &str, zone: &str, ttl: u32) -> Window {
        let secs = |s: &str| {
            let (h, m) = s.split_once(':').unwrap();
            h.parse::<u32>().unwrap() * 3600 + m.parse::<u32>().unwrap() * 60
        };
        let mut d = [false; 7];
        for i in days {
            d[*i] = true;
        }
        Window { days: d, start: secs(start), end: secs(end), time_zone: TimeZone::get(zone).unwrap(), zone_name: zone.into(), ttl }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_weekday_window_holds_from_its_start_to_just_before_its_end_in_its_zone() {
        let s = Schedule { windows: vec![window(&[0, 1, 2, 3, 4], "08:00", "18:00", "Europe/Berlin", 3600)] };
        // Monday 30 November 2026; Berlin is UTC+1 in winter.
        assert_eq!(s.ttl_at(60, at("2026-11-30T06:59:59Z")), 60);
        assert_eq!(s.ttl_at(60, at("2026-11-30T07:00:00Z")), 3600);
        assert_eq!(s.ttl_at(60, at("2026-11-30T16:59:59Z")), 3600);
        assert_eq!(s.ttl_at(60, at("2026-11-30T17:00:00Z")), 60);
        // Saturday: not a listed day.
        assert_eq!(s.ttl_at(60, at("2026-12-05T10:00:00Z")), 60);
        // Summer time moves the edge an hour in UTC (UTC+2).
        assert_eq!(s.ttl_at(60, at("2026-07-06T06:00:00Z")), 3600);
        assert_eq!(s.ttl_at(60, at("2026-07-06T05:59:59Z")), 60);
    }

    #[test]
    fn an_overnight_window_belongs_to_the_day_it_starts_and_the_first_window_wins() {
        let s = Schedule {
            windows: vec![window(&[4], "22:00", "06:00", "UTC", 7200), window(&[0, 1, 2, 3, 4, 5, 6], "00:00", "24:00", "UTC", 300)],
        };
        // Friday 4 December 2026 22:00 to Saturday 06:00: the first window.
        assert_eq!(s.ttl_at(60, at("2026-12-04T21:59:59Z")), 300);
        assert_eq!(s.ttl_at(60, at("2026-12-04T22:00:00Z")), 7200);
        assert_eq!(s.ttl_at(60, at("2026-12-05T05:59:59Z")), 7200);
        assert_eq!(s.ttl_at(60, at("2026-12-05T06:00:00Z")), 300);
        // Thursday night is not Friday's.
        assert_eq!(s.ttl_at(60, at("2026-12-03T23:00:00Z")), 300);
    }
}
