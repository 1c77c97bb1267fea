"""Training throughput and MFU for the reference shape (4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096,
seq 256, batch 16), and the same model in PyTorch side by side.

FLOPs per training step (matmuls only; a multiply-add counts 2):
    N_mm      = L·(4·D² + 2·D·F) + D·V            (q,k,v,o projections, the two FFN matrices, the unembedding)
    per token = 6·N_mm + 12·L·T·D                 (fwd 2·N_mm + 4·T·D per layer for QKᵀ and AV; bwd = 2× fwd)
    per step  = per token · B·T
(the full T×T score matrix is computed, so the attention term uses T, not T/2). MFU = model FLOP/s divided by
the f32 matmul peak measured in the same run (``common.matmul_peak_flops``, the better of before/after).

Two loops are timed: *back-to-back* (one batch on the device, steps dispatched without reading anything back)
and *realistic* (``--realistic``: a fresh random batch from the host every step and the loss read back every
step, the loop a user writes). ``--compare-torch`` runs ffnkv's realistic loop, PyTorch eager (SDPA) and
``torch.compile`` (``benchmarks/torch_train.py``, same model, AdamW, same batch) — and with ``--bf16`` ffnkv in
bfloat16 — as warm worker processes, in
interleaved rounds (each round runs every implementation for a few steps while the others wait), and reports
median tokens/s and the median per-round ratio — robust to a machine shared with other work.

Usage: ``python benchmarks/train.py [--steps 10] [--dtype float32|bfloat16] [--ffn gelu] [--realistic]
[--compare-torch [--rounds 5] [--no-compile] [--bf16]]``; prints JSON (and a table for ``--compare-torch``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # this file is named train.py: import the train package from the repository root
    sys.path[0] = str(REPO)

import jax
import numpy as np

from benchmarks import common
from ffnkv.config import ModelConfig
from train.config import OptimConfig, TrainConfig
from train.state import init_state, make_optimizer, schedule
from train.step import jit_train_step


def step_flops(cfg: ModelConfig, batch: int, seq: int) -> dict:
    """Training = forward + backward (2× forward): 3 × ``benchmarks.common.forward_flops_per_token``."""
    per_token = 3 * common.forward_flops_per_token(cfg, seq)
    return {"flops_per_token": per_token, "flops_per_step": per_token * batch * seq}


def reference_model(dtype: str = "float32", ffn: str = "gelu", seq: int = 256) -> ModelConfig:
    return ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=ffn, max_len=seq,
                       dtype=dtype, tie_embeddings=False)


class Trainer:
    """The compiled, donated train step of ``train.step`` on the reference shape, its state and a host batch source."""

    def __init__(self, dtype: str = "float32", ffn: str = "gelu", batch: int = 16, seq: int = 256):
        self.model = reference_model(dtype, ffn, seq)
        self.batch, self.seq = batch, seq
        cfg = TrainConfig(model=self.model, optim=OptimConfig(), steps=1000, batch_size=batch)
        self.state = init_state(cfg)
        self.rng = np.random.default_rng(0)
        start = time.perf_counter()
        step = jit_train_step(cfg, make_optimizer(cfg), schedule(cfg))
        self.step = step.lower(self.state, self.host_batch()).compile()
        self.compile_s = time.perf_counter() - start

    def host_batch(self) -> dict:
        """A fresh random batch as numpy arrays (next-token targets, unit weights)."""
        tokens = self.rng.integers(0, self.model.vocab_size, (self.batch, self.seq + 1)).astype(np.int32)
        return {"tokens": tokens[:, :-1], "targets": tokens[:, 1:],
                "weights": np.ones((self.batch, self.seq), np.float32)}

    def realistic(self, steps: int) -> float:
        """Seconds for ``steps`` steps, each on a fresh host batch with its loss read back (a user's loop)."""
        start = time.perf_counter()
        for _ in range(steps):
            self.state, metrics = self.step(self.state, self.host_batch())
            float(metrics["loss"])
        return time.perf_counter() - start

    def back_to_back(self, steps: int) -> float:
        """Seconds for ``steps`` steps on one device batch, dispatched without a read-back; one sync at the end."""
        data = jax.device_put(self.host_batch())
        jax.block_until_ready(data)
        start = time.perf_counter()
        for _ in range(steps):
            self.state, metrics = self.step(self.state, data)
        jax.block_until_ready((self.state, metrics))
        return time.perf_counter() - start


def measure(dtype: str = "float32", ffn: str = "gelu", steps: int = 10, batch: int = 16, seq: int = 256,
            realistic: bool = False) -> dict:
    """Tokens/s of the jitted, donated train step (forward, backward, clipping, AdamW); ``steps`` steps timed
    together after a warm-up step, back to back or (``realistic``) with a fresh batch and a loss read-back each
    step. Model FLOPs per step: see the module docstring."""
    peaks = [common.matmul_peak_flops()]
    trainer = Trainer(dtype, ffn, batch, seq)
    trainer.realistic(1)
    total_s = trainer.realistic(steps) if realistic else trainer.back_to_back(steps)
    peaks.append(common.matmul_peak_flops())
    flops = step_flops(trainer.model, batch, seq)
    return common.row("train_realistic" if realistic else "train", "tokens", steps * batch * seq, total_s,
                      steps * flops["flops_per_step"], peaks, dtype=dtype, ffn=ffn, batch=batch, seq=seq,
                      steps=steps, compile_s=trainer.compile_s, step_s=total_s / steps, **flops)


def serve(dtype: str = "float32") -> None:
    """Worker for ``--compare-torch``: print ``ready``, then answer each stdin line — ``N`` (N realistic steps),
    ``b2b N`` (N back-to-back steps) or ``peak`` (the JAX matmul peak) — with one JSON line (wall seconds and
    this process's CPU seconds)."""
    trainer = Trainer(dtype)
    trainer.realistic(2)
    print(json.dumps({"ready": True, "warmup_s": trainer.compile_s}), flush=True)
    for line in sys.stdin:
        cmd, cpu = line.split(), time.process_time()
        if cmd == ["peak"]:
            print(json.dumps({"peak_flops_per_s": common.matmul_peak_flops()}), flush=True)
        elif cmd and cmd[0] == "b2b":
            secs = trainer.back_to_back(int(cmd[1]))
            print(json.dumps({"seconds": secs, "cpu_s": time.process_time() - cpu}), flush=True)
        elif cmd:
            secs = trainer.realistic(int(cmd[0]))
            print(json.dumps({"seconds": secs, "cpu_s": time.process_time() - cpu}), flush=True)


class Worker:
    """A warm benchmark process answering one JSON line per command line (see ``serve``)."""

    def __init__(self, name: str, argv: list[str]):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.name, self.error = name, None
        self.proc = subprocess.Popen([sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)

    def ask(self, command: str) -> dict | None:
        if self.error:
            return None
        try:
            if command:
                self.proc.stdin.write(command + "\n")
                self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError((self.proc.stderr.read().strip().splitlines() or ["exited"])[-1])
            return json.loads(line)
        except (RuntimeError, OSError, ValueError) as err:
            self.error = str(err)[:300]
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def compare(rounds: int = 5, steps: int = 3, torch_compile: bool = True, bf16: bool = False) -> dict:
    """ffnkv realistic vs PyTorch eager vs ``torch.compile`` (and ffnkv in bfloat16 with ``bf16``), interleaved:
    ``rounds`` rounds of ``steps`` steps per implementation (the order rotates each round), medians over rounds;
    the ffnkv back-to-back figure and the JAX and torch matmul peaks measured in the same run. CPU seconds per step
    are reported too: on an oversubscribed machine they show how much of a worker's time went to spinning."""
    start = time.perf_counter()
    load = os.getloadavg()
    here, peer = str(Path(__file__).resolve()), str(REPO / "benchmarks" / "torch_train.py")
    workers = [Worker("ffnkv", [here, "--worker"]), Worker("torch eager", [peer, "--worker"])]
    if torch_compile:
        workers.append(Worker("torch.compile", [peer, "--worker", "--compile"]))
    if bf16:
        workers.append(Worker("ffnkv bfloat16", [here, "--worker", "--dtype", "bfloat16"]))
    ready = {w.name: w.ask("") for w in workers}
    ffnkv, eager = workers[0], workers[1]
    peaks = {"jax": [ffnkv.ask("peak")], "torch": [eager.ask("peak")]}
    times = {w.name: [] for w in workers} | {"ffnkv back-to-back": []}
    cpu = {name: [] for name in times}
    for r in range(rounds):
        for w in workers[r % len(workers):] + workers[: r % len(workers)]:
            answer = w.ask(str(steps))
            times[w.name].append(None if answer is None else answer["seconds"] / steps)
            cpu[w.name].append(None if answer is None else answer.get("cpu_s", float("nan")) / steps)
        answer = ffnkv.ask(f"b2b {steps}")
        times["ffnkv back-to-back"].append(None if answer is None else answer["seconds"] / steps)
        cpu["ffnkv back-to-back"].append(None if answer is None else answer["cpu_s"] / steps)
    peaks["jax"].append(ffnkv.ask("peak"))
    peaks["torch"].append(eager.ask("peak"))
    for w in workers:
        w.close()
    model = reference_model()
    flops = step_flops(model, 16, 256)["flops_per_step"]
    peak = {k: max([p["peak_flops_per_s"] for p in v if p] or [float("nan")]) for k, v in peaks.items()}
    rows = {}
    for name, ts in times.items():
        ts = [t for t in ts if t is not None]
        worker = next((w for w in workers if name == w.name), None) or next(
            (w for w in workers if name.startswith(w.name)), None)
        if not ts:
            rows[name] = {"error": worker.error if worker else "no result"}
            continue
        step_s = statistics.median(ts)
        rows[name] = {"tokens_per_s": 16 * 256 / step_s, "step_s": step_s, "steps_timed": len(ts) * steps,
                      "cpu_s_per_step": statistics.median([c for c in cpu[name] if c is not None]),
                      "model_flops_per_s": flops / step_s, "mfu_vs_jax_peak": flops / step_s / peak["jax"],
                      "warmup_s": (ready.get(worker.name) or {}).get("warmup_s") if worker else None}
    ratios = {}
    for name in rows:
        pairs = [(a, b) for a, b in zip(times["torch eager"], times[name]) if a and b]
        if pairs and name != "torch eager":
            ratios[f"{name} / torch eager"] = statistics.median(a / b for a, b in pairs)
    return {"rows": rows, "speedup_vs_torch_eager": ratios, "peak_flops_per_s": peak, "flops_per_step": flops,
            "rounds": rounds, "steps_per_round": steps, "load_average_before": load,
            "load_average_after": os.getloadavg(), "wall_s": time.perf_counter() - start,
            "device": f"{jax.devices()[0].device_kind} x{jax.device_count()}, {os.cpu_count()} CPUs"}


def print_table(result: dict) -> None:
    print(f"{'implementation':<22}{'tokens/s':>10}{'step s':>9}{'CPU s':>8}{'GFLOP/s':>9}{'MFU':>7}"
          f"{'vs torch eager':>16}")
    for name, row in result["rows"].items():
        if "error" in row:
            print(f"{name:<22}unavailable: {row['error']}")
            continue
        ratio = result["speedup_vs_torch_eager"].get(f"{name} / torch eager")
        print(f"{name:<22}{row['tokens_per_s']:>10,.0f}{row['step_s']:>9.3f}{row['cpu_s_per_step']:>8.2f}"
              f"{row['model_flops_per_s'] / 1e9:>9.1f}"
              f"{row['mfu_vs_jax_peak']:>7.1%}{'' if ratio is None else f'{ratio:.2f}x':>16}")
    p = result["peak_flops_per_s"]
    print(f"matmul peak (2048² f32, best of start/end): JAX {p['jax'] / 1e9:.1f} GFLOP/s, torch {p['torch'] / 1e9:.1f}"
          f" GFLOP/s; MFU is against the JAX peak. {result['rounds']} interleaved rounds of "
          f"{result['steps_per_round']} steps; load average {result['load_average_before'][0]:.2f} before, "
          f"{result['load_average_after'][0]:.2f} after; {result['wall_s']:.0f} s in all.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--ffn", default="gelu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--realistic", action="store_true",
                        help="also time the realistic loop (fresh batch, loss read)")
    parser.add_argument("--compare-torch", action="store_true", help="ffnkv vs PyTorch eager and torch.compile")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds for --compare-torch")
    parser.add_argument("--round-steps", type=int, default=3, help="steps per implementation per round")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out of --compare-torch")
    parser.add_argument("--bf16", action="store_true", help="add ffnkv in bfloat16 to --compare-torch")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return serve(args.dtype)
    if args.compare_torch:
        result = compare(args.rounds, args.round_steps, not args.no_compile, args.bf16)
        print(json.dumps(result, indent=2))
        print_table(result)
        return
    shape = {k: getattr(args, k) for k in ("dtype", "ffn", "steps", "batch", "seq")}
    rows = [measure(**shape)] + ([measure(**shape, realistic=True)] if args.realistic else [])
    print(json.dumps(rows if args.realistic else rows[0], indent=2))


if __name__ == "__main__":
    main()
