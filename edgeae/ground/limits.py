"""Operator limits of the ground station: every size a packet asks for is checked against these first.

A packet header can claim any frame size (a 66-byte packet can announce 4096×4096×255 samples); the ground
allocates nothing from a header before :func:`check_frame` (and the per-kind checks in ``decode``) has
compared it with these limits, and a product over a limit is reported with the reason ``limit``, not
decoded. The largest frame the defaults allow (a NAC-size strip, 52,224 × 5,064 grey) needs about 9-12 GB to
rebuild with telea or nearest and about 30 GB with linear (35-112 bytes a grey pixel, measured: docs/ground.md),
so :func:`check_memory` also refuses a frame whose estimated rebuild does not fit in the memory available now
(reason ``memory``). Set them with ``edgeae ground ... --limit NAME=VALUE``
(``docs/ground.md`` lists them) or in code with ``GroundLimits(...)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# the memory probe is neutral (the mask generator shared with the flight side asks it too); callers and tests reach
# it here as limits.available_memory
from edgeae.memory_probe import available_memory as available_memory


class LimitError(ValueError):
    """A product or packet over an operator limit; ``reason`` is the counter it is reported under."""

    def __init__(self, message: str, reason: str = "limit") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GroundLimits:
    """Sizes the ground accepts (bytes, pixels or elements; all positive integers)."""

    max_frame_pixels: int = 1 << 28  # height × width of a sparse or latent frame (268 M)
    max_frame_bytes: int = 2 << 30  # height × width × channels × 4: the float32 image the ground rebuilds
    max_latent_elements: int = 1 << 26  # latent values of one frame (256 MB as float32)
    max_patch_elements: int = 1 << 24  # size × size × channels of one anomaly patch
    max_telemetry_bytes: int = 16 << 20  # one telemetry record
    max_session_bytes: int = 2 << 30  # packet bytes kept in memory per session
    max_source_bytes: int = 1 << 30  # packet bytes kept per sending address (``serve``)
    max_session_packets: int = 2_000_000  # packets kept per session (each costs ~1 KB of bookkeeping)
    max_products: int = 100_000  # products (frames, patches, records) open per session
    decode_queue: int = 64  # ``serve``: completed products waiting for the decoder thread

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ground limit {f.name} must be a positive integer, got {v!r}")

    @classmethod
    def from_pairs(cls, pairs: list[str] | None) -> GroundLimits:
        """Limits from ``NAME=VALUE`` strings (``max_frame_pixels=1e8``, ``max_session_bytes=4G``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        out: dict[str, int] = {}
        for item in pairs or ():
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                raise ValueError(f"--limit {item!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(names))}")
            out[name] = parse_size(value, f"--limit {name}")
        return cls(**out)


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str, what: str = "size") -> int:
    """A positive integer from ``123``, ``1e8``, ``64M``, ``1.5K`` or ``2.2G`` (binary units: a fraction of a unit
    rounds down to whole bytes); ValueError otherwise (also for a plain count that is not whole, such as ``5.7``)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    number = t[: len(t) - len(unit)]
    try:
        v = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a size (examples: 1000000, 1e8, 64M, 2G)") from None
    if not v >= 1 or v != v or v == float("inf"):
        raise ValueError(f"{what}: {text!r} must be a positive number")
    if not unit and v != int(v):  # 5.7 packets, 1.5 bytes: a typo, not a size to round down silently
        raise ValueError(f"{what}: {text!r} is not a whole number ({v:g})")
    return int(v)


REBUILD_BYTES: dict[str, tuple[float, float]] = {
    "nearest": (36.8, 9.1),
    "telea": (13.8, 23.1),
    "ns": (19.2, 15.0),
    "linear": (99.5, 13.0),
    "normconv": (14.3, 34.2),
    "normconv-wide": (14.3, 34.2),
    "blend": (99.5, 17.3),
    "cae": (41.3, 42.2),
}
"""Peak memory of rebuilding a sparse frame, bytes per pixel: (a, b) gives a + b × channels. Measured in session 27
with ``/usr/bin/time -v edgeae ground decode`` on 4096 × 4096 grey and RGB frames at keep 0.1 (peak RSS minus a
63 MB process baseline; ``cae``: the ground U-Nets, torch included); 8192 × 8192 grey agreed within 8%.
``normconv-wide`` (session 38) is normconv's figure: the same work arrays (``edgeae reconstruct``'s peak RSS of the
two agreed within 0.1 %). Session 45 measured the ground's default, ``--method auto``'s fills, the same way (a
synthetic 4096 × 4096 frame, grey and RGB, keep 0.1, less each method's RSS on a 16 × 16 frame; two runs agreed
within 0.1 %): ``blend`` 116.8 / 151.4 bytes a grey / RGB pixel (it had been the sum of linear's and normconv's
figures, 161 / 255, an upper bound never measured), ``linear`` 112.7 / 139.2, ``normconv-wide`` 47.2 / 119.0 (the
figures above within 3 %), ``telea`` 36.8 / 82.9 (session 27: 36.8 / 66.8; a hand run of the same commands this
session gave ~75 an RGB pixel, the benchmark's rerun in session 46 81.4: Telea's RGB peak varies, the largest is
kept). ``python -m benchmarks.rebuild_memory --out DIR`` measures them."""

NOT_A_GROUND_METHOD: tuple[str, ...] = ()
"""Fills a memory refusal does not suggest because ``edgeae ground decode --method`` does not offer them (none since
session 38 added normconv-wide and blend to its choices)."""

CAE_FIXED_BYTES = 180 << 20
"""What a CAE rebuild holds whatever the frame size: torch and the model loaded (peak RSS at batch 4 and 32 on
591 × 795 and 1182 × 1590 RGB, extrapolated to no tile and no pixel, less the 63 MB process baseline; session 30)."""

CAE_TILE_PIXEL_BYTES = 1250
"""Peak memory of one CAE tile in a batch, bytes per tile pixel (19.3 MiB for a 128-px tile of the ground U-Nets:
peak RSS at batch 4, 8 and 32 on the same frames, session 30): the batch adds ``batch × tile² ×`` this."""

CAE_TILE = 128  # the ground U-Nets' tile (px) and their default overlap, for the batch term of an estimate
CAE_OVERLAP = CAE_TILE // 4

MEMORY_MARGIN = 1.25
"""A frame is refused when its estimated rebuild memory times this exceeds the memory available."""


def cae_tiles(h: int, w: int, tile: int = CAE_TILE, overlap: int = CAE_OVERLAP) -> int:
    """How many ``tile``-px tiles a CAE rebuild cuts an h × w frame into (:func:`edgeae.tiling.tile_positions`)."""
    step = tile - overlap
    return (1 + max(0, -(-(h - tile) // step))) * (1 + max(0, -(-(w - tile) // step)))


def cae_batch_bytes(batch: int, tile: int = CAE_TILE) -> int:
    """Peak memory (bytes) that a batch of ``batch`` CAE tiles adds (:data:`CAE_TILE_PIXEL_BYTES`)."""
    return int(batch * tile * tile * CAE_TILE_PIXEL_BYTES)


def rebuild_bytes(h: int, w: int, c: int, fill: str, batch: int = 2, model_loaded: bool = False) -> int:
    """Estimated peak memory (bytes) of rebuilding an h × w × c sparse frame with the fill named ``fill`` (a
    classical method, ``cae:MODEL``, with ``+xcheck-METHOD`` adding that method's cost; ``none``: the decode
    alone, as ``nearest`` without its distance transform). A CAE adds torch and the model
    (:data:`CAE_FIXED_BYTES`) and its batch of tiles, at most ``batch`` and at most the frame's tiles; the
    default is the smallest batch a rebuild runs (:func:`edgeae.reconstruct.reconstruct_cae` lowers its batch
    to what the memory available allows). ``model_loaded``: torch and the model are loaded already (in the memory
    the available figure is taken after), so only the frame's own part is counted."""
    parts = fill.split("+")
    name = parts[0].split(":")[0]
    methods = [name if name in REBUILD_BYTES else "nearest"]
    methods += [p.removeprefix("xcheck-") for p in parts[1:] if p.removeprefix("xcheck-") in REBUILD_BYTES]
    per_pixel = sum(REBUILD_BYTES[m][0] + REBUILD_BYTES[m][1] * c for m in methods)
    need = int(h * w * per_pixel)
    if name == "cae":
        need += (0 if model_loaded else CAE_FIXED_BYTES) + cae_batch_bytes(max(1, min(batch, cae_tiles(h, w))))
    return need


ORIGINAL_BYTES_PER_SAMPLE = 12
"""What comparing a frame with its ``--original`` adds per sample: the original decoded once, its no-data mask made
from its samples, held as float32 (4 B) while the PSNR sums in row bands. Measured (review s36 r15 #1, traced peak
beyond the rebuild) on real HiRISE browse strips: 10.2 B on ESP_072719_1970 (2999 × 2048 grey, 21 % no-data
margin), 7.4 B on ESP_073481_1350 (3404 × 2048, none), 9.4 B (peak RSS 7.6 B) on the first stacked four times
(11,996 × 2048); it had been 29-30 B (a second decode, whole-frame float64 copies)."""


def check_memory(
    kind: str, frame_id: int, h: int, w: int, c: int, fill: str, available: int | None = None, original: bool = False
) -> None:
    """Refuse (``LimitError``, reason ``memory``) a frame whose rebuild would not fit in the memory available now:
    the ground station says so for that frame and goes on, instead of being killed by the system. The station
    loads its fill's model before the first frame, so that part is in use already, not counted again. ``original``:
    the frame is then compared with an original image (:data:`ORIGINAL_BYTES_PER_SAMPLE` more)."""
    avail = available_memory() if available is None else available
    need = rebuild_bytes(h, w, c, fill, model_loaded=True) + (ORIGINAL_BYTES_PER_SAMPLE * h * w * c if original else 0)
    if avail is not None and need * MEMORY_MARGIN > avail:
        n, m, a = _sizes(need, need * MEMORY_MARGIN, avail)
        raise LimitError(
            f"{kind} frame {frame_id}: {h}x{w}x{c} needs about {n} to rebuild with {fill}"
            f"{' and compare with its --original' if original else ''} ({m} with the "
            f"x{MEMORY_MARGIN:g} safety margin), {a} is available: not decoded (decode it on a larger machine"
            f"{_lighter(h, w, c, fill)})",
            reason="memory",
        )


def _lighter(h: int, w: int, c: int, fill: str) -> str:
    """The end of a memory refusal: the classical ``--method`` fills lighter than ``fill`` for this frame
    (:data:`REBUILD_BYTES`), lightest first, or that none is."""
    need = rebuild_bytes(h, w, c, fill, model_loaded=True)
    cost = {m: rebuild_bytes(h, w, c, m) for m in REBUILD_BYTES if m != "cae" and m not in NOT_A_GROUND_METHOD}
    lighter = sorted((m for m, v in cost.items() if v < need), key=lambda m: (cost[m], m))
    if not lighter:
        return f"; no --method fill is lighter than {fill} for this frame"
    how = "without --model, with --method" if fill.startswith("cae") else "with --method"
    return f", or {how} {' or '.join(lighter)}: lighter than {fill} for this frame"


def _sizes(*values: float) -> list[str]:
    """``values`` (bytes) in one unit (GiB, or MiB or KiB below one of those) with the fewest decimals (1 to 4) that
    tell the second and third apart (a need with its margin and what is available must not print as one figure)."""
    top = max(values)
    unit, name = (2**30, "GiB") if top >= 2**30 else (2**20, "MiB") if top >= 2**20 else (2**10, "KiB")
    for digits in range(1, 5):
        shown = [f"{v / unit:.{digits}f}" for v in values]
        if len(values) < 3 or shown[1] != shown[2]:
            break
    return [f"{t} {name}" for t in shown]


def check_frame(kind: str, frame_id: int, h: int, w: int, c: int, limits: GroundLimits) -> None:
    """Refuse a frame whose pixel count or rebuilt float32 size is over the limits (before allocating)."""
    if h * w > limits.max_frame_pixels:
        raise LimitError(
            f"{kind} frame {frame_id}: {h}x{w} = {h * w:,} pixels is over max_frame_pixels {limits.max_frame_pixels:,}"
        )
    if h * w * c * 4 > limits.max_frame_bytes:
        raise LimitError(
            f"{kind} frame {frame_id}: {h}x{w}x{c} needs {h * w * c * 4:,} B as float32, over "
            f"max_frame_bytes {limits.max_frame_bytes:,}"
        )
