"""metrics.jsonl: one JSON object per line, ``{"step": s, ...}``; on resume, lines past the restored step go."""
from __future__ import annotations

import json
import os
from pathlib import Path


class MetricsLog:
    def __init__(self, path: Path, resume_step: int, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled
        if enabled:
            self._truncate(resume_step)

    def _truncate(self, resume_step: int) -> None:
        """Keep only records of steps ≤ resume_step so a resumed run's log equals an uninterrupted one."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if record.get("step", 0) <= resume_step:
                kept.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
