"""Speed fixes that must not change a result: channel reductions, threaded OpenCV fills, the VAE's upsampling,
the CAE batch and memory guard, progress bars, cross-check folds and the anomaly map's drawing size."""

from __future__ import annotations

import numpy as np
import pytest

from edgeae import memory_probe
from edgeae.nodata import across_channels

# ------------------------------------------------------------------------------------------------------------
# across_channels: the same values as the reduction over axis 2


def _sample(dtype: str, channels: int) -> np.ndarray:
    rng = np.random.default_rng(channels)
    shape = (37, 41, channels)
    if dtype == "float32":
        x = rng.random(shape, dtype=np.float32)
        x[rng.random(shape) < 0.05] = np.nan
        x[rng.random(shape) < 0.02] = np.inf
        x[rng.random(shape) < 0.02] = -np.inf
        x[rng.random(shape) < 0.05] = 1.0
        return x
    top = np.iinfo(dtype).max
    x = rng.integers(0, top, shape, dtype=dtype, endpoint=True)
    x[rng.random(shape) < 0.1] = top
    return x


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_across_channels_equals_the_axis_reduction(dtype: str, channels: int) -> None:
    x = _sample(dtype, channels)
    top = 1.0 if dtype == "float32" else np.iinfo(dtype).max
    cases = [
        (x.max(axis=2), across_channels(x, np.maximum)),
        (x.min(axis=2), across_channels(x, np.minimum)),
        (np.isfinite(x).all(axis=2), across_channels(x, np.logical_and, np.isfinite)),
        ((x >= top).any(axis=2), across_channels(x, np.logical_or, lambda p: p >= top)),
    ]
    for want, got in cases:
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()  # NaN where the reduction has NaN, bit for bit
    before = x.copy()
    across_channels(x, np.maximum)[:] = 0  # the result is never a view of the input
    assert np.array_equal(x, before, equal_nan=True)


def test_across_channels_on_a_strided_view_and_no_channels() -> None:
    x = _sample("uint16", 4)[::2, ::3, 1:]
    assert np.array_equal(across_channels(x, np.maximum), x.max(axis=2))
    empty = np.zeros((3, 4, 0), np.float32)
    assert np.array_equal(across_channels(empty, np.logical_and, np.isfinite), np.isfinite(empty).all(axis=2))


# ------------------------------------------------------------------------------------------------------------
# Telea / Navier-Stokes: the channels run on a thread pool, with the serial output


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_opencv_fill_runs_channels_on_threads_with_the_serial_output(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cv2 = pytest.importorskip("cv2")
    import os
    import threading

    from edgeae import inpaint

    rng = np.random.default_rng(7)
    img = rng.random((48, 64, 3), dtype=np.float32)
    known = rng.random((48, 64)) < 0.2
    img = np.where(known[..., None], img, np.float32(0.0))
    real = cv2.inpaint
    names: list[str] = []

    def spy(*args: object) -> np.ndarray:
        names.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(cv2, "inpaint", spy)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    serial = inpaint._opencv(img, known, method, None)
    assert names == ["MainThread"] * 3
    names.clear()
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    threaded = inpaint._opencv(img, known, method, None)
    assert len(names) == 3 and all(n.startswith("edgeae-inpaint") for n in names)
    assert threaded.tobytes() == serial.tobytes()
    # each channel as the one-channel fill of that plane: no channel took another's thread's result
    for c in range(3):
        one = inpaint._opencv(img[..., c : c + 1], known, method, None)
        assert one.tobytes() == np.ascontiguousarray(threaded[..., c : c + 1]).tobytes()


# ------------------------------------------------------------------------------------------------------------
# VAE: 2x nearest upsampling as a broadcast copy in eager inference, the modules as they are for exporters


def _small_vae(channels: int = 1):  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    from edgeae.models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    model = VAE(VAEConfig(channels=channels, widths=(8, 16, 16, 8), latent=32, patch=32)).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("channels", [1, 3])
def test_vae_fast_upsampling_is_bit_identical_to_nn_upsample(channels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from edgeae.models import vae

    model = _small_vae(channels)
    x = torch.rand(5, channels, 32, 32, generator=torch.Generator().manual_seed(1))
    calls: list[int] = []
    real = vae._nearest2x
    monkeypatch.setattr(vae, "_nearest2x", lambda h: calls.append(1) or real(h))
    with torch.inference_mode():
        fast = model(x)
    assert len(calls) == 4  # every decoder stage took the fast path
    monkeypatch.setattr(vae, "_eager_inference", lambda h: False)
    with torch.inference_mode():
        ref = model(x)
    for k in ("score", "x_hat", "mu"):
        assert torch.equal(fast[k], ref[k]), k
    h = torch.rand(3, 4, 5, 7)
    assert torch.equal(real(h), torch.nn.Upsample(scale_factor=2, mode="nearest")(h))
    # the module, its state dict and the exporters' form are those of before
    assert sum(isinstance(m, torch.nn.Upsample) for m in model.decoder) == 4
    assert all("upsample" not in k.lower() for k in model.state_dict())


def test_vae_training_and_exporters_see_nn_upsample(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from edgeae.models import vae

    model = _small_vae().eval()
    x = torch.rand(2, 1, 32, 32)
    monkeypatch.setattr(vae, "_nearest2x", lambda h: pytest.fail("fast path while tracing or training"))
    model.requires_grad_(False)  # as an exporter sees it: frozen, no grad (gradients alone would keep it off)
    with torch.no_grad():
        traced = torch.jit.trace(model, (x,), strict=False, check_trace=False)
        assert "upsample_nearest2d" in str(traced.inlined_graph)
        program = torch.export.export(model, (x,))
        assert any("upsample_nearest2d" in str(n.target) for n in program.graph.nodes)
    model.requires_grad_(True)
    model.train()
    model.training_losses(x, generator=torch.Generator().manual_seed(0))["loss"].backward()


# ------------------------------------------------------------------------------------------------------------
# the ground's memory guard: the CAE's fixed part and batch of tiles, and the cgroup / address-space limits


def test_cae_rebuild_estimate_counts_torch_and_the_batch_of_tiles() -> None:
    from edgeae.ground import limits
    from edgeae.tiling import tile_positions

    for h, w in ((591, 795), (1200, 1648), (100, 50), (128, 129), (4096, 4096)):
        assert limits.cae_tiles(h, w) == len(tile_positions(h, w, 128, 96)), (h, w)
    fill = "cae:rover-rgb-unet2-ground"
    # the audit's case: 75 MiB estimated, 923 MB peak RSS measured at batch 32 (905 MiB less a 63 MB baseline)
    assert limits.rebuild_bytes(591, 795, 3, fill, batch=32) > 800 << 20
    with pytest.raises(limits.LimitError, match="to rebuild with cae") as err:
        limits.check_memory("sparse", 0, 591, 795, 3, fill, available=120 * 2**20)
    assert err.value.reason == "memory"
    # the least a rebuild runs (a batch of 2) is what decides; a batch never exceeds the frame's tiles
    least = limits.rebuild_bytes(591, 795, 3, fill)
    limits.check_memory("sparse", 0, 591, 795, 3, fill, available=int(least * limits.MEMORY_MARGIN) + 1)
    assert limits.rebuild_bytes(100, 50, 3, fill, batch=32) == limits.rebuild_bytes(100, 50, 3, fill, batch=1)
    # classical fills are as before: per pixel only
    assert limits.rebuild_bytes(10, 10, 1, "telea") == int(100 * sum(limits.REBUILD_BYTES["telea"]))


def _fake_cgroup(root, v2: bool, limit: str, usage: int, inactive: int) -> None:  # type: ignore[no-untyped-def]
    if v2:
        (root / "memory.max").write_text(f"{limit}\n")
        (root / "memory.current").write_text(f"{usage}\n")
        (root / "memory.stat").write_text(f"anon 5\nfile 9\ninactive_file {inactive}\nactive_file 3\n")
    else:
        (root / "memory").mkdir()
        (root / "memory" / "memory.limit_in_bytes").write_text(f"{limit}\n")
        (root / "memory" / "memory.usage_in_bytes").write_text(f"{usage}\n")
        (root / "memory" / "memory.stat").write_text(f"cache 9\ntotal_inactive_file {inactive}\n")


@pytest.mark.parametrize("v2", [True, False])
def test_available_memory_is_the_smallest_of_system_cgroup_and_address_space(
    v2: bool, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import resource

    from edgeae.ground import limits

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n")
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t  900000 kB\nVmSize:\t  500000 kB\nVmRSS:\t     100 kB\n")
    cg = tmp_path / "cg"
    cg.mkdir()
    monkeypatch.setattr(memory_probe, "MEMINFO", str(meminfo))
    monkeypatch.setattr(memory_probe, "PROC_STATUS", str(status))
    monkeypatch.setattr(memory_probe, "CGROUP", str(cg))
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert limits.available_memory() == 4_000_000 * 1024  # no cgroup files, no rlimit: MemAvailable
    _fake_cgroup(cg, v2, "max" if v2 else str(2**63 - 4096), 10**9, 0)
    assert limits.available_memory() == 4_000_000 * 1024  # a cgroup without a limit
    for f in cg.rglob("*"):
        if f.is_file():
            f.unlink()
    if not v2:
        (cg / "memory").rmdir()
    _fake_cgroup(cg, v2, str(1 << 30), 900 << 20, 100 << 20)  # 1 GiB limit, 900 MiB used of which 100 cache
    # the file cache (v2: inactive 100 MiB + active 3 B) is reclaimable less the kernel's low-watermark reserve (since
    # 497d25b; the host's own /proc/zoneinfo made this test host-dependent: a fixed 20 MiB here)
    monkeypatch.setattr(memory_probe, "_low_watermark", lambda: 20 << 20)
    cache = (100 << 20) + (3 if v2 else 0)
    assert limits.available_memory() == (1 << 30) - (900 << 20) + cache - (20 << 20)
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (600_000 * 1024, resource.RLIM_INFINITY))
    assert limits.available_memory() == 100_000 * 1024  # ulimit -v 600000 with 500000 kB mapped
    monkeypatch.setattr(memory_probe, "MEMINFO", str(tmp_path / "absent"))
    monkeypatch.setattr(memory_probe, "CGROUP", str(tmp_path / "absent"))
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert limits.available_memory() is None  # nothing known: not checked


def test_a_cae_frame_is_refused_under_a_cgroup_limit(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from edgeae.ground import limits

    cg = tmp_path / "cg"
    cg.mkdir()
    _fake_cgroup(cg, True, str(200 << 20), 80 << 20, 0)  # 120 MiB left of a 200 MiB container
    monkeypatch.setattr(memory_probe, "CGROUP", str(cg))
    with pytest.raises(limits.LimitError, match=r"120\.0 MiB is available"):
        limits.check_memory("sparse", 3, 591, 795, 3, "cae:rover-rgb-unet2-ground")


# ------------------------------------------------------------------------------------------------------------
# optional imports: "not installed" only when the module itself is missing


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (
            ModuleNotFoundError("No module named 'cv2'", name="cv2"),
            "is not installed: run  pip install 'edgeae[ground]'",
        ),
        (
            ImportError("libaom.so.3: failed to map segment from shared object"),
            "'cv2' is installed but failed to import: libaom.so.3: failed to map segment from shared object",
        ),
        (ModuleNotFoundError("No module named 'numpy.core'", name="numpy.core"), "installed but failed to import"),
        (ImportError(), "installed but failed to import: ImportError"),
    ],
)
def test_require_tells_missing_from_broken(exc: ImportError, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from edgeae._optional import MissingDependencyError, require

    def boom(name: str) -> None:
        raise exc

    monkeypatch.setattr(importlib, "import_module", boom)
    with pytest.raises(MissingDependencyError) as err:
        require("cv2")
    assert says in str(err.value) and "\n" not in str(err.value)
    assert err.value.__cause__ is exc


def test_require_of_a_submodule_whose_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from edgeae._optional import MissingDependencyError, require

    def boom(name: str) -> None:
        raise ModuleNotFoundError("No module named 'scipy'", name="scipy")

    monkeypatch.setattr(importlib, "import_module", boom)
    with pytest.raises(MissingDependencyError, match=r"'scipy.ndimage' is needed here but is not installed"):
        require("scipy.ndimage")


# ------------------------------------------------------------------------------------------------------------
# the CAE batch: bounded by the tiles and the memory, the same result for every batch


class _TileModel:
    """A deterministic per-tile predictor that records its batch sizes (what the batching must not change)."""

    def __init__(self, channels: int = 3, tile: int = 32) -> None:
        from types import SimpleNamespace

        self.metadata = SimpleNamespace(
            kind="cae", channels=channels, layout="NCHW", input_shape=(-1, channels, tile, tile)
        )
        self.sizes: list[int] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.sizes.append(len(x))
        return np.sqrt(x) * 0.5 + x.mean(axis=(1, 2, 3), keepdims=True) * 0.25


def test_cae_output_is_the_same_for_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae import reconstruct as rc

    rng = np.random.default_rng(3)
    img = rng.random((70, 90, 3), dtype=np.float32)
    known = rng.random((70, 90)) < 0.3
    model = _TileModel()
    ref = rc.reconstruct(img, known, "cae", predictor=model, batch=100000, progress=False)
    n = model.sizes[0]
    assert model.sizes == [n] and n > 4  # clamped to the tiles there are: one batch
    for batch in (1, 2, 3, n - 1, rc.DEFAULT_BATCH, 32):
        model.sizes.clear()
        out = rc.reconstruct(img, known, "cae", predictor=model, batch=batch, progress=False)
        assert out.tobytes() == ref.tobytes(), batch
        assert sum(model.sizes) == n and min(model.sizes) >= 2, (batch, model.sizes)  # no tile alone


def test_cae_batch_is_lowered_to_the_memory_available(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from edgeae import reconstruct as rc
    from edgeae.ground import limits

    rng = np.random.default_rng(4)
    img = rng.random((70, 90, 3), dtype=np.float32)
    known = rng.random((70, 90)) < 0.3
    model = _TileModel()
    ref = rc.reconstruct(img, known, "cae", predictor=model, batch=32, progress=False)
    per_tile = limits.cae_batch_bytes(1, 32)
    monkeypatch.setattr(limits, "available_memory", lambda: int(5.5 * per_tile * limits.MEMORY_MARGIN))
    model.sizes.clear()
    with caplog.at_level(logging.INFO, logger="edgeae.reconstruct"):
        out = rc.reconstruct(img, known, "cae", predictor=model, batch=32, progress=False)
    assert out.tobytes() == ref.tobytes()
    assert max(model.sizes) <= 5 and min(model.sizes) >= 2, model.sizes
    assert "cae batch 32 lowered to 4" in caplog.text
    monkeypatch.setattr(limits, "available_memory", lambda: 0)  # still runs, two tiles at a time
    model.sizes.clear()
    assert rc.reconstruct(img, known, "cae", predictor=model, progress=False).tobytes() == ref.tobytes()
    assert max(model.sizes) <= 3


def test_zoo_unet_rebuild_is_the_same_for_every_batch(data_root) -> None:  # type: ignore[no-untyped-def]
    from edgeae.predictor import load_predictor
    from edgeae.reconstruct import reconstruct

    img = np.random.default_rng(0).random((170, 330, 3), dtype=np.float32)  # 2 x 4 tiles of 128 px
    known = np.random.default_rng(1).random((170, 330)) < 0.1
    p = load_predictor("rover-rgb-unet2-ground")
    ref = reconstruct(img, known, "cae", predictor=p, batch=32, progress=False)
    for batch in (1, 3, 7):  # 1 and 7: a tile alone before (up to 2.4e-7 apart)
        assert reconstruct(img, known, "cae", predictor=p, batch=batch, progress=False).tobytes() == ref.tobytes()


# ------------------------------------------------------------------------------------------------------------
# progress bars: only on a terminal, never when the caller says no; the ground's fills draw them per frame


class _Stderr:
    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.text = ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_tile_bars_only_on_a_terminal(tty: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from edgeae import crosscheck
    from edgeae import reconstruct as rc

    err = _Stderr(tty)
    monkeypatch.setattr(sys, "stderr", err)
    assert rc.show_progress(None, 5) is tty and rc.show_progress(True, 1) is tty
    assert not rc.show_progress(None, 4) and not rc.show_progress(False, 99)
    img = np.random.default_rng(5).random((100, 150, 3), dtype=np.float32)
    known = np.random.default_rng(6).random((100, 150)) < 0.3
    model = _TileModel(tile=16)
    rc.reconstruct(img, known, "cae", predictor=model, batch=2)  # 70 tiles, 35 batches
    assert ("cae tiles" in err.text) is tty
    err.text = ""
    rc.reconstruct(img, known, "cae", predictor=model, batch=2, progress=False)
    assert err.text == ""
    tick = crosscheck._steps(4, None, 2_000_000)
    tick(close=True)
    assert ("cross-check" in err.text) is tty


def test_ground_decode_no_progress_reaches_the_fill(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import argparse

    from edgeae.cli import ground as cli_ground
    from edgeae.ground import station

    seen: list[object] = []

    def fake(model, method, threads, adapt, cross_check, progress="unset"):  # type: ignore[no-untyped-def]
        seen.append(progress)
        return (lambda image, known, notes=None: image), "cae:fake"

    monkeypatch.setattr(station, "make_filler", fake)
    parser = argparse.ArgumentParser()
    cli_ground.register(parser.add_subparsers(dest="command"))
    for extra, want in (([], None), (["--no-progress"], False)):
        args = parser.parse_args(["ground", "decode", "x.bin", "--out", str(tmp_path / f"o{len(seen)}"), *extra])
        cli_ground._station(args, make_out=False)
        assert seen[-1] is want


# ------------------------------------------------------------------------------------------------------------
# the anomaly map: drawn at 800 px a side, the same PNG size as at 1600


def test_score_map_draws_at_800_px_with_the_same_png_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    import inspect

    from edgeae.anomaly import plots
    from edgeae.anomaly.score import PatchScores

    assert inspect.signature(plots.save_score_map).parameters["max_side"].default == 800
    h, w = 1200, 1648
    ys, xs = np.mgrid[0 : h - 64 : 64, 0 : w - 64 : 64]
    rng = np.random.default_rng(0)
    ps = PatchScores("f.png", xs.ravel(), ys.ravel(), rng.random(xs.size), np.ones(xs.size), 64, (h, w))
    image = rng.random((h, w), dtype=np.float32)
    sizes = []
    for side in (1600, 800):
        out = plots.save_score_map(tmp_path / f"m{side}.png", ps, image=image, max_side=side, threshold=0.99)
        sizes.append(plots._plt().imread(out).shape)
    assert sizes[0] == sizes[1]


def test_the_cgroup_limit_is_read_from_the_process_own_cgroup_and_those_above(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A limit set on the process's own cgroup (Slurm, systemd-run -p MemoryMax) or on one above it, not on the
    root: found from /proc/self/cgroup (only the root's files were read)."""

    cg = tmp_path / "cg"
    job = cg / "slice" / "job"
    job.mkdir(parents=True)
    (job / "memory.max").write_text(str(2 << 30))
    (job / "memory.current").write_text(str(1 << 30))
    (cg / "slice" / "memory.max").write_text(str(3 << 30))
    (cg / "slice" / "memory.current").write_text(str(2 << 30 | 512 << 20))  # the parent has less room left
    own = tmp_path / "cgroup"
    own.write_text("0::/slice/job\n")
    monkeypatch.setattr(memory_probe, "CGROUP", str(cg))
    monkeypatch.setattr(memory_probe, "PROC_CGROUP", str(own))
    assert memory_probe._cgroup_room() == (3 << 30) - (2 << 30 | 512 << 20)
    own.write_text("5:cpu,memory:/slice/job\n")  # v1: under CGROUP/memory, absent here: the root alone
    assert memory_probe._cgroup_room() is None


def test_demo_and_adapt_bars_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """scripts/demo.sh > log and an adapting ground decode into a log wrote their progress bars into the log."""
    import sys

    from edgeae.demo import DemoConfig, DemoContext

    ctx = DemoContext(DemoConfig(), say=lambda _line: None, progress=True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert list(ctx.bar(range(3), "x")) == [0, 1, 2]
    assert "x:" not in capsys.readouterr().err
