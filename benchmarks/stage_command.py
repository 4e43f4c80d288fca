"""One command of a ``python -m benchmarks`` stage (benchmarks/stage_run.py runs them): in a process group of its own
led by a guard, its output shown and logged as it comes, stopped with a signal it can act on, and whatever it leaves
behind killed the moment it ends. Linux's /proc names the processes involved; elsewhere they are killed unnamed.
Until session 39 this was ``benchmarks.publish.run_command``."""

from __future__ import annotations

import codecs
import os
import select
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import IO

from benchmarks.publish import ROOT

GUARD = ("/bin/sh", "-c", "trap '' INT TERM HUP; read -r line; kill -s KILL 0")
"""The stage command's process group is this guard's: it waits on a pipe whose only writer is the harness and,
when that closes (the harness ended, even by SIGKILL), kills the group, itself with it."""
STOP_WAIT_S = 10.0
"""How long a stopped command may take to end (an ``edgeae`` command writes what it has, a summary of the frames so
far) before its group is killed; it is waited for only when it can act on the signal it was sent."""
LINGER_S = 1.0
"""Once the command ended and its group was killed: how long its output is still read while something outside the
group (a daemon it started with ``setsid``) holds the pipe open."""
POLL_S = 0.1
"""How often the harness looks whether the command ended while its output is quiet."""
MOST_NAMED = 8
"""Leftover processes named by pid and command line in a note; the rest are counted."""


def run_command(argv: list[str], log: IO[bytes], env: dict[str, str], notes: list[str] | None = None) -> int:
    """Run one stage command in the repository, its output (stdout and stderr together) shown and written to
    ``log``; returns its exit status. The command runs in a process group of its own, so a terminal's Ctrl-C
    reaches it once (through the harness) and what it starts (a worker, a tool) is stopped with it. On Ctrl-C (or
    SIGTERM or SIGHUP, which ``python -m benchmarks`` turns into it) the group gets SIGINT, or SIGTERM when the
    command ignores SIGINT (a background shell's, inherited: until session 39 it sat out 10 s, then SIGKILL), and
    the command is given :data:`STOP_WAIT_S` to end (none when it ignores both); then this re-raises. The moment the
    command ends, however it ended, what is left of its group is killed, named in ``notes`` (and the log and the
    output); until session 39 a leftover holding the output pipe kept the harness reading it until it ended by
    itself (~77 s after a failed planted_blocks run). A process outside the group holding the pipe is named too and
    no longer read after :data:`LINGER_S`. A harness that dies without a word (SIGKILL, as ``kill -9 %1`` or
    ``timeout -s KILL`` send to the job's group, which the command is not in) takes the group with it too: the
    group's first member is a :data:`GUARD` that kills it when the harness's end of a pipe closes
    (``PR_SET_PDEATHSIG`` would take the command alone, not what it started)."""
    said = [] if notes is None else notes
    r, w = os.pipe()  # both close on exec: the guard gets ``r`` as its stdin, nothing else gets either
    try:
        guard = subprocess.Popen(GUARD, stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 process_group=0)  # fmt: skip
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    try:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, process_group=guard.pid)  # fmt: skip
    except BaseException:
        _end_group(guard, w)
        raise
    if proc.stdout is None:  # for the type checker: stdout=PIPE always gives one
        raise RuntimeError("no pipe from the stage command")
    tee = _Tee(proc.stdout.fileno(), log)
    try:
        while not tee.eof and proc.poll() is None:
            tee.pump(POLL_S)
        rc = proc.wait()  # at once, unless it closed its output and runs on
        while tee.pump(0):  # what it wrote before it ended
            pass
        left = _members(guard.pid, but=guard.pid)
        _signal_group(guard.pid, signal.SIGKILL)  # the guard too: the command is over
        if left:
            said.append(tee.say(f"killed what the command left running in its process group when it ended: {left}"))
        deadline = time.monotonic() + LINGER_S
        while not tee.eof and (wait := deadline - time.monotonic()) > 0:
            tee.pump(wait)
        if not tee.eof:
            holders = _holders(tee.fd) or "a process"
            said.append(tee.say(f"stopped reading the command's output: still held open by {holders}, outside its "
                                "process group"))  # fmt: skip
        return rc
    except KeyboardInterrupt:
        if proc.poll() is None:
            _stop(proc, guard.pid, tee)
        raise
    finally:
        proc.stdout.close()
        _end_group(guard, w)
        proc.wait()


class _Tee:
    """The command's output pipe (``fd``, read without blocking), copied to the log and the harness's stdout."""

    def __init__(self, fd: int, log: IO[bytes]) -> None:
        os.set_blocking(fd, False)
        self.fd, self.log, self.eof, self.line_open = fd, log, False, False
        self.decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)

    def pump(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for output and copy what is there; True when something was."""
        if self.eof or not self.poller.poll(max(0, round(timeout_s * 1000))):
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return False
        if not chunk:
            self.eof = True
            return False
        self.log.write(chunk)
        self.log.flush()
        sys.stdout.write(self.decode(chunk))
        sys.stdout.flush()
        self.line_open = not chunk.endswith(b"\n")
        return True

    def say(self, note: str) -> str:
        """``note`` as the harness's own line in the log and the output (on a line of its own); returns it."""
        lead = "\n" if self.line_open else ""
        line = f"{lead}== {note}\n"
        self.log.write(line.encode())
        self.log.flush()
        sys.stdout.write(line)
        sys.stdout.flush()
        self.line_open = False
        return note


def _stop(proc: subprocess.Popen[bytes], pgid: int, tee: _Tee) -> None:
    """Stop the running command with a signal it acts on (SIGINT to its group, as a terminal's Ctrl-C; else SIGTERM
    to the command alone, so a driver stops its own workers: until session 39 the whole group got it, review r1 #4),
    and give it :data:`STOP_WAIT_S` to end (still showing and logging what it says); its group is killed afterwards
    either way."""
    ignored = _ignored(proc.pid)
    if signal.SIGINT not in ignored:
        _signal_group(pgid, signal.SIGINT)  # the guard ignores it
    elif signal.SIGTERM not in ignored:
        tee.say("the command ignores SIGINT (as started from a background shell): stopping it with SIGTERM")
        with suppress(ProcessLookupError, PermissionError):  # the command alone, as `kill PID` does: its own
            os.kill(proc.pid, signal.SIGTERM)  # workers are its to stop (their group is killed afterwards anyway)
    else:
        tee.say("the command ignores SIGINT and SIGTERM: killing its process group")
        return
    deadline = time.monotonic() + STOP_WAIT_S
    while proc.poll() is None and (wait := deadline - time.monotonic()) > 0:
        if tee.eof:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
        else:
            tee.pump(min(wait, POLL_S))
    while tee.pump(0):  # what it wrote before it ended: its last words
        pass


def _ignored(pid: int) -> set[int]:
    """The stop signals (SIGINT, SIGTERM) process ``pid`` ignores: from /proc where there is one, else those the
    harness ignores (which a command it started inherits)."""
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("SigIgn:"))
        mask = int(line.split()[1], 16)
        return {s for s in (signal.SIGINT, signal.SIGTERM) if mask >> (s - 1) & 1}
    except (OSError, StopIteration, IndexError, ValueError):
        return {s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is signal.SIG_IGN}


def _pids() -> list[int]:
    try:
        return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    except OSError:  # no /proc
        return []


def _named(pid: int) -> str:
    """``pid 123 (sleep 8)``: the process and its command line (shortened), or the pid alone."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode(errors="replace").split("\0")
    except OSError:
        return f"pid {pid}"
    line = " ".join(words)
    return f"pid {pid} ({line if len(line) <= 80 else line[:77] + '...'})" if line else f"pid {pid}"


def _members(pgid: int, but: int) -> str:
    """The live processes of group ``pgid`` other than ``but``, named (empty when none, or without /proc)."""
    found = []
    for pid in _pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X") and pid != but:
            found.append(pid)
    return _listed(found)


def _holders(fd: int) -> str:
    """The processes other than this one with the pipe ``fd`` open, named (empty when none found)."""
    pipe = f"pipe:[{os.fstat(fd).st_ino}]"
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or not ours to look at
            continue
        for n in fds:
            with suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{n}") == pipe:
                    found.append(pid)
                    break
    return _listed(found)


def _listed(pids: list[int]) -> str:
    """``pids`` named, the first :data:`MOST_NAMED` of them and a count of the rest, so a command that left a
    thousand workers behind gives one short note in the stage record, not a thousand (review r1 of session 39)."""
    shown = ", ".join(_named(pid) for pid in pids[:MOST_NAMED])
    return shown + (f" and {len(pids) - MOST_NAMED} more" if len(pids) > MOST_NAMED else "")


def _end_group(guard: subprocess.Popen[bytes], w: int) -> None:
    """Kill what is left of the guard's group, the guard with it, and reap the guard."""
    _signal_group(guard.pid, signal.SIGKILL)
    os.close(w)
    guard.wait()


def _signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to the stage command's process group (gone already: nothing to do)."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
