//! The resource API handlers (the original cup's routes and bodies; docs/API.md): discovery,
//! list, get, put, delete.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cup_access::Caller;
use cup_model::Resource;

use crate::access::AuditDetail;
use crate::discovery;
use crate::error::{ApiError, Violation, text};
use crate::listing::{self, ListTooBig};
use crate::routes::{self, Route};
use crate::source::Source;
use crate::state::{AppState, RouteLabel};
use crate::verbs::{Call, Written};

/// Body of every accepted write on the local source: the zero ULID, no proposal.
const LOCAL_RESULT: &str =
    "{\"id\":\"00000000000000000000000000\",\"empty\":false,\"proposal\":null}\n";
const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

/// `GET /apis`: every served definition, or on a guarded server those the caller may read.
pub async fn discovery(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
) -> Response {
    let Some(served) = state.served() else {
        return loading();
    };
    if !state.access.guarded() {
        return body(StatusCode::OK, JSON, served.discovery.clone());
    }
    let caller = caller.map(|Extension(c)| c);
    let readable = state.access.readable_types(caller.as_ref());
    let visible = served
        .definitions
        .iter()
        .filter(|(key, _)| {
            // Keys are `group/version/plural`; a group has no '/'.
            let mut parts = key.splitn(3, '/');
            let (group, plural) = (parts.next(), parts.nth(1));
            group.zip(plural).is_some_and(|(g, p)| readable(g, p))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    body(StatusCode::OK, JSON, discovery::body(&visible))
}

/// Everything under `/apis/`.
pub async fn resource(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    payload: Bytes,
) -> Response {
    let Some(path) = routes::parse(uri.path()) else {
        return not_found_page();
    };
    let Some(served) = state.served() else {
        return loading();
    };
    let Some(route) = served.routes.get(&path.group, &path.version, &path.plural) else {
        return not_found_page();
    };
    let label = RouteLabel(route.template(path.name.is_some()));
    let wants_json = accepts(&headers, JSON);
    let query = uri.query();
    let caller = caller.map(|Extension(c)| c);
    let request = Request {
        path: &path,
        query,
        method: &method,
        headers: &headers,
        caller: caller.as_ref(),
    };
    let mut response = match handle(&state, &route, &request, payload).await {
        Ok(response) => response,
        Err(error) => error.into_response_for(wants_json),
    };
    response.extensions_mut().insert(label);
    response
}

/// What the resource handler read off one request.
struct Request<'a> {
    path: &'a routes::ApiPath<'a>,
    query: Option<&'a str>,
    method: &'a Method,
    headers: &'a HeaderMap,
    /// The authenticated caller, on a guarded server.
    caller: Option<&'a Caller>,
}

async fn handle(
    state: &Arc<AppState>,
    route: &Arc<Route>,
    request: &Request<'_>,
    payload: Bytes,
) -> Result<Response, ApiError> {
    let Request {
        path,
        query,
        method,
        headers,
        caller,
    } = *request;
    let namespace = routes::variable("namespace", path.namespace).map_err(ApiError::bad_request)?;
    let revision = query_param(query, "revision")?;
    let call = Call {
        route,
        namespace: &namespace,
        source: &state.source,
        revision: revision.as_deref(),
        metrics: &state.metrics,
        inline_reads: &state.inline_reads,
        requested_by: caller,
        record_user: state.access.record_user,
    };
    let Some(raw_name) = path.name else {
        if *method != Method::GET {
            return Ok(method_not_allowed("GET"));
        }
        let limits = state.list_limits;
        let listed = call.list(limits.max_items).await?;
        return list_response(&listed, headers, limits.max_bytes).map_err(|e| {
            ApiError::internal(format!(
                "list: {}/{}/{}/{namespace}: {e}",
                route.group, route.version, route.kind
            ))
        });
    };
    let name = routes::variable("name", raw_name).map_err(ApiError::bad_request)?;
    match *method {
        Method::GET => {
            let resource = call.get(&name).await?;
            let mut bytes = encode(&resource)?;
            bytes.push(b'\n');
            Ok(body(StatusCode::OK, JSON, bytes))
        }
        Method::PUT => {
            let resource = decode_put(state, route, &namespace, &name, &payload).await?;
            Ok(written(call.put(&name, resource).await?))
        }
        Method::DELETE => Ok(written(call.delete(&name).await?)),
        _ => Ok(method_not_allowed("GET, PUT, DELETE")),
    }
}

/// NDJSON (the original's format) unless the client asks for `application/json` and not
/// for NDJSON: then one JSON array. Refused once the body passes `max_bytes`.
fn list_response(
    resources: &[Resource],
    headers: &HeaderMap,
    max_bytes: usize,
) -> Result<Response, ListTooBig> {
    let array = accepts(headers, JSON) && !accepts(headers, NDJSON);
    let out = listing::encode(resources, array, max_bytes)?;
    Ok(body(StatusCode::OK, if array { JSON } else { NDJSON }, out))
}

/// Schema violations listed in a 400; the rest are only counted.
pub const MAX_VIOLATIONS: usize = 100;
/// Longest violation message kept (jsonschema's messages quote the offending value, which
/// may be most of the body).
const MAX_MESSAGE: usize = 500;

/// The put body: valid JSON, valid against the route version's schema (the whole
/// document), decodable as a resource, and about the resource the URL names.
async fn decode_put(
    state: &AppState,
    route: &Route,
    namespace: &str,
    name: &str,
    payload: &[u8],
) -> Result<Resource, ApiError> {
    let document: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if !route.validator.is_valid(&document) {
        if holds_more_values_than(&document, MAX_VALUES_LISTED) {
            return Err(first_violation_only(&route.validator, &document));
        }
        // jsonschema 0.61 collects every error before its iterator yields the first (about
        // 350 bytes each), so only one request at a time does it.
        let _turn = state.schema_errors.acquire().await;
        let (violations, omitted) = violations(&route.validator, &document);
        drop(document);
        if omitted > 0 {
            // Hundreds of MB may just have been freed on this worker's arena; without a
            // trim glibc keeps them resident.
            crate::heap::trim();
        }
        return Err(ApiError::schema(violations, omitted));
    }
    let mut resource: Resource = serde_json::from_value(document)
        .map_err(|e| ApiError::bad_request(format!("invalid resource: {e}")))?;
    check_identity(&mut resource, route, namespace, name)?;
    Ok(resource)
}

/// Bodies with more JSON values than this get only their first violation listed: listing
/// them all means building every one first (a 2 MiB body can hold a million).
const MAX_VALUES_LISTED: usize = 50_000;

/// Whether `document` holds more than `max` JSON values (objects, arrays and scalars alike);
/// stops counting past it.
fn holds_more_values_than(document: &serde_json::Value, max: usize) -> bool {
    let mut pending = vec![document];
    let mut seen = 0;
    while let Some(value) = pending.pop() {
        seen += 1;
        if seen > max {
            return true;
        }
        match value {
            serde_json::Value::Array(items) => pending.extend(items),
            serde_json::Value::Object(fields) => pending.extend(fields.values()),
            _ => {}
        }
    }
    false
}

/// The 400 for a big invalid body: its first violation, and why no more are listed.
fn first_violation_only(
    validator: &jsonschema::Validator,
    document: &serde_json::Value,
) -> ApiError {
    let mut listed: Vec<Violation> = validator
        .validate(document)
        .err()
        .map(|e| Violation {
            path: shorten(dotted(e.instance_path().as_str())),
            message: shorten(e.to_string()),
        })
        .into_iter()
        .collect();
    listed.push(Violation {
        path: String::new(),
        message: format!(
            "only the first violation is listed: the body holds more than {MAX_VALUES_LISTED} JSON values"
        ),
    });
    ApiError::schema(listed, 0)
}

/// The first [`MAX_VIOLATIONS`] violations (messages cut at [`MAX_MESSAGE`] bytes) and how
/// many more there are.
fn violations(
    validator: &jsonschema::Validator,
    document: &serde_json::Value,
) -> (Vec<Violation>, usize) {
    let mut errors = validator.iter_errors(document);
    let listed = errors
        .by_ref()
        .take(MAX_VIOLATIONS)
        .map(|e| Violation {
            path: shorten(dotted(e.instance_path().as_str())),
            message: shorten(e.to_string()),
        })
        .collect();
    (listed, errors.count())
}

/// `text` cut to [`MAX_MESSAGE`] bytes (at a character boundary) with `…` appended.
fn shorten(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The body must be about the URL's resource. Empty fields are filled from the URL;
/// different ones are refused (the original silently wrote the body's content at the URL's
/// location).
fn check_identity(
    resource: &mut Resource,
    route: &Route,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let api_version = format!("{}/{}", route.group, route.version);
    let fields = [
        (
            "apiVersion",
            &mut resource.api_version,
            api_version.as_str(),
        ),
        ("kind", &mut resource.kind, route.kind.as_str()),
        (
            "metadata.namespace",
            &mut resource.metadata.namespace,
            namespace,
        ),
        ("metadata.name", &mut resource.metadata.name, name),
    ];
    for (field, value, want) in fields {
        if value.is_empty() {
            *value = want.to_owned();
        } else if value != want {
            return Err(ApiError::bad_request(format!(
                "body {field} {value:?} does not match the URL ({want:?})"
            )));
        }
    }
    Ok(())
}

/// A JSON pointer as gojsonschema names fields: `/spec/foo` → `spec.foo`, root → `(root)`.
fn dotted(pointer: &str) -> String {
    if pointer.is_empty() {
        return "(root)".into();
    }
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

/// A resource as compact Go JSON (HTML-escaped, `spec` compacted).
fn encode(resource: &Resource) -> Result<Vec<u8>, ApiError> {
    listing::encode_one(resource)
        .map_err(|e| ApiError::internal(format!("encoding the resource: {e}")))
}

fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            part.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(media_type))
        })
}

fn body(status: StatusCode, content_type: &'static str, bytes: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        bytes,
    )
        .into_response()
}

/// 202 with the Result (the original's Result shape; git proposals carry branch and commit), or 204 if nothing
/// changed.
fn written(outcome: Written) -> Response {
    match outcome {
        Written::Applied => body(StatusCode::ACCEPTED, JSON, LOCAL_RESULT.as_bytes().to_vec()),
        Written::Unchanged => StatusCode::NO_CONTENT.into_response(),
        Written::Proposed(p) => {
            let detail = AuditDetail {
                branch: Some(p.branch.clone()),
                commit: Some(p.commit.clone()),
            };
            // Structs, not `json!`: the original's field order (id, empty, proposal).
            #[derive(serde::Serialize)]
            struct GitProposal {
                /// `git` when proposals are branches only, else the forge's name.
                source: String,
                branch: String,
                commit: String,
                /// Where the pull-request interface opened a review, when it did.
                #[serde(skip_serializing_if = "Option::is_none")]
                url: Option<String>,
            }
            #[derive(serde::Serialize)]
            struct Result {
                id: String,
                empty: bool,
                proposal: GitProposal,
            }
            let result = Result {
                id: p.id,
                empty: false,
                proposal: GitProposal {
                    source: p.source,
                    branch: p.branch,
                    commit: p.commit,
                    url: p.pull_request.map(|pr| pr.url),
                },
            };
            let mut response = json_response(StatusCode::ACCEPTED, &result);
            response.extensions_mut().insert(detail);
            response
        }
    }
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            body(status, JSON, bytes)
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("encoding: {e}")),
    }
}

/// One query parameter, percent-decoded (`+` is not a space: revisions have none).
fn query_param(query: Option<&str>, key: &str) -> Result<Option<String>, ApiError> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            let value = routes::decode(v).ok_or_else(|| {
                ApiError::bad_request(format!("invalid ?{key}=: bad percent-encoding"))
            })?;
            if value.is_empty() {
                return Err(ApiError::bad_request(format!("?{key}= is empty")));
            }
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// The git source, or the 404 every proposals endpoint gives on the local source.
fn git_source(state: &AppState) -> Result<&crate::git::GitSource, ApiError> {
    match &*state.source {
        Source::Git(git) => Ok(git),
        Source::Local(_) => Err(ApiError::not_found(
            "proposals need the git source (-api-source git)",
        )),
    }
}

/// Most proposals one `GET /proposals` lists, and how many when `?limit=` is absent.
pub const MAX_PROPOSALS_PAGE: usize = 500;

/// `GET /proposals[?revision=BASE][&limit=N][&continue=TOKEN]`: open proposals (not merged
/// into the base branch), by id, a page at a time: `{"metadata":{"continue":…},"items":[…]}`,
/// `continue` (the last id listed) present while more follow.
pub async fn proposals(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
    #[derive(serde::Serialize)]
    struct ListMeta {
        #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    }
    #[derive(serde::Serialize)]
    struct List {
        metadata: ListMeta,
        items: Vec<cup_git::ProposalSummary>,
    }
    let result = async {
        let query = uri.query();
        let base = query_param(query, "revision")?;
        let after = query_param(query, "continue")?;
        let limit = match query_param(query, "limit")? {
            None => MAX_PROPOSALS_PAGE,
            Some(text) => match text.parse::<usize>() {
                Ok(0) | Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid ?limit={text:?}: expected a positive number (pages hold at most {MAX_PROPOSALS_PAGE})"
                    )));
                }
                // As Kubernetes does: a page may hold fewer than asked; `continue` says more.
                Ok(n) => n.min(MAX_PROPOSALS_PAGE),
            },
        };
        let page = git_source(&state)?
            .proposals(base.as_deref(), after.as_deref(), limit)
            .await?;
        let next = page
            .more
            .then(|| page.items.last().map(|p| p.id.clone()))
            .flatten();
        let list = List {
            metadata: ListMeta { next },
            items: page.items,
        };
        Ok::<_, ApiError>(json_response(StatusCode::OK, &list))
    };
    result.await.unwrap_or_else(|e| e.into_response_for(false))
}

/// `GET /proposals/{id}[?revision=BASE]`: one proposal and the files it changes.
pub async fn proposal(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    uri: Uri,
) -> Response {
    let result = async {
        let base = query_param(uri.query(), "revision")?;
        let detail = git_source(&state)?.proposal(&id, base.as_deref()).await?;
        Ok::<_, ApiError>(json_response(StatusCode::OK, &detail))
    };
    result.await.unwrap_or_else(|e| e.into_response_for(false))
}

/// `POST /proposals/{id}/merge[?revision=BASE][&strategy=merge]`: lands a proposal
/// (fast-forward when possible unless `strategy=merge`) and pushes the base branch.
pub async fn merge(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    uri: Uri,
) -> Response {
    let result = async {
        let base = query_param(uri.query(), "revision")?;
        let strategy = match query_param(uri.query(), "strategy")?.as_deref() {
            None | Some("fast-forward") => cup_git::MergeStrategy::FastForwardOrMerge,
            Some("merge") => cup_git::MergeStrategy::Merge,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unknown strategy {other:?} (expected \"fast-forward\" or \"merge\")"
                )));
            }
        };
        let merged = git_source(&state)?
            .merge(&id, base.as_deref(), strategy)
            .await?;
        let mut response = json_response(StatusCode::OK, &merged);
        response.extensions_mut().insert(AuditDetail {
            branch: Some(merged.base.clone()),
            commit: Some(merged.commit.clone()),
        });
        Ok(response)
    };
    result.await.unwrap_or_else(|e| e.into_response_for(false))
}

fn loading() -> Response {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "controllers are still loading; see /readyz",
    )
}

fn method_not_allowed(allow: &'static str) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static(allow))],
    )
        .into_response()
}

/// chi's answer to an unknown path.
pub fn not_found_page() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_gojsonschema_field_names() {
        assert_eq!(dotted(""), "(root)");
        assert_eq!(dotted("/spec/foo"), "spec.foo");
        assert_eq!(dotted("/spec/items/0/a~1b"), "spec.items.0.a/b");
    }

    #[test]
    fn violations_are_capped_and_counted() {
        let schema = serde_json::json!({"type": "object", "properties": {
            "spec": {"type": "array", "items": {"type": "string"}}}});
        let validator = jsonschema::validator_for(&schema).unwrap();
        let items: Vec<serde_json::Value> = (0..250).map(|i| serde_json::json!(i)).collect();
        let document = serde_json::json!({"spec": items});
        let (listed, omitted) = violations(&validator, &document);
        assert_eq!(listed.len(), MAX_VIOLATIONS);
        assert_eq!(omitted, 150);
        assert_eq!(listed[0].path, "spec.0");

        let long = serde_json::json!({"spec": "x".repeat(10_000)});
        let (listed, omitted) = violations(&validator, &long);
        assert_eq!((listed.len(), omitted), (1, 0));
        assert!(listed[0].message.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert!(listed[0].message.ends_with('…'));
    }

    #[test]
    fn accept_matching_ignores_parameters_and_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html, Application/JSON;q=0.9"),
        );
        assert!(accepts(&h, JSON));
        assert!(!accepts(&h, NDJSON));
    }
}
