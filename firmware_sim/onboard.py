"""The models on board: loaded behind golden-hash checks, scrubbed every few frames, repaired after an SEU.

:class:`OnboardModels` holds the anomaly model (and its :class:`~.score.PatchScorer`) and the optional
reconstruction model, each behind a :class:`~.guard.ModelGuard`, and writes every model event (loaded,
refused, fallback, fault injected, SEU detected) to the telemetry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .budget import recon_check_count, scoring_batch
from .faults import FaultPlan, flip_bits
from .guard import GuardEvent, ModelGuard, ModelRefused
from .memory_meter import rss_bytes
from .memory_room import is_out_of_memory
from .mission import Mission, MissionError
from .packet_check import preload_sample_codec
from .score import PatchScorer, ScoreEngine, check_model, model_lambda, resolve_threshold, score_runner
from .telemetry import TelemetryWriter

Loader = Callable[[Path, int], Any]


ZOO_PREFIX = "zoo:"
# How the VAE scoring engine uses [runtime] threads cores: one interpreter of 1 thread per core (measured the
# faster on this 2-core machine: benchmarks/nac_headline.py), or one interpreter with that many threads.
PARALLEL_MODES = ("interpreters", "intra-op")
WARM_TILES_MAX = 64
"""At most this many tiles in the reconstruction model's boot run (``check_tiles`` is only bounded by a frame's
tile grid, which a camera of any size does not know at boot)."""
WARM_RUNS_MAX = 5
"""At most this many boot runs of the reconstruction model (:meth:`OnboardModels.warm_recon`)."""
WARM_SETTLED_BYTES = 1 << 20
"""A boot run of the reconstruction model that adds less RSS than this (1 MiB) ends the warm-up: the arena settled."""


def resolve_model_file(spec: str, prefer: tuple[str, ...] = ()) -> Path:
    """A flight artifact for ``spec``: a path, a zoo name (``orbital-gray-vae``, ``zoo:orbital-gray-vae``: its
    shipped artifact for the installed interpreter, the formats of ``prefer`` first) or ``zoo:NAME/FILE``
    (edgeae/zoo/artifacts).

    A missing artifact *path* is returned as is: the guard reports it, or loads the mission's fallback copy.
    """
    from edgeae.resolve import ARTIFACT_SUFFIXES, NameNotFound, model_path  # standard library only

    if spec.startswith("~"):  # a shell expands ~ in --anomaly-model; a mission file or a quoted argument does not
        spec = os.path.expanduser(spec)
    try:
        return model_path(spec, "artifact", prefer=prefer)
    except NameNotFound as exc:
        p = Path(spec)
        if not spec.startswith(ZOO_PREFIX) and p.suffix in ARTIFACT_SUFFIXES and not p.exists():
            return p
        raise MissionError(str(exc)) from None


def where_looked(path: Path, mission_file: str) -> str:
    """Where a missing model file of a mission was looked for, for its error: a relative path beside the mission
    file and then in the current folder (:func:`.mission.load_mission`); an absolute one names its folder itself."""
    if path.is_absolute():
        return ""
    beside = Path(mission_file).parent if mission_file and Path(mission_file).is_file() else None
    here = f"the current folder {Path.cwd()}"
    if beside is None or beside.resolve() == Path.cwd().resolve():
        return f" (looked for in {here})"
    return f" (looked for beside the mission file, in {beside.resolve()}, and in {here})"


def check_recon_model(meta: Any, rc: Any, channels: int, source: str) -> None:
    """Refuse at boot a ``[reconstruction]`` model that cannot take the mission's tiles (kind, channels, tile
    size), as :func:`.score.check_model` refuses the anomaly model: otherwise every frame would fail in flight."""
    want = "cae" if rc.mode == "check" else "cae-encoder"
    if meta.kind != want:
        raise MissionError(
            f"{source}: [reconstruction] mode {rc.mode!r} needs a {want} model, artifact is {meta.kind!r}"
        )
    if meta.channels != channels:
        raise MissionError(
            f"{source}: the [reconstruction] model takes {meta.channels} channel(s), the camera has {channels} "
            "([camera] channels)"
        )
    shape = tuple(meta.input_shape)
    hw = shape[2:] if meta.layout == "NCHW" else shape[1:3]
    if any(v > 0 and v != rc.tile for v in hw):
        sizes = " x ".join(str(v) for v in hw)
        raise MissionError(
            f"{source}: the [reconstruction] model takes {sizes}-px tiles (input {shape}), but [reconstruction] "
            f"tile = {rc.tile}: set tile = {max(hw)}"
        )


def default_loader(path: Path, threads: int) -> Any:
    """The flight loader: :func:`.runtime.load_artifact` (onnxruntime or ai-edge-litert by suffix)."""
    from .runtime import load_artifact

    return load_artifact(path, threads=threads)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


class OnboardModels:
    """The anomaly and reconstruction models of one boot (either may be None: refused or not configured)."""

    def __init__(
        self,
        mission: Mission,
        out: Path,
        loader: Loader,
        faults: FaultPlan,
        tm: TelemetryWriter,
        parallel: str = "interpreters",
    ) -> None:
        self.m, self.out, self.loader, self.faults, self.tm = mission, out, loader, faults, tm
        if parallel not in PARALLEL_MODES:
            raise ValueError(f"parallel must be one of {PARALLEL_MODES}, got {parallel!r}")
        self.parallel = parallel
        self.anomaly: ModelGuard | None = None
        self.recon: ModelGuard | None = None
        self.refused: list[dict[str, str]] = []  # models refused at boot: role, detail, consequence
        self.scorer: PatchScorer | None = None
        self.engine: ScoreEngine | None = None  # the fast VAE scoring path (None: the sequential PatchScorer)
        self.threshold: float | None = None
        self.suspect: set[str] = set()  # roles whose weights were hit and not yet scrubbed
        self.notes: list[str] = []  # for the console: a model refused at boot whose fallback copy was loaded
        self._load()
        # built by the boot before it measures what the models hold (boot.load_models): the sample codec the first
        # frame's packets would start (libaec) is started now too, in that figure (until session 39 the first frame's)
        preload_sample_codec(mission)

    @property
    def nbytes(self) -> int:
        """Bytes of the in-memory weight images."""
        return sum(g.nbytes for g in (self.anomaly, self.recon) if g is not None)

    @property
    def reloads(self) -> int:
        return sum(g.reloads for g in (self.anomaly, self.recon) if g is not None)

    def calibrate(self) -> float:
        """ms per patch of the scorer: one warm-up batch, then the median of three (through the engine, all
        its interpreters busy, when the fast path is on)."""
        assert self.scorer is not None
        if self.engine is not None:
            return self._calibrate_engine(self.engine)
        self.scorer.run(self.scorer.batch)
        return float(np.median([self.time_batch() for _ in range(3)]))

    def _calibrate_engine(self, eng: ScoreEngine) -> float:
        zeros = np.zeros((eng.batch, self.m.camera.channels, self.m.anomaly.patch, self.m.anomaly.patch), np.uint8)
        rounds = 2 * eng.workers
        eng.warm()  # every worker builds its interpreter
        for _ in range(rounds):
            eng.submit(zeros)
        eng.drain()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(rounds):
                eng.submit(zeros)
            eng.drain()
            times.append(_ms(t) / (rounds * eng.batch))
        return float(np.median(times))

    def _make_engine(self) -> ScoreEngine | None:
        """The fast path for VAE scoring: ``[runtime] threads`` interpreters of one thread each (or one of
        that many threads), each loaded from the verified file by the mission's loader."""
        guard, an, cam = self.anomaly, self.m.anomaly, self.m.camera
        if guard is None or guard.path is None or an.method != "vae":
            return None
        path, loader, raw_max = guard.path, self.loader, (1 << cam.bit_depth) - 1
        threads = max(1, self.m.runtime.threads)
        workers, per = (threads, 1) if self.parallel == "interpreters" else (1, threads)

        terms = an.score == "terms-max"

        def make() -> Any:
            return score_runner(loader(path, per), raw_max, terms=terms)

        return ScoreEngine(make, workers=workers, batch=scoring_batch(self.m))  # no bigger than a frame's grid

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def _refuse(self, role: str, detail: str) -> None:
        consequence = "no anomaly scoring: sparse pixels only" if role == "anomaly" else "no onboard reconstruction"
        self.refused.append({"role": role, "detail": detail, "consequence": consequence})
        self.tm.write("event", kind="model_refused", role=role, detail=detail, consequence=consequence)

    def _guard(
        self, role: str, path_s: str, sha: str, fallback: str, prefer: tuple[str, ...] = ()
    ) -> ModelGuard | None:
        from edgeae.resolve import interpreter_missing

        flag = f"--{'anomaly' if role == 'anomaly' else 'recon'}-model"
        path = resolve_model_file(path_s, prefer)
        fallback = str(resolve_model_file(fallback, prefer)) if fallback else ""
        if not path.is_file() and not (fallback and Path(fallback).is_file()):
            raise MissionError(
                f"{self.m.source_path}: {role} model {path} does not exist{where_looked(path, self.m.source_path)} "
                f"(export it, or override it with {flag})"
            )
        if self.loader is default_loader:  # a file no installed interpreter runs: said in one line, not loaded
            cannot = [interpreter_missing(p, flag) for p in (path, Path(fallback)) if p.is_file()]
            if cannot and all(cannot):
                self._refuse(role, f"{role} model refused: {cannot[0]}")
                return None
        golden = None
        if role == "anomaly" and self.faults.at(None, "corrupt-model"):
            bad = self.out / "faults" / f"corrupt_{path.name}"
            bad.parent.mkdir(parents=True, exist_ok=True)
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x10
            bad.write_bytes(bytes(data))
            golden, path = path, bad
            self.tm.write("event", kind="fault_injected", fault="corrupt-model@load", path=str(bad))
            self.faults.mark("corrupt-model@load")
        guard = ModelGuard(
            role, path, self.loader, self.m.runtime.threads, sha256=sha, fallback=fallback, golden_path=golden
        )
        try:
            guard.load()
        except ModelRefused as exc:
            self.events(guard.drain_events())
            self._refuse(role, str(exc))
            return None
        events = guard.drain_events()
        self.events(events)
        if any(ev.kind == "model_fallback" for ev in events):
            why = "; ".join(
                ev.detail
                for ev in events
                if ev.kind in ("model_file_corrupt", "model_failed_export", "model_unloadable")
            )
            self.notes.append(
                f"the {role} model failed its checks at boot ({why}): flying its fallback copy {guard.path}"
            )
        self.tm.write(
            "event",
            kind="model_loaded",
            role=role,
            path=str(guard.path),
            bytes=guard.nbytes,
            sha256=guard.expected,
            hash_source=guard.hash_source,
        )
        return guard

    def _load(self) -> None:
        an, rc, cam = self.m.anomaly, self.m.reconstruction, self.m.camera
        if an.model:
            self.anomaly = self._guard("anomaly", an.model, an.sha256, an.fallback, an.prefer)
        if self.anomaly is not None:
            pred = self.anomaly.predictor
            check_model(pred.metadata, an, cam.channels, str(self.anomaly.path), mission_file=self.m.source_path)
            self.threshold = resolve_threshold(an, pred.metadata, str(self.anomaly.path))
            lam = model_lambda(pred.metadata) if an.score == "terms-max" else None
            batch = scoring_batch(self.m)  # [anomaly] batch, capped to the patches a fixed-size camera's frame has
            self.scorer = PatchScorer(pred, an.method, an.patch, cam.channels, batch, cam.bit_depth, lam)
            self.engine = self._make_engine()
            if self.engine is None:  # the PatchScorer scores every frame: its buffers resident now, in what the
                for buf in {id(b): b for b in (self.scorer.buf, self.scorer.truth)}.values():  # boot holds
                    buf.fill(0)
        if rc.mode != "off":
            self.recon = self._guard("reconstruction", rc.model, rc.sha256, "", rc.prefer)
            if self.recon is not None:
                check_recon_model(self.recon.predictor.metadata, rc, cam.channels, str(self.recon.path))

    def warm_recon(self) -> None:
        """Run the reconstruction model on zeros of the size a frame gives it until a run adds less than
        :data:`WARM_SETTLED_BYTES` (at least twice, at most :data:`WARM_RUNS_MAX` times): its interpreter's arena
        grows on the first runs (onnxruntime, 3 RGB tiles of 128 px: +14 MiB on the first, +11 MiB on the second,
        +0.5 on the third), measured at boot, in what the models hold, instead of in the first frame (after one
        run only, a mission that ``check`` said fits went over its budget in frame 0 and dropped every later
        frame). A ``recon_warmed`` event records the runs and what each added."""
        guard, rc, cam = self.recon, self.m.reconstruction, self.m.camera
        if guard is None or guard.predictor is None:
            return
        if rc.mode == "check":  # the tiles a frame's check runs: no more than its tile grid has (budget's rule)
            rows = cam.strip_rows if cam.source == "strips" else cam.height
            known = rows > 0 and cam.width > 0
            n = recon_check_count(rows, cam.width, rc.tile, rc.check_tiles) if known else rc.check_tiles
            n = max(1, min(n, WARM_TILES_MAX))
        else:
            n = max(1, -(-cam.width // rc.tile))  # a row of tiles
        tiles = np.zeros((n, cam.channels, rc.tile, rc.tile), np.float32)
        added: list[int] = []  # RSS each run added (bytes)
        before = rss_bytes()
        for _ in range(WARM_RUNS_MAX):
            try:
                guard.predictor(tiles)
            except Exception as exc:  # it would fail on every frame as well
                if is_out_of_memory(exc):  # not the model's fault: the boot's out-of-memory refusal (boot.py)
                    raise
                raise MissionError(
                    f"{guard.path}: the [reconstruction] model failed its first run at boot on {n} tile(s) of "
                    f"{cam.channels} x {rc.tile} x {rc.tile}: {type(exc).__name__}: {exc}"
                ) from None
            now = rss_bytes()
            added.append(now - before)
            before = now
            if len(added) >= 2 and added[-1] < WARM_SETTLED_BYTES:
                break
        self.tm.write("event", kind="recon_warmed", tiles=n, runs=len(added), rss_added=added)

    def time_batch(self, n: int = 0) -> float:
        """ms per patch of a scoring batch of ``n`` (default: full) patches, whatever the buffer holds."""
        assert self.scorer is not None
        n = n or self.scorer.batch
        t = time.perf_counter()
        self.scorer.run(n)
        return _ms(t) / n

    def events(self, events: list[GuardEvent]) -> list[str]:
        for ev in events:
            self.tm.write("event", kind=ev.kind, detail=ev.detail, **ev.data)
        return [ev.kind for ev in events]

    def scrub(self, frame_no: int, fault_frame: int | None = None) -> list[str]:
        """Inject this frame's SEU faults (placed by ``fault_frame``, the frame id; default ``frame_no``), then
        (every ``scrub_every_frames`` frames of this boot, ``frame_no``) check and repair the weights."""
        kinds: list[str] = []
        for role, guard in (("anomaly", self.anomaly), ("reconstruction", self.recon)):
            if guard is None:
                continue
            fault = self.faults.at(
                frame_no if fault_frame is None else fault_frame, "seu" if role == "anomaly" else "seu-recon"
            )
            if fault is not None:
                flips = flip_bits(guard.image, int(float(fault.arg or 1)), self.faults.rng)
                self.tm.write("event", kind="fault_injected", fault=str(fault), flips=flips)
                self.faults.mark(fault)
                self.suspect.add(role)
            if frame_no % self.m.runtime.scrub_every_frames == 0:
                ev = guard.scrub()
                if ev is not None:
                    kinds += self.events([ev])
                    self.suspect.discard(role)
                    if role == "anomaly":
                        self._rebind_anomaly(guard)
                    if ev.kind == "seu_unrecoverable" and role == "anomaly":
                        self.anomaly = None
                    elif ev.kind == "seu_unrecoverable":
                        self.recon = None
        return kinds

    def _rebind_anomaly(self, guard: ModelGuard) -> None:
        if self.engine is not None:  # its interpreters were built from the file: rebuild them after a reload
            self.engine.close()
            self.engine = None
        if self.scorer is not None and guard.predictor is not None:
            self.scorer.predictor = guard.predictor
            self.engine = self._make_engine()
        elif guard.predictor is None:
            self.scorer = None
