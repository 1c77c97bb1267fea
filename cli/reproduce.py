"""Reproduce the whole study with one command: ``ffnkv reproduce [--quick] [--out DIR]``.

Stages, in order (each one is an ordinary ffnkv command on a run dir under ``--out``):
``condcomp`` (train every FFN kind on conditional computation: ``ffnkv compare``), ``specialise``
(``ffnkv analyze``: Rahman et al.'s four claims), ``facts`` (train the facts LM), ``memories`` (Geva et al.
2021/2022 on it), ``knowledge`` (knowledge neurons and causal tracing), ``edit`` (ROME and MEMIT on it),
``editability`` (facts LMs for relu/gelu/swiglu/softmax, traced, attributed and edited: one table), ``text``
(an LM on local text and Geva's analyses on it), ``minilm`` and ``smollm2`` (the real pretrained models, when
the ``models`` or ``all`` extra is installed). A finished stage leaves ``stages/<name>.json``; re-running skips it, and an
interrupted stage resumes its training from the last checkpoint. ``report.md`` (and ``report.html``) is
rewritten at the end from the stages' JSON outputs: every section with its figures and numbers, and the
claims table.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from cli._reproduce_stages import PROFILES

NAME = "reproduce"
HELP = "run every training and analysis of the study (--quick: ~13 min on 2 CPU cores) and write report.md"


def add_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="the small profile (about 13 minutes on 2 CPU cores); "
                        "same as --profile quick")
    parser.add_argument("--profile", default=None, choices=PROFILES,
                        help="full (default: every command's own defaults), quick, or smoke (seconds; for tests)")
    parser.add_argument("--out", default=None, help="output dir (default runs/reproduce-PROFILE)")
    parser.add_argument("--stages", default=None, help="comma list of stages to run (default: all); the report "
                        "always covers every finished stage")
    parser.add_argument("--redo", default="", help="comma list of finished stages to run again")


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    tmp.replace(path)


def _check_profile(out: Path, profile: str) -> None:
    from ffnkv.errors import FfnkvError

    marker = out / "reproduce.json"
    if marker.is_file():
        previous = json.loads(marker.read_text())["profile"]
        if previous != profile:
            raise FfnkvError(f"{str(out)!r} holds a {previous!r} reproduction; pass --out with another dir to run "
                             f"the {profile!r} profile, or re-run with --profile {previous}.")
    else:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(marker, {"profile": profile})


def _names(text: str | None, allowed) -> list[str]:
    from ffnkv.errors import FfnkvError

    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise FfnkvError(f"unknown stage {bad[0]!r}; choose from {', '.join(allowed)}.")
    return names


def run_stage(stage, out: Path, profile: str) -> dict:
    """Run one stage's commands in this process; returns its record (status, seconds, commands)."""
    from cli import main

    missing = stage.missing()
    if missing:
        return {"status": "skipped", "why": missing}
    commands = stage.commands(out, profile)
    start = time.perf_counter()
    for argv in commands:
        print(f"\n== reproduce {stage.name}: ffnkv {' '.join(argv)}", flush=True)
        code = main(argv)
        if code != 0:
            return {"status": "failed", "command": argv, "exit_code": code}
    return {"status": "done", "seconds": round(time.perf_counter() - start, 1), "commands": commands}


def run(args) -> int:
    import sys

    from cli._reproduce_report import write_report
    from cli._reproduce_stages import STAGES
    from ffnkv.errors import FfnkvError, Interrupted

    if args.quick and args.profile not in (None, "quick"):
        raise FfnkvError(f"--quick contradicts --profile {args.profile}; pass one of them.")
    profile = "quick" if args.quick else args.profile or "full"
    out = Path(args.out or f"runs/reproduce-{profile}")
    names = list(STAGES)
    chosen = _names(args.stages, names) or names
    redo = set(_names(args.redo, names))
    _check_profile(out, profile)
    (out / "stages").mkdir(exist_ok=True)
    total = time.perf_counter()
    for name in chosen:
        marker = out / "stages" / f"{name}.json"
        if marker.is_file() and name not in redo:
            if json.loads(marker.read_text())["status"] == "done":
                print(f"== reproduce {name}: done earlier, skipping", flush=True)
                continue
        record = run_stage(STAGES[name], out, profile)
        if record["status"] == "failed" and record["exit_code"] in (130, 143):
            raise Interrupted(f"stage {name!r} was interrupted and stays unfinished; re-run the same command to "
                              "resume it.", record["exit_code"] - 128)
        if record["status"] == "failed":
            print(f"ffnkv reproduce: stage {name!r} failed (exit code {record['exit_code']}); fix the error above "
                  "and re-run the same command to resume.", file=sys.stderr)
            return 1
        _write_json(marker, record)
        if record["status"] == "skipped":
            print(f"== reproduce {name}: skipped: {record['why']}", flush=True)
    path = write_report(out, profile)
    print(f"\nreproduce ({profile}) finished in {time.perf_counter() - total:.0f} s; report: {path}")
    return 0
