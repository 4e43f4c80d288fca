"""Both report pages in a real headless browser: the page loads, every image resolves, no console message.

Chromium from the Debian packages (apt-get install chromium); skipped with a message where it is absent.
The report is loaded in an iframe of a small wrapper page (file:// access allowed between the two), whose
script lists the images that did not decode; the console of both is read from Chromium's log.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeae.metadata import ModelMetadata

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WRAPPER = """<!doctype html><html><body><iframe id="f" src="{page}" width="1200" height="900"></iframe>
<pre id="out">pending</pre><script>
window.addEventListener("load", () => {{
  const d = document.getElementById("f").contentDocument;
  const imgs = Array.from(d.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  document.getElementById("out").textContent = JSON.stringify(
    {{title: d.title, images: imgs.length, broken: broken, sections: d.querySelectorAll("h2").length}});
}});
</script></body></html>
"""


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium found (install it with: apt-get install chromium); report pages not checked")


def _chromium(exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def check_page(page: Path) -> dict:
    """Load ``page``; return what the wrapper saw, plus the console lines and the screenshot path."""
    exe = _browser()
    wrapper = page.parent / "_browser_check.html"
    wrapper.write_text(WRAPPER.format(page=page.name), encoding="utf-8")
    proc = _chromium(
        exe, "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
        "--dump-dom", wrapper.as_uri(),
    )  # fmt: skip
    m = re.search(r'<pre id="out">([^<]*)</pre>', proc.stdout)
    assert m, f"the wrapper page did not run: {proc.stdout[-500:]} {proc.stderr[-2000:]}"
    seen = json.loads(m.group(1).replace("&quot;", '"'))
    seen["console"] = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    shot = page.with_suffix(".png")
    _chromium(exe, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri())
    seen["screenshot"] = shot
    wrapper.unlink()
    return seen


def _assert_reads(seen: dict, min_images: int, min_sections: int) -> None:
    assert seen["console"] == [], seen["console"]
    assert seen["broken"] == [], f"images that do not load: {seen['broken']}"
    assert seen["images"] >= min_images and seen["sections"] >= min_sections, seen
    shot = seen["screenshot"]
    assert shot.is_file() and shot.stat().st_size > 20_000, "the screenshot is blank"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    from edgeae.checkpoint import save_checkpoint
    from edgeae.models.cae import CAE, CAEConfig

    torch.manual_seed(0)
    cfg = CAEConfig(channels=1, widths=(4, 8), tile=32)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, 32, 32), channels=1)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", CAE(cfg), meta)


def test_demo_report_in_a_browser(tmp_path: Path, tiny_checkpoint: Path) -> None:
    _browser()
    pytest.importorskip("skimage")
    pytest.importorskip("imagecodecs")
    from edgeae.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        out=tmp_path / "demo", source="moon", model=str(tiny_checkpoint), methods=("cae", "linear"),
        links=("perfect", "loss20"),
    )  # fmt: skip
    res = run_demo(cfg)
    seen = check_page(res.html)
    # original, masked, 3 x (recon, error) incl. JPEG 2000, 2 links x 2, anomaly frame + map + 8 patches,
    # and the two colour bars
    _assert_reads(seen, min_images=2 + 6 + 4 + 10 + 2, min_sections=7)


def test_firmware_report_in_a_browser(tmp_path: Path) -> None:
    _browser()
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("spacepackets")
    from edgeae.firmware_sim.cli import main
    from edgeae.firmware_sim.testing import textured_frame, tiny_vae_onnx

    model = tiny_vae_onnx(tmp_path / "vae.onnx", 1, 32)
    mission = tmp_path / "m.toml"
    mission.write_text(
        f'name = "browser"\n[camera]\nchannels = 1\nstrip_rows = 64\n[anomaly]\nmodel = "{model}"\n'
        "patch = 32\nstride = 32\ntop_k = 2\n[budget]\nframe_ms = 5000.0\n"
    )
    frames = []
    for i in range(2):
        np.save(tmp_path / f"f{i}.npy", textured_frame(i))
        frames.append(str(tmp_path / f"f{i}.npy"))
    out = tmp_path / "out"
    assert main(["run", "--mission", str(mission), "--frames", *frames, "--out", str(out)]) == 0
    seen = check_page(out / "report.html")
    _assert_reads(seen, min_images=4, min_sections=7)
