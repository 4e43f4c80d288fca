"""A small grey mission scored by a tiny VAE, its frames and a ``firmware-sim run`` of them: shared by the
firmware-sim CLI and report tests (five test files wrote their own copy of each until session 37).

Imports of the flight runtime stay inside the functions, so a test module's ``pytest.importorskip`` lines run first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


def mission_text(
    name: str, model: Path, frame_ms: float = 60000.0, camera: str = "", sampling: bool = True, downlink: bool = True
) -> str:
    """The mission's TOML: one grey channel in 64-row strips, keep 0.1 (``sampling``), the top 3 of the 32-px patches
    that ``model`` scores, ``frame_ms`` a frame and 100,000 bytes a pass (``downlink``); ``camera``: more
    ``[camera]`` lines (e.g. ``"height = 0\\nwidth = 0\\n"``)."""
    text = f'\nname = "{name}"\n[camera]\nchannels = 1\nstrip_rows = 64\n{camera}'
    text += "[sampling]\nkeep = 0.1\n" if sampling else ""
    text += f'[anomaly]\nmodel = "{model}"\npatch = 32\nstride = 32\ntop_k = 3\n[budget]\nframe_ms = {frame_ms}\n'
    return text + ("downlink_bytes_per_pass = 100000\n" if downlink else "")


def write_mission(folder: Path, name: str, **kwargs: object) -> Path:
    """``folder/m.toml`` (:func:`mission_text`'s keywords) scored by a tiny VAE written to ``folder/vae.onnx``."""
    from edgeae.firmware_sim.testing import tiny_vae_onnx

    model = tiny_vae_onnx(folder / "vae.onnx", 1, 32)
    (folder / "m.toml").write_text(mission_text(name, model, **kwargs))  # type: ignore[arg-type]
    return folder / "m.toml"


def save_frames(folder: Path, n: int) -> list[Path]:
    """``folder/f0.npy`` … ``f{n-1}.npy``: the textured test frames 0 … n-1."""
    from edgeae.firmware_sim.testing import textured_frame

    paths = [folder / f"f{i}.npy" for i in range(n)]
    for i, path in enumerate(paths):
        np.save(path, textured_frame(i))
    return paths


def run_frames(mission: Path, frames: list[Path], out: Path, *extra: str) -> int:
    """``firmware-sim run --mission MISSION --frames FRAMES --out OUT EXTRA``: its exit status."""
    from edgeae.firmware_sim.cli import main

    return main(["run", "--mission", str(mission), "--frames", *map(str, frames), "--out", str(out), *extra])


def one_frame_run(folder: Path, name: str, **kwargs: object) -> Path:
    """``folder/out``: the run folder of frame 0 flown by :func:`write_mission`'s mission (which must exit 0)."""
    mission = write_mission(folder, name, **kwargs)
    out = folder / "out"
    assert run_frames(mission, save_frames(folder, 1), out) == 0
    return out


def runs_refused_by_memory(
    folder: Path, monkeypatch: Any, frames: list[Path], refused: list[bool]
) -> list[tuple[dict[str, Any], Any]]:
    """(summary, runtime) of runs of one command on ``frames`` into ``folder/out`` (the tiny models, no
    reconstruction), one a flag of ``refused``: True, the board's memory refuses every frame (memory_unavailable)."""
    from edgeae.firmware_sim import loop
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.testing import small_mission, tiny_models

    models = tiny_models(folder / "models")
    real = loop.memory_fit
    out = []
    for no_room in refused:
        fit = (
            (lambda rt, reader, rec: (("memory_unavailable", "this process can get 1 MiB more"), None))
            if no_room
            else real
        )
        monkeypatch.setattr(loop, "memory_fit", fit)
        rt = FlightRuntime(small_mission(models, reconstruction={"mode": "off"}), folder / "out")
        out.append((rt.run(frames), rt))
    return out


class DeferredEngine:
    """A scoring engine that holds every submitted batch in flight until ``drain`` (what the loop's wait for the
    engine, ``frame_work``'s ``score_wait``, is about): ``pending`` counts them, scores are the patch indices."""

    batch = 4
    ms_per_item = 1.0

    def __init__(self) -> None:
        self.inflight: list[tuple[Any, np.ndarray]] = []

    @property
    def pending(self) -> int:
        return len(self.inflight)

    def submit(self, raw: np.ndarray, tag: Any, fill: Any = None) -> list[tuple[Any, np.ndarray]]:
        self.inflight.append((tag, np.arange(len(raw), dtype=np.float64)))  # scored later, on drain
        return []

    def drain(self) -> list[tuple[Any, np.ndarray]]:
        done, self.inflight = self.inflight, []
        return done


def run_flight(tmp_path: Path, mission: str, frames: list[Path], *sets: str) -> subprocess.CompletedProcess[str]:
    """``firmware-sim run`` of ``mission`` on ``frames`` into ``tmp_path/out`` in onnxruntime, with ``--set`` each of
    ``sets`` (the session-39 flight-memory tests' run)."""
    cmd = [sys.executable, "-m", "edgeae.firmware_sim.cli", "run", "--mission", mission, "--frames", *map(str, frames),
           "--out", str(tmp_path / "out"), "--set", 'anomaly.prefer=["onnx"]']  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def frame_records(tmp_path: Path) -> list[dict[str, Any]]:
    """The per-frame telemetry records of a :func:`run_flight` run."""
    lines = [json.loads(x) for x in (tmp_path / "out" / "telemetry.jsonl").read_text().splitlines()]
    return [x for x in lines if "status" in x and "source" in x]


# What the orbital mission's models hold over the boot baseline in onnxruntime, JPEG frames' decoder loaded, on the
# machine its 64 MiB was sized on (session 40: `firmware-sim check --mission orbital_nac --set
# 'anomaly.prefer=["onnx"]' --frame-type .jpg` printed 49.0-49.1 MiB; `firmware-sim run`'s boot refusal on a JPEG,
# 51,462,144 B). The CI machine of session 39's last commit held 6.9 MiB more (that refusal: 58,761,216-59,006,976 B),
# so a test of a frame's buffers adds what this machine's interpreters hold beyond this figure to the budget: it
# tests the plan and the loop, not the runtime's footprint.
ORBITAL_ONNX_HELD = int(49.1 * 2**20)


def models_held(mission: str, *sets: str, frame_type: str = ".jpg") -> int:
    """Bytes the mission's loaded models hold over the boot baseline on this machine, as ``firmware-sim check``
    measures them in onnxruntime with ``frame_type``'s decoder loaded, a 1 GiB budget (so it never refuses) and
    ``--set`` each of ``sets``, to 0.1 MiB."""
    cmd = [sys.executable, "-m", "edgeae.firmware_sim.cli", "check", "--mission", mission, "--frame-type", frame_type,
           "--set", 'anomaly.prefer=["onnx"]', "--set", "budget.board_memory=budget-only",
           "--set", f"budget.memory_bytes={2**30}"]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    found = re.search(r"the loaded models hold ([0-9.]+) MiB", r.stdout + r.stderr)
    assert found, f"firmware-sim check printed no loaded-model figure (exit {r.returncode}): {r.stdout}{r.stderr}"
    return int(float(found.group(1)) * 2**20)


def orbital_budget(*sets: str) -> int:
    """The orbital mission's 64 MiB, plus (or less) what this machine's interpreters hold beyond (or below)
    :data:`ORBITAL_ONNX_HELD` (JPEG frames): the frame's buffers get the room they get on the machine the budget was
    sized on, which the tests' tight cases (down the ladder, waiting for the engine) need on a lighter machine too."""
    return 64 * 2**20 + models_held("orbital_nac", *sets) - ORBITAL_ONNX_HELD


_FRESH = """
import json, sys
from edgeae.firmware_sim.loop import FlightRuntime
from edgeae.firmware_sim.mission import mission_from_dict
doc, frame, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
rt = FlightRuntime(mission_from_dict(doc), out)
try:
    rec = rt.process(frame)
finally:
    rt.finish()
print(json.dumps(rec, default=str))
"""


def process_in_a_fresh_process(doc: dict[str, Any], frame: Path, out: Path) -> dict[str, Any]:
    """One frame through a runtime booted in its own Python process (mission ``doc`` as a dict): its frame record.
    RSS growth is a process's, and in the test session's process earlier tests have left freed memory the allocator
    hands back (a full suite measured 7.6 MB growth for a frame that grows 40 MB in a process of its own)."""
    done = subprocess.run(
        [sys.executable, "-c", _FRESH, json.dumps(doc), str(frame), str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


ADVICE_HELD = 16 * 2**20  # what a stand-in runtime's models hold (advice_runtime)


def advice_mission(tmp_path: Path, budget: int, height: int = 4096, width: int = 2048) -> Any:
    """A small strip-camera mission of one thread scored by tiny models, at ``budget`` bytes (the board's memory not
    consulted): the session-40 memory-advice tests'."""
    import dataclasses

    from edgeae.firmware_sim.testing import small_mission, tiny_models

    m = small_mission(tiny_models(tmp_path / "models"), reconstruction={"mode": "off"}, runtime={"threads": 1},
                      camera={"source": "strips", "height": height, "width": width}, anomaly={"batch": 8})  # fmt: skip
    return dataclasses.replace(m, budget=dataclasses.replace(m.budget, memory_bytes=budget, board_memory="budget-only"))


def advice_runtime(m: Any, types: set[str] | None = None, sizes: dict[str, int] | None = None) -> Any:
    """A stand-in booted runtime for the boot's memory checks: :data:`ADVICE_HELD` held, ``types`` its frame types,
    ``sizes`` the largest file of each decoded-whole type."""
    from types import SimpleNamespace

    return SimpleNamespace(m=m, rss_loaded=ADVICE_HELD, rss_boot=0, _model_bytes=lambda: 0, frame_types=types,
                           frame_bytes=sizes, tm=SimpleNamespace(write=lambda *a, **k: None))  # fmt: skip


def stand_in_work(wait: bool, eng: Any, m: Any, **kw: Any) -> Any:
    """A FrameWork of a 256 x 64 grey frame in 16-px patches on a stand-in runtime scored by ``eng``, without its
    constructor (no reader): the flight loop's per-strip steps alone; ``kw`` replaces any of its fields."""
    import argparse

    from edgeae.firmware_sim import frame_work

    rt = argparse.Namespace(
        m=m, engine=eng, scorer=object(), recon=None, meter=argparse.Namespace(rss=lambda: 0), progress=False
    )
    fw = frame_work.FrameWork.__new__(frame_work.FrameWork)
    fw.__dict__.update(
        rt=rt, m=m, h=256, w=64, c=1, every=1, cut=False, t0=0.0, available=1e12, ys=list(range(0, 241, 16)),
        xs=list(range(0, 49, 16)), n={"selected": 0, "scored": 0, "nodata_skipped": 0, "cut_by_deadline": 0},
        t={"read": 0.0, "validate": 0.0, "sample": 0.0, "nodata": 0.0, "score": 0.0}, t_wait=0.0,
        topk=frame_work.TopK(4, None), batch_raw=None, batch_xy=[], batch_fill=[], batch_n=0, submitted=0,
        streamed=False, spool=None, values=[],
        kept=0, row_counts=np.zeros(256, np.int64), mask_buf=None, seed=1, keep=0.02, reader=None, recon={},
        level=argparse.Namespace(reconstruct=False), rss_peak=0, strips_done=0, wait=wait, in_flight=[],
        pace0=None, strip_rows=64,
    )  # fmt: skip
    fw.__dict__.update(kw)
    return fw
