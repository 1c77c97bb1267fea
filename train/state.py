"""Train state and the optimizer: AdamW + warmup-cosine + global-norm clipping (optax)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ffnkv.model import init_params
from train.config import TrainConfig

_DECAYED = ("W_", "tok", "pos", "unembed")


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: updates applied so far
    params: dict
    opt_state: optax.OptState


def schedule(cfg: TrainConfig) -> optax.Schedule:
    o = cfg.optim
    warmup = min(o.warmup_steps, max(cfg.steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(0.0, o.lr, warmup, max(cfg.steps, warmup + 1), o.lr * o.end_lr_frac)


def _decay_mask(params):
    """Weight decay on matrices and embeddings; never on biases or norm scales."""
    return jax.tree.map_with_path(lambda path, _: str(path[-1].key).startswith(_DECAYED), params)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    o = cfg.optim
    return optax.chain(
        optax.clip_by_global_norm(o.clip_norm),
        optax.adamw(schedule(cfg), b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=_decay_mask),
    )


def init_state(cfg: TrainConfig, seed: int | None = None) -> TrainState:
    """Step 0: ``init_params(jax.random.key(seed), cfg.model)`` and a fresh optimizer state.

    ``seed`` defaults to ``cfg.seed``; with ``cfg.seeds = S > 1`` (and no ``seed``) it is S such states stacked
    on a leading seed axis of ``params`` and ``opt_state`` (``step`` stays one scalar), seed i being exactly
    ``init_state(cfg, cfg.seed + i)``.
    """
    if seed is None and cfg.seeds > 1:
        return stack_states([init_state(cfg, s) for s in seed_values(cfg)])
    params = init_params(jax.random.key(cfg.seed if seed is None else seed), cfg.model)
    return TrainState(jnp.zeros((), jnp.int32), params, make_optimizer(cfg).init(params))


def seed_values(cfg: TrainConfig) -> list[int]:
    """The seeds a run trains: ``cfg.seed, cfg.seed + 1, …, cfg.seed + cfg.seeds - 1`` (init and data order)."""
    return [cfg.seed + i for i in range(cfg.seeds)]


def stack_states(states: list[TrainState]) -> TrainState:
    """States of one step stacked on a leading seed axis of ``params`` and ``opt_state``."""
    params, opt_state = jax.tree.map(lambda *xs: jnp.stack(xs), *[(s.params, s.opt_state) for s in states])
    return TrainState(states[0].step, params, opt_state)


# vmap axes of a stacked state: one step counter for every seed, params and optimizer moments per seed
SEED_AXES = TrainState(step=None, params=0, opt_state=0)
