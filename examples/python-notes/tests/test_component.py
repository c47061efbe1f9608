"""The built component, run by Wasmtime the way cupd runs a controller: a fresh instance per
call, WASI 0.2, the tree preopened at `/` (read-only for get and list, read-write for put and
delete), the call's `result` checked for the WIT error case.

Needs the `wasmtime` package (build.sh installs it into its venv) and the component named
by NOTES_COMPONENT; without that variable the tests are skipped, so that plain
`python3 -m unittest` runs the store's tests alone. build.sh sets it."""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import notes  # noqa: E402

COMPONENT = os.environ.get("NOTES_COMPONENT")
INTERFACE = "cup:controller/controller@0.1.0"


def record(**fields):
    """A WIT record value: Wasmtime names the fields as WIT does (`api-version`)."""
    from wasmtime.component import Record

    value = Record()
    for key, field in fields.items():
        setattr(value, key.replace("_", "-"), field)
    return value


def plain(value):
    """A Wasmtime value as plain Python: records become dicts."""
    from wasmtime.component import Record

    if isinstance(value, Record):
        return {key: plain(field) for key, field in vars(value).items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    return value


@unittest.skipUnless(COMPONENT, "NOTES_COMPONENT is not set (build.sh sets it)")
class Component(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import wasmtime
        from wasmtime import component

        cls.wasmtime = wasmtime
        cls.engine = wasmtime.Engine()
        # Compiling takes seconds; instantiating the compiled component takes milliseconds.
        cls.component = component.Component.from_file(cls.engine, COMPONENT)
        cls.linker = component.Linker(cls.engine)
        cls.linker.add_wasip2()

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def call(self, function, *args, writable=None):
        """("ok", value) or ("err", (case, message)) of one call in a fresh instance; the
        tree is writable for put and delete unless `writable` says otherwise."""
        from wasmtime.component import Variant

        wasmtime = self.wasmtime
        store = wasmtime.Store(self.engine)
        config = wasmtime.WasiConfig()
        config.inherit_stderr()
        if writable is None:
            writable = function in ("put", "delete")
        config.preopen_dir(self.root, "/", writable)
        store.set_wasi(config)
        instance = self.linker.instantiate(store, self.component)
        interface = instance.get_export_index(store, INTERFACE)
        self.assertIsNotNone(interface, f"{INTERFACE} is not exported")
        func = instance.get_func(store, instance.get_export_index(store, function, interface))
        result = func(store, *args)
        if isinstance(result, Variant):
            return "err", (result.tag, result.payload)
        return "ok", plain(result)

    def resource(self, name, spec, namespace="default", labels=None, annotations=None, **over):
        fields = dict(api_version=notes.API_VERSION, kind="Note", spec=json.dumps(spec))
        fields.update(over)
        metadata = record(
            namespace=namespace, name=name, labels=labels, annotations=annotations
        )
        return record(metadata=metadata, **fields)

    REQ = {"kind": "Note", "namespace": "default"}

    def req(self, **over):
        return record(**{**self.REQ, **over})

    def test_exports_and_imports(self):
        kind = self.component.type
        exports = set(kind.exports(self.engine))
        self.assertIn(INTERFACE, exports)
        for name in kind.imports(self.engine):
            self.assertTrue(
                name.startswith("wasi:") or name == "cup:controller/types@0.1.0",
                f"unexpected import {name}",
            )

    def test_put_get_list_delete(self):
        spec = {"title": "Groceries", "tags": ["home"], "body": "Milk\r\n---\n"}
        res = self.resource("groceries", spec, labels=[("b", "2"), ("a", "1")])
        self.assertEqual(self.call("put", self.req(), "groceries", res), ("ok", None))
        with open(os.path.join(self.root, "default", "groceries.md"), encoding="utf-8") as f:
            self.assertTrue(f.read().startswith('---\ntitle: "Groceries"\n'))
        self.assertEqual(os.listdir(os.path.join(self.root, "default")), ["groceries.md"])

        status, got = self.call("get", self.req(), "groceries")
        self.assertEqual(status, "ok")
        self.assertEqual(got["api-version"], notes.API_VERSION)
        self.assertEqual(got["kind"], "Note")
        self.assertEqual(
            got["metadata"],
            {"namespace": "default", "name": "groceries", "labels": [("b", "2"), ("a", "1")],
             "annotations": None},
        )
        self.assertEqual(json.loads(got["spec"]), spec)

        self.call("put", self.req(), "apple", self.resource("apple", {"title": "A"}, labels=[]))
        status, listed = self.call("list", self.req())
        self.assertEqual(status, "ok")
        self.assertEqual([r["metadata"]["name"] for r in listed], ["apple", "groceries"])
        self.assertEqual(listed[0]["metadata"]["labels"], [])
        self.assertEqual(listed[0]["spec"], '{"title":"A"}')
        self.assertEqual(self.call("list", self.req(namespace="prod")), ("ok", []))

        self.assertEqual(self.call("delete", self.req(), "groceries"), ("ok", None))
        self.assertEqual(self.call("delete", self.req(), "apple"), ("ok", None))
        self.assertFalse(os.path.exists(os.path.join(self.root, "default")))
        status, (case, message) = self.call("delete", self.req(), "apple")
        self.assertEqual((status, case), ("err", "not-found"))
        self.assertIn("default/apple.md", message)

    def test_errors(self):
        status, (case, _) = self.call("get", self.req(), "missing")
        self.assertEqual((status, case), ("err", "not-found"))

        res = self.resource("n", {"title": "t"})
        for args in [
            (self.req(), "Bad_Name", self.resource("Bad_Name", {"title": "t"})),
            (self.req(), "other", res),
            (self.req(kind="Flag"), "n", res),
            (self.req(), "n", self.resource("n", {"title": "t"}, api_version="x/v2")),
            (self.req(), "n", self.resource("n", {"title": "t", "extra": 1})),
        ]:
            status, (case, _) = self.call("put", *args)
            self.assertEqual((status, case), ("err", "invalid"))
        self.assertEqual(os.listdir(self.root), [])

        os.mkdir(os.path.join(self.root, "default"))
        with open(os.path.join(self.root, "default", "bad.md"), "w") as f:
            f.write("no front matter")
        status, (case, message) = self.call("list", self.req())
        self.assertEqual((status, case), ("err", "failed"))
        self.assertIn("default/bad.md", message)

    def test_a_read_only_tree_is_a_failed_put_not_a_trap(self):
        res = self.resource("n", {"title": "t"})
        status, (case, message) = self.call("put", self.req(), "n", res, writable=False)
        self.assertEqual((status, case), ("err", "failed"))
        self.assertIn("default", message)
        self.assertEqual(os.listdir(self.root), [])


if __name__ == "__main__":
    unittest.main()
