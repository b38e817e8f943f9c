"""The Dir poller in Python: the twin of plugins/dir, built with componentize-py
against wit/ to show the contract is not Rust-only.

Each subdirectory of the root whose files include every marker is sent as one
directory transfer; hidden names are skipped unless include_hidden is true.
"""

from wit_world import exports
from wit_world.imports import fs, log, types


def _visible(entry: types.Entry, include_hidden: bool) -> bool:
    return include_hidden or not entry.name.startswith(".")


class Plugin(exports.Plugin):
    def describe(self) -> types.Info:
        return types.Info(
            name="dir-py",
            version="0.1.0",
            description="Sends each subdirectory of the root whose files include every marker (Python).",
            params=[
                types.ParamSpec("markers", types.ParamType.TEXT_LIST, "ADI.XML,ADI.DTD",
                                "Comma-separated file names that must all be present"),
                types.ParamSpec("include_hidden", types.ParamType.BOOLEAN, "false",
                                "Also consider names starting with '.'"),
            ],
        )

    def poll(self, request: types.PollRequest) -> list[types.Action]:
        params = {p.name: p.value for p in request.params}
        markers = [m.strip() for m in params.get("markers", "").split(",") if m.strip()]
        include_hidden = params.get("include_hidden", "false") == "true"
        actions = []
        for d in fs.list_dir(""):
            if d.kind != types.EntryKind.DIR or not _visible(d, include_hidden):
                continue
            names = {
                e.name
                for e in fs.list_dir(d.name)
                if e.kind == types.EntryKind.FILE and _visible(e, include_hidden)
            }
            if all(m in names for m in markers):
                actions.append(types.Action_Transfer(types.Transfer(d.name, types.ItemKind.DIR)))
            else:
                log.log(log.Level.DEBUG, f"{d.name}: not ready (markers missing)")
        return actions
