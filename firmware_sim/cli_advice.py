"""What ``firmware-sim`` advises against the mission's budgets: after ``run``, what to change for the frames that
went over the memory budget, missed their deadline or scored nothing for time (and the frames taken again); and
what ``check`` prints of a booted runtime (its models, memory at boot, the frame plan and the ladder level a
camera-size frame is predicted to run at, for memory and for time)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def advice_lines(
    summary: dict[str, Any], records: Sequence[dict[str, Any]], mission: Any, held_at_boot: int | None = None
) -> list[str]:
    """What to change when frames went over the memory budget, missed their deadline or scored nothing for time,
    from this boot's frame records: the measured peaks and times against the mission's budgets (``held_at_boot``:
    what the loaded models held over the boot baseline); first, the frames this boot took again because their file
    did not exist when first acquired."""
    out = retaken_lines(summary, records)
    # processed frames only: a dropped frame's peak (one read whole, then found invalid) is no frame to size for
    over = [r for r in records if (r.get("memory") or {}).get("over_budget") and r.get("status") == "processed"]
    if over:
        r = max(over, key=lambda r: int(r["memory"]["rss_growth_peak"]))
        peak, mib = int(r["memory"]["rss_growth_peak"]), 2**20
        boot = f"{held_at_boot / mib:.1f} MiB held by the loaded models, " if held_at_boot is not None else ""
        planned = f"{int(r['memory_plan']) / mib:.1f} MiB of planned frame buffers" if "memory_plan" in r else ""
        out.append(
            f"  {len(over)} frame(s) over the memory budget; frame {r['frame_id']} peaked at {peak / mib:.1f} MiB over "
            f"boot ({boot}{planned or 'no frame buffers'}, the rest the interpreters' working memory and "
            f"temporaries): raise [budget] memory_bytes to at least {-(-peak // mib)} MiB"
            + fewer_threads(mission.runtime.threads)
        )
    done = [r for r in records if r.get("status") == "processed"]
    out += late_lines([r for r in done if (r.get("deadline") or {}).get("status") == "late"], mission)
    out += starved_lines([r for r in done if "predicted_nominal_ms" in r and "memory_degraded" not in r["flags"]],
                         mission)  # fmt: skip
    return out


def fewer_threads(threads: int) -> str:
    """The advice to lower ``[runtime] threads`` beside a memory one, where it can help: above one thread (until
    session 36 it was given at one thread too)."""
    return f" or lower [runtime] threads (now {threads})" if threads > 1 else ""


def _lateness(r: dict[str, Any]) -> float:
    return max(0.0, float(r.get("lateness_ms") or 0.0))


def _deadline(ms: float) -> str:
    """A frame budget as given: ``3000 ms``, ``0.001 ms`` (until session 36 ``0 ms``)."""
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.3g} ms"


def _ms(ms: float) -> str:
    """A time left as given: ``1,020 ms``, ``0.001 ms`` (until review r7 of session 36 ``0 ms``); a negative one
    without an exponent (until review r13 ``-2.23e+03 ms``)."""
    return f"{ms:.3g} ms" if 0 < ms < 10 else f"{ms:,.0f} ms"


def _also_late(slow: Sequence[dict[str, Any]], safety: float) -> str:
    """The lateness of slow frames that also arrived late, which the ``frame_ms`` advice (sized from their work)
    does not cover (until review r7 of session 36 such a frame was told a frame_ms that would not have saved it)."""
    delayed = [r for r in slow if _lateness(r) > 0]
    if not delayed:
        return ""
    r = max(delayed, key=_lateness)
    late, total = _lateness(r), float(r["timing_ms"]["total"])
    return (
        f"; frame {r['frame_id']} also arrived {late:.0f} ms late, so it needed about "
        f"{_round_up((total + late) / safety)} ms with that delay ({len(delayed)} slow frame(s) arrived late: see "
        "what delays the frames)"
    )


def late_lines(late: Sequence[dict[str, Any]], mission: Any) -> list[str]:
    """What to change for the frames that missed their deadline: ``frame_ms`` for those whose work needs more than
    the budget (their time over ``safety``); for those that would have met it had they come on time, that they
    arrived late, raising ``frame_ms`` being no help (until session 36 a frame 2999 ms late on a 3000 ms budget
    was told to "raise [budget] frame_ms to about 440 ms")."""
    budget, safety = mission.budget.frame_ms, mission.budget.safety
    slow = [r for r in late if float(r["timing_ms"]["total"]) / safety > budget]
    came_late = [r for r in late if r not in slow]
    out = []
    if slow:
        slowest = max(float(r["timing_ms"]["total"]) for r in slow)
        want = _round_up(slowest / safety)
        out.append(
            f"  {len(slow)} frame(s) missed the {_deadline(budget)} deadline (the slowest took {slowest:.0f} ms): "
            f"raise [budget] frame_ms to about {want} ms (--frame-ms {want}), or lower the work per frame"
            + _also_late(slow, safety)
        )
    if came_late:
        r = max(came_late, key=_lateness)
        left = max(0.0, budget - _lateness(r))
        out.append(
            f"  {len(came_late)} frame(s) missed the {_deadline(budget)} deadline because they arrived late: frame "
            f"{r['frame_id']} arrived {_lateness(r):.0f} ms late, leaving {left:.0f} ms, and took "
            f"{float(r['timing_ms']['total']):.0f} ms, within the budget had it come on time (raising [budget] "
            "frame_ms would not help them: see what delays the frames)"
        )
    return out


def starved_lines(starved: Sequence[dict[str, Any]], mission: Any) -> list[str]:
    """What to change for the frames that ran sparse_only for time (no patch scored): ``frame_ms`` (or the stride)
    where scoring the frame needs more than the budget; where it fits the budget but not the time left after the
    frame arrived late, that lateness (until session 36 "1,020 ms of the 1 ms available: raise [budget] frame_ms to
    about 1300 ms" on a 3000 ms budget)."""
    budget, safety, an = mission.budget.frame_ms, mission.budget.safety, mission.anomaly
    slow = [r for r in starved if _round_up(float(r["predicted_nominal_ms"]) / safety) > budget]
    came_late = [r for r in starved if r not in slow]
    out = []
    if slow:
        r = max(slow, key=lambda r: float(r["predicted_nominal_ms"]))
        pred, grid = float(r["predicted_nominal_ms"]), int(r["patches"]["grid"])
        avail = max(0.0, float(r["available_ms"]))  # 0 ms for a frame later than its whole budget
        out.append(
            f"  {len(slow)} frame(s) ran sparse_only, no patch scored: scoring frame {r['frame_id']}'s {grid:,} "
            f"patches ([anomaly] stride = {an.stride}) was predicted to take {pred:,.0f} ms of the "
            f"{_ms(avail)} available: raise [budget] frame_ms to about {_round_up(pred / safety)} ms"
            + (f" or [anomaly] stride (up to patch = {an.patch})" if grid and an.stride < an.patch else "")
        )
    if came_late:
        r = max(came_late, key=_lateness)
        pred, avail = float(r["predicted_nominal_ms"]), max(0.0, float(r["available_ms"]))  # later than its budget
        out.append(
            f"  {len(came_late)} frame(s) ran sparse_only, no patch scored, because they arrived late: scoring frame "
            f"{r['frame_id']} was predicted to take {pred:,.0f} ms of the {_ms(avail)} left after it arrived "
            f"{_lateness(r):.0f} ms late: on time it fits the {_deadline(budget)} budget (raising [budget] frame_ms "
            "would not help them)"
        )
    return out


def retaken_lines(summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[str]:
    """One line per frame of this boot (``records``) that took again a file an earlier boot's frame left dropped
    because it did not exist when first acquired, or because the board's memory could not hold it
    (``memory_unavailable``, its ledger entry marked ``retaken_as``, the summary's outcome ``retaken``)
    (:func:`.state.frames_to_take`). A frame is paired with the most recent such drop of its source not taken
    again since by a frame of a later boot (a ledger row's ``boot``); a frame of this boot is never one, so a source
    given twice in one run is no retake (until review r10 of session 36 the oldest drop was named, and a repeat
    within one run was called taken again)."""
    from .state import missing_when_acquired

    this_boot = {r.get("frame_id") for r in records}
    earlier: dict[Any, list[tuple[Any, str]]] = {}  # source -> (boot, why) of each earlier drop not taken again since
    out: list[tuple[int, str]] = []
    for e in sorted(summary.get("ledger") or [], key=lambda e: int(e.get("frame_id") or 0)):
        fid, src, boot = e.get("frame_id"), e.get("source"), e.get("boot")
        if fid in this_boot:
            if earlier.get(src):
                out.append((int(fid), f"  frame {fid} taken again: {earlier[src].pop()[1]}: {src}"))
            continue
        # an earlier boot took the source again: the most recent drop of a boot before it (an entry of an older
        # run records no boot: the most recent drop; until review r16 of session 36 a frame of the same boot too)
        drops = [i for i, (b, _) in enumerate(earlier.get(src) or []) if boot is None or b is None or b < boot]
        if drops:
            del earlier[src][drops[-1]]
        if e.get("outcome") == "retaken":
            if e.get("retaken_as") in this_boot:
                why = f"the board's memory could not hold it (frame {fid}, dropped {e.get('code')})"
                out.append((int(e["retaken_as"]), f"  frame {e['retaken_as']} taken again: {why}: {src}"))
            continue
        if missing_when_acquired(e):
            why = f"it did not exist when first acquired (frame {fid}, dropped unreadable)"
        elif e.get("outcome") == "dropped" and e.get("code") == "memory_unavailable":
            why = f"the board's memory could not hold it (frame {fid}, dropped memory_unavailable)"
        else:
            continue
        earlier.setdefault(src, []).append((boot, why))
    return [line for _, line in sorted(out)]


def _round_up(ms: float) -> int:
    """``ms`` rounded up to 2 significant digits (advice, not a measurement)."""
    if ms <= 0:
        return 0
    step = 10 ** max(0, len(str(int(ms))) - 2)
    return int(-(-ms // step) * step)


def check_lines(rt: Any) -> list[str]:
    """What ``firmware-sim check`` prints of a booted runtime: models, memory at boot, the frame plan."""
    from .boot_memory import frame_plans
    from .frame_intake import sparse_packet_estimate

    m, cam, mib = rt.m, rt.m.camera, 2**20
    roles = [r["role"] for r in rt.models.refused]
    refused = f"{' and '.join(roles)} model{'s' if len(roles) > 1 else ''}"
    state = f"boots degraded, without its {refused} (exit status 1)" if roles else "boots"
    out = [f"mission {m.name} ({m.source_path}): {state}"]
    for role, guard in (("anomaly", rt.anomaly), ("reconstruction", rt.recon)):
        if guard is not None:
            out.append(f"  {role} model: {guard.path} ({guard.nbytes:,} B, SHA-256 from {guard.hash_source})")
    if not m.anomaly.model:
        out.append("  no [anomaly] model: sparse pixels only")
    for r in rt.models.refused:
        out.append(f"WARNING: the {r['role']} model would be refused at boot, so {r['consequence']}: {r['detail']}")
    for w in rt.boot_warnings:
        out.append(f"WARNING: {w}")
    held = max(0, rt.rss_loaded - rt.rss_boot)
    out.append(
        f"  memory: the loaded models hold {held / mib:.1f} MiB (RSS growth over the boot baseline) of the "
        f"{m.budget.memory_bytes / mib:,.0f} MiB budget ([runtime] threads = {m.runtime.threads})"
    )
    if cam.width and (cam.height or cam.source == "strips"):
        size = f"{cam.height or 'any'} x {cam.width} px (height x width)"
        for types, plan, file_note in frame_plans(rt, cam.width, cam.height):
            items = ", ".join(f"{k} {v:,}" for k, v in plan.items)
            decode = f"; decoding it whole peaks at {plan.decode:,} B, {file_note}" * bool(plan.decode)
            of = f"{types}: a {size} frame's" if types else f"a {size} frame's"
            out.append(f"  {of} buffers: {plan.total:,} B ({items}{decode})")
            out += _memory_level_lines(rt, plan, held, f"{types}: " if types else "")
            if types and getattr(rt, "frame_types", None) is None:
                out.append("  (held with every frame type's decoder loaded: a run loads only its frames' decoders)")
        if cam.height:
            n = sparse_packet_estimate(m, cam.width, cam.height)
            out.append(f"  sparse pixels of a full frame: about {n:,} packets of the 65,535 a product can have")
        else:
            out.append("  any frame height: each frame's packets are checked when it arrives")
    else:
        out.append("  any frame size: each frame's buffers and packets are checked when it arrives")
    scoring = f"; scoring measured at boot: {rt.cost.ms_per_patch:.3g} ms per patch" if rt.scorer is not None else ""
    out.append(f"  frame deadline {m.budget.frame_ms:,.0f} ms{scoring}")
    if cam.width and cam.height:
        out += _time_lines(rt)
    return out


def _memory_level_lines(rt: Any, plan: Any, held: int, types: str = "") -> list[str]:
    """The ladder level a camera-size frame's buffers fit at (what the loaded models hold + what the loop's heap
    grows by over the first frames, :data:`.boot_memory.HELD_RISE`, + its plan at that level, as the frame check
    computes it: against the smaller of the budget and what this process can still get,
    :func:`.memory_room.room_cap`), or a WARNING that every such frame would be dropped; ``types``: the frame types
    the plan is for ("the PNG, JPEG or PNM frames (decoded whole): "). Until session 36 the budget alone: 'fits at
    nominal' under a WARNING that the board gives less than a frame needs; until session 40 (fixer h1) without the
    heap's rise, so a budget it advised for nominal or ``sparse_only`` flew the first frame and dropped the next."""
    from . import memory_room
    from .boot_memory import HELD_RISE
    from .budget import LADDER
    from .frame_intake import biggest_buffers, level_plan, mib_up

    budget, mib = rt.m.budget.memory_bytes, 2**20
    capped = memory_room.room_cap(rt.m, held)
    room = capped[1] if capped is not None and capped[0] < budget else None  # the board's memory is the limit
    limit = budget if room is None or capped is None else capped[0]
    more = f"give the process more memory (this process can get only {room.text} more)" if room is not None else ""
    held += HELD_RISE  # what a frame after the first starts from
    rise = f" (with {HELD_RISE / mib:.1f} MiB the loop's heap grows by over the first frames)"
    for level in LADDER:
        need = held + level_plan(plan, level).total
        if need <= limit:
            if level.index == 0:
                return [f"  {types}held + buffers: {need / mib:.1f} MiB{rise}: fits at nominal"]
            nominal = held + plan.total
            raise_it = f"raise [budget] memory_bytes to at least {mib_up(nominal)} MiB"
            return [
                f"  {types}held + buffers: {nominal / mib:.1f} MiB{rise}: does not fit at nominal; frames of this size "
                f"run at {level.name} ({need / mib:.1f} MiB) for memory: "
                f"{more if nominal <= budget and more else raise_it} for nominal, or shrink the biggest buffers: "
                f"{biggest_buffers(rt.m, plan, 2)}"
            ]
    least = held + level_plan(plan, LADDER[-1]).total
    # told nothing (check without --frame-type): held with every decoder loaded, more than a run of one type holds
    guess = types and getattr(rt, "frame_types", None) is None
    run_figure = " (held with every decoder loaded: check --frame-type .jpg, or the run's type, for the run's figure)"
    if room is None and (least - HELD_RISE <= limit or guess):  # the first frame fits (no rise yet), or may
        return [
            f"WARNING: {types}held + buffers: {least / mib:.1f} MiB{rise} even at sparse_only, over the "
            f"{budget / mib:.0f} MiB budget: frames of this size "
            f"{'may be dropped' if guess else 'after the first may be dropped'} (memory_budget); raise [budget] "
            f"memory_bytes to at least {mib_up(least)} MiB{run_figure * bool(guess)}"
        ]
    if room is not None and least <= budget:
        return [
            f"WARNING: {types}held + buffers: {least / mib:.1f} MiB{rise} even at sparse_only, over what this process "
            f"can get: every frame of this size would be dropped (memory_unavailable); {more}"
        ]
    return [
        f"WARNING: {types}held + buffers: {least / mib:.1f} MiB{rise} even at sparse_only, over the "
        f"{budget / mib:.0f} MiB budget: every frame of this size would be dropped (memory_budget); raise [budget] "
        f"memory_bytes to at least {mib_up(least)} MiB"
    ]


def _time_lines(rt: Any) -> list[str]:
    """The predicted time of a camera-size frame at each ladder level against the deadline, and the level that
    meets it (a warning, not a failure: the per-pixel costs are defaults until frames are measured, timings vary)."""
    from .budget import LADDER, patch_grid

    m, cam = rt.m, rt.m.camera
    mpix = cam.height * cam.width / 1e6
    grid = (patch_grid(m, cam.width, cam.height) or 0) if rt.scorer is not None else 0
    recon = rt.recon is not None
    target = m.budget.safety * m.budget.frame_ms
    times = [(lv, rt.cost.predict(lv, mpix, grid, recon, m.sampling.keep)) for lv in LADDER]
    listed = ", ".join(f"{lv.name} {ms:,.0f}" for lv, ms in times)
    out = [
        f"  predicted ms of a full frame ({grid:,} patches) per level: {listed} (per-patch cost measured at boot, "
        f"per-pixel costs defaults until frames are measured), against safety x deadline = {target:,.0f} ms"
    ]
    meets = next((lv for lv, ms in times if ms <= target), None)
    if meets is None:
        out.append(
            f"WARNING: no level is predicted to meet the {m.budget.frame_ms:,.0f} ms deadline: frames run "
            f"sparse_only and late; raise [budget] frame_ms to about {_round_up(times[-1][1] / m.budget.safety)} ms"
        )
    elif meets.index == 0:
        out.append("  time: frames of this size are predicted to run at nominal")
    elif meets.score_every == 0 and grid:
        out.append(
            f"WARNING: only sparse_only is predicted to meet the deadline: no patch of a full frame would be scored; "
            f"raise [budget] frame_ms to about {_round_up(times[0][1] / m.budget.safety)} ms for nominal"
        )
    else:
        out.append(
            f"  time: frames of this size are predicted to run at {meets.name} (nominal needs about "
            f"{_round_up(times[0][1] / m.budget.safety)} ms)"
        )
    return out
