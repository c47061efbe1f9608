//! One load client: a closed loop of random operations on its own names, each answer
//! checked against its model (`load_model`), latencies and error classes tallied.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::load::{LoadConfig, LoadError, Op, Rng, SourceKind, client_names, resource_name};
use crate::load_model::{NameModel, State, Verdict, judge, resource_body, spec_for};
use crate::load_verify::Baseline;

/// The HTTP side: one pooled keep-alive client shared by all load clients.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// An answer, or the transport failure that stood in for one.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// From just before the request was sent to the last byte of the body.
    pub latency: Duration,
}

impl Api {
    pub fn new(url: &str, timeout: Duration) -> Result<Api, LoadError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(LoadError::Client)?;
        Ok(Api {
            http,
            base: url.trim_end_matches('/').to_owned(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request; `Err` is the transport error's text (no answer came).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, String> {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let sent = Instant::now();
        let response = request.send().await.map_err(|e| transport_text(&e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| transport_text(&e))?;
        Ok(Reply {
            status,
            body: body.to_vec(),
            latency: sent.elapsed(),
        })
    }

    /// A GET that must answer 200 with JSON (setup and final checks).
    pub async fn get_json(&self, path: &str, what: &str) -> Result<Value, LoadError> {
        let reply = self.get_ok(path, what).await?;
        serde_json::from_slice(&reply.body).map_err(|e| self.server_error(what, path, e))
    }

    /// A GET that must answer 200.
    pub async fn get_ok(&self, path: &str, what: &str) -> Result<Reply, LoadError> {
        let reply = self
            .call(reqwest::Method::GET, path, None)
            .await
            .map_err(|e| self.server_error(what, path, e))?;
        if reply.status != 200 {
            let why = format!("{} {}", reply.status, first_line(&reply.body));
            return Err(self.server_error(what, path, why));
        }
        Ok(reply)
    }

    pub fn server_error(&self, what: &str, path: &str, why: impl ToString) -> LoadError {
        LoadError::Server {
            what: what.to_owned(),
            url: self.url(path),
            why: why.to_string(),
        }
    }
}

fn transport_text(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "transport"
    };
    // The innermost cause names the real problem (refused, reset, ...).
    let mut source: &dyn std::error::Error = error;
    while let Some(inner) = source.source() {
        source = inner;
    }
    format!("{kind}: {source}")
}

/// The first line of a body, shortened: the message part of an error class.
pub fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(300).collect()
}

/// The collection the load targets, resolved through `/apis`.
#[derive(Debug, Clone)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub plural: String,
}

impl Target {
    pub async fn resolve(api: &Api, config: &LoadConfig) -> Result<Target, LoadError> {
        let apis = api.get_json("/apis", "listing the served kinds").await?;
        let prefix = format!("{}/{}/", config.group, config.version);
        let plural = apis
            .as_object()
            .into_iter()
            .flatten()
            .find(|(key, def)| {
                key.starts_with(&prefix) && def["names"]["kind"].as_str() == Some(&config.kind)
            })
            .and_then(|(key, _)| key.strip_prefix(&prefix).map(str::to_owned))
            .ok_or_else(|| {
                api.server_error(
                    "finding the kind",
                    "/apis",
                    format!("no {} in {}{}", config.kind, prefix, "* is served"),
                )
            })?;
        Ok(Target {
            group: config.group.clone(),
            version: config.version.clone(),
            kind: config.kind.clone(),
            namespace: config.namespace.clone(),
            plural,
        })
    }

    /// `/apis/<group>/<version>/namespaces/<ns>/<plural>`.
    pub fn collection(&self) -> String {
        format!(
            "/apis/{}/{}/namespaces/{}/{}",
            self.group, self.version, self.namespace, self.plural
        )
    }
}

/// A path with `?revision=` when reading or writing on a Git commit.
pub fn at_revision(path: &str, revision: Option<&str>) -> String {
    match revision {
        Some(rev) => format!("{path}?revision={rev}"),
        None => path.to_owned(),
    }
}

/// Parses a list answer (one JSON resource per line).
pub fn parse_list(body: &[u8]) -> Result<Vec<Value>, String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("list line is not JSON ({e}): {l}")))
        .collect()
}

/// A Git write that came back as a proposal: what the final check looks for.
#[derive(Debug, Clone)]
pub struct ProposalRecord {
    pub client: usize,
    pub op: Op,
    pub name: String,
    /// The commit the write was based on (`None`: the default branch at the start).
    pub base: Option<String>,
    pub branch: String,
    pub commit: String,
    /// The client's names at the proposal's commit.
    pub expected: BTreeMap<String, State>,
}

/// One consistency failure, seen during the run or at the end.
#[derive(Debug, Clone)]
pub struct Violation {
    pub kind: ViolationKind,
    pub when: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// An acknowledged write is not there (or an older one shows).
    Lost,
    /// Content nobody sent for that name, another client's data, a changed base.
    Mixed,
    /// A change nobody was told about (a proposal branch no answer named).
    Unacknowledged,
}

impl ViolationKind {
    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::Lost => "lost",
            ViolationKind::Mixed => "mixed",
            ViolationKind::Unacknowledged => "unacknowledged",
        }
    }
}

impl Violation {
    /// A violation for a verdict that is not `Correct`.
    pub fn from_verdict(verdict: Verdict, when: &'static str, context: &str) -> Option<Self> {
        let (kind, detail) = match verdict {
            Verdict::Correct(_) => return None,
            Verdict::Lost(d) => (ViolationKind::Lost, d),
            Verdict::Mixed(d) => (ViolationKind::Mixed, d),
        };
        Some(Violation {
            kind,
            when,
            detail: format!("{context}: {detail}"),
        })
    }
}

/// Everything one client saw.
#[derive(Debug, Default)]
pub struct ClientTally {
    pub client: usize,
    /// Microseconds of each answered request, per op.
    pub latencies: [Vec<u32>; 4],
    /// Answers that were right (2xx, or an expected 404).
    pub ok: [u64; 4],
    /// Error classes (`GET 404 …`) that the model expected, with counts.
    pub expected: BTreeMap<String, u64>,
    /// Error classes that it did not.
    pub unexpected: BTreeMap<String, u64>,
    /// Violations by kind (`ViolationKind as usize`), and the first few in full.
    pub violation_counts: [u64; 3],
    pub violations: Vec<Violation>,
    pub proposals: Vec<ProposalRecord>,
    /// Each owned name's model at the end.
    pub models: BTreeMap<String, NameModel>,
    /// The Git commit the client's reads and writes are based on.
    pub head: Option<String>,
    pub acknowledged_writes: u64,
    /// Answers per op in each `WINDOW` since the start: throughput over time.
    pub windows: Vec<[u32; 4]>,
}

/// The width of a throughput window.
pub const WINDOW: Duration = Duration::from_secs(10);

struct Client<'a> {
    api: &'a Api,
    target: &'a Target,
    baseline: &'a Baseline,
    git: bool,
    names: Vec<String>,
    rng: Rng,
    seq: u64,
    started: Instant,
    tally: ClientTally,
}

/// Runs client `id` until `deadline` (the request in flight then is finished).
pub async fn run_client(
    api: &Api,
    target: &Target,
    baseline: &Baseline,
    config: &LoadConfig,
    id: usize,
    deadline: Instant,
) -> ClientTally {
    let names = client_names(&config.prefix, id, config.names_per_client);
    let mut client = Client {
        api,
        target,
        baseline,
        git: matches!(config.source, SourceKind::Git { .. }),
        rng: Rng::new(config.seed ^ (id as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)),
        seq: 0,
        started: deadline.checked_sub(config.duration).unwrap_or(deadline),
        tally: ClientTally {
            client: id,
            models: names
                .iter()
                .map(|n| (n.clone(), NameModel::absent()))
                .collect(),
            ..ClientTally::default()
        },
        names,
    };
    while Instant::now() < deadline {
        let op = config.mix.pick(client.rng.next_u64());
        let name = client.names[client.rng.below(client.names.len())].clone();
        match op {
            Op::Get => client.get(&name).await,
            Op::List => client.list().await,
            Op::Put => client.put(&name).await,
            Op::Delete => client.delete(&name).await,
        }
    }
    client.tally
}

impl Client<'_> {
    fn path(&self, name: Option<&str>) -> String {
        let collection = self.target.collection();
        let path = match name {
            Some(name) => format!("{collection}/{name}"),
            None => collection,
        };
        at_revision(&path, self.tally.head.as_deref())
    }

    /// Sends one request and records its latency; `None` after a transport failure.
    async fn send(
        &mut self,
        op: Op,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Option<Reply> {
        match self.api.call(method, path, body).await {
            Ok(reply) => {
                let micros = u32::try_from(reply.latency.as_micros()).unwrap_or(u32::MAX);
                self.tally.latencies[op.index()].push(micros);
                let window = (self.started.elapsed().as_secs() / WINDOW.as_secs()) as usize;
                if self.tally.windows.len() <= window {
                    self.tally.windows.resize(window + 1, [0; 4]);
                }
                self.tally.windows[window][op.index()] += 1;
                Some(reply)
            }
            Err(error) => {
                let class = format!("{} {}", op.name().to_uppercase(), normalise(&error));
                self.unexpected(class);
                None
            }
        }
    }

    fn unexpected(&mut self, class: String) {
        *self.tally.unexpected.entry(class).or_default() += 1;
    }

    fn unexpected_reply(&mut self, op: Op, reply: &Reply) {
        let class = format!(
            "{} {} {}",
            op.name().to_uppercase(),
            reply.status,
            normalise(&first_line(&reply.body))
        );
        self.unexpected(class);
    }

    fn expected_404(&mut self, op: Op) {
        let class = format!("{} 404 (absent, as expected)", op.name().to_uppercase());
        *self.tally.expected.entry(class).or_default() += 1;
        self.tally.ok[op.index()] += 1;
    }

    fn violation(&mut self, verdict: Verdict, context: &str) {
        const KEPT: usize = 20;
        if let Some(v) = Violation::from_verdict(verdict, "during the run", context) {
            self.tally.violation_counts[v.kind as usize] += 1;
            if self.tally.violations.len() < KEPT {
                self.tally.violations.push(v);
            }
        }
    }

    /// Judges what the server showed for `name`; a correct answer settles the model.
    fn observe(&mut self, name: &str, shown: Option<&Value>, context: &str) {
        let Some(model) = self.tally.models.get_mut(name) else {
            return;
        };
        let verdict = judge(model, &self.target.namespace, name, shown);
        if let Verdict::Correct(index) = verdict {
            let state = model.acceptable.swap_remove(index);
            model.acknowledged(state);
        } else {
            self.violation(verdict, context);
        }
    }

    async fn get(&mut self, name: &str) {
        let path = self.path(Some(name));
        let Some(reply) = self.send(Op::Get, reqwest::Method::GET, &path, None).await else {
            return;
        };
        match reply.status {
            200 => match serde_json::from_slice::<Value>(&reply.body) {
                Ok(resource) => {
                    self.tally.ok[Op::Get.index()] += 1;
                    self.observe(name, Some(&resource), "get");
                }
                Err(_) => self.unexpected_reply(Op::Get, &reply),
            },
            404 if self.absent_acceptable(name) => {
                self.expected_404(Op::Get);
                self.observe(name, None, "get");
            }
            404 => {
                self.unexpected_reply(Op::Get, &reply);
                self.observe(name, None, "get");
            }
            _ => self.unexpected_reply(Op::Get, &reply),
        }
    }

    fn absent_acceptable(&self, name: &str) -> bool {
        self.tally
            .models
            .get(name)
            .is_some_and(|m| m.acceptable.iter().any(Option::is_none))
    }

    async fn list(&mut self) {
        let path = self.path(None);
        let Some(reply) = self.send(Op::List, reqwest::Method::GET, &path, None).await else {
            return;
        };
        let listed = match (reply.status, parse_list(&reply.body)) {
            (200, Ok(listed)) => listed,
            _ => return self.unexpected_reply(Op::List, &reply),
        };
        self.tally.ok[Op::List.index()] += 1;
        for name in self.names.clone() {
            let shown = listed.iter().find(|r| resource_name(r) == Some(&name));
            self.observe(&name, shown, "list");
        }
        if self.git {
            // On its own Git line a client sees exactly the base plus its own names.
            let problems = self.baseline.foreign_entries(&listed, self.tally.client);
            for detail in problems {
                self.violation(Verdict::Mixed(detail), "list at its own proposal");
            }
        }
    }

    async fn put(&mut self, name: &str) {
        self.seq += 1;
        let spec = spec_for(&self.target.kind, self.tally.client, name, self.seq);
        let t = self.target;
        let body = resource_body(&t.group, &t.version, &t.kind, &t.namespace, name, &spec);
        if let Some(model) = self.tally.models.get_mut(name) {
            model.sent.push(spec.clone());
        }
        let path = self.path(Some(name));
        let bytes = body.to_string().into_bytes();
        let reply = self
            .send(Op::Put, reqwest::Method::PUT, &path, Some(bytes))
            .await;
        self.written(Op::Put, name, Some(spec), reply);
    }

    async fn delete(&mut self, name: &str) {
        let path = self.path(Some(name));
        let reply = self
            .send(Op::Delete, reqwest::Method::DELETE, &path, None)
            .await;
        if let Some(reply) = &reply
            && reply.status == 404
        {
            if self.absent_acceptable(name) {
                self.expected_404(Op::Delete);
            } else {
                self.unexpected_reply(Op::Delete, reply);
            }
            self.observe(name, None, "delete answered 404");
            return;
        }
        self.written(Op::Delete, name, None, reply);
    }

    /// Records the outcome of a put or delete that wanted `state`.
    fn written(&mut self, op: Op, name: &str, state: State, reply: Option<Reply>) {
        let Some(reply) = reply else {
            return self.write_unknown(name, state);
        };
        match reply.status {
            200..=202 => {
                self.tally.ok[op.index()] += 1;
                self.tally.acknowledged_writes += 1;
                if let Some(model) = self.tally.models.get_mut(name) {
                    model.acknowledged(state);
                }
                if self.git {
                    self.record_proposal(op, name, &reply);
                }
            }
            // Nothing changed: right only if the name already was in that state.
            204 => {
                let already = self
                    .tally
                    .models
                    .get(name)
                    .and_then(NameModel::certain)
                    .is_some_and(|s| *s == state);
                if already {
                    self.tally.ok[op.index()] += 1;
                } else {
                    self.unexpected_reply(op, &reply);
                    self.write_unknown(name, state);
                }
            }
            _ => {
                self.unexpected_reply(op, &reply);
                self.write_unknown(name, state);
            }
        }
    }

    /// A write that failed or went unanswered: on the local source it may still have been
    /// applied; on Git the client's line stays at its head (a stray branch is found by the
    /// final check), so its model does not change.
    fn write_unknown(&mut self, name: &str, state: State) {
        if self.git {
            return;
        }
        if let Some(model) = self.tally.models.get_mut(name) {
            model.uncertain(state);
        }
    }

    fn record_proposal(&mut self, op: Op, name: &str, reply: &Reply) {
        let parsed = serde_json::from_slice::<Value>(&reply.body).ok();
        let proposal = parsed.as_ref().map(|v| &v["proposal"]);
        let field = |key: &str| {
            proposal
                .and_then(|p| p[key].as_str())
                .map(str::to_owned)
                .unwrap_or_default()
        };
        let (branch, commit) = (field("branch"), field("commit"));
        if branch.is_empty() || commit.is_empty() {
            let class = format!(
                "{} {} answer without proposal branch/commit: {}",
                op.name().to_uppercase(),
                reply.status,
                normalise(&first_line(&reply.body))
            );
            return self.unexpected(class);
        }
        let expected = self
            .tally
            .models
            .iter()
            .filter_map(|(n, m)| Some((n.clone(), m.certain()?.clone())))
            .collect();
        self.tally.proposals.push(ProposalRecord {
            client: self.tally.client,
            op,
            name: name.to_owned(),
            base: self.tally.head.take(),
            branch,
            commit: commit.clone(),
            expected,
        });
        self.tally.head = Some(commit);
    }
}

/// An error class without the parts that differ per request (numbers, names, ids).
pub fn normalise(class: &str) -> String {
    let mut out = String::with_capacity(class.len());
    let mut in_number = false;
    for c in class.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// The names a list shows, as a set.
pub fn listed_names(listed: &[Value]) -> BTreeSet<String> {
    listed
        .iter()
        .filter_map(|r| resource_name(r).map(str::to_owned))
        .collect()
}
