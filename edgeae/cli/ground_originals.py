"""``--original`` of ``edgeae ground decode`` / ``serve``: the images a rebuilt frame is compared with, read only
when the station compares that frame (a frame refused for size or memory never reads its original)."""

from __future__ import annotations

from pathlib import Path

from edgeae.cli import CLIError


def set_originals(gs, path: Path, frame_ids: list[int], bayer: str | None = None) -> None:
    """``--original`` of ``ground decode`` for the frames ``frame_ids`` of ``gs``: read when a frame is compared (a
    frame refused for its size or the memory it needs never reads it), not all at once before the first frame."""
    from edgeae.ground.sources import original_files

    if path.is_file():
        _one_original(path, frame_ids)
        files = dict.fromkeys(frame_ids, path)
    else:  # a frame without its original (or with one that cannot be read) says so in its report
        found = original_files(path, check=False)
        files = {i: found[i] for i in frame_ids if i in found}
        for i in frame_ids:
            if i not in found:
                gs.original_notes[i] = _no_file(path, i)
    gs.originals = _LazyOriginals(files, bayer, gs.original_notes)


def serve_originals(gs, path: Path, bayer: str | None = None) -> _PassOriginal | None:
    """``--original`` of ``ground serve``, whose frame ids are not known in advance: a folder is looked up by frame
    id as each frame is compared (its files listed now); one image is compared with the pass's first frame only
    (returned, to say afterwards which frames it was not compared with)."""
    from edgeae.ground.sources import original_files

    if path.is_dir():
        gs.originals = _LazyOriginals(original_files(path, check=False), bayer, gs.original_notes, folder=path)
        return None
    one = _PassOriginal(gs, path, bayer)
    gs.originals = one
    return one


def _no_file(folder: Path, frame_id: int) -> str:
    return f"no original for frame {frame_id} in {folder} (a file whose name ends in {frame_id})"


def _one_original(path: Path, frame_ids: list[int]) -> None:
    if len(frame_ids) > 1:  # one image for several frames would give each frame a PSNR against the wrong one
        shown = ", ".join(map(str, frame_ids[:8])) + (" ..." if len(frame_ids) > 8 else "")
        raise CLIError(
            f"--original {path} is one image but the packets hold {len(frame_ids)} frames (ids {shown}): give "
            "a folder of originals whose names end in the frame id (frame_3.png, img_0003.tif)"
        )


class _LazyOriginals(dict):
    """Frame id -> original (float32 in [0, 1]) for ``GroundStation.originals``: each file is read when the station
    asks for its frame (``get``), after that frame's size and memory checks, and not kept (a 52,224 × 5,064 strip
    is 1 GB as float32); a file whose pixels cannot be read is noted in ``notes`` (the frame's ``psnr_error``), and
    so is a frame ``folder`` (given: ``serve``, which lists it before any frame id is known) has no file for."""

    def __init__(
        self, files: dict[int, Path], bayer: str | None, notes: dict[int, str], folder: Path | None = None
    ) -> None:
        super().__init__()
        self.files, self.bayer, self.notes, self.folder = files, bayer, notes, folder

    def __contains__(self, key: object) -> bool:  # known without reading: the station's memory check asks
        return key in self.files

    def get(self, key, default=None):
        return self.get_flight(key, None, default)[0]

    def get_flight(self, key, flight: str | None, default=None):
        """(:meth:`get`, the pattern it was demosaiced with for ``flight`` or None): ``flight`` is the pattern the
        frame's telemetry says the flight demosaiced it with (the station asks), used when no --bayer was given."""
        path = self.files.get(key)
        if path is None:
            if self.folder is not None:
                self.notes[key] = _no_file(self.folder, key)
            return default, None
        return _read_flight(path, self.bayer, self.notes, key, default, flight)


def _read(path: Path, bayer: str | None, notes: dict[int, str], key: int, default):
    """The original in ``path`` (:func:`_read_flight` without a flight pattern)."""
    return _read_flight(path, bayer, notes, key, default)[0]


def _read_flight(path: Path, bayer: str | None, notes: dict[int, str], key: int, default, flight: str | None = None):
    """(the original in ``path`` as float32 in [0, 1], NaN where it holds no data by ``edgeae reconstruct``'s rule
    (:mod:`edgeae.ground.validity`: the frame's PSNR leaves those pixels out, as reconstruct's does), or
    ``default`` when its pixels cannot be read (noted); the pattern ``flight`` when it was demosaiced with it).

    ``flight``: the colour-filter pattern the frame's telemetry says the flight demosaiced it with; without
    ``bayer`` (the user's --bayer wins) the original is demosaiced the same way, so a raw original compares with
    what the flight sent (until session 46 it was compared as stored, 16 dB low, unless the user knew to add
    --bayer); an original that is colour already cannot be, and is read as it is."""
    import numpy as np

    from edgeae.ground.sources import image_samples
    from edgeae.ground.validity import mark_no_data, original_valid

    used = None if bayer else flight
    try:  # the file decoded once, one float copy (review s36 r15 #1: a second decode took 2.5x the memory, 3x the time)
        try:
            samples, bits = image_samples(path, bayer=bayer or used)
        except (OSError, ValueError):
            if used is None:
                raise
            used = None  # colour already (or unreadable: then this read says so)
            samples, bits = image_samples(path, bayer=bayer)
        bayer = bayer or used
        valid = original_valid(path, samples, bits, bayer)  # from the samples read, before the float copy exists
        out = samples.astype(np.float32)
        del samples
        out /= np.float32(2**bits - 1)  # as_float's values, without its second float array
        return mark_no_data(out, valid), used
    except (OSError, ValueError, MemoryError) as exc:  # the header read fine at start, the pixels did not
        notes[key] = f"original {path} could not be read: {exc or type(exc).__name__}"
        return default, None


class _PassOriginal(dict):
    """One ``--original`` image for ``serve``: compared with the pass's first frame only (the first sparse or latent
    frame whose packets arrived: ``gs.receiver`` keeps its products in arrival order), the same frame however fast
    the decoder runs. Every other frame id gets no PSNR and a note saying why (``refused``), never a PSNR against
    another frame's image (``decode``, which knows every frame id first, refuses one image for several frames);
    read when compared, not kept."""

    def __init__(self, gs, path: Path, bayer: str | None) -> None:
        super().__init__()
        self.gs, self.path, self.bayer = gs, path, bayer
        self.first: int | None = None  # the pass's first frame id, once a frame arrived
        self.refused: list[int] = []  # frame ids that got no PSNR for that

    def _first(self) -> int | None:
        if self.first is None:
            with self.gs.lock:  # the parser may be adding products in another thread
                self.first = next((k[1] for k in self.gs.receiver.products if k[0] in ("sparse", "latent")), None)
        return self.first

    def __contains__(self, key: object) -> bool:  # the station's memory check: no side effect
        return key == self._first()

    def get(self, key, default=None):
        return self.get_flight(key, None, default)[0]

    def get_flight(self, key, flight: str | None, default=None):
        """(:meth:`get`, the pattern it was demosaiced with): as :meth:`_LazyOriginals.get_flight`."""
        if key != self._first():
            if key not in self.refused:
                self.refused.append(key)
            self.gs.original_notes[key] = (
                f"--original {self.path} is one image, compared with the pass's first frame ({self.first}) only; for "
                "a PSNR of every frame give a folder of originals whose names end in the frame id (frame_3.png)"
            )
            return default, None
        return _read_flight(self.path, self.bayer, self.gs.original_notes, key, default, flight)

    def warning(self) -> str | None:
        """The console line when frames got no PSNR for this, or None."""
        if not self.refused:
            return None
        ids = sorted(self.refused)
        shown = ", ".join(map(str, ids[:8])) + (" ..." if len(ids) > 8 else "")
        return (
            f"WARNING: --original {self.path} is one image and this pass held several frames: it was compared with "
            f"the first, frame {self.first}, only; {len(ids)} other frame(s) got no PSNR (ids {shown}): give a folder "
            "of originals whose names end in the frame id for every frame's PSNR"
        )


def originals_of_captures(caps: list, path: Path, bayer: str | None) -> None:
    """``--original`` for every capture; a frame id found in two captures gets none (which one it shows is
    not known), and its report says so."""
    ids = [sorted({k[1] for k in cap.station.receiver.products}) for cap in caps]
    if path.is_file():
        _one_original(path, [i for cap_ids in ids for i in cap_ids])
        for cap, cap_ids in zip(caps, ids, strict=True):
            if cap_ids:  # no frame id: nothing to compare
                set_originals(cap.station, path, cap_ids, bayer)
        return
    holding = {i: sum(i in c for c in ids) for cap_ids in ids for i in cap_ids}  # frame id -> captures with it
    shared = {i for i, n in holding.items() if n > 1}
    for cap, cap_ids in zip(caps, ids, strict=True):
        gs = cap.station
        for i in shared & set(cap_ids):
            gs.original_notes[i] = f"frame id {i} is in {holding[i]} captures: which of them {path} shows is not known"
        set_originals(gs, path, [i for i in cap_ids if i not in shared], bayer)
