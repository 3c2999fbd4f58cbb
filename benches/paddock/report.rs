//! Samples, their summaries, the goals they are held to, and the table.

use std::fmt::Write as _;
use std::time::Duration;

/// min, median and p95 of a set of samples.
#[derive(Clone, Copy)]
pub struct Stats {
    pub min: Duration,
    pub median: Duration,
    pub p95: Duration,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Self {
        assert!(!samples.is_empty(), "no samples");
        let mut sorted = samples.to_vec();
        sorted.sort();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Self {
            min: sorted[0],
            median: at(0.5),
            p95: at(0.95),
        }
    }
}

/// What a row measures, which decides how it is printed and what its ratio
/// means.
#[derive(Clone, Copy)]
pub enum Measured {
    /// Time per operation: the ratio is Paddock's p50 time over the
    /// floor's (below 1: Paddock is faster).
    Latency(Stats),
    /// Time to move `bytes`: shown as MiB/s, and the ratio is Paddock's
    /// median throughput over the floor's (above 1: Paddock moves more).
    Transfer { time: Stats, bytes: u64 },
    /// Requests per second over a stretch of time (more is better).
    Rate(f64),
    /// A resident memory size in bytes.
    Memory(u64),
    /// A number of things (more is better).
    Count(u64),
}

/// What a row is expected to reach.
#[derive(Clone, Copy)]
pub enum Goal {
    /// The floor's p50 over Paddock's p50 at least this much.
    FasterBy(f64),
    /// Paddock's p50 time at most this multiple of the floor's.
    TimeAtMost(f64),
    /// Paddock's throughput at least this fraction of the floor's.
    ThroughputAtLeast(f64),
    /// Paddock's p50 under this.
    MedianUnder(Duration),
    /// Paddock's p50 at most the floor's p50 plus this.
    WithinOf(Duration),
    /// Paddock's median throughput at least this many bytes per second.
    BytesPerSecondAtLeast(f64),
    /// At least this many requests per second.
    RateAtLeast(f64),
    /// Memory under this many bytes.
    MemoryUnder(u64),
    /// At least this many.
    CountAtLeast(u64),
}

pub struct Row {
    pub section: String,
    pub operation: String,
    pub paddock: Measured,
    /// What the floor is, and its measurement.
    pub floor: Option<(String, Measured)>,
    pub goal: Option<Goal>,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / f64::from(1 << 20)
}

fn describe(m: &Measured) -> String {
    match *m {
        Measured::Latency(s) => format!("{} (min {}, p95 {})", ms(s.median), ms(s.min), ms(s.p95)),
        // The fastest run is the smallest time; the p95 run the slowest.
        Measured::Transfer { time, bytes } => format!(
            "{:.0} MiB/s (best {:.0}, p95 {:.0})",
            mib_per_s(bytes, time.median),
            mib_per_s(bytes, time.min),
            mib_per_s(bytes, time.p95)
        ),
        Measured::Rate(r) => format!("{r:.0} req/s"),
        Measured::Memory(b) => size(b),
        Measured::Count(n) => n.to_string(),
    }
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

impl Row {
    /// Paddock over the floor as defined by the kind of measurement.
    pub fn ratio(&self) -> Option<f64> {
        let (_, floor) = self.floor.as_ref()?;
        Some(match (&self.paddock, floor) {
            (Measured::Latency(p), Measured::Latency(f)) => {
                p.median.as_secs_f64() / f.median.as_secs_f64()
            }
            (
                Measured::Transfer { time: p, bytes: pb },
                Measured::Transfer { time: f, bytes: fb },
            ) => mib_per_s(*pb, p.median) / mib_per_s(*fb, f.median),
            (Measured::Rate(p), Measured::Rate(f)) => p / f,
            (Measured::Memory(p), Measured::Memory(f)) => *p as f64 / *f as f64,
            _ => return None,
        })
    }

    fn ratio_text(&self) -> String {
        let Some(ratio) = self.ratio() else {
            return "—".to_owned();
        };
        match self.paddock {
            Measured::Latency(_) if ratio < 0.5 => {
                format!("{ratio:.3}× ({:.1}× faster)", 1.0 / ratio)
            }
            Measured::Latency(_) => format!("{ratio:.2}× the time"),
            Measured::Transfer { .. } => format!("{ratio:.2}× the throughput"),
            Measured::Rate(_) => format!("{ratio:.2}× the rate"),
            Measured::Memory(_) | Measured::Count(_) => format!("{ratio:.2}×"),
        }
    }

    /// Whether the goal is met, if there is one.
    pub fn met(&self) -> Option<bool> {
        let goal = self.goal?;
        Some(match (goal, self.paddock) {
            (Goal::FasterBy(x), _) => self.ratio().is_some_and(|r| 1.0 / r >= x),
            (Goal::TimeAtMost(x), _) => self.ratio().is_some_and(|r| r <= x),
            (Goal::ThroughputAtLeast(x), _) => self.ratio().is_some_and(|r| r >= x),
            (Goal::MedianUnder(limit), Measured::Latency(s)) => s.median < limit,
            (Goal::WithinOf(margin), Measured::Latency(s)) => match &self.floor {
                Some((_, Measured::Latency(floor))) => s.median <= floor.median + margin,
                _ => false,
            },
            (Goal::BytesPerSecondAtLeast(x), Measured::Transfer { time, bytes }) => {
                bytes as f64 / time.median.as_secs_f64() >= x
            }
            (Goal::RateAtLeast(x), Measured::Rate(r)) => r >= x,
            (Goal::MemoryUnder(x), Measured::Memory(b)) => b < x,
            (Goal::CountAtLeast(x), Measured::Count(n)) => n >= x,
            _ => false,
        })
    }

    fn goal_text(&self) -> String {
        let Some(goal) = self.goal else {
            return String::new();
        };
        let wanted = match goal {
            Goal::FasterBy(x) => format!("≥ {x:.0}× faster"),
            Goal::TimeAtMost(x) => format!("≤ {x:.2}× the time"),
            Goal::ThroughputAtLeast(x) => format!("≥ {x:.2}× the throughput"),
            Goal::MedianUnder(d) => format!("p50 < {}", ms(d)),
            Goal::WithinOf(d) => format!("p50 ≤ the floor's + {}", ms(d)),
            Goal::BytesPerSecondAtLeast(x) => format!("≥ {:.0} MB/s", x / 1e6),
            Goal::RateAtLeast(x) => format!("≥ {x:.0} req/s"),
            Goal::MemoryUnder(x) => format!("< {}", size(x)),
            Goal::CountAtLeast(x) => format!("≥ {x}"),
        };
        let verdict = if self.met() == Some(true) {
            "met"
        } else {
            "**missed**"
        };
        format!("{wanted}: {verdict}")
    }
}

/// The rows as a Markdown table, one section after another.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut section = "";
    for row in rows {
        if row.section != section {
            section = &row.section;
            let _ = writeln!(out, "\n**{section}**\n");
            let _ = writeln!(
                out,
                "| operation | Paddock p50 | floor | floor p50 | Paddock/floor | goal |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|");
        }
        let (floor_name, floor) = match &row.floor {
            Some((name, measured)) => (name.as_str(), describe(measured)),
            None => ("—", "—".to_owned()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.operation,
            describe(&row.paddock),
            floor_name,
            floor,
            row.ratio_text(),
            row.goal_text()
        );
    }
    out
}
