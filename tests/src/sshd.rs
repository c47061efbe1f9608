//! A real OpenSSH server and ssh-agent for Git-over-SSH tests, all in one temp dir:
//! `ssh-keygen` makes a host key and user keys, `/usr/sbin/sshd -D -e` listens on a free
//! 127.0.0.1 port accepting only the user key (no passwords, no PAM), `ssh-agent -D -a
//! SOCK` holds keys on a private socket, and a known_hosts file names the host key as
//! `[127.0.0.1]:PORT`. Every process is a child stopped by its PID at drop.
//!
//! Works as root (the sshd privilege-separation directory /run/sshd is created if missing,
//! root logins are allowed with keys only) and as a normal user (sshd then serves only
//! that user, which is the one logging in).

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether sshd is installed (`openssh-server`).
pub fn available() -> bool {
    Path::new(SSHD).is_file()
}

/// A running sshd on 127.0.0.1 and its keys.
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    user: String,
}

impl Sshd {
    /// Generates keys and starts sshd; panics with its log if it does not listen.
    pub fn start() -> Sshd {
        assert!(
            available(),
            "{SSHD} is missing: apt-get install openssh-server"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        for key in ["host_key", "user_key", "other_key"] {
            keygen(&dir.path().join(key));
        }
        std::fs::copy(
            dir.path().join("user_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        if is_root() {
            // sshd refuses to start without its privilege-separation directory.
            std::fs::create_dir_all("/run/sshd").expect("creating /run/sshd");
        }
        for _ in 0..5 {
            let port = crate::http::free_port();
            if let Some(sshd) = Self::try_start(&dir, port) {
                return Sshd {
                    dir,
                    port,
                    child: Some(sshd),
                    user: current_user(),
                };
            }
        }
        panic!(
            "sshd did not start:\n{}",
            std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default()
        );
    }

    fn try_start(dir: &tempfile::TempDir, port: u16) -> Option<Child> {
        let d = dir.path().display();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n"
            ),
        )
        .expect("sshd_config");
        let log = std::fs::File::create(dir.path().join("sshd.log")).expect("sshd log");
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .arg("-p")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning sshd");
        let deadline = Instant::now() + START_TIMEOUT;
        let log = dir.path().join("sshd.log");
        let listening = format!("Server listening on 127.0.0.1 port {port}.");
        while Instant::now() < deadline {
            // Only once this sshd logged its listener is the port its own: another test's
            // sshd, with other keys, may hold a port just chosen.
            let bound = std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&listening));
            if let Some(mut stream) = bound
                .then(|| TcpStream::connect(("127.0.0.1", port)).ok())
                .flatten()
            {
                // sshd speaks first: its banner proves it serves SSH.
                let mut banner = [0u8; 4];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    return Some(child);
                }
            }
            if child.try_wait().ok().flatten().is_some() {
                return None; // e.g. the port was taken meanwhile
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// `ssh://USER@127.0.0.1:PORT/<absolute path>`.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }

    /// The login name in [`Sshd::url`]: the user running the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The key sshd accepts.
    pub fn user_key(&self) -> PathBuf {
        self.dir.path().join("user_key")
    }

    /// A key sshd does not accept.
    pub fn other_key(&self) -> PathBuf {
        self.dir.path().join("other_key")
    }

    /// A known_hosts file trusting this server's host key.
    pub fn known_hosts(&self) -> PathBuf {
        let file = self.dir.path().join("known_hosts");
        let public =
            std::fs::read_to_string(self.dir.path().join("host_key.pub")).expect("host_key.pub");
        let mut fields = public.split_whitespace();
        let (kind, key) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        std::fs::write(&file, format!("[127.0.0.1]:{} {kind} {key}\n", self.port))
            .expect("writing known_hosts");
        file
    }

    /// A known_hosts file naming this server with a different key of the same type.
    pub fn wrong_known_hosts(&self) -> PathBuf {
        let file = self.dir.path().join("wrong_known_hosts");
        let public =
            std::fs::read_to_string(self.dir.path().join("other_key.pub")).expect("other_key.pub");
        let mut fields = public.split_whitespace();
        let (kind, key) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        std::fs::write(&file, format!("[127.0.0.1]:{} {kind} {key}\n", self.port))
            .expect("writing known_hosts");
        file
    }

    /// Everything sshd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private ssh-agent on its own socket.
pub struct Agent {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// Starts `ssh-agent -D -a SOCK` (foreground, so its PID is the child's) holding `keys`.
    pub fn start(keys: &[&Path]) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning ssh-agent");
        let mut agent = Agent {
            _dir: dir,
            socket,
            child: Some(child),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !agent.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "ssh-agent did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for key in keys {
            agent.add(key);
        }
        agent
    }

    fn add(&mut self, key: &Path) {
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null())
            .output()
            .expect("running ssh-add");
        assert!(
            out.status.success(),
            "ssh-add {}: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The value for `SSH_AUTH_SOCK`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "cup-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("running ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("running id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
