//! `cup definitions | get | apply | edit | delete`: the kubectl-like resource commands,
//! talking to cupd's `/apis` routes.
//!
//! Every failure is one line that says what was asked and why it failed; statuses are
//! worded here (not in the client) because their meaning depends on the request.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use cup_model::ResourceMeta;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::client::{Client, Reply, one_line};
use crate::contexts::Target;
use crate::discovery::{Discovery, Route};
use crate::{Output, json, log, table};

/// A connection to one cupd, in one namespace, printing in one format.
pub struct Session {
    pub(crate) client: Client,
    pub(crate) target: Target,
    pub(crate) output: Output,
}

/// What a request was about, for error messages.
#[derive(Clone, Copy)]
enum Op<'a> {
    List,
    Get(&'a str),
    Put(&'a str),
    Delete(&'a str),
}

impl Op<'_> {
    fn name(&self) -> Option<&str> {
        match self {
            Op::List => None,
            Op::Get(n) | Op::Put(n) | Op::Delete(n) => Some(n),
        }
    }
}

/// The write result (body of a 202): `{"id","empty","proposal":{"source","url"}|null}`.
#[derive(Deserialize)]
struct WriteResult {
    #[serde(default)]
    id: String,
    #[serde(default)]
    proposal: Option<Proposal>,
}

#[derive(Deserialize)]
struct Proposal {
    #[serde(default)]
    source: String,
    #[serde(default)]
    url: String,
}

/// The identifying fields of a document given to `apply` or saved by `edit`.
#[derive(Debug, PartialEq)]
struct Document {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
    value: Value,
}

impl Session {
    pub fn new(target: Target, output: Output) -> Result<Session> {
        log::debug(format_args!(
            "context {}, address {}, namespace {}",
            target.context.as_deref().unwrap_or("(none: -a)"),
            crate::client::shown(&target.address),
            target.namespace
        ));
        let auth = crate::credentials::resolve(&target)?;
        Ok(Session {
            client: Client::with_auth(target.address.clone(), auth)?,
            target,
            output,
        })
    }

    pub(crate) fn discover(&self) -> Result<Discovery> {
        let reply = self.client.send(Method::GET, &["apis"], None)?;
        // Every cupd serves `/apis` as JSON; an HTML page or a 404 there means the address
        // names some other server.
        if reply.is_html() || reply.status == 404 {
            bail!(
                "{} is not a cupd: GET {} answered {} with {} (check -a or the context's address: `cup config context`)",
                self.client.address(),
                reply.url,
                reply.status,
                if reply.body.is_empty() {
                    "an empty body".to_owned()
                } else {
                    reply.text()
                }
            );
        }
        if reply.status != 200 {
            bail!(
                "GET {}: unexpected status {}: {}",
                reply.url,
                reply.status,
                reply.text()
            );
        }
        Discovery::parse(&reply.body)
            .with_context(|| format!("reading the definitions from {}", reply.url))
    }

    fn resource(
        &self,
        route: &Route,
        ns: &str,
        name: Option<&str>,
        method: Method,
        body: Option<Vec<u8>>,
    ) -> Result<Reply> {
        let mut segments = vec![
            "apis",
            route.def.group.as_str(),
            route.version,
            "namespaces",
            ns,
            route.def.plural.as_str(),
        ];
        segments.extend(name);
        self.client.send(method, &segments, body)
    }

    /// The error for a failed request. A 404 on one resource means "no such resource" only
    /// if its route exists: cupd lists definitions that no controller serves (as the
    /// original does), and those answer 404 for every path. One extra request, on the
    /// error path only, tells the two apart.
    fn fail(&self, reply: &Reply, route: &Route, ns: &str, op: Op) -> anyhow::Error {
        let item = matches!(op, Op::Get(_) | Op::Delete(_));
        if reply.status == 404 && item && !self.route_exists(route, ns) {
            return failure(reply, route, ns, Op::List);
        }
        failure(reply, route, ns, op)
    }

    fn route_exists(&self, route: &Route, ns: &str) -> bool {
        self.resource(route, ns, None, Method::GET, None)
            .map_or(true, |r| r.status != 404)
    }

    // ---- definitions ----

    pub fn definitions(&self) -> Result<i32> {
        let discovery = self.discover()?;
        match self.output {
            Output::Json => json::emit(&json::pretty_array(
                discovery.defs.iter().map(|d| d.raw.as_ref()),
            ))?,
            Output::Table => {
                if discovery.defs.is_empty() {
                    log::info(format_args!(
                        "the server at {} serves no definitions",
                        self.client.address()
                    ));
                    return Ok(0);
                }
                json::emit(&definition_table(&discovery))?;
            }
        }
        Ok(0)
    }

    // ---- get ----

    pub fn get(&self, ty: &str, names: &[String]) -> Result<i32> {
        let discovery = self.discover()?;
        let route = discovery.resolve(ty)?;
        let ns = self.target.namespace.as_str();
        if let [name] = names {
            let raw = self.get_one(&route, ns, name)?;
            match self.output {
                Output::Json => json::emit(&json::pretty(raw.get()))?,
                Output::Table => self.print_table(&[raw])?,
            }
            return Ok(0);
        }
        let (found, missing) = if names.is_empty() {
            (self.list(&route, ns)?, Vec::new())
        } else {
            // One GET per name, so each missing one is reported by name.
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for name in names {
                let reply = self.resource(&route, ns, Some(name), Method::GET, None)?;
                match reply.status {
                    200 => found.push(parse_raw(&reply)?),
                    404 if missing.is_empty() && !self.route_exists(&route, ns) => {
                        return Err(failure(&reply, &route, ns, Op::List));
                    }
                    404 => missing.push(not_found(&route, ns, name)),
                    _ => return Err(failure(&reply, &route, ns, Op::Get(name))),
                }
            }
            (found, missing)
        };
        match self.output {
            Output::Json => json::emit(&json::pretty_array(found.iter().map(AsRef::as_ref)))?,
            Output::Table if found.is_empty() && missing.is_empty() => {
                log::info(format_args!("no {} in namespace {ns:?}", route.def.plural))
            }
            Output::Table => self.print_table(&found)?,
        }
        for m in &missing {
            eprintln!("cup: {m}");
        }
        Ok(if missing.is_empty() { 0 } else { 1 })
    }

    fn get_one(&self, route: &Route, ns: &str, name: &str) -> Result<Box<RawValue>> {
        let reply = self.resource(route, ns, Some(name), Method::GET, None)?;
        match reply.status {
            200 => parse_raw(&reply),
            _ => Err(self.fail(&reply, route, ns, Op::Get(name))),
        }
    }

    fn list(&self, route: &Route, ns: &str) -> Result<Vec<Box<RawValue>>> {
        let reply = self.resource(route, ns, None, Method::GET, None)?;
        if reply.status != 200 {
            return Err(failure(&reply, route, ns, Op::List));
        }
        parse_list(&reply.body).with_context(|| format!("reading the answer of GET {}", reply.url))
    }

    fn print_table(&self, resources: &[Box<RawValue>]) -> Result<()> {
        json::emit(&resource_table(resources))
    }

    // ---- apply, edit, delete ----

    pub fn apply(&self, file: &str) -> Result<i32> {
        let (bytes, label) = read_input(file)?;
        let doc = Document::parse(&bytes, &label)?;
        let discovery = self.discover()?;
        let route = discovery.for_document(&doc.api_version, &doc.kind)?;
        let ns = self.namespace_for(&doc)?;
        // The exact bytes go to the server: its schema validation sees what the user wrote.
        let reply = self.resource(&route, &ns, Some(&doc.name), Method::PUT, Some(bytes))?;
        self.write_outcome(&reply, &route, &ns, Op::Put(&doc.name))
    }

    /// The body's namespace, else the context's (or `-n`). A body namespace that
    /// contradicts an explicit `-n` is refused rather than silently preferred.
    fn namespace_for(&self, doc: &Document) -> Result<String> {
        match doc.namespace.as_deref() {
            Some(ns) if self.target.namespace_from_flag && ns != self.target.namespace => bail!(
                "the resource's metadata.namespace is {ns:?} but -n says {:?}; drop -n or change the document",
                self.target.namespace
            ),
            Some(ns) => Ok(ns.to_owned()),
            None => Ok(self.target.namespace.clone()),
        }
    }

    pub fn delete(&self, ty: &str, name: &str) -> Result<i32> {
        let discovery = self.discover()?;
        let route = discovery.resolve(ty)?;
        let ns = self.target.namespace.as_str();
        let reply = self.resource(&route, ns, Some(name), Method::DELETE, None)?;
        self.write_outcome(&reply, &route, ns, Op::Delete(name))
    }

    pub fn edit(&self, ty: &str, name: &str) -> Result<i32> {
        let discovery = self.discover()?;
        let route = discovery.resolve(ty)?;
        let ns = self.target.namespace.clone();
        let raw = self.get_one(&route, &ns, name)?;
        let before: Value = serde_json::from_str(raw.get())?;
        let mut text = json::pretty(raw.get());
        text.push('\n');
        let file = tempfile::Builder::new()
            .prefix("cup-edit-")
            .suffix(".json")
            .tempfile()
            .context("creating a temp file to edit")?;
        std::fs::write(file.path(), &text)
            .with_context(|| format!("writing {}", file.path().display()))?;
        run_editor(file.path())?;
        let edited = std::fs::read(file.path())
            .with_context(|| format!("reading {}", file.path().display()))?;
        let label = file.path().display().to_string();
        let outcome = (|| {
            let doc = Document::parse(&edited, &label)?;
            if doc.value == before {
                log::info(format_args!(
                    "edit cancelled: {} {name:?} is unchanged",
                    route.def.plural
                ));
                return Ok(0);
            }
            if doc.name != name {
                bail!(
                    "metadata.name changed from {name:?} to {:?}: edit cannot rename (use apply to create another resource)",
                    doc.name
                );
            }
            if let Some(doc_ns) = doc.namespace.as_deref().filter(|d| *d != ns) {
                bail!(
                    "metadata.namespace changed from {ns:?} to {doc_ns:?}: edit cannot move a resource"
                );
            }
            let edited_route = discovery.for_document(&doc.api_version, &doc.kind)?;
            if edited_route.def.group != route.def.group
                || edited_route.def.plural != route.def.plural
            {
                bail!(
                    "the document is now a {} ({}), not a {}: edit cannot change the kind",
                    doc.kind,
                    doc.api_version,
                    route.def.kind
                );
            }
            let reply = self.resource(
                &edited_route,
                &ns,
                Some(name),
                Method::PUT,
                Some(edited.clone()),
            )?;
            self.write_outcome(&reply, &edited_route, &ns, Op::Put(name))
        })();
        outcome.map_err(|e| {
            // Keep the user's work: the temp file survives, and the message says where.
            match file.keep() {
                Ok((_, path)) => anyhow!(
                    "{e:#}; your edit is saved in {} (fix it and run `cup apply -f {}`)",
                    path.display(),
                    path.display()
                ),
                Err(_) => e,
            }
        })
    }

    /// 202: the Result (table `ID SOURCE URL`, `-` where there is no proposal); 204: a
    /// notice on stderr; anything else: one-line error.
    fn write_outcome(&self, reply: &Reply, route: &Route, ns: &str, op: Op) -> Result<i32> {
        let name = op.name().unwrap_or_default();
        match reply.status {
            200..=202 => {
                let raw = parse_raw(reply)?;
                match self.output {
                    Output::Json => json::emit(&json::pretty(raw.get()))?,
                    Output::Table => {
                        let done = match op {
                            Op::Delete(_) => "deleted",
                            _ => "applied",
                        };
                        let summary = write_summary(raw.get(), &route.def.singular, name, done)
                            .with_context(|| {
                                format!(
                                    "{} {}: the answer is not a write result",
                                    reply.method, reply.url
                                )
                            })?;
                        json::emit(&summary)?;
                    }
                }
            }
            204 => log::info(format_args!(
                "{} {name:?} in namespace {ns:?}: no change",
                route.def.plural
            )),
            _ => return Err(self.fail(reply, route, ns, op)),
        }
        Ok(0)
    }
}

/// `PLURAL APIVERSION KIND VERSIONS`, one row per definition (not one per version as the
/// original, whose first header also said NAMESPACE over the plurals).
fn definition_table(discovery: &Discovery) -> String {
    let rows: Vec<Vec<String>> = discovery
        .defs
        .iter()
        .map(|d| {
            vec![
                d.plural.clone(),
                format!("{}/{}", d.group, d.preferred()),
                d.kind.clone(),
                d.versions.join(","),
            ]
        })
        .collect();
    table::render(&["PLURAL", "APIVERSION", "KIND", "VERSIONS"], &rows)
}

/// `NAMESPACE NAME LABELS` (labels `k=v,…` sorted by key, `<none>` when there are none).
fn resource_table(resources: &[Box<RawValue>]) -> String {
    #[derive(Deserialize, Default)]
    struct Head {
        #[serde(default)]
        metadata: ResourceMeta,
    }
    let rows: Vec<Vec<String>> = resources
        .iter()
        .map(|raw| {
            // A resource whose metadata does not parse still gets a row.
            let m = serde_json::from_str::<Head>(raw.get())
                .unwrap_or_default()
                .metadata;
            let labels = match m.labels {
                Some(l) if !l.is_empty() => l
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => "<none>".into(),
            };
            let dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
            vec![dash(m.namespace), dash(m.name), labels]
        })
        .collect();
    table::render(&["NAMESPACE", "NAME", "LABELS"], &rows)
}

/// What a write did, for people: `flag/new-login applied` (or `deleted`) when it was made in
/// place (a local source: its result carries no proposal), else the proposal's table.
fn write_summary(result: &str, singular: &str, name: &str, done: &str) -> Result<String> {
    let parsed = parse_write_result(result)?;
    if parsed.proposal.is_none() {
        return Ok(format!("{singular}/{name} {done}\n"));
    }
    result_table(result)
}

fn parse_write_result(result: &str) -> Result<WriteResult> {
    // serde would also accept an array for a struct; a result is an object.
    if !result.trim_start().starts_with('{') {
        bail!("expected a JSON object, found {}", one_line(result));
    }
    Ok(serde_json::from_str(result)?)
}

/// `ID SOURCE URL` of a write result that made a proposal; `-` for what is absent.
fn result_table(result: &str) -> Result<String> {
    let result = parse_write_result(result)?;
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let (source, url) = match &result.proposal {
        Some(p) => (dash(&p.source), dash(&p.url)),
        None => ("-".into(), "-".into()),
    };
    Ok(table::render(
        &["ID", "SOURCE", "URL"],
        &[vec![dash(&result.id), source, url]],
    ))
}

fn not_found(route: &Route, ns: &str, name: &str) -> String {
    format!(
        "{} {name:?} not found in namespace {ns:?}",
        route.def.plural
    )
}

/// One line for a status that is not success.
fn failure(reply: &Reply, route: &Route, ns: &str, op: Op) -> anyhow::Error {
    let plural = &route.def.plural;
    let what = match op.name() {
        Some(name) => format!("{plural} {name:?}"),
        None => plural.clone(),
    };
    match (reply.status, op) {
        // A PUT creates, so its 404 can only mean the route is missing (a definition listed
        // by /apis but bound to no controller, as the original allows).
        (404, Op::List | Op::Put(_)) => anyhow!(
            "the server has no route {} (404): is {}/{} bound to a controller?",
            reply.url.path(),
            route.api_version(),
            plural
        ),
        (404, _) => anyhow!("{}", not_found(route, ns, op.name().unwrap_or_default())),
        (400, _) => anyhow!(
            "{what} was rejected by the server: {}",
            violations(&reply.body)
        ),
        // cupd's body names the controller and why it failed to load.
        (503, _) => anyhow!(
            "{plural} ({}) cannot be served (503): {}",
            route.api_version(),
            error_text(&reply.body)
        ),
        (status, _) => anyhow!(
            "{} {}: unexpected status {status}: {}",
            reply.method,
            reply.url,
            error_text(&reply.body)
        ),
    }
}

/// The message of an error body: cupd's JSON error (`{"error": …}` or `{"message": …}`),
/// else the text (the original answers plain text).
fn error_text(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => ["error", "message", "reason"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str).map(str::to_owned)),
        _ => None,
    };
    let text = text.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let line = one_line(&text);
    if line.is_empty() {
        "(no details)".into()
    } else {
        line
    }
}

/// A 400 body as `field: reason; field: reason`. Accepts a JSON object with a list of
/// violations (objects with a field/path and a reason/message, or strings), the original's
/// Go slice text `[a: x b: y]`, or any text.
fn violations(body: &[u8]) -> String {
    if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(body) {
        let list = ["violations", "errors", "details"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_array));
        if let Some(list) = list {
            let items: Vec<String> = list.iter().map(violation).collect();
            if !items.is_empty() {
                return one_line(&items.join("\n"));
            }
        }
    }
    error_text(body)
}

fn violation(v: &Value) -> String {
    let pick = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
    };
    match v {
        Value::String(s) => s.clone(),
        Value::Object(_) => {
            let field = pick(&[
                "field",
                "path",
                "instancePath",
                "instance_path",
                "pointer",
                "location",
            ]);
            let reason = pick(&["reason", "message", "error", "description"]);
            match (field, reason) {
                (Some(f), Some(r)) => {
                    let f = if f.is_empty() { "(root)".to_owned() } else { f };
                    format!("{f}: {r}")
                }
                (None, Some(r)) => r,
                (Some(f), None) => f,
                (None, None) => v.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// The body of a 200/202 as one JSON document.
fn parse_raw(reply: &Reply) -> Result<Box<RawValue>> {
    serde_json::from_slice(&reply.body).with_context(|| {
        format!(
            "{} {}: the answer is not JSON: {}",
            reply.method,
            reply.url,
            reply.text()
        )
    })
}

/// A list answer: cupd's JSON array, or the original's NDJSON (one document per line).
fn parse_list(body: &[u8]) -> Result<Vec<Box<RawValue>>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Ok(serde_json::from_slice(body)?);
    }
    serde_json::Deserializer::from_slice(body)
        .into_iter::<Box<RawValue>>()
        .collect::<Result<_, _>>()
        .map_err(Into::into)
}

/// The bytes of FILE, or of stdin for `-`; the label names the input in errors.
fn read_input(file: &str) -> Result<(Vec<u8>, String)> {
    if file == "-" {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            log::info(format_args!(
                "reading one JSON resource from standard input (end with Ctrl-D)"
            ));
        }
        let mut bytes = Vec::new();
        stdin
            .lock()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        Ok((bytes, "standard input".into()))
    } else {
        let bytes = std::fs::read(file).with_context(|| format!("reading {file}"))?;
        Ok((bytes, file.to_owned()))
    }
}

impl Document {
    /// Exactly one JSON object with apiVersion, kind and metadata.name.
    fn parse(bytes: &[u8], label: &str) -> Result<Document> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            bail!("{label} is empty: expected one JSON resource");
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value =
            Value::deserialize(&mut de).map_err(|e| anyhow!("{label}: invalid JSON: {e}"))?;
        de.end().map_err(|e| {
            anyhow!(
                "{label}: more than one JSON document (the next starts at line {} column {}); apply takes one resource",
                e.line(),
                e.column()
            )
        })?;
        let Value::Object(obj) = &value else {
            bail!(
                "{label}: expected a JSON object (one resource), found {}",
                type_name(&value)
            );
        };
        let string = |v: Option<&Value>, field: &str| -> Result<Option<String>> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => bail!(
                    "{label}: {field} must be a string, found {}",
                    type_name(other)
                ),
            }
        };
        let meta = obj.get("metadata");
        let field = |key: &str| meta.and_then(|m| m.get(key));
        let api_version = string(obj.get("apiVersion"), "apiVersion")?
            .with_context(|| format!("{label}: missing apiVersion"))?;
        let kind =
            string(obj.get("kind"), "kind")?.with_context(|| format!("{label}: missing kind"))?;
        let name = string(field("name"), "metadata.name")?
            .with_context(|| format!("{label}: missing metadata.name"))?;
        let namespace = string(field("namespace"), "metadata.namespace")?;
        Ok(Document {
            api_version,
            kind,
            namespace,
            name,
            value,
        })
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `$EDITOR FILE` through `sh -c`, so an EDITOR with arguments (`code --wait`) works as in
/// the original and in git.
fn run_editor(file: &Path) -> Result<()> {
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file)
        .status()
        .with_context(|| format!("running the editor {editor:?}"))?;
    if !status.success() {
        bail!("the editor {editor:?} failed ({status}); nothing was applied");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Result<Document> {
        Document::parse(text.as_bytes(), "f.json")
    }

    fn err(text: &str) -> String {
        format!("{:#}", doc(text).unwrap_err())
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn resource_rows_show_labels_or_none() {
        let t = resource_table(&[
            raw(r#"{"metadata":{"namespace":"default","name":"foo","labels":{"z":"1","a":"2"}}}"#),
            raw(r#"{"metadata":{"namespace":"default","name":"a-longer-name","labels":null}}"#),
            raw(r#"{"metadata":{"labels":{"n":1}}}"#),
        ]);
        assert_eq!(
            t,
            "NAMESPACE   NAME            LABELS\n\
             default     foo             a=2,z=1\n\
             default     a-longer-name   <none>\n\
             -           -               <none>\n"
        );
    }

    #[test]
    fn a_write_made_in_place_is_one_line() {
        assert_eq!(
            write_summary(
                r#"{"id":"00000000000000000000000000","empty":false,"proposal":null}"#,
                "flag",
                "quick-start",
                "applied"
            )
            .unwrap(),
            "flag/quick-start applied\n"
        );
        assert_eq!(
            write_summary(
                r#"{"id":"01HBZ4J8Q6V2T1N3X5K7M9P0RS","proposal":{"source":"git","url":""}}"#,
                "flag",
                "x",
                "deleted"
            )
            .unwrap(),
            "ID                           SOURCE   URL\n01HBZ4J8Q6V2T1N3X5K7M9P0RS   git      -\n"
        );
        assert!(write_summary("[]", "flag", "x", "applied").is_err());
    }

    #[test]
    fn write_results_render_with_or_without_a_proposal() {
        assert_eq!(
            result_table(r#"{"id":"00000000000000000000000000","empty":false,"proposal":null}"#)
                .unwrap(),
            "ID                           SOURCE   URL\n00000000000000000000000000   -        -\n"
        );
        assert_eq!(
            result_table(r#"{"id":"01HBZ4J8Q6V2T1N3X5K7M9P0RS","empty":false,"proposal":{"source":"gitea","url":"http://gitea:3000/cup/config/pulls/1"}}"#)
                .unwrap(),
            "ID                           SOURCE   URL\n01HBZ4J8Q6V2T1N3X5K7M9P0RS   gitea    http://gitea:3000/cup/config/pulls/1\n"
        );
        assert_eq!(
            result_table("{}").unwrap(),
            "ID   SOURCE   URL\n-    -        -\n"
        );
        assert!(result_table("[]").is_err());
    }

    #[test]
    fn definitions_render_one_row_per_definition() {
        let apis = r#"{
            "g.io/v1/things": {"names":{"kind":"Thing","singular":"thing","plural":"things"},"spec":{"group":"g.io","versions":{"v1":{},"v1beta1":{}}}},
            "g.io/v1beta1/things": {"names":{"kind":"Thing","singular":"thing","plural":"things"},"spec":{"group":"g.io","versions":{"v1":{},"v1beta1":{}}}},
            "a.io/v1alpha1/apples": {"names":{"kind":"Apple","singular":"apple","plural":"apples"},"spec":{"group":"a.io","versions":{"v1alpha1":{}}}}
        }"#;
        let d = Discovery::parse(apis.as_bytes()).unwrap();
        assert_eq!(
            definition_table(&d),
            "PLURAL   APIVERSION      KIND    VERSIONS\n\
             apples   a.io/v1alpha1   Apple   v1alpha1\n\
             things   g.io/v1         Thing   v1,v1beta1\n"
        );
    }

    #[test]
    fn documents_need_one_object_with_identity() {
        let d = doc(r#"{"apiVersion":"g/v","kind":"K","metadata":{"name":"n"}}"#).unwrap();
        assert_eq!(
            (
                d.api_version.as_str(),
                d.kind.as_str(),
                d.name.as_str(),
                d.namespace
            ),
            ("g/v", "K", "n", None)
        );
        let d = doc(r#"{"apiVersion":"g/v","kind":"K","metadata":{"name":"n","namespace":"p"}}"#)
            .unwrap();
        assert_eq!(d.namespace.as_deref(), Some("p"));
        assert_eq!(err("  \n"), "f.json is empty: expected one JSON resource");
        assert_eq!(
            err("{\"apiVersion\": \"g/v\",\n \"kind\": }"),
            "f.json: invalid JSON: expected value at line 2 column 10"
        );
        assert_eq!(
            err("{\"apiVersion\":\"g/v\",\"kind\":\"K\",\"metadata\":{\"name\":\"n\"}}\n{}"),
            "f.json: more than one JSON document (the next starts at line 2 column 1); apply takes one resource"
        );
        assert_eq!(
            err("[1]"),
            "f.json: expected a JSON object (one resource), found an array"
        );
        assert_eq!(err(r#"{"kind":"K"}"#), "f.json: missing apiVersion");
        assert_eq!(
            err(r#"{"apiVersion":"g/v","kind":"K","metadata":{}}"#),
            "f.json: missing metadata.name"
        );
        assert_eq!(
            err(r#"{"apiVersion":1,"kind":"K"}"#),
            "f.json: apiVersion must be a string, found a number"
        );
    }

    #[test]
    fn lists_are_arrays_or_ndjson() {
        let names = |body: &str| -> Vec<String> {
            parse_list(body.as_bytes())
                .unwrap()
                .iter()
                .map(|r| r.get().to_owned())
                .collect()
        };
        assert_eq!(names(r#"[{"a":1},{"b":2}]"#), [r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(
            names("{\"a\":1}\n{\"b\":2}\n"),
            [r#"{"a":1}"#, r#"{"b":2}"#]
        );
        assert!(names("").is_empty());
        assert!(names("[]").is_empty());
        assert!(parse_list(b"{\"a\":").is_err());
    }

    #[test]
    fn violations_are_listed_field_by_field() {
        assert_eq!(
            violations(br#"{"error":"invalid","violations":[{"field":"spec.enabled","reason":"expected boolean"},{"path":"","message":"x is required"}]}"#),
            "spec.enabled: expected boolean; (root): x is required"
        );
        assert_eq!(
            violations(b"[spec.foo: Invalid type. Expected: string, given: integer]\n"),
            "[spec.foo: Invalid type. Expected: string, given: integer]"
        );
        assert_eq!(
            violations(br#"{"error":"bad json at line 1"}"#),
            "bad json at line 1"
        );
        assert_eq!(violations(b"a\nb\n"), "a; b");
        assert_eq!(error_text(b""), "(no details)");
    }
}
