"""edgeae.report_files (session 36, fixer j2; review s36 r14 #1-#5, #7): a held Ctrl-C or SIGTERM is delivered only
once the write is finished (folders fsynced, the staging folder gone), the handlers are put back even when a signal
arrives meanwhile, an asyncio loop sees a held Ctrl-C once, an earlier file that could not be put back is kept under
its own name, one thread's sweep never removes another's new staging folder, and temporary files of killed runs are
removed."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeae.report_files as rf
from edgeae.report import Figure, Section, write_report

EARLIER, NEW = 10, 200
MAIN = threading.current_thread() is threading.main_thread()
needs_main = pytest.mark.skipif(not MAIN, reason="signals are held in the main thread only")


def _report(value: int, names: tuple[str, ...] = ("a", "b", "c")) -> list[Section]:
    pix = np.full((4, 6), value, np.uint8)
    return [Section("S", figures=[Figure(n, pix, n) for n in names], images={"bar": pix})]


def _hidden(out: Path) -> list[str]:
    """What a write may leave behind: staging folders, kept earlier files, temporary files."""
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*"))


def _signal_at_first_rename(monkeypatch: pytest.MonkeyPatch, sig: int) -> list[int]:
    real = os.replace
    sent: list[int] = []

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).parent.name == "img" and ".new-" in str(src) and not sent:  # the first rename into place
            sent.append(sig)
            os.kill(os.getpid(), sig)
        real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return sent


# ----------------------------------------------------------------------------- r14 #1: deliver after the clean-up
@needs_main
def test_a_held_signal_is_delivered_once_the_folders_are_fsynced_and_the_staging_folder_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    write_report(out, "earlier", _report(EARLIER))
    synced: list[Path] = []
    real_sync = rf.fsync_folder
    monkeypatch.setattr(rf, "fsync_folder", lambda f: (synced.append(Path(f)), real_sync(f)))
    seen: list[tuple[list[str], list[Path]]] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append((_hidden(out), list(synced)))

    old = signal.signal(signal.SIGTERM, handler)
    try:
        sent = _signal_at_first_rename(monkeypatch, signal.SIGTERM)
        write_report(out, "new", _report(NEW))
    finally:
        signal.signal(signal.SIGTERM, old)
    assert sent and len(seen) == 1
    hidden, folders = seen[0]
    assert hidden == []  # no img/.new-PID-X/.old/ when the signal is acted on
    assert out / "img" in folders and out in folders
    assert b"<h1>new</h1>" in (out / "index.html").read_bytes()


def test_a_library_caller_killed_by_a_held_sigterm_leaves_the_new_report_and_nothing_else(tmp_path: Path) -> None:
    """SIGTERM left at SIG_DFL (no CLI): the process dies when the signal is delivered, after the clean-up."""
    out = tmp_path / "out"
    code = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        import numpy as np
        from edgeae.report import Figure, Section, write_report
        def rep(v):
            pix = np.full((4, 6), v, np.uint8)
            return [Section("S", figures=[Figure(n, pix, n) for n in "abc"])]
        out = Path({str(out)!r})
        write_report(out, "earlier", rep(10))
        real, sent = os.replace, []
        def replace(src, dst, *a, **k):
            if Path(dst).parent.name == "img" and ".new-" in str(src) and not sent:
                sent.append(1); os.kill(os.getpid(), signal.SIGTERM)
            return real(src, dst, *a, **k)
        os.replace = replace
        write_report(out, "new", rep(200))
        print("not reached")
        """
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGTERM, p.stderr[-800:]
    assert "not reached" not in p.stdout
    assert _hidden(out) == []
    assert b"<h1>new</h1>" in (out / "index.html").read_bytes()


# ----------------------------------------------------------------------------- r14 #2: a signal while restoring
@needs_main
@pytest.mark.parametrize("masked", [True, False], ids=["sigmask", "no-sigmask"])
def test_a_ctrl_c_while_the_handlers_are_put_back_leaves_sigterm_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, masked: bool
) -> None:
    """A Ctrl-C right after SIGINT's handler is back, before SIGTERM's: SIGTERM must not stay held for good. Without
    pthread_sigmask (or with the signal taken by another thread) the hold passes a late signal on."""
    if not masked:
        monkeypatch.delattr(signal, "pthread_sigmask", raising=False)
    out = tmp_path / "out"
    write_report(out, "earlier", _report(EARLIER))
    terms: list[int] = []
    old_term = signal.signal(signal.SIGTERM, lambda s, f: terms.append(s))
    term_handler = signal.getsignal(signal.SIGTERM)
    real_signal = signal.signal
    phase = {"restoring": False}

    def wrapped(sig: int, handler: Any) -> Any:
        result = real_signal(sig, handler)
        if phase["restoring"] and sig == signal.SIGINT and handler is signal.default_int_handler:
            phase["restoring"] = False
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C a microsecond later
        return result

    real_replace = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).name == "index.html":  # the last rename: what follows is the restore
            phase["restoring"] = True
        real_replace(src, dst, *args, **kwargs)

    try:
        monkeypatch.setattr(signal, "signal", wrapped)
        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(KeyboardInterrupt):
            write_report(out, "new", _report(NEW))
        monkeypatch.setattr(signal, "signal", real_signal)
        os.kill(os.getpid(), signal.SIGTERM)  # reaches the caller's handler, now and later
        os.kill(os.getpid(), signal.SIGTERM)
        assert terms == [signal.SIGTERM, signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is term_handler
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        real_signal(signal.SIGTERM, old_term)
    assert b"<h1>new</h1>" in (out / "index.html").read_bytes() and _hidden(out) == []


# ----------------------------------------------------------------------------- r14 #3: asyncio sees it once
@needs_main
@pytest.mark.skipif(sys.platform == "win32", reason="add_signal_handler is Unix only")
def test_an_asyncio_loop_gets_a_ctrl_c_held_during_the_renames_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_report(tmp_path / "out", "earlier", _report(EARLIER))
    calls: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, lambda: calls.append("SIGINT"))
        try:
            sent = _signal_at_first_rename(monkeypatch, signal.SIGINT)
            write_report(tmp_path / "out", "new", _report(NEW))
            assert sent
            for _ in range(20):
                await asyncio.sleep(0.01)
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    asyncio.run(main())
    assert calls == ["SIGINT"]


# ----------------------------------------------------------------------------- r14 #4: a put-back that fails
def test_an_earlier_file_that_cannot_be_put_back_is_kept_under_its_name_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "pb"
    write_report(out, "earlier", _report(EARLIER))
    earlier_a = (out / "img" / "00-a.png").read_bytes()
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        s, d = Path(src), Path(dst)
        if d == out / "img" / "00-b.png" and s.parent.name.startswith(".new-"):
            raise OSError(errno.EIO, "injected")  # the second rename into place fails...
        if s.parent.name == ".old" and d.parent == out / "img":
            raise OSError(errno.EIO, "injected too")  # ...and so does putting 00-a.png back
        real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as info:
        write_report(out, "new", _report(NEW))
    monkeypatch.setattr(os, "replace", real)
    message = str(info.value)
    assert "could not put back 00-a.png (injected too)" in message
    kept = [p for p in (out / "img").iterdir() if p.name.startswith(f".earlier-{os.getpid()}-")]
    assert len(kept) == 1 and [p.name for p in kept[0].iterdir()] == ["00-a.png"]
    assert (kept[0] / "00-a.png").read_bytes() == earlier_a
    assert f"the earlier 00-a.png is kept in {kept[0]}" in message
    assert not [p for p in (out / "img").iterdir() if p.name.startswith(".new-")]
    write_report(out, "again", _report(NEW))  # a later write leaves the kept copy alone
    assert (kept[0] / "00-a.png").read_bytes() == earlier_a


# ----------------------------------------------------------------------------- r14 #5: two threads staging at once
def test_a_sweep_between_another_threads_mkdtemp_and_its_registration_keeps_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rf.tempfile.mkdtemp
    others: list[Any] = []
    waiting: list[threading.Thread] = []

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        made = real(*args, **kwargs)
        if not others:  # thread B stages (its sweep included) right after A's folder is made, before A records it
            t = threading.Thread(target=lambda: others.append(rf.sweep_leftovers(tmp_path)))
            t.start()
            t.join()
            # and a sweep that also takes this process's own folders waits for A to record its folder
            mine = threading.Thread(target=lambda: others.append(rf.sweep_leftovers(tmp_path, this_process=True)))
            mine.start()
            mine.join(0.2)
            waiting.append(mine)
        return made

    monkeypatch.setattr(rf.tempfile, "mkdtemp", mkdtemp)
    a = rf.stage_images(tmp_path)
    waiting[0].join(5)
    assert a.is_dir() and not waiting[0].is_alive()
    assert others == [[], []]  # neither sweep removed anything
    rf.release(a)


def test_a_staging_folder_of_another_live_process_or_this_one_is_never_swept_by_a_plain_write(tmp_path: Path) -> None:
    img = tmp_path / "img"
    img.mkdir()
    live_other = img / f".new-{os.getppid()}-abc"
    mine_left = img / f".new-{os.getpid()}-old"
    dead = img / ".new-999999999-x"
    for folder in (live_other, mine_left, dead):
        folder.mkdir()
    staged = rf.stage_images(tmp_path)
    assert sorted(p.name for p in img.iterdir()) == sorted([live_other.name, mine_left.name, staged.name])
    rf.sweep_leftovers(tmp_path, this_process=True)  # a folder held by its caller: this process's leftovers too
    assert sorted(p.name for p in img.iterdir()) == sorted([live_other.name, staged.name])
    rf.release(staged)


# ----------------------------------------------------------------------------- r14 #7: temporary files of killed runs
def test_temporary_files_of_dead_processes_are_removed_by_the_next_write(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_report(out, "earlier", _report(EARLIER))
    dead = out / ".index.html.ab12cd34.tmp-999999999"
    live = out / f".index.html.ab12cd34.tmp-{os.getppid()}"
    mine = out / f".index.html.ab12cd34.tmp-{os.getpid()}"
    other = out / ".notes.txt.tmp"  # not a temporary file's name: kept
    for f in (dead, live, mine, other):
        f.write_text("half")
    write_report(out, "new", _report(NEW))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == sorted([live.name, mine.name, other.name])
    assert rf.sweep_leftovers(out, this_process=True) == [mine.name]
