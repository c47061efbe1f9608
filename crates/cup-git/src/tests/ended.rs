//! Ended proposals: their branches deleted after the retention, never one that moved; pull
//! requests shown, looked up within bounds, and merged through the forge.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

/// A proposal of one new file `name` on the default branch.
fn propose_file(repo: &GitRepo, name: &str) -> Proposal {
    let ((), proposal) = repo
        .propose(None, &format!("add {name}"), |d| {
            std::fs::write(d.join(name), name).unwrap();
            ((), true)
        })
        .unwrap();
    proposal.unwrap()
}

fn remote_branches(bare: &Path) -> Vec<String> {
    git(
        bare,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/cup",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn merged_branches_go_after_their_retention_and_only_where_the_cache_saw_them() {
    let (tmp, bare) = remote();
    let repo = open_repo(&bare, &tmp.path().join("cache"), RemoteOptions::default());
    let merged = propose_file(&repo, "m");
    let open = propose_file(&repo, "o");
    repo.merge(&merged.id, None, MergeStrategy::default())
        .unwrap();

    // Within its retention: kept, and remembered as merged.
    let outcome = repo
        .remove_ended_proposals(Duration::from_secs(3600))
        .unwrap();
    assert_eq!(outcome.removed, Vec::<String>::new());
    assert_eq!(outcome.waiting, 1);
    assert_eq!(remote_branches(&bare).len(), 2);

    // Retention zero: the merged branch goes, on the remote and in the cache; the open one
    // stays.
    let outcome = repo.remove_ended_proposals(Duration::ZERO).unwrap();
    assert_eq!(outcome.removed, vec![merged.branch.clone()]);
    assert_eq!(remote_branches(&bare), vec![open.branch.clone()]);
    assert_eq!(
        cache_refs(&repo, "refs/remotes/origin/cup"),
        vec![format!("refs/remotes/origin/{}", open.branch)]
    );

    // Merged outside cupd (a push to master): gone after the next fetch.
    let seed = tmp.path().join("seed");
    git(&seed, &["fetch", "-q", "origin"]);
    git(&seed, &["reset", "-q", "--hard", "origin/master"]);
    git(
        &seed,
        &[
            "merge",
            "-q",
            "--no-edit",
            &format!("origin/{}", open.branch),
        ],
    );
    git(&seed, &["push", "-q", "origin", "master"]);
    repo.fetch().unwrap();
    let outcome = repo.remove_ended_proposals(Duration::ZERO).unwrap();
    assert_eq!(outcome.removed, vec![open.branch.clone()]);
    assert!(remote_branches(&bare).is_empty());
    assert!(cache_refs(&repo, "refs/remotes/origin/cup").is_empty());

    // Merged, then moved on the remote after the cache last saw it: kept.
    let moved = propose_file(&repo, "v");
    repo.merge(&moved.id, None, MergeStrategy::default())
        .unwrap();
    git(&seed, &["fetch", "-q", "origin"]);
    git(
        &seed,
        &[
            "checkout",
            "-q",
            "-B",
            "work",
            &format!("origin/{}", moved.branch),
        ],
    );
    std::fs::write(seed.join("later"), "later").unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "later"]);
    git(
        &seed,
        &[
            "push",
            "-q",
            "origin",
            &format!("HEAD:refs/heads/{}", moved.branch),
        ],
    );
    let later = git(&seed, &["rev-parse", "HEAD"]);
    let outcome = repo.remove_ended_proposals(Duration::ZERO).unwrap();
    assert_eq!(outcome.removed, Vec::<String>::new());
    assert_eq!(outcome.moved, vec![moved.branch.clone()]);
    assert_eq!(
        git(
            &bare,
            &["rev-parse", &format!("refs/heads/{}", moved.branch)]
        ),
        later
    );
    // After a fetch it is open again (its new commit is on no other branch): kept.
    repo.fetch().unwrap();
    let outcome = repo.remove_ended_proposals(Duration::ZERO).unwrap();
    assert!(outcome.removed.is_empty() && outcome.moved.is_empty());
    assert_eq!(remote_branches(&bare), vec![moved.branch.clone()]);
}

#[test]
fn many_merged_branches_go_in_bounded_batches() {
    let (tmp, bare) = remote();
    let repo = open_repo(&bare, &tmp.path().join("cache"), RemoteOptions::default());
    let head = git(&bare, &["rev-parse", "master"]);
    // Branches at master's own commit: merged.
    let count = MAX_REMOVALS_PER_RUN + 5;
    let mut input = String::new();
    for _ in 0..count {
        input.push_str(&format!(
            "create refs/heads/{PROPOSAL_PREFIX}{} {head}\n",
            Ulid::new()
        ));
    }
    git_input(&bare, &["update-ref", "--stdin"], &input);
    repo.fetch().unwrap();
    let first = repo.remove_ended_proposals(Duration::ZERO).unwrap();
    assert_eq!(first.removed.len(), MAX_REMOVALS_PER_RUN);
    assert_eq!(first.waiting, 5);
    let second = repo.remove_ended_proposals(Duration::ZERO).unwrap();
    assert_eq!(second.removed.len(), 5);
    assert!(remote_branches(&bare).is_empty());
}

/// A forge kept in memory, merging with `git` in the remote itself: what `find` and
/// `merge` see is the remote's real state.
#[derive(Debug)]
struct MemoryForge {
    bare: PathBuf,
    pull_requests: Mutex<HashMap<String, PullRequest>>,
    finds: Mutex<Vec<String>>,
    merges: Mutex<Vec<u64>>,
    down: std::sync::atomic::AtomicBool,
}

impl MemoryForge {
    fn new(bare: &Path) -> MemoryForge {
        MemoryForge {
            bare: bare.to_owned(),
            pull_requests: Mutex::default(),
            finds: Mutex::default(),
            merges: Mutex::default(),
            down: Default::default(),
        }
    }

    fn set_state(&self, branch: &str, state: PullRequestState) {
        lock(&self.pull_requests).get_mut(branch).unwrap().state = state;
    }

    fn down(&self) -> Result<(), ScmError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ScmError {
                scm: "memory".into(),
                reason: "connection refused".into(),
            });
        }
        Ok(())
    }
}

impl PullRequests for MemoryForge {
    fn name(&self) -> &str {
        "memory"
    }

    fn proposed(&self, p: &NewProposal<'_>) -> Result<Option<PullRequest>, ScmError> {
        self.down()?;
        let mut prs = lock(&self.pull_requests);
        let pr = PullRequest {
            number: prs.len() as u64 + 1,
            url: format!("https://forge.example/pulls/{}", prs.len() + 1),
            state: PullRequestState::Open,
            head: p.branch.to_owned(),
        };
        prs.insert(p.branch.to_owned(), pr.clone());
        Ok(Some(pr))
    }

    fn find(&self, branch: &str) -> Result<Option<PullRequest>, ScmError> {
        self.down()?;
        lock(&self.finds).push(branch.to_owned());
        Ok(lock(&self.pull_requests).get(branch).cloned())
    }

    fn merge(&self, pr: &PullRequest) -> Result<MergedPullRequest, ScmError> {
        self.down()?;
        lock(&self.merges).push(pr.number);
        let work = self.bare.with_extension("forge-work");
        let _ = std::fs::remove_dir_all(&work);
        let parent = work.parent().unwrap();
        git(
            parent,
            &[
                "clone",
                "-q",
                self.bare.to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
        git(&work, &["fetch", "-q", "origin", &pr.head]);
        git(
            &work,
            &["merge", "-q", "--no-ff", "--no-edit", "FETCH_HEAD"],
        );
        git(&work, &["push", "-q", "origin", "HEAD:master"]);
        let commit = git(&work, &["rev-parse", "HEAD"]);
        self.set_state(&pr.head, PullRequestState::Merged);
        Ok(MergedPullRequest {
            commit: Some(commit),
        })
    }
}

fn open_with_forge(bare: &Path, cache: &Path, forge: Arc<MemoryForge>) -> GitRepo {
    let options = RemoteOptions {
        pull_requests: forge,
        ..RemoteOptions::default()
    };
    open_repo(bare, cache, options)
}

#[test]
fn pull_requests_are_shown_looked_up_within_bounds_and_merged_through_the_forge() {
    let (tmp, bare) = remote();
    let forge = Arc::new(MemoryForge::new(&bare));
    let repo = open_with_forge(&bare, &tmp.path().join("cache"), forge.clone());
    let proposals: Vec<Proposal> = (0..3)
        .map(|i| propose_file(&repo, &format!("f{i}")))
        .collect();

    // Opened by cupd: in the book, shown without asking the forge.
    let listed = repo.proposals(None).unwrap();
    assert_eq!(listed.len(), 3);
    for (item, proposal) in listed.iter().zip(&proposals) {
        assert_eq!(item.pull_request, proposal.pull_request);
    }
    assert!(lock(&forge.finds).is_empty());
    let json = serde_json::to_value(&listed[0]).unwrap();
    assert_eq!(
        json["pull_request"],
        serde_json::json!({"number": 1, "url": "https://forge.example/pulls/1", "state": "open"})
    );

    // Pull requests the book does not know (opened before a restart, say): a listing asks
    // about at most a few, in the order listed.
    let mut names: Vec<String> = (0..MAX_PULL_REQUEST_LOOKUPS + 3)
        .map(|_| format!("{PROPOSAL_PREFIX}{}", Ulid::new()))
        .collect();
    names.sort();
    for branch in &names {
        {
            let mut prs = lock(&forge.pull_requests);
            let number = prs.len() as u64 + 1;
            prs.insert(
                branch.clone(),
                PullRequest {
                    number,
                    url: format!("https://forge.example/pulls/{number}"),
                    state: PullRequestState::Open,
                    head: branch.clone(),
                },
            );
        }
    }
    let others = names;
    let tip = &proposals[0].commit;
    for branch in &others {
        git(&bare, &["update-ref", &format!("refs/heads/{branch}"), tip]);
    }
    let listed = repo.proposals(None).unwrap();
    let finds = lock(&forge.finds).clone();
    assert_eq!(finds, others[..MAX_PULL_REQUEST_LOOKUPS].to_vec());
    let shown = listed.iter().filter(|p| p.pull_request.is_some()).count();
    assert_eq!(shown, 3 + MAX_PULL_REQUEST_LOOKUPS);
    // One shown alone is looked up when unknown.
    let last = others.last().unwrap();
    let id = last.strip_prefix(PROPOSAL_PREFIX).unwrap();
    let detail = repo.proposal(id, None).unwrap();
    assert_eq!(
        detail.pull_request.as_ref().map(|pr| pr.state),
        Some(PullRequestState::Open)
    );

    // Closed on the forge: a merge is a 409 naming it, and nothing is merged.
    forge.set_state(last, PullRequestState::Closed);
    lock(&forge.finds).clear();
    let before = git(&bare, &["rev-parse", "master"]);
    let err = repo.merge(id, None, MergeStrategy::default()).unwrap_err();
    assert!(matches!(err, GitError::MergeConflict { .. }), "{err}");
    assert!(err.to_string().contains("already closed"), "{err}");
    assert_eq!(git(&bare, &["rev-parse", "master"]), before);

    // The forge cannot be reached: its own error, nothing merged.
    forge.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = repo
        .merge(&proposals[1].id, None, MergeStrategy::default())
        .unwrap_err();
    assert!(matches!(err, GitError::ScmUnavailable { .. }), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
    forge.down.store(false, std::sync::atomic::Ordering::SeqCst);

    // Merged through the forge: its merge commit, the pull request merged.
    let merged = repo
        .merge(&proposals[1].id, None, MergeStrategy::default())
        .unwrap();
    assert_eq!(lock(&forge.merges).as_slice(), &[2]);
    assert!(!merged.fast_forward);
    assert_eq!(merged.commit, git(&bare, &["rev-parse", "master"]));
    assert_eq!(
        merged.pull_request.as_ref().map(|pr| pr.state),
        Some(PullRequestState::Merged)
    );
    assert_eq!(merged.base, "master");

    // The merged one (in Git terms and by the book) and the closed one (by the book) go;
    // the open ones stay.
    let outcome = repo.remove_ended_proposals(Duration::ZERO).unwrap();
    let mut gone = vec![proposals[1].branch.clone(), last.clone()];
    gone.sort();
    assert_eq!(outcome.removed, gone);
    let left = remote_branches(&bare);
    assert!(!left.contains(&proposals[1].branch) && !left.contains(last));
    assert!(left.contains(&proposals[0].branch));
}
