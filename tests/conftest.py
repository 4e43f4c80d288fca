"""Shared fixtures: the real data folder (skipped with a clear message when absent) and real images."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from edgeae.data import find_data_root


def pytest_configure(config: pytest.Config) -> None:
    """Tests that send SIGINT (a Ctrl-C, to this process or to a command it starts) need it not ignored: a shell
    without job control starts background jobs (``pytest ... &``, ``nohup``) with SIGINT ignored, which Python keeps
    and every child inherits, so those tests then saw a command that never stopped. Give SIGINT its usual
    KeyboardInterrupt here, as an interactive run has it."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
