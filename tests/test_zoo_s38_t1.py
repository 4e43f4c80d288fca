"""Session 38, fixer t1: the zoo entry of a user-installed model says every command of a resumed run, the first
and then each resume (``FIRST; then: SECOND``, as the shipped rover-rgb-vae entry writes it): it showed only the
first, so a run started with ``--epochs 50`` and resumed with ``--epochs 17`` read as a 50-epoch run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edgeae.zoo.user import user_entry

FIRST = "edgeae train vae --data d --out r --epochs 50"
RESUME = "edgeae train vae --resume r --epochs 17"
LAST = "edgeae train vae --resume r --zoo-name mine"


def _entry(card: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    meta = SimpleNamespace(kind="vae", channels=1, architecture={"latent": 8}, extra={}, training_data_hash="h")
    return user_entry(meta, 10, card, tmp_path / "r" / "best.pt")


@pytest.mark.parametrize(
    ("card", "want"),
    [
        ({"command": FIRST}, FIRST),  # never resumed: as before
        ({"command": FIRST, "resume_commands": []}, FIRST),
        ({"command": FIRST, "resume_commands": [RESUME, LAST]}, f"{FIRST}; then: {RESUME}; then: {LAST}"),
        # a run trained before session 38: its segments hold the commands (one not recorded is left out)
        ({"command": FIRST, "segments": [{"command": FIRST}, {}, {"command": RESUME}]}, f"{FIRST}; then: {RESUME}"),
    ],
    ids=["not resumed", "no resumes", "resumed twice", "older run"],
)
def test_the_entry_shows_the_resume_commands_after_the_first(card: dict[str, Any], want: str, tmp_path: Path) -> None:
    assert _entry(card, tmp_path)["command"] == want


def test_a_run_without_a_recorded_command_still_names_its_settings(tmp_path: Path) -> None:
    got = _entry({"resume_commands": [RESUME]}, tmp_path)["command"]
    assert got == f"not recorded; the run's settings: {(tmp_path / 'r' / 'config.json').resolve()}; then: {RESUME}"


def test_the_shipped_rover_entry_writes_its_resume_the_same_way() -> None:
    import json

    shipped = Path(__file__).parents[1] / "edgeae" / "zoo" / "weights" / "rover-rgb-vae.json"
    assert "; then: edgeae train vae --resume runs/vae2/rgb" in json.loads(shipped.read_text())["command"]
