"""Frames with rare labelled features, for measuring how much science a downlink budget returns.

Each builder returns :class:`LabelledFrame` objects: 8-bit samples (H, W, C), the patch grid the flight
runtime scores (``edgeae.tiling.axis_starts(H, patch, patch)`` by ``axis_starts(W, patch, patch)``) and the
grid patches that hold a labelled feature. Built from ``../shared/data`` (``$EDGEAE_DATA``):

- ``lroc-nac``: the LROC NAC test tiles of ``orbital_gray`` stacked into a strip (800 px wide); features:
  64-px patches holding the centre of a crater ≥ 64 px (the labels in ``lroc_nac_craters/*.txt``). Test data.
- ``rover-planted``: rover test frames (``rover_rgb`` test, a centre crop) with Curiosity hardware planted on
  128-px cells: 128-px centre crops of MSL surface-set images of rover hardware from its *validation* sols
  (``train_extra``: figures measured on this set are validation figures); scored on a 64-px grid, so each
  planted crop is four feature patches.
- ``hirise-landmarks``: HiRISE landmark crops (Deep Mars) of products no model trained on, tiled into a
  strip (192-px centre crops, 3 per row): mostly ``other`` crops with a few craters, dunes and slope streaks;
  the feature is the 64-px patch at the centre of each landmark crop. Test data.

Which frames and where the planted features go are fixed by ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeae.tiling import axis_starts

SETS = ("lroc-nac", "rover-planted", "hirise-landmarks")
"""Names of the labelled frame sets."""
SET_CHANNELS = {"lroc-nac": 1, "rover-planted": 3, "hirise-landmarks": 1}
"""The channels of each set's frames (grey 1, RGB 3), known before a set is built (:func:`build` checks its frames
against it): ``downlink plan`` refuses a ``--model`` or ``--scorer`` of another channel count up front."""


@dataclass(frozen=True, eq=False)
class LabelledFrame:
    """A frame (``samples`` (H, W, C): uint8, or uint16 of ``bits`` bits for a deeper camera) with the grid
    patches that hold a labelled feature.

    ``features``: int (K, 2) top-left (x, y) of feature patches on the ``patch`` grid. ``split``: ``test`` or
    ``validation`` (built from training/validation data: report its figures as validation figures). The labelled
    sets are 8-bit; ``edgeae downlink plan --image`` plans a 12- or 16-bit frame at its own depth."""

    name: str
    set: str
    samples: np.ndarray
    patch: int
    features: np.ndarray
    split: str
    notes: dict = field(default_factory=dict)
    bits: int = 8

    def __post_init__(self) -> None:
        want = np.uint8 if self.bits <= 8 else np.uint16
        if not 1 <= self.bits <= 16 or self.samples.dtype != want or self.samples.ndim != 3:
            raise ValueError(
                f"{self.name}: samples must be (H, W, C) {np.dtype(want).name} for {self.bits}-bit frames, got "
                f"{self.samples.dtype} {self.samples.shape}"
            )

    @property
    def top(self) -> float:
        """The full-scale sample value, ``2**bits - 1`` (samples / top are the frame in [0, 1])."""
        return float(2**self.bits - 1)

    @property
    def raw_bytes(self) -> int:
        """The raw frame's size as the camera packs it, ``bits`` per sample: what a budget fraction is of."""
        return -(-self.samples.size * self.bits // 8)

    def grid(self) -> np.ndarray:
        """Top-left (x, y) of every grid patch, row-major, int (N, 2)."""
        return grid_positions(self.samples.shape[0], self.samples.shape[1], self.patch)

    def feature_mask(self) -> np.ndarray:
        """Bool (H, W): pixels inside a feature patch."""
        m = np.zeros(self.samples.shape[:2], bool)
        for x, y in self.features:
            m[y : y + self.patch, x : x + self.patch] = True
        return m


def grid_positions(h: int, w: int, patch: int) -> np.ndarray:
    """The flight runtime's scoring grid: (x, y) of every patch, right and bottom edges flush."""
    ys, xs = axis_starts(h, patch, patch), axis_starts(w, patch, patch)
    return np.array([(x, y) for y in ys for x in xs], dtype=np.int64).reshape(-1, 2)


def _read8(path: Path, channels: int) -> np.ndarray:
    from edgeae.ground.sources import image_samples

    s, bits = image_samples(path, channels)
    if bits != 8:
        s = np.round(s.astype(np.float64) / (2**bits - 1) * 255).astype(np.uint8)
    return s


def lroc_nac(tiles: int = 4, width: int = 800, root: str | Path | None = None) -> list[LabelledFrame]:
    """One strip of the first ``tiles`` LROC NAC test tiles (centre ``width`` columns), stacked top to bottom."""
    from edgeae.anomaly.labels import crater_file_for, patch_labels, read_craters
    from edgeae.datasets import split_files

    files = [f for f in split_files("orbital_gray", "test", root=root) if "lroc_nac_craters" in str(f)][:tiles]
    imgs, craters, y0 = [], [], 0
    for f in files:
        img = _read8(f, 1)
        x0 = max(0, (img.shape[1] - width) // 2)
        img = img[:, x0 : x0 + width]
        c = read_craters(crater_file_for(f))
        craters.append(c - np.array([x0, -y0, 0.0]))
        imgs.append(img)
        y0 += img.shape[0]
    w = min(i.shape[1] for i in imgs)
    strip = np.ascontiguousarray(np.concatenate([i[:, :w] for i in imgs]))
    cr = np.concatenate(craters)
    grid = grid_positions(strip.shape[0], w, 64)
    feat = grid[patch_labels(grid, 64, cr, 64.0)]
    notes = {"tiles": [f.name for f in files], "craters_ge_64px": int((cr[:, 2] >= 64).sum())}
    return [LabelledFrame(f"lroc-nac-strip-{len(files)}x{w}", "lroc-nac", strip, 64, feat, "test", notes)]


def _centre(a: np.ndarray, h: int, w: int) -> np.ndarray:
    y, x = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    return np.ascontiguousarray(a[y : y + h, x : x + w])


def rover_planted(
    frames: int = 3,
    per_frame: int = 2,
    size: tuple[int, int] = (640, 1024),
    seed: int = 0,
    root: str | Path | None = None,
) -> list[LabelledFrame]:
    """Rover test frames (centre crops of at most ``size``, whole 128-px cells) with ``per_frame`` MSL hardware
    crops (128 px) planted on 128-px cells, never next to each other. Scored on a 64-px grid, as the smallest
    full-resolution unit a small budget can afford: each planted crop is four feature patches."""
    from edgeae.datasets import MSL_HARDWARE_CLASSES, msl_surface_items, split_files

    rng = np.random.default_rng(seed)
    bases = [f for f in split_files("rover_rgb", "test", root=root) if _big_enough(f, (512, 768))][:frames]
    hardware = [(p, c) for p, c, _ in msl_surface_items("val", root) if c in MSL_HARDWARE_CLASSES]
    hardware = [h for h in hardware if _big_enough(h[0], (128, 128))]
    order = rng.permutation(len(hardware))
    used = 0
    out = []
    for f in bases:
        full = _read8(f, 3)
        hh, ww = (min(full.shape[0], size[0]) // 128 * 128), (min(full.shape[1], size[1]) // 128 * 128)
        img = _centre(full, hh, ww).copy()
        inner = [(x, y) for y in range(0, hh, 128) for x in range(0, ww, 128)]
        cells: list[tuple[int, int]] = []
        for k in rng.permutation(len(inner)):
            x, y = inner[k]
            if all(max(abs(x - a), abs(y - b)) > 128 for a, b in cells):
                cells.append((x, y))
            if len(cells) == per_frame:
                break
        planted = []
        for x, y in cells:
            path, cls = hardware[order[used % len(order)]]
            used += 1
            img[y : y + 128, x : x + 128] = _centre(_read8(path, 3), 128, 128)
            planted.append({"x": x, "y": y, "file": path.name, "class": int(cls)})
        feat = np.array([(x + dx, y + dy) for x, y in cells for dy in (0, 64) for dx in (0, 64)], np.int64)
        out.append(LabelledFrame(f"rover-{f.stem[:24]}", "rover-planted", img, 64, feat.reshape(-1, 2), "validation",
                                 {"base": f.name, "planted": planted}))  # fmt: skip
    return out


def _big_enough(path: Path, size: tuple[int, int]) -> bool:
    from edgeae.imageio import image_shape

    h, w, _ = image_shape(path)
    return h >= size[0] and w >= size[1]


def hirise_landmarks(
    strips: int = 3, rows: int = 4, cols: int = 3, landmarks: int = 2, seed: int = 0, root: str | Path | None = None
) -> list[LabelledFrame]:
    """``strips`` strips of rows × cols HiRISE landmark crops (192-px centres), ``landmarks`` of them with a
    labelled crater, dune or slope streak, the rest class ``other``; only products no model trained on."""
    from edgeae.anomaly.labels import hirise_product, hirise_training_products, read_hirise_labels
    from edgeae.data import data_root

    base = data_root(root) / "hirise_landmarks"
    labels = read_hirise_labels(base / "labels.txt")
    train = hirise_training_products(labels)
    pool = [(f, c) for f, c in labels if hirise_product(f) not in train]
    normal = [f for f, c in pool if c == 0]
    marks = [(f, c) for f, c in pool if c in (1, 2, 3, 4)]
    rng = np.random.default_rng(seed)
    normal = [normal[i] for i in rng.permutation(len(normal))]
    marks = [marks[i] for i in rng.permutation(len(marks))]
    crops = (c for c in ((f, _centre(_read8(base / "images" / f, 1), 192, 192)) for f in normal) if _has_data(c[1]))
    lm_crops = (
        c for c in ((f, k, _centre(_read8(base / "images" / f, 1), 192, 192)) for f, k in marks) if _has_data(c[2])
    )
    out = []
    for s in range(strips):
        cells = rng.permutation(rows * cols)[:landmarks]
        strip = np.zeros((rows * 192, cols * 192, 1), np.uint8)
        feats, names = [], []
        for k in range(rows * cols):
            i, j = divmod(k, cols)
            if k in cells:
                name, cls, crop = next(lm_crops)
                feats.append((j * 192 + 64, i * 192 + 64))
                names.append({"file": name, "class": cls, "x": j * 192 + 64, "y": i * 192 + 64})
            else:
                name, crop = next(crops)
            strip[i * 192 : (i + 1) * 192, j * 192 : (j + 1) * 192] = crop
        feat = np.array(feats, dtype=np.int64).reshape(-1, 2)
        out.append(LabelledFrame(f"hirise-strip-{s}", "hirise-landmarks", strip, 64, feat, "test",
                                 {"landmarks": names}))  # fmt: skip
    return out


def _has_data(crop: np.ndarray) -> bool:
    """No image-edge margin: at most 1% of the crop is black no-data."""
    return float((crop == 0).mean()) <= 0.01


def build(name: str, quick: bool = False, seed: int = 0, root: str | Path | None = None) -> list[LabelledFrame]:
    """The frames of set ``name`` (:data:`SETS`); ``quick``: one small frame per set. Their channels are
    :data:`SET_CHANNELS`' (ValueError otherwise: the table would let a wrong model through)."""
    if name == "lroc-nac":
        frames = lroc_nac(2, 512, root) if quick else lroc_nac(4, 800, root)
    elif name == "rover-planted":
        frames = (
            rover_planted(1, size=(512, 1024), seed=seed, root=root)
            if quick
            else rover_planted(3, seed=seed, root=root)
        )
    elif name == "hirise-landmarks":
        frames = hirise_landmarks(1 if quick else 3, seed=seed, root=root)
    else:
        raise KeyError(f"unknown feature set {name!r}; known: {', '.join(SETS)}")
    for f in frames:
        if f.samples.shape[2] != SET_CHANNELS[name]:
            raise ValueError(f"feature set {name}: frame {f.name} has {f.samples.shape[2]} channel(s), "
                             f"SET_CHANNELS says {SET_CHANNELS[name]}")  # fmt: skip
    return frames
