//! The load run behind `cup-load`: N concurrent clients send a mix of
//! get/list/put/delete to one cupd, each on resource names only it writes
//! (`<prefix>-c07-n3`), so the state every name must end in is known. Every answer is
//! checked against the client's model while the run goes on (a read must show the last
//! acknowledged write), and everything again afterwards (`load_verify`). Latencies are
//! measured per request from the moment it is sent; the clients are closed-loop (the next
//! request is sent when the previous answer is read), so no request waits on a schedule
//! and none is left out of the figures.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::load_client::{Api, ClientTally, Target, run_client};
use crate::load_report::{Report, RssSampler};
use crate::load_verify::{Baseline, GitBaseline};

/// What can stop a load run before it produces a report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("bad --mix {given:?}: {why} (expected e.g. get=50,list=20,put=20,delete=10)")]
    Mix { given: String, why: String },
    #[error("bad duration {0:?}: expected a number followed by ms, s, m or h (e.g. 10m)")]
    Duration(String),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{what} at {url}: {why}")]
    Server {
        what: String,
        url: String,
        why: String,
    },
    #[error(
        "the source already holds {count} resources named {prefix}-*: start from a fresh \
         copy of the source or pass another --prefix"
    )]
    NotClean { count: usize, prefix: String },
    #[error("git {args}: {why}")]
    Git { args: String, why: String },
    #[error("reading the memory of pid {pid} (/proc/{pid}/status): {source}")]
    Pid {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
}

/// The four operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Get,
    List,
    Put,
    Delete,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Get, Op::List, Op::Put, Op::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::List => "list",
            Op::Put => "put",
            Op::Delete => "delete",
        }
    }

    /// Index into per-op arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Relative weights of the operations (`get=50,list=20,put=20,delete=10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 4],
}

impl Mix {
    pub fn parse(given: &str) -> Result<Mix, LoadError> {
        let bad = |why: String| LoadError::Mix {
            given: given.to_owned(),
            why,
        };
        let mut weights = [0u32; 4];
        for part in given.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} is not op=weight")))?;
            let op = Op::ALL
                .into_iter()
                .find(|op| op.name() == name.trim())
                .ok_or_else(|| bad(format!("unknown operation {name:?}")))?;
            weights[op.index()] = weight
                .trim()
                .parse()
                .map_err(|_| bad(format!("{weight:?} is not a whole number")))?;
        }
        if weights.iter().all(|w| *w == 0) {
            return Err(bad("every weight is zero".into()));
        }
        Ok(Mix { weights })
    }

    /// The operation for a uniformly random `r`.
    pub fn pick(&self, r: u64) -> Op {
        let total: u64 = self.weights.iter().map(|w| u64::from(*w)).sum();
        let mut point = r % total;
        for op in Op::ALL {
            let weight = u64::from(self.weights[op.index()]);
            if point < weight {
                return op;
            }
            point -= weight;
        }
        Op::Get
    }

    pub fn weight(&self, op: Op) -> u32 {
        self.weights[op.index()]
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = Op::ALL
            .iter()
            .map(|op| format!("{}={}", op.name(), self.weight(*op)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// `10m`, `60s`, `1h`, `500ms`.
pub fn parse_duration(given: &str) -> Result<Duration, LoadError> {
    let bad = || LoadError::Duration(given.to_owned());
    let text = given.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// Which source cupd serves, and what the final check can look at.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// A local directory: the final state is read back through the API.
    Local,
    /// A Git remote (the bare repository's path): proposal branches are checked with `git`.
    Git { remote: PathBuf },
}

impl SourceKind {
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Local => "local",
            SourceKind::Git { .. } => "git",
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub url: String,
    pub clients: usize,
    pub duration: Duration,
    pub mix: Mix,
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub names_per_client: usize,
    pub prefix: String,
    pub source: SourceKind,
    pub pid: Option<u32>,
    pub seed: u64,
    pub timeout: Duration,
    /// RSS samples before this are left out of the growth slope.
    pub warmup: Duration,
}

/// Runs the load, then the final checks; the report says whether all held.
pub async fn run(config: &LoadConfig) -> Result<Report, LoadError> {
    let api = Api::new(&config.url, config.timeout)?;
    let target = Target::resolve(&api, config).await?;
    let baseline = Baseline::capture(&api, &target, config).await?;
    let git = match &config.source {
        SourceKind::Git { remote } => Some(GitBaseline::capture(&api, remote).await?),
        SourceKind::Local => None,
    };
    let sampler = config.pid.map(RssSampler::start).transpose()?;
    let started = Instant::now();
    let tallies = run_clients(&api, &target, &baseline, config).await;
    let elapsed = started.elapsed();
    // A short run keeps three quarters of its samples for the slope.
    let rss = sampler.map(|s| s.finish(config.warmup.min(config.duration / 4)));
    let verification = match (&config.source, &git) {
        (SourceKind::Git { remote }, Some(git)) => {
            crate::load_verify::verify_git(&api, &target, &baseline, git, remote, &tallies).await?
        }
        _ => crate::load_verify::verify_local(&api, &target, &baseline, &tallies).await,
    };
    Ok(Report::new(
        config,
        &target,
        elapsed,
        &tallies,
        verification,
        rss,
    ))
}

async fn run_clients(
    api: &Api,
    target: &Target,
    baseline: &Baseline,
    config: &LoadConfig,
) -> Vec<ClientTally> {
    let deadline = Instant::now() + config.duration;
    let shared = Arc::new((
        api.clone(),
        target.clone(),
        baseline.clone(),
        config.clone(),
    ));
    let mut set = tokio::task::JoinSet::new();
    for id in 0..config.clients {
        let shared = shared.clone();
        set.spawn(async move {
            let (api, target, baseline, config) = &*shared;
            run_client(api, target, baseline, config, id, deadline).await
        });
    }
    let mut tallies = Vec::with_capacity(config.clients);
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(tally) => tallies.push(tally),
            // A panicking client is a bug in the generator: report it, do not hide it.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    tallies.sort_by_key(|t| t.client);
    tallies
}

/// The resource names of client `client`: `<prefix>-c07-n3`.
pub fn client_names(prefix: &str, client: usize, count: usize) -> Vec<String> {
    (0..count)
        .map(|n| format!("{prefix}-c{client:02}-n{n}"))
        .collect()
}

/// The client that owns `name`, if it is one of the load's names.
pub fn owner_of(prefix: &str, name: &str) -> Option<usize> {
    let rest = name.strip_prefix(prefix)?.strip_prefix("-c")?;
    let (client, _) = rest.split_once("-n")?;
    client.parse().ok()
}

/// `metadata.name` of a resource as the API returns it.
pub fn resource_name(resource: &Value) -> Option<&str> {
    resource.get("metadata")?.get("name")?.as_str()
}

/// A small deterministic generator (SplitMix64): the run is replayable from `--seed`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_picks_by_weight() {
        let mix = Mix::parse("get=50,list=20,put=20,delete=10").unwrap();
        assert_eq!(mix.to_string(), "get=50,list=20,put=20,delete=10");
        assert_eq!(mix.pick(0), Op::Get);
        assert_eq!(mix.pick(49), Op::Get);
        assert_eq!(mix.pick(50), Op::List);
        assert_eq!(mix.pick(70), Op::Put);
        assert_eq!(mix.pick(90), Op::Delete);
        assert_eq!(mix.pick(199), Op::Delete);
        let only_puts = Mix::parse("put=1").unwrap();
        assert!((0..100).all(|r| only_puts.pick(r) == Op::Put));
    }

    #[test]
    fn bad_mixes_are_refused_with_the_reason() {
        for (given, why) in [
            ("get=50,post=5", "unknown operation"),
            ("get", "not op=weight"),
            ("get=-1", "not a whole number"),
            ("get=0,put=0", "every weight is zero"),
            ("", "every weight is zero"),
        ] {
            let error = Mix::parse(given).unwrap_err().to_string();
            assert!(error.contains(why), "{given}: {error}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        for bad in ["10", "m", "10 minutes", "-1s", "s10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_belong_to_their_client() {
        let names = client_names("load", 7, 3);
        assert_eq!(names, ["load-c07-n0", "load-c07-n1", "load-c07-n2"]);
        assert_eq!(owner_of("load", "load-c07-n2"), Some(7));
        assert_eq!(owner_of("load", "load-c123-n0"), Some(123));
        assert_eq!(owner_of("load", "dark-mode"), None);
        assert_eq!(owner_of("load", "loader-c01-n0"), None);
    }
}
