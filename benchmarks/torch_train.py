"""The PyTorch peer of ``benchmarks/train.py``: the same model, optimizer and loop, in eager mode (SDPA attention)
or under ``torch.compile``.

Same architecture as ffnkv's reference shape: learned token (std 0.02) and position (std 0.02) embeddings, pre-norm
blocks (LayerNorm → Q/K/V/O with biases → causal softmax attention; LayerNorm → exact-GELU FFN with biases), final
LayerNorm, an untied bias-free unembedding; matrices drawn as flax's ``lecun_normal`` (truncated normal, variance
1/fan_in). AdamW with warmup-cosine, global-norm clipping 1.0 and decay on matrices and embeddings only (as
``train.state.make_optimizer``). Each step draws a fresh random batch on the host and reads the loss back.

Needs torch (the ``bench`` extra: ``pip install -e .[bench]``). Run alone for one row of JSON:
``python benchmarks/torch_train.py [--compile] [--steps 10]``; ``benchmarks/train.py --compare-torch`` drives it
as a warm worker (``--worker``) so its repetitions interleave with ffnkv's.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SHAPE = {"vocab": 4096, "d_model": 256, "n_layers": 4, "n_heads": 4, "d_ff": 1024, "batch": 16, "seq": 256}


def _lecun(out_features: int, in_features: int) -> nn.Parameter:
    """flax ``lecun_normal``: truncated normal in ±2σ, σ = √(1/fan_in) / 0.8796 (the truncation's correction)."""
    std = math.sqrt(1.0 / in_features) / 0.87962566103423978
    return nn.Parameter(nn.init.trunc_normal_(torch.empty(out_features, in_features), std=std, a=-2 * std, b=2 * std))


def _linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=bias)
    layer.weight = _lecun(d_out, d_in)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.q, self.k, self.v, self.o = (_linear(d_model, d_model) for _ in range(4))
        self.ff_in, self.ff_out = _linear(d_model, d_ff), _linear(d_ff, d_model)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        B, T, D = x_BTD.shape
        h = self.ln1(x_BTD)
        q, k, v = (p(h).view(B, T, self.n_heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        o_BHTK = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x_BTD = x_BTD + self.o(o_BHTK.transpose(1, 2).reshape(B, T, D))
        return x_BTD + self.ff_out(F.gelu(self.ff_in(self.ln2(x_BTD))))


class Model(nn.Module):
    def __init__(self, vocab: int, d_model: int, n_layers: int, n_heads: int, d_ff: int, seq: int, **_):
        super().__init__()
        self.tok = nn.Parameter(0.02 * torch.randn(vocab, d_model))
        self.pos = nn.Parameter(0.02 * torch.randn(seq, d_model))
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.unembed = _linear(d_model, vocab, bias=False)

    def forward(self, tokens_BT: torch.Tensor) -> torch.Tensor:
        x_BTD = self.tok[tokens_BT] + self.pos[: tokens_BT.shape[1]]
        for block in self.blocks:
            x_BTD = block(x_BTD)
        return self.unembed(self.final_norm(x_BTD))


def _schedule(lr_steps: int = 1000, warmup: int = 100, end_frac: float = 0.1):
    """Multiplier of the peak lr: linear warmup from 0, cosine decay to ``end_frac`` (optax's warmup_cosine)."""
    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        frac = min((step - warmup) / (lr_steps - warmup), 1.0)
        return end_frac + (1 - end_frac) * 0.5 * (1 + math.cos(math.pi * frac))
    return factor


class Trainer:
    """The model, AdamW (decay on 2-D weights and embeddings) and one jit-free or compiled train step."""

    def __init__(self, compile: bool = False, seed: int = 0):
        torch.manual_seed(seed)
        self.model = Model(**SHAPE)
        decay = [p for n, p in self.model.named_parameters() if p.ndim == 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim != 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=3e-3, betas=(0.9, 0.98))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _schedule())
        self.loss = torch.compile(self._loss) if compile else self._loss
        self.rng = np.random.default_rng(seed)

    def _loss(self, tokens_BT, targets_BT):
        logits_BTV = self.model(tokens_BT)
        return F.cross_entropy(logits_BTV.reshape(-1, logits_BTV.shape[-1]), targets_BT.reshape(-1))

    def step(self) -> float:
        """One step on a fresh batch; returns the loss as a Python float (the read-back a user's loop does)."""
        batch = torch.from_numpy(self.rng.integers(0, SHAPE["vocab"], (SHAPE["batch"], SHAPE["seq"] + 1)))
        loss = self.loss(batch[:, :-1], batch[:, 1:])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        return loss.item()

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return time.perf_counter() - start


def matmul_peak_flops(n: int = 2048) -> float:
    """FLOP/s of an n×n @ n×n float32 matmul in torch (median of 5 after a warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / sorted(times)[2]


def serve(compile: bool) -> None:
    """Worker mode: build and warm up, print ``ready`` with the warm-up seconds, then for every line ``N`` on stdin
    run N steps and print their wall and CPU seconds as JSON; ``peak`` prints torch's matmul peak."""
    start = time.perf_counter()
    trainer = Trainer(compile=compile)
    trainer.run(2)
    print(json.dumps({"ready": True, "warmup_s": time.perf_counter() - start, "threads": torch.get_num_threads()}),
          flush=True)
    for line in sys.stdin:
        cmd, cpu = line.strip(), time.process_time()
        if cmd == "peak":
            print(json.dumps({"peak_flops_per_s": matmul_peak_flops()}), flush=True)
        elif cmd:
            secs = trainer.run(int(cmd))
            print(json.dumps({"seconds": secs, "cpu_s": time.process_time() - cpu}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward + loss")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--worker", action="store_true", help="serve step counts on stdin (see serve)")
    args = parser.parse_args()
    if args.worker:
        return serve(args.compile)
    trainer = Trainer(compile=args.compile)
    trainer.run(2)
    secs = trainer.run(args.steps)
    tokens = args.steps * SHAPE["batch"] * SHAPE["seq"]
    print(json.dumps({"name": "torch.compile" if args.compile else "torch eager", "tokens_per_s": tokens / secs,
                      "step_s": secs / args.steps, "threads": torch.get_num_threads(),
                      "peak_flops_per_s": matmul_peak_flops()}, indent=2))


if __name__ == "__main__":
    main()
