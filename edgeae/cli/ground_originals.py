"""``--original`` of ``edgeae ground decode`` / ``serve``: the images a rebuilt frame is compared with, read only
when the station compares that frame (a frame refused for size or memory never reads its original)."""

from __future__ import annotations

from pathlib import Path

from edgeae.cli import CLIError


def set_originals(gs, path: Path, frame_ids: list[int], bayer: str | None = None) -> None:
    """``--original`` for the frames ``frame_ids`` of ``gs``: read when a frame is compared (a frame refused for its
    size or the memory it needs never reads it), not all at once before the first frame. ``serve`` (no frame ids
    known in advance) reads its one image now."""
    from edgeae.ground.sources import as_float, image_samples, original_files

    if path.is_file():
        _one_original(path, frame_ids)
        if not frame_ids:
            gs.default_original = as_float(*image_samples(path, bayer=bayer))
            return
        files = dict.fromkeys(frame_ids, path)
    else:  # a frame without its original (or with one that cannot be read) says so in its report
        found = original_files(path, check=False)
        files = {i: found[i] for i in frame_ids if i in found}
        for i in frame_ids:
            if i not in found:
                gs.original_notes[i] = f"no original for frame {i} in {path} (a file whose name ends in {i})"
    gs.originals = _LazyOriginals(files, bayer, gs.original_notes)


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
    is 1 GB as float32); a file whose pixels cannot be read is noted in ``notes`` (the frame's ``psnr_error``)."""

    def __init__(self, files: dict[int, Path], bayer: str | None, notes: dict[int, str]) -> None:
        super().__init__()
        self.files, self.bayer, self.notes = files, bayer, notes

    def __contains__(self, key: object) -> bool:  # known without reading: the station's memory check asks
        return key in self.files

    def get(self, key, default=None):
        from edgeae.ground.sources import as_float, image_samples

        path = self.files.get(key)
        if path is None:
            return default
        try:
            return as_float(*image_samples(path, bayer=self.bayer))
        except (OSError, ValueError, MemoryError) as exc:  # the header read fine at start, the pixels did not
            self.notes[key] = f"original {path} could not be read: {exc or type(exc).__name__}"
            return default


def originals_of_captures(caps: list, path: Path, bayer: str | None) -> None:
    """``--original`` for every capture; a frame id found in two captures gets none (which one it shows is
    not known), and its report says so."""
    ids = [sorted({k[1] for k in cap.station.receiver.products}) for cap in caps]
    if path.is_file():
        _one_original(path, [i for cap_ids in ids for i in cap_ids])
        for cap, cap_ids in zip(caps, ids, strict=True):
            if cap_ids:  # no frame id: nothing to compare (an empty list would read the image now, as serve does)
                set_originals(cap.station, path, cap_ids, bayer)
        return
    holding = {i: sum(i in c for c in ids) for cap_ids in ids for i in cap_ids}  # frame id -> captures with it
    shared = {i for i, n in holding.items() if n > 1}
    for cap, cap_ids in zip(caps, ids, strict=True):
        gs = cap.station
        for i in shared & set(cap_ids):
            gs.original_notes[i] = f"frame id {i} is in {holding[i]} captures: which of them {path} shows is not known"
        set_originals(gs, path, [i for i in cap_ids if i not in shared], bayer)
