"""The command line's one vocabulary (docs/cli.md): the shared options (``--out``, ``--facts``, ``--n-facts``,
``--seed``, ``--mesh``, ``--no-progress``), hidden deprecated aliases of old spellings, the help formatter, and
argparse types that range-check numbers, so a bad option is one line (argparse's usage error, exit 2)."""
from __future__ import annotations

import argparse
import math


def _checked(kind, ok, requirement: str):
    """An argparse type: ``kind(text)``, finite, and ``ok(value)``, else the error 'VALUE must be REQUIREMENT'."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"{text} must be {requirement}")
        return value
    parse.__name__ = f"{kind.__name__} {requirement}"
    return parse


positive_int = _checked(int, lambda v: v >= 1, "at least 1")
nonnegative_int = _checked(int, lambda v: v >= 0, "at least 0")
positive_float = _checked(float, lambda v: v > 0, "a finite number greater than 0")
nonnegative_float = _checked(float, lambda v: v >= 0, "a finite number of at least 0")
fraction = _checked(float, lambda v: 0 <= v <= 1, "a number between 0 and 1")


def output_dir(text: str) -> str:
    """A directory to write into: absent (it is created) or a directory, never a file, an empty path, or a place
    where nothing can be created (``afile.txt/sub``, ``/proc/x``); checked before the command starts."""
    import os
    import tempfile
    from pathlib import Path

    if not text.strip():
        raise argparse.ArgumentTypeError("'' is an empty path; pass a directory (it is created if absent)")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; pass a directory (it is created if absent)")
    existing = next(p for p in (path, *path.parents) if os.path.lexists(p) or p == Path("."))
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} cannot be created: {str(existing)!r} is a file; pass another "
                                         "directory")
    try:  # the one sure test that the directory can be written: make (and remove) an empty one
        os.rmdir(tempfile.mkdtemp(prefix=".ffnkv-probe-", dir=existing))
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be created in {str(existing)!r} ({error.strerror}); pass "
                                         "a writable directory") from None
    return text


def mesh_shape(text: str) -> tuple[int, int]:
    """``(data, model)`` device counts, e.g. ``(-1,1)`` or ``-1,1``: -1 on data takes every device left."""
    try:
        data, model = (int(x) for x in text.strip().strip("()").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a mesh shape; write (DATA,MODEL), e.g. (-1,1)") from None
    if model < 1 or (data < 1 and data != -1):
        raise argparse.ArgumentTypeError(f"{text} must have model ≥ 1 and data ≥ 1 or -1")
    return data, model


MESH_HELP = ("device mesh (DATA,MODEL), e.g. (-1,1): every device on the data axis, parameters replicated; (1,8): "
             "parameters split 8 ways")


def add_mesh(parser, default_text: str = "one device") -> None:
    """``--mesh (DATA,MODEL)``: the device mesh a command runs its model on."""
    parser.add_argument("--mesh", type=mesh_shape, default=None, metavar="(DATA,MODEL)",
                        help=f"{MESH_HELP} (default: {default_text})")


class _Deprecated(argparse.Action):
    """An old spelling: stores like the new option and says on stderr which name to use."""

    def __init__(self, option_strings, dest, new: str, **kw):
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        import sys

        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def alias(parser, old: str, new: str, dest: str, flag: bool = False, **kw) -> None:
    """``old`` as a hidden, deprecated spelling of the option ``new`` (same ``dest``; ``kw``: its type, nargs)."""
    parser.add_argument(old, dest=dest, action=_Deprecated, new=new, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS, **({"nargs": 0} if flag else kw))


def facts_file(text: str) -> str:
    """A fact file that exists; a bare count gets the hint that counts are ``--n-facts`` now."""
    from pathlib import Path

    if Path(text).is_file():
        return text
    if text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file; --facts takes a fact file (for a number of "
                                         f"facts use --n-facts {text.strip()})")
    raise argparse.ArgumentTypeError(f"{text!r} is not a file; pass a CounterFact-format JSON file")


def add_facts(parser, default_file: str, n_default, n_help: str) -> None:
    """``--facts FILE`` (the fact set) and ``--n-facts N`` (how many of its facts the command uses)."""
    parser.add_argument("--facts", type=facts_file, default=None, metavar="FILE",
                        help=f"CounterFact-format JSON file of facts (default: {default_file})")
    parser.add_argument("--n-facts", type=positive_int, default=n_default, metavar="N", help=n_help)


def trace_kind(text: str) -> str:
    """A causal-tracing kind of analysis.tracing; ``hidden``, the old name of ``resid``, still reads as it."""
    return "resid" if text == "hidden" else text


def add_seed(parser, what: str) -> None:
    """``--seed S``: the seed of everything random the command does."""
    parser.add_argument("--seed", type=nonnegative_int, default=0, help=f"seed of {what}")


def add_out(parser, default_text: str | None, what: str = "output dir") -> None:
    """``--out DIR``: where the command writes (checked before it starts); ``None``: required."""
    parser.add_argument("--out", type=output_dir, default=None, metavar="DIR", required=default_text is None,
                        help=what + ("" if default_text is None else f" (default: {default_text})"))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default in its help, unless the help already says it or there is none to say."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default is argparse.SUPPRESS
                or default == [] or not action.option_strings):
            return text
        return f"{text} (default: {default})" if text else f"(default: {default})"


finite_float = _checked(float, lambda v: True, "a finite number")


def add_progress(parser) -> None:
    """``--no-progress``, which every command takes (``cli.main`` adds it)."""
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars or compile lines on stderr (default: shown when stderr is a terminal; "
                             "the environment variable FFNKV_PROGRESS=1 forces them on)")


def progress_of(args):
    """The ``ffnkv.progress.Progress`` a command reports through: off with ``--no-progress``, else automatic."""
    from ffnkv.progress import Progress

    return Progress(False if getattr(args, "no_progress", False) else None)


def add_distributed(parser) -> None:
    """``--coordinator/--num-processes/--process-id``: one command run by several processes (jax.distributed)."""
    group = parser.add_argument_group("multi-process (every process runs the same command with its own --process-id)")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="address of process 0's coordinator")
    group.add_argument("--num-processes", type=positive_int, default=None, help="number of processes")
    group.add_argument("--process-id", type=nonnegative_int, default=None, help="this process's index, 0 … N-1")


def start_distributed(args) -> bool:
    """``jax.distributed.initialize`` from the options of :func:`add_distributed` (CPU collectives through gloo);
    returns whether several processes take part (then only process 0 writes files)."""
    from ffnkv.sharding import init_distributed

    init_distributed(args.coordinator, args.num_processes, args.process_id)
    return (args.num_processes or 1) > 1


def writer(args) -> bool:
    """Whether this process writes the command's files and prints its summary: process 0, or a lone process."""
    if (getattr(args, "num_processes", None) or 1) == 1:
        return True
    import jax

    return jax.process_index() == 0


def mesh_of(args):
    """``--mesh``, or every device of every process on "data" when several processes take part."""
    return args.mesh if args.mesh is not None or (args.num_processes or 1) == 1 else (-1, 1)


def finish_distributed(args) -> None:
    """With several processes, wait until every one (process 0 writing the files) has got here, so that none
    reaches jax.distributed's shutdown barrier minutes before the others."""
    if (getattr(args, "num_processes", None) or 1) > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("ffnkv: the command's files are written")
