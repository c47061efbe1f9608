//! SSH Git remotes through the real cupd: a real OpenSSH sshd on 127.0.0.1 serving the
//! bare repository with `git-upload-pack`/`git-receive-pack`, a real ssh-agent holding
//! the user key, and a known_hosts file (`cup_e2e::sshd`). Reads and a put over ssh, then
//! each refusal: no agent, an agent without the right key, an unknown or changed host key.

use crate::cupd_git_common::{FOO, Fixture, RESOURCES, put_baz_and_read_back, refused};
use cup_e2e::cupd::Cupd;
use cup_e2e::sshd::{Agent, Sshd};

fn socket(agent: &Agent) -> &str {
    agent.socket().to_str().unwrap()
}

#[test]
fn read_and_propose_over_ssh_through_the_agent() {
    let fixture = Fixture::new();
    let sshd = Sshd::start();
    let agent = Agent::start(&[&sshd.user_key()]);
    let known_hosts = sshd.known_hosts();
    let cupd = Cupd::start(&fixture.config(
        &sshd.url(&fixture.bare()),
        &["--api-git-known-hosts", known_hosts.to_str().unwrap()],
        &[("SSH_AUTH_SOCK", socket(&agent))],
    ));
    assert_eq!(
        cupd.get(&format!("{RESOURCES}/foo")).text(),
        format!("{FOO}\n"),
        "{}",
        sshd.log()
    );
    put_baz_and_read_back(&cupd, &fixture);
    let listed = cupd.get("/proposals");
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json()["items"].as_array().map(Vec::len), Some(1));
    drop(cupd);

    // Without the flag, ~/.ssh/known_hosts is the file checked; here hashed by OpenSSH
    // itself (`ssh-keygen -H`, what Debian's `HashKnownHosts yes` writes).
    let home = fixture.path("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let default_file = home.join(".ssh/known_hosts");
    std::fs::copy(&known_hosts, &default_file).unwrap();
    let hashed = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&default_file)
        .output()
        .expect("ssh-keygen runs");
    assert!(hashed.status.success(), "{hashed:?}");
    let text = std::fs::read_to_string(&default_file).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains("127.0.0.1"),
        "{text}"
    );
    let cupd = Cupd::start(&fixture.config(
        &sshd.url(&fixture.bare()),
        &[],
        &[
            ("SSH_AUTH_SOCK", socket(&agent)),
            ("HOME", home.to_str().unwrap()),
        ],
    ));
    assert_eq!(cupd.get(&format!("{RESOURCES}/foo")).status, 200);
    drop(cupd);

    // A URL without a user logs in as $USER, as `ssh` does.
    let anonymous = sshd
        .url(&fixture.bare())
        .replacen(&format!("{}@", sshd.user()), "", 1);
    assert!(!anonymous.contains('@'), "{anonymous}");
    let cupd = Cupd::start(&fixture.config(
        &anonymous,
        &["--api-git-known-hosts", known_hosts.to_str().unwrap()],
        &[("SSH_AUTH_SOCK", socket(&agent)), ("USER", sshd.user())],
    ));
    assert_eq!(cupd.get(&format!("{RESOURCES}/foo")).status, 200);
}

#[test]
fn no_agent_is_a_clear_error() {
    let fixture = Fixture::new();
    let sshd = Sshd::start();
    let known_hosts = sshd.known_hosts();
    let flags = ["--api-git-known-hosts", known_hosts.to_str().unwrap()];
    let url = sshd.url(&fixture.bare());
    let log = refused(&fixture.config(&url, &flags, &[("SSH_AUTH_SOCK", "")]));
    assert!(
        log.contains("no ssh-agent: SSH_AUTH_SOCK is not set"),
        "{log}"
    );
    let gone = fixture.path("no-such-agent.sock");
    let log = refused(&fixture.config(&url, &flags, &[("SSH_AUTH_SOCK", gone.to_str().unwrap())]));
    assert!(
        log.contains(&format!("no ssh-agent at SSH_AUTH_SOCK={}", gone.display())),
        "{log}"
    );
}

#[test]
fn an_agent_without_the_right_key_is_a_clear_error() {
    let fixture = Fixture::new();
    let sshd = Sshd::start();
    let known_hosts = sshd.known_hosts();
    let flags = ["--api-git-known-hosts", known_hosts.to_str().unwrap()];
    let url = sshd.url(&fixture.bare());

    let empty = Agent::start(&[]);
    let log = refused(&fixture.config(&url, &flags, &[("SSH_AUTH_SOCK", socket(&empty))]));
    assert!(log.contains("holds no keys"), "{log}");

    let wrong = Agent::start(&[&sshd.other_key()]);
    let log = refused(&fixture.config(&url, &flags, &[("SSH_AUTH_SOCK", socket(&wrong))]));
    assert!(
        log.contains(&format!(
            "the SSH server accepted none of the keys in the ssh-agent at {} for user {:?}",
            socket(&wrong),
            sshd.user()
        )),
        "{log}\nsshd:\n{}",
        sshd.log()
    );
}

#[test]
fn unknown_or_changed_host_keys_are_refused() {
    let fixture = Fixture::new();
    let sshd = Sshd::start();
    let agent = Agent::start(&[&sshd.user_key()]);
    let env = [("SSH_AUTH_SOCK", socket(&agent))];
    let url = sshd.url(&fixture.bare());

    let empty = fixture.path("empty_known_hosts");
    std::fs::write(&empty, "# nobody\n").unwrap();
    let log = refused(&fixture.config(
        &url,
        &["--api-git-known-hosts", empty.to_str().unwrap()],
        &env,
    ));
    assert!(
        log.contains("is not in") && log.contains("refusing to connect to an unknown host"),
        "{log}"
    );
    assert!(log.contains("SHA256:"), "the fingerprint is shown: {log}");

    let wrong = sshd.wrong_known_hosts();
    let log = refused(&fixture.config(
        &url,
        &["--api-git-known-hosts", wrong.to_str().unwrap()],
        &env,
    ));
    assert!(
        log.contains("does not match") && log.contains("line 1"),
        "{log}"
    );

    let missing = fixture.path("missing_known_hosts");
    let log = refused(&fixture.config(
        &url,
        &["--api-git-known-hosts", missing.to_str().unwrap()],
        &env,
    ));
    assert!(log.contains("cannot read known_hosts file"), "{log}");
    let home = fixture.path("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let log = refused(&fixture.config(&url, &[], &[env[0], ("HOME", home.to_str().unwrap())]));
    assert!(
        log.contains(&format!(
            "cannot read known_hosts file {}",
            home.join(".ssh/known_hosts").display()
        )),
        "{log}"
    );
    // None of the refused attempts got as far as logging in.
    assert!(!sshd.log().contains("Accepted publickey"), "{}", sshd.log());
}
