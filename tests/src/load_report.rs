//! The load run's figures: latency percentiles and throughput per operation, error classes,
//! the consistency verdict, and cupd's memory (VmRSS sampled every second) with its slope
//! after warm-up; rendered as JSON and as Markdown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::load::{LoadConfig, LoadError, Op};
use crate::load_client::{ClientTally, Target, Violation, ViolationKind, WINDOW};
use crate::load_verify::Verification;

/// Samples `VmRSS` of a process every second on its own thread.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

/// `VmRSS` of `pid` in KiB.
pub fn rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no VmRSS line"))
}

impl RssSampler {
    /// Starts sampling; fails at once if the process cannot be read.
    pub fn start(pid: u32) -> Result<RssSampler, LoadError> {
        let first = rss_kib(pid).map_err(|source| LoadError::Pid { pid, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut samples = vec![(0.0, first)];
            let mut next = Duration::from_secs(1);
            while !stopping.load(Ordering::Relaxed) {
                if t0.elapsed() < next {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                // A process that went away ends the series (the report shows where).
                let Ok(kib) = rss_kib(pid) else { break };
                samples.push((t0.elapsed().as_secs_f64(), kib));
                next += Duration::from_secs(1);
            }
            samples
        });
        Ok(RssSampler { stop, thread })
    }

    /// Stops sampling and summarises.
    pub fn finish(self, warmup: Duration) -> RssSummary {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        RssSummary::new(samples, warmup.as_secs_f64())
    }
}

/// cupd's memory over the run.
#[derive(Debug, Clone)]
pub struct RssSummary {
    pub samples: Vec<(f64, u64)>,
    pub warmup_s: f64,
    pub start_kib: u64,
    pub max_kib: u64,
    pub end_kib: u64,
    /// Least-squares slope of the samples after warm-up, MiB per minute.
    pub slope_mib_per_min: Option<f64>,
    /// RSS at the end of warm-up (the first sample after it).
    pub after_warmup_kib: Option<u64>,
}

impl RssSummary {
    pub fn new(samples: Vec<(f64, u64)>, warmup_s: f64) -> RssSummary {
        let kib = |s: Option<&(f64, u64)>| s.map_or(0, |s| s.1);
        let late: Vec<(f64, u64)> = samples
            .iter()
            .copied()
            .filter(|s| s.0 >= warmup_s)
            .collect();
        RssSummary {
            start_kib: kib(samples.first()),
            max_kib: samples.iter().map(|s| s.1).max().unwrap_or(0),
            end_kib: kib(samples.last()),
            slope_mib_per_min: slope(&late).map(|kib_per_s| kib_per_s * 60.0 / 1024.0),
            after_warmup_kib: late.first().map(|s| s.1),
            warmup_s,
            samples,
        }
    }
}

/// Least-squares slope (units per second); `None` with fewer than 3 points.
fn slope(points: &[(f64, u64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let cov: f64 = points
        .iter()
        .map(|p| (p.0 - mean_t) * (p.1 as f64 - mean_y))
        .sum();
    let var: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    (var > 0.0).then(|| cov / var)
}

/// Latency figures of one operation, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct OpStats {
    pub requests: u64,
    pub ok: u64,
    pub unexpected: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub per_second: f64,
}

impl OpStats {
    fn new(mut micros: Vec<u32>, ok: u64, unexpected: u64, seconds: f64) -> OpStats {
        micros.sort_unstable();
        let at = |q: f64| -> f64 {
            if micros.is_empty() {
                return 0.0;
            }
            let rank = ((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
            f64::from(micros[rank - 1]) / 1000.0
        };
        let requests = ok + unexpected;
        OpStats {
            requests,
            ok,
            unexpected,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
            per_second: requests as f64 / seconds.max(f64::EPSILON),
        }
    }
}

/// Everything a run produced.
#[derive(Debug)]
pub struct Report {
    pub config: Value,
    pub elapsed: Duration,
    pub ops: Vec<(Op, OpStats)>,
    pub total_per_second: f64,
    pub acknowledged_writes: u64,
    pub expected: BTreeMap<String, u64>,
    pub unexpected: BTreeMap<String, u64>,
    /// Violations by kind (`ViolationKind as usize`), during the run and at the end.
    pub violation_counts: [u64; 3],
    /// The first few, in full.
    pub violations: Vec<Violation>,
    pub verification: Verification,
    pub rss: Option<RssSummary>,
    /// Answers per op in each 10 s window (the last one holds the drain after the end).
    pub windows: Vec<[u32; 4]>,
}

impl Report {
    pub fn new(
        config: &LoadConfig,
        target: &Target,
        elapsed: Duration,
        tallies: &[ClientTally],
        verification: Verification,
        rss: Option<RssSummary>,
    ) -> Report {
        let seconds = elapsed.as_secs_f64();
        let mut expected = BTreeMap::new();
        let mut unexpected = BTreeMap::new();
        for tally in tallies {
            merge(&mut expected, &tally.expected);
            merge(&mut unexpected, &tally.unexpected);
        }
        let ops: Vec<(Op, OpStats)> = Op::ALL
            .into_iter()
            .map(|op| (op, op_stats(op, tallies, &unexpected, seconds)))
            .collect();
        let total: u64 = ops.iter().map(|(_, s)| s.requests).sum();
        let mut violation_counts = [0u64; 3];
        for tally in tallies {
            for (count, more) in violation_counts.iter_mut().zip(tally.violation_counts) {
                *count += more;
            }
        }
        for v in &verification.violations {
            violation_counts[v.kind as usize] += 1;
        }
        let violations: Vec<Violation> = tallies
            .iter()
            .flat_map(|t| t.violations.iter())
            .chain(&verification.violations)
            .take(20)
            .cloned()
            .collect();
        Report {
            config: config_json(config, target),
            elapsed,
            ops,
            total_per_second: total as f64 / seconds.max(f64::EPSILON),
            acknowledged_writes: tallies.iter().map(|t| t.acknowledged_writes).sum(),
            expected,
            unexpected,
            violation_counts,
            violations,
            verification,
            rss,
            windows: merge_windows(tallies),
        }
    }

    pub fn unexpected_errors(&self) -> u64 {
        self.unexpected.values().sum::<u64>() + self.verification.errors.len() as u64
    }

    pub fn count(&self, kind: ViolationKind) -> u64 {
        self.violation_counts[kind as usize]
    }

    pub fn violation_total(&self) -> u64 {
        self.violation_counts.iter().sum()
    }

    /// No unexpected error and no lost, mixed or unacknowledged write.
    pub fn passed(&self) -> bool {
        self.unexpected_errors() == 0 && self.violation_total() == 0
    }

    pub fn to_json(&self) -> Value {
        let ops: serde_json::Map<String, Value> = self
            .ops
            .iter()
            .map(|(op, s)| {
                let figures = json!({"requests": s.requests, "ok": s.ok, "unexpected": s.unexpected,
                    "p50_ms": s.p50, "p90_ms": s.p90, "p99_ms": s.p99, "p99_9_ms": s.p999,
                    "max_ms": s.max, "per_second": s.per_second});
                (op.name().to_owned(), figures)
            })
            .collect();
        let v = &self.verification;
        json!({
            "passed": self.passed(),
            "config": self.config,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput_per_second": self.total_per_second,
            "ops": ops,
            "acknowledged_writes": self.acknowledged_writes,
            "window_s": WINDOW.as_secs(),
            "answers_per_window": self.windows,
            "expected_errors": self.expected,
            "unexpected_errors": self.unexpected,
            "unexpected_error_count": self.unexpected_errors(),
            "violations": {
                "lost": self.count(ViolationKind::Lost),
                "mixed": self.count(ViolationKind::Mixed),
                "unacknowledged": self.count(ViolationKind::Unacknowledged),
                "first": self.violations.iter().take(20).map(|x| format!("{} ({}, {})", x.detail, x.kind.name(), x.when)).collect::<Vec<_>>(),
            },
            "verification": {
                "names_checked": v.names_checked, "present": v.present, "absent": v.absent,
                "uncertain": v.uncertain, "proposals_checked": v.proposals_checked,
                "changed_paths": v.changed_paths, "base_unchanged": v.base_unchanged,
                "errors": v.errors,
            },
            "rss": self.rss.as_ref().map(|r| json!({
                "start_kib": r.start_kib, "max_kib": r.max_kib, "end_kib": r.end_kib,
                "after_warmup_kib": r.after_warmup_kib, "warmup_s": r.warmup_s,
                "slope_mib_per_min": r.slope_mib_per_min, "samples": r.samples.len(),
                "series_kib": r.samples.iter().map(|s| s.1).collect::<Vec<_>>(),
            })),
        })
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let c = &self.config;
        md.push_str(&format!(
            "**{}** source, {} clients × {} names, mix {}, {} for {:.1} s (asked {}), seed {}\n\n",
            c["source"].as_str().unwrap_or("?"),
            c["clients"],
            c["names_per_client"],
            c["mix"].as_str().unwrap_or("?"),
            c["target"].as_str().unwrap_or("?"),
            self.elapsed.as_secs_f64(),
            c["duration"].as_str().unwrap_or("?"),
            c["seed"],
        ));
        md.push_str(&self.ops_table());
        md.push_str(&self.windows_text());
        md.push_str(&self.outcome_text());
        md.push_str(&self.errors_table());
        md.push_str(&self.rss_text());
        md
    }

    fn ops_table(&self) -> String {
        let mut md = String::from(
            "| op | requests | ok | unexpected | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | per s |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (op, s) in &self.ops {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |\n",
                op.name(),
                s.requests,
                s.ok,
                s.unexpected,
                s.p50,
                s.p90,
                s.p99,
                s.p999,
                s.max,
                s.per_second
            ));
        }
        let total: u64 = self.ops.iter().map(|(_, s)| s.requests).sum();
        md.push_str(&format!(
            "| all | {total} | | | | | | | | {:.1} |\n\n",
            self.total_per_second
        ));
        md
    }

    /// Reads and writes per second in each window: does throughput hold over the run?
    fn windows_text(&self) -> String {
        let seconds = WINDOW.as_secs_f64();
        let rates: Vec<String> = self
            .windows
            .iter()
            .map(|w| {
                let reads = w[Op::Get.index()] + w[Op::List.index()];
                let writes = w[Op::Put.index()] + w[Op::Delete.index()];
                format!(
                    "{:.0}/{:.0}",
                    f64::from(reads) / seconds,
                    f64::from(writes) / seconds
                )
            })
            .collect();
        format!(
            "Reads/writes answered per second, by {} s window (the last one is partial): {}\n\n",
            WINDOW.as_secs(),
            rates.join(", ")
        )
    }

    fn outcome_text(&self) -> String {
        let v = &self.verification;
        let mut md = format!(
            "**{}**: {} unexpected errors; {} lost, {} mixed, {} unacknowledged writes. \
             {} writes acknowledged; final check: {} names ({} present, {} absent, {} uncertain)",
            if self.passed() { "PASS" } else { "FAIL" },
            self.unexpected_errors(),
            self.count(ViolationKind::Lost),
            self.count(ViolationKind::Mixed),
            self.count(ViolationKind::Unacknowledged),
            self.acknowledged_writes,
            v.names_checked,
            v.present,
            v.absent,
            v.uncertain,
        );
        if let Some(unchanged) = v.base_unchanged {
            let paths: Vec<String> = v
                .changed_paths
                .iter()
                .map(|(p, n)| format!("{p} ×{n}"))
                .collect();
            md.push_str(&format!(
                "; {} proposal branches checked (files changed: {}); base branch {}",
                v.proposals_checked,
                if paths.is_empty() {
                    "none".to_owned()
                } else {
                    paths.join(", ")
                },
                if unchanged { "unchanged" } else { "MOVED" }
            ));
        }
        md.push_str(".\n\n");
        for x in self.violations.iter().take(20) {
            md.push_str(&format!("- {} ({}, {})\n", x.detail, x.kind.name(), x.when));
        }
        for e in v.errors.iter().take(20) {
            md.push_str(&format!("- final check request failed: {e}\n"));
        }
        md
    }

    fn errors_table(&self) -> String {
        if self.expected.is_empty() && self.unexpected.is_empty() {
            return String::new();
        }
        let mut md = String::from("| error class | count | expected |\n|---|---:|---|\n");
        for (class, n) in &self.expected {
            md.push_str(&format!("| {} | {n} | yes |\n", class.replace('|', "\\|")));
        }
        for (class, n) in &self.unexpected {
            md.push_str(&format!(
                "| {} | {n} | **no** |\n",
                class.replace('|', "\\|")
            ));
        }
        md.push('\n');
        md
    }

    fn rss_text(&self) -> String {
        let Some(r) = &self.rss else {
            return "cupd RSS: not sampled (no --pid).\n".to_owned();
        };
        let mib = |k: u64| k as f64 / 1024.0;
        let slope = r
            .slope_mib_per_min
            .map_or("n/a (too few samples after warm-up)".to_owned(), |s| {
                format!("{s:+.2} MiB/min")
            });
        format!(
            "cupd RSS (VmRSS, {} samples at 1 s): start {:.1} MiB, after {:.0} s warm-up {}, max {:.1} MiB, end {:.1} MiB; slope after warm-up {slope}.\n",
            r.samples.len(),
            mib(r.start_kib),
            r.warmup_s,
            r.after_warmup_kib
                .map_or("n/a".to_owned(), |k| format!("{:.1} MiB", mib(k))),
            mib(r.max_kib),
            mib(r.end_kib),
        )
    }
}

fn merge_windows(tallies: &[ClientTally]) -> Vec<[u32; 4]> {
    let mut all: Vec<[u32; 4]> = Vec::new();
    for tally in tallies {
        if all.len() < tally.windows.len() {
            all.resize(tally.windows.len(), [0; 4]);
        }
        for (sum, window) in all.iter_mut().zip(&tally.windows) {
            for (s, w) in sum.iter_mut().zip(window) {
                *s += w;
            }
        }
    }
    all
}

fn merge(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (class, n) in from {
        *into.entry(class.clone()).or_default() += n;
    }
}

fn op_stats(
    op: Op,
    tallies: &[ClientTally],
    unexpected: &BTreeMap<String, u64>,
    seconds: f64,
) -> OpStats {
    let micros: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.latencies[op.index()].iter().copied())
        .collect();
    let ok = tallies.iter().map(|t| t.ok[op.index()]).sum();
    let prefix = format!("{} ", op.name().to_uppercase());
    let failed = unexpected
        .iter()
        .filter(|(class, _)| class.starts_with(&prefix))
        .map(|(_, n)| n)
        .sum();
    OpStats::new(micros, ok, failed, seconds)
}

fn config_json(config: &LoadConfig, target: &Target) -> Value {
    json!({
        "url": config.url,
        "source": config.source.name(),
        "clients": config.clients,
        "names_per_client": config.names_per_client,
        "duration": format!("{:?}", config.duration),
        "mix": config.mix.to_string(),
        "target": format!("{}/{}/{} in {}", target.group, target.version, target.plural, target.namespace),
        "prefix": config.prefix,
        "seed": config.seed,
        "timeout": format!("{:?}", config.timeout),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_slope() {
        let s = OpStats::new((1..=1000).map(|i| i * 1000).collect(), 1000, 0, 10.0);
        assert_eq!(
            (s.p50, s.p90, s.p99, s.p999, s.max),
            (500.0, 900.0, 990.0, 999.0, 1000.0)
        );
        assert_eq!(s.per_second, 100.0);
        let flat: Vec<(f64, u64)> = (0..60).map(|t| (f64::from(t), 50_000)).collect();
        assert_eq!(slope(&flat), Some(0.0));
        let growing: Vec<(f64, u64)> = (0..60)
            .map(|t| (f64::from(t), 1000 + 2 * t as u64))
            .collect();
        let kib_per_s = slope(&growing).unwrap();
        assert!((kib_per_s - 2.0).abs() < 1e-9, "{kib_per_s}");
        let summary = RssSummary::new(growing, 30.0);
        assert_eq!(summary.after_warmup_kib, Some(1060));
        assert!((summary.slope_mib_per_min.unwrap() - 120.0 / 1024.0).abs() < 1e-9);
    }
}
