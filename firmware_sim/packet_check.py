"""Whether a frame's sparse pixels fit the wire format's 65,535 packets per product: planned before sampling (a
fixed camera's frames at boot, a frame sent raw before it is sampled) and the packetiser's refusal afterwards, each
naming the mission keys that help. Split out of :mod:`.frame_intake` in session 39 (which re-exports it). And what
coding the first frame's packets starts (the sample codec's library), started at boot (:func:`preload_sample_codec`).
"""

from __future__ import annotations

from .mission import Mission


def packet_refusal(mission: Mission, width: int, height: int, worst_case: bool = False) -> str | None:
    """Why a ``height`` × ``width`` frame's sparse pixels cannot fit the wire format's 65,535 packets per
    product at the nominal keep fraction, naming the mission keys that help; None when they fit or may fit.

    A frame (``worst_case`` False): only with ``[downlink] codec = "none"`` is the count known before sampling
    (raw samples); a coding codec packs a compressible frame into fewer packets, so such a frame is sampled and
    a packetiser refusal drops it afterwards (``too_many_packets`` all the same, :func:`packet_advice`). The
    boot check of a fixed camera (``worst_case``) plans on raw samples whatever the codec: a mission whose
    frames fit only when they compress well is refused while it can still be changed."""
    if mission.downlink.codec != "none" and not worst_case:
        return None
    n = sparse_packet_estimate(mission, width, height)
    if n < 2**16:
        return None
    dl, keep = mission.downlink, mission.sampling.keep
    return (
        f"sparse pixels ({height} x {width} px at keep {keep:g}) need about {n:,} packets, more than the wire "
        f"format's 65,535 per product: raise [downlink] max_packet_bytes (now {dl.max_packet_bytes})"
        + (
            f", lower [sampling] keep (now {keep:g}) or code the samples ([downlink] codec, now 'none')"
            if dl.codec == "none"
            else f" or lower [sampling] keep (now {keep:g})"
        )
    )


def packet_advice(mission: Mission, refusal: BaseException | str) -> str:
    """The packetiser's too-many-packets refusal (:class:`edgeae.wire.sparse_plan.TooManyPackets`, or its text:
    "KIND product N needs M packets, over the 65,535 a product can have: ..."), with the mission keys that help that
    kind of product. The count, kind and frame id are the refusal's ``packets``, ``kind`` and ``frame_id`` where it
    carries them (until session 40 the text up to its first colon was quoted, so a front end's words before it, or a
    reworded message, lost the count); else the kind is the word before "product"."""
    import re

    dl, keep = mission.downlink, mission.sampling.keep
    text, packets = str(refusal), getattr(refusal, "packets", None)
    kind = getattr(refusal, "kind", None) or (re.search(r"(\w+) product\b", text) or [None, "a"])[1]
    frame_id = getattr(refusal, "frame_id", None)
    if isinstance(packets, int):
        which = f" {frame_id}" if isinstance(frame_id, int) else ""
        what = f"{kind} product{which} needs {packets:,} packets, over the 65,535 a product can have"
    else:
        what = text.split(":")[0]
    helps = f"raise [downlink] max_packet_bytes (now {dl.max_packet_bytes})"
    if kind == "sparse":
        helps += f" or lower [sampling] keep (now {keep:g})"
    return f"{what}, after coding ([downlink] codec {dl.codec!r}): {helps}"


def sparse_packet_estimate(mission: Mission, width: int, height: int) -> int:
    """Packets a frame's sparse pixels need at the nominal keep fraction, sent raw, as the wire format plans them
    (:func:`edgeae.wire.sparse.raw_packet_estimate`; until session 32 a per-row estimate of layout 1 about twice
    too high, which refused missions that fit)."""
    from edgeae.wire.packets import WireConfig
    from edgeae.wire.sparse import raw_packet_estimate

    dl = mission.downlink
    cfg = WireConfig(dl.max_packet_bytes, band_rows=dl.band_rows)
    item = 1 if mission.camera.bit_depth <= 8 else 2
    return raw_packet_estimate(height, width, mission.sampling.keep, mission.camera.channels, item, cfg)


FIRST_FRAME_MODULES = ("mmap", "edgeae.bayer")
"""What the first frame imports beyond its decoders and the frame work (:func:`.frame_decoders.preload_frame_path`):
the spool's memory map, the mosaic check of an unfiltered camera's frames (0.15 MiB; the prefetch thread's
``edgeae.stopping``, 8 KiB, is left to a streamed frame: it is not among the modules docs/firmware_sim.md lists)."""


def preload_sample_codec(mission: Mission) -> None:
    """Import and start at boot what coding the first frame's packets takes (libaec through imagecodecs for
    ``ccsds121``: its module and buffers, 0.4 MiB, start with the first block coded) and :data:`FIRST_FRAME_MODULES`,
    so that the RSS the boot's memory checks start from holds them: until session 39 the held RSS rose 1.0-2.4 MiB
    during the first frame (review r3 #1), and a budget set to the boot's "N MiB to score every patch" scored the
    first frame only. A codec not installed is left to :func:`.boot.check_codec`, which refuses it."""
    import contextlib
    import importlib

    import numpy as np

    from edgeae.wire.codec import CODECS, CodecError, encode_samples, resolve_sample_codec

    for name in FIRST_FRAME_MODULES:
        importlib.import_module(name)
    codec = resolve_sample_codec(mission.downlink.codec)
    if codec in CODECS:  # a few samples of the camera's depth, coded as a frame's are
        bits = mission.camera.bit_depth
        with contextlib.suppress(CodecError):
            encode_samples(np.zeros((64, 1), np.uint8 if bits <= 8 else np.uint16), CODECS[codec], bits)
