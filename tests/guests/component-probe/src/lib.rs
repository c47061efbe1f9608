//! A controller component whose behaviour is chosen by the resource name, so one component
//! exercises every part of the sandbox and of the typed interface.
//!
//! Files: `get`/`put`/`delete` of an ordinary name use `/<namespace>/<name>.json`, holding the
//! resource's spec; `list` returns one resource per such file. Special names:
//! `spin`, `sleep`, `grow`, `log`, `trap`, `bad-spec`, `dup-label`, `invalid`, `failed`,
//! `socket`, `escape`, `env`, `write-then-fail`. `list` in the namespace `alias` returns 100
//! records whose specs all point at the same 1 MiB of memory (what a hostile guest can do to
//! make the host copy far more than the guest holds).

use std::io::Write;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "cup-controller",
});

use exports::cup::controller::controller::Guest;
use cup::controller::types::{Error, Metadata, Request, Resource};

struct Probe;

fn file(req: &Request, name: &str) -> String {
    format!("/{}/{}.json", req.namespace, name)
}

fn resource(req: &Request, name: &str, spec: String) -> Resource {
    Resource {
        api_version: "test.cup.dev/v1".into(),
        kind: req.kind.clone(),
        metadata: Metadata {
            namespace: req.namespace.clone(),
            name: name.into(),
            labels: Some(vec![("probe".into(), "yes".into())]),
            annotations: None,
        },
        spec,
    }
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::Failed(format!("{what}: {e}"))
}

impl Guest for Probe {
    fn get(req: Request, name: String) -> Result<Resource, Error> {
        match name.as_str() {
            "spin" => loop {
                std::hint::black_box(0u64);
            },
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Err(Error::Failed("woke up".into()))
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                }
            }
            "log" => {
                let line = [b'x'; 1023];
                for _ in 0..1024 {
                    std::io::stdout().write_all(&line).ok();
                    std::io::stderr().write_all(b"\n").ok();
                }
                Ok(resource(&req, &name, "{}".into()))
            }
            "trap" => {
                eprintln!("about to trap");
                core::arch::wasm32::unreachable()
            }
            "bad-spec" => Ok(resource(&req, &name, "{not json".into())),
            "dup-label" => {
                let mut r = resource(&req, &name, "{}".into());
                r.metadata.labels = Some(vec![("a".into(), "1".into()), ("a".into(), "2".into())]);
                Ok(r)
            }
            "invalid" => Err(Error::Invalid("the probe refuses this one".into())),
            "failed" => {
                eprintln!("a log line before failing");
                Err(Error::Failed("the probe failed on purpose".into()))
            }
            "socket" => match std::net::TcpStream::connect("127.0.0.1:1") {
                Ok(_) => Err(Error::Failed("connected".into())),
                Err(e) => Err(Error::NotFound(format!("socket refused: {e}"))),
            },
            "escape" => match std::fs::read_to_string("/../../../../etc/hostname") {
                Ok(text) => Err(Error::Failed(format!("escaped: {text}"))),
                Err(e) => Err(Error::NotFound(format!("escape refused: {e}"))),
            },
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                Ok(resource(
                    &req,
                    &name,
                    format!("{{\"vars\":{},\"args\":{}}}", vars.len(), args.len()),
                ))
            }
            _ => match std::fs::read_to_string(file(&req, &name)) {
                Ok(spec) => Ok(resource(&req, &name, spec)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(Error::NotFound(format!("no file {}", file(&req, &name))))
                }
                Err(e) => Err(io("reading", e)),
            },
        }
    }

    fn list(req: Request) -> Result<Vec<Resource>, Error> {
        if req.namespace == "alias" {
            return Ok(aliased(&req));
        }
        let dir = format!("/{}", req.namespace);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("listing", e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| Self::get(req.clone(), name))
            .collect()
    }

    fn put(req: Request, name: String, res: Resource) -> Result<(), Error> {
        if name == "invalid" {
            return Err(Error::Invalid("the probe refuses to store this one".into()));
        }
        if res.metadata.name != name || res.metadata.namespace != req.namespace {
            return Err(Error::Invalid(format!(
                "body names {}/{}",
                res.metadata.namespace, res.metadata.name
            )));
        }
        std::fs::create_dir_all(format!("/{}", req.namespace)).map_err(|e| io("mkdir", e))?;
        std::fs::write(file(&req, &name), res.spec.as_bytes()).map_err(|e| io("writing", e))?;
        if name == "write-then-fail" {
            return Err(Error::Failed("wrote, then failed".into()));
        }
        Ok(())
    }

    fn delete(req: Request, name: String) -> Result<(), Error> {
        match std::fs::remove_file(file(&req, &name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(format!("no file {}", file(&req, &name))))
            }
            Err(e) => Err(io("removing", e)),
        }
    }
}

/// 100 resources whose specs share one 1 MiB buffer: 100 MiB for whoever copies them, 1 MiB
/// in the guest.
fn aliased(req: &Request) -> Vec<Resource> {
    let mut big = format!("\"{}\"", "a".repeat((1 << 20) - 2));
    let (ptr, len) = (big.as_mut_ptr(), big.len());
    // The buffer outlives every alias: it is never freed by this side.
    std::mem::forget(big);
    (0..100)
        .map(|i| {
            // SAFETY: `ptr` is a live, initialised UTF-8 buffer of `len` bytes that is never
            // freed here. The aliases are handed to the host, which only reads them; their
            // deallocation after the call (post-return) is what a hostile guest would not
            // care about, and the host is expected to refuse the answer before that.
            let spec = unsafe { String::from_raw_parts(ptr, len, len) };
            resource(req, &format!("r{i}"), spec)
        })
        .collect()
}

export!(Probe);
