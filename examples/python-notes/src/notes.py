"""Notes stored as Markdown files: the whole controller logic, with no WebAssembly in it.

A Note `<namespace>/<name>` is the file `<namespace>/<name>.md` under a root directory (`/`
inside the component, a temporary directory in the tests). The file is a front-matter block
of `key: <JSON value>` lines between two `---` lines, then the body verbatim:

    ---
    title: "Groceries"
    tags: ["home","weekly"]
    labels: {"team":"kitchen"}
    ---
    Milk, eggs.

Front-matter keys (each at most once, in any order when read, in this order when written):

* `title`: the spec's title (a string; required);
* `tags`: the spec's tags (an array of strings); no line when the spec has no `tags`;
* `body: null`: the spec has no `body` field (then nothing may follow the closing `---`);
  without this line the body is everything after the closing `---` line, possibly empty;
* `labels`, `annotations`: JSON objects of strings, in the resource's order; no line when
  the resource has none (`null`), `{}` when it has an empty set.

Every value is one line of JSON (a newline in a string is written `\\n`), so no front-matter
line can be `---`, and a body may hold anything, `---` lines included. Files are read and
written as UTF-8 bytes with no newline translation: what was put is what get returns.

`NoteStore` raises `NotFound`, `Invalid` or `Failed` (all `NoteError`s); `app.py` turns them
into the WIT `error` variant.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Optional

GROUP = "notes.example.com"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Note"

SUFFIX = ".md"
FENCE = "---"

# Kubernetes' DNS-1123 label: what a namespace or name may be, and so what can become a
# single path component (no `/`, no `.` or `..`, no hidden or temporary file names).
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_MAX = 63

_SPEC_FIELDS = ("title", "tags", "body")
_FRONT_KEYS = ("title", "tags", "body", "labels", "annotations")

Pairs = Optional[list[tuple[str, str]]]


class NoteError(Exception):
    """Why a call failed; `str(error)` is the message the API client sees."""


class NotFound(NoteError):
    """The note does not exist (HTTP 404)."""


class Invalid(NoteError):
    """The request is not one this controller can serve (HTTP 400)."""


class Failed(NoteError):
    """Anything else, a malformed file among them (HTTP 500)."""


@dataclass
class Note:
    """One note as the API sees it: `spec` is the decoded spec object."""

    namespace: str
    name: str
    labels: Pairs
    annotations: Pairs
    spec: dict[str, Any]

    def spec_json(self) -> str:
        """The spec as compact JSON text, keys in the order title, tags, body."""
        return json.dumps(self.spec, ensure_ascii=False, separators=(",", ":"))


def check_label(what: str, value: str) -> None:
    """Refuses a namespace or name that is not a DNS-1123 label."""
    if len(value) > _LABEL_MAX or not _LABEL.fullmatch(value):
        raise Invalid(
            f"{what} {value!r} is not a DNS-1123 label (at most {_LABEL_MAX} characters: "
            "lower-case letters, digits and '-', starting and ending with a letter or digit)"
        )


def check_kind(kind: str) -> None:
    if kind != KIND:
        raise Invalid(f"this controller serves the kind {KIND!r}, not {kind!r}")


def parse_spec(text: str) -> dict[str, Any]:
    """The spec of a put, checked: cupd's schema already refused anything else, but the
    file format below relies on these types, so they are checked again here."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise Invalid(f"spec: not JSON: {e}") from None
    return _check_spec(spec, Invalid, "spec")


def _check_spec(spec: Any, error: type[NoteError], where: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise error(f"{where}: must be an object")
    unknown = [key for key in spec if key not in _SPEC_FIELDS]
    if unknown:
        raise error(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    if not isinstance(spec.get("title"), str) or not spec["title"]:
        raise error(f"{where}.title: required, a non-empty string")
    if "tags" in spec and not (
        isinstance(spec["tags"], list) and all(isinstance(t, str) for t in spec["tags"])
    ):
        raise error(f"{where}.tags: must be an array of strings")
    if "body" in spec and not isinstance(spec["body"], str):
        raise error(f"{where}.body: must be a string")
    # One fixed key order, so that a note reads back the same whatever order it was put in.
    return {key: spec[key] for key in _SPEC_FIELDS if key in spec}


def _check_pairs(what: str, pairs: Pairs) -> Pairs:
    if pairs is None:
        return None
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise Invalid(f"metadata.{what}: the key {key!r} appears twice")
        seen.add(key)
    return [(key, value) for key, value in pairs]


def encode(note: Note) -> str:
    """The file text of a note."""
    lines = [FENCE, "title: " + _dump(note.spec["title"])]
    if "tags" in note.spec:
        lines.append("tags: " + _dump(note.spec["tags"]))
    if "body" not in note.spec:
        lines.append("body: null")
    for key, pairs in (("labels", note.labels), ("annotations", note.annotations)):
        if pairs is not None:
            lines.append(f"{key}: " + _dump(dict(pairs)))
    lines.append(FENCE)
    return "\n".join(lines) + "\n" + note.spec.get("body", "")


def decode(namespace: str, name: str, text: str, where: str) -> Note:
    """The note in the file text `text`; `where` names the file in error messages.
    Anything malformed is `Failed`: the file, not the request, is wrong."""

    def bad(message: str) -> Failed:
        return Failed(f"{where}: not a note: {message}")

    if not text.startswith(FENCE + "\n"):
        raise bad(f"the first line must be {FENCE!r}")
    start = len(FENCE) + 1
    front: dict[str, Any] = {}
    while True:
        end = text.find("\n", start)
        if end < 0:
            raise bad(f"no closing {FENCE!r} line")
        line = text[start:end]
        start = end + 1
        if line == FENCE:
            break
        key, sep, value = line.partition(": ")
        if not sep or key not in _FRONT_KEYS:
            raise bad(f"front-matter line {line!r} is not 'KEY: JSON' with KEY one of "
                      + ", ".join(_FRONT_KEYS))
        if key in front:
            raise bad(f"{key!r} appears twice")
        try:
            front[key] = json.loads(value)
        except json.JSONDecodeError as e:
            raise bad(f"{key}: not JSON: {e}") from None
    body = text[start:]

    spec: dict[str, Any] = {"title": front.get("title")}
    if "tags" in front:
        spec["tags"] = front["tags"]
    if "body" in front:
        if front["body"] is not None:
            raise bad("'body' in the front matter may only be null (no body field)")
        if body:
            raise bad("'body: null' but text follows the front matter")
    else:
        spec["body"] = body
    spec = _check_spec(spec, Failed, f"{where}: not a note: spec")
    return Note(
        namespace=namespace,
        name=name,
        labels=_pairs(front, "labels", bad),
        annotations=_pairs(front, "annotations", bad),
        spec=spec,
    )


def _pairs(front: dict[str, Any], key: str, bad) -> Pairs:
    if key not in front:
        return None
    value = front[key]
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad(f"{key}: must be an object of strings")
    return list(value.items())


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class NoteStore:
    """The notes under `root`."""

    def __init__(self, root: str):
        self.root = root

    def _dir(self, namespace: str) -> str:
        return os.path.join(self.root, namespace)

    def _path(self, namespace: str, name: str) -> str:
        return os.path.join(self.root, namespace, name + SUFFIX)

    @staticmethod
    def _where(namespace: str, name: str) -> str:
        """A file as error messages name it: relative to the served tree."""
        return f"{namespace}/{name}{SUFFIX}"

    def get(self, kind: str, namespace: str, name: str) -> Note:
        check_kind(kind)
        check_label("namespace", namespace)
        check_label("name", name)
        return self._load(namespace, name)

    def list(self, kind: str, namespace: str) -> list[Note]:
        """Every `*.md` file of the namespace's directory, in name order. No directory is no
        notes; a file there that is not a note fails the whole list, naming the file."""
        check_kind(kind)
        check_label("namespace", namespace)
        try:
            entries = list(os.scandir(self._dir(namespace)))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise Failed(f"{namespace}/: {_reason(e)}") from None
        names = []
        for entry in entries:
            if not entry.name.endswith(SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            name = entry.name[: -len(SUFFIX)]
            try:
                check_label("name", name)
            except Invalid as e:
                raise Failed(f"{namespace}/{entry.name}: not a note: {e}") from None
            names.append(name)
        return [self._load(namespace, name) for name in sorted(names)]

    def put(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        api_version: str,
        res_kind: str,
        res_namespace: str,
        res_name: str,
        labels: Pairs,
        annotations: Pairs,
        spec: str,
    ) -> None:
        """Creates or replaces the note. The file is written whole to a temporary file in the
        same directory, then renamed over the note: a reader of the tree never sees half a
        note, and a failed write leaves the old one."""
        check_kind(kind)
        check_label("namespace", namespace)
        check_label("name", name)
        # The body must describe the resource the request is about.
        if api_version != API_VERSION:
            raise Invalid(f"apiVersion {api_version!r} is not {API_VERSION!r}")
        if res_kind != kind:
            raise Invalid(f"kind {res_kind!r} is not the request's {kind!r}")
        if res_namespace != namespace:
            raise Invalid(f"metadata.namespace {res_namespace!r} is not the request's {namespace!r}")
        if res_name != name:
            raise Invalid(f"metadata.name {res_name!r} is not the request's {name!r}")
        note = Note(
            namespace=namespace,
            name=name,
            labels=_check_pairs("labels", labels),
            annotations=_check_pairs("annotations", annotations),
            spec=parse_spec(spec),
        )
        data = encode(note).encode("utf-8")
        directory = self._dir(namespace)
        where = self._where(namespace, name)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise Failed(f"{namespace}/: {_reason(e)}") from None
        # A leading dot and no `.md` suffix: list never takes it for a note.
        temp = os.path.join(directory, f".{name}{SUFFIX}.{os.urandom(6).hex()}.tmp")
        try:
            with open(temp, "xb") as f:
                f.write(data)
            os.replace(temp, self._path(namespace, name))
        except OSError as e:
            try:
                os.remove(temp)
            except OSError:
                pass
            raise Failed(f"{where}: {_reason(e)}") from None

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Removes the note, and the namespace's directory when that leaves it empty."""
        check_kind(kind)
        check_label("namespace", namespace)
        check_label("name", name)
        where = self._where(namespace, name)
        path = self._path(namespace, name)
        if not os.path.isfile(path) or os.path.islink(path):
            raise NotFound(f"note {namespace}/{name} does not exist (no file {where})")
        try:
            os.remove(path)
        except OSError as e:
            raise Failed(f"{where}: {_reason(e)}") from None
        directory = self._dir(namespace)
        try:
            if not os.listdir(directory):
                os.rmdir(directory)
        except OSError as e:
            raise Failed(f"{namespace}/: {_reason(e)}") from None

    def _load(self, namespace: str, name: str) -> Note:
        where = self._where(namespace, name)
        path = self._path(namespace, name)
        if os.path.islink(path):
            raise Failed(f"{where}: a symbolic link, not a note file")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise NotFound(f"note {namespace}/{name} does not exist (no file {where})") from None
        except IsADirectoryError:
            raise Failed(f"{where}: a directory, not a note file") from None
        except OSError as e:
            raise Failed(f"{where}: {_reason(e)}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Failed(f"{where}: not a note: not UTF-8 ({e})") from None
        return decode(namespace, name, text, where)


def _reason(e: OSError) -> str:
    return e.strerror or str(e)
