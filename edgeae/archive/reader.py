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
not applied: the label is the authority on missing data. One exception (:attr:`ProductReader.zero_fill`): an
unsigned product that declares no no-data value at all has its regions of exact 0 that reach the border read
as no-data (map-projected byte GeoTIFFs and JPEG 2000 products fill outside the image with 0 unsaid).

Reads are windowed (``read_rows``), and GDAL's block cache is capped at :data:`GDAL_CACHE_MB`, so
streaming a product larger than memory keeps peak RSS flat. Measuring the range of a ``range``-scaled
product costs one extra windowed pass over it before the first strip.

Hostile or broken labels are refused before anything large is allocated: a raw product (PDS3, PDS4, ISIS3,
VICAR) whose declared samples do not fit in its data file from where the label says they start, any read window
over ``EDGEAE_MAX_IMAGE_BYTES`` (:class:`edgeae.imagedecode.ImageLimits`), any file GDAL would read whose real
path lies outside the label's folder (unless it is a link to a regular file and ``EDGEAE_ARCHIVE_FOLLOW_LINKS=1``)
or that is not a regular file, a PDS3 ``SAMPLE_TYPE`` GDAL would misread
(unknown, VAX floats), and a JPEG 2000 file cut short (:mod:`edgeae.archive.open_checks`). A label GDAL cannot
open because of bytes that are not UTF-8 is refused in one line naming it; a map projection PROJ cannot parse (an
infinite parameter) is read without georeferencing, with a warning. At open only the last few samples are read.
A PDS3 image that GDAL would read from the wrong offset (a stale or nested ``^IMAGE``, :mod:`edgeae.archive.pds3`)
is read here with numpy from where it really starts, and ``extra["warnings"]`` says so; one whose lines end in
``LINE_SUFFIX_BYTES``, which GDAL ignores (HiRISE EDRs), is read here with numpy line by line as its label lays it out.
``extra["direct_read"]`` says why a product was read with numpy (None when GDAL read it).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeae._headers import ImageReadError
from edgeae._optional import require
from edgeae.archive.files import _head
from edgeae.archive.formats import check_complete, open_target
from edgeae.archive.gdal_env import GDAL_CACHE_MB, _open, _open_env, close_dataset, dataset_message
from edgeae.archive.gdal_env import gdal_message as gdal_message
from edgeae.archive.gdal_env import max_window_bytes as max_window_bytes
from edgeae.archive.label import (
    FLOAT_SPECIAL_BELOW,
    ISIS_SPECIALS,
    ProductLabel,
    label_from_dataset,
    pds4_root,
)
from edgeae.archive.open_checks import PDS3_SAMPLE_TYPES as PDS3_SAMPLE_TYPES
from edgeae.archive.open_checks import check_declared_size, check_files, check_sample_type, check_tiff
from edgeae.archive.pds3 import RawImage
from edgeae.archive.read_limits import LAST_SAMPLES as LAST_SAMPLES
from edgeae.archive.read_limits import check_decode_limits, check_last_line, check_stream_pixels, check_window
from edgeae.archive.scaling import Scaling, choose_scaling, normalise, valid_range

if TYPE_CHECKING:
    from edgeae.imageio import ImageData

__all__ = ["GDAL_CACHE_MB", "ProductReader", "Scaling", "choose_scaling", "read_product", "valid_range"]

log = logging.getLogger(__name__)
PASS_BYTES = 8 * 1024**2  # samples read per window of the range pass


_WARNED: set[tuple[str, str]] = set()  # (product, note) already logged by this process
# the notes given when a product is opened (an invalid map projection): a scan's worker processes leave them to the
# driver, which opens every product before a worker reads it (edgeae.scan.local), so each is printed once a scan
NOTES_LOGGER = f"{__name__}.notes"
_notes_log = logging.getLogger(NOTES_LOGGER)


def new_notes() -> None:
    """Forget which notes were given: a new scan (``edgeae.scan.run.scan_archive``) gives each once again, also in a
    process that ran a scan before (a notebook, a library user)."""
    _WARNED.clear()


def _warn_once(path: Path, note: str) -> None:
    """Log a note about a product once per process (a scan opens each product several times); a path that is not
    UTF-8 named as the console names it (:func:`edgeae.printable.printable`: ``z\\xfe.cub``, not ``z\\udcfe.cub``)."""
    from edgeae.printable import printable

    key = (os.fspath(path), note)
    if key not in _WARNED:
        if len(_WARNED) > 100_000:
            _WARNED.clear()
        _WARNED.add(key)
        _notes_log.warning("%s: %s", printable(os.fspath(path)), note)  # a path that is not UTF-8: \xfe


class ProductReader:
    """An open archive product: shape, label, georeferencing, windowed reads, scaling and validity.

    ``bands``: 1-based band numbers to read (default: all three of a 3-band product as RGB, else band 1).
    """

    heuristic_nodata = False  # strips: the label, not the black-margin heuristic, says what is missing

    def __init__(self, path: str | os.PathLike[str], bands: list[int] | None = None) -> None:
        rasterio = require("rasterio")
        self.path = Path(os.fspath(path))
        if bands is not None and (isinstance(bands, (int, str)) or not all(isinstance(b, int) for b in bands)):
            raise ValueError(f"bands must be a list of 1-based band numbers, e.g. [2] or [4, 3, 2]; got {bands!r}")
        target = open_target(self.path)
        self._moved = check_complete(target)
        self._moved_dtype: np.dtype | None = None
        self._opts: dict[str, Any] = {}
        try:
            self.ds = _open(rasterio, target, self._opts)
        except (rasterio.errors.RasterioIOError, UnicodeDecodeError) as exc:
            if b"LBLSIZE=" not in _head(target, 65536):
                raise self._open_error(target, exc) from exc
            # a PDS3 label GDAL rejects over an embedded VICAR label: let the VICAR driver read it
            self._opts = {"GDAL_TRY_PDS3_WITH_VICAR": "YES"}
            try:
                self.ds = _open(rasterio, target, self._opts)
            except (rasterio.errors.RasterioIOError, UnicodeDecodeError) as exc2:
                raise self._open_error(target, exc2) from exc2
        ds = self.ds
        self._band_note: str | None = None  # set below when a multiband product is read by its first band
        try:
            self._check_files(target)
            self.height, self.width, self.count = int(ds.height), int(ds.width), int(ds.count)
            self.driver = str(ds.driver)
            if bands is None:
                bands = [1, 2, 3] if self.count == 3 else [1]
                if self.count not in (1, 3):  # a multispectral cube: say which band the pixels are
                    self._band_note = (
                        f"{self.count} bands in the product; band 1 is read (no command option chooses another: for "
                        "band N call `from edgeae.archive.reader import read_product; read_product(path, bands=[N])` "
                        "in Python)"
                    )
            if not bands or any(not 1 <= b <= self.count for b in bands) or len(bands) not in (1, 3):
                raise ImageReadError(f"{self.path}: bands {bands} not in 1..{self.count} (read 1 or 3 bands)")
            self.bands = list(bands)
            self.raw_dtype = np.dtype(ds.dtypes[self.bands[0] - 1])
            if self.raw_dtype.kind == "c":
                raise ImageReadError(f"{self.path}: complex samples ({self.raw_dtype}) are not images")
            root = pds4_root(target) if self.driver == "PDS4" else None
            check_sample_type(self, target)
            check_declared_size(self, target, root)
            if self._moved is not None:
                self._moved_dtype = self._direct_dtype(self._moved)
            self.label: ProductLabel = label_from_dataset(ds, target, root)
            self.specials = self._special_values()
            check_last_line(self)
            check_tiff(self)
            self._scaling: Scaling | None = None
            self.geo = None
            self._geo_note: str | None = None
            crs_error = getattr(ds, "crs_error", None)  # a map projection PROJ cannot parse (gdal_env._open)
            if crs_error:
                self._geo_note = (
                    f"the map projection in its label is invalid ({crs_error}): read without georeferencing"
                )
                _warn_once(self.path, self._geo_note)
            if ds.crs is not None and not ds.transform.is_identity:
                from edgeae.archive.geo import CORRECTED, GeoRef

                self.geo, self._geo_note = GeoRef.read(ds, self.label.target, self.label.mapping)
                if self._geo_note:
                    _warn_once(self.path, self._geo_note)
                if self.geo is not None and self.geo.note:  # a CRS repaired: GDAL and a GIS read the file's own
                    _warn_once(self.path, CORRECTED.format(note=self.geo.note))
        except BaseException:
            self.close()
            raise

    def _open_error(self, target: Path, exc: BaseException) -> ImageReadError:
        """The one line for a product GDAL cannot open (a ``UnicodeDecodeError``: text from its label that is not
        UTF-8, which rasterio cannot decode)."""
        if isinstance(exc, UnicodeDecodeError):
            label = "its label" if target == self.path else f"its label {target.name}"
            return ImageReadError(
                f"{self.path}: GDAL cannot open it: {label} holds bytes that are not UTF-8 text ({gdal_message(exc)})"
            )
        return ImageReadError(f"{self.path}: GDAL cannot open it ({gdal_message(exc)})")

    # -- checks at open (the others: edgeae.archive.open_checks, edgeae.archive.read_limits) -----------
    def _check_files(self, target: Path) -> None:
        """:func:`edgeae.archive.open_checks.check_files` of this reader."""
        check_files(self, target)

    def _direct_dtype(self, moved: RawImage) -> np.dtype:
        """The byte-ordered sample type to read a relocated PDS3 image with; refused where GDAL disagrees."""
        lay = moved.layout
        why = moved.dtype(self.raw_dtype)
        if (self.height, self.width, self.count) != (lay.lines, lay.samples, lay.bands):
            gdal, label = (self.height, self.width, self.count), (lay.lines, lay.samples, lay.bands)
            why = f"GDAL reads {' × '.join(map(str, gdal))} samples, the label says {' × '.join(map(str, label))}"
        if isinstance(why, str):
            raise ImageReadError(f"{self.path}: {moved.note}; but it cannot be read directly: {why}")
        return why

    # -- lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        ds = getattr(self, "ds", None)
        if ds is not None:
            close_dataset(ds)  # and the links a path that is not UTF-8 was opened through

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
        nbytes = check_window(self, y0, y1)
        rasterio = require("rasterio")
        from rasterio.windows import Window

        try:
            if self._moved is not None and self._moved_dtype is not None:
                return self._moved.read(y0, y1, self.bands, self._moved_dtype)
            with _open_env(**self._opts):
                arr = self.ds.read(self.bands, window=Window(0, y0, self.width, y1 - y0))
        except (rasterio.errors.RasterioIOError, UnicodeDecodeError) as exc:
            raise ImageReadError(
                f"{self.path}: GDAL read of rows {y0}..{y1} failed ({dataset_message(self.ds, exc)})"
            ) from exc
        except OSError as exc:
            raise ImageReadError(f"{self.path}: read of rows {y0}..{y1} failed ({exc})") from exc
        except MemoryError:
            raise ImageReadError(f"{self.path}: out of memory reading rows {y0}..{y1} ({nbytes} bytes)") from None
        return np.ascontiguousarray(np.moveaxis(arr, 0, -1))

    def _rows_per_pass(self) -> int:
        row = self.width * len(self.bands) * self.raw_dtype.itemsize
        return max(1, min(self.height, PASS_BYTES // max(row, 1)))

    def stats(self) -> tuple[float | None, float | None, int]:
        """(min, max) of the valid samples and the count of invalid pixels, in one windowed pass: a pass over the whole
        product (the scaling's range, a scan's ``--max-missing``), so refused before its first window where streaming
        it would be (:func:`~edgeae.archive.read_limits.check_stream_pixels`: a sparse bomb was read without end)."""
        check_stream_pixels(self)
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
        return normalise(raw, bad, scaling or self.scaling)

    def read_rows(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [y0, y1) as (pixels float32 (rows, W, C) in [0, 1], valid as uint8 alpha (rows, W))."""
        raw = self.read_raw(y0, y1)
        bad = self.invalid(raw)
        return self.normalise(raw, bad), (~bad).view(np.uint8)

    @property
    def zero_fill(self) -> bool:
        """True when regions of 0 reaching the product's border are read as no-data: unsigned samples, no
        no-data value declared (label, GDAL, ISIS), and a scaling that maps 0 to 0. Map-projected byte
        GeoTIFFs and JPEG 2000 products fill the area outside the image with 0 without saying so (a HiRISE
        RDR's black diamond: 28 % of ESP_037156_1800_RED.byte.tif), and those patches otherwise ranked first."""
        return self.fills_zero(self.scaling)

    def fills_zero(self, scaling: Scaling) -> bool:
        """:attr:`zero_fill` under ``scaling`` (a whole read measures its own before the property's pass would)."""
        return self.raw_dtype.kind == "u" and not self.specials and scaling.raw_lo == 0

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
            "gdal_options": dict(self._opts), "warnings": self.warnings,
            "direct_read": self._moved.note if self._moved is not None else None,
        }  # fmt: skip

    @property
    def warnings(self) -> list[str]:
        """What the reader did that the label did not say (e.g. a stale ``^IMAGE`` pointer relocated)."""
        notes = [self._moved.note] if self._moved is not None and self._moved.warn else []
        return notes + [n for n in (self._band_note, getattr(self, "_geo_note", None)) if n]


def read_product(
    path: str | os.PathLike[str], *, channels: int | None = None, bands: list[int] | None = None
) -> ImageData:
    """Read a whole archive product into an :class:`edgeae.imageio.ImageData` (see the module docstring)."""
    from edgeae.imageio import ImageData, convert_channels
    from edgeae.nodata import nodata_mask
    from edgeae.printable import printable

    with ProductReader(path, bands=bands) as r:
        check_decode_limits(r)
        for note in r.warnings:  # what the reader chose or repaired, where the user sees it
            if note != r._geo_note:  # logged when the reader opened
                log.warning("%s: %s", printable(os.fspath(r.path)), note)
        raw = r.read_raw(0, r.height)
        bad = r.invalid(raw)
        s = r.scaling_from(*valid_range(raw, bad))
        if r.fills_zero(s):  # the same rule and mask as the streamed read (edgeae.strips)
            bad |= ~nodata_mask(raw, threshold=0.0)
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


def product_shape(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """(H, W, C) as :func:`read_product` returns it (C: 3 for a 3-band product, else 1); reads no image."""
    with ProductReader(path) as r:
        return r.height, r.width, len(r.bands)
