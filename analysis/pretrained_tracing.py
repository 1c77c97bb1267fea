"""Causal tracing (Meng et al. 2022, §2.1) for one fact prompt, the whole (layer, token) grid as one program.

Corrupted run: Gaussian noise ε ~ N(0, σ²) added to the embeddings of the subject tokens (σ = 3 × the std of
the token embeddings), S samples as the batch. Restored run: as the corrupted run, but the clean state of one
(layer, token) is patched back in — the block output (``resid_post``, "hidden"), or the MLP / attention
output of a window of layers centred on the layer. Indirect effect IE = p*(o) − p_corrupt(o); total effect
TE = p_clean(o) − p_corrupt(o), with o the gold token and probabilities averaged over the S samples.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ffnkv.hooks import Hooks
from ffnkv.model import forward

SITE = {"hidden": "resid_post", "mlp": "mlp_out", "attn": "attn_out"}
CATEGORIES = ("before subject", "first subject", "middle subject", "last subject", "first subsequent", "further",
              "last")


def token_categories(subject_T, T: int):
    """Meng et al.'s token category (index into CATEGORIES) of each prompt position; a one-token subject is
    its own last subject token, and the prompt's last position is always "last"."""
    idx = [t for t in range(T) if subject_T[t]]
    first, last = idx[0], idx[-1]
    cats = []
    for t in range(T):
        if t == T - 1:
            cats.append(6)
        elif t < first:
            cats.append(0)
        elif t == last:
            cats.append(3)
        elif t == first:
            cats.append(1)
        elif t < last:
            cats.append(2)
        else:
            cats.append(4 if t == last + 1 else 5)
    return cats


def _prob(params, cfg, tokens_BT, target, hooks):
    logits = forward(params, tokens_BT, cfg, hooks).logits[:, -1]
    return jax.nn.softmax(logits, -1)[:, target].mean()


def trace(params, cfg, tokens_T, subject_T, target, layers_K, key, kind: str = "hidden", samples: int = 10,
          sigma: float | None = None, window: int = 10, batch_size: int = 8) -> dict:
    """Clean, corrupted and restored p(target) for every (layer in ``layers_K``, token) of one prompt."""
    T, L = tokens_T.shape[0], cfg.n_layers
    tokens_ST = jnp.broadcast_to(tokens_T, (samples, T))
    if sigma is None:
        sigma = 3.0 * float(jnp.std(params["embed"]["tok"]))
    noise_STD = sigma * jax.random.normal(key, (samples, T, cfg.d_model)) * subject_T[None, :, None]
    clean = forward(params, tokens_T[None], cfg)
    p_clean = jax.nn.softmax(clean.logits[0, -1])[target]
    corrupt = Hooks(embed_add=noise_STD)
    p_corrupt = _prob(params, cfg, tokens_ST, target, corrupt)
    site = SITE[kind]
    half = 0 if kind == "hidden" else window // 2

    def restored(lt):
        l, t = lt
        layers_L = jnp.abs(jnp.arange(L) - l) <= half
        if kind != "hidden":
            layers_L &= jnp.arange(L) < l - half + window
        mask = (layers_L[:, None] & (jnp.arange(T) == t)[None, :])[:, None, :, None]
        value = getattr(clean.acts, site)
        return _prob(params, cfg, tokens_ST, target, corrupt.replace(**{f"{site}_patch_mask": mask,
                                                                        f"{site}_patch_value": value}))

    grid_l, grid_t = jnp.meshgrid(jnp.asarray(layers_K), jnp.arange(T), indexing="ij")
    p_KT = jax.lax.map(restored, (grid_l.reshape(-1), grid_t.reshape(-1)), batch_size=batch_size)
    p_KT = p_KT.reshape(grid_l.shape)
    return {"p_clean": p_clean, "p_corrupt": p_corrupt, "p_restored_KT": p_KT,
            "indirect_KT": p_KT - p_corrupt, "total": p_clean - p_corrupt}
