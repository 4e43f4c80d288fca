"""The scan's settings: how every image is cut and scored (:class:`ScanConfig`), validated on construction,
stored next to the results and checked on resume; and the rankings a scan can write (:data:`SCAN_SCORES`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeae.scan.quality import QualityFilter
from edgeae.scan.scoring import ModelSpec

SCAN_SCORES = ("a", "terms-max", "local-z", "context-knn")  # the rankings a scan can write (``edgeae scan --score``)


PIXELS_REVISION = 2  # see ScanConfig.pixels
# the float32 pixels of one batch (each chunk's buffer; the model's activations are a multiple of it): 1 GiB is
# 65,536 grey 64x64 patches, 1,024x the default batch
MAX_BATCH_BYTES = 2**30


@dataclass(frozen=True)
class ScanConfig:
    """How every image is cut and scored; stored next to the results and checked on resume."""

    model: ModelSpec
    stride: int
    batch_size: int = 64
    min_valid: float = 0.9  # 0.5 until session 26: half-margin patches topped scans of strips with borders
    top_k: int = 16
    quality: QualityFilter = field(default_factory=QualityFilter)  # label filters applied before scanning
    score: str = "a"  # "a" (the model's score), "terms-max" (VAE; the orbital mission's), "local-z" or "context-knn"
    bayer: str | None = None  # the images are raw colour-filter mosaics of this pattern: demosaiced first
    margin: str | None = None  # a fixed margin counted as no-data: "N" or "TOP,BOTTOM,LEFT,RIGHT" pixels
    views: int = 1  # context-knn: latents of each patch's first N rotations and flips, averaged after scaling
    group: str | None = None  # context-knn: images whose names give the same match of this regex share a product
    # how patches are read: 2 (session 28) fills no-data inside a patch with its surroundings' mean and counts a
    # small image's reflected padding as missing; 1 (scans written before) read no-data as black, padding as data
    pixels: int = PIXELS_REVISION

    def __post_init__(self) -> None:
        from edgeae.bayer import PATTERNS
        from edgeae.nodata import Margin

        if self.bayer is not None and self.bayer not in PATTERNS:
            raise ValueError(f"bayer must be one of {PATTERNS}, got {self.bayer!r}")
        if self.margin is not None:
            Margin.parse(self.margin)  # raises with the accepted forms
        if self.score not in SCAN_SCORES:
            raise ValueError(f"score must be one of {SCAN_SCORES}, got {self.score!r}")
        if self.score == "terms-max" and self.model.kind != "vae":
            raise ValueError(f"score 'terms-max' ranks a VAE's two terms; {self.model.model_id} is a {self.model.kind}")
        if self.score in ("local-z", "context-knn") and self.model.kind != "vae":
            kind = self.model.kind
            raise ValueError(f"score {self.score!r} ranks a VAE's latents; {self.model.model_id} is a {kind}")
        from edgeae.anomaly.views import VIEWS

        if not 1 <= self.views <= VIEWS:
            raise ValueError(f"views must be 1 to {VIEWS} (rotations and flips of a patch), got {self.views}")
        if (self.views > 1 or self.group is not None) and self.score != "context-knn":
            what = f"views {self.views}" if self.views > 1 else f"group {self.group!r}"
            raise ValueError(f"{what} belongs to score 'context-knn', not {self.score!r}")
        if self.group is not None:
            import re

            try:
                re.compile(self.group)
            except re.error as exc:
                raise ValueError(f"group {self.group!r} is not a regular expression: {exc}") from None
        if self.stride <= 0:
            raise ValueError(f"stride must be positive, got {self.stride}")
        if self.stride > self.patch:  # checked here, not charged to every image as it is read
            raise ValueError(f"stride {self.stride} > patch {self.patch} would leave gaps between patches")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        per_patch = 4 * self.model.channels * self.patch**2  # float32 pixels of one patch
        if self.batch_size * per_patch > MAX_BATCH_BYTES:
            most = MAX_BATCH_BYTES // per_patch
            raise ValueError(
                f"batch_size {self.batch_size} would hold {self.batch_size * per_patch / 2**30:,.1f} GiB of patches "
                f"per model call; at most {most} patches of {self.model.channels}x{self.patch}x{self.patch} "
                f"({MAX_BATCH_BYTES // 2**30} GiB)"
            )
        if not 0.0 <= self.min_valid <= 1.0:
            raise ValueError(f"min_valid must be in [0, 1], got {self.min_valid}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def patch(self) -> int:
        return self.model.patch

    def to_dict(self) -> dict[str, Any]:
        """What scan.json holds: the settings, the model as :meth:`ModelSpec.record` keeps it (no absolute path)."""
        return {**asdict(self), "model": self.model.record()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScanConfig:
        """The settings of a scan.json (:meth:`to_dict`'s, or one an earlier version wrote: its model's absolute path
        is read as what was given; one without ``pixels`` was written before session 28)."""
        d = {"pixels": 1, **d}
        model = ModelSpec.from_record(d["model"])
        return cls(**{**d, "model": model, "quality": QualityFilter.from_dict(d.get("quality"))})

    def result_fingerprint(self) -> dict[str, Any]:
        """The fields that change the numbers in the results (not paths, not the engine)."""
        m = self.model
        return {
            "artifact_hash": m.artifact_hash,
            "patch": m.patch,
            "channels": m.channels,
            "stride": self.stride,
            "batch_size": self.batch_size,
            "min_valid": self.min_valid,
            "top_k": self.top_k,
            "quality": self.quality.to_dict(),
            "score": self.score,
            "bayer": self.bayer,
            "margin": self.margin,
            "pixels": self.pixels,
            # only where they apply, so scans made before these settings existed resume unchanged
            **({"views": self.views, "group": self.group} if self.score == "context-knn" else {}),
        }

    def read_options(self) -> dict[str, Any]:
        """How the images are read (:func:`edgeae.strips.iter_patch_blocks` keywords): demosaicing, fixed margin."""
        from edgeae.nodata import Margin

        return {"bayer": self.bayer, "margin": Margin.parse(self.margin) if self.margin else None}

    @property
    def terms(self) -> bool:
        """Whether the scorer returns the VAE's two terms (N, 2) instead of one score per patch."""
        return self.score == "terms-max"

    @property
    def latents(self) -> bool:
        """Whether the scorer returns rec and the VAE's latents, (N, 1 + views·D): scored per image (``local-z``)
        or over the whole set once every image is in (``context-knn``, :mod:`edgeae.scan.context`)."""
        return self.score in ("local-z", "context-knn")

    def product(self, name: str) -> str | None:
        """The product an image belongs to for ``context-knn``: the ``group`` regex's first match in its name in the
        archive (its path below the archive root, so a folder can be the product: ``^[^/]+``); None without a
        ``group`` (every image of the scan is one product); raises when the name gives no (or an empty) match."""
        if self.group is None:
            return None
        from edgeae.anomaly.labels import group_label

        return group_label(name, self.group)
