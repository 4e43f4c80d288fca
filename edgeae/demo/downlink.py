"""The demo's byte stages: JPEG 2000 in the bytes the sparse sample takes, and the sample over every link preset.

:func:`sparse_payload` packetises the sparse sample as the flight runtime does; :func:`stage_codec` gives a
standard codec (:func:`jpeg2000_at`) the same bytes; :func:`stage_downlink` sends the sample through each
link preset and rebuilds it as the ground station does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeae._optional import source_ref
from edgeae.demo.context import DemoContext, _label, _samples
from edgeae.demo.rebuild import NOT_MEASURED, measured, psnr_scope, psnr_valid
from edgeae.masks import apply_mask
from edgeae.reconstruct import Reconstruction
from edgeae.report import Figure, Section, error_map

if TYPE_CHECKING:
    from edgeae.ground.pipeline import DownlinkResult

# the link presets in the order the report shows them (any other preset follows, by name)
LINK_ORDER = ("perfect", "loss5", "loss20", "loss40", "burst", "mars_relay")


def sparse_payload(ctx: DemoContext) -> tuple[int, int]:
    """(packets, bytes on the wire) of the frame's sparse sample, packetised as the flight runtime does."""
    if "sparse_payload" not in ctx.extra:
        from edgeae.ground.sources import sparse_from_samples
        from edgeae.wire.codec import DEFAULT_SAMPLE_CODEC, resolve_sample_codec
        from edgeae.wire.packets import SequenceCounters, WireConfig, packetise

        cfg = ctx.config
        frame = sparse_from_samples(_samples(ctx), 8, cfg.keep, cfg.seed, cfg.pattern, 0)
        # coded as the downlink section and the flight runtime send it (CCSDS 121 where libaec is installed):
        # uncoded samples gave JPEG 2000 ~40 % more bytes than the sparse frame really takes
        wire = WireConfig(codec=resolve_sample_codec(DEFAULT_SAMPLE_CODEC))
        pkts = packetise(frame, config=wire, counters=SequenceCounters())
        ctx.extra["sparse_payload"] = (len(pkts), sum(map(len, pkts)))
    out: tuple[int, int] = ctx.extra["sparse_payload"]
    return out


def jpeg2000_at(
    samples: np.ndarray, budget: int, steps: int = 12, bar: Callable[[range], Iterable[int]] = iter
) -> tuple[bytes, np.ndarray, float]:
    """JPEG 2000 (imagecodecs, OpenJPEG) of uint8 ``samples`` (H, W, C) in at most ``budget`` bytes.

    The encoder takes a target PSNR per quality layer; a bisection finds the highest target whose stream
    fits. Returns (stream, decoded float32 (H, W, C) in [0, 1], target dB); an empty stream when even the
    coarsest setting does not fit.
    """
    from edgeae._optional import require

    codecs = require("imagecodecs")
    src = samples[..., 0] if samples.shape[2] == 1 else samples
    lo, hi = 5.0, 80.0
    best: tuple[bytes, float] = (b"", 0.0)
    for _ in bar(range(steps)):
        mid = (lo + hi) / 2
        data = bytes(codecs.jpeg2k_encode(src, level=mid))
        if len(data) <= budget:
            best, lo = (data, mid), mid
        else:
            hi = mid
    if not best[0]:
        return b"", np.full(samples.shape, 0.5, np.float32), 0.0
    dec = np.asarray(codecs.jpeg2k_decode(best[0]))
    dec = dec.reshape(*dec.shape[:2], -1)[..., : samples.shape[2]]
    return best[0], dec.astype(np.float32) / 255.0, best[1]


def stage_codec(ctx: DemoContext) -> Section | None:
    """JPEG 2000 of the whole frame in the bytes that the sparse sample takes on the wire."""
    if not ctx.config.codec:
        return None
    if not measured(ctx):  # the codec is set against the rebuilds by PSNR: nothing to set it against
        why = "no pixel of the frame holds data: nothing to measure it against"
        ctx.say(f"same bytes: JPEG 2000 not run ({why})")
        return Section("Same bytes, standard codec: not run", paragraphs=[f"Not run: {why}."])
    from edgeae.metrics import compare

    packets, wire = sparse_payload(ctx)
    t0 = time.perf_counter()
    data, decoded, target = jpeg2000_at(
        _samples(ctx), wire, bar=lambda r: ctx.bar(r, "JPEG 2000 at the same bytes", total=len(r), unit="try")
    )
    seconds = time.perf_counter() - t0
    if not data:
        ctx.say(f"same bytes: JPEG 2000 cannot fit the frame in {wire:,} bytes")
        return None
    metrics = compare(ctx.original, decoded, valid=psnr_valid(ctx))  # over the pixels with data, as every rebuild
    ctx.extra["codec"] = {
        "name": "jpeg2000",
        "bytes": len(data),
        "budget": wire,
        "metrics": metrics,
        "seconds": seconds,
    }
    cae = next((r for r in ctx.results if r.method == "cae"), None)
    vs = f" (CAE: {cae.metrics['psnr']:.2f} dB)" if cae else ""
    ctx.say(
        f"same bytes: JPEG 2000 in {len(data):,} of {wire:,} bytes: PSNR{psnr_scope(ctx)} {metrics['psnr']:.2f} dB{vs}"
    )
    ctx.results.append(Reconstruction("jpeg2000", decoded, seconds, metrics))
    raw = ctx.original.size
    return Section(
        "Same bytes, standard codec: JPEG 2000",
        paragraphs=[
            f"The sparse sample takes {wire:,} bytes on the wire ({packets} CCSDS packets with headers and "
            f"CRCs; the raw 8-bit frame is {raw:,} bytes). Given the same budget, JPEG 2000 (OpenJPEG through "
            f"imagecodecs, one quality layer, target {target:.1f} dB) codes the whole frame in {len(data):,} "
            "bytes. Its row in the metrics table below is marked jpeg2000. Unlike the sparse sample, a "
            "JPEG 2000 stream that loses a packet cannot be decoded past it; the benchmarks' link stage measures both "
            f"over the same lossy links ({source_ref('benchmarks/RESULTS.md', 'Downlink over a lossy link')})."
        ],
        figures=[
            Figure(f"JPEG 2000, {len(data):,} bytes: PSNR {metrics['psnr']:.2f} dB", decoded, "recon-jpeg2000"),
            Figure(
                f"JPEG 2000: error map (MAE {metrics['mae']:.4f})", error_map(ctx.original, decoded), "error-jpeg2000"
            ),
        ],
        columns=2,
    )


def _link_names(ctx: DemoContext) -> list[str]:
    from edgeae.resolve import LINKS_DIR, presets

    names = list(ctx.config.links) if ctx.config.links is not None else list(presets(LINKS_DIR))
    return sorted(names, key=lambda n: (LINK_ORDER.index(n) if n in LINK_ORDER else len(LINK_ORDER), n))


def _over_data(ctx: DemoContext, samples: np.ndarray, res: DownlinkResult) -> dict[str, Any]:
    """``res.report`` with its PSNR over the frame's pixels with data (:func:`edgeae.ground.outputs.psnr_fields`
    against the original with its no-data marked: what ``edgeae ground decode --original`` reports), not over
    every pixel. A frame lost or not rebuilt keeps its report."""
    rep = res.report
    if rep.get("frame_lost") or not rep.get("rebuilt", True) or "psnr" not in rep:
        return rep
    from edgeae.ground.outputs import psnr_fields
    from edgeae.ground.sources import as_float
    from edgeae.ground.validity import mark_no_data

    original = mark_no_data(as_float(samples, 8), psnr_valid(ctx))
    kept = {k: v for k, v in rep.items() if not k.startswith("psnr")}
    return {**kept, **psnr_fields(original, res.recon, res.known)}


def _no_data_note(ctx: DemoContext, results: dict[str, dict[str, Any]]) -> str:
    """What the section's paragraph says of a frame with no-data: the no-data samples travel and the ground, which
    cannot tell them from data, fills from them as ``edgeae ground decode`` does, so a link's figure is not the CAE
    row's above (which leaves them out); every PSNR over the pixels with data. "" for a frame without no-data."""
    if psnr_valid(ctx) is None:
        return ""
    if not measured(ctx):
        return f" No pixel of the frame holds data ({ctx.extra['left_out']}): {NOT_MEASURED}."
    scope = f" Each PSNR is{psnr_scope(ctx)}, as edgeae ground decode --original reports it."
    unused = int(ctx.extra.get("sampled_no_data", 0))
    if not unused:  # only guessed margins: the ground receives the samples the rebuilds above used
        return scope
    text = (
        f" The frame's {unused:,} sampled pixels that hold no data travel too (the flight software sends what it "
        "sampled) and arrive as counts of 0, which the ground cannot tell from data: it fills from them, as edgeae "
        "ground decode does, where the CAE row above leaves them out"
    )
    cae = next((r.metrics["psnr"] for r in ctx.results if r.method == "cae"), None)
    link = (results.get("perfect") or {}).get("psnr")
    if cae is not None and link is not None and math.isfinite(cae) and math.isfinite(link):
        how = "is the same as" if f"{link:.2f}" == f"{cae:.2f}" else f"sits {'below' if link < cae else 'above'}"
        text += f", so the perfect link's rebuild ({link:.2f} dB) {how} that row's ({cae:.2f} dB)"
    return text + "." + scope


def stage_downlink(ctx: DemoContext) -> Section | None:
    """The sampled frame as CCSDS packets over every link preset, rebuilt by the ground station."""
    from edgeae.ground.link import load_link
    from edgeae.ground.pipeline import downlink_frame
    from edgeae.reconstruct import reconstruct
    from edgeae.resolve import link_path, preset_summary

    predictor = ctx.extra.get("predictor")
    if predictor is None:  # the ground rebuilds with the CAE: without it there is nothing to send the frame for
        why = "the ground station rebuilds with the CAE and --methods has no cae" + (
            "; --links ignored" if ctx.config.links is not None else ""
        )
        ctx.say(f"downlink: not run ({why})")
        return Section("Downlink: not run", paragraphs=[f"Not run: {why}."])
    samples = _samples(ctx)
    cfg = ctx.config
    rows, figures, results = [], [], {}
    names = _link_names(ctx)
    for name in ctx.bar(names, "downlink", total=len(names), unit="link"):
        res = downlink_frame(
            samples,
            8,
            keep=cfg.keep,
            seed=cfg.seed,
            pattern=cfg.pattern,
            link=load_link(name),
            # what arrived, the no-data samples among them: the ground never sees the file's no-data mask
            fill=lambda img, known, notes=None: reconstruct(img, known, "cae", predictor),
            fill_name=_label(ctx, "cae"),
        )
        rep = _over_data(ctx, samples, res) if psnr_valid(ctx) is not None else res.report
        received = float(rep.get("pixel_fraction_received") or 0.0)  # null: a mask that kept no pixel
        lost = bool(rep.get("frame_lost"))
        rebuilt = not lost and rep.get("rebuilt", True)  # arrived but not rebuilt: a decode or fill error
        psnr = rep.get("psnr") if rebuilt else None  # a lost frame's mid-grey stand-in is not scored
        # nor kept in metrics.json (nor that of a frame with nothing to rebuild: review r12 of session 35)
        record = {k: v for k, v in rep.items() if k != "psnr"} if not rebuilt else rep
        results[name] = {"psnr": psnr, "pixels_received": received, "lost": lost, "packets": res.packets,
                         "report": record}  # fmt: skip
        what = preset_summary(link_path(name)).split(". ")[0].split(":")[0].rstrip(".")
        rows.append(
            {
                "link": name,
                "what it is": what,
                "packets sent": res.packets,
                "packets received": rep.get("packets_received"),
                "lost": rep.get("packets_lost"),
                "corrupt": rep.get("packets_corrupt"),
                "pixels received": f"{received:.1%}",
                "PSNR (dB)": f"{psnr:.2f}" if psnr is not None else "–",  # as on the console, not 4 decimals
            }
        )
        if lost:
            outcome = "frame lost: no ground rebuild"
        elif not rebuilt:
            outcome = f"frame arrived but was not rebuilt ({rep.get('error', 'no image')})"
        elif psnr is None:  # nothing to measure against (a lens cap), or a rebuild that could not be scored
            outcome = f"ground rebuild, {NOT_MEASURED if not measured(ctx) else 'PSNR not measured'}"
        else:
            outcome = f"ground rebuild PSNR {psnr:6.2f} dB"
        ctx.say(
            f"  {name:12s} {rep.get('packets_received', 0):4d}/{res.packets} packets, {received:6.1%} of the "
            f"sampled pixels received, {outcome}"
        )
        figures.append(
            Figure(f"{name}: pixels received ({received:.1%})", apply_mask(ctx.original, res.known), f"rx-{name}")
        )
        shown = f"PSNR {psnr:.2f} dB" if psnr is not None else "PSNR –"  # as in the table: no PSNR was measured
        caption = f"{name}: frame lost, nothing to rebuild" if lost else f"{name}: ground rebuild, {shown}"
        figures.append(Figure(caption, res.recon, f"ground-{name}"))
    ctx.extra["downlink"] = results
    raw = ctx.original.size
    title = "every link preset" if cfg.links is None else f"{len(names)} link{'s' if len(names) != 1 else ''}"
    return Section(
        f"Downlink: CCSDS packets over {title}, rebuilt on the ground",
        paragraphs=[
            f"The kept pixels travel as CCSDS space packets ({source_ref('docs/wire-format.md')}) through each "
            f"seeded link preset (edgeae links lists them; edgeae/ground/links/*.toml); raw frame: {raw:,} bytes. Each "
            "packet carries samples spread over its band of rows (interleaved, wire layout 2), so a lost packet "
            "thins the samples there instead of leaving a hole: the ground regenerates the mask from the seed "
            f"and rebuilds everything it did not receive with {_label(ctx, 'cae')}. Each pair: the pixels "
            "that arrived (black = not received or never sent), then the ground's rebuild."
            + _no_data_note(ctx, results)
        ],
        figures=figures,
        columns=4,
        tables=[rows],
    )
