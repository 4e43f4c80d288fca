"""The ground keep search's packing counter, shared by the session-39 keep-search tests (fixers h7, h11)."""

from __future__ import annotations

import pytest


def count_packings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The frames keep_for_bytes packs (over the packet limit or not), appended to as it packs them."""
    from edgeae.ground import keep_search

    packed: list[int] = []
    real = keep_search._packed

    def packing(*a: object, **k: object) -> tuple[int, int]:
        packed.append(1)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(keep_search, "_packed", packing)
    return packed
