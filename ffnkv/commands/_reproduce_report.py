"""report.md of ``ffnkv reproduce`` (placeholder while stages are measured)."""
from pathlib import Path


def write_report(out: Path, profile: str) -> Path:
    return out / "report.md"
