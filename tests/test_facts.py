"""The facts corpus: known truth, multi-token names, templates, spans, batches, determinism."""
import numpy as np
import pytest

from ffnkv.data import make_task
from ffnkv.data.facts import BOS, PAD, FactsTask
from ffnkv.errors import ConfigError, FfnkvError


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
        rel = task._relation(fact.relation)[1]
        assert fact.counterfactual != fact.attribute and fact.counterfactual in rel.attributes
    with pytest.raises(FfnkvError):
        task.attribute_id("Mars")


def test_encode_prompts_spans_and_predict_pos(task):
    fact = task.facts[7]
    prompts = task.prompts(fact) + task.prompts(fact, "paraphrase")
    enc = task.encode_prompts(prompts)
    assert enc["tokens"].dtype == np.int32 and (enc["tokens"][:, 0] == BOS).all()
    for i, prompt in enumerate(prompts):
        row = enc["tokens"][i]
        assert task.tokenizer.decode(row[: enc["lengths"][i]]) == prompt
        assert task.tokenizer.decode(row[enc["subject_start"][i]: enc["subject_end"][i]]) == fact.subject
        assert (row[enc["lengths"][i]:] == PAD).all()
        assert enc["predict_pos"][i] == enc["lengths"][i] - 1
    with pytest.raises(FfnkvError):
        task.encode_prompts(["nobody was born in"])


def test_eval_set_matches_encode_prompts(task):
    ev = task.eval_set(0)
    n_templates = 7
    assert len(ev["tokens"]) == len(task.facts) * n_templates
    assert ev["split"].sum() == len(task.facts) * 2
    for i in (0, 6, 50):
        fact = task.facts[ev["fact"][i]]
        split = "paraphrase" if ev["split"][i] else "train"
        prompt = (task.prompts(fact, "train") + task.prompts(fact, "paraphrase"))[ev["template"][i]]
        enc = task.encode_prompts([prompt])
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
