"""Wall time of the README's API example (``examples/quickstart.py``), start to finish, in a fresh process.

The time is what a new user waits: interpreter start, imports, loading SmolLM2 from its GGUF file, every
compile and the analysis. The machine's load average before and after is recorded beside it (a shared machine
slows the example down), with the peak resident memory of the example's process.
Run: ``python benchmarks/quickstart.py [--repeats N] [--json PATH]``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "quickstart.py"


def run_once(timeout: float = 600.0) -> dict:
    """One run of the example in a subprocess: ``seconds`` (wall), ``load_before``/``load_after`` (1-minute
    load averages), ``peak_rss_mib`` and the example's ``stdout``; raises RuntimeError when it fails."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"examples/quickstart.py exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return {"seconds": seconds, "load_before": load_before, "load_after": os.getloadavg()[0],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "stdout": proc.stdout}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs, one after another (default 1)")
    parser.add_argument("--json", type=Path, help="write the runs and the machine's description here")
    args = parser.parse_args(argv)
    runs = [run_once() for _ in range(max(1, args.repeats))]
    for r in runs:
        print(f"examples/quickstart.py: {r['seconds']:.1f} s wall on {os.cpu_count()} cores "
              f"(load average {r['load_before']:.1f} before, {r['load_after']:.1f} after), "
              f"peak {r['peak_rss_mib']:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "python": sys.version.split()[0], "runs": runs},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
