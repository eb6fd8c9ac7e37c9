"""The `vidda` command line: the scripting interface to a device's store.

Every command that prints data has `--json`. Errors are one line on stderr
and a non-zero exit: 1 for a failed command, 2 for bad usage, 3 when a
bundle import kept or rejected some events (the rest landed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from core.commands.edits import EditError
from core.events.envelope import EventError
from core.events.ids import IdError
from core.events.schema import FieldError
from core.identity.keyfile import KeyFileError
from core.identity.profile import ProfileError
from core.store.errors import StoreError
from core.sync.bundle import BundleError
from tui_client.home import Home, HomeError, resolve_home

EXPECTED_ERRORS = (
    EditError,
    EventError,
    IdError,
    FieldError,
    KeyFileError,
    ProfileError,
    StoreError,
    BundleError,
    HomeError,
    OSError,
)

Handler = Callable[[argparse.Namespace, list[str]], Coroutine[Any, Any, int]]


class UsageError(Exception):
    pass


class ProgressBar:
    """A bar on stderr when it is a terminal; otherwise a plain line every few
    seconds, and only once the work has run a while (logs stay short)."""

    def __init__(self, after_s: float = 3.0, every_s: float = 5.0) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.after_s = after_s
        self.every_s = every_s
        self.last = 0.0
        self.drawn = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self.last < 0.1 and done < total:
                return
            width = 30
            filled = width * done // total if total else width
            sys.stderr.write(
                f"\r{stage:<20} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}\x1b[K"
            )
            sys.stderr.flush()
            self.drawn = True
        elif now - self.started >= self.after_s and now - self.last >= self.every_s:
            print(f"vidda: {stage}: {done:,}/{total:,}", file=sys.stderr, flush=True)
        else:
            return
        self.last = now

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def emit_json(data: Any) -> None:
    sys.stdout.write(msgspec.json.encode(data).decode() + "\n")


def _parser() -> argparse.ArgumentParser:
    from tui_client import (
        cli_bundle,
        cli_demo,
        cli_plan,
        cli_replay,
        cli_research,
        cli_server,
        cli_sync,
        cli_workspace,
    )

    parser = argparse.ArgumentParser(
        prog="vidda",
        description="Offline-first process plans for municipal development work.",
    )
    parser.add_argument("--home", help="data folder (default: $VIDDA_HOME or the user data dir)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cli_workspace.register(sub)
    cli_plan.register(sub)
    cli_bundle.register(sub)
    cli_research.register(sub)
    cli_replay.register(sub)
    cli_sync.register(sub)
    cli_server.register(sub)
    cli_demo.register(sub)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Options must be spelled out (`--hom` is not `--home`): a script's
    typo fails loudly, and private exports can blank exactly the options
    that name paths."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def _hoist_home(args: list[str]) -> list[str]:
    """Let `--home DIR` stand anywhere on the line, as users type it."""
    out: list[str] = []
    home: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--home" and i + 1 < len(args):
            home = ["--home", args[i + 1]]
            i += 2
            continue
        if args[i].startswith("--home="):
            home = [args[i]]
        else:
            out.append(args[i])
        i += 1
    return home + out


def main(argv: list[str] | None = None) -> int:
    args_list = _hoist_home(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(args_list)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        if args.command is None and not extra:
            from tui_client.cli_workspace import quick_start

            handler = quick_start
        else:
            parser.print_help(sys.stderr)
            return 2
    if extra and not getattr(args, "accepts_fields", False):
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    args.home_dir = Home(resolve_home(args.home))
    try:
        return asyncio.run(handler(args, extra))
    except BrokenPipeError:
        # The reader (head, less) went away: stop quietly, like other tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UsageError as exc:
        print(f"vidda: usage: {exc}", file=sys.stderr)
        return 2
    except EXPECTED_ERRORS as exc:
        print(f"vidda: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vidda: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    # Run the canonical module, not this `__main__` copy: the command modules
    # raise `tui_client.cli.UsageError`, the class the canonical `main` catches.
    from tui_client.cli import run as _run

    _run()
