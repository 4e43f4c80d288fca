"""What the two command lines (``edgeae``, ``firmware-sim``) share: ``-v`` before or after a command, and ``-`` refused
as a file name (no command reads stdin or writes a file to stdout). Light: argparse and os only, no edgeae import, so
the flight runtime's CLI takes it without the ground's."""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn

VERBOSE_HELP = "show debug messages and the warnings and logs of third-party libraries (hidden by default)"
DASH_REFUSED = "reading stdin or writing stdout is not supported: give a file (./- for a file named -)"


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser (and its own subcommands': argparse makes them of the same class): it takes ``-v`` /
    ``--verbose`` after the command too (``edgeae zoo -v``), as the top-level flag. Left out, the flag is not set
    here (``argparse.SUPPRESS``), so ``edgeae -v zoo`` keeps the top level's True."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)

    def error(self, message: str) -> NoReturn:
        """A bad value of one option (``argument --threads: must be at least 1, got 0``) is one line, as the
        commands' own checks say theirs (``--patch must be a positive number of pixels``); what the usage line
        helps with (a missing or unknown argument) keeps it (until session 46 every error printed the usage)."""
        if message.startswith("argument ") and "invalid choice" not in message:
            self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")
        super().error(message)


def dash_given(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The option (or argument) of the command run that was given ``-``, which no command takes for stdin or
    stdout (it would read or write a file named ``-``); None when none was."""
    p: argparse.ArgumentParser | None = parser
    while p is not None:
        nxt = None
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):  # the subcommand chosen, then its own actions
                nxt = a.choices.get(getattr(args, a.dest, None) or "")
                continue
            value = getattr(args, a.dest, None)
            values = value if isinstance(value, list | tuple) else [value]
            if any(isinstance(v, str | os.PathLike) and os.fspath(v) == "-" for v in values):
                return "/".join(a.option_strings) or (a.metavar if isinstance(a.metavar, str) else a.dest.upper())
        p = nxt
    return None
