"""``python -m edgeae.archive PATH...``: one JSON line per product (or refusal) found under the paths.

Shows what the scan will see: driver, shape, dtype, label facts, scaling, special values, georeferencing.
Each product is opened as a read opens it, which checks that its data are whole (a raw file's or JPEG 2000's last
samples, a GeoTIFF's strips or tiles within the file), and its scaling is measured (a pass over its samples unless
it is 8-bit).
Exit status: 0 every product was read, 1 some could not be (their ``error`` lines; stderr says how many) or no
product was found, 2 a path that is not there or a package of the ``[archive]`` extra that is not installed (the
pip line to run).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from edgeae._optional import MissingDependencyError, check_extras
from edgeae.archive.formats import is_archive_path

PROG = "python -m edgeae.archive"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="folders, products, manifests or globs (as for edgeae scan)")
    ap.add_argument(
        "-v", "--verbose", action="store_true", help="also show the readers' own log lines (GDAL, tifffile)"
    )
    args = ap.parse_args(argv)
    from edgeae import logs

    with logs.session(args.verbose):  # third-party log lines (tifffile's on a GeoTIFF's odd tag) hidden, as in edgeae
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from edgeae.scan.archive import walk_archive

    try:
        entries = walk_archive(args.paths)
    except (FileNotFoundError, ValueError) as exc:  # a path that is not there: one line, not a traceback
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if not any(is_archive_path(e.path) for e in entries):
        print(f"{PROG}: no planetary product under {', '.join(args.paths)}", file=sys.stderr)
        return 1
    try:  # GDAL (rasterio) reads every product: said before the first one, as the edgeae commands do
        check_extras(PROG, {"rasterio": "archive"})
        bad, n = _describe(entries)
    except MissingDependencyError as exc:  # pyproj, met only by a map-projected product: one line too
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if bad:  # stdout may be a file or a pipe: the exit status 1 gets its reason where a terminal shows it
        print(f"{PROG}: {bad} of {n} products could not be read (see their error lines)", file=sys.stderr)
        return 1
    return 0


def _describe(entries: Sequence[Any]) -> tuple[int, int]:
    """Print one JSON line per product of ``entries``; (products that could not be read, products)."""
    from edgeae.archive.reader import ProductReader
    from edgeae.imageio import ImageReadError

    bad = n = 0
    for e in entries:
        if not is_archive_path(e.path):
            continue
        n += 1
        try:
            with ProductReader(e.path) as r:
                lab, s = r.label, r.scaling
                out = {
                    "file": e.name, "driver": r.driver, "shape": [r.height, r.width, len(r.bands)],
                    "bands_in_product": r.count, "dtype": str(r.raw_dtype), "product_id": lab.product_id,
                    "instrument": lab.instrument, "target": lab.target, "incidence_deg": lab.incidence_deg,
                    "emission_deg": lab.emission_deg, "resolution_m": lab.resolution_m,
                    "scaling": s.to_dict(), "special_values": list(r.specials),
                    "body": r.geo.body if r.geo else None, "map_projected": r.geo is not None,
                    **({"warnings": r.warnings} if r.warnings else {}),
                }  # fmt: skip
        except (ImageReadError, ValueError) as exc:
            out = {"file": e.name, "error": str(exc)}
            bad += 1
        print(json.dumps(out))
    return bad, n


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
