"""The scores CSV (``file,x,y,score,valid_frac`` rows, one per scored patch) and the settings file written beside
it (``scores.csv.json``: what made the scores): writing both and reading the rows back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeae.anomaly.score import PatchScores


def write_csv(path: str | os.PathLike[str], results: Iterable[PatchScores]) -> int:
    """Write ``file,x,y,score,valid_frac`` rows (CSV quoting: a file name with a comma or quote is quoted, so
    pandas and spreadsheets read it; a file name's bytes that are not UTF-8 as ``\\xNN``, as ``edgeae scan``
    writes them: :func:`edgeae.printable.printable`); returns the number of rows."""
    import csv

    from edgeae.printable import printable

    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["file", "x", "y", "score", "valid_frac"])
        for r in results:
            name = printable(str(r.file))
            for x, y, s, v in zip(r.x, r.y, r.score, r.valid_frac, strict=True):
                out.writerow([name, int(x), int(y), f"{s:.6g}", f"{v:.4f}"])
                n += 1
    return n


SETTINGS_SUFFIX = ".json"  # scores.csv -> scores.csv.json: what made the scores (the CSV stays plain rows)


def settings_path(csv_path: str | os.PathLike[str]) -> str:
    """Where :func:`write_settings` puts the settings of ``csv_path``: the CSV's name + ``.json``."""
    return os.fspath(csv_path) + SETTINGS_SUFFIX


def write_settings(csv_path: str | os.PathLike[str], settings: dict[str, Any]) -> str:
    """Write ``settings`` (model, score kind, patch, stride, ...: what the CSV's ``score`` column means) beside
    the CSV as :func:`settings_path`, with the edgeae version; returns its path."""
    import json

    from edgeae._version import __version__

    out = settings_path(csv_path)
    doc = {"csv": os.path.basename(os.fspath(csv_path)), **settings, "edgeae_version": __version__}
    with open(out, "w", encoding="utf-8") as f:
        f.write(json.dumps(_printable(doc), indent=2, default=str, ensure_ascii=False) + "\n")
    return out


def _printable(value: Any) -> Any:
    """``value`` (the settings) with every text, path included, as :func:`edgeae.printable.printable` writes it: the
    image names and paths of a file whose name is not UTF-8 as in the CSV (``\\xNN``)."""
    from edgeae.printable import printable

    if isinstance(value, (str, os.PathLike)):
        return printable(os.fspath(value))
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    return value


def read_csv(path: str | os.PathLike[str]) -> list[tuple[str, int, int, float]]:
    """Read back ``file,x,y,score`` rows written by :func:`write_csv` (also the unquoted names of files written
    before it quoted them: a row with extra cells gives them back to the file name)."""
    import csv

    rows: list[tuple[str, int, int, float]] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if header[:4] != ["file", "x", "y", "score"]:
            raise ValueError(f"{path}: not a scores CSV (header {header})")
        for row in reader:
            extra = len(row) - len(header)
            file = ",".join(row[: extra + 1]) if extra > 0 else row[0]
            x, y, sc = row[max(extra, 0) + 1 : max(extra, 0) + 4]
            rows.append((file, int(x), int(y), float(sc)))
    return rows
