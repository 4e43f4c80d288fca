"""Session-36 fixer i5 in the flight report (review s36 r16 #5, #7): the verdict and the ledger heading ignored
attempts taken again, their rows had no colour and took the places of real drops among the earlier rows shown; an
index written before review r10 showed a negative loss for an item that sent more bytes than were queued."""

from __future__ import annotations

from edgeae.firmware_sim import report


def _summary(n_retaken: int, n_after: int) -> dict:
    ledger = [
        {"frame_id": i, "source": f"/a/f{i}.png", "outcome": "retaken", "code": "memory_unavailable", "reason": "x"}
        for i in range(n_retaken)
    ]
    ledger.append({"frame_id": n_retaken, "source": "/a/d.png", "outcome": "dropped", "code": "unreadable"})
    ledger += [
        {"frame_id": n_retaken + 1 + i, "source": f"/a/g{i}.png", "outcome": "downlinked", "code": "", "reason": ""}
        for i in range(n_after)
    ]
    n = len(ledger) - n_retaken
    frames = {"acquired": n, "downlinked": n_after, "queued": 0, "dropped": 1, "retaken": n_retaken}
    return {"frames": frames, "ledger": ledger}


def test_the_verdict_names_the_attempts_taken_again() -> None:
    text = report._verdict(_summary(2, 3))
    assert ">4 frame(s) acquired (2 earlier attempt(s) dropped memory_unavailable, taken again): 3 downlinked" in text
    assert report.OUTCOME_COLOURS["retaken"] != "#222"


def test_retaken_rows_do_not_crowd_out_earlier_drops() -> None:
    """60 retaken rows before one real drop and 100 later frames: the drop was left out of the earlier rows shown."""
    html = report._ledger(_summary(60, report.ROWS_LAST))
    assert "/a/d.png" in html and "/a/f0.png" not in html


def test_an_older_index_with_more_sent_than_queued_shows_no_negative_loss() -> None:
    it = {"wire_bytes": 720, "sent_bytes": 976, "sent_packets": 4, "n_packets": 3}
    text = report._lost_bytes(it)
    assert text.startswith("0 (of 720;") and "256 B more sent than queued" in text and "-" not in text


def test_the_ledger_heading_names_the_attempts_taken_again(tmp_path) -> None:
    from edgeae.firmware_sim.telemetry import write_summary

    s = _summary(2, 3)
    write_summary(tmp_path / "summary.json", {**s, "mission": "m"})
    html = report.write_report(tmp_path).read_text()
    assert "<h2>Ledger: every frame downlinked, queued or dropped, and the attempts taken again</h2>" in html
