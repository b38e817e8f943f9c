"""The `manifest` poller in Python (componentize-py, WIT dispatch:poller@0.2.0).

Each folder of the root is sent, as one directory transfer, once its manifest
(`manifest.json` by default) lists files that are all present with the listed
sizes. A folder that is not ready is logged at debug level with the reason,
which the agent shows on the poller's page.

Build: componentize-py -d wit -w dispatch:poller/poller@0.2.0 componentize app -o manifest.wasm
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import fs, log, types

# The host refuses larger files anyway; asking for its bound keeps the error
# text the host's own.
MAX_MANIFEST_BYTES = 1_048_576
U64_MAX = 2**64 - 1


class Invalid(Exception):
    """A manifest that does not have the expected shape; the text says why."""


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON does not.
    raise Invalid(f"{name} is not JSON")


def parse_manifest(data: bytes) -> list[tuple[str, int]]:
    """The (name, size) pairs of a manifest, in its order, or raises Invalid."""
    try:
        # A negative literal (even `-0`) is no size: read it as -1 so the check refuses it.
        doc = json.loads(data.decode("utf-8"), parse_constant=_reject_constant,
                         parse_int=lambda s: -1 if s.startswith("-") else int(s))
    except UnicodeDecodeError:
        raise Invalid("not UTF-8") from None
    except json.JSONDecodeError as e:
        raise Invalid(f"bad JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(doc, dict):
        raise Invalid("not a JSON object")
    files = doc.get("files")
    if not isinstance(files, list):
        raise Invalid("`files` is not an array")
    out = []
    for i, item in enumerate(files):
        if not isinstance(item, dict):
            raise Invalid(f"files[{i}] is not an object")
        name, size = item.get("name"), item.get("size")
        if not isinstance(name, str):
            raise Invalid(f"files[{i}].name is not a string")
        # bool is an int in Python: refuse it explicitly.
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= U64_MAX:
            raise Invalid(f"files[{i}].size is not a whole number of bytes")
        if name == "" or name.startswith("/") or ".." in name.split("/"):
            raise Invalid(f"files[{i}].name `{name}` is empty, absolute or has a `..`")
        out.append((name, size))
    return out


class Listings:
    """The directories of one folder, each listed once: a host call per
    folder rather than one per listed file."""

    def __init__(self) -> None:
        self.dirs: dict[str, dict[str, types.Entry]] = {}

    def look_up(self, folder: str, name: str) -> types.Entry | None:
        """The entry of `name` (which may hold `/`) inside `folder`, or None
        when it, or a folder on its way, is missing. Symlinks are not
        followed: a directory transfer does not send them."""
        parts = [p for p in name.split("/") if p not in ("", ".")]
        path = folder
        for i, part in enumerate(parts):
            if path not in self.dirs:
                self.dirs[path] = {e.name: e for e in fs.list_dir(path)}
            entry = self.dirs[path].get(part)
            if entry is None or i == len(parts) - 1:
                return entry
            if entry.kind != types.EntryKind.DIR:
                return None
            path = f"{path}/{part}"
        return None


def not_ready_reason(folder: str, manifest: str) -> str | None:
    """Why `folder` is not ready yet, or None when it is."""
    listings = Listings()
    try:
        if listings.look_up(folder, manifest) is None:
            return f"no {manifest}"
        data = fs.read_file(f"{folder}/{manifest}", MAX_MANIFEST_BYTES)
    except Err as e:
        return str(e.value)
    try:
        files = parse_manifest(data)
    except Invalid as e:
        return f"{manifest} is not valid: {e}"
    for name, size in files:
        try:
            entry = listings.look_up(folder, name)
        except Err as e:
            return str(e.value)
        if entry is None:
            return f"missing {name}"
        if entry.kind != types.EntryKind.FILE:
            return f"{name} is not a file"
        if entry.size != size:
            return f"{name} is {entry.size} bytes, the manifest says {size}"
    return None


def boolean(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false")
    if value not in ("true", "false"):
        raise Err(f"parameter `{name}` must be true or false, not `{value}`")
    return value == "true"


class Plugin(exports.Plugin):
    def describe(self) -> types.Info:
        return types.Info(
            name="manifest",
            version="0.1.0",
            description="Sends each folder of the root once its manifest lists files "
            "that are all present with the listed sizes.",
            params=[
                types.ParamSpec("manifest", types.ParamType.TEXT, "manifest.json",
                                "The manifest's file name inside each folder"),
                types.ParamSpec("include_hidden", types.ParamType.BOOLEAN, "false",
                                "Also consider names starting with '.' (often partial uploads)"),
            ],
        )

    def poll(self, request: types.PollRequest) -> list[types.Action]:
        params = {p.name: p.value for p in request.params}
        manifest = params.get("manifest", "manifest.json")
        include_hidden = boolean(params, "include_hidden")
        # Sorted by name in byte order; an error fails the poll with the host's text.
        folders = [
            e.name
            for e in fs.list_dir("")
            if e.kind == types.EntryKind.DIR and (include_hidden or not e.name.startswith("."))
        ]
        actions = []
        for folder in folders:
            reason = not_ready_reason(folder, manifest)
            if reason is None:
                actions.append(types.Action_Transfer(types.Transfer(folder, types.ItemKind.DIR)))
            else:
                log.log(log.Level.DEBUG, f"not ready: {folder}: {reason}")
        return actions
