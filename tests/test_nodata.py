"""No-data detection: black margins connected to the border are invalid, interior shadows stay valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.imageio import read_image
from edgeae.nodata import nodata_mask

pytest.importorskip("cv2")


def _scene(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, (200, 300), dtype=np.uint8)


def test_noisy_black_margins_are_invalid() -> None:
    img = _scene()
    rng = np.random.default_rng(1)
    img[:, :30] = rng.integers(0, 5, (200, 30))  # JPEG-like noise, never exactly flat
    img[:, -10:] = 0
    img[:5] = rng.integers(0, 4, (5, 300))
    valid = nodata_mask(img)
    assert not valid[:, :30].any() and not valid[:, -10:].any() and not valid[:5].any()
    assert valid[6:, 32:-12].all()  # one pixel of ringing guard next to each margin, the rest kept


def test_interior_shadow_stays_valid() -> None:
    img = _scene()
    img[80:120, 100:160] = 0  # a fully black shadow away from the border
    img[150:200, 280:300] = 0  # a small shadow cut by the frame corner (short contact)
    valid = nodata_mask(img)
    assert valid.all()


def test_shadow_linked_by_a_thin_bridge_stays_valid() -> None:
    img = _scene()
    img[:, :20] = 0
    img[90:110, 60:120] = 0
    img[100, 20:60] = 0  # a one-pixel dark line joins the shadow to the margin
    valid = nodata_mask(img)
    assert not valid[:, :20].any() and valid[92:108, 62:118].all()


def test_thresholds_scale_with_bit_depth() -> None:
    img = _scene().astype(np.uint16) * 16  # 12-bit data in 16-bit words
    img[:, :25] = 60  # dark in 12-bit terms (60 / 4095 < 2.5 %)
    assert not nodata_mask(img, bit_depth=12)[:, :25].any()
    img[:, :25] = 200
    assert nodata_mask(img, bit_depth=12)[:, :25].all()  # 200 / 4095 = 4.9 %: not no-data


def test_rgb_float_and_nan() -> None:
    img = _scene().astype(np.float32)[..., None].repeat(3, axis=2) / 255
    img[:, :20] = 0
    img[:, 20:40, 0] = 0  # dark in red only: still data
    img[:, -15:] = np.nan
    valid = nodata_mask(img)
    assert not valid[:, :20].any() and valid[:, 22:-17].all() and not valid[:, -15:].any()


def test_seed_and_edges_for_strips() -> None:
    img = _scene()
    img[:100, 150:250] = 0  # reaches only the top border (a third of it)
    assert not nodata_mask(img)[:100, 150:250].any()
    assert nodata_mask(img, edges=("left", "right"))[:100, 150:250].all()
    seed = np.zeros(img.shape, dtype=bool)
    seed[0, 160] = True
    assert not nodata_mask(img, edges=("left", "right"), seed=seed)[:100, 150:250].any()
    with pytest.raises(ValueError, match="edges"):
        nodata_mask(img, edges=("north",))
    with pytest.raises(ValueError, match="threshold"):
        nodata_mask(img, threshold=2.0)
    with pytest.raises(ValueError, match="seed"):
        nodata_mask(img, seed=np.zeros((3, 3), bool))


def test_real_hirise_browse_no_data(data_root: Path) -> None:
    """ESP_073496_0985: ~20 black rows at the top and a masked block at the bottom; dark
    frost spots and shadows in the scene stay valid. The other browse strips have no margins."""
    d = data_root / "orbital_gray" / "hirise_browse"
    p = d / "ESP_073496_0985_RED.NOMAP.browse.jpg"
    if not p.is_file():
        pytest.skip(f"{p} not in the data folder")
    im = read_image(p)
    raw = np.round(im.pixels[:, :, 0] * 255)
    assert not im.valid[:5].any()  # top margin (values 0..6 after JPEG)
    assert not im.valid[-8:, 910:1590].any()  # masked block at the bottom
    assert im.valid[-8:, :900].all() and im.valid[-8:, 1600:].all()  # beside it, real data
    assert im.valid[100:4400].all()  # centre: every pixel valid ...
    assert (raw[100:4400] <= 6).sum() > 5000  # ... although thousands of them are as dark as the margin
    other = read_image(d / "ESP_073435_1870_RED.NOMAP.browse.jpg")
    assert other.valid.all()


def test_real_hirise_edge_crops(data_root: Path) -> None:
    """Deep Mars crops labelled 'edge' (class 6) contain no-data; every one is detected."""
    root = data_root / "hirise_landmarks"
    if not (root / "labels.txt").is_file():
        pytest.skip("hirise_landmarks not in the data folder")
    rows = [line.split() for line in (root / "labels.txt").read_text().splitlines() if line.strip()]
    edge = [root / "images" / f for f, c in rows if c == "6"][:40]
    frac = [1 - read_image(f).valid.mean() for f in edge]
    assert min(frac) > 0.05 and np.mean(frac) > 0.3


# ---------------------------------------------------------------------------------------------------------
# valid_mask: the numpy-only mask shared by the flight runtime and the ground tools (issue 12)

from edgeae.nodata import Margin, margin_mask, valid_mask  # noqa: E402

ZL0 = "rover_rgb/mars2020_raw/ZL0_0038_0670307360_057ECM_N0031392ZCAM08007_1100LUJ.png"


def test_valid_mask_raw_mastcam_z_dark_side_margins(data_root: Path) -> None:
    """Raw Mastcam-Z: columns 0-22 and from 1631 hold mean values 1-10 against a median of ~190, both sides
    (the left one was missed before); the first rows are dark too; the scene itself stays valid."""
    cv2 = pytest.importorskip("cv2")
    p = data_root / ZL0
    if not p.is_file():
        pytest.skip(f"{p} not in the data folder")
    raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    v = valid_mask(raw)
    assert not v[:, :23].any() and not v[:, 1631:].any()
    assert v[10:-10, 25:1629].all()
    assert read_image(p).valid[:, :23].sum() == 0  # the ground reader uses the same mask


def test_valid_mask_slanted_black_borders_and_shadows() -> None:
    """A map-projected strip: the footprint is a slanted band, no-data (0-5, JPEG-like) on both sides; a
    black shadow inside the scene and one cut by the frame edge stay valid."""
    rng = np.random.default_rng(3)
    h, w = 400, 300
    img = rng.integers(60, 200, (h, w)).astype(np.uint8)
    yy, xx = np.indices((h, w))
    left, right = 40 + yy // 8, 200 + yy // 8
    outside = (xx < left) | (xx >= right)
    img[outside] = rng.integers(0, 6, int(outside.sum()))
    img[150:190, 120:160] = 0  # interior shadow
    v = valid_mask(img)
    assert not v[outside].any()
    inner = (xx >= left + 2) & (xx < right - 2)
    assert v[inner].all()


def test_valid_mask_strips_match_the_whole_frame_and_fixed_margin() -> None:
    rng = np.random.default_rng(4)
    img = rng.integers(60, 200, (512, 256)).astype(np.uint8)
    img[:, :20] = rng.integers(0, 4, (512, 20))
    img[:, -9:] = 255  # a saturated border
    whole = valid_mask(img, margin=Margin.parse("8,16,0,0"))
    strips = [
        valid_mask(
            img[r : r + 128],
            edges=("left", "right") + (("top",) if r == 0 else ()) + (("bottom",) if r + 128 >= 512 else ()),
            margin=Margin(8, 16, 0, 0),
            row0=r,
            frame_height=512,
        )
        for r in range(0, 512, 128)
    ]
    assert np.array_equal(np.concatenate(strips), whole)
    assert not whole[:, :20].any() and not whole[:, -9:].any()
    assert not whole[:8].any() and not whole[-16:].any() and whole[8:-16, 22:-11].all()
    assert np.array_equal(margin_mask((512, 256), Margin(8, 16, 0, 0)), valid_mask(img * 0 + 100, margin=Margin(8, 16)))
    with pytest.raises(ValueError, match="margin"):
        Margin.parse("1,2,3")


def test_valid_mask_is_numpy_only() -> None:
    """The flight runtime imports it: no OpenCV, SciPy or torch."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from edgeae.nodata import valid_mask\n"
        "a = np.full((64, 64), 120, np.uint8); a[:, :5] = 0\n"
        "assert not valid_mask(a)[:, :5].any()\n"
        "bad = [m for m in ('cv2', 'scipy', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_valid_mask_real_strips_with_black_no_data(data_root: Path) -> None:
    """HiRISE browse ESP_073496_0985 (black top rows, a masked block at the bottom) through the numpy mask
    alone, as the flight runtime sees it in 256-row strips."""
    cv2 = pytest.importorskip("cv2")
    p = data_root / "orbital_gray" / "hirise_browse" / "ESP_073496_0985_RED.NOMAP.browse.jpg"
    if not p.is_file():
        pytest.skip(f"{p} not in the data folder")
    raw = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
    h = raw.shape[0]
    v = np.concatenate(
        [
            valid_mask(
                raw[r : r + 256],
                edges=("left", "right") + (("top",) if r == 0 else ()) + (("bottom",) if r + 256 >= h else ()),
            )
            for r in range(0, h, 256)
        ]
    )
    assert not v[:5].any()
    assert not v[-8:, 910:1590].any()
    assert v[100:4400].mean() > 0.999


def test_border_shortcut_equals_the_full_labelling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strips whose dark pixels all lie more than NEAR_BORDER px from every side skip the labelling; the mask
    is the one the full labelling gives, for dark blobs at every distance from the sides (0-12 px)."""
    import edgeae.nodata as nd

    rng = np.random.default_rng(7)
    cases = []
    for k in range(60):
        img = rng.integers(40, 255, (48, 96), dtype=np.uint8)
        for _ in range(rng.integers(1, 4)):
            h, w = rng.integers(2, 30, 2)
            d = int(rng.integers(0, 13))  # distance of the blob from a side
            side = k % 4
            y = d if side == 0 else (48 - h - d if side == 1 else int(rng.integers(0, 48 - h)))
            x = d if side == 2 else (96 - w - d if side == 3 else int(rng.integers(0, 96 - w)))
            img[max(0, y) : y + h, max(0, x) : x + w] = rng.integers(0, 5)
        edges = [("top", "bottom", "left", "right"), ("left", "right")][k % 2]
        cases.append((img, edges))
    fast = [nd.nodata_mask(img, edges=edges, min_contact=8, min_area=16, min_side_fraction=0.1) for img, edges in cases]
    monkeypatch.setattr(nd, "NEAR_BORDER", 10**6)  # every dark pixel is "near": always the full labelling
    full = [nd.nodata_mask(img, edges=edges, min_contact=8, min_area=16, min_side_fraction=0.1) for img, edges in cases]
    assert all(np.array_equal(a, b) for a, b in zip(fast, full, strict=True))
    assert sum(not a.all() for a in full) >= 10  # the cases do flag margins, not only interior shadows


def _reference_nodata(raw: np.ndarray, edges: tuple[str, ...], seed: np.ndarray | None, **kw: Any) -> np.ndarray:
    """nodata_mask's rule written plainly, by labelling every region (SciPy, 8-connected): a dark region of the
    3 × 3 closed-then-opened mask is no-data when a seed pixel lies in it, or when it has at least ``min_area``
    pixels and at least max(min_contact, min_side_fraction × side) of them on one real side; then grown by
    ``margin``."""
    import cv2
    from scipy import ndimage

    se = np.ones((3, 3), np.uint8)
    dark = (raw <= 0.025 * 255).view(np.uint8)
    d8 = cv2.morphologyEx(cv2.morphologyEx(dark, cv2.MORPH_CLOSE, se), cv2.MORPH_OPEN, se)
    labels, n = ndimage.label(d8, structure=np.ones((3, 3)))
    h, w = raw.shape
    border = {"top": labels[0], "bottom": labels[-1], "left": labels[:, 0], "right": labels[:, -1]}
    invalid = np.zeros((h, w), bool)
    for lab in range(1, n + 1):
        region = labels == lab
        forced = seed is not None and bool((seed & region).any())
        need = {s: max(kw["min_contact"], kw["min_side_fraction"] * border[s].size) for s in edges}
        touches = any(int((border[s] == lab).sum()) >= need[s] for s in edges)
        if forced or (touches and region.sum() >= kw["min_area"]):
            invalid |= region
    if kw["margin"] and invalid.any():
        invalid = cv2.dilate(invalid.view(np.uint8), se, iterations=int(kw["margin"])).view(bool)
    return ~invalid


def test_region_fills_equal_a_plain_labelling_of_every_region() -> None:
    """nodata_mask floods only the regions that reach a real side or a seed (cost follows them, not the strip);
    on 400 random frames (blobs, speckle, seeds on the first row and scattered, every mix of sides and limits) it
    gives exactly the mask of the plain rule (:func:`_reference_nodata`)."""
    rng = np.random.default_rng(3)
    flagged = 0
    for _ in range(400):
        h, w = (int(v) for v in rng.integers(3, 60, 2))
        img = rng.integers(20, 255, (h, w)).astype(np.uint8)
        for _ in range(int(rng.integers(0, 8))):
            bh, bw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            img[y : y + bh, x : x + bw] = rng.integers(0, 6)
        if rng.random() < 0.3:
            img[rng.random((h, w)) < 0.2] = 0
        edges = tuple(e for e in ("top", "bottom", "left", "right") if rng.random() < 0.6)
        seed = None
        if rng.random() < 0.4:
            seed = np.zeros((h, w), bool)
            seed[0] = rng.random(w) < 0.5
            seed |= rng.random((h, w)) < (0.02 if rng.random() < 0.3 else 0.0)
        kw: dict[str, Any] = {"min_contact": int(rng.integers(1, 10)), "min_area": int(rng.integers(1, 40)),
              "min_side_fraction": float(rng.uniform(0, 0.5)), "margin": int(rng.integers(0, 3))}  # fmt: skip
        got = nodata_mask(img, edges=edges, seed=seed, **kw)
        np.testing.assert_array_equal(got, _reference_nodata(img, edges, seed, **kw))
        flagged += not got.all()
    assert flagged >= 150  # the cases do flag no-data, not only interior shadows
