"""``--out`` of ``edgeae ground decode`` / ``serve``: the folder held for one session (:mod:`edgeae.folder_lock`)
and the checks before it is written (a file, a folder below a file, an input folder, a session already there)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from edgeae.cli import CLIError
from edgeae.folder_lock import file_in_the_way


class OutClaim:
    """``--out`` held for one ground session (:func:`edgeae.folder_lock.hold`) until ``stack`` closes: a second
    session into the same folder is refused at once (exit status 2), before it checks or writes anything there."""

    def __init__(self, out: Path, stack: contextlib.ExitStack) -> None:
        self.out, self.stack, self.held = out, stack, False

    def hold(self) -> None:
        from edgeae.folder_lock import FolderBusy, hold

        try:
            self.stack.enter_context(hold(self.out, "ground session"))
        except FolderBusy as exc:
            raise CLIError(str(exc)) from None
        except OSError as exc:  # a folder this process cannot write in (no lock file can be made there)
            raise CLIError(f"--out {self.out}: cannot write there ({exc.strerror or exc})") from None
        self.held = True

    def claim(self) -> None:
        """Create ``--out`` when missing and hold it; a folder that did not exist at the first check is checked
        again once held (another session may have made it meanwhile)."""
        create_out(self.out)
        if not self.held:
            self.hold()
            check_session(self.out)


def check_out(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` that cannot be a folder (a file, or below one) or that is an input folder, with one line
    saying so (mkdir says only "Not a directory" or "File exists")."""
    out = args.out
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is an existing file; name a directory for the images and reports")
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise CLIError(f"cannot create the output folder --out {out}: {blocking} is a file, not a folder")
    inputs = [("packet folder", p) for p in getattr(args, "packets", []) if p.is_dir()]
    if args.original is not None and args.original.is_dir():
        inputs.append(("--original folder", args.original))
    for what, folder in inputs:
        if out.resolve() == folder.resolve():  # its images and reports would mix with (or overwrite) the inputs
            raise CLIError(
                f"--out {out} is the {what} {folder}: the images and reports would be written among its files; name "
                "another folder"
            )


def create_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the output folder --out {out}: {exc.strerror or exc}") from None


def check_session(out: Path) -> None:
    """Refuse an ``--out`` that holds a ground session already (:data:`SESSION_FILES`; ``.edgeae.lock``, the
    lock of a session running there, is not one)."""
    held = [n for n in SESSION_FILES if (out / n).exists()]
    if held == ["stream.json"] and _assembled_nothing(out):  # nothing there to lose: the rerun replaces it
        return
    if "stream.json" in held:
        unfinished = _unfinished(out)
    elif held:  # a serve session's recording and no report at all: stopped (killed) before its decode began
        unfinished = "stopped before it wrote stream.json (killed during the pass)"
    else:
        unfinished = None
    if unfinished and "received.bin" in held:  # a serve session: that recording may be the only copy of the pass
        raise CLIError(
            f"--out {out} holds a serve session that did not finish ({unfinished}): its outputs are partial, and "
            f"{out / 'received.bin'} is its recording (keep it: it may be the only copy of the pass); to decode it "
            f"again run  edgeae ground decode {out / 'received.bin'} --out NEW_FOLDER  (with the same options), or "
            "name a new folder for a new session"
        )
    if unfinished:  # its outputs are partial: say so, and how to decode again
        raise CLIError(
            f"--out {out} holds a ground session that did not finish ({unfinished}): its outputs are partial; "
            "to decode again, remove that folder (or move it away) and rerun the same command, or name a new folder"
        )
    if held:  # a second session would overwrite the first's recording and mix its frames with stale ones
        raise CLIError(
            f"--out {out} already holds a ground session ({', '.join(held)}): name a new folder, or move "
            "that one away first"
        )


SESSION_FILES = ("stream.json", "received.bin")
"""Files that mark a folder as holding a ground session already."""


def _assembled_nothing(out: Path) -> bool:
    """Whether ``out`` holds only the report of a session that accepted no packet and assembled no product (a
    decode of the wrong file: exit status 1, "no product could be assembled"), and nothing else but the lock: a
    rerun into the same folder loses nothing (until session 46 it was refused until the folder was moved away)."""
    import json

    if {p.name for p in out.iterdir()} - {"stream.json", ".edgeae.lock"}:
        return False
    try:
        stream = json.loads((out / "stream.json").read_text())["stream"]
        return stream["packets_accepted"] == 0 and stream["products"] == 0 and stream.get("complete") is True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _unfinished(out: Path) -> str | None:
    """Why the session whose ``stream.json`` is in ``out`` did not finish (interrupted, its disk full, killed),
    or None when it did (or wrote no ``complete`` field: an older edgeae's). An interrupted session that decoded
    every product it received (``products_not_decoded`` 0) finished: serve wrote ``complete: false`` for every
    signal until session 34."""
    import json

    try:
        stream = json.loads((out / "stream.json").read_text())["stream"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its stream.json cannot be read: {exc}"
    if not isinstance(stream, dict) or stream.get("complete", True) is not False:
        return None
    if stream.get("interrupted") and stream.get("products_not_decoded") == 0:  # the final stream.json, all decoded
        return None
    how = (
        f"interrupted by {stream['interrupted']}"
        if stream.get("interrupted")
        else "stopped before its end (killed, or its disk full)"
    )
    return f"{how}; stream.json says complete: false, {stream.get('products_not_decoded', '?')} products not decoded"
