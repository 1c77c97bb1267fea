"""Conditional computation (Rahman et al. 2026): ``[OP] x1 … xn [=]`` → the answer, where OP picks the function.

Vocabulary: ``0 … P-1`` are the operand values, then one token per op of ``ALL_OPS``, then ``=``. Every
batch is a pure function of (seed, step). The evaluation set is a fixed sample of distinct sequences, and
training batches are redrawn wherever they hit it, so the two never overlap.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ffnkv.config import check_fields, ints
from ffnkv.errors import ConfigError

ALL_OPS = ("SUM", "MAX", "MIN", "PROD", "RANGE")


def _apply(op: str, x_BN: np.ndarray, P: int) -> np.ndarray:
    return {
        "SUM": lambda: x_BN.sum(-1) % P,
        "MAX": lambda: x_BN.max(-1),
        "MIN": lambda: x_BN.min(-1),
        "PROD": lambda: _prod_mod(x_BN, P),
        "RANGE": lambda: x_BN.max(-1) - x_BN.min(-1),
    }[op]()


def _prod_mod(x_BN, P):
    out = np.ones(x_BN.shape[0], np.int64)
    for col in x_BN.T:
        out = out * col % P
    return out


@dataclasses.dataclass(frozen=True)
class CondComp:
    """The task. ``n_operands`` = n, ``modulus`` = P (operands in [0, P); SUM and PROD are mod P)."""

    n_operands: int = 4
    modulus: int = 16
    ops: tuple[str, ...] = ("SUM", "MAX", "MIN")
    n_eval: int = 2048

    def __post_init__(self):
        ops = f"a list of distinct names from {', '.join(ALL_OPS)}"
        check_fields(self, "data.", {"n_operands": ints(1, 64), "modulus": ints(2, 2 ** 16), "n_eval": ints(1, 2 ** 20),
                                     "ops": (lambda v: v and set(v) <= set(ALL_OPS) and len(set(v)) == len(v), ops)})
        object.__setattr__(self, "ops", tuple(self.ops))
        if len(ALL_OPS) * self.modulus ** self.n_operands >= 2 ** 62:  # sequence ids are int64
            raise ConfigError(f"data.n_operands={self.n_operands} with data.modulus={self.modulus} gives more "
                              "sequences than int64 ids can number; use fewer operands or a smaller modulus.")
        if self.n_eval > len(self.ops) * self.modulus ** self.n_operands // 4:
            raise ConfigError(f"data.n_eval={self.n_eval} is over a quarter of all sequences; lower it.")

    @property
    def vocab_size(self) -> int:
        return self.modulus + len(ALL_OPS) + 1

    @property
    def seq_len(self) -> int:
        return self.n_operands + 2

    def op_token(self, op: str) -> int:
        return self.modulus + ALL_OPS.index(op)

    def token_names(self) -> list[str]:
        return [str(i) for i in range(self.modulus)] + list(ALL_OPS) + ["="]

    def _ids(self, op_B, x_BN):
        """A unique int64 id per sequence (its position in op-major, base-P order)."""
        return op_B.astype(np.int64) * self.modulus ** self.n_operands + (
            x_BN.astype(np.int64) * self.modulus ** np.arange(self.n_operands, dtype=np.int64)).sum(-1)

    def _render(self, op_B, x_BN) -> dict:
        op_tok = np.asarray([self.op_token(op) for op in self.ops])[op_B]
        eq = np.full_like(op_B, self.vocab_size - 1)
        tokens = np.concatenate([op_tok[:, None], x_BN, eq[:, None]], axis=1).astype(np.int32)
        target = np.empty(len(op_B), np.int64)
        for i, op in enumerate(self.ops):
            rows = op_B == i
            target[rows] = _apply(op, x_BN[rows], self.modulus)
        targets_BT = np.zeros_like(tokens)
        targets_BT[:, :-1] = tokens[:, 1:]
        targets_BT[:, -1] = target
        weights_BT = np.zeros(tokens.shape, np.float32)
        weights_BT[:, -1] = 1.0
        return {"tokens": tokens, "targets": targets_BT, "weights": weights_BT,
                "target": target.astype(np.int32), "op": op_B.astype(np.int32)}

    def _draw(self, rng, size):
        return rng.integers(0, len(self.ops), size), rng.integers(0, self.modulus, (size, self.n_operands))

    def _eval_ids(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _eval_ids_cached(self, seed)

    def _eval_ids_uncached(self, seed: int):
        rng = np.random.default_rng([seed, 0xE7A1])
        op_B, x_BN = self._draw(rng, 4 * self.n_eval)
        _, first = np.unique(self._ids(op_B, x_BN), return_index=True)
        keep = np.sort(first)[: self.n_eval]
        return op_B[keep], x_BN[keep], np.sort(self._ids(op_B[keep], x_BN[keep]))

    def eval_set(self, seed: int) -> dict:
        """``n_eval`` distinct sequences, mixed ops; never produced by ``batch``."""
        op_B, x_BN, _ = self._eval_ids(seed)
        return self._render(op_B, x_BN)

    def batch(self, seed: int, step: int, batch_size: int) -> dict:
        """Training batch ``step``: tokens ``[B, n+2]``; targets/weights ``[B, n+2]`` with the answer (the token
        after ``=``) as the target of the last position and weight 1 only there; target ``[B]``; op index ``[B]``."""
        rng = np.random.default_rng([seed, step])
        op_B, x_BN = self._draw(rng, batch_size)
        eval_ids = self._eval_ids(seed)[2]
        while True:
            hit = np.isin(self._ids(op_B, x_BN), eval_ids)
            if not hit.any():
                return self._render(op_B, x_BN)
            op_B[hit], x_BN[hit] = self._draw(rng, int(hit.sum()))


    def eval_metrics(self, pred_BT, batch) -> dict[str, float]:
        """Answer accuracy per op (keys ``acc/<OP>`` and ``acc/all``) from argmax predictions ``pred_BT``."""
        acc = accuracy_per_op_from_pred(np.asarray(pred_BT)[:, -1], batch["target"], batch["op"], self.ops)
        return {f"acc/{name}": value for name, value in acc.items()}


@functools.lru_cache(maxsize=8)
def _eval_ids_cached(task: CondComp, seed: int):
    return task._eval_ids_uncached(seed)


def accuracy_per_op_from_pred(pred_B, target_B, op_B, ops) -> dict[str, float]:
    """Top-1 accuracy of the answer per op name, plus ``all``, from predicted tokens ``pred_B``."""
    correct = np.asarray(pred_B) == np.asarray(target_B)
    op_B = np.asarray(op_B)
    out = {op: float(correct[op_B == i].mean()) for i, op in enumerate(ops) if (op_B == i).any()}
    return out | {"all": float(correct.mean())}
