"""The component: `cup:controller/controller@0.1.0` over `notes.NoteStore`.

componentize-py generates the `wit_world` package from `wit/controller.wit` while it builds
the component (it is not a file of this directory): `wit_world.exports.Controller` is the
exported interface, to subclass in a class of the same name in this module, and
`wit_world.imports.types` holds the records and the `error` variant. A WIT
`result<T, error>` is the method's return value `T` on success; a failure is raised as
`componentize_py_types.Err(<one of the error variant's cases>)`.

All the logic is in `notes.py`, which the unit tests run with plain CPython; this module only
converts between the WIT types and it.
"""

import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

import notes

# cupd preopens the source tree at `/`, read-only for get and list, a private copy for put
# and delete.
STORE = notes.NoteStore("/")


def _wit_error(e: Exception) -> Err:
    """The WIT error of an exception: the case of a `NoteError`, `failed` for anything
    else (the traceback goes to stderr, which cupd logs), rather than a trap."""
    if isinstance(e, notes.NotFound):
        return Err(types.Error_NotFound(str(e)))
    if isinstance(e, notes.Invalid):
        return Err(types.Error_Invalid(str(e)))
    if not isinstance(e, notes.NoteError):
        traceback.print_exc()
        return Err(types.Error_Failed(f"{type(e).__name__}: {e}"))
    return Err(types.Error_Failed(str(e)))


def _resource(note: notes.Note) -> types.Resource:
    return types.Resource(
        api_version=notes.API_VERSION,
        kind=notes.KIND,
        metadata=types.Metadata(
            namespace=note.namespace,
            name=note.name,
            labels=note.labels,
            annotations=note.annotations,
        ),
        spec=note.spec_json(),
    )


class Controller(exports.Controller):
    def get(self, req: types.Request, name: str) -> types.Resource:
        try:
            return _resource(STORE.get(req.kind, req.namespace, name))
        except Exception as e:
            raise _wit_error(e) from None

    def list(self, req: types.Request) -> list[types.Resource]:
        try:
            return [_resource(note) for note in STORE.list(req.kind, req.namespace)]
        except Exception as e:
            raise _wit_error(e) from None

    def put(self, req: types.Request, name: str, res: types.Resource) -> None:
        try:
            STORE.put(
                req.kind,
                req.namespace,
                name,
                api_version=res.api_version,
                res_kind=res.kind,
                res_namespace=res.metadata.namespace,
                res_name=res.metadata.name,
                labels=res.metadata.labels,
                annotations=res.metadata.annotations,
                spec=res.spec,
            )
        except Exception as e:
            raise _wit_error(e) from None

    def delete(self, req: types.Request, name: str) -> None:
        try:
            STORE.delete(req.kind, req.namespace, name)
        except Exception as e:
            raise _wit_error(e) from None
