//! How the real cupd fetches from a Git remote that goes away, that holds tags of no
//! commit, and that many clients list proposals of at once: startup with a usable cache
//! survives an unreachable remote (and `/status` says so), listings queued behind one fetch
//! share the next one, and `GET /proposals` is paginated with a continue token.

use crate::cupd_git_common::{Fixture, RESOURCES, git};
use cup_e2e::cupd::Cupd;
use cup_e2e::githttp::GitHttp;

const USER: &str = "cup";
const TOKEN: &str = "fetch-token";

/// A commit on top of `main` in the fixture's bare remote, on branch `cup/proposal/<id>`
/// (as another cupd would push it). Returns the id.
fn push_proposal(fixture: &Fixture, n: usize) -> String {
    let bare = fixture.bare();
    let tree = git(&bare, &["rev-parse", "main^{tree}"]);
    let commit = git(
        &bare,
        &[
            "commit-tree",
            &tree,
            "-p",
            "main",
            "-m",
            &format!("proposal {n}"),
        ],
    );
    let id = ulid_like();
    git(
        &bare,
        &[
            "update-ref",
            &format!("refs/heads/cup/proposal/{id}"),
            &commit,
        ],
    );
    id
}

/// A new proposal id: 26 Crockford base32 digits, as a ULID, increasing within a test.
fn ulid_like() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("01J{:013}{n:010}", millis % 10_000_000_000_000)
}

/// The ids `GET /proposals` lists when its pages are followed, `limit` at a time, and
/// the number of pages.
fn list_all(cupd: &Cupd, limit: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            None => format!("/proposals?limit={limit}"),
            Some(token) => format!("/proposals?limit={limit}&continue={token}"),
        };
        let response = cupd.get(&path);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        let page = response.json();
        pages += 1;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= limit, "{path}: {} items", items.len());
        ids.extend(items.iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        match page["metadata"]["continue"].as_str() {
            Some(token) => {
                assert_eq!(token, ids.last().unwrap(), "the token is the last id");
                next = Some(token.to_owned());
            }
            None => return (ids, pages),
        }
    }
}

#[test]
fn listing_pages_follow_the_continue_token() {
    let fixture = Fixture::new();
    let mut pushed: Vec<String> = (0..5).map(|n| push_proposal(&fixture, n)).collect();
    pushed.sort();
    let url = fixture.bare().to_str().unwrap().to_owned();
    let cupd = Cupd::start(&fixture.config(&url, &[], &[]));

    let (ids, pages) = list_all(&cupd, 2);
    assert_eq!(ids, pushed, "every open proposal, by id, once");
    assert_eq!(pages, 3);
    let whole = cupd.get("/proposals").json();
    assert_eq!(whole["items"].as_array().unwrap().len(), 5);
    assert!(whole["metadata"].get("continue").is_none(), "{whole}");
    // More than a page holds is a full page, not an error.
    assert_eq!(list_all(&cupd, 100_000).0, pushed);
    for bad in ["0", "-1", "two", "1.5"] {
        let r = cupd.get(&format!("/proposals?limit={bad}"));
        assert_eq!(r.status, 400, "limit={bad}: {}", r.text());
        assert!(r.text().contains("?limit="), "{}", r.text());
    }
    // A token past the last id: an empty last page.
    let r = cupd.get(&format!("/proposals?continue={}", pushed[4]));
    assert_eq!(
        r.json(),
        serde_json::json!({"metadata": {}, "items": []}),
        "{}",
        r.text()
    );
}

/// Advertisements of `git-upload-pack` the server answered: one per fetch.
fn upload_packs(server: &GitHttp) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.status == 200 && r.query.contains("service=git-upload-pack"))
        .count()
}

#[test]
fn concurrent_listings_share_fetches_and_never_miss_what_was_pushed_before() {
    const CLIENTS: usize = 50;
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    for n in 0..3 {
        push_proposal(&fixture, n);
    }
    let url = server.url_with(USER, TOKEN, "remote.git");
    let cupd = Cupd::start(&fixture.config(&url, &[], &[]));

    let before = upload_packs(&server);
    let barrier = std::sync::Barrier::new(CLIENTS);
    let listed: Vec<usize> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let r = cupd.get("/proposals");
                    assert_eq!(r.status, 200, "{}", r.text());
                    r.json()["items"].as_array().unwrap().len()
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let fetches = upload_packs(&server) - before;
    eprintln!("{CLIENTS} concurrent GET /proposals: {fetches} fetches");
    assert!(listed.iter().all(|&n| n == 3), "{listed:?}");
    assert!(
        fetches <= CLIENTS / 5,
        "{fetches} fetches for {CLIENTS} listings that arrived together"
    );

    // Whatever reached the remote before a listing was asked for is in it.
    let late = push_proposal(&fixture, 3);
    let r = cupd.get("/proposals").json();
    let ids: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&late.as_str()), "{ids:?}");
    assert_eq!(upload_packs(&server) - before, fetches + 1);
}

/// The fields `/status` reports about the Git source.
fn git_status(cupd: &Cupd) -> serde_json::Value {
    let status = cupd.get("/status").json();
    assert_eq!(status["source"]["type"], "git", "{status}");
    status["source"].clone()
}

#[test]
fn a_restart_with_the_http_remote_down_serves_the_cache_and_status_says_why() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let url = server.url_with(USER, TOKEN, "remote.git");
    let mut cupd = Cupd::start(&fixture.config(&url, &[], &[]));
    let source = git_status(&cupd);
    assert!(source["fetched_at"].is_string(), "{source}");
    assert!(source.get("fetch_error").is_none(), "{source}");
    let fetched_at = source["fetched_at"].as_str().unwrap().to_owned();
    assert_eq!(cupd.terminate(), Some(0));

    drop(server); // the remote is gone
    let cupd =
        Cupd::try_start(&fixture.config(&url, &[], &[])).expect("cupd starts on the cache it has");
    assert!(
        cupd.log().contains("serving the git cache as last fetched"),
        "{}",
        cupd.log()
    );
    // The last fetched state, default branch included.
    let r = cupd.get(&format!("{RESOURCES}/foo"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spec"], serde_json::json!({"foo": "bar"}));
    let source = git_status(&cupd);
    eprintln!("/status source with the remote down: {source}");
    assert_eq!(source["default_branch"], "main");
    assert_eq!(source["fetched_at"], fetched_at.as_str(), "{source}");
    let error = source["fetch_error"].as_str().expect("fetch_error");
    assert!(error.contains("fetching from"), "{error}");
    assert!(!error.contains(TOKEN), "no secret: {error}");
    assert!(source["fetch_error_at"].is_string(), "{source}");
    // Calls that need the remote say why they cannot.
    let r = cupd.get("/proposals");
    assert_eq!(r.status, 500, "{}", r.text());
}

#[test]
fn a_remote_that_comes_back_clears_the_fetch_error() {
    let fixture = Fixture::new();
    let url = fixture.bare().to_str().unwrap().to_owned();
    let mut cupd = Cupd::start(&fixture.config(&url, &[], &[]));
    assert_eq!(cupd.terminate(), Some(0));
    let away = fixture.path("away.git");
    std::fs::rename(fixture.bare(), &away).unwrap();
    let cupd =
        Cupd::try_start(&fixture.config(&url, &[], &[])).expect("cupd starts on the cache it has");
    assert!(git_status(&cupd)["fetch_error"].is_string());
    assert_eq!(cupd.get(&format!("{RESOURCES}/foo")).status, 200);

    std::fs::rename(&away, fixture.bare()).unwrap();
    let id = push_proposal(&fixture, 0);
    let r = cupd.get("/proposals");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["items"][0]["id"], id.as_str());
    let source = git_status(&cupd);
    assert!(source.get("fetch_error").is_none(), "{source}");
    assert!(source["fetched_at"].is_string(), "{source}");
}

/// A `file://` remote with tags of a blob and of a tree: new commits keep arriving (libgit2
/// failed every such fetch while the cache held those tags), and the tags are no revisions.
#[test]
fn tags_of_no_commit_on_a_file_remote_do_not_stop_new_commits() {
    let fixture = Fixture::new();
    let bare = fixture.bare();
    let url = format!("file://{}", bare.display());
    let cupd = Cupd::start(&fixture.config(&url, &[], &[]));
    let tree = git(&bare, &["rev-parse", "main^{tree}"]);
    let blob = git(
        &bare,
        &[
            "rev-parse",
            "main:default/test.cup.flipt.io-v1alpha1-Resource-foo.json",
        ],
    );
    git(&bare, &["tag", "tree-tag", &tree]);
    git(&bare, &["tag", "-a", "-m", "a blob", "blob-tag", &blob]);
    let first = push_proposal(&fixture, 0);
    assert_eq!(cupd.get("/proposals").status, 200);
    // Something new to download after the tags reached the cache.
    let second = push_proposal(&fixture, 1);
    let r = cupd.get("/proposals");
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = r.json()["items"].as_array().unwrap().len();
    assert_eq!(listed, 2, "{first} and {second}: {}", r.text());
    for tag in ["tree-tag", "blob-tag"] {
        let r = cupd.get(&format!("{RESOURCES}/foo?revision={tag}"));
        assert_eq!(r.status, 404, "{tag}: {}", r.text());
    }
    assert!(git_status(&cupd).get("fetch_error").is_none());
}

/// A remote that stops answering after startup: a write fetches its base first, and when
/// that fetch times out the write is not made, after one `--git-timeout` (not a second one
/// spent on a push), and nothing reaches the remote once it answers again. Reads go on from
/// the cache meanwhile.
#[test]
fn a_write_on_a_stalled_remote_fails_after_one_timeout_and_is_not_made() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let url = server.url_with(USER, TOKEN, "remote.git");
    let cupd = Cupd::start(&fixture.config(&url, &["--git-timeout", "2s"], &[]));
    server.stall(true);
    let started = std::time::Instant::now();
    let r = cupd.request(
        "PUT",
        &format!("{RESOURCES}/baz"),
        &[("Content-Type", "application/json")],
        crate::cupd_git_common::BAZ_PAYLOAD.as_bytes(),
    );
    let took = started.elapsed();
    let text = r.text();
    eprintln!(
        "PUT on a stalled remote: {} after {took:?}: {text}",
        r.status
    );
    assert_eq!(r.status, 500, "{text}");
    assert!(text.contains("fetching from"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(took < std::time::Duration::from_millis(3900), "{took:?}");
    assert!(server.held() >= 1, "the remote was contacted");
    let read = cupd.get(&format!("{RESOURCES}/foo"));
    assert_eq!(read.status, 200, "{}", read.text());
    server.stall(false);
    let branches = git(&fixture.bare(), &["branch", "--list", "cup/proposal/*"]);
    assert_eq!(branches, "", "nothing pushed");
}
