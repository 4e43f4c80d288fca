"""``edgeae links``: list the link presets that every --link option accepts by name."""

from __future__ import annotations

import argparse
import json
import textwrap


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "links",
        help="list the simulated-link presets (names that --link accepts)",
        description="List the link presets shipped in edgeae/ground/links: their names (what --link of "
        "edgeae downlink takes, as does a path to a TOML file of your own), rate, loss and what each is for.",
    )
    p.add_argument("--json", action="store_true", help="print the presets and their settings as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from edgeae.ground.link import load_link
    from edgeae.resolve import LINKS_DIR, preset_summary, presets

    found = presets(LINKS_DIR)
    if args.json:
        print(json.dumps({n: {"file": str(p), **load_link(p).to_dict()} for n, p in found.items()}, indent=2))
        return 0
    width = max(map(len, found), default=4)
    for name, path in found.items():
        cfg = load_link(path)
        bps = cfg.data_rate_bps
        rate = f"{bps / 1e6:g} Mbit/s" if bps >= 1e6 else f"{bps / 1e3:g} kbit/s"
        head = f"{name:<{width}}  {rate:>10}  "
        print(textwrap.fill(preset_summary(path), 100, initial_indent=head, subsequent_indent=" " * len(head)))
    print(f"(in {LINKS_DIR}; pass a name or a TOML path to --link)")
    return 0
