#!/usr/bin/env python3
"""Trims a forge's published API description (Swagger 2.0 or OpenAPI 3.0, JSON or YAML) to the
operations cup's forge clients call and everything they reference.

    python3 tests/contract/trim.py PROVIDER ORIGINAL.json tests/contract/PROVIDER/description.json

The operations kept per provider are listed in OPERATIONS below. Every `$ref` reachable from
them (schemas, parameters, responses, examples) is kept, transitively; nothing is edited.
"""

import hashlib
import json
import sys

OPERATIONS = {
    "github": [
        ("/repos/{owner}/{repo}", "get"),
        ("/repos/{owner}/{repo}/pulls", "get"),
        ("/repos/{owner}/{repo}/pulls", "post"),
        ("/repos/{owner}/{repo}/pulls/{pull_number}/merge", "put"),
        ("/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers", "post"),
        ("/repos/{owner}/{repo}/issues/{issue_number}/labels", "post"),
    ],
    "gitea": [
        ("/repos/{owner}/{repo}", "get"),
        ("/repos/{owner}/{repo}/labels", "get"),
        ("/repos/{owner}/{repo}/pulls", "get"),
        ("/repos/{owner}/{repo}/pulls", "post"),
        ("/repos/{owner}/{repo}/pulls/{index}", "get"),
        ("/repos/{owner}/{repo}/pulls/{index}/merge", "post"),
        ("/repos/{owner}/{repo}/pulls/{index}/requested_reviewers", "post"),
    ],
    "gitlab": [
        ("/api/v4/projects/{id}", "get"),
        ("/api/v4/projects/{id}/users", "get"),
        ("/api/v4/projects/{id}/merge_requests", "get"),
        ("/api/v4/projects/{id}/merge_requests", "post"),
        ("/api/v4/projects/{id}/merge_requests/{merge_request_iid}/merge", "put"),
    ],
}

TOP_LEVEL = [
    "swagger", "openapi", "info", "host", "basePath", "schemes", "servers",
    "consumes", "produces", "security", "securityDefinitions",
]


def refs(node):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            yield ref
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def pointer(doc, ref):
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def put(out, ref, value):
    parts = [p.replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/")]
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def trim(provider, doc):
    out = {key: doc[key] for key in TOP_LEVEL if key in doc}
    schemes = doc.get("components", {}).get("securitySchemes")
    if schemes:
        out.setdefault("components", {})["securitySchemes"] = schemes
    out["paths"] = {}
    for path, method in OPERATIONS[provider]:
        item = doc["paths"][path]
        kept = out["paths"].setdefault(path, {})
        if "parameters" in item:
            kept["parameters"] = item["parameters"]
        kept[method] = item[method]
    seen = set()
    pending = list(refs(out))
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        value = pointer(doc, ref)
        put(out, ref, value)
        pending.extend(refs(value))
    return out


def main():
    provider, original, target = sys.argv[1:4]
    raw = open(original, "rb").read()
    if original.endswith((".yaml", ".yml")):
        import yaml

        doc = yaml.safe_load(raw)
    else:
        doc = json.loads(raw)
    trimmed = trim(provider, doc)
    with open(target, "w") as f:
        json.dump(trimmed, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{original}: sha256 {hashlib.sha256(raw).hexdigest()}, {len(raw)} bytes")
    print(f"{target}: {len(trimmed['paths'])} paths")


if __name__ == "__main__":
    main()
