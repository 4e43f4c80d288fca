"""Frame sources: what the camera hands the runtime, as raw integer (or float) arrays in row strips.

A real camera delivers raw arrays; the simulator reads them from files:

- ``.npy``: memory-mapped (header, checks), its strips read from the file one at a time (numpy only);
- ``.tif`` / ``.tiff`` (BigTIFF, tiled or stripped): read and decoded a tile or strip at a time with ``tifffile``
  (:mod:`.frame_tiff`: every size the file states bounded first, segments placed by their index);
- ``.png`` / ``.jpg`` / ``.pgm`` / ``.ppm``: the header is read first (size and memory checks run before any
  pixel is decoded), then the file is decoded whole through :mod:`edgeae.imagedecode`, the one decoding path
  of flight and ground (pyspng, simplejpeg and numpy, all in the flight extras; no OpenCV). A damaged file
  or a decompression bomb raises :class:`FrameError` naming the file, and the loop drops that frame. A decoder
  that is not installed raises its ``MissingDependencyError`` (the pip line) when the frame is opened: the loop
  drops it ``decoder_unavailable``, taken again once it is installed (:mod:`.frame_decoders`).

Every reader yields ``(row0, strip)`` with ``strip`` shaped (rows, W, C) in the file's own dtype.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeae._optional import MissingDependencyError, require

from .frame_tiff import TiffFrame as TiffFrame
from .frame_types import FrameError as FrameError
from .frame_types import FrameHeader as FrameHeader
from .frame_types import FrameMemoryError as FrameMemoryError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm")
TIFF_SUFFIXES = (".tif", ".tiff")
FRAME_SUFFIXES = (".npy", *TIFF_SUFFIXES, *IMAGE_SUFFIXES)


class FrameReader(Protocol):
    header: FrameHeader

    def strips(self, strip_rows: int) -> Iterator[tuple[int, np.ndarray]]: ...


def _as_hwc(a: np.ndarray, source: str, alpha: bool = False) -> np.ndarray:
    """(H, W, C) of a frame. ``alpha``: a decoded image file's 4th channel is its alpha, dropped; an array's (a
    ``.npy`` frame, a camera buffer) extra channels are bands, kept, so the header check drops a frame of other than
    the camera's channel count as ``invalid_channels`` (until session 32 a 4-band array flew as RGB, its 4th band
    lost without a word)."""
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim == 3 and alpha and a.shape[2] in (2, 4):  # grey + alpha, RGB + alpha
        return a[:, :, :-1]
    if a.ndim == 3 and a.shape[2] >= 1:
        return a
    raise FrameError(f"{source}: expected an (H, W) or (H, W, C) frame, got shape {a.shape}")


class ArrayFrame:
    """A frame already in memory (a decoded image, a memory-mapped ``.npy``, or a camera buffer). A ``.npy``'s strips
    are read from its file into one buffer: read through the map, they stayed in the RSS (until session 40, fixer h2: a
    2048 x 5064 frame held its 10 MiB file by its end). :meth:`release` drops what a check read through the map."""

    def __init__(
        self, array: np.ndarray, source: str = "array", alpha: bool = False, file_id: tuple[int, int] | None = None
    ) -> None:
        """``file_id``: (st_dev, st_ino) of a mapped ``.npy`` taken before it was mapped (:func:`open_frame`); else
        taken now."""
        self._map: np.memmap[Any, Any] | None = None  # a whole .npy's map, not a slice of one
        self._file_id = file_id
        if isinstance(array, np.memmap) and array.filename and array.base is getattr(array, "_mmap", None):
            self._map = array
            if file_id is None:
                with contextlib.suppress(OSError):  # gone: strips are read through the map
                    self._file_id = _file_id(os.stat(array.filename))
        self.mapped = isinstance(array, np.memmap)
        self.array = _as_hwc(np.asarray(array), source, alpha)
        h, w, c = self.array.shape
        self.header = FrameHeader(source, h, w, c, self.array.dtype)

    def strips(self, strip_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        f = self._file()
        if f is not None and self._map is not None:
            yield from self._read_strips(f, int(self._map.offset), strip_rows)
            return
        for r0 in range(0, self.header.height, strip_rows):
            yield r0, self.array[r0 : r0 + strip_rows]

    def crop(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows ``y0:y1``, columns ``x0:x1`` (clipped to the frame) as a new array: a mapped ``.npy``'s read from its
        file, as its strips are, so no page of the map becomes resident (the mosaic check's central crop left 4-6 MiB
        of the map in the RSS, in no plan: review r3 #1 of session 40); else copied from :attr:`array`."""
        h, w, c = self.header.height, self.header.width, self.header.channels
        y0, x0 = min(max(0, y0), h), min(max(0, x0), w)  # clipped alike on both paths (a negative end: empty)
        y1, x1 = max(y0, min(y1, h)), max(x0, min(x1, w))
        f = self._file()
        if f is None or self._map is None:
            return np.array(self.array[y0:y1, x0:x1])
        item = self.header.dtype.itemsize
        out = np.empty((max(0, y1 - y0), max(0, x1 - x0), c), self.header.dtype)
        with f:
            for i, y in enumerate(range(y0, y1)):
                buf, done = out[i].reshape(-1).view(np.uint8).data, 0
                f.seek(int(self._map.offset) + (y * w + x0) * c * item)
                while done < len(buf):
                    got = f.readinto(buf[done:])
                    if not got:  # the file was cut short since it was opened
                        raise FrameError(f"{self.header.source}: .npy data ends within row {y}")
                    done += got
        return out

    def _file(self) -> Any:
        """A mapped C-order ``.npy``'s file, opened unbuffered for reading (the caller closes it), when it is still the
        file that was mapped; None otherwise (not mapped, or gone or replaced since: read through the map)."""
        if self._map is None or not self._map.flags.c_contiguous:
            return None
        f = None
        with contextlib.suppress(OSError):  # the file gone since it was mapped: read through the map
            f = open(str(self._map.filename), "rb", buffering=0)  # noqa: SIM115 (the caller closes it)
        if f is not None and _file_id(os.fstat(f.fileno())) != self._file_id:  # another file under its name: one
            f.close()  # that replaced it since it was mapped (until session 40, fixer h9, read as this frame)
            f = None
        return f

    def release(self) -> None:
        """Drop a memory-mapped frame's pages from the RSS (not from the page cache): what a check read through
        :attr:`array` mapped (the mosaic check's crop: 6 MiB of a 2048 x 5064 ``.npy`` here, mapped 2 MiB at a time)."""
        mm = getattr(self._map, "_mmap", None)
        if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):  # closed, or refused: they stay until the frame ends
                mm.madvise(mmap.MADV_DONTNEED)

    def _read_strips(self, f: Any, offset: int, strip_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        self.release()  # what the checks before the strips mapped
        h, w, c = self.header.height, self.header.width, self.header.channels
        row_bytes = w * c * self.header.dtype.itemsize
        out = np.empty((max(1, min(strip_rows, h)), w, c), self.header.dtype)
        with f:
            for r0 in range(0, h, strip_rows):
                strip = out[: min(strip_rows, h - r0)]
                buf, done = strip.reshape(-1).view(np.uint8).data, 0
                f.seek(offset + r0 * row_bytes)  # the C-order samples of the whole file ``f``
                while done < len(buf):  # a read may return less than asked (2 GiB at most on Linux)
                    got = f.readinto(buf[done:])
                    if not got:  # the file was cut short since it was opened
                        raise FrameError(f"{self.header.source}: .npy data ends within rows {r0}-{r0 + len(strip)}")
                    done += got
                yield r0, strip


class ImageFileFrame:
    """A PNG/JPEG/PNM frame: the header is read (and size-checked) now, the pixels only when strips are asked
    for, so the loop's shape and memory-budget checks run before anything is decoded.

    Decoding goes through :mod:`edgeae.imagedecode`, the one path the ground uses too (pyspng / simplejpeg /
    numpy with the flight extras; OpenCV is not needed).
    """

    def __init__(self, path: Path) -> None:
        from edgeae._headers import ImageReadError
        from edgeae.imagedecode import decoder_of, probe

        self.path = path
        try:
            info = probe(path)
        except ImageReadError as exc:
            raise FrameError(str(exc)) from None
        dtype = np.dtype(np.uint8 if info.bit_depth <= 8 else np.uint16)
        self.header = FrameHeader(str(path), info.height, info.width, info.channels, dtype)
        decoder = decoder_of(info.format)
        if decoder is not None:  # not installed (or failing to import): MissingDependencyError, the pip line, now
            require(decoder)  # before any check or buffer: the frame is dropped decoder_unavailable (.frame_decoders)

    def strips(self, strip_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        arr = self._decode()
        frame = ArrayFrame(np.ascontiguousarray(arr), str(self.path), alpha=True)  # a PNG's RGBA: A is alpha
        h = self.header
        if frame.header.channels != h.channels or frame.header.dtype != h.dtype:
            raise FrameError(
                f"{self.path}: decoded {frame.header.channels} channels of {frame.header.dtype}, the header "
                f"promised {h.channels} of {h.dtype}"
            )
        yield from frame.strips(strip_rows)

    def _decode(self) -> np.ndarray:
        """The decoded samples; a decode that ran out of memory is tried once more after the heap's free memory is
        returned to the system, then raised as :class:`FrameMemoryError` (any other failure: :class:`FrameError`)."""
        from edgeae._headers import ImageReadError
        from edgeae.imagedecode import ImageMemoryError, decode_file

        from .memory_meter import trim_heap

        for attempt in (1, 2):
            try:
                return decode_file(self.path)[0]
            except ImageMemoryError as exc:
                if attempt == 2:
                    raise FrameMemoryError(f"{exc} (tried twice)") from None
                trim_heap()
            except ImageReadError as exc:
                raise FrameError(str(exc)) from None
            except MissingDependencyError as exc:  # checked when the frame was opened: its decoder went since
                raise FrameError(f"{self.path}: cannot be decoded here (MissingDependencyError: {exc})") from None
        raise AssertionError("unreachable")


def _file_id(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def strips_are_views(reader: Any) -> bool:
    """Whether ``reader``'s strips are views of one array held for the frame, never refilled (a consumer may keep them
    uncopied): a file decoded whole or an array in memory, unwrapped; not a TIFF's, a ``.npy``'s or a wrapper's."""
    if isinstance(reader, ImageFileFrame):
        return True
    return isinstance(reader, ArrayFrame) and not reader.mapped


def read_image_frame(path: Path) -> ArrayFrame:
    """Decode a PNG/JPEG/PGM frame whole (header and size checks first), keeping its raw integer samples."""
    reader = ImageFileFrame(path)
    return ArrayFrame(np.concatenate([s for _, s in reader.strips(1 << 30)]), str(path))


def open_frame(path: str | os.PathLike[str]) -> FrameReader:
    """Open one frame file; raises :class:`FrameError` (or FileNotFoundError) naming the file, or the
    :class:`~edgeae._optional.MissingDependencyError` of a decoder its type needs that is not installed."""
    p = Path(path)
    if p.is_dir():
        raise FrameError(f"{p} is a directory, not a frame file")
    if not p.is_file():
        raise FileNotFoundError(f"frame file {p} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:  # the file mapped is the file stat'ed or one that replaced it (then read through its map: ArrayFrame)
            file_id = _file_id(os.stat(p))
            return ArrayFrame(np.load(p, mmap_mode="r", allow_pickle=False), str(p), file_id=file_id)
        except ValueError as exc:
            raise FrameError(f"{p}: not a readable .npy array ({exc})") from exc
    if suffix in TIFF_SUFFIXES:
        return TiffFrame(p)
    if suffix in IMAGE_SUFFIXES:
        return ImageFileFrame(p)
    raise FrameError(f"{p}: unsupported frame type {suffix!r}; expected one of {FRAME_SUFFIXES}")


@dataclass
class FrameList:
    """The frame files ``--frames`` names, and what it named that gives no frame: ``empty`` (each argument
    that yields nothing, with why: an empty folder, a file that is not a frame file), ``skipped`` (the entries of a
    folder that are not frame files) and ``missing`` (the names that do not exist: kept in ``files`` too, so the
    loop drops them with their reason)."""

    files: list[Path] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def notes(self) -> dict[str, list[str]]:
        """For the run summary (``inputs``)."""
        return {"arguments_without_frames": self.empty, "skipped_in_folders": self.skipped}


def collect_frames(specs: Sequence[str | os.PathLike[str]]) -> FrameList:
    """Files named on the command line, folders expanded to their frame files in sorted order (not
    recursively: a sub-folder is skipped, whatever its name). A name that does not exist is kept (and listed in
    ``missing``): the loop drops it with its reason, so it is accounted in the ledger. A file named that is not a
    frame file by its suffix (``mission.toml``) gives no frame, as it would in a folder: noted in ``empty``
    (until session 34 it was acquired and dropped ``unreadable``)."""
    out = FrameList()
    for spec in specs:
        p = Path(spec)
        if not p.is_dir():
            if not p.exists():  # a broken link too
                out.files.append(p)
                out.missing.append(str(spec))
            elif p.suffix.lower() in FRAME_SUFFIXES:
                out.files.append(p)
            else:
                out.empty.append(f"{spec}: not a frame file (frame files end in {', '.join(FRAME_SUFFIXES)})")
            continue
        entries = sorted(p.iterdir())
        frames = [q for q in entries if q.suffix.lower() in FRAME_SUFFIXES and not q.is_dir()]
        out.files.extend(frames)
        out.skipped.extend(f"{q}{'/ (a folder)' if q.is_dir() else ''}" for q in entries if q not in frames)
        if not frames:
            what = "is a directory" + (" (named like a frame file)" if p.suffix.lower() in FRAME_SUFFIXES else "")
            out.empty.append(f"{spec}: {what} holding no frame files ({len(entries)} other entries)")
    return out


def expand_frames(specs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The frame files of :func:`collect_frames`."""
    return collect_frames(specs).files
