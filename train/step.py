"""The jitted train step (weighted next-token cross-entropy) and the eval step."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ffnkv.model import forward
from train.state import SEED_AXES, TrainState


def weighted_xent(logits_BTV, targets_BT, weights_BT):
    """sum_{b,t} w_bt · (−log p(target_bt)) / sum w_bt: the loss of the shared data contract."""
    nll_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, targets_BT)
    return (nll_BT * weights_BT).sum() / jnp.maximum(weights_BT.sum(), 1.0)


def loss_fn(params, batch, model_cfg):
    """The training loss; the blocks are unrolled (see ``ffnkv.model.forward``) and the unused Acts dropped by XLA."""
    logits_BTV = forward(params, batch["tokens"], model_cfg, unroll=True).logits
    return weighted_xent(logits_BTV, batch["targets"], batch["weights"])


def make_train_step(cfg, optimizer, lr_schedule):
    """A function (state, batch) -> (state, metrics); the caller jits it with the state donated.

    With ``cfg.seeds = S > 1`` the state is stacked (``train.state.init_state``), the batch arrays are
    [S, B, T] (seed i's own data) and the step is ``jax.vmap`` of the one-seed step: S seeds, one program;
    every metric is then [S]. With ``cfg.seed_batch = b < S`` the program loops (``lax.map(batch_size=b)``)
    over groups of b vmapped seeds: less memory, and on a CPU whose cores one seed already keeps busy, less
    time than one S-wide step (docs/core_and_training.md, Seeds).
    """
    step = _one_seed_step(cfg, optimizer, lr_schedule)
    if cfg.seeds == 1:
        return step
    if cfg.seed_batch is None or cfg.seed_batch >= cfg.seeds:
        return jax.vmap(step, in_axes=(SEED_AXES, 0), out_axes=(SEED_AXES, 0))

    def grouped_step(state: TrainState, batch):
        def one(xs):
            (params, opt_state), seed_batch = xs
            new, metrics = step(TrainState(state.step, params, opt_state), seed_batch)
            return (new.params, new.opt_state), metrics

        (params, opt_state), metrics = jax.lax.map(one, ((state.params, state.opt_state), batch),
                                                   batch_size=cfg.seed_batch)
        return TrainState(state.step + 1, params, opt_state), metrics

    return grouped_step


def _one_seed_step(cfg, optimizer, lr_schedule):
    def train_step(state: TrainState, batch):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, cfg.model)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": lr_schedule(state.step)}
        return TrainState(state.step + 1, params, opt_state), metrics

    return train_step


def jit_train_step(cfg, optimizer, lr_schedule, **jit_kwargs):
    """``make_train_step`` jitted with the state donated (``jit_kwargs`` go to ``jax.jit``, e.g. shardings)."""
    return jax.jit(make_train_step(cfg, optimizer, lr_schedule), donate_argnums=0, **jit_kwargs)


def make_eval_step(cfg):
    """(params, batch) -> (weighted loss, weighted token accuracy, argmax predictions [B,T]); with
    ``cfg.seeds = S > 1`` stacked params and [S, B, T] batches give [S] losses and accuracies, [S, B, T] predictions."""
    step = _one_seed_eval(cfg)
    return step if cfg.seeds == 1 else jax.vmap(step)


def _one_seed_eval(cfg):
    def eval_step(params, batch):
        logits_BTV = forward(params, batch["tokens"], cfg.model).logits
        pred_BT = logits_BTV.argmax(-1)
        w_BT = batch["weights"]
        acc = ((pred_BT == batch["targets"]) * w_BT).sum() / jnp.maximum(w_BT.sum(), 1.0)
        return weighted_xent(logits_BTV, batch["targets"], w_BT), acc, pred_BT

    return eval_step
