"""The file mapping of notes.py, with plain CPython over a temporary directory:
python3 -m unittest discover -s tests   (from examples/python-notes)."""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import notes  # noqa: E402
from notes import Failed, Invalid, NoteStore, NotFound  # noqa: E402

KIND = "Note"


def put(store, name, spec, namespace="default", labels=None, annotations=None, **overrides):
    args = dict(
        api_version=notes.API_VERSION,
        res_kind=KIND,
        res_namespace=namespace,
        res_name=name,
        labels=labels,
        annotations=annotations,
        spec=spec if isinstance(spec, str) else json.dumps(spec),
    )
    args.update(overrides)
    store.put(KIND, namespace, name, **args)


class StoreTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = self._tmp.name
        self.store = NoteStore(self.root)

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def write(self, relative, data):
        path = self.path(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)

    def read(self, relative):
        with open(self.path(relative), "rb") as f:
            return f.read().decode("utf-8")


class FileFormat(StoreTest):
    def test_the_file_put_writes(self):
        put(
            self.store,
            "groceries",
            {"tags": ["home", "weekly"], "title": "Groceries", "body": "Milk, eggs.\n"},
            labels=[("team", "kitchen")],
        )
        self.assertEqual(
            self.read("default/groceries.md"),
            '---\ntitle: "Groceries"\ntags: ["home","weekly"]\nlabels: {"team":"kitchen"}\n'
            "---\nMilk, eggs.\n",
        )
        # Only the note: no temporary file is left beside it.
        self.assertEqual(os.listdir(self.path("default")), ["groceries.md"])

    def test_a_hand_written_file_is_read(self):
        self.write(
            "default/plan.md",
            '---\nannotations: {"by":"me"}\ntitle: "Plan"\n---\n# Plan\n\n---\n\nDone.',
        )
        note = self.store.get(KIND, "default", "plan")
        self.assertEqual(note.spec, {"title": "Plan", "body": "# Plan\n\n---\n\nDone."})
        self.assertIsNone(note.labels)
        self.assertEqual(note.annotations, [("by", "me")])
        self.assertEqual(note.spec_json(), '{"title":"Plan","body":"# Plan\\n\\n---\\n\\nDone."}')


class RoundTrip(StoreTest):
    """Whatever is put, get returns: spec, labels and annotations."""

    CASES = [
        ({"title": "t"}, None, None),
        ({"title": "t", "body": ""}, None, None),
        ({"title": "t", "tags": []}, [], []),
        ({"title": "t", "tags": ["a", "b c", "é"], "body": "x"}, [("b", "2"), ("a", "1")], None),
        ({"title": "---", "body": "---\n---\n"}, None, [("k", "line\n---\nline")]),
        ({"title": "t\n\"q\"", "body": "crlf\r\nlines\r\n\u2028 and no final newline"}, None, None),
        ({"title": "😀 ünï", "body": "\x00\x7f tab\t"}, [("", "")], [("a", "")]),
    ]

    def test_put_then_get(self):
        for i, (spec, labels, annotations) in enumerate(self.CASES):
            with self.subTest(spec=spec, labels=labels, annotations=annotations):
                name = f"note-{i}"
                put(self.store, name, spec, labels=labels, annotations=annotations)
                note = self.store.get(KIND, "default", name)
                self.assertEqual(note.spec, spec)
                self.assertEqual(json.loads(note.spec_json()), spec)
                self.assertEqual(note.labels, labels)
                self.assertEqual(note.annotations, annotations)
                self.assertEqual((note.namespace, note.name), ("default", name))

    def test_spec_keys_come_back_in_one_order(self):
        put(self.store, "n", '{"body":"b","tags":["x"],"title":"t"}')
        self.assertEqual(
            self.store.get(KIND, "default", "n").spec_json(),
            '{"title":"t","tags":["x"],"body":"b"}',
        )

    def test_replace(self):
        put(self.store, "n", {"title": "one", "tags": ["a"]}, labels=[("x", "y")])
        put(self.store, "n", {"title": "two"})
        note = self.store.get(KIND, "default", "n")
        self.assertEqual((note.spec, note.labels), ({"title": "two"}, None))


class Verbs(StoreTest):
    def test_get_missing(self):
        with self.assertRaises(NotFound) as e:
            self.store.get(KIND, "default", "nope")
        self.assertIn("default/nope.md", str(e.exception))

    def test_list_sorted_and_per_namespace(self):
        for name in ["zeta", "alpha", "m-1"]:
            put(self.store, name, {"title": name})
        put(self.store, "other", {"title": "o"}, namespace="prod")
        names = [n.name for n in self.store.list(KIND, "default")]
        self.assertEqual(names, ["alpha", "m-1", "zeta"])
        self.assertEqual([n.name for n in self.store.list(KIND, "prod")], ["other"])
        self.assertEqual(self.store.list(KIND, "empty"), [])

    def test_list_skips_what_is_not_an_md_file(self):
        put(self.store, "a", {"title": "a"})
        self.write("default/README.txt", "not a note")
        self.write("default/.a.md.0123.tmp", "a stray temporary file")
        os.mkdir(self.path("default", "dir.md"))
        self.assertEqual([n.name for n in self.store.list(KIND, "default")], ["a"])

    def test_list_fails_on_a_malformed_note_naming_it(self):
        put(self.store, "good", {"title": "g"})
        self.write("default/bad.md", "# no front matter\n")
        with self.assertRaises(Failed) as e:
            self.store.list(KIND, "default")
        self.assertIn("default/bad.md", str(e.exception))

    def test_list_fails_on_an_md_file_whose_name_is_not_a_label(self):
        self.write("default/README.md", '---\ntitle: "r"\n---\n')
        with self.assertRaises(Failed) as e:
            self.store.list(KIND, "default")
        self.assertIn("default/README.md", str(e.exception))

    def test_delete(self):
        put(self.store, "a", {"title": "a"})
        put(self.store, "b", {"title": "b"})
        self.store.delete(KIND, "default", "a")
        self.assertFalse(os.path.exists(self.path("default", "a.md")))
        self.assertTrue(os.path.isdir(self.path("default")))
        self.store.delete(KIND, "default", "b")
        # The namespace's last note takes its directory with it.
        self.assertFalse(os.path.exists(self.path("default")))
        with self.assertRaises(NotFound):
            self.store.delete(KIND, "default", "b")
        with self.assertRaises(NotFound):
            self.store.get(KIND, "default", "a")

    def test_delete_keeps_a_directory_with_other_files(self):
        put(self.store, "a", {"title": "a"})
        self.write("default/notes.txt", "kept")
        self.store.delete(KIND, "default", "a")
        self.assertEqual(os.listdir(self.path("default")), ["notes.txt"])

    def test_put_creates_nested_directories_under_the_root(self):
        store = NoteStore(self.path("deep", "er"))
        put(store, "n", {"title": "t"})
        self.assertTrue(os.path.isfile(self.path("deep", "er", "default", "n.md")))


class Refusals(StoreTest):
    def assert_invalid(self, fn, *args, **kwargs):
        with self.assertRaises(Invalid) as e:
            fn(*args, **kwargs)
        # Nothing was written.
        self.assertEqual(os.listdir(self.root), [])
        return str(e.exception)

    def test_names_that_are_not_labels(self):
        for name in ["", "A", "a_b", "-a", "a-", "a.b", "..", ".", "a/b", "../x", "é", "a" * 64]:
            with self.subTest(name=name):
                self.assert_invalid(put, self.store, name, {"title": "t"})
                self.assert_invalid(self.store.get, KIND, "default", name)
                self.assert_invalid(self.store.delete, KIND, "default", name)
        put(self.store, "a" * 63, {"title": "t"})

    def test_namespaces_that_are_not_labels(self):
        for namespace in ["", "..", "a/b", "Default"]:
            with self.subTest(namespace=namespace):
                self.assert_invalid(put, self.store, "n", {"title": "t"}, namespace=namespace)
                self.assert_invalid(self.store.list, KIND, namespace)

    def test_another_kind(self):
        message = self.assert_invalid(self.store.list, "Flag", "default")
        self.assertIn("Flag", message)

    def test_a_body_for_another_resource(self):
        for field, value in [
            ("res_name", "other"),
            ("res_namespace", "prod"),
            ("res_kind", "Flag"),
            ("api_version", "notes.example.com/v2"),
        ]:
            with self.subTest(field=field):
                self.assert_invalid(put, self.store, "n", {"title": "t"}, **{field: value})

    def test_bad_specs(self):
        for spec in [
            "not json",
            "[]",
            "{}",
            '{"title":""}',
            '{"title":1}',
            '{"title":"t","tags":"x"}',
            '{"title":"t","tags":[1]}',
            '{"title":"t","body":null}',
            '{"title":"t","extra":1}',
        ]:
            with self.subTest(spec=spec):
                self.assert_invalid(put, self.store, "n", spec)

    def test_duplicate_label_keys(self):
        self.assert_invalid(put, self.store, "n", {"title": "t"}, labels=[("a", "1"), ("a", "2")])


class MalformedFiles(StoreTest):
    CASES = {
        "no opening fence": 'title: "t"\n---\n',
        "no closing fence": '---\ntitle: "t"\n',
        "CRLF fences": '---\r\ntitle: "t"\r\n---\r\n',
        "no title": "---\n---\nbody",
        "unknown key": '---\ntitle: "t"\nauthor: "me"\n---\n',
        "not key: value": '---\ntitle "t"\n---\n',
        "value not JSON": "---\ntitle: t\n---\n",
        "key twice": '---\ntitle: "t"\ntitle: "u"\n---\n',
        "tags not strings": '---\ntitle: "t"\ntags: [1]\n---\n',
        "body marker not null": '---\ntitle: "t"\nbody: "x"\n---\n',
        "text after body: null": '---\ntitle: "t"\nbody: null\n---\ntext',
        "labels not an object": '---\ntitle: "t"\nlabels: ["a"]\n---\n',
        "label value not a string": '---\ntitle: "t"\nlabels: {"a":1}\n---\n',
        "not UTF-8": b'---\ntitle: "\xff"\n---\n',
    }

    def test_each_is_failed_naming_the_file(self):
        for case, data in self.CASES.items():
            with self.subTest(case=case):
                self.write("default/bad.md", data)
                with self.assertRaises(Failed) as e:
                    self.store.get(KIND, "default", "bad")
                self.assertIn("default/bad.md", str(e.exception))

    def test_a_directory_in_place_of_the_file(self):
        os.makedirs(self.path("default", "d.md"))
        with self.assertRaises(Failed):
            self.store.get(KIND, "default", "d")


if __name__ == "__main__":
    unittest.main()
