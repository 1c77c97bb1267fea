"""A small LM that memorises a synthetic facts world: 100 entities × 6 relations = 600 facts (the ``facts``
preset; edit a copy to change it).

The loss is on every token of ``[BOS] fact . fact . …`` packs of training-template renderings
(``loss="all"``), as a language model is trained, so the subject's representation carries its facts and
recall can happen at the subject (Meng et al. 2022's early site); ``--set data.loss=attribute`` trains on the
attribute tokens only (recall then happens at the last token). Names come in families that share every token
but the last (``names="families"``, issue 20), so a subject is resolved at its last token as in Meng et al.'s
setting; ``--set data.names=random`` draws each name on its own (the world before issue 20, where 98% of the
names are told apart by their first two tokens). Eval reports ``train_fact_acc`` (top-1
attribute accuracy over every fact × training template) and ``paraphrase_acc`` (two held-out templates per
relation).
"""
from ffnkv.config import ModelConfig
from train.config import DataConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(d_model=64, n_layers=4, n_heads=4, d_ff=256, ffn="relu"),
        data=DataConfig("facts", {"n_entities": 100, "n_relations": 6, "n_attributes": 12, "seed": 0,
                                  "facts_per_seq": 4, "loss": "all",
                                  "names": "families", "family_size": 4}),
        optim=OptimConfig(lr=3e-3, warmup_steps=100, weight_decay=0.01),
        steps=800, batch_size=64, eval_every=200, ckpt_every=400, keep=1, log_every=50, seed=0,
    )
