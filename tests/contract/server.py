#!/usr/bin/env python3
"""A contract server for one forge API: answers the operations of a vendored API description
(Swagger 2.0 or OpenAPI 3.0, trimmed by trim.py), checking every request against it.

    python server.py --provider github|gitea|gitlab --description FILE --token TOKEN

Listens on 127.0.0.1 (an ephemeral port, printed as `PORT <n>` on stdout). For each request:
  * the method and path must match an operation of the description (path templates, typed
    path parameters), query parameters must be declared ones with values of their type and
    enum, required ones present; a JSON body must be sent with `Content-Type:
    application/json` exactly when the operation takes one, and must validate against its
    schema (jsonschema; OpenAPI 3.0's `nullable` and Swagger's `x-nullable` honoured);
  * the token must be in the header the provider documents (else 401, as the forge would).
A request that breaks the description is answered 400 with the violation and recorded;
`GET /__contract/requests` returns every request with its violations, so a test fails on it.

Answers are the description's documented examples (GitHub) or instances built from the
response schema (Gitea and GitLab document none for these operations), adjusted to the request
(numbers, URLs, branches, state) and themselves validated against the response schema before
being sent.

`POST /__contract/faults` with `{"status": 429|403|502, "count": N, "retry_after": "1",
"reset_in": 2}` answers the next N API requests with that status (403 as an exhausted rate
limit: `X-RateLimit-Remaining: 0`), `Retry-After` and/or a rate-limit reset header
(`X-RateLimit-Reset`; GitLab's `RateLimit-Reset` and `RateLimit-Remaining`).
"""

import argparse
import copy
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema

MAX_BODY = 1 << 20


class Description:
    def __init__(self, doc):
        self.doc = doc
        self.swagger = doc.get("swagger") == "2.0"
        if self.swagger:
            self.base = doc.get("basePath", "")
            self.base = re.sub(r"\{\{.*?\}\}", "", self.base).rstrip("/")
        else:
            self.base = urllib.parse.urlparse(doc["servers"][0]["url"]).path.rstrip("/")
        self.operations = []
        for template, item in doc["paths"].items():
            names = re.findall(r"\{([^}]+)\}", template)
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
            for method, op in item.items():
                if method == "parameters":
                    continue
                params = [self.resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]
                self.operations.append((re.compile(pattern), names, method.upper(), template, op, params))

    def resolve(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            node = self.pointer(node["$ref"])
            seen += 1
            if seen > 32:
                raise ValueError("$ref loop")
        return node

    def pointer(self, ref):
        node = self.doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def match(self, method, path):
        """(operation, template, params, path arguments) or a reason."""
        allowed = []
        for pattern, names, m, template, op, params in self.operations:
            found = pattern.match(path)
            if found:
                if m != method:
                    allowed.append(m)
                    continue
                args = {n: urllib.parse.unquote(v) for n, v in zip(names, found.groups())}
                return op, template, params, args
        if allowed:
            return f"{method} is not an operation of {path} (the description has {sorted(allowed)})"
        return f"no operation of the description matches the path {path}"

    def validator(self, schema):
        root = {"allOf": [schema]}
        for key in ("definitions", "components"):
            if key in self.doc:
                root[key] = self.doc[key]
        root = nullable(root, openapi=not self.swagger)
        cls = jsonschema.Draft4Validator
        return cls(root, format_checker=None)


def nullable(node, openapi):
    """OpenAPI 3.0 `nullable: true` and Swagger's `x-nullable: true` as JSON Schema types."""
    if isinstance(node, list):
        return [nullable(n, openapi) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: nullable(v, openapi) for k, v in node.items()}
    if out.get("nullable") is True or out.get("x-nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = types + ["null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]
        if "$ref" in out or "allOf" in out or "oneOf" in out or "anyOf" in out:
            out = {"anyOf": [{k: v for k, v in out.items() if k not in ("nullable", "x-nullable")}, {"type": "null"}]}
    return out


def check_value(param, raw):
    """A path or query value against its declared type and enum; a reason or None."""
    spec = param.get("schema", param)
    kind = spec.get("type", "string")
    values = [raw]
    if kind == "array":
        values = raw.split(",") if spec.get("collectionFormat", "csv") == "csv" else [raw]
        spec = spec.get("items", {})
        kind = spec.get("type", "string")
    for v in values:
        if kind == "integer" and not re.fullmatch(r"-?[0-9]+", v):
            return f"{param['name']}={v!r} is not an integer"
        if kind == "boolean" and v not in ("true", "false"):
            return f"{param['name']}={v!r} is not a boolean"
        if "enum" in spec and v not in [str(e) for e in spec["enum"]]:
            return f"{param['name']}={v!r} is not one of {spec['enum']}"
    return None


def instance(desc, schema, depth=0):
    """An instance of a response schema, for descriptions that document no example: every
    property down to a few levels, then only the required ones."""
    schema = desc.resolve(schema)
    if "example" in schema:
        return copy.deepcopy(schema["example"])
    for key in ("allOf", "oneOf", "anyOf"):
        if key in schema:
            return instance(desc, schema[key][0], depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties", {})
        names = props if depth < 4 else schema.get("required", [])
        return {name: instance(desc, props.get(name, {}), depth + 1) for name in names}
    if kind == "array":
        return []
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2024-01-01T00:00:00Z"
        if fmt in ("uri", "url"):
            return "http://127.0.0.1/"
        return "string"
    return "string"


class State:
    def __init__(self, provider, token, default_branch, labels, users):
        self.provider = provider
        self.token = token
        self.default_branch = default_branch
        self.labels = labels
        self.users = users  # user names that exist (reviewers)
        self.lock = threading.Lock()
        self.requests = []
        self.faults = []
        self.pulls = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "contract"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def send(self, status, body, headers=()):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self, method):
        state, desc = self.server.state, self.server.desc
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send(413, {"message": "body too large"})
            return
        raw = self.rfile.read(length) if length else b""
        if parsed.path.startswith("/__contract/"):
            return self.control(method, parsed.path, raw)
        record = {
            "method": method,
            "path": parsed.path,
            "query": parsed.query,
            "body": raw.decode("utf-8", "replace"),
            "auth": False,
            "violations": [],
            "status": None,
        }
        with state.lock:
            state.requests.append(record)
        try:
            status, body, headers = self.answer(method, parsed, raw, record)
        except Exception as e:  # the server's own fault: recorded, so the test fails
            record["violations"].append(f"contract server error: {e!r}")
            status, body, headers = 500, {"message": f"contract server error: {e}"}, []
        record["status"] = status
        self.send(status, body, headers)

    def answer(self, method, parsed, raw, record):
        state, desc = self.server.state, self.server.desc
        violation = lambda why: (record["violations"].append(why), (400, {"message": f"contract violation: {why}"}, []))[1]
        if not parsed.path.startswith(desc.base + "/") and desc.base:
            return violation(f"{parsed.path} is not under the API base {desc.base}")
        path = parsed.path[len(desc.base):]
        found = desc.match(method, path)
        if isinstance(found, str):
            return violation(found)
        op, template, params, args = found
        # The token, where the provider documents it (GitLab: its securityDefinitions'
        # `PRIVATE-TOKEN` header).
        if state.provider == "gitlab":
            sent = self.headers.get("PRIVATE-TOKEN")
        else:
            auth = self.headers.get("Authorization", "")
            prefix = "Bearer " if state.provider == "github" else "token "
            sent = auth[len(prefix):] if auth.startswith(prefix) else None
        record["auth"] = sent is not None
        if sent != state.token:
            if state.provider == "gitlab":
                return 401, {"message": "401 Unauthorized"}, []
            return 401, {"message": "Bad credentials"}, []
        # Parameters.
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        declared = {p["name"]: p for p in params if p.get("in") == "query"}
        for name, values in query.items():
            if name not in declared:
                return violation(f"query parameter {name!r} is not declared by {method} {template}")
            if len(values) != 1 and not (declared[name].get("type") == "array" or declared[name].get("schema", {}).get("type") == "array"):
                return violation(f"query parameter {name!r} given {len(values)} times")
            for v in values:
                why = check_value(declared[name], v)
                if why:
                    return violation(why)
        for p in params:
            if p.get("in") == "query" and p.get("required") and p["name"] not in query:
                return violation(f"required query parameter {p['name']!r} is missing")
            if p.get("in") == "path":
                why = check_value(p, args.get(p["name"], ""))
                if why:
                    return violation(why)
            if p.get("in") == "header" and p.get("required") and p["name"] not in self.headers:
                return violation(f"required header {p['name']!r} is missing")
        # The body.
        if desc.swagger:
            body_params = [p for p in params if p.get("in") == "body"]
            schema = body_params[0].get("schema") if body_params else None
            required = bool(body_params and body_params[0].get("required"))
            types = op.get("consumes", desc.doc.get("consumes", ["application/json"]))
        else:
            rb = desc.resolve(op.get("requestBody", {})) if "requestBody" in op else None
            content = (rb or {}).get("content", {})
            schema = content.get("application/json", {}).get("schema") if rb else None
            required = bool(rb and rb.get("required"))
            types = list(content)
        body = None
        if raw:
            if schema is None:
                return violation(f"{method} {template} takes no body")
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/json" or "application/json" not in types:
                return violation(f"body sent as {ctype!r}; the operation consumes {types}")
            try:
                body = json.loads(raw)
            except ValueError as e:
                return violation(f"body is not JSON: {e}")
            errors = sorted(desc.validator(schema).iter_errors(body), key=lambda e: list(e.path))
            if errors:
                return violation("; ".join(f"{'/'.join(map(str, e.path)) or '(body)'}: {e.message}" for e in errors[:5]))
        elif required:
            return violation(f"{method} {template} requires a body")
        # Faults, after the request proved valid.
        with state.lock:
            fault = state.faults.pop(0) if state.faults else None
        if fault:
            return self.fault(fault, state.provider)
        return self.operate(op, args, query, body)

    def fault(self, fault, provider):
        status = fault["status"]
        headers = []
        # GitLab names its rate-limit headers without the `X-`.
        prefix = "" if provider == "gitlab" else "X-"
        if fault.get("retry_after") is not None:
            headers.append(("Retry-After", str(fault["retry_after"])))
        if fault.get("reset_in") is not None:
            reset = str(int(time.time() + fault["reset_in"]) + (1 if fault.get("round_up") else 0))
            headers.append((f"{prefix}RateLimit-Reset", reset))
        if status in (403, 429):
            headers.append((f"{prefix}RateLimit-Remaining", "0"))
            if provider == "gitlab":
                return status, {"message": "Retry later"}, headers
            return status, {"message": "API rate limit exceeded"}, headers
        return status, {"message": "Bad Gateway"}, headers

    def response(self, op, status):
        """The documented answer of `op` for `status`, and its schema."""
        desc = self.server.desc
        resp = desc.resolve(op["responses"][str(status)])
        if desc.swagger:
            schema = resp.get("schema")
            if schema is None:
                return None, None
            examples = resp.get("examples", {}).get("application/json")
            return (copy.deepcopy(examples) if examples is not None else instance(desc, schema)), schema
        media = resp.get("content", {}).get("application/json")
        if media is None:
            return None, None
        schema = media.get("schema")
        if "example" in media:
            return copy.deepcopy(media["example"]), schema
        for example in media.get("examples", {}).values():
            return copy.deepcopy(desc.resolve(example)["value"]), schema
        return instance(desc, schema), schema

    def reply(self, op, status, adjust, headers=()):
        body, schema = self.response(op, status)
        if body is not None:
            validator = self.server.desc.validator(schema)
            documented = {(tuple(e.path), e.message) for e in validator.iter_errors(body)}
            body = adjust(body)
            # Some of GitHub's documented examples miss properties their schema requires:
            # only what the adjustment to the request brought in is the server's fault.
            added = [e for e in validator.iter_errors(body) if (tuple(e.path), e.message) not in documented]
            if added:
                raise RuntimeError(f"the contract server built an answer its description refuses: {added[0].message} at {list(added[0].path)}")
        return status, body, list(headers)

    def operate(self, op, args, query, body):
        state = self.server.state
        origin = f"http://{self.headers.get('Host', '127.0.0.1')}"
        oid = op.get("operationId")
        with state.lock:
            return PROVIDERS[state.provider](self, state, oid, op, args, query, body, origin)

    def control(self, method, path, raw):
        state = self.server.state
        with state.lock:
            if method == "GET" and path == "/__contract/requests":
                return self.send(200, state.requests)
            if method == "GET" and path == "/__contract/pulls":
                return self.send(200, state.pulls)
            if method == "POST" and path == "/__contract/faults":
                fault = json.loads(raw)
                state.faults.extend([fault] * int(fault.get("count", 1)))
                return self.send(200, {"queued": len(state.faults)})
        self.send(404, {"message": "no such control"})


def github(h, state, oid, op, args, query, body, origin):
    owner, repo = args.get("owner"), args.get("repo")
    web = f"{origin}/{owner}/{repo}"

    def pull_json(p, example):
        example.update(number=p["number"], id=p["number"], title=p["title"], body=p["body"],
                       state="open" if p["state"] == "open" else "closed",
                       html_url=f"{web}/pull/{p['number']}",
                       merged_at="2024-01-01T00:00:00Z" if p["merged"] else None)
        example["head"]["ref"] = p["head"]
        example["base"]["ref"] = p["base"]
        if "merged" in example:
            example["merged"] = p["merged"]
        return example

    if oid == "repos/get":
        return h.reply(op, 200, lambda b: {**b, "name": repo, "default_branch": state.default_branch,
                                           "html_url": web})
    if oid == "pulls/create":
        if any(p["head"] == body["head"] and p["state"] == "open" for p in state.pulls):
            return 422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": f"A pull request already exists for {owner}:{body['head']}."}]}, []
        p = new_pull(state, body["head"], body["base"], body.get("title", ""), body.get("body", ""))
        return h.reply(op, 201, lambda b: pull_json(p, b))
    if oid == "pulls/list":
        head = query.get("head", [None])[0]
        state_filter = query.get("state", ["open"])[0]
        found = [p for p in reversed(state.pulls)
                 if (head is None or head == f"{owner}:{p['head']}")
                 and (state_filter == "all" or (p["state"] == "open") == (state_filter == "open"))]

        def items(b):
            return [pull_json(p, copy.deepcopy(b[0])) for p in found]
        return h.reply(op, 200, items)
    p = find_pull(state, args)
    if oid in ("pulls/merge", "pulls/request-reviewers", "issues/add-labels") and p is None:
        return 404, {"message": "Not Found"}, []
    if oid == "pulls/merge":
        if p["state"] != "open":
            return 405, {"message": "Pull Request is not mergeable"}, []
        p.update(state="closed", merged=True)
        return h.reply(op, 200, lambda b: {**b, "sha": p["merge_sha"], "merged": True})
    if oid == "issues/add-labels":
        labels = body["labels"] if isinstance(body, dict) else body
        p["labels"] += [l if isinstance(l, str) else l["name"] for l in labels]
        return h.reply(op, 200, lambda b: [{**copy.deepcopy(b[0]), "name": n} for n in p["labels"]])
    if oid == "pulls/request-reviewers":
        if any(u not in state.users for u in body.get("reviewers", [])):
            return 422, {"message": "Reviews may only be requested from collaborators."}, []
        p["reviewers"] += body.get("reviewers", [])
        return h.reply(op, 201, lambda b: pull_json(p, b))
    return 501, {"message": f"contract server: {oid} not implemented"}, []


def gitea(h, state, oid, op, args, query, body, origin):
    owner, repo = args.get("owner"), args.get("repo")
    web = f"{origin}/{owner}/{repo}"

    def pull_json(p, b):
        b.update(number=p["number"], id=p["number"], title=p["title"], body=p["body"],
                 state="open" if p["state"] == "open" else "closed", merged=p["merged"],
                 html_url=f"{web}/pulls/{p['number']}",
                 labels=[{"id": i, "name": n} for i, n in enumerate(p["labels"], 1)])
        # The description types these as plain strings (no x-nullable): absent until merged.
        b.pop("merge_commit_sha", None)
        b.pop("merged_at", None)
        if p["merged"]:
            b.update(merge_commit_sha=p["merge_sha"], merged_at="2024-01-01T00:00:00Z")
        b["head"] = {**(b.get("head") or {}), "ref": p["head"], "label": p["head"]}
        b["base"] = {**(b.get("base") or {}), "ref": p["base"], "label": p["base"]}
        return b

    if oid == "repoGet":
        return h.reply(op, 200, lambda b: {**b, "name": repo, "default_branch": state.default_branch, "html_url": web})
    if oid == "issueListLabels":
        page = int(query.get("page", ["1"])[0])
        limit = int(query.get("limit", ["50"])[0])
        chunk = list(enumerate(state.labels, 1))[(page - 1) * limit: page * limit]
        return h.reply(op, 200, lambda b: [{**instance(h.server.desc, {"$ref": "#/definitions/Label"}), "id": i, "name": n} for i, n in chunk])
    if oid == "repoCreatePullRequest":
        if any(p["head"] == body["head"] and p["state"] == "open" for p in state.pulls):
            return 409, {"message": "pull request already exists for these targets"}, []
        names = dict(enumerate(state.labels, 1))
        p = new_pull(state, body["head"], body["base"], body.get("title", ""), body.get("body", ""))
        p["labels"] = [names[i] for i in body.get("labels", []) if i in names]
        return h.reply(op, 201, lambda b: pull_json(p, b))
    if oid == "repoListPullRequests":
        page = int(query.get("page", ["1"])[0])
        limit = int(query.get("limit", ["30"])[0])
        want = query.get("state", ["open"])[0]
        found = [p for p in reversed(state.pulls) if want == "all" or (p["state"] == "open") == (want == "open")]
        chunk = found[(page - 1) * limit: page * limit]
        return h.reply(op, 200, lambda b: [pull_json(p, instance(h.server.desc, {"$ref": "#/definitions/PullRequest"})) for p in chunk])
    p = find_pull(state, args)
    if p is None:
        return 404, {"message": "The target couldn't be found."}, []
    if oid == "repoGetPullRequest":
        return h.reply(op, 200, lambda b: pull_json(p, b))
    if oid == "repoMergePullRequest":
        if p["state"] != "open":
            return 405, None, []
        p.update(state="closed", merged=True)
        return 200, None, []
    if oid == "repoCreatePullReviewRequests":
        if any(u not in state.users for u in body.get("reviewers", [])):
            return 422, {"message": "user does not exist"}, []
        p["reviewers"] += body.get("reviewers", [])
        return h.reply(op, 201, lambda b: [])
    return 501, {"message": f"contract server: {oid} not implemented"}, []


def gitlab(h, state, oid, op, args, query, body, origin):
    project = args.get("id", "")
    web = f"{origin}/{project}"
    desc = h.server.desc

    def mr_state(p):
        return "merged" if p["merged"] else ("opened" if p["state"] == "open" else "closed")

    def mr_json(p, b):
        b.update(id=p["number"], iid=p["number"], title=p["title"], description=p["body"],
                 state=mr_state(p), source_branch=p["head"], target_branch=p["base"],
                 web_url=f"{web}/-/merge_requests/{p['number']}",
                 # The description types `labels` as one string.
                 labels=",".join(p["labels"]))
        # Typed as plain strings (no x-nullable): absent until merged.
        b.pop("merge_commit_sha", None)
        b.pop("merged_at", None)
        if p["merged"]:
            b.update(merge_commit_sha=p["merge_sha"], merged_at="2024-01-01T00:00:00Z")
        return b

    if oid == "getApiV4ProjectsId":
        return h.reply(op, 200, lambda b: {**b, "path_with_namespace": project,
                                           "default_branch": state.default_branch, "web_url": web})
    if oid == "getApiV4ProjectsIdUsers":
        search = query.get("search", [""])[0]
        found = [(i, u) for i, u in enumerate(state.users, 1) if search in u]
        user = instance(desc, {"$ref": "#/definitions/API_Entities_UserBasic"})
        return h.reply(op, 200, lambda b: [{**user, "id": i, "username": u, "name": u,
                                            "web_url": f"{origin}/{u}"} for i, u in found])
    if oid == "postApiV4ProjectsIdMergeRequests":
        if any(p["head"] == body["source_branch"] and p["state"] == "open" for p in state.pulls):
            return 409, {"message": ["Another open merge request already exists for this source branch"]}, []
        p = new_pull(state, body["source_branch"], body["target_branch"], body["title"], body.get("description", ""))
        p["labels"] = list(body.get("labels", []))
        ids = dict(enumerate(state.users, 1))
        p["reviewers"] = [ids[i] for i in body.get("reviewer_ids", []) if i in ids]
        return h.reply(op, 201, lambda b: mr_json(p, b))
    if oid == "getApiV4ProjectsIdMergeRequests":
        branch = query.get("source_branch", [None])[0]
        want = query.get("state", ["all"])[0]
        page = int(query.get("page", ["1"])[0])
        per_page = int(query.get("per_page", ["20"])[0])
        found = [p for p in reversed(state.pulls)
                 if (branch is None or p["head"] == branch) and want in ("all", mr_state(p))]
        chunk = found[(page - 1) * per_page: page * per_page]
        basic = {"$ref": "#/definitions/API_Entities_MergeRequestBasic"}
        return h.reply(op, 200, lambda b: [mr_json(p, instance(desc, basic)) for p in chunk])
    p = find_pull(state, args)
    if p is None:
        return 404, {"message": "404 Not found"}, []
    if oid == "putApiV4ProjectsIdMergeRequestsMergeRequestIidMerge":
        if p["state"] != "open":
            return 405, {"message": "405 Method Not Allowed"}, []
        p.update(state="closed", merged=True)
        return h.reply(op, 200, lambda b: mr_json(p, b))
    return 501, {"message": f"contract server: {oid} not implemented"}, []


def new_pull(state, head, base, title, body):
    number = len(state.pulls) + 1
    p = {"number": number, "head": head, "base": base, "title": title, "body": body,
         "state": "open", "merged": False, "labels": [], "reviewers": [],
         "merge_sha": f"{number:040x}"}
    state.pulls.append(p)
    return p


def find_pull(state, args):
    number = (args.get("pull_number") or args.get("issue_number") or args.get("index")
              or args.get("merge_request_iid"))
    for p in state.pulls:
        if str(p["number"]) == str(number):
            return p
    return None


PROVIDERS = {"github": github, "gitea": gitea, "gitlab": gitlab}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", required=True, choices=sorted(PROVIDERS))
    parser.add_argument("--description", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--default-branch", default="main")
    parser.add_argument("--labels", default="")
    parser.add_argument("--users", default="")
    args = parser.parse_args()
    with open(args.description) as f:
        desc = Description(json.load(f))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.desc = desc
    server.state = State(args.provider, args.token, args.default_branch,
                         [l for l in args.labels.split(",") if l], [u for u in args.users.split(",") if u])
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
