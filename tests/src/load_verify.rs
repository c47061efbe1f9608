//! The checks after a load run. Local source: every name read back (GET and the
//! controller's list of the files) against the last acknowledged write, the resources that
//! were there before unchanged. Git source: the base branch unchanged, and every proposal
//! an answer named is on the remote, based on the client's previous commit, changing one
//! file, and showing (through the controller, at that commit) exactly the base plus that
//! client's own names as it had written them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::load::{LoadConfig, LoadError, owner_of, resource_name};
use crate::load_client::{
    Api, ClientTally, ProposalRecord, Target, Violation, ViolationKind, at_revision, first_line,
    parse_list,
};
use crate::load_model::{NameModel, Verdict, judge};

/// The target collection as it was before the load: what must not change.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub prefix: String,
    /// Every resource of the collection by name (none is the load's).
    pub resources: BTreeMap<String, Value>,
}

impl Baseline {
    /// Lists the collection; refuses a source that already holds load names.
    pub async fn capture(
        api: &Api,
        target: &Target,
        config: &LoadConfig,
    ) -> Result<Baseline, LoadError> {
        let path = target.collection();
        let reply = api.get_ok(&path, "listing the collection").await?;
        let listed = parse_list(&reply.body).map_err(|e| api.server_error("listing", &path, e))?;
        let ours = listed
            .iter()
            .filter(|r| resource_name(r).is_some_and(|n| owner_of(&config.prefix, n).is_some()))
            .count();
        if ours > 0 {
            return Err(LoadError::NotClean {
                count: ours,
                prefix: config.prefix.clone(),
            });
        }
        let resources = listed
            .into_iter()
            .filter_map(|r| Some((resource_name(&r)?.to_owned(), r)))
            .collect();
        Ok(Baseline {
            prefix: config.prefix.clone(),
            resources,
        })
    }

    /// What in `listed` is neither the base as it was nor `client`'s own names (whose
    /// content the caller judges): another client's names, changed or missing base
    /// resources. `client = None` means no load name may appear at all.
    pub fn foreign_entries(
        &self,
        listed: &[Value],
        client: impl Into<Option<usize>>,
    ) -> Vec<String> {
        let client = client.into();
        let mut problems = Vec::new();
        for resource in listed {
            let name = resource_name(resource).unwrap_or("<no name>");
            match (owner_of(&self.prefix, name), self.resources.get(name)) {
                (Some(owner), _) if Some(owner) == client => {}
                (Some(owner), _) => problems.push(format!("shows {name} of client {owner}")),
                (None, Some(base)) if base == resource => {}
                (None, Some(_)) => problems.push(format!("base resource {name} changed")),
                (None, None) => problems.push(format!("{name} appeared")),
            }
        }
        for name in self.resources.keys() {
            if !listed.iter().any(|r| resource_name(r) == Some(name)) {
                problems.push(format!("base resource {name} is missing"));
            }
        }
        problems
    }
}

/// What the final checks found.
#[derive(Debug, Default)]
pub struct Verification {
    pub names_checked: usize,
    /// Final state of the checked names.
    pub present: usize,
    pub absent: usize,
    /// Names whose last write went unanswered, so two outcomes were acceptable.
    pub uncertain: usize,
    pub proposals_checked: usize,
    /// Every file path the proposals changed, with counts.
    pub changed_paths: BTreeMap<String, usize>,
    pub base_unchanged: Option<bool>,
    pub violations: Vec<Violation>,
    /// Requests of the final check itself that failed.
    pub errors: Vec<String>,
}

impl Verification {
    fn violation(&mut self, kind: ViolationKind, detail: String) {
        self.violations.push(Violation {
            kind,
            when: "final check",
            detail,
        });
    }

    fn verdict(&mut self, verdict: Verdict, context: &str) {
        if let Some(v) = Violation::from_verdict(verdict, "final check", context) {
            self.violations.push(v);
        }
    }
}

/// Local source: GET every name, then the controller's list, against the models.
pub async fn verify_local(
    api: &Api,
    target: &Target,
    baseline: &Baseline,
    tallies: &[ClientTally],
) -> Verification {
    let mut found = Verification::default();
    let collection = target.collection();
    for (name, model) in tallies.iter().flat_map(|t| &t.models) {
        found.names_checked += 1;
        found.uncertain += usize::from(model.acceptable.len() > 1);
        let path = format!("{collection}/{name}");
        match api.call(reqwest::Method::GET, &path, None).await {
            Ok(reply) if reply.status == 404 => {
                found.absent += 1;
                found.verdict(judge(model, &target.namespace, name, None), "get");
            }
            Ok(reply) if reply.status == 200 => {
                found.present += 1;
                let shown = serde_json::from_slice::<Value>(&reply.body).ok();
                let verdict = judge(model, &target.namespace, name, shown.as_ref());
                found.verdict(verdict, "get");
            }
            Ok(reply) => found.errors.push(format!(
                "GET {path}: {} {}",
                reply.status,
                first_line(&reply.body)
            )),
            Err(error) => found.errors.push(format!("GET {path}: {error}")),
        }
    }
    check_local_list(api, target, baseline, tallies, &mut found).await;
    found
}

async fn check_local_list(
    api: &Api,
    target: &Target,
    baseline: &Baseline,
    tallies: &[ClientTally],
    found: &mut Verification,
) {
    let path = target.collection();
    let listed = match api
        .get_ok(&path, "final list")
        .await
        .map(|r| parse_list(&r.body))
    {
        Ok(Ok(listed)) => listed,
        Ok(Err(e)) => return found.errors.push(e),
        Err(e) => return found.errors.push(e.to_string()),
    };
    for (name, model) in tallies.iter().flat_map(|t| &t.models) {
        let shown = listed.iter().find(|r| resource_name(r) == Some(name));
        found.verdict(judge(model, &target.namespace, name, shown), "list");
    }
    let owned: Vec<Value> = listed
        .into_iter()
        .filter(|r| {
            let name = resource_name(r).unwrap_or_default();
            // Names of clients that ran are judged above; anything else is foreign.
            !tallies.iter().any(|t| t.models.contains_key(name))
        })
        .collect();
    for problem in baseline.foreign_entries(&owned, None) {
        found.violation(ViolationKind::Mixed, format!("list: {problem}"));
    }
}

/// The Git side captured before the run: the default branch and its commit.
#[derive(Debug, Clone)]
pub struct GitBaseline {
    pub branch: String,
    pub commit: String,
}

impl GitBaseline {
    pub async fn capture(api: &Api, remote: &Path) -> Result<GitBaseline, LoadError> {
        let status = api.get_json("/status", "reading cupd's status").await?;
        let source = &status["source"];
        if source["type"] != "git" {
            let why = format!("cupd serves a {} source, not git", source["type"]);
            return Err(api.server_error("checking the source", "/status", why));
        }
        let branch = source["default_branch"]
            .as_str()
            .ok_or_else(|| api.server_error("checking the source", "/status", "no default branch"))?
            .to_owned();
        let commit = git(
            remote,
            &["rev-parse", &format!("refs/heads/{branch}")],
            None,
        )?;
        Ok(GitBaseline { branch, commit })
    }
}

/// Runs `git -C remote args…` (optionally feeding `input`); its stdout without trailing
/// whitespace.
pub fn git(remote: &Path, args: &[&str], input: Option<&str>) -> Result<String, LoadError> {
    crate::try_git(remote, args, input.unwrap_or_default().as_bytes()).map_err(|e| LoadError::Git {
        args: e.args,
        why: e.why,
    })
}

/// Git source: the base branch, every proposal branch, and the content at each proposal.
pub async fn verify_git(
    api: &Api,
    target: &Target,
    baseline: &Baseline,
    start: &GitBaseline,
    remote: &Path,
    tallies: &[ClientTally],
) -> Result<Verification, LoadError> {
    let mut found = Verification::default();
    let records: Vec<&ProposalRecord> = tallies.iter().flat_map(|t| &t.proposals).collect();
    found.proposals_checked = records.len();
    found.names_checked = tallies.iter().map(|t| t.models.len()).sum();
    let now = git(
        remote,
        &["rev-parse", &format!("refs/heads/{}", start.branch)],
        None,
    )?;
    found.base_unchanged = Some(now == start.commit);
    if now != start.commit {
        let detail = format!("{} moved from {} to {now}", start.branch, start.commit);
        found.violation(ViolationKind::Mixed, detail);
    }
    check_base_view(api, target, baseline, &mut found).await;
    check_branches(remote, &records, &mut found)?;
    check_ancestry(remote, start, &records, &mut found)?;
    check_proposal_contents(api, target, baseline, tallies, &mut found).await;
    for tally in tallies {
        for model in tally.models.values() {
            match model.certain() {
                Some(Some(_)) => found.present += 1,
                Some(None) => found.absent += 1,
                None => found.uncertain += 1,
            }
        }
    }
    Ok(found)
}

/// The default branch through cupd: exactly the base.
async fn check_base_view(
    api: &Api,
    target: &Target,
    baseline: &Baseline,
    found: &mut Verification,
) {
    let path = target.collection();
    match api
        .get_ok(&path, "list at the base")
        .await
        .map(|r| parse_list(&r.body))
    {
        Ok(Ok(listed)) => {
            for problem in baseline.foreign_entries(&listed, None) {
                found.violation(ViolationKind::Mixed, format!("base branch: {problem}"));
            }
        }
        Ok(Err(e)) => found.errors.push(e),
        Err(e) => found.errors.push(e.to_string()),
    }
}

/// Every acknowledged proposal's branch points at its commit; no other branch exists.
fn check_branches(
    remote: &Path,
    records: &[&ProposalRecord],
    found: &mut Verification,
) -> Result<(), LoadError> {
    let refs = git(
        remote,
        &[
            "for-each-ref",
            "--format=%(refname:short) %(objectname)",
            "refs/heads/cup/proposal/",
        ],
        None,
    )?;
    let mut on_remote: HashMap<&str, &str> =
        refs.lines().filter_map(|l| l.split_once(' ')).collect();
    for record in records {
        match on_remote.remove(record.branch.as_str()) {
            Some(commit) if commit == record.commit => {}
            Some(commit) => found.violation(
                ViolationKind::Lost,
                format!(
                    "{} points at {commit}, the answer said {}",
                    record.branch, record.commit
                ),
            ),
            None => found.violation(
                ViolationKind::Lost,
                format!(
                    "{} ({} {}) is not on the remote",
                    record.branch,
                    record.op.name(),
                    record.name
                ),
            ),
        }
    }
    for (branch, _) in on_remote {
        found.violation(
            ViolationKind::Unacknowledged,
            format!("{branch} is on the remote but no answer named it"),
        );
    }
    Ok(())
}

/// Each proposal's only parent is the commit its client based it on, and it changes
/// exactly one file.
fn check_ancestry(
    remote: &Path,
    start: &GitBaseline,
    records: &[&ProposalRecord],
    found: &mut Verification,
) -> Result<(), LoadError> {
    if records.is_empty() {
        return Ok(());
    }
    let commits: String = records.iter().map(|r| format!("{}\n", r.commit)).collect();
    let parents = git(
        remote,
        &["log", "--no-walk=unsorted", "--format=%H %P", "--stdin"],
        Some(&commits),
    )?;
    let parents: HashMap<&str, Vec<&str>> = parents
        .lines()
        .filter_map(|l| {
            let mut ids = l.split(' ');
            Some((ids.next()?, ids.collect()))
        })
        .collect();
    let changed = changed_files(remote, &commits)?;
    for record in records {
        let base = record.base.as_deref().unwrap_or(&start.commit);
        match parents.get(record.commit.as_str()) {
            Some(p) if p.as_slice() == [base] => {}
            other => found.violation(
                ViolationKind::Mixed,
                format!(
                    "{} has parents {other:?}, expected only {base}",
                    record.branch
                ),
            ),
        }
        let files = changed
            .get(record.commit.as_str())
            .cloned()
            .unwrap_or_default();
        if files.len() != 1 {
            found.violation(
                ViolationKind::Mixed,
                format!("{} changes {files:?}, expected one file", record.branch),
            );
        }
        for file in files {
            *found.changed_paths.entry(file).or_default() += 1;
        }
    }
    Ok(())
}

/// `commit → files it changes against its parent`, for every commit in `commits`.
fn changed_files(remote: &Path, commits: &str) -> Result<HashMap<String, Vec<String>>, LoadError> {
    let out = git(
        remote,
        &["diff-tree", "--stdin", "-r", "--name-only"],
        Some(commits),
    )?;
    let wanted: std::collections::HashSet<&str> = commits.lines().collect();
    let mut changed: HashMap<String, Vec<String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if wanted.contains(line) {
            current = Some(line.to_owned());
            changed.entry(line.to_owned()).or_default();
        } else if let Some(commit) = &current {
            changed
                .entry(commit.clone())
                .or_default()
                .push(line.to_owned());
        }
    }
    Ok(changed)
}

/// Through cupd at each proposal's commit: the base plus exactly the client's names as
/// they were after that write. Eight checks at a time.
async fn check_proposal_contents(
    api: &Api,
    target: &Target,
    baseline: &Baseline,
    tallies: &[ClientTally],
    found: &mut Verification,
) {
    const PARALLEL: usize = 8;
    // Every spec each name was ever sent, to tell an older write from foreign content.
    let sent: HashMap<String, Vec<Value>> = tallies
        .iter()
        .flat_map(|t| &t.models)
        .map(|(n, m)| (n.clone(), m.sent.clone()))
        .collect();
    let records: Vec<ProposalRecord> = tallies.iter().flat_map(|t| t.proposals.clone()).collect();
    let shared = Arc::new((api.clone(), target.clone(), baseline.clone(), sent, records));
    let mut set = tokio::task::JoinSet::new();
    for lane in 0..PARALLEL {
        let shared = shared.clone();
        set.spawn(async move {
            let (api, target, baseline, sent, records) = &*shared;
            let mut lane_found = Verification::default();
            for record in records.iter().skip(lane).step_by(PARALLEL) {
                check_one_proposal(api, target, baseline, sent, record, &mut lane_found).await;
            }
            lane_found
        });
    }
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(lane) => {
                found.violations.extend(lane.violations);
                found.errors.extend(lane.errors);
            }
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

async fn check_one_proposal(
    api: &Api,
    target: &Target,
    baseline: &Baseline,
    sent: &HashMap<String, Vec<Value>>,
    record: &ProposalRecord,
    found: &mut Verification,
) {
    let path = at_revision(&target.collection(), Some(&record.commit));
    let listed = match api
        .get_ok(&path, "list at a proposal")
        .await
        .map(|r| parse_list(&r.body))
    {
        Ok(Ok(listed)) => listed,
        Ok(Err(e)) => return found.errors.push(e),
        Err(e) => return found.errors.push(e.to_string()),
    };
    let context = format!("{} ({} {})", record.branch, record.op.name(), record.name);
    for (name, state) in &record.expected {
        let model = NameModel {
            acceptable: vec![state.clone()],
            sent: sent.get(name).cloned().unwrap_or_default(),
        };
        let shown = listed.iter().find(|r| resource_name(r) == Some(name));
        found.verdict(judge(&model, &target.namespace, name, shown), &context);
    }
    for problem in baseline.foreign_entries(&listed, record.client) {
        found.violation(ViolationKind::Mixed, format!("{context}: {problem}"));
    }
}
