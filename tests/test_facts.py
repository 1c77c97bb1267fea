"""The facts corpus: known truth, multi-token names, templates, spans, batches, determinism."""
import numpy as np
import pytest

from ffnkv.data import make_task
from ffnkv.data.facts import BOS, PAD, FactsTask
from ffnkv.errors import ConfigError, FfnkvError
from ffnkv.io.tokenizer import task_tokenizer
from ffnkv.prompts import encode_prompts


@pytest.fixture(scope="module")
def task():
    return FactsTask(n_entities=20, n_relations=6, n_attributes=8, seed=3)


def test_world_shape_and_determinism(task):
    assert len(task.facts) == 20 * 6
    assert len({f.relation for f in task.facts}) == 6
    assert FactsTask(n_entities=20, n_attributes=8, seed=3).facts == task.facts
    assert FactsTask(n_entities=20, n_attributes=8, seed=4).facts != task.facts
    assert make_task("facts", n_entities=20, n_attributes=8, seed=3).facts == task.facts


def test_templates_names_and_attributes(task):
    for rel in task.relations:
        assert len(rel.train_templates) >= 5 and len(rel.paraphrase_templates) >= 2
        assert not set(rel.train_templates) & set(rel.paraphrase_templates)
    assert len(set(task.subjects)) == 20
    for subject in task.subjects:
        ids = task.tokenizer.encode(subject)
        assert len(ids) >= 3 and 2 not in ids  # multi-token, no [UNK]
        assert task.tokenizer.decode(ids) == subject
    for fact in task.facts:
        assert len(task.tokenizer.encode(fact.attribute)) == 1
        assert task.tokenizer.encode(fact.attribute) == [task.attribute_id(fact.attribute)]
        rel = next(r for r in task.relations if r.name == fact.relation)
        assert fact.counterfactual != fact.attribute and fact.counterfactual in rel.attributes
    with pytest.raises(FfnkvError):
        task.attribute_id("Mars")


def test_encode_prompts_spans_and_predict_pos(task):
    """The facts world's prompts through the one prompt encoder (``ffnkv.prompts``) with the task's tokenizer."""
    fact = task.facts[7]
    prompts = task.prompts(fact) + task.prompts(fact, "paraphrase")
    enc = encode_prompts(task_tokenizer(task), prompts, [fact.subject] * len(prompts))
    assert enc["tokens"].dtype == np.int32 and (enc["tokens"][:, 0] == BOS).all()
    for i, prompt in enumerate(prompts):
        row = enc["tokens"][i]
        assert task.tokenizer.decode(row[: enc["lengths"][i]]) == prompt
        assert task.tokenizer.decode(row[enc["subject_start"][i]: enc["subject_end"][i]]) == fact.subject
        assert (row[enc["lengths"][i]:] == PAD).all()
        assert enc["predict_pos"][i] == enc["lengths"][i] - 1
    with pytest.raises(FfnkvError, match="is not in it"):
        encode_prompts(task_tokenizer(task), ["nobody was born in"], [fact.subject])


def test_eval_set_matches_encode_prompts(task):
    ev = task.eval_set(0)
    n_templates = 7
    assert len(ev["tokens"]) == len(task.facts) * n_templates
    assert ev["split"].sum() == len(task.facts) * 2
    for i in (0, 6, 50):
        fact = task.facts[ev["fact"][i]]
        split = "paraphrase" if ev["split"][i] else "train"
        prompt = (task.prompts(fact, "train") + task.prompts(fact, "paraphrase"))[ev["template"][i]]
        enc = encode_prompts(task_tokenizer(task), [prompt], [fact.subject])
        p = ev["predict_pos"][i]
        assert p == enc["predict_pos"][0] and ev["subject_start"][i] == enc["subject_start"][0], split
        assert (ev["tokens"][i, : p + 1] == enc["tokens"][0, : p + 1]).all()
        assert ev["attribute"][i] == task.attribute_id(fact.attribute) == ev["targets"][i, p]
        assert ev["weights"][i].sum() == 1 and ev["weights"][i, p] == 1


def test_batch_is_pure_and_weights_attributes(task):
    a, b = task.batch(5, 11, 8), task.batch(5, 11, 8)
    assert all((a[k] == b[k]).all() for k in a)
    assert not (task.batch(5, 12, 8)["tokens"] == a["tokens"]).all()
    assert a["tokens"].shape == (8, task.seq_len) and (a["tokens"][:, 0] == BOS).all()
    assert (a["targets"][:, :-1] == a["tokens"][:, 1:]).all()
    attribute_ids = {task.attribute_id(f.attribute) for f in task.facts}
    weighted = a["targets"][a["weights"] > 0]
    assert len(weighted) == 8 * task.facts_per_seq and set(weighted.tolist()) <= attribute_ids
    assert (a["template"] < 5).all()  # paraphrases never trained on
    text = task.tokenizer.decode(a["tokens"][0])
    fact = task.facts[a["fact"][0, 0]]
    assert text.startswith(task.prompts(fact)[a["template"][0, 0]] + " " + fact.attribute)
    full = FactsTask(n_entities=20, n_attributes=8, seed=3, loss="all").batch(5, 11, 8)
    assert ((full["weights"] > 0) == (full["targets"] != PAD)).all()


def test_neighbourhood_and_metrics(task):
    fact = task.facts[13]
    by_prompt = {}
    for f in task.facts:
        for p in task.prompts(f):
            by_prompt[p] = f
    hood = task.neighbourhood(fact)
    assert len(hood) == task.n_neighbours
    for prompt, attribute in hood:
        other = by_prompt[prompt]
        assert other.subject != fact.subject and other.relation == fact.relation and other.attribute == attribute
    ev = task.eval_set(0)
    perfect = ev["targets"]
    assert task.eval_metrics(perfect, ev) == {"train_fact_acc": 1.0, "paraphrase_acc": 1.0}
    wrong = np.where(ev["split"][:, None] == 1, PAD, perfect)
    assert task.eval_metrics(wrong, ev) == {"train_fact_acc": 1.0, "paraphrase_acc": 0.0}


def test_bad_config():
    with pytest.raises(ConfigError):
        FactsTask(n_relations=9)
    with pytest.raises(ConfigError):
        FactsTask(loss="everything")
    with pytest.raises(ConfigError):
        make_task("facts", n_entity=3)
    with pytest.raises(ConfigError):
        FactsTask(names="clans")
    with pytest.raises(ConfigError):
        FactsTask(names="families", family_size=1)


@pytest.mark.parametrize("n_entities", [2, 9, 21, 40])
def test_family_world_resolves_subjects_at_their_last_token(n_entities):
    """Every subject shares all but its last token with another subject, and no other subject has its last
    token too: the subject is told apart exactly at its last token."""
    fam = FactsTask(n_entities=n_entities, n_attributes=8, seed=5, names="families", family_size=4)
    ids = [tuple(fam.tokenizer.encode(s)) for s in fam.subjects]
    assert len(set(fam.subjects)) == n_entities and len(set(ids)) == n_entities
    for i, row in enumerate(ids):
        assert len(row) >= 4 and 2 not in row and fam.tokenizer.decode(row) == fam.subjects[i]
        assert any(j != i and other[:-1] == row[:-1] and len(other) == len(row) for j, other in enumerate(ids))
    res = fam.subject_resolution()
    assert res["unique_before_last"] == 0.0 and res["mean_resolving_token"] == res["mean_tokens"]
    assert FactsTask(n_entities=n_entities, n_attributes=8, seed=5, names="families").subjects == fam.subjects


def test_family_world_facts_and_templates_stay_well_formed():
    fam = FactsTask(n_entities=12, n_attributes=8, seed=2, names="families")
    assert len(fam.facts) == 12 * 6 and [f.subject for f in fam.facts[::6]] == fam.subjects
    fact = fam.facts[13]
    prompts = fam.prompts(fact) + fam.prompts(fact, "paraphrase")
    enc = encode_prompts(task_tokenizer(fam), prompts, [fact.subject] * len(prompts))
    for i, prompt in enumerate(prompts):   # the subject span is the whole name, not a sibling's prefix of it
        row = enc["tokens"][i]
        assert fam.tokenizer.decode(row[: enc["lengths"][i]]) == prompt
        assert fam.tokenizer.decode(row[enc["subject_start"][i]: enc["subject_end"][i]]) == fact.subject
    ev = fam.eval_set(0)
    assert fam.eval_metrics(ev["targets"], ev) == {"train_fact_acc": 1.0, "paraphrase_acc": 1.0}
    b = fam.batch(0, 0, 4)
    assert b["tokens"].shape == (4, fam.seq_len) and (b["tokens"][:, 0] == BOS).all()


def test_subject_resolution_counts_leading_tokens():
    from ffnkv.data.facts import subject_resolution

    res = subject_resolution([[1, 2, 3], [1, 2, 4], [5, 6, 7], [5, 8, 9]])
    assert res["unique_before_last"] == 0.5 and res["unique_after"] == {1: 0.0, 2: 0.5, 3: 1.0}
    assert res["mean_resolving_token"] == 2.5
    # the random world tells most names apart before their last token (issue 20: 98% by the second of 4–5)
    assert FactsTask(n_entities=100).subject_resolution()["unique_before_last"] > 0.9
