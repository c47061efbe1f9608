//! `probe`: a test and abuse controller for cup-runtime.
//!
//! It is a WASI preview 1 command like a real cup controller (argv `["wasi", verb, ...]`, the
//! source tree mounted at `/`), but each verb exercises one promise of the host: I/O round
//! trips, exit codes, the filesystem sandbox, and every limit (deadline, memory, output, stack).
//!
//! Verbs (argv[1]):
//! - `echo ...`            print `{"args":[...],"stdin":"..."}` and a newline
//! - `exit N`              exit with code N
//! - `read PATH`           copy the file to stdout (exit 2 if it does not exist, 1 on other errors)
//! - `write PATH CONTENT`  write CONTENT to PATH, print `ok` or `error <kind>`
//! - `mutate DIR`          try every kind of filesystem mutation on `DIR/existing.txt` and
//!   `DIR/sub/`, one line per attempt: `<op> ok` or `<op> error <kind>`
//! - `ls PATH`             print the sorted entry names of a directory
//! - `env`                 print the environment, one `K=V` per line, then `count N`
//! - `spin`                loop forever
//! - `sleep MS`            sleep (a host call, not a loop), then print `slept`
//! - `grow`                allocate and touch memory until the host stops it
//! - `flood N`             write N bytes to stdout
//! - `spew N`              write N bytes to stderr, then `done` to stdout
//! - `recurse`             recurse without bound
//! - `trap`                execute `unreachable`
//! - `panic`               panic (message on stderr, then abort)
//!
//! Served through cupd (the cup ABI, argv `["wasi", verb, Kind, ns, name?]`) with Kind
//! `Escape`, it tries to get out of its mount (see [`escape`]): a host that contains it
//! answers 404/500; one that does not leaks the secret into the response.
//!
//! Other cup-ABI Kinds misbehave in one way each, for every verb (see [`abuse`]), so the
//! server's handling of a hostile controller can be tested through HTTP:
//! - `Exit`     exit with the code given as the resource name (list: the namespace)
//! - `Garbage`  exit 0 after writing something that is not a resource stream to stdout;
//!   the name picks what (`text`, `half`, `binary`, `array`, `tail` = a good resource then junk)
//! - `Deep`     recurse without bound
//! - `Flood`    write 100 MiB (or the name's number of bytes) to stdout, exit 0
//! - `Spin`     loop forever
//! - `Grow`     allocate without bound
//! - `Sparse`, `Nest`: `put` leaves a 2 GiB sparse file or deeply nested directories in
//!   its checkout, exit 0 (see [`sparse`])
//! - `Slow`     get sleeps for the name's number of milliseconds, then answers (see [`slow`])
//! - `Braces`   write 15 MiB (or the name's number of bytes) of `{}` to stdout, exit 0 (see
//!   [`amplify`])

mod amplify;
mod slow;
mod sparse;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let verb = args.get(1).map(String::as_str).unwrap_or("");
    let arg = |i: usize| -> &str {
        match args.get(i) {
            Some(a) => a,
            None => {
                eprintln!("probe {verb}: missing argument {i}");
                exit(64)
            }
        }
    };
    match verb {
        "echo" => echo(&args),
        "exit" => exit(number(arg(2)) as i32),
        "read" => read(arg(2)),
        "write" => report("write", fs::write(arg(2), arg(3))),
        "mutate" => mutate(arg(2)),
        "ls" => ls(arg(2)),
        "env" => env(),
        "spin" => spin(),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_millis(number(arg(2))));
            println!("slept");
        }
        "grow" => grow(),
        "flood" => flood(&mut io::stdout().lock(), number(arg(2))),
        "spew" => {
            flood(&mut io::stderr().lock(), number(arg(2)));
            println!("done");
        }
        "recurse" => {
            let depth = recurse(0);
            println!("{depth}");
        }
        "trap" => core::arch::wasm32::unreachable(),
        "panic" => panic!("probe was asked to panic"),
        "get" | "list" | "put" | "delete" if args.get(2).map(String::as_str) == Some("Escape") => {
            escape(verb, args.get(3).map_or("default", String::as_str))
        }
        "get" | "list" | "put" | "delete"
            if args.len() >= 4 && matches!(arg(2), "Sparse" | "Nest") =>
        {
            sparse::abuse(verb, arg(2), args.get(4).map_or(arg(3), String::as_str))
        }
        "get" | "list" | "put" | "delete" if args.len() >= 4 && arg(2) == "Slow" => {
            slow::abuse(verb, arg(3), args.get(4).map_or("", String::as_str))
        }
        "get" | "list" | "put" | "delete" if args.len() >= 4 => abuse(
            arg(2),
            arg(3),
            // list has no name: the namespace selects the variant.
            args.get(4).map_or(arg(3), String::as_str),
        ),
        other => {
            eprintln!("probe: unknown verb {other:?}");
            exit(64)
        }
    }
}

fn number(s: &str) -> u64 {
    match s.parse() {
        Ok(n) => n,
        Err(_) => {
            eprintln!("probe: not a number: {s:?}");
            exit(64)
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn echo(args: &[String]) {
    let mut stdin = String::new();
    if let Err(e) = io::stdin().read_to_string(&mut stdin) {
        eprintln!("probe echo: reading stdin: {e}");
        exit(1);
    }
    let args: Vec<String> = args.iter().map(|a| json_string(a)).collect();
    println!(
        "{{\"args\":[{}],\"stdin\":{}}}",
        args.join(","),
        json_string(&stdin)
    );
}

fn read(path: &str) {
    match fs::read(path) {
        Ok(bytes) => {
            if let Err(e) = io::stdout().write_all(&bytes) {
                eprintln!("probe read: writing stdout: {e}");
                exit(1);
            }
        }
        Err(e) => {
            eprintln!("probe read {path}: {:?}: {e}", e.kind());
            exit(if e.kind() == io::ErrorKind::NotFound {
                2
            } else {
                1
            })
        }
    }
}

fn report<T>(op: &str, result: io::Result<T>) {
    match result {
        Ok(_) => println!("{op} ok"),
        Err(e) => println!("{op} error {:?}", e.kind()),
    }
}

/// Every mutation a guest could try through WASI p1, so a test can check that a read-only
/// mount refuses all of them (not just the obvious `open(O_CREAT)`).
fn mutate(dir: &str) {
    let existing = format!("{dir}/existing.txt");
    let sub = format!("{dir}/sub");
    report("create", File::create(format!("{dir}/new.txt")));
    report(
        "truncate",
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&existing),
    );
    report("append", OpenOptions::new().append(true).open(&existing));
    report(
        "write-via-read-handle",
        File::open(&existing).and_then(|mut f| f.write_all(b"x")),
    );
    report("set-len", File::open(&existing).and_then(|f| f.set_len(0)));
    report(
        "set-times",
        File::open(&existing).and_then(|f| f.set_modified(std::time::SystemTime::UNIX_EPOCH)),
    );
    report("mkdir", fs::create_dir(format!("{dir}/newdir")));
    report(
        "hard-link",
        fs::hard_link(&existing, format!("{dir}/link.txt")),
    );
    report("rename", fs::rename(&existing, format!("{dir}/moved.txt")));
    report("remove-file", fs::remove_file(&existing));
    report("remove-dir", fs::remove_dir(&sub));
}

fn ls(path: &str) {
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("probe ls {path}: {:?}: {e}", e.kind());
            exit(1)
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        println!("{n}");
    }
}

fn env() {
    let mut n = 0;
    for (k, v) in std::env::vars() {
        println!("{k}={v}");
        n += 1;
    }
    println!("count {n}");
}

fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        // black_box keeps the loop from being folded away, so the host really has to interrupt it.
        i = std::hint::black_box(i.wrapping_add(1));
    }
}

fn grow() {
    let mut keep: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really used, not just reserved.
        keep.push(vec![0xA5; 1 << 20]);
        let total = keep.len();
        std::hint::black_box(&keep);
        if total.is_multiple_of(64) {
            eprintln!("probe grow: {total} MiB");
        }
    }
}

fn flood(out: &mut dyn Write, n: u64) {
    let chunk = [b'x'; 8192];
    let mut left = n;
    while left > 0 {
        let len = left.min(chunk.len() as u64) as usize;
        if let Err(e) = out.write_all(&chunk[..len]) {
            // Never panic here: writing the panic message could fail the same way.
            let _ = writeln!(io::stderr(), "probe flood: {e}");
            exit(3);
        }
        left -= len as u64;
    }
    let _ = out.flush();
}

// Unbounded on purpose: the host's stack limit is what ends it.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // A frame that is not a tail call and not foldable, so the stack really grows.
    let local = std::hint::black_box([depth; 16]);
    let below = recurse(std::hint::black_box(depth + 1));
    below.wrapping_add(local[(depth % 16) as usize])
}

/// The cup-ABI abuse Kinds (module docs). `what` is the resource name, or the namespace for
/// a list, and picks the variant.
fn abuse(kind: &str, namespace: &str, what: &str) {
    match kind {
        "Exit" => exit(number(what) as i32),
        "Garbage" => {
            let mut out = io::stdout().lock();
            let junk: &[u8] = match what {
                "text" => b"this is not JSON\n",
                "half" => b"{\"apiVersion\":\"example.com/v1\",\"kind\":",
                "binary" => b"\xff\xfe\x00\x01garbage\x80",
                "array" => b"[1,2,3]\n",
                _ => {
                    // A good resource first: a list must not come back as the good prefix.
                    let _ = writeln!(
                        out,
                        "{{\"apiVersion\":\"example.com/v1\",\"kind\":\"Garbage\",\"metadata\":{{\"namespace\":{namespace:?},\"name\":\"good\"}},\"spec\":{{}}}}"
                    );
                    b"} not json {\n"
                }
            };
            if out.write_all(junk).and_then(|()| out.flush()).is_err() {
                exit(3);
            }
        }
        "Deep" => {
            let depth = recurse(0);
            println!("{depth}");
        }
        "Flood" => {
            let n = what.parse().unwrap_or(100 << 20);
            flood(&mut io::stdout().lock(), n);
        }
        "Spin" => spin(),
        "Grow" => grow(),
        "Braces" => amplify::braces(what.parse().unwrap_or(15 << 20)),
        other => {
            eprintln!("probe: unknown Kind {other:?}");
            exit(64)
        }
    }
}

/// Paths that lead out of the mount if the host lets them: `..` above the root, a symlink
/// to a file outside, a symlink to a directory outside (the test creates both links).
const ESCAPES: [&str; 5] = [
    "/../secret.txt",
    "../secret.txt",
    "/secret-link",
    "/outside-link/secret.txt",
    "/../../../../etc/hostname",
];

/// The cup-ABI abuse controller: `get`/`list` try to read outside the mount (and to write
/// inside their read-only mount); `put`/`delete` try to write outside it. Any success is
/// reported as a resource on stdout with exit 0, so a leak shows in the HTTP response; when
/// every attempt fails, the errors go to stderr and the exit code is 1.
fn escape(verb: &str, namespace: &str) {
    let mut errors = Vec::new();
    let leak = |what: &str, detail: &str| -> ! {
        println!(
            "{{\"apiVersion\":\"example.com/v1\",\"kind\":\"Escape\",\"metadata\":{{\"namespace\":{namespace:?},\"name\":\"leak\"}},\"spec\":{{\"what\":{what:?},\"detail\":{detail:?}}}}}"
        );
        exit(0)
    };
    match verb {
        "get" | "list" => {
            for path in ESCAPES {
                match fs::read_to_string(path) {
                    Ok(content) => leak(path, &content),
                    Err(e) => errors.push(format!("read {path}: {}", e.kind())),
                }
            }
            // The mount is read-only for both reads: a write must fail in the guest.
            let path = format!("/written-during-{verb}.txt");
            match fs::write(&path, "x") {
                Ok(()) => leak(&path, "written"),
                Err(e) => errors.push(format!("write during {verb}: {}", e.kind())),
            }
        }
        _ => {
            for path in [
                "/../escaped.txt",
                "../escaped.txt",
                "/outside-link/escaped.txt",
            ] {
                match fs::write(path, "escaped") {
                    Ok(()) => leak(path, "written"),
                    Err(e) => errors.push(format!("write {path}: {}", e.kind())),
                }
            }
        }
    }
    eprintln!("contained: {}", errors.join("; "));
    exit(1)
}
