"""Shared fixtures: the real data folder (skipped with a clear message when absent) and real images; and how the
suite shares the machine between pytest-xdist workers (``scripts/test.sh`` runs two): thread counts per worker and
the groups of tests that must not run at the same time as each other."""

from __future__ import annotations

import fnmatch
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _worker_threads() -> int | None:
    """In a pytest-xdist worker, the CPUs this process may use divided among the workers (at least 1); else None."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return None
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")
    return max(1, len(os.sched_getaffinity(0)) // max(1, int(workers) if workers.isdigit() else 1))


WORKER_THREADS = _worker_threads()
"""Threads each xdist worker gets: two workers on two cores each run torch, OpenMP and BLAS on one thread instead of
two workers with two threads each fighting over both cores (no test asserts a thread count of the default). Set
before torch is imported, which reads them once (numpy's BLAS may be loaded already: pytest_configure limits it); a
variable the user set is kept; the commands tests start inherit them. Serial runs (no xdist, ``-n 0``) are left as
they are."""
if WORKER_THREADS is not None:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, str(WORKER_THREADS))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # OpenMP threads that spin while idle take the other's core

import numpy as np  # noqa: E402  (after the thread variables above)
import pytest  # noqa: E402

from edgeae.data import find_data_root  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Tests that send SIGINT (a Ctrl-C, to this process or to a command it starts) need it not ignored: a shell
    without job control starts background jobs (``pytest ... &``, ``nohup``) with SIGINT ignored, which Python keeps
    and every child inherits, so those tests then saw a command that never stopped. Give SIGINT its usual
    KeyboardInterrupt here, as an interactive run has it."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if WORKER_THREADS is not None and "numpy" in sys.modules:  # a plugin imported numpy before the variables were set
        try:
            from threadpoolctl import threadpool_limits  # scikit-learn's dependency (the ground extra)
        except ImportError:
            return
        threadpool_limits(WORKER_THREADS, user_api="blas")


# Tests that must not run at the same time as each other under pytest-xdist (``--dist loadgroup``, as
# scripts/test.sh runs it): the tests of one group run on one worker, one after the other, while the other worker runs
# the rest. Node-id patterns (fnmatch), each group with why it is there.
SERIAL_GROUPS: dict[str, tuple[str, ...]] = {
    # A local Ray instance (GCS, raylet, workers: ~1 GB and a dozen processes) for a module or a test; two at once
    # on two cores are slow to start and to answer. Every test marked ``ray`` must be here (checked at collection).
    "ray": (
        "tests/test_scan_ray.py::*",
        "tests/test_archive_scan.py::*",  # whole: its module fixtures (an archive, a model) serve the Ray test too
        "tests/test_scan_ray_s35.py::test_a_real_worker_*",
    ),
    # Headless Chromium, twice a test: a dozen processes and ~0.5 GB each time, and it writes the one shared
    # ~/.config/chromium (its crash-report folder): one browser at a time.
    "browser": ("tests/test_report_browser.py::*",),
    # Wall-clock bounds: a stop seen within a few 0.1 s bands, a plan computed within 0.5 s, a receiver gone within
    # 1-3 s, a refusal within 5-20 s. In one group they never compete with each other for a core.
    "wall-clock": (
        "tests/test_streaming_s37_h2.py::*",
        "tests/test_firmware_s36_g3.py::test_the_largest_camera_accepted_is_one_the_plan_handles",
        "tests/test_firmware_s36_g3.py::test_recon_check_positions_are_computed_without_the_grid",
        "tests/test_firmware_s36_g3.py::test_a_huge_camera_is_refused_in_one_line_before_anything_loads*",
        "tests/test_firmware_budget_s32.py::test_a_second_run_on_a_held_out_folder_is_refused_and_removes_nothing",
        "tests/test_scan_s31.py::test_a_cluster_address_that_does_not_answer_is_refused_in_one_line_at_once",
        "tests/test_hostile_ground.py::test_crafted_product_is_refused_and_counted_while_others_decode*",
        "tests/test_hostile_ground.py::test_sequence_jumps_are_tracked_in_bounded_memory_and_time",
        "tests/test_hostile_ground.py::test_ten_megabytes_of_noise_resync_in_linear_time",
        "tests/test_hostile_ground.py::test_many_corrupt_packets_and_products_stay_fast",
        "tests/test_transport_s34.py::test_the_receiver_dies_with_a_killed_server",
        "tests/test_transport_s34.py::test_the_receiver_loop_stops_when_its_parent_is_gone",
    ),
    # Peak-RSS bounds on a child process (VmHWM, up to 1 GB each): one such peak at a time, so two never add up.
    "memory": (
        "tests/test_hostile_ground.py::test_crafted_stream_peak_rss_under_1gb",
        "tests/test_hostile_files.py::test_flight_loop_drops_bad_frames_with_reasons_and_goes_on",
        "tests/test_archive_stream.py::test_streaming_an_isis3_cube_keeps_peak_rss_flat",
        "tests/test_board_bench_s34.py::test_bench_rss_peak_is_over_the_whole_run",
    ),
}


# Files whose module-scoped fixture builds something costly (exported or trained tiny models, a scanned archive,
# scorers run over real frames: 5-70 s each) run whole on one worker, so that fixture is built once, not once on each
# worker (test_export's took 65-69 s on each of the two). The other tests are scheduled one by one.
WHOLE_FILES = frozenset(
    f"tests/{name}.py"
    for name in (
        "test_adapt", "test_demo", "test_export", "test_export_audit", "test_export_board", "test_firmware_audit",
        "test_firmware_boot_s34", "test_firmware_budget_s30", "test_firmware_faults", "test_firmware_loop",
        "test_firmware_memory_s36_g3", "test_firmware_mission_s30", "test_firmware_rover_raw", "test_firmware_s36_f1",
        "test_firmware_s36_g3", "test_firmware_s36_i1", "test_firmware_sim_s35", "test_firmware_storage_s31",
        "test_firmware_wire_s34", "test_planted_blocks", "test_reconstruct", "test_scan_local", "test_scan_s29",
        "test_scan_s31", "test_scan_s32", "test_scan_s36_g2", "test_scan_s36_k1", "test_train",
    )
)  # fmt: skip


def serial_group(nodeid: str) -> str | None:
    """The group of :data:`SERIAL_GROUPS` a test (its node id, relative to the repository) belongs to, if any."""
    for group, patterns in SERIAL_GROUPS.items():
        if any(fnmatch.fnmatchcase(nodeid, pattern) for pattern in patterns):
            return group
    return None


@pytest.hookimpl(optionalhook=True)  # an unknown hook where xdist is not loaded (-p no:xdist)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with :data:`SERIAL_GROUPS` as groups and :data:`WHOLE_FILES` whole. pytest-xdist 3.8.0
    groups by a suffix it appends to the node id of a test marked ``xdist_group``, which pytest 9.2's node ids no
    longer take (pytest-xdist issue #1386: every test is then scheduled alone), so the groups are read from the node
    ids here, in the controller, where the scheduler sees them; an ``xdist_group`` suffix still counts where it
    works."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SerialGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group = serial_group(nodeid)
            if group is not None:
                return f"serial group {group}"
            file = nodeid.split("::", 1)[0]
            return file if file in WHOLE_FILES else super()._split_scope(nodeid)

    return SerialGroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``ray`` outside :data:`SERIAL_GROUPS` ``"ray"`` would start its Ray beside another's."""
    stray = [item.nodeid for item in items if item.get_closest_marker("ray") and serial_group(item.nodeid) != "ray"]
    if stray:
        raise pytest.UsageError(
            f"{stray[0]} is marked ray but is not in SERIAL_GROUPS['ray'] of tests/conftest.py: add it there"
        )


@pytest.fixture(autouse=True)
def _worker_torch_threads() -> Iterator[None]:
    """In an xdist worker, torch runs on :data:`WORKER_THREADS` threads again after a test that changed its count
    (``torch.set_num_threads`` is process-wide: a test of ``--threads 2`` would leave the worker on two)."""
    yield
    torch = sys.modules.get("torch")
    if WORKER_THREADS is not None and torch is not None and torch.get_num_threads() != WORKER_THREADS:
        torch.set_num_threads(WORKER_THREADS)


@pytest.fixture(autouse=True)
def _user_zoo(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test installs a model into the real user zoo (~/.local/share/edgeae/zoo, edgeae.zoo.user): $EDGEAE_ZOO is
    a fresh temporary folder for each test (and the commands it starts), unless the test sets its own."""
    monkeypatch.setenv("EDGEAE_ZOO", str(tmp_path_factory.mktemp("user-zoo")))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = find_data_root()
    if root is None:
        pytest.skip("real planetary data not found: set EDGEAE_DATA or place ../shared/data beside the repo")
    return root


@pytest.fixture(scope="session")
def formats(data_root: Path) -> Path:
    """The small real products in PDS3, PDS4, ISIS3, VICAR, GeoTIFF and JPEG 2000 (``formats/`` of the data)."""
    p = data_root / "formats"
    if not p.is_dir():
        pytest.skip(f"archive-format samples not found at {p} (the formats/ folder of the data README)")
    return p


@pytest.fixture(scope="session")
def moon() -> np.ndarray:
    """skimage.data.moon(): a real 512×512 8-bit lunar image bundled with scikit-image."""
    skdata = pytest.importorskip("skimage.data")
    return np.asarray(skdata.moon())


@pytest.fixture(scope="session")
def rover_image_path(data_root: Path) -> Path:
    """A real Mastcam RGB panorama (MarsScapes 137_1)."""
    p = data_root / "rover_rgb" / "marsscapes" / "image"
    files = sorted(p.glob("*.png"))
    if not files:
        pytest.skip(f"no rover images under {p}")
    return files[0]
