"""The demo's verdict: which method won and by how much, where the CAE loses, and whether to fly it, computed
from the measured numbers (nothing written in advance); and how the kept fraction is said (:func:`keep_percent`)."""

from __future__ import annotations

import math

from edgeae._optional import source_ref
from edgeae.demo.context import ADAPTED, CROSS, LEARNED, DemoContext, _label
from edgeae.demo.rebuild import NOT_MEASURED, measured, psnr_scope
from edgeae.reconstruct import Reconstruction
from edgeae.report import Section


def keep_percent(keep: float) -> str:
    """The kept fraction as the title and conclusion say it: 10%, 0.4%, 10.5% (not rounded to 0% or 10%; the
    extremes as <0.01% and >99.99%, never 100% of a frame that lost pixels)."""
    pct = keep * 100
    if 0 < pct < 0.01:
        return "<0.01%"
    if 99.99 < pct < 100:
        return ">99.99%"
    return f"{pct:.4f}".rstrip("0").rstrip(".") + "%"


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _listed(ctx: DemoContext, methods: list[str]) -> str:
    """``methods`` named in one list: the adapted and cross-checked CAE as short phrases, last (their full labels hold
    a comma or end in a method's name: "cae (m) cross-checked with linear, linear and nearest" read as two lists)."""
    phrase = {ADAPTED: "the CAE adapted to the frame", CROSS: f"the CAE cross-checked with {ctx.config.cross_check}"}
    plain = [_label(ctx, m) for m in methods if m not in phrase]
    return _names(plain + [phrase[m] for m in (ADAPTED, CROSS) if m in methods])


def tied(a: float, b: float) -> bool:
    """Whether two finite PSNRs are a tie as printed: to two decimals they print the same, or their difference
    prints as 0.00 (30.006 and 30.004: 30.01 and 30.00, 0.00 apart). A margin is never said as "by 0.00 dB"."""
    return math.isfinite(a) and math.isfinite(b) and (round(a, 2) == round(b, 2) or f"{abs(a - b):.2f}" == "0.00")


def _reach(psnr: float) -> str:
    return "an exact rebuild (PSNR ∞)" if psnr == math.inf else f"{psnr:.2f} dB"


def _delta(a: float, b: float, what: str) -> str:
    """PSNR ``a`` set against ``b`` (``what``), either of them ∞ (an exact rebuild); a margin that prints as 0.00 is
    said as a tie (:func:`tied`), never "-0.00 dB over"."""
    if tied(a, b):
        return f"the same as {what}"
    if math.isfinite(a) and math.isfinite(b):
        return f"{a - b:+.2f} dB over {what}"
    if a == b:
        return f"the same as {what} (both exact)"
    return f"exact where {what} is not" if a == math.inf else f"not exact where {what} is"


def _rebuilds(psnr: float) -> str:
    return "rebuilds it exactly" if psnr == math.inf else f"reaches {psnr:.2f} dB"


def _cae_line(ctx: DemoContext, cae: Reconstruction, classical: list[Reconstruction]) -> str:
    """The CAE against the best classical method: PSNR (an exact rebuild, PSNR ∞, ahead of any other), then where
    it is behind and where ahead on the other measures and on time (a tie as printed is neither). "The CAE alone"
    where the page also has it adapted or cross-checked (a line of its own each): the best rebuild, named just
    before, may be one of those while the CAE alone loses."""
    top = max(classical, key=lambda r: r.metrics["psnr"])
    the_cae = "The CAE alone" if any(r.method in LEARNED[1:] for r in ctx.results) else "The CAE"
    cp, tp = cae.metrics["psnr"], top.metrics["psnr"]
    where, ahead = [], []  # the other measures compared: where the CAE is behind, where it is ahead
    for key, sign, label in (
        ("ssim", 1.0, "SSIM"),
        ("mae", -1.0, "MAE"),
        ("mae_destroyed", -1.0, "MAE on the pixels not sent"),
    ):
        vals = [r for r in classical if key in r.metrics and math.isfinite(r.metrics[key])]
        if not vals or not math.isfinite(cae.metrics.get(key, math.nan)):
            continue
        b = max(vals, key=lambda r: sign * r.metrics[key])
        theirs, ours = round(b.metrics[key], 4), round(cae.metrics[key], 4)
        if sign * theirs > sign * ours:
            where.append(f"{label} ({_label(ctx, b.method)} {theirs:.4f} vs {ours:.4f})")
        elif sign * theirs < sign * ours:
            ahead.append(f"{label} ({ours:.4f} vs {theirs:.4f} for {_label(ctx, b.method)})")
    # time: against the method it is measured against above, not the fastest
    timing = f"time ({cae.seconds:.2f} s vs {top.seconds:.2f} s for {_label(ctx, top.method)})"
    if round(cae.seconds, 2) > round(top.seconds, 2):
        where.append(timing)
    elif round(cae.seconds, 2) < round(top.seconds, 2):
        ahead.append(timing)
    parts = [f"it loses on {', '.join(where)}"] if where else []
    both = math.isfinite(cp) and math.isfinite(tp)
    if ahead:
        wins = cp > tp and not tied(cp, tp)
        parts.append(f"it {'also wins' if wins and not where else 'is ahead'} on {', '.join(ahead)}")
    if tied(cp, tp):  # a tie as printed: not a loss (or a win) by 0.00 dB
        head = f"{the_cae} matches the best classical method ({_label(ctx, top.method)}, {tp:.2f} dB PSNR)"
    elif both:
        head = (
            f"{the_cae} {'beats' if cp > tp else 'loses to'} the best classical method ({_label(ctx, top.method)}, "
            f"{tp:.2f} dB) by {abs(cp - tp):.2f} dB PSNR"
        )
    elif math.isfinite(cp):
        exact = [_label(ctx, r.method) for r in classical if r.metrics["psnr"] == math.inf]
        do = "does" if len(exact) == 1 else "do"
        head = f"{the_cae} does not rebuild the frame exactly ({cp:.2f} dB PSNR), where {_names(exact)} {do}"
    elif math.isfinite(tp):
        head = (
            f"{the_cae} rebuilds the frame exactly, where the best classical method ({_label(ctx, top.method)}, "
            f"{tp:.2f} dB) does not"
        )
    else:
        exact = [_label(ctx, r.method) for r in classical if r.metrics["psnr"] == math.inf]
        head = f"{the_cae} rebuilds the frame exactly, " + (
            f"as does the best classical method ({exact[0]})" if len(exact) == 1 else f"as do {_names(exact)}"
        )
    return head + (f"; {'; '.join(parts)}." if parts else ".")


def conclusion_lines(ctx: DemoContext) -> list[str]:
    """The verdict, computed from the measured numbers (nothing here is written in advance). A method that failed
    (PSNR NaN) is left out; one that rebuilt the frame exactly (PSNR ∞: a flat frame) ranks first and is said so."""
    lines = []
    recon = [
        r
        for r in ctx.results
        if r.method != "jpeg2000" and (math.isfinite(r.metrics["psnr"]) or r.metrics["psnr"] == math.inf)
    ]
    keep = keep_percent(ctx.config.keep)
    scope = psnr_scope(ctx)
    if not measured(ctx):  # a lens cap: rebuilt, as by edgeae reconstruct, with nothing to measure against
        lines.append(
            f"No pixel of the frame holds data ({ctx.extra['left_out']}): the rebuilds are shown but not measured "
            f"({NOT_MEASURED}, as edgeae reconstruct says), so no method is ranked."
        )
    if scope and recon:  # every figure below leaves the no-data out, as edgeae reconstruct does
        unused = int(ctx.extra.get("sampled_no_data", 0))
        lines.append(
            f"Every PSNR, SSIM and MAE here is{scope}, as edgeae reconstruct measures it"
            + (f"; the {unused:,} sampled pixels that hold no data are not used." if unused else ".")
        )
    if recon:
        ranked = sorted(recon, key=lambda r: -r.metrics["psnr"])  # stable: ties in the page's order
        exact = [r for r in ranked if r.metrics["psnr"] == math.inf]
        rest = ranked[len(exact) :]
        failed = [r.method for r in ctx.results if r.method != "jpeg2000" and math.isnan(r.metrics["psnr"])]
        if exact and not rest and len(exact) > 1:
            if failed:  # "every method" would count the one that failed among the exact ones
                what = _listed(ctx, failed)
                lines.append(
                    f"From {keep} of the pixels, every method but {what} rebuilds the frame exactly (PSNR ∞); the "
                    f"rebuild{'s' if len(failed) > 1 else ''} of {what} could not be scored."
                )
            else:
                lines.append(f"From {keep} of the pixels, every method rebuilds the frame exactly (PSNR ∞).")
        elif exact:
            others = (
                f"; the best of the others is {_label(ctx, rest[0].method)} at {rest[0].metrics['psnr']:.2f} dB PSNR"
                if rest
                else ""
            )
            lines.append(
                f"From {keep} of the pixels, {_listed(ctx, [r.method for r in exact])} "
                f"rebuild{'s' if len(exact) == 1 else ''} the frame exactly (PSNR ∞){others}."
            )
        else:
            best, second = ranked[0], (ranked[1] if len(ranked) > 1 else None)
            margin = ""
            if second:  # a tie as printed is not "0.00 dB ahead"
                top_db, next_db = best.metrics["psnr"], second.metrics["psnr"]
                by = "tied with" if tied(top_db, next_db) else f"{top_db - next_db:.2f} dB ahead of"
                margin = f", {by} {_label(ctx, second.method)}"
            lines.append(
                f"From {keep} of the pixels, the best rebuild is {_label(ctx, best.method)} at "
                f"{best.metrics['psnr']:.2f} dB PSNR{margin}."
            )
        cae = next((r for r in recon if r.method == "cae"), None)
        classical = [r for r in recon if r.method not in LEARNED]
        if cae and classical:
            lines.append(_cae_line(ctx, cae, classical))
        adapted = next((r for r in recon if r.method == ADAPTED), None)
        if adapted and cae and classical:
            top = max(classical, key=lambda r: r.metrics["psnr"])
            ap = adapted.metrics["psnr"]
            chosen = ctx.extra.get("adapt_report", {}).get("chosen_step", ctx.config.adapt)
            how = (
                f"{ctx.config.adapt} steps, the state after step {chosen} chosen on held-out samples"
                if chosen
                else f"{ctx.config.adapt} steps did not help the held-out samples, so the model as shipped is used"
            )
            lines.append(
                f"Adapted to this frame's own samples first ({how}; {adapted.seconds:.0f} s in "
                f"all), the CAE reaches {_reach(ap)}: {_delta(ap, cae.metrics['psnr'], 'the CAE as shipped')}, "
                f"{_delta(ap, top.metrics['psnr'], 'the best classical method')}."
            )
        crossed = next((r for r in recon if r.method == CROSS), None)
        report = ctx.extra.get("cross_check_report") or {}
        if crossed and cae and classical and report:
            top = max(classical, key=lambda r: r.metrics["psnr"])
            xp = crossed.metrics["psnr"]
            lines.append(
                f"Mixed with {ctx.config.cross_check} region by region, each region weighted by how well the two "
                f"predict received samples set aside ({crossed.seconds:.0f} s; mean CAE weight "
                f"{report['alpha_mean']:.2f}, at least half on {report['cae_share']:.0%} of the frame), the CAE "
                f"reaches {_reach(xp)}: {_delta(xp, cae.metrics['psnr'], 'the CAE alone')}, "
                f"{_delta(xp, top.metrics['psnr'], 'the best classical method')}."
            )
    codec = ctx.extra.get("codec")
    # JPEG 2000 is set against the best sparse rebuild on the page, whichever method made it
    sparse = max(recon, key=lambda r: r.metrics["psnr"]) if recon else None
    sparse_text = (
        "sparse pixels + CAE"
        if sparse is None or sparse.method == "cae"
        else f"sparse pixels + {_label(ctx, sparse.method)}"
    )
    if codec and sparse:
        jp, sp = codec["metrics"]["psnr"], sparse.metrics["psnr"]
        if math.isfinite(jp) and math.isfinite(sp):
            d = jp - sp
            than = (
                f"the same as {sparse_text}"
                if tied(jp, sp)
                else f"{abs(d):.2f} dB {'better' if d > 0 else 'worse'} than {sparse_text}"
            )
            lines.append(
                f"At the same {codec['budget']:,} bytes on a clean link, JPEG 2000 of the whole frame reaches "
                f"{jp:.2f} dB: {than} ({sp:.2f} dB)."
            )
        else:
            both = ", as does" if jp == sp else ";"
            lines.append(
                f"At the same {codec['budget']:,} bytes on a clean link, JPEG 2000 of the whole frame {_rebuilds(jp)}"
                f"{both} {sparse_text}" + ("." if jp == sp else f" {_rebuilds(sp)}.")
            )
    dl = ctx.extra.get("downlink") or {}
    lost = [k for k, v in dl.items() if v.get("lost", not v["pixels_received"])]
    valid = {k: v for k, v in dl.items() if v["psnr"] is not None and k not in lost}
    gone = f"the frame was lost entirely on {', '.join(lost)}" if lost else ""
    cost = 0.0
    if valid:
        ref_name = "perfect" if "perfect" in valid else max(valid, key=lambda k: valid[k]["psnr"])
        ref = valid[ref_name]
        ref_text = "the perfect link" if ref_name == "perfect" else f"the best link given ({ref_name})"
        worst_name, worst = min(valid.items(), key=lambda kv: kv[1]["psnr"])
        cost = max(0.0, ref["psnr"] - worst["psnr"])
        tail = f"; {gone}." if lost else "."
        if len(valid) == 1:
            lines.append(
                f"Over the one link {'that delivered the frame' if lost else 'given'} ({ref_name}), "
                f"{ref['pixels_received']:.1%} of the "
                f"sampled pixels arrive and the ground rebuild is {ref['psnr']:.2f} dB{tail}"
            )
        elif worst["psnr"] >= ref["psnr"] or f"{cost:.2f}" == "0.00":  # a cost that prints as 0.00: said so
            over = f"the {len(valid)} links that delivered the frame" if lost else f"the {len(valid)} links"
            what = "no packet loss changed the ground rebuild"
            if worst["psnr"] < ref["psnr"]:
                what = "packet loss changed the ground rebuild by under 0.01 dB"
            lines.append(f"Over {over}, {what}{tail}")
        else:
            lines.append(
                f"Over the links, the worst case is {worst_name}: {worst['pixels_received']:.1%} of the sampled "
                f"pixels arrive and the ground rebuild is {cost:.2f} dB below {ref_text} "
                f"({worst['psnr']:.2f} vs {ref['psnr']:.2f} dB)"
                + (f"; {gone}." if lost else "; the frame arrived on every link.")
            )
    elif lost:
        lines.append(f"{gone[0].upper()}{gone[1:]}: no link delivered it, so there is no ground rebuild to score.")
    an = ctx.extra.get("anomaly")
    if an and an["top"]:
        t = an["top"][0]
        lines.append(
            f"The anomaly scorer {an['model']} puts its highest score at ({t['x']}, {t['y']}), "
            f"{t['score'] / max(an['median'], 1e-12):.1f}× the median patch"
            + (f"; {an['flagged']} patches exceed its alarm threshold." if an["flagged"] is not None else ".")
        )
    if codec and sparse and dl:
        jp, sp = codec["metrics"]["psnr"], sparse.metrics["psnr"]
        links = []
        if len(valid) > 1:
            links.append(
                f"the worst link that delivered the frame cost the sparse rebuild {cost:.2f} dB"
                if cost >= 0.005
                else "no link that delivered the frame cost the sparse rebuild a measurable amount"
            )
        if lost:
            links.append(f"{gone} (no rebuild at all)")
        codec_loss = (
            "JPEG 2000 sent as one codestream cannot be decoded past a lost packet, but sent as independent tiles, one "
            "per packet with lost tiles concealed, it stayed ahead of sparse pixels + CAE up to 20% packet loss on the "
            "link benchmark's rover crops and fell behind at 30% (on average) and 40% (on every crop): what sparse "
            "pixels buy under loss is even degradation, and a higher PSNR only where more than a fifth of the packets "
            "are lost"
        )
        tie = tied(jp, sp)
        if jp > sp or jp == sp == math.inf or tie:
            if tie:
                better = f"matches {sparse_text} ({jp:.2f} dB)"
            elif math.isfinite(jp) and math.isfinite(sp):
                better = f"is {jp - sp:.2f} dB better than {sparse_text}"
            else:
                better = "rebuilds the frame exactly " + ("too" if jp == sp else f"and {sparse_text} does not")
            lines.append(
                f"Should you fly it? On a clean link, no: JPEG 2000 at the same bytes {better}. Sparse pixels degrade "
                "evenly where packets are lost without retransmission"
                + (f": here {' and '.join(links)}; {codec_loss}" if links else f"; {codec_loss}")
                + f" ({source_ref('benchmarks/RESULTS.md')}, its link stage)."
            )
        else:
            won = (
                f"{sparse_text} beat JPEG 2000 at equal bytes by {sp - jp:.2f} dB"
                if math.isfinite(sp)
                else f"{sparse_text} rebuilds the frame exactly at equal bytes; JPEG 2000 reaches {jp:.2f} dB"
            )
            lines.append(
                f"Should you fly it? On these numbers, yes: {won}" + (f"; {' and '.join(links)}." if links else ".")
            )
    return lines


def verdict_html(lines: list[str]) -> str:
    """The page's answer, under its intro: the conclusion's "Should you fly it?" line and how the CAE did against the
    best classical fill, with a link to the whole conclusion at the end of the page (until session 46 the answer was
    only there, ~9,000 px down). Empty without a conclusion."""
    picked = [x for x in lines if x.startswith(("Should you fly it?", "The CAE"))]
    if not picked:
        return ""
    items = "".join(f"<li>{_escape(x)}</li>" for x in picked)
    return (
        f"<div class='conclusion'><b>Verdict</b><ul>{items}</ul>"
        "<a href='#conclusion'>The whole conclusion, computed from the numbers below</a></div>"
    )


def stage_conclusion(ctx: DemoContext) -> Section | None:
    """Which method won and by how much, and where the CAE loses: computed from the numbers above."""
    lines = conclusion_lines(ctx)
    if not lines:
        return None
    for line in lines:
        ctx.say(f"conclusion: {line}")
    ctx.extra["conclusion"] = lines
    items = "".join(f"<li>{_escape(x)}</li>" for x in lines)
    return Section("Conclusion", html_before=f"<div class='conclusion'><ul>{items}</ul></div>")


def _escape(text: str) -> str:
    import html

    return html.escape(text)
