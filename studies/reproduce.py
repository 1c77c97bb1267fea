"""The whole study as one protocol: ``run(settings, progress, log) -> dict`` (``ffnkv reproduce``).

Stages (``studies.reproduce_stages.STAGES``), in order, each calling studies in-process with their Settings
objects on run dirs under ``settings.out`` (nothing here imports the command line). A finished stage leaves
``stages/<name>.json`` and is skipped on a re-run; an error stops the study; an interrupted one (SIGTERM or
SIGINT: ``Interrupted`` or ``KeyboardInterrupt``, exit 143/130 from the command line) is never recorded as done,
so its training resumes from the last checkpoint on the next run. The report (``studies.report.reproduce``) is
rebuilt from the stages' JSON outputs. ``seed`` is the base seed of every training (seeds ``seed`` …
``seed + S − 1``); an output dir holds one profile and one base seed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from ffnkv.errors import FfnkvError, Interrupted
from ffnkv.progress import Progress
from studies.report.write import write_json
from studies.reproduce_stages import PROFILES, STAGES, Context


@dataclasses.dataclass(frozen=True)
class ReproduceSettings:
    """``profile``: full, quick or smoke; ``out`` (default ``runs/reproduce-<profile>``); ``stages`` to run
    (default all); ``redo``: finished stages to run again; ``seed``: the base seed of every training."""

    profile: str = "full"
    out: str | None = None
    stages: tuple = ()
    redo: tuple = ()
    seed: int = 0

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise FfnkvError(f"profile {self.profile!r} is unknown; choose from {', '.join(PROFILES)}.")
        bad = [n for n in self.stages + self.redo if n not in STAGES]
        if bad:
            raise FfnkvError(f"unknown stage {bad[0]!r}; choose from {', '.join(STAGES)}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise FfnkvError(f"seed={self.seed!r} is not allowed; use a non-negative integer.")

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/reproduce-{self.profile}")


def check_profile(out: Path, profile: str, seed: int = 0) -> None:
    """One profile and one base seed per output dir: a dir holding another reproduction is refused."""
    marker = out / "reproduce.json"
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous["profile"] != profile:
            raise FfnkvError(f"{str(out)!r} holds a {previous['profile']!r} reproduction; pass --out with another "
                             f"dir to run the {profile!r} profile, or re-run with --profile {previous['profile']}.")
        if previous.get("seed", 0) != seed:
            raise FfnkvError(f"{str(out)!r} holds a reproduction with base seed {previous.get('seed', 0)}; pass --out "
                             f"with another dir for --seed {seed}, or re-run with --seed {previous.get('seed', 0)}.")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(marker, {"profile": profile, "seed": seed})


def run_stage(stage, ctx: Context) -> dict:
    """Run one stage; returns its record: status, wall seconds, CPU seconds of this process (all threads: on a
    shared machine the better measure of cost), the 1-minute load average at its start and end, and what the
    stage reports (settings, seeds)."""
    missing = stage.missing()
    if missing:
        return {"status": "skipped", "why": missing}
    ctx.log(f"\n== reproduce {stage.name}: {stage.title}")
    start, cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    info = stage.run(ctx)
    return {"status": "done", "seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1),
            "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]} | info


def run(settings: ReproduceSettings, progress: Progress | None = None, log=print) -> dict:
    """Every chosen stage not finished yet, then the report; returns {stage: record} and the report's path.
    An interruption (``Interrupted``, ``KeyboardInterrupt``) propagates with the stage left unfinished."""
    from studies.report.reproduce import write_report

    out = settings.out_dir
    check_profile(out, settings.profile, settings.seed)
    (out / "stages").mkdir(exist_ok=True)
    ctx = Context(out, settings.profile, settings.seed, Progress(None) if progress is None else progress, log)
    records = {}
    for name in settings.stages or tuple(STAGES):
        marker = out / "stages" / f"{name}.json"
        if marker.is_file() and name not in settings.redo and json.loads(marker.read_text())["status"] == "done":
            log(f"== reproduce {name}: done earlier, skipping")
            continue
        try:
            record = records[name] = run_stage(STAGES[name], ctx)
        except Interrupted as stop:
            raise Interrupted(f"stage {name!r} was interrupted and stays unfinished; re-run the same command to "
                              "resume it.", stop.signum) from None
        write_json(marker, record)
        if record["status"] == "skipped":
            log(f"== reproduce {name}: skipped: {record['why']}")
    return {"stages": records, "report": str(write_report(out, settings.profile))}
