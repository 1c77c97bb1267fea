"""The whole study as one protocol: ``run(settings, run_command) -> dict`` (``ffnkv reproduce``).

Stages (``studies.reproduce_stages.STAGES``), in order, each a list of ordinary ``ffnkv`` command lines on run
dirs under ``settings.out``; ``run_command(argv) -> exit code`` executes one (the command line passes its own
``main``, so this module needs nothing above it). A finished stage leaves ``stages/<name>.json`` and is skipped
on a re-run; a failed stage stops the study; an interrupted one (exit 130/143) raises ``Interrupted`` and
stays unfinished, so its training resumes from the last checkpoint on the next run. The report
(``studies.report.reproduce``) is rebuilt from the stages' JSON outputs.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from ffnkv.errors import FfnkvError, Interrupted
from studies.reproduce_stages import PROFILES, STAGES
from studies.report.write import write_json


@dataclasses.dataclass(frozen=True)
class ReproduceSettings:
    """``profile``: full, quick or smoke; ``out`` (default ``runs/reproduce-<profile>``); ``stages`` to run
    (default all); ``redo``: finished stages to run again."""

    profile: str = "full"
    out: str | None = None
    stages: tuple = ()
    redo: tuple = ()

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise FfnkvError(f"profile {self.profile!r} is unknown; choose from {', '.join(PROFILES)}.")
        bad = [n for n in self.stages + self.redo if n not in STAGES]
        if bad:
            raise FfnkvError(f"unknown stage {bad[0]!r}; choose from {', '.join(STAGES)}.")

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/reproduce-{self.profile}")


def check_profile(out: Path, profile: str) -> None:
    """One profile per output dir: a dir holding another profile's reproduction is refused."""
    marker = out / "reproduce.json"
    if marker.is_file():
        previous = json.loads(marker.read_text())["profile"]
        if previous != profile:
            raise FfnkvError(f"{str(out)!r} holds a {previous!r} reproduction; pass --out with another dir to run "
                             f"the {profile!r} profile, or re-run with --profile {previous}.")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(marker, {"profile": profile})


def run_stage(stage, out: Path, profile: str, run_command, log=print) -> dict:
    """Run one stage's commands; returns its record (status, seconds, commands)."""
    missing = stage.missing()
    if missing:
        return {"status": "skipped", "why": missing}
    commands = stage.commands(out, profile)
    start = time.perf_counter()
    for argv in commands:
        log(f"\n== reproduce {stage.name}: ffnkv {' '.join(argv)}")
        code = run_command(argv)
        if code != 0:
            return {"status": "failed", "command": argv, "exit_code": code}
    return {"status": "done", "seconds": round(time.perf_counter() - start, 1), "commands": commands}


def run(settings: ReproduceSettings, run_command, log=print) -> dict:
    """Every chosen stage not finished yet, then the report; returns {stage: record} and the report's path."""
    from studies.report.reproduce import write_report

    out = settings.out_dir
    check_profile(out, settings.profile)
    (out / "stages").mkdir(exist_ok=True)
    records = {}
    for name in settings.stages or tuple(STAGES):
        marker = out / "stages" / f"{name}.json"
        if marker.is_file() and name not in settings.redo and json.loads(marker.read_text())["status"] == "done":
            log(f"== reproduce {name}: done earlier, skipping")
            continue
        record = records[name] = run_stage(STAGES[name], out, settings.profile, run_command, log)
        if record["status"] == "failed" and record["exit_code"] in (130, 143):
            raise Interrupted(f"stage {name!r} was interrupted and stays unfinished; re-run the same command to "
                              "resume it.", record["exit_code"] - 128)
        if record["status"] == "failed":
            raise FfnkvError(f"stage {name!r} failed (exit code {record['exit_code']}); fix the error above and "
                             "re-run the same command to resume.")
        write_json(marker, record)
        if record["status"] == "skipped":
            log(f"== reproduce {name}: skipped: {record['why']}")
    return {"stages": records, "report": str(write_report(out, settings.profile))}
