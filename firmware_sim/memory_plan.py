"""What a frame allocates beyond what the process holds before it (:func:`plan_memory`, by purpose), which the
loop checks against the memory budget before each frame (:mod:`.frame_intake`) and the boot against what the loaded
models leave; the patch grid, scoring batch and reconstruction-check tiles it is sized by.

A frame file that cannot be read in strips (PNG, JPEG, PNM: :class:`~.frames.ImageFileFrame`) is decoded whole, also
on a strip camera: its plan counts the decoded image and the decode's peak (the image and its file's bytes, a PNG's
twice: :class:`WholeDecode`), where a TIFF's or a ``.npy``'s counts strips (until session 39 every frame of a strip
camera was planned by its strips: a PNG strip peaked 11.7 MiB over its plan, a JPEG flew over the 64 MiB budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae.tiling import axis_count

from .mission import Mission

PREFETCH_STRIPS = 1  # strips decoded ahead of the one being processed (a thread; ring of PREFETCH + 2 buffers)
NODATA_PX = 2  # B / px edgeae.nodata.valid_mask's temporaries take beside its mask (+ the sample width on RGB)


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes a frame allocates beyond what the process holds before it, by purpose, and the buffers allocated at boot
    that a frame uses (``boot``: listed, never added: they are in the RSS the frame check starts from).

    ``items``: by purpose, held together while a strip is worked (the strips, the mask rows, the no-data mask a
    strip is scored with, the scoring engine's batches, which its threads score while the loop works the next
    strip) and summed, but for those named in ``steps``: what the loop's own thread allocates and frees one step at a
    time (the pixel check's temporaries, the no-data mask's, the sequential scorer's batch, the reconstruction
    tiles), of which only the largest is live at once. ``decode``: the peak while a frame file is decoded whole,
    before any strip is worked (:attr:`WholeDecode.peak`; 0 for a frame read in strips). The total is the larger of
    the decode and :attr:`buffers` (until session 39 the steps were summed as if all were live at once)."""

    items: tuple[tuple[str, int], ...]
    boot: tuple[tuple[str, int], ...] = ()
    decode: int = 0
    steps: tuple[str, ...] = ()

    @property
    def step_peak(self) -> int:
        """The largest step: what the loop's thread adds to the held items at its peak."""
        return max((v for n, v in self.items if n in self.steps), default=0)

    @property
    def buffers(self) -> int:
        """What the frame holds while its strips are worked: the held items and the largest step."""
        return sum(v for n, v in self.items if n not in self.steps) + self.step_peak

    @property
    def total(self) -> int:
        return max(self.buffers, self.decode)

    def as_dict(self) -> dict[str, Any]:
        return {
            **dict(self.items),
            **({"one_step_at_a_time": list(self.steps), "step_peak": self.step_peak} if self.steps else {}),
            **({"decode_peak": self.decode} if self.decode else {}),
            "total": self.total,
            **({"boot_held": dict(self.boot)} if self.boot else {}),
        }


@dataclass(frozen=True)
class WholeDecode:
    """A frame file decoded whole before its strips are taken (PNG, JPEG, PNM): ``decoded``, the image's bytes at
    its stored sample type (a PNG's alpha included: the frame keeps a view of it), held while the frame is worked;
    ``file``, its file's bytes, read whole before decoding (0 where not known: the boot); ``file_copies``, copies of
    those bytes at the decode's peak: 2 for PNG (Python's and the one pyspng makes of them), 1 for JPEG and PNM.
    Measured on the 2048 x 5064 grey frame (peak RSS growth of ``edgeae.imagedecode.decode_file``, MiB): PNG file
    7.8, image 9.9, planned 25.5, measured 25.4; JPEG file 5.4, planned 15.3, measured 15.8; the 1648 x 1200 RGB
    Mastcam-Z PNG 14.7 planned, 14.5 measured. ``views``: its strips reach the loop as views of the image
    (:func:`.frames.strips_are_views`: no reader wrapper), which the prefetch of a strip camera hands over as they are:
    no ring copies planned (False: a wrapper's strips, a demosaic's or the ``bad-frame`` fault's, copied into it)."""

    decoded: int
    file: int = 0
    file_copies: int = 1
    views: bool = False
    work: int = 0  # the decoder's own working memory at the peak (:data:`JPEG_WORK` for a JPEG)

    @property
    def peak(self) -> int:
        return self.file_copies * self.file + self.decoded + self.work


# libjpeg-turbo's working memory (simplejpeg) beside the file and the image: a JPEG frame at ``sparse_only``, whose
# plan is its decode's peak, grew 0.46-0.71 MiB over it on the HiRISE browse strips and the 2048 x 5064 frame in
# onnxruntime and LiteRT (benchmarks/plan_residuals.py, session 40), and at the orbital mission's 64 MiB in the
# flight-onnx venv the JPEG flew 0.2 MiB over the budget; planned since session 40
JPEG_WORK = 1 << 20


# the frame types decoded whole (frames.IMAGE_SUFFIXES) and their file's copies at the decode's peak, for the boot
WHOLE_FILE_COPIES = {".png": 2, ".jpg": 1, ".jpeg": 1, ".pgm": 1, ".ppm": 1, ".pnm": 1}


def whole_decode(reader: Any) -> WholeDecode | None:
    """What decoding ``reader``'s file whole takes (under any reader wrappers); None for a frame read in strips (a
    TIFF, a memory-mapped ``.npy``, an array). Its header is read again for its format (by content, not suffix) and
    the alpha channel the frame drops; a file gone or changed since it was opened is planned as its image alone (its
    decode then fails and drops the frame with why)."""
    from edgeae.imagedecode import probe

    from .frames import ImageFileFrame, strips_are_views

    views = strips_are_views(reader)
    while hasattr(reader, "inner"):
        reader = reader.inner
    if not isinstance(reader, ImageFileFrame):
        return None
    h = reader.header
    px = h.height * h.width * h.dtype.itemsize
    try:
        info, size = probe(reader.path), reader.path.stat().st_size
    except (OSError, ValueError):  # ValueError: edgeae._headers.ImageReadError
        return WholeDecode(px * h.channels, views=views)
    alpha = 1 if info.has_alpha else 0
    work = JPEG_WORK if info.format == "jpeg" else 0
    return WholeDecode(px * (h.channels + alpha), size, 2 if info.format == "png" else 1, views, work)


def reader_held(reader: Any) -> int | None:
    """What ``reader`` (under any reader wrappers) states its TIFF reading holds (:func:`plan_memory`'s
    ``reader_bytes``), None for another reader."""
    while hasattr(reader, "inner"):
        reader = reader.inner
    held = getattr(reader, "reader_bytes", None)
    return held if isinstance(held, int) and held >= 0 else None


def tiled_reader(reader: Any) -> bool:
    """Whether ``reader`` (under any reader wrappers) reads a tiled TIFF: :func:`plan_memory`'s ``tiled``."""
    while hasattr(reader, "inner"):
        reader = reader.inner
    return bool(getattr(reader, "tiled", False))


def camera_decode(mission: Mission, suffix: str) -> WholeDecode | None:
    """What a frame file of ``suffix`` decoded whole takes on the mission's camera, its file's bytes not known
    (the boot): None for a type read in strips or a camera of any size (``height`` or ``width`` 0)."""
    cam = mission.camera
    if suffix.lower() not in WHOLE_FILE_COPIES or cam.height <= 0 or cam.width <= 0:
        return None
    item = 1 if cam.bit_depth <= 8 else 2
    views = not cam.bayer  # a colour-filter camera's frames are demosaiced strip by strip, into the prefetch ring
    work = JPEG_WORK if suffix.lower() in (".jpg", ".jpeg") else 0
    return WholeDecode(cam.height * cam.width * cam.channels * item, 0, WHOLE_FILE_COPIES[suffix.lower()], views, work)


def patch_grid(mission: Mission, width: int, height: int) -> int | None:
    """Patches in a ``height`` × ``width`` frame's scoring grid, as the loop builds it (a streamed frame's rows
    stop at the last whole patch row, one patch apart); None when a size is unknown (0)."""
    an = mission.anomaly
    if width <= 0 or height <= 0:
        return None
    if width < an.patch or height < an.patch:
        return 0
    if mission.camera.source == "strips":
        rows = (height - an.patch) // an.patch + 1
    else:
        rows = axis_count(height, an.patch, an.stride)
    return rows * axis_count(width, an.patch, an.stride)


def recon_check_count(rows: int, width: int, tile: int, n: int) -> int:
    """How many tiles :func:`recon_check_positions` gives (``min(n, cells of the tile grid)``; 0 when the samples
    are smaller than a tile), computed without listing them: a camera of 2^20 rows has millions of cells."""
    if rows < tile or width < tile or n < 1:
        return 0
    return min(n, axis_count(rows, tile, tile) * axis_count(width, tile, tile))


def recon_check_positions(rows: int, width: int, tile: int, n: int) -> list[tuple[int, int]]:
    """The (y, x) corners of the tiles the reconstruction check takes from ``rows`` × ``width`` samples: at most
    ``n`` cells of the tile grid (:func:`edgeae.tiling.axis_starts`, the last flush with the edge), spread evenly
    over the cells in row-major order, none twice; [] when the samples are smaller than a tile. The chosen cells'
    corners are computed, the grid is never listed (until session 36 both axes' starts were: a mistyped camera of
    10^11 rows grew ``firmware-sim check`` to 22 GB)."""
    k = recon_check_count(rows, width, tile, n)
    if k == 0:
        return []
    nx = axis_count(width, tile, tile)
    cells = axis_count(rows, tile, tile) * nx
    picks = np.unique(np.rint(np.linspace(0, cells - 1, k)).astype(np.int64))
    # cell k of an axis starts at k * tile, the last one flush with the edge (axis_starts)
    return [(min(int(i) // nx * tile, rows - tile), min(int(i) % nx * tile, width - tile)) for i in picks]


def scoring_batch(mission: Mission) -> int:
    """Patches per scoring batch: ``[anomaly] batch``, but no more than the patches a frame of a fixed-size camera
    of whole files has (width and height set: every frame has that grid, :func:`patch_grid`), as a bigger batch
    would only allocate buffers no frame fills (batch = 4096 on a 256 x 256 camera of 9 patches held 10 GB).
    A strip camera's batch is not capped (its frames are tall: a batch rarely exceeds their grid)."""
    cam = mission.camera
    grid = patch_grid(mission, cam.width, cam.height) if cam.source == "files" else None
    return mission.anomaly.batch if grid is None else max(1, min(mission.anomaly.batch, grid))


def scoring_plan(mission: Mission, patch_channels: int, grid: int | None) -> tuple[int, int]:
    """(bytes a frame's scoring allocates, bytes of the :class:`~.score.PatchScorer` buffers allocated at boot).

    ``vae`` scores on the :class:`~.score_engine.ScoreEngine` (the fast path): raw-sample batches, at most
    ``2 × threads`` in flight and one being filled, and per scoring thread the float32 input it builds from one
    batch plus one layout or padding copy (an int8 model's input is a quarter of that); the PatchScorer's
    buffers are never filled on this path. ``cae-masked`` fills the PatchScorer's input, truth and weight buffers
    (allocated at boot) and each call allocates the reconstruction, its error and the weighted squared error, and an
    NHWC artifact's layout copy (:mod:`.runtime`: LiteRT's input and output transposed; tracemalloc, the shipped
    rover CAE: 4.0 batches in LiteRT, 3.0 in onnxruntime), and one more that a real frame's heap does not reuse (the
    Mastcam-Z frame in LiteRT grew 1.1-1.3 MiB over 4 batches of 1.5 MiB, 0.2 at ``batch = 16``;
    ``benchmarks/plan_residuals.py``): 5 planned, 3 until session 40 (fixer h8), when the no-data step, planned over
    it at 7 B / px, hid the rest. A batch never holds more patches than the frame's ``grid``."""
    an, cam = mission.anomaly, mission.camera
    pp = an.patch * an.patch
    f32 = pp * patch_channels * 4  # one patch as float32
    slots = an.batch if grid is None else min(an.batch, grid)
    held = scoring_batch(mission)  # the batch the boot allocates (capped to a fixed-size camera's patches)
    boot = held * (f32 + pp * 4) + (held * f32 if an.method == "cae-masked" else 0)
    if an.method == "vae":
        workers = max(1, mission.runtime.threads)
        raw = (2 * workers + 1) * an.batch
        raw = raw if grid is None else min(raw, grid)
        item = 1 if cam.bit_depth <= 8 else 2
        return raw * pp * patch_channels * item + workers * slots * f32 * 2, boot
    return slots * f32 * 5, boot


def plan_memory(
    mission: Mission,
    width: int,
    height: int,
    model_bytes: int,
    patch_channels: int,
    stored: tuple[int, np.dtype[Any] | type] | None = None,
    band_rows: int | None = None,
    whole: WholeDecode | None = None,
    overlap: bool = False,
    tiled: bool = False,
    reader_bytes: int | None = None,
) -> MemoryPlan:
    """What a frame of ``width`` × ``height`` (0: unknown) allocates beyond the buffers the boot already holds
    (the model images and the PatchScorer's buffers, listed under ``boot``), on the mission's scoring path.
    ``stored``: the frame's channels and sample type as stored in its file (default: the camera's channels and
    sample type): a float32 ``.npy`` frame is read at 4 bytes per sample, not the camera's 1. ``band_rows``: the
    rows a streamed reader decodes at a time (a TIFF's tile height; default: a strip's), which its buffers hold.
    ``whole``: the frame's file is decoded whole (:func:`whole_decode`): a strip camera's plan counts the decoded
    image, no reader bands, and the decode's peak (:attr:`MemoryPlan.decode`). ``overlap``: on the VAE's fast path,
    the plan of a frame whose loop does not wait for the engine (``FrameWork.wait`` False): its batches are held
    beside every step of the loop, as planned until session 39 (fixer h12); by default they are one more step.
    ``tiled``: a tiled TIFF (:attr:`.frames.TiffFrame.tiled`), whose reader holds its band and a tile or two, not the
    2.5 bands of a stripped one (``reader_band``). ``reader_bytes``: what the frame's TIFF reader states it holds
    (:attr:`.frame_tiff.TiffFrame.reader_bytes`, from the file's own layout: its compression, byte order, predictor
    and segment sizes), planned as its ``reader_band`` in place of those bands (since session 40, review r2 #3: a
    big-endian 16-bit LZW TIFF's reader held 3.4 bands, a float one with the floating-point predictor 2.9-3.3).

    The patch batch, top-k store and reconstruction tiles are bounded by what the frame has: no more patches
    than its patch grid, no more check tiles than its tile grid (:func:`recon_check_positions`). What is live at
    once, from the code a strip runs through (``FrameWork._strip``): held while the strip is worked (``items``)
    the strip, its demosaiced RGB and the mosaic plane it came from, the mask rows, the sparse values, the no-data
    mask it is scored with, the top-k store, and what other threads allocate meanwhile (a streamed frame's reader
    and demosaic run on the prefetch thread; with ``overlap`` the VAE's batches on the scoring engine's threads, which
    score a strip while the loop checks the next one and makes its no-data mask); one at a time on the loop's thread
    (``steps``) the pixel check's and float conversion's temporaries, the no-data mask's, the sequential
    PatchScorer's batch (``cae-masked``), the VAE's batches on the engine (the loop waits for them before a strip's
    pixel check, :func:`.strip_scoring.score_wait`, unless ``overlap``), the reconstruction tiles. Temporaries
    measured with tracemalloc (docs/firmware_sim.md)."""
    cam, an, rc = mission.camera, mission.anomaly, mission.reconstruction
    streamed = cam.source == "strips"
    rows = (min(cam.strip_rows, height) if height > 0 else cam.strip_rows) if streamed else height
    px = rows * width
    item = 1 if cam.bit_depth <= 8 else 2
    s_channels, s_dtype = (
        stored if stored is not None else (cam.channels, np.dtype(np.uint8 if item == 1 else np.uint16))
    )
    s_item, s_float = np.dtype(s_dtype).itemsize, np.dtype(s_dtype).kind == "f"
    pixels = an.patch * an.patch * patch_channels * item  # one kept patch, raw samples
    grid = patch_grid(mission, width, height)
    k = max(an.top_k, 1) if grid is None else min(max(an.top_k, 1), grid)
    top_k = k * pixels
    if an.method == "vae" and an.score == "terms-max":  # two keepers (one per term) and 24 B per scored patch
        top_k = 2 * top_k + 24 * (grid or 0)
    score, scorer_boot = scoring_plan(mission, patch_channels, grid)
    engine = an.method == "vae"  # scored on the ScoreEngine's threads (the fast path), else in the loop's thread
    kept = int(px * mission.sampling.keep)  # a strip's kept pixels
    # streamed: the reader's strip and the prefetch ring's; a decoded image's strips are views of it, which since
    # session 40 (fixer h2) the prefetch hands over as they are (frame_work.prefetch; until then it copied them into
    # its ring: 1.5 MiB on a 2048-px frame's 256-row strips, 3.7 on a 5064-px one's), a wrapper's into the ring
    ring = 0 if whole is not None and whole.views else PREFETCH_STRIPS + 2
    copies = ring + (1 if whole is None else 0) if streamed else 1
    items = [  # a strip as stored (streamed: the reader's and the prefetch ring's copies)
        ("frame_strip_raw", px * s_channels * s_item * copies),
    ]
    if streamed and whole is not None:  # the image decoded whole, its strips taken from it (a whole frame: the strip)
        items.append(("frame_decoded", whole.decoded))
    elif streamed:  # the TIFF reader's band of decoded tiles (a strip: the segment decoded) and the bytes of the tile
        # or strip it reads and decodes: 2.5 bands, 1.5 of a tiled TIFF (since session 40, fixer h2, frames.TiffFrame
        # reads one segment at a time and drops its bytes before the next: tracemalloc, 1.0 band for uncompressed
        # strips, 2.0-2.1 deflate, PackBits, LZMA, 2.4 LZW of noise, 1.37 times its samples; tiles 1.2-1.3, deflate
        # and a predictor included. Until then 4 bands planned and a stripped TIFF's reader held 7: a frame at
        # sparse_only grew 1.3-2.8 MiB over its plan; until session 36 two strips, 7.8 MiB short on a NAC strip of
        # 512-row tiles: a frame at sparse_only went over the budget)
        band_bytes = (band_rows or rows) * width * s_channels * s_item
        items.append(
            ("reader_band", reader_bytes if reader_bytes is not None else (3 if tiled else 5) * band_bytes // 2)
        )
    demosaic = px * (3 * item) if cam.bayer else 0  # its temporaries: the channel-equality check, a float32 block
    if cam.bayer:  # the mosaic plane copied out of the strip and the demosaiced RGB, both held while it runs
        items.append(("demosaic_rgb", px * (3 + 1) * item))
        if streamed:  # on the prefetch thread, beside whatever step the loop's thread is in
            items.append(("demosaic_temporaries", demosaic))
    if s_float or s_item != item:  # the strip converted to the wire's samples (to_samples)
        items.append(("samples", px * cam.channels * item))
    items += [
        ("mask_rows", px + kept * 8),  # + the kept pixels' flat indices (int64)
        # the no-data mask (1 B / px), kept while the strip is scored (and its reconstruction tiles are cut)
        ("nodata_mask", px if an.model else 0),
        ("sparse_values_strip", int(px * mission.sampling.keep * cam.channels * item) + 1),
        ("top_k_patches", top_k),
    ]
    # one at a time on the loop's thread: float conversion (to_samples: three copies of every sample at the stored
    # float width, 8 B for float64), the demosaic's when it runs here (a whole-file frame), the pixel check's
    # (2 B / px); the no-data mask's beside the mask itself (edgeae.nodata.valid_mask on a strip with dark margins
    # on every side: 7 B / px, the sample width more for the one value per pixel of several channels, 26-66 B per
    # column in vectors as long as a row, 48 counted; tracemalloc: 8.1 px in all on a grey 256-row strip, 9.1 on an
    # RGB one). Since session 39, fixer h12, valid_mask finds the dark runs a chunk at a time and peaks at 3.0 and 4.0
    # px with the mask, with or without margins: 2 B / px beside it, the sample width more on several channels, and
    # 128 B per column (tracemalloc: 1.2 B / px and 127 B per column on 2048-px strips of 16 and 256 rows)
    # (since session 40, fixer h8; 7 until then, kept while the Navcam and 5064-px TIFF frames grew 1.1-1.7 MiB over
    # plans at the new figure: other items' under-counts, which session 40 fixed: benchmarks/plan_residuals.py,
    # docs/firmware_sim.md); the sequential scorer's batch; a jittered
    # mask's (edgeae.masks computes its kept pixels' rows, columns and indices cell row by cell row, then joins and
    # sorts them: 65-78 B per kept pixel, 13 px of a strip at keep 0.2, where the uniform pattern's blocks take 256 KiB)
    # On the VAE's fast path the loop waits for the engine's batches before each strip's pixel check when the frame
    # needs it to fit (strip_scoring.score_wait, FrameWork.wait), so its batches are one more step; the batch being
    # filled, one raw batch, stays across strips: it is added to the no-data step with the larger of the loop's other
    # temporaries (it is live beside whichever of them runs, and is made only when scoring, as the no-data mask is).
    # The reconstruction runs after a strip's patches are handed to the engine, its batches beside it (until session
    # 39, fixer h12, the engine scored a strip while the loop checked the next and made its no-data mask: batches and
    # the no-data step were summed, 3.7 MiB more on a 2048-px strip). A frame that fits without the wait keeps that
    # overlap and that plan (``overlap``; the wait cost 4-25 % of the frame's time, review r6 of session 39).
    frame_t = max(px * s_channels * 3 * s_item if s_float else 0, 0 if streamed else demosaic, 2 * px)
    mask_t = 80 * kept if mission.sampling.pattern == "jittered" else 2**18
    nodata_t = px * (NODATA_PX + (item if cam.channels > 1 else 0)) + 128 * width + 2**16 if an.model else 0
    lap = engine and overlap
    if lap:  # the engine's batches held beside every step (the plan until fixer h12, kept as it was)
        items.append(("patch_batch_f32", score))
    filling = min(an.batch, grid if grid is not None else an.batch) * pixels if engine and an.model and not lap else 0
    steps = [
        ("frame_temporaries", frame_t),
        ("mask_temporaries", mask_t),
        ("nodata_temporaries", (nodata_t if lap else max(nodata_t, frame_t, mask_t) + filling) if an.model else 0),
        *([] if lap else [("patch_batch_f32", score)]),
    ]
    t2 = rc.tile * rc.tile * cam.channels
    beside = score if engine and not lap else 0  # the engine's batches, scored while the loop reconstructs
    if rc.mode == "check":  # truth, masked input, x_hat, |error| as float32 and the known mask
        tiles = rc.check_tiles if width <= 0 or rows <= 0 else recon_check_count(rows, width, rc.tile, rc.check_tiles)
        steps.append(("recon_tiles_f32", tiles * t2 * (4 * 4 + 1) + beside))
    elif rc.mode == "latent":  # one row of tiles in, the encoder's output of that row (at most as large)
        cols = axis_count(width, rc.tile, rc.tile) if width > 0 else 1
        steps.append(("recon_tiles_f32", cols * t2 * 4 * 2 + beside))
    boot = (("model_image", model_bytes), ("patch_scorer_buffers", scorer_boot if an.model else 0))
    held = tuple((n, v) for n, v in boot if v)
    decode = whole.peak if whole is not None else 0
    return MemoryPlan(tuple(items + steps), held, decode, tuple(n for n, _ in steps))
