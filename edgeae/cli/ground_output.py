"""What ``edgeae ground`` prints of a session report, its exit status, and what ``stream.json`` says of several
captures (the console side of :mod:`edgeae.cli.ground`)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

REFUSED = ("session_limit", "source_limit", "product_limit")
"""Rejection reasons that are the station's own --limit, not damage on the link."""


def counts_text(counts: dict) -> str:
    """``{"crc": 1, "length": 2}`` as ``crc 1, length 2`` ("none" when empty): what a console line prints."""
    return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items()) or "none"


def print_report(report: dict) -> None:
    st = report["stream"]
    print(
        f"{st['packets_received']} packets received, {st['packets_accepted']} accepted, "
        f"{st['duplicates']} duplicates"
        + (f", {st['conflicting']:,} conflicting" if st.get("conflicting") else "")
        + f", rejected: {counts_text(st['rejected'])}"
        + (f", {st['idle_packets']:,} idle (fill) packets" if st.get("idle_packets") else "")
    )
    refused = {k: v for k, v in st["rejected"].items() if k in REFUSED}
    if refused:
        # only serve's receiver charges what its byte caps drop to sequence counts (not_recorded); packets the
        # parser refuses (decode's caps, product_limit, max_session_packets) are in no count
        charged = any(q.get("not_recorded") for q in st["sequence"].values())
        where = (
            "they count as lost (in the products below, or for a product none of whose packets were kept, in "
            "stream.json sequence.<kind>.missing)"
            if charged
            else "the products below count them as lost (a product none of whose packets were kept has no line)"
        )
        print(
            f"WARNING: {sum(refused.values()):,} packets refused by this station's limits ({counts_text(refused)}): "
            f"{where}; raise the limit with --limit to keep them"
        )
    if st["rejected"].get("prng"):
        from edgeae.masks import PRNG_VERSION

        print(
            f"WARNING: {st['rejected']['prng']:,} sparse packets name a mask PRNG version other than the "
            f"{PRNG_VERSION} this ground implements: their masks cannot be regenerated (a newer sender? update edgeae)"
        )
    mixed = {kind: q["count_conflicts"] for kind, q in st["sequence"].items() if q.get("count_conflicts")}
    if mixed:
        print(
            f"WARNING: {sum(mixed.values()):,} packets came under sequence counts already received with other "
            f"contents ({counts_text(mixed)}): two streams are mixed in one file or session, and frames under one id "
            "may be set aside; decode each sender's packets on its own"
        )
    if st.get("conflicting"):
        print(
            f"WARNING: {st['conflicting']:,} packets came under a part of a product already received, with other "
            "contents (not copies: a second product sent under the same id, or two streams mixed): the first piece "
            "of each part was kept, the others set aside (packets_conflicting on each product's line and report)"
        )
    foreign = st.get("rejected_apids")
    if foreign:
        shown = ", ".join(f"{a}: {n:,}" for a, n in list(foreign.items())[:8]) + (", ..." if len(foreign) > 8 else "")
        print(
            f"{sum(foreign.values()):,} valid packets under APIDs this ground does not decode ({shown}): another "
            "instrument's or another format's (stream.json rejected_apids)"
        )
    if st.get("bytes_outside_packets"):
        print(f"{st['bytes_outside_packets']:,} bytes formed no valid packet (noise or damage) and were skipped")
    gone = st.get("patches_announced_not_received")
    if gone:
        print(
            f"{gone['count']:,} anomaly patch(es) announced in received telemetry have no packet in this session "
            "(sent in an earlier pass, lost whole, not yet sent, or refused on board: the flight's telemetry.jsonl "
            "has an 'evicted' or 'queue_refused' event for each product refused or evicted on board, its "
            "queue/index.json the products still queued): stream.json patches_announced_not_received"
        )
    if st.get("products_failed"):
        print(f"products not rebuilt: {counts_text(st['products_failed'])}")
    by_fill = st.get("frames_by_fill") or {}
    if len(by_fill) > 1:  # one fill: each frame's line says it
        print("frames rebuilt by fill: " + ", ".join(f"{name} {n:,}" for name, n in by_fill.items()))
    if st.get("frames_not_received"):  # their sample packets were all lost: nothing to rebuild, not a failure
        print(
            f"{st['frames_not_received']:,} frame(s) not received: none of their packets that arrived carried a "
            "sample, and no anomaly patch of theirs could be pasted (no image written)"
        )
    if not report["products"]:
        print("no product could be assembled from these packets")
    left_out = _patches_left_out(report["products"])
    for name, rep in report["products"].items():
        line = f"{name}: {rep.get('packets_received', '?')}/{rep.get('packets_expected', '?')} packets"
        line += f", {rep.get('packets_lost', '?')} lost, {rep.get('packets_corrupt', '?')} corrupt"
        if rep.get("packets_refused"):
            line += f", {rep['packets_refused']} refused (intact, but headers or samples this ground refuses)"
        if rep.get("packets_inconsistent"):
            line += (
                f", {rep['packets_inconsistent']} with other frame headers set aside (a second frame with the same "
                "id, or damaged headers)"
            )
        if rep.get("packets_conflicting"):
            line += f", {rep['packets_conflicting']} with other contents under a part already received set aside"
        if rep.get("pieces_bad"):
            line += f", {rep['pieces_bad']} pieces that did not fit the sample mask dropped"
        if "pixel_fraction_received" in rep:
            frac = rep["pixel_fraction_received"]
            line += ", no pixels sampled" if frac is None else f", {100 * frac:.1f}% of sampled pixels"
        if rep.get("reconstruction") and not ("fill_fallback" in rep or "fill_auto" in rep):  # those say it
            line += f", filled with {rep['reconstruction']}"
        if rep.get("psnr") is not None:
            line += f", PSNR {rep['psnr']:.2f} dB" + (f" ({rep['psnr_note']})" if "psnr_note" in rep else "")
            if not str(rep.get("psnr_over", "all")).startswith("all"):  # no-data left out, as reconstruct does
                line += f" over {rep['psnr_over']}"
            if "original_demosaiced" in rep:  # a raw --original demosaiced as the frame's telemetry says (s46)
                line += f", the original demosaiced {rep['original_demosaiced'].split(':')[0]} as on board"
        elif "psnr_error" in rep:
            line += f", no PSNR: {rep['psnr_error']}"
        if "fill_fallback" in rep:
            line += f" ({rep['fill_fallback']})"
        if "fill_auto" in rep:  # --method auto could not afford its best fill for this frame
            line += f" ({rep['fill_auto']})"
        if rep.get("image_note"):  # a latent frame missing values (lost, NaN or infinite): partial or unusable
            line += f" ({rep['image_note']})"
        elif rep.get("latent_nonfinite"):
            line += f", {rep['latent_nonfinite']:,} latent values NaN or infinite (taken as not received)"
        if rep.get("pieces_overlapping"):
            line += f", {rep['pieces_overlapping']} pieces overlapping an earlier part refused"
        if rep.get("elements_not_covered"):
            line += f", {rep['elements_not_covered']:,} elements no received piece covers"
        if rep.get("patches_used") or rep.get("patches_not_used"):
            line += f", {rep.get('patches_used', 0)} patches pasted"
            if rep.get("patches_not_used"):
                line += f", {len(rep['patches_not_used'])} not used (see {name}.json)"
        if name in left_out and "error" not in rep:
            line += f" (not used in its frame: {left_out[name]})"
        if rep.get("telemetry_nonfinite"):
            line += f", non-finite telemetry written as null: {', '.join(rep['telemetry_nonfinite'][:8])}"
        if "error" in rep:
            line += f" ({rep['error']})"
        print(line)


def _patches_left_out(products: dict) -> dict[str, str]:
    """Patch product name -> why its frame's rebuild left it out (from the sparse frames' ``patches_not_used``)."""
    out: dict[str, str] = {}
    for rep in products.values():
        if rep.get("kind") != "sparse":
            continue
        for item in rep.get("patches_not_used") or ():
            if isinstance(item, dict) and "patch" in item:
                out[f"patch_{rep.get('frame_id')}_{item['patch']}"] = str(item.get("reason", "?"))
    return out


def file_list(files: list[str]) -> str:
    return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def capture_list(caps: list, out: Path) -> list[dict]:
    """What ``stream.json`` says of each capture: its files, folder, packets and why it is one of its own."""
    return [
        {
            "capture": k,
            "files": cap.files,
            "out": str(Path(cap.station.out).relative_to(out)) if cap.station.out is not None else None,
            "packets_received": cap.station.receiver.received,
            "reason": cap.reason or None,
        }
        for k, cap in enumerate(caps, 1)
    ]


def exit_status(report: dict) -> int:
    """1 when a product could not be rebuilt, nothing was assembled, or the station's own limits refused
    packets (errors for a script to see); packets lost on the link are not (they are accounted per product)."""
    st = report["stream"]
    refused = any(k in REFUSED for k in st["rejected"])
    return 1 if st.get("products_failed") or not report["products"] or refused else 0


def serve_stop(
    serve: dict, idle_timeout: float, max_time: float, out: Path, signal_name: str | None = None
) -> tuple[str, int | None]:
    """The console line saying why ``ground serve`` stopped (stream.json ``serve.stopped``), and the exit status that
    reason sets (None: that of :func:`exit_status`). A pass cut by ``--max-time`` before the end-of-transmission
    packet is exit status 1: packets were still arriving (else ``--idle-timeout`` would have stopped it first), so
    the pass is likely incomplete; ``--idle-timeout`` is how a sender that sends no end-of-transmission packet ends.
    A receiver process that failed, ended without a status or was stopped by a signal to it alone is exit status 1
    too (reception ended before the pass did). ``signal_name`` (stream.json ``stream.interrupted``) names SIGTERM in
    an interruption's line, as every other command's does (Ctrl-C's SIGINT reads plain "interrupted")."""
    why, secs, n = serve["stopped"], serve.get("seconds", "?"), serve.get("datagrams", 0)
    stopped_by = "interrupted (SIGTERM)" if signal_name == "SIGTERM" else "interrupted"
    if why == "end_of_transmission":
        return f"stopped: end-of-transmission packet received after {secs} s ({n:,} datagrams)", None
    if why == "idle_timeout":
        if not n:
            return f"stopped: no packet arrived in {idle_timeout:g} s (--idle-timeout)", None
        return (
            f"stopped: no packet for {idle_timeout:g} s (--idle-timeout) after {n:,} datagrams and no "
            "end-of-transmission packet: the pass may be incomplete (a sender that sends none, or one that stopped or "
            "was cut off)",
            None,
        )
    if why == "max_time":
        return (
            f"WARNING: stopped at --max-time ({max_time:g} s) before the end-of-transmission packet, after {n:,} "
            "datagrams: the pass may be incomplete (everything received is decoded; exit status 1; a longer pass "
            "needs a larger --max-time)",
            1,
        )
    reception = serve.get("reception_stopped", "interrupted")
    if why == "interrupted" and reception != "interrupted":  # a signal during the final decode, after reception
        return (
            f"{stopped_by} during the final decode (reception had stopped: {reception}): the products not decoded are "
            f"named in {out / 'stream.json'}; to decode the whole pass run  edgeae ground decode "
            f"{out / 'received.bin'} --out NEW_FOLDER",
            130,
        )
    if why == "interrupted":
        return f"{stopped_by}: everything received so far is in {out} (stream.json, received.bin)", 130
    if why.startswith("error") and why == reception:  # the receiver process's own error (a full disk)
        return (
            f"stopped: the receiver process failed ({why.removeprefix('error: ')}) after {n:,} datagrams: nothing "
            f"sent after that was recorded, the pass is incomplete; everything recorded before is decoded, in {out} "
            "(exit status 1)",
            1,
        )
    if why.startswith("error"):
        return f"stopped: the receive loop failed ({why}); everything received so far is in {out}", 1
    if why == "receiver_failed":
        return (
            f"stopped: the receiver process ended without a status (killed?) after {n:,} datagrams: the pass may be "
            f"incomplete; everything it recorded is decoded, in {out} (exit status 1)",
            1,
        )
    if why == "receiver_interrupted":
        sig = serve.get("receiver_signal") or "a signal"
        return (
            f"WARNING: the receiver process was stopped by {sig} (sent to it, not to this server) after {n:,} "
            f"datagrams: the pass may be incomplete; everything received is decoded, in {out} (exit status 1)",
            1,
        )
    return f"stopped: {why}; everything received is in {out} (stream.json, received.bin)", None


class PassStatus:
    """A line on stderr every ``every`` seconds while ``ground serve`` runs, when something changed since the last:
    datagrams parsed, products open and decoded so far (nothing is printed between "listening on" and the end
    otherwise). ``start`` and ``stop`` it around the session; ``--no-progress`` leaves it unstarted."""

    def __init__(self, gs, every: float = 10.0, stream=None) -> None:
        self.gs, self.every, self.stream = gs, every, stream
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def line(self) -> str:
        with self.gs.lock:  # the parser adds packets and products in another thread
            received, products = self.gs.receiver.received, len(self.gs.receiver.products)
        return f"serve: {received:,} packets so far, {products:,} products, {len(self.gs.reports):,} decoded"

    def _run(self) -> None:
        last = ""
        while not self._stop.wait(self.every):
            line = self.line()
            if line != last:
                print(line, file=self.stream or sys.stderr, flush=True)
                last = line

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgeae-serve-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
