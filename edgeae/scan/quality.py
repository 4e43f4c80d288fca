"""Quality filters from the label, applied before a product is scanned (as the lunar paper did).

A product is skipped when its label's incidence or emission angle, its resolution, or its fraction of
missing data falls outside the thresholds of :class:`QualityFilter` (stored in the scan config, so a
resume with other thresholds is refused). A threshold whose quantity the label does not give is not
applied to that product (PNG crops have no label): the product is kept and the report says which facts
were unknown. The missing-data fraction costs one windowed pass over the product (only when
``max_missing`` is set). Every skipped product is recorded with its reason (manifest, images.parquet,
report.json).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["QualityFilter", "check_product", "product_facts"]


@dataclass(frozen=True)
class QualityFilter:
    """Thresholds (None = not applied). Angles in degrees, resolution in metres per pixel."""

    min_incidence: float | None = None
    max_incidence: float | None = None
    max_emission: float | None = None
    min_resolution_m: float | None = None  # finest allowed pixel (skip sharper products)
    max_resolution_m: float | None = None  # coarsest allowed pixel (skip blurrier products)
    max_missing: float | None = None  # fraction of no-data pixels, in [0, 1]

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)):  # True is not 1°
                raise ValueError(f"quality threshold {name} must be a number or None, got {v!r}")
            if v is not None and (not math.isfinite(v) or v < 0):
                raise ValueError(f"quality threshold {name} must be a finite number >= 0, got {v}")
        if self.max_missing is not None and self.max_missing > 1:
            raise ValueError(f"max_missing is a fraction in [0, 1], got {self.max_missing}")

    @property
    def active(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> QualityFilter:
        return cls(**(d or {}))


def product_facts(path: str | os.PathLike[str], need_missing: bool = False) -> dict[str, Any]:
    """incidence_deg, emission_deg, resolution_m (None when unknown) and missing_fraction (when asked)."""
    from edgeae.archive.formats import is_archive_path

    p = Path(os.fspath(path))
    facts: dict[str, Any] = {"incidence_deg": None, "emission_deg": None, "resolution_m": None}
    if is_archive_path(p):
        from edgeae.archive.reader import ProductReader

        with ProductReader(p) as r:
            facts["incidence_deg"] = r.label.incidence_deg
            facts["emission_deg"] = r.label.emission_deg
            res = r.label.resolution_m
            if res is None and r.geo is not None:
                res = r.geo.resolution_m()
            facts["resolution_m"] = res
            if need_missing:
                facts["missing_fraction"] = r.stats()[2] / float(r.height * r.width)
        return facts
    if need_missing:  # other images: their no-data mask (black margins), streamed in strips
        from edgeae.strips import iter_strips

        bad = total = 0
        for s in iter_strips(p, 512):
            bad += int((~s.valid).sum())
            total += s.valid.size
        facts["missing_fraction"] = bad / max(total, 1)
    return facts


def check_product(path: str | os.PathLike[str], q: QualityFilter) -> tuple[str | None, dict[str, Any]]:
    """(reason to skip or None, the facts looked at). Raises the reader's error for unreadable files."""
    facts = product_facts(path, need_missing=q.max_missing is not None)
    inc, emi, res = facts["incidence_deg"], facts["emission_deg"], facts["resolution_m"]
    reasons = []
    if inc is not None and q.min_incidence is not None and inc < q.min_incidence:
        reasons.append(f"incidence {inc:.2f}° < min {q.min_incidence:g}°")
    if inc is not None and q.max_incidence is not None and inc > q.max_incidence:
        reasons.append(f"incidence {inc:.2f}° > max {q.max_incidence:g}°")
    if emi is not None and q.max_emission is not None and emi > q.max_emission:
        reasons.append(f"emission {emi:.2f}° > max {q.max_emission:g}°")
    if res is not None and q.min_resolution_m is not None and res < q.min_resolution_m:
        reasons.append(f"resolution {res:.4g} m/px < min {q.min_resolution_m:g} m/px")
    if res is not None and q.max_resolution_m is not None and res > q.max_resolution_m:
        reasons.append(f"resolution {res:.4g} m/px > max {q.max_resolution_m:g} m/px")
    miss = facts.get("missing_fraction")
    if miss is not None and q.max_missing is not None and miss > q.max_missing:
        reasons.append(f"missing data {miss:.1%} > max {q.max_missing:.1%}")
    unknown = []
    if inc is None and (q.min_incidence is not None or q.max_incidence is not None):
        unknown.append("incidence")
    if emi is None and q.max_emission is not None:
        unknown.append("emission")
    if res is None and (q.min_resolution_m is not None or q.max_resolution_m is not None):
        unknown.append("resolution")
    facts["unknown"] = unknown
    return ("; ".join(reasons) or None), facts
