//! argv parsing, stdin/stdout handling and exit codes: the ABI side of the SDK.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use crate::{Controller, EXIT_ERROR, EXIT_OK, Error, Request, Resource, Verb};

/// Runs one operation from the process's argv, stdin and stdout and returns its exit code,
/// for `main` to return: `fn main() -> ExitCode { cup_controller_sdk::run(&c) }` is the whole
/// `main` of a controller.
///
/// Returned rather than passed to `std::process::exit`: on wasm32-wasip1, `_start` then
/// returns normally for 0, and only a failure calls `proc_exit`, which the host sees as an
/// exit trap: unwinding and a captured backtrace, paid by every request for nothing.
pub fn run<C: Controller + ?Sized>(controller: &C) -> ExitCode {
    let code = match utf8_args(std::env::args_os()) {
        Ok(args) => dispatch(
            controller,
            &args,
            io::stdin().lock(),
            io::stdout().lock(),
            io::stderr().lock(),
        ),
        Err(message) => {
            report(&mut io::stderr().lock(), &message);
            EXIT_ERROR
        }
    };
    // Every code `dispatch` returns is one of the ABI's (0, 1, 2).
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs one operation and returns its exit code: what [`run`] does, with the process's
/// streams passed in so it can be tested on the host.
///
/// `args` is the full argv including `argv[0]` (the host passes `wasi`). `stdin` is read only
/// for `put`. On success the output is written to `stdout` in one piece; on failure nothing
/// goes to `stdout` and one line goes to `stderr`.
pub fn dispatch<C, A>(
    controller: &C,
    args: &[A],
    stdin: impl Read,
    mut stdout: impl Write,
    mut stderr: impl Write,
) -> i32
where
    C: Controller + ?Sized,
    A: AsRef<str>,
{
    let output = match execute(controller, args, stdin) {
        Ok(output) => output,
        Err(failure) => {
            report(&mut stderr, &failure.message);
            return failure.code;
        }
    };
    match stdout.write_all(&output).and_then(|()| stdout.flush()) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            report(&mut stderr, &format!("writing to stdout: {e}"));
            EXIT_ERROR
        }
    }
}

/// A failed operation: the exit code and the stderr message.
struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn usage(message: String) -> Self {
        Self {
            code: EXIT_ERROR,
            message,
        }
    }
}

/// One parsed invocation. The name lives in the variants that have one, so no code path
/// has to assume it is present.
#[derive(Clone, Copy)]
enum Call<'a> {
    Get(&'a str),
    List,
    Put(&'a str),
    Delete(&'a str),
}

impl Call<'_> {
    fn verb(&self) -> Verb {
        match self {
            Self::Get(_) => Verb::Get,
            Self::List => Verb::List,
            Self::Put(_) => Verb::Put,
            Self::Delete(_) => Verb::Delete,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Self::Get(name) | Self::Put(name) | Self::Delete(name) => Some(name),
            Self::List => None,
        }
    }
}

const USAGE: &str = "<get|list|put|delete> <Kind> <namespace> [<name>]";

/// Operands after the verb: kind, namespace and, except for `list`, name.
fn arity(verb: Verb) -> usize {
    match verb {
        Verb::List => 2,
        Verb::Get | Verb::Put | Verb::Delete => 3,
    }
}

fn usage(verb: Verb) -> &'static str {
    match verb {
        Verb::Get => "get <Kind> <namespace> <name>",
        Verb::List => "list <Kind> <namespace>",
        Verb::Put => "put <Kind> <namespace> <name>",
        Verb::Delete => "delete <Kind> <namespace> <name>",
    }
}

fn parse<'a>(kinds: &[&str], args: &'a [&'a str]) -> Result<(Request, Call<'a>), String> {
    let (verb, operands) = match args {
        [_, verb, operands @ ..] => (*verb, operands),
        _ => {
            return Err(format!(
                "too few arguments: got none, expected {USAGE} after the program name"
            ));
        }
    };
    let verb = Verb::parse(verb)
        .ok_or_else(|| format!("unknown verb {verb:?} (expected one of get, list, put, delete)"))?;
    let (kind, namespace, call) = match (verb, operands) {
        (Verb::Get, [kind, namespace, name]) => (kind, namespace, Call::Get(name)),
        (Verb::List, [kind, namespace]) => (kind, namespace, Call::List),
        (Verb::Put, [kind, namespace, name]) => (kind, namespace, Call::Put(name)),
        (Verb::Delete, [kind, namespace, name]) => (kind, namespace, Call::Delete(name)),
        (verb, operands) => {
            let many = if operands.len() < arity(verb) {
                "too few"
            } else {
                "too many"
            };
            return Err(format!(
                "{many} arguments for {verb}: got {}, expected {:?}",
                operands.len(),
                usage(verb)
            ));
        }
    };
    check_request(kinds, kind, namespace, call.name())?;
    Ok((Request::new(*kind, *namespace), call))
}

/// Refuses a kind the controller does not serve, and a namespace or name that could not be a
/// URL path segment, before any [`Controller`] method runs. Shared by both paths, so a
/// controller sees the same requests whether it runs as a command or as a component.
pub(crate) fn check_request(
    kinds: &[&str],
    kind: &str,
    namespace: &str,
    name: Option<&str>,
) -> Result<(), String> {
    if !kinds.contains(&kind) {
        let served = if kinds.is_empty() {
            "no kinds".to_owned()
        } else {
            kinds.join(", ")
        };
        return Err(format!(
            "unsupported kind: {kind:?} (this controller serves {served})"
        ));
    }
    check_segment("namespace", namespace)?;
    if let Some(name) = name {
        check_segment("name", name)?;
    }
    Ok(())
}

/// Namespaces and names come from URL path segments, so anything that could not be one is a
/// caller bug. Refusing it here also keeps controllers that build file paths from them safe
/// from `..` and `/`.
fn check_segment(what: &str, value: &str) -> Result<(), String> {
    let bad = value.is_empty()
        || value == "."
        || value == ".."
        || value.chars().any(|c| c == '/' || c.is_control());
    if bad {
        return Err(format!(
            "invalid {what} {value:?}: must be a non-empty path segment without '/' or control characters, and not '.' or '..'"
        ));
    }
    Ok(())
}

fn execute<C, A>(controller: &C, args: &[A], stdin: impl Read) -> Result<Vec<u8>, Failure>
where
    C: Controller + ?Sized,
    A: AsRef<str>,
{
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let (req, call) = parse(controller.kinds(), &args).map_err(Failure::usage)?;
    let in_context = |error: Error| {
        let target = match call.name() {
            Some(name) => format!("{}/{name}", req.namespace),
            None => req.namespace.clone(),
        };
        Failure {
            code: error.exit_code(),
            message: format!("{} {} {target}: {error}", call.verb(), req.kind),
        }
    };
    let mut output = Vec::new();
    match call {
        Call::Get(name) => {
            let resource = controller.get(&req, name).map_err(in_context)?;
            encode_line(&mut output, &resource).map_err(in_context)?;
        }
        Call::List => {
            for resource in controller.list(&req).map_err(in_context)? {
                encode_line(&mut output, &resource).map_err(in_context)?;
            }
        }
        Call::Put(name) => {
            let resource = read_resource(stdin).map_err(in_context)?;
            controller.put(&req, name, resource).map_err(in_context)?;
        }
        Call::Delete(name) => controller.delete(&req, name).map_err(in_context)?,
    }
    Ok(output)
}

fn encode_line(output: &mut Vec<u8>, resource: &Resource) -> Result<(), Error> {
    serde_json::to_writer(&mut *output, resource)
        .map_err(|e| Error::Other(format!("encoding the resource: {e}")))?;
    output.push(b'\n');
    Ok(())
}

fn read_resource(mut stdin: impl Read) -> Result<Resource, Error> {
    let mut bytes = Vec::new();
    stdin
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("reading the resource from stdin", e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Invalid(
            "stdin is empty: expected one JSON Resource".to_owned(),
        ));
    }
    // `from_slice` also refuses trailing non-whitespace: exactly one document is expected.
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("stdin is not one JSON Resource: {e}")))
}

/// Writes `message` as the single stderr line the host logs. A failure to write it cannot be
/// reported anywhere, so it is ignored.
fn report(stderr: &mut impl Write, message: &str) {
    let line: String = message
        .trim_end()
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let _ = writeln!(stderr, "{line}");
    let _ = stderr.flush();
}

fn utf8_args(args: impl IntoIterator<Item = OsString>) -> Result<Vec<String>, String> {
    args.into_iter()
        .map(|arg| {
            arg.into_string()
                .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    use super::*;
    use crate::{EXIT_NOT_FOUND, ResourceMeta};

    /// Resources in memory, keyed by (namespace, name). `put` uses `check_identity` like a
    /// real controller should.
    #[derive(Default)]
    struct Memory {
        items: RefCell<BTreeMap<(String, String), Resource>>,
        fail_io: Cell<bool>,
    }

    impl Memory {
        fn with(names: &[(&str, &str)]) -> Self {
            let memory = Self::default();
            for (namespace, name) in names {
                let resource = Request::new("Note", *namespace)
                    .resource("notes.io/v1", name, &serde_json::json!({"text": name}))
                    .expect("serializes");
                memory
                    .items
                    .borrow_mut()
                    .insert(((*namespace).to_owned(), (*name).to_owned()), resource);
            }
            memory
        }

        fn check_io(&self) -> Result<(), Error> {
            if self.fail_io.get() {
                return Err(Error::io(
                    "/notes.json",
                    io::Error::new(io::ErrorKind::PermissionDenied, "read-only file system"),
                ));
            }
            Ok(())
        }
    }

    impl Controller for Memory {
        fn kinds(&self) -> &[&str] {
            &["Note", "Memo"]
        }

        fn get(&self, req: &Request, name: &str) -> Result<Resource, Error> {
            self.check_io()?;
            self.items
                .borrow()
                .get(&(req.namespace.clone(), name.to_owned()))
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("note {name:?} does not exist")))
        }

        fn list(&self, req: &Request) -> Result<Vec<Resource>, Error> {
            self.check_io()?;
            Ok(self
                .items
                .borrow()
                .iter()
                .filter(|((namespace, _), _)| *namespace == req.namespace)
                .map(|(_, resource)| resource.clone())
                .collect())
        }

        fn put(&self, req: &Request, name: &str, resource: Resource) -> Result<(), Error> {
            self.check_io()?;
            req.check_identity(name, &resource)?;
            self.items
                .borrow_mut()
                .insert((req.namespace.clone(), name.to_owned()), resource);
            Ok(())
        }

        fn delete(&self, req: &Request, name: &str) -> Result<(), Error> {
            self.check_io()?;
            self.items
                .borrow_mut()
                .remove(&(req.namespace.clone(), name.to_owned()))
                .map(drop)
                .ok_or_else(|| Error::NotFound(format!("note {name:?} does not exist")))
        }
    }

    struct Outcome {
        code: i32,
        stdout: String,
        stderr: String,
    }

    fn call(controller: &Memory, args: &[&str], stdin: &str) -> Outcome {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let code = dispatch(controller, args, stdin.as_bytes(), &mut stdout, &mut stderr);
        Outcome {
            code,
            stdout: String::from_utf8(stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(stderr).expect("stderr is UTF-8"),
        }
    }

    /// Asserts a failure: the code, nothing on stdout, and exactly one stderr line that
    /// contains `needle`.
    fn assert_fails(outcome: &Outcome, code: i32, needle: &str) {
        assert_eq!(outcome.code, code, "stderr: {}", outcome.stderr);
        assert_eq!(outcome.stdout, "");
        assert!(outcome.stderr.ends_with('\n'), "{:?}", outcome.stderr);
        assert_eq!(
            outcome.stderr.matches('\n').count(),
            1,
            "{:?}",
            outcome.stderr
        );
        assert!(
            outcome.stderr.contains(needle),
            "{:?} lacks {needle:?}",
            outcome.stderr
        );
    }

    const A: &str = r#"{"apiVersion":"notes.io/v1","kind":"Note","metadata":{"namespace":"default","name":"a","labels":null,"annotations":null},"spec":{"text":"a"}}"#;
    const B: &str = r#"{"apiVersion":"notes.io/v1","kind":"Note","metadata":{"namespace":"default","name":"b","labels":null,"annotations":null},"spec":{"text":"b"}}"#;

    #[test]
    fn get_writes_one_compact_line() {
        let memory = Memory::with(&[("default", "a"), ("default", "b")]);
        let out = call(&memory, &["wasi", "get", "Note", "default", "a"], "");
        assert_eq!(out.code, EXIT_OK, "{}", out.stderr);
        assert_eq!(out.stdout, format!("{A}\n"));
        assert_eq!(out.stderr, "");
    }

    #[test]
    fn get_missing_exits_2_with_context() {
        let memory = Memory::with(&[("default", "a")]);
        let out = call(&memory, &["wasi", "get", "Note", "default", "zz"], "");
        assert_fails(&out, EXIT_NOT_FOUND, "");
        assert_eq!(
            out.stderr,
            "get Note default/zz: note \"zz\" does not exist\n"
        );
    }

    #[test]
    fn list_writes_one_line_per_item() {
        let memory = Memory::with(&[("default", "a"), ("default", "b"), ("prod", "c")]);
        let out = call(&memory, &["wasi", "list", "Note", "default"], "");
        assert_eq!(out.code, EXIT_OK, "{}", out.stderr);
        assert_eq!(out.stdout, format!("{A}\n{B}\n"));
    }

    #[test]
    fn list_of_nothing_is_empty_success() {
        let out = call(&Memory::default(), &["wasi", "list", "Memo", "default"], "");
        assert_eq!(out.code, EXIT_OK);
        assert_eq!(out.stdout, "");
        assert_eq!(out.stderr, "");
    }

    #[test]
    fn put_reads_stdin_and_stores() {
        let memory = Memory::default();
        let body = r#"{"apiVersion":"notes.io/v1","kind":"Note","metadata":{"namespace":"default","name":"a"},"spec":{"text":"a"}}"#;
        let out = call(
            &memory,
            &["wasi", "put", "Note", "default", "a"],
            &format!("{body}\n"),
        );
        assert_eq!(out.code, EXIT_OK, "{}", out.stderr);
        assert_eq!(out.stdout, "");
        let out = call(&memory, &["wasi", "get", "Note", "default", "a"], "");
        assert_eq!(out.stdout, format!("{A}\n"));
    }

    #[test]
    fn put_refuses_bad_json() {
        let memory = Memory::default();
        let args = ["wasi", "put", "Note", "default", "a"];
        assert_fails(
            &call(&memory, &args, "{not json"),
            EXIT_ERROR,
            "put Note default/a: stdin is not one JSON Resource:",
        );
        assert_fails(
            &call(&memory, &args, "null"),
            EXIT_ERROR,
            "stdin is not one JSON Resource",
        );
        assert_fails(
            &call(&memory, &args, &format!("{A}\n{B}\n")),
            EXIT_ERROR,
            "trailing characters",
        );
        assert_fails(&call(&memory, &args, " \n"), EXIT_ERROR, "stdin is empty");
        assert!(memory.items.borrow().is_empty());
    }

    #[test]
    fn put_refuses_body_for_another_resource() {
        let memory = Memory::default();
        let out = call(&memory, &["wasi", "put", "Note", "default", "b"], A);
        assert_fails(&out, EXIT_ERROR, "metadata.name \"a\" in the body");
        assert!(memory.items.borrow().is_empty());
    }

    #[test]
    fn delete_existing_then_missing() {
        let memory = Memory::with(&[("default", "a")]);
        let args = ["wasi", "delete", "Note", "default", "a"];
        let out = call(&memory, &args, "");
        assert_eq!(out.code, EXIT_OK, "{}", out.stderr);
        assert_eq!(out.stdout, "");
        assert_fails(&call(&memory, &args, ""), EXIT_NOT_FOUND, "does not exist");
    }

    #[test]
    fn controller_io_errors_exit_1() {
        let memory = Memory::with(&[("default", "a")]);
        memory.fail_io.set(true);
        for args in [
            &["wasi", "get", "Note", "default", "a"][..],
            &["wasi", "list", "Note", "default"][..],
            &["wasi", "put", "Note", "default", "a"][..],
            &["wasi", "delete", "Note", "default", "a"][..],
        ] {
            let out = call(&memory, args, A);
            assert_fails(&out, EXIT_ERROR, "/notes.json: read-only file system");
        }
    }

    #[test]
    fn too_few_arguments() {
        let memory = Memory::with(&[("default", "a")]);
        for args in [&[][..], &["wasi"][..]] {
            assert_fails(&call(&memory, args, ""), EXIT_ERROR, "too few arguments");
        }
        assert_fails(
            &call(&memory, &["wasi", "get", "Note", "default"], ""),
            EXIT_ERROR,
            "too few arguments for get: got 2, expected \"get <Kind> <namespace> <name>\"",
        );
        assert_fails(
            &call(&memory, &["wasi", "list", "Note"], ""),
            EXIT_ERROR,
            "too few arguments for list",
        );
        assert_fails(
            &call(&memory, &["wasi", "delete", "Note", "default"], ""),
            EXIT_ERROR,
            "too few arguments for delete",
        );
    }

    #[test]
    fn too_many_arguments() {
        let memory = Memory::with(&[("default", "a")]);
        assert_fails(
            &call(&memory, &["wasi", "list", "Note", "default", "a"], ""),
            EXIT_ERROR,
            "too many arguments for list: got 3",
        );
        assert_fails(
            &call(&memory, &["wasi", "put", "Note", "default", "a", "k=v"], A),
            EXIT_ERROR,
            "too many arguments for put",
        );
        assert!(memory.items.borrow().len() == 1);
    }

    #[test]
    fn unknown_verb() {
        let out = call(
            &Memory::default(),
            &["wasi", "watch", "Note", "default"],
            "",
        );
        assert_fails(
            &out,
            EXIT_ERROR,
            "unknown verb \"watch\" (expected one of get, list, put, delete)",
        );
        assert_fails(
            &call(&Memory::default(), &["wasi", "GET"], ""),
            EXIT_ERROR,
            "unknown verb \"GET\"",
        );
    }

    #[test]
    fn unsupported_kind() {
        let out = call(&Memory::default(), &["wasi", "list", "Foo", "default"], "");
        assert_eq!(
            out.stderr,
            "unsupported kind: \"Foo\" (this controller serves Note, Memo)\n"
        );
        assert_fails(&out, EXIT_ERROR, "unsupported kind");
    }

    #[test]
    fn invalid_namespace_or_name() {
        let memory = Memory::default();
        for args in [
            &["wasi", "list", "Note", ""][..],
            &["wasi", "list", "Note", "a/b"][..],
            &["wasi", "get", "Note", "default", ".."][..],
            &["wasi", "delete", "Note", "..", "a"][..],
            &["wasi", "put", "Note", "default", "a\nb"][..],
        ] {
            assert_fails(&call(&memory, args, A), EXIT_ERROR, "invalid ");
        }
    }

    #[test]
    fn multi_line_messages_become_one_line() {
        struct Chatty;
        impl Controller for Chatty {
            fn kinds(&self) -> &[&str] {
                &["Note"]
            }
            fn get(&self, _: &Request, _: &str) -> Result<Resource, Error> {
                Err(Error::Other("first\nsecond\r\n".into()))
            }
            fn list(&self, _: &Request) -> Result<Vec<Resource>, Error> {
                Ok(Vec::new())
            }
            fn put(&self, _: &Request, _: &str, _: Resource) -> Result<(), Error> {
                Ok(())
            }
            fn delete(&self, _: &Request, _: &str) -> Result<(), Error> {
                Ok(())
            }
        }
        let mut stderr = Vec::new();
        let code = dispatch(
            &Chatty,
            &["wasi", "get", "Note", "default", "a"],
            io::empty(),
            io::sink(),
            &mut stderr,
        );
        assert_eq!(code, EXIT_ERROR);
        assert_eq!(stderr, b"get Note default/a: first second\n");
    }

    #[test]
    fn stdout_failure_exits_1() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let memory = Memory::with(&[("default", "a")]);
        let mut stderr = Vec::new();
        let code = dispatch(
            &memory,
            &["wasi", "get", "Note", "default", "a"],
            io::empty(),
            Broken,
            &mut stderr,
        );
        assert_eq!(code, EXIT_ERROR);
        assert_eq!(stderr, b"writing to stdout: pipe closed\n");
    }

    #[test]
    fn owned_string_args_work() {
        let memory = Memory::with(&[("default", "a")]);
        let args: Vec<String> = ["wasi", "get", "Note", "default", "a"]
            .map(String::from)
            .to_vec();
        let mut stdout = Vec::new();
        let code = dispatch(&memory, &args, io::empty(), &mut stdout, io::sink());
        assert_eq!(code, EXIT_OK);
        let resource: Resource = serde_json::from_slice(&stdout).expect("valid JSON");
        assert_eq!(
            resource.metadata,
            ResourceMeta {
                namespace: "default".into(),
                name: "a".into(),
                labels: None,
                annotations: None
            }
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_arguments_are_refused() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![OsString::from("wasi"), OsString::from_vec(vec![0x66, 0xff])];
        let err = utf8_args(args).expect_err("not UTF-8");
        assert!(err.contains("is not valid UTF-8"), "{err}");
        assert_eq!(
            utf8_args([OsString::from("wasi")]).expect("UTF-8"),
            ["wasi".to_owned()]
        );
    }
}
