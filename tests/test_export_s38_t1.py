"""Session 38, fixer t1: docs/export.md names every training fact an artifact records (session 38 added
``training_resume_commands`` and the ``channels`` and ``epochs_trained`` of ``training_hyper_parameters``, which the
page did not say)."""

from __future__ import annotations

from pathlib import Path

from export.producer import training_facts

DOCS = Path(__file__).parents[1] / "docs" / "export.md"


def _metadata_section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    return " ".join(text.split("## Metadata inside every file", 1)[1].split("\n## ", 1)[0].split())


def test_the_page_names_every_training_fact_and_the_hyper_parameters_added_to_them() -> None:
    metrics = {
        "command": "edgeae train cae --epochs 50",
        "segments": [{"command": "edgeae train cae --epochs 50"}, {"command": "edgeae train cae --resume r"}],
        "hyper_parameters": {"epochs": 17, "channels": None},
        "channels": 1,
        "epochs_run": 17,
    }
    facts = training_facts(metrics)
    assert set(facts) == {"training_command", "training_resume_commands", "training_hyper_parameters"}
    assert facts["training_hyper_parameters"] == {"epochs": 17, "channels": 1, "epochs_trained": 17}
    section = _metadata_section()
    for key in (*facts, "resume_commands", "epochs_trained", "channels"):
        assert f"`{key}`" in section, key
