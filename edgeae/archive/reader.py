"""Read archive products through GDAL (rasterio) as float32 [0, 1] with an explicit, recorded scaling.

Scaling (recorded in ``ImageData.extra["scaling"]``, never a silent clip):

- ``bit_depth``: 8-bit products, and integer products whose declared bit depth (GDAL ``NBITS``, PDS3
  ``SAMPLE_BIT_MASK``) holds every valid value: pixels = raw / (2**bits - 1), as for PNG/TIFF;
- ``range``: everything else (signed or 16/32-bit integers without a declared depth, floats: DEMs,
  radiance, I/F): pixels = (raw - lo) / (hi - lo) with lo, hi the measured minimum and maximum of the
  valid samples, so the product's real range maps onto [0, 1] exactly. The label's multiplier and offset
  (GDAL scale/offset: LOLA heights, Kaguya radiance) are recorded, giving the physical range too.

No-data (``valid`` False): GDAL's no-data value, the label's special values (see
:mod:`edgeae.archive.label`), ISIS special pixels, non-finite floats and any float at or below
-3.4028e38 (every ISIS real special and -FLT_MAX). The black-margin heuristic of :mod:`edgeae.nodata` is
not applied: the label is the authority on missing data.

Reads are windowed (``read_rows``), and GDAL's block cache is capped at :data:`GDAL_CACHE_MB`, so
streaming a product larger than memory keeps peak RSS flat. Measuring the range of a ``range``-scaled
product costs one extra windowed pass over it before the first strip.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeae._headers import ImageReadError
from edgeae._optional import require
from edgeae.archive.formats import check_complete, open_target
from edgeae.archive.label import FLOAT_SPECIAL_BELOW, ISIS_SPECIALS, ProductLabel, label_from_dataset

if TYPE_CHECKING:
    from edgeae.imageio import ImageData

__all__ = ["GDAL_CACHE_MB", "ProductReader", "Scaling", "read_product"]

GDAL_CACHE_MB = 16  # GDAL's default is 5 % of RAM: RSS would grow with every block a stream reads
PASS_BYTES = 8 * 1024**2  # samples read per window of the range pass
RAW_DRIVERS = ("PDS", "PDS4", "ISIS3", "VICAR")  # uncompressed layouts: reading the last line is cheap


@dataclass(frozen=True)
class Scaling:
    """pixels = (raw - raw_lo) / (raw_hi - raw_lo); physical value = raw × multiplier + offset."""

    kind: str  # "bit_depth" | "range"
    raw_lo: float
    raw_hi: float
    bits: int
    multiplier: float = 1.0
    offset: float = 0.0
    unit: str | None = None

    @property
    def physical_lo(self) -> float:
        return self.raw_lo * self.multiplier + self.offset

    @property
    def physical_hi(self) -> float:
        return self.raw_hi * self.multiplier + self.offset

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "physical_lo": self.physical_lo, "physical_hi": self.physical_hi}


def choose_scaling(dtype: np.dtype, bits: int | None, vmin: float | None, vmax: float | None) -> Scaling:
    """The scaling rule of the module docstring from the valid range (None when nothing is valid)."""
    if dtype == np.uint8:
        return Scaling("bit_depth", 0.0, 255.0, 8)
    if dtype.kind in "ui" and bits and 0 < bits <= 8 * dtype.itemsize:
        top = float(2**bits - 1)
        if vmin is None or vmax is None or (vmin >= 0 and vmax <= top):
            return Scaling("bit_depth", 0.0, top, bits)
    width = 8 * dtype.itemsize
    if vmin is None or vmax is None:
        return Scaling("range", 0.0, 1.0, width)
    return Scaling("range", float(vmin), float(vmax) if vmax > vmin else float(vmin) + 1.0, width)


def valid_range(raw: np.ndarray, bad: np.ndarray) -> tuple[float | None, float | None]:
    """(min, max) of ``raw`` (rows, W, C) where ``bad`` (rows, W) is False; (None, None) when nothing is.

    Masked reductions: boolean indexing would allocate two int64 index arrays (8× the mask) per call.
    """
    ok = ~bad
    if not ok.any():
        return None, None
    lo = hi = None
    for c in range(raw.shape[2]):
        a = raw[:, :, c]
        big = np.inf if a.dtype.kind == "f" else np.iinfo(a.dtype).max
        small = -np.inf if a.dtype.kind == "f" else np.iinfo(a.dtype).min
        m, n = float(np.min(a, where=ok, initial=big)), float(np.max(a, where=ok, initial=small))
        lo = m if lo is None else min(lo, m)
        hi = n if hi is None else max(hi, n)
    return lo, hi


def _open_env(**extra: Any) -> Any:
    rasterio = require("rasterio")
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024**2, CPL_DEBUG=False, **extra)  # bytes in rasterio


def _open(rasterio: Any, target: Path, opts: dict[str, Any]) -> Any:
    with _open_env(**opts), warnings.catch_warnings():
        # camera-geometry products have no geotransform: that is expected, not worth a warning per file
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return rasterio.open(target)


class ProductReader:
    """An open archive product: shape, label, georeferencing, windowed reads, scaling and validity.

    ``bands``: 1-based band numbers to read (default: all three of a 3-band product as RGB, else band 1).
    """

    heuristic_nodata = False  # strips: the label, not the black-margin heuristic, says what is missing

    def __init__(self, path: str | os.PathLike[str], bands: list[int] | None = None) -> None:
        rasterio = require("rasterio")
        self.path = Path(os.fspath(path))
        target = open_target(self.path)
        check_complete(target)
        self._opts: dict[str, Any] = {}
        try:
            self.ds = _open(rasterio, target, self._opts)
        except rasterio.errors.RasterioIOError as exc:
            if b"LBLSIZE=" not in target.read_bytes()[:65536]:
                raise ImageReadError(f"{self.path}: GDAL cannot open it ({exc})") from exc
            # a PDS3 label GDAL rejects over an embedded VICAR label: let the VICAR driver read it
            self._opts = {"GDAL_TRY_PDS3_WITH_VICAR": "YES"}
            try:
                self.ds = _open(rasterio, target, self._opts)
            except rasterio.errors.RasterioIOError as exc2:
                raise ImageReadError(f"{self.path}: GDAL cannot open it ({exc2})") from exc2
        ds = self.ds
        try:
            self.height, self.width, self.count = int(ds.height), int(ds.width), int(ds.count)
            self.driver = str(ds.driver)
            if bands is None:
                bands = [1, 2, 3] if self.count == 3 else [1]
            if not bands or any(not 1 <= b <= self.count for b in bands) or len(bands) not in (1, 3):
                raise ImageReadError(f"{self.path}: bands {bands} not in 1..{self.count} (read 1 or 3 bands)")
            self.bands = list(bands)
            self.raw_dtype = np.dtype(ds.dtypes[self.bands[0] - 1])
            if self.raw_dtype.kind == "c":
                raise ImageReadError(f"{self.path}: complex samples ({self.raw_dtype}) are not images")
            self.label: ProductLabel = label_from_dataset(ds, target)
            self.specials = self._special_values()
            self._check_last_line()
            self._scaling: Scaling | None = None
            self.geo = None
            if ds.crs is not None and not ds.transform.is_identity:
                from edgeae.archive.geo import GeoRef

                self.geo = GeoRef.from_dataset(ds, self.label.target, self.label.mapping)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        ds = getattr(self, "ds", None)
        if ds is not None and not ds.closed:
            ds.close()

    def __enter__(self) -> ProductReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- validity --------------------------------------------------------------------------------------
    def _special_values(self) -> tuple[float, ...]:
        vals = set(self.label.special_values)
        nodata = self.ds.nodatavals[self.bands[0] - 1]
        if nodata is not None and not (self.label.misread_nodata is not None and nodata == self.label.misread_nodata):
            vals.add(float(nodata))
        if self.driver == "ISIS3":
            vals.update(ISIS_SPECIALS.get(str(self.raw_dtype), ()))
        if self.raw_dtype.kind in "ui":
            info = np.iinfo(self.raw_dtype)
            vals = {v for v in vals if float(v).is_integer() and info.min <= v <= info.max}
        return tuple(sorted(vals))

    def invalid(self, raw: np.ndarray) -> np.ndarray:
        """bool (rows, W): True where any read band holds a special value (raw is (rows, W, C))."""
        bad = np.zeros(raw.shape[:2], dtype=bool)
        for c in range(raw.shape[2]):
            a = raw[:, :, c]
            if a.dtype.kind == "f":
                with np.errstate(invalid="ignore"):
                    bad |= ~np.isfinite(a) | (a <= FLOAT_SPECIAL_BELOW) | (a >= -FLOAT_SPECIAL_BELOW)
            for v in self.specials:
                if a.dtype.kind == "f" and v <= FLOAT_SPECIAL_BELOW:
                    continue
                bad |= a == a.dtype.type(v)
        return bad

    # -- reading ---------------------------------------------------------------------------------------
    def read_raw(self, y0: int, y1: int) -> np.ndarray:
        """Stored samples of rows [y0, y1) as (rows, W, C), read through a GDAL window."""
        if not 0 <= y0 < y1 <= self.height:
            raise ValueError(f"{self.path}: rows [{y0}, {y1}) outside 0..{self.height}")
        rasterio = require("rasterio")
        from rasterio.windows import Window

        try:
            with _open_env(**self._opts):
                arr = self.ds.read(self.bands, window=Window(0, y0, self.width, y1 - y0))
        except rasterio.errors.RasterioIOError as exc:
            raise ImageReadError(f"{self.path}: GDAL read of rows {y0}..{y1} failed ({exc})") from exc
        return np.ascontiguousarray(np.moveaxis(arr, 0, -1))

    def _check_last_line(self) -> None:
        if self.driver not in RAW_DRIVERS:  # compressed (JP2, GeoTIFF): one line can mean decoding many tiles
            return
        try:
            self.read_raw(self.height - 1, self.height)
        except ImageReadError as exc:
            raise ImageReadError(f"{self.path}: truncated or corrupt: its last line cannot be read ({exc})") from exc

    def _rows_per_pass(self) -> int:
        row = self.width * len(self.bands) * self.raw_dtype.itemsize
        return max(1, min(self.height, PASS_BYTES // max(row, 1)))

    def stats(self) -> tuple[float | None, float | None, int]:
        """(min, max) of the valid samples and the count of invalid pixels, in one windowed pass."""
        vmin = vmax = None
        n_bad = 0
        step = self._rows_per_pass()
        for y0 in range(0, self.height, step):
            raw = self.read_raw(y0, min(self.height, y0 + step))
            bad = self.invalid(raw)
            n_bad += int(bad.sum())
            lo, hi = valid_range(raw, bad)
            if lo is not None and hi is not None:
                vmin = lo if vmin is None else min(vmin, lo)
                vmax = hi if vmax is None else max(vmax, hi)
        return vmin, vmax, n_bad

    def _physical(self) -> tuple[float, float, str | None]:
        i = self.bands[0] - 1
        mult = self.ds.scales[i] if self.ds.scales and self.ds.scales[i] is not None else 1.0
        off = self.ds.offsets[i] if self.ds.offsets and self.ds.offsets[i] is not None else 0.0
        unit = self.ds.units[i] if self.ds.units and self.ds.units[i] else None
        return float(mult), float(off), unit

    def scaling_from(self, vmin: float | None, vmax: float | None) -> Scaling:
        base = choose_scaling(self.raw_dtype, self.label.bit_mask_bits, vmin, vmax)
        mult, off, unit = self._physical()
        return Scaling(base.kind, base.raw_lo, base.raw_hi, base.bits, mult, off, unit)

    @property
    def scaling(self) -> Scaling:
        """The product's scaling (one range pass on first use when the rule needs the valid range)."""
        if self._scaling is None:
            needs_range = self.raw_dtype != np.uint8
            vmin, vmax = (self.stats()[:2]) if needs_range else (None, None)
            self._scaling = self.scaling_from(vmin, vmax)
        return self._scaling

    def normalise(self, raw: np.ndarray, bad: np.ndarray, scaling: Scaling | None = None) -> np.ndarray:
        """float32 (rows, W, C) in [0, 1]; invalid pixels are 0."""
        s = scaling or self.scaling
        out = raw.astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            out -= np.float32(s.raw_lo)
            out *= np.float32(1.0 / (s.raw_hi - s.raw_lo))
        out[bad] = 0.0
        np.clip(out, 0.0, 1.0, out=out)  # float rounding only: every valid value lies in [lo, hi]
        return out

    def read_rows(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [y0, y1) as (pixels float32 (rows, W, C) in [0, 1], valid as uint8 alpha (rows, W))."""
        raw = self.read_raw(y0, y1)
        bad = self.invalid(raw)
        return self.normalise(raw, bad), (~bad).view(np.uint8)

    @property
    def bit_depth(self) -> int:
        """Bit depth of what :meth:`read_rows` returns (float32, for :func:`edgeae.imageio.to_float`)."""
        return 32

    def metadata(self, scaling: Scaling | None = None) -> dict[str, Any]:
        s = scaling or self.scaling
        return {
            "format": self.label.format, "driver": self.driver, "label": self.label.to_dict(),
            "scaling": s.to_dict(), "offset": s.raw_lo, "bands_in_product": self.count, "bands_read": self.bands,
            "special_values": list(self.specials), "georef": self.geo.to_dict() if self.geo else None,
            "gdal_options": dict(self._opts),
        }  # fmt: skip


def read_product(
    path: str | os.PathLike[str], *, channels: int | None = None, bands: list[int] | None = None
) -> ImageData:
    """Read a whole archive product into an :class:`edgeae.imageio.ImageData` (see the module docstring)."""
    from edgeae.imageio import ImageData, convert_channels

    with ProductReader(path, bands=bands) as r:
        _check_limits(r)
        raw = r.read_raw(0, r.height)
        bad = r.invalid(raw)
        s = r.scaling_from(*valid_range(raw, bad))
        pixels = r.normalise(raw, bad, s)
        del raw
        return ImageData(
            pixels=convert_channels(pixels, channels),
            raw_dtype=str(r.raw_dtype),
            bit_depth=s.bits,
            scale=s.raw_hi - s.raw_lo,
            valid=~bad,
            path=r.path,
            extra={**r.metadata(s), "stored_channels": len(r.bands), "alpha": False},
        )


def _check_limits(r: ProductReader) -> None:
    """A whole-product read obeys the decoded-size limits of :mod:`edgeae.imageio` (streaming does not need to)."""
    try:
        from edgeae.imagedecode import ImageLimits
    except ImportError:  # an edgeae without decode limits
        return
    lim = ImageLimits.from_env()
    pixels = r.height * r.width
    nbytes = pixels * len(r.bands) * 4  # float32 pixels
    if pixels > lim.max_pixels or nbytes > lim.max_bytes:
        raise ImageReadError(
            f"{r.path}: {r.height}×{r.width}×{len(r.bands)} is over the decode limits ({lim.max_pixels} pixels, "
            f"{lim.max_bytes} bytes; EDGEAE_MAX_IMAGE_PIXELS / EDGEAE_MAX_IMAGE_BYTES): stream it "
            "(edgeae.strips.iter_patches, edgeae scan, edgeae score) instead of reading it whole"
        )


def product_shape(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """(H, W, C) as :func:`read_product` returns it (C: 3 for a 3-band product, else 1); reads no image."""
    with ProductReader(path) as r:
        return r.height, r.width, len(r.bands)
