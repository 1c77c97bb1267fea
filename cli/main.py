"""The ``ffnkv`` command. Each subcommand is a module in cli/ with NAME, HELP, DESCRIPTION (its ``--help`` text
for users: plain text, no RST), add_arguments, run; the shared options are cli.args's (docs/cli.md)."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from cli.args import HelpFormatter, add_progress
from ffnkv.errors import FfnkvError, Interrupted

COMMAND_MODULES = (
    "train",
    "compare",
    "analyze",
    "memories",
    "knowledge",
    "edit",
    "atlas",
    "pretrained",
    "reproduce",
    "report",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ffnkv", description="ffnkv: transformer FFNs as key-value memories (docs/cli.md lists the "
                     "options every command shares)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cli.{name}")
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.DESCRIPTION,
                                 formatter_class=HelpFormatter)
        module.add_arguments(command)
        add_progress(command)
        command.set_defaults(run=module.run)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside training, raised like SIGINT's KeyboardInterrupt (no ``except Exception`` swallows it)."""

    signum = signal.SIGTERM


def _terminate(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt as stop:  # a signal outside training (which saves and raises Interrupted itself)
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"ffnkv {args.command}: error: interrupted ({signal.Signals(signum).name}) before finishing; nothing "
              "was recorded as done, re-run the same command to resume.", file=sys.stderr)
        return 128 + signum
    except FfnkvError as error:
        print(f"ffnkv {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code if isinstance(error, Interrupted) else 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
