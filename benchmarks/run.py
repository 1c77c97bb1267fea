"""Run every benchmark, each in its own process, and print one table (``--json PATH`` also writes the rows).

Each benchmark module exposes ``measure(**options) -> dict``; a fresh subprocess runs it so that the peak
memory column is that benchmark's own. Defaults are the reference shapes; ``--quick`` uses small sizes (the
whole suite in about two minutes on a 2-core CPU). A benchmark that fails is reported and makes the exit
status non-zero; the others still run.
Run: ``python benchmarks/run.py [--quick] [--only forward,covariance] [--json rows.json]``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # sys.path[0] is benchmarks/, whose train.py would shadow the train package
    sys.path[0] = str(REPO)
BENCHMARKS = ("forward", "train", "memories", "attribution", "tracing", "patching", "covariance")
QUICK = {
    "forward": {"batch": 8, "seq": 128},
    "train": {"batch": 8, "seq": 128, "steps": 4},
    "memories": {"tokens": 2**16, "batch": 16, "seq": 128},
    "attribution": {"prompts": 4, "steps": 10},
    "tracing": {"seq": 12, "samples": 4},
    "patching": {"seq": 16},
    "covariance": {"batches": 8, "batch": 8, "seq": 128},
}
MARK = "BENCHMARK_ROW "
COLUMNS = (("benchmark", 16), ("throughput", 24), ("model GFLOP/s", 13), ("peak GFLOP/s", 12), ("ratio", 6),
           ("peak MiB", 8), ("timed s", 8), ("wall s", 7))


def parse_only(text: str | None) -> list[str]:
    """The benchmarks named in ``--only`` (all when absent); raises ValueError naming an unknown one."""
    if text is None:
        return list(BENCHMARKS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise ValueError(f"unknown benchmark {', '.join(map(repr, unknown)) or repr(text)}; "
                         f"choose from {','.join(BENCHMARKS)}")
    return names


def worker(name: str, options: dict) -> None:
    """In the child: run one benchmark and print its row as one JSON line after ``MARK``."""
    load = os.getloadavg()[0]
    result = importlib.import_module(f"benchmarks.{name}").measure(**options)
    row = {"benchmark": name, "options": options, "load_average": load, **result}
    print(MARK + json.dumps(row, default=lambda x: x.item() if hasattr(x, "item") else str(x)), flush=True)


def run_one(name: str, options: dict) -> dict:
    """Run ``name`` in a fresh Python process; a failed run gives a row with ``error`` (its last stderr line)."""
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", name, json.dumps(options)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    rows = [line[len(MARK):] for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not rows:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"benchmark": name, "options": options, "wall_s": wall,
                "error": lines[-1] if lines else f"exit status {proc.returncode}"}
    return json.loads(rows[-1]) | {"wall_s": wall}


def _num(x, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def table_line(r: dict) -> str:
    if "error" in r:
        return f"{r['benchmark']:<{COLUMNS[0][1]}}  FAILED after {r['wall_s']:.1f} s: {r['error']}"
    g = lambda x: None if x is None else x / 1e9
    cells = [r["name"], f"{r['throughput']:,.1f} {r['unit']}", _num(g(r["model_flops_per_s"]), ".1f"),
             _num(g(r["peak_flops_per_s"]), ".1f"), _num(r["ratio_to_peak"], ".1%"), _num(r["peak_rss_mib"], ".0f"),
             _num(r["seconds"], ".2f"), _num(r["wall_s"], ".1f")]
    return "  ".join([f"{cells[0]:<{COLUMNS[0][1]}}"] + [f"{c:>{w}}" for c, (_, w) in zip(cells[1:], COLUMNS[1:])])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about 2 minutes on 2 CPU cores)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--json", type=Path, help="write the rows (a JSON list) here")
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "OPTIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], json.loads(args.worker[1]))
        return 0
    try:
        names = parse_only(args.only)
    except ValueError as err:
        print(f"run.py: error: {err}", file=sys.stderr)
        return 2
    if args.json is not None and not args.json.parent.is_dir():
        print(f"run.py: error: the folder of --json {args.json} does not exist; create it first", file=sys.stderr)
        return 2
    load = os.getloadavg()
    print(f"{'quick' if args.quick else 'reference'} sizes; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
          flush=True)
    print("  ".join([f"{COLUMNS[0][0]:<{COLUMNS[0][1]}}"] + [f"{h:>{w}}" for h, w in COLUMNS[1:]]), flush=True)
    rows = []
    for name in names:
        rows.append(run_one(name, QUICK[name] if args.quick else {}))
        print(table_line(rows[-1]), flush=True)
    for r in rows:
        if "full_seconds" in r:
            print(f"{r['name']}: cached prefix {r['seconds']:.3f} s, {r['model_flops'] / 1e9:.2f} GFLOP; "
                  "full recompute "
                  f"{r['full_seconds']:.3f} s, {r['full_model_flops'] / 1e9:.2f} GFLOP; {r['speedup']:.1f}x faster")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json is not None:
        tmp = args.json.with_name(f".{args.json.name}.tmp")
        tmp.write_text(json.dumps(rows, indent=2) + "\n")
        os.replace(tmp, args.json)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
