"""Notebook-style: the knowledge and memories studies called from Python, through the same functions, on a
tiny trained facts run and on a tiny pretrained-format model (``tests/pretrained_fixture``: a random llama in
Hugging Face format)."""
import json

import jax
import numpy as np
import pytest
from _train_helpers import train_facts_run
from tolerance import assert_f32_close

from ffnkv.io.load import load_model
from studies import facts as FS
from studies import knowledge, memories, verdicts
from studies.report import knowledge as knowledge_report
from studies.report import memories as memories_report

SMALL = knowledge.KnowledgeSettings(n_facts=3, steps=2, samples=2, unrelated=2, examples=1, value_random=2,
                                    kinds=("resid", "mlp", "resid_sever_mlp"), cell_batch=4)
MEM = memories.MemoriesSettings(max_tokens=400, k=3, batch_size=8, n_shuffles=5, removal_keys=4, sample_keys=2,
                                clusters=2, top_n=3, window=12)
RECORDS = [{"case_id": i, "requested_rewrite": {"prompt": p, "subject": s, "relation_id": r,
                                               "target_true": {"str": t}, "target_new": {"str": "London"}},
            "paraphrase_prompts": para, "neighborhood_prompts": near}
           for i, (p, s, r, t, para, near) in enumerate([
               ("the capital of {} is", "France", "capital", "Paris", ["France , capital city is"],
                ["the capital of Spain is"]),
               ("the capital of {} is", "Italy", "capital", "Rome", ["Italy , capital city is"],
                ["the capital of England is"]),
               ("the language of {} is", "Japan", "language", "Tokyo", ["Japan , language is"],
                ["the language of Spain is"]),
               ("{} is located in", "Berlin", "located", "Germany", ["the city Berlin is located in"],
                ["Madrid is located in"])])]
TEXTS = ["the capital of France is Paris .", "Rome is the capital of Italy .", "Tokyo is located in Japan ,",
         "the language of Spain , the city of Madrid ."]


@pytest.fixture(scope="module")
def facts_run(tmp_path_factory):
    model = load_model(train_facts_run(tmp_path_factory.mktemp("facts")))
    return model, FS.model_facts(model)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    from pretrained_fixture import write_tiny_llama

    path = write_tiny_llama(tmp_path_factory.mktemp("llama") / "tiny")
    (path.parent / "facts.json").write_text(json.dumps(RECORDS))
    model = load_model(path)
    return model, FS.model_facts(model, path.parent / "facts.json")


def test_run_facts_are_records_of_the_world():
    from ffnkv.data.facts import FactsTask

    task = FactsTask(n_entities=4, n_relations=2, n_attributes=3)
    records = FS.run_facts(task)
    kept = [r.case_id for r in records]
    alone = [i for i, f in enumerate(task.facts)  # facts no other subject shares have no neighbourhood: left out
             if not any(g.relation == f.relation and g.attribute == f.attribute and g.subject != f.subject
                        for g in task.facts)]
    assert kept == [i for i in range(len(task.facts)) if i not in alone] and records[1].prompt.count("{}") == 1
    fact = task.facts[1]
    prompts = task.prompts(fact, "train") + task.prompts(fact, "paraphrase")
    assert sorted((records[1].text,) + records[1].paraphrase_prompts) == sorted(prompts)
    chosen = FS.select(records, np.ones(len(records), bool), 3, 0, False)
    assert len(chosen) == 3 and len({records[i].relation_id for i in chosen}) == 2


def test_layer_baselines_and_sites():
    attr_NLF = np.zeros((2, 3, 4))
    attr_NLF[0, 0, 0], attr_NLF[0, 2, 1], attr_NLF[1, 2, 3], attr_NLF[1, 1, 0] = 3.0, 1.0, 2.0, -5.0
    base = knowledge.layer_baselines(attr_NLF, [True, True, False])
    np.testing.assert_allclose(base["attribution_mass"], [0.375, 0.0, 0.625])
    np.testing.assert_allclose(base["neuron_count"], [0.5, 0.5, 0.0])
    avg = {"mlp": {"last_subject": {"mean": [0.1, 0.4, 0.2], "ci": [0.0, 0.05, 0.0]},
                   "last": {"mean": [0.0, 0.1, 0.9], "ci": [0.0, 0.0, 0.02]}}}
    assert knowledge.sites(avg, "mlp", (0, 2, 4)) == {  # every second layer traced: sites name model layers
        "early": {"category": "last_subject", "peak": 0.4, "ci": 0.05, "layer": 2},
        "late": {"category": "last", "peak": 0.9, "ci": 0.02, "layer": 4}}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["facts_run", "llama_dir"])
def test_knowledge_study_on_any_model(which, request, tmp_path):
    model, records = request.getfixturevalue(which)
    result = knowledge.run(model, records, SMALL)
    json.dumps(result)
    attr, trace = result["attribution"], result["tracing"]
    summary, L = attr["summary"], model.cfg.n_layers
    assert summary["n_facts"] == 3 and len(result["screening"]["chosen"]) == 3
    assert sum(summary["layer_counts"]) == sum(len(f["neurons"]) for f in attr["facts"])
    np.testing.assert_allclose(sum(summary["layer_baselines"]["attribution_mass"]), 1.0, rtol=1e-5)
    for fact in attr["facts"]:
        own = np.bincount([l for l, _ in fact["neurons"]], minlength=L)
        assert np.bincount([l for l, _ in fact["random_neurons"]], minlength=L).tolist() == own.tolist()
    assert trace["averaged_over"] == ("known" if any(f["known"] for f in trace["facts"]) else "all")
    every = trace["all_facts"]
    assert every["n_facts"] == 3
    np.testing.assert_allclose(every["total_effect"]["mean"],
                               np.mean([f["p_clean"] - f["p_corrupt"] for f in trace["facts"]]), rtol=1e-5)
    assert len(every["mlp"]["last"]["mean"]) == L and trace["config"]["window"] == min(10, L)
    known = trace["known_facts"]  # per-fact rows, the items of the early-site verdict's interval
    assert len(known["mlp"]["last_subject"]["facts"]) == len(known["total_effect"]["facts"]) == known["n_facts"]
    row = verdicts.meng_tracing(trace)
    assert [t["rule"] for t in row["tests"]] == ["meng.early_site", "meng.early_site_share"]
    assert all(t["lo"] is not None for t in row["tests"])
    files = knowledge_report.write(result, tmp_path)
    assert (tmp_path / "attribution.json").is_file() and (tmp_path / "tracing_categories.png").is_file()
    assert len(files) == len(set(files))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["facts_run", "llama_dir"])
def test_memories_study_on_any_model(which, request, tmp_path):
    model, _ = request.getfixturevalue(which)
    texts = TEXTS if model.run is None else None
    data = memories.corpus(model, MEM, texts)
    if texts:
        assert len(data["tokens"]) == len(TEXTS) and data["protect"] == int(model.tokenizer.add_bos)
        assert model.tokenizer.decode(data["tokens"][0][data["mask"][0]]) in TEXTS[0]
    result = memories.run(model, data, MEM)
    json.dumps(result)
    mem = result["memories"]
    L = model.cfg.n_layers
    assert len(mem["agreement"]["baseline_sd"]) == L and mem["agreement"]["n_shuffles"] == MEM.n_shuffles
    assert len(mem["composition"]["zero_agreement_shuffled"]) == L
    assert mem["n_tokens"] == int(np.asarray(data["mask"]).sum())
    assert len(result["examples"]["keys"]) == L
    assert np.shape(mem["agreement"]["per_key"]["hit"]) == (L, model.cfg.width)  # the verdicts' items
    assert len(result["promotion"]["blocks"]["top1"][0]) == L
    claims = verdicts.geva_memories(mem, "m") + [verdicts.geva_promotion(result["promotion"], model.cfg.width)]
    assert all(t["lo"] is not None for c in claims for t in c["tests"])
    memories_report.write(result, tmp_path)
    assert "layer 1" in (tmp_path / "triggers.txt").read_text()


def test_shuffled_values_keep_each_layers_tokens():
    from analysis.memories import shuffled_values

    top_LF = np.arange(12).reshape(2, 6)
    shuffled_SLF = shuffled_values(top_LF, jax.random.key(0), 3)
    assert shuffled_SLF.shape == (3, 2, 6)
    assert all(sorted(shuffled_SLF[s, l]) == top_LF[l].tolist() for s in range(3) for l in range(2))


@pytest.mark.slow
def test_whole_subject_restore_equals_the_single_cell_for_a_one_token_subject():
    from conftest import random_params, small_cfg

    from analysis import tracing as TR
    from ffnkv.prompts import Prompts

    cfg = small_cfg()
    params = random_params(cfg)
    enc = Prompts(np.array([[3, 7, 9, 2, 5], [1, 2, 6, 4, 0]], np.int32), np.array([5, 4]), np.array([4, 3]),
                  np.array([4, 6]), np.array([1, 2]), np.array([2, 3]))
    span = TR.restore_subject(params, cfg, enc, noise=1.0, samples=3, seed=1)
    cells = TR.causal_trace(params, cfg, enc, noise=1.0, samples=3, window=1, kinds=("resid", "mlp"), seed=1)
    assert_f32_close(span["p_corrupt"], cells["p_corrupt"])
    for n, t in enumerate(enc.subject_start):
        assert_f32_close(span["restored"]["resid"][n], cells["restored"][n, 0, t])
        assert_f32_close(span["restored"]["mlp"][n], cells["restored"][n, 1, t])


def test_paraphrases_without_the_subject_are_left_out(tmp_path):
    from pretrained_fixture import write_tiny_llama

    from ffnkv.data.counterfact import FactRecord

    model = load_model(write_tiny_llama(tmp_path / "tiny"))
    record = FactRecord(0, "the capital of {} is", "France", "capital", "Paris", "Rome",
                        ("France , capital city is", "the capital city is"), ())
    enc, fact_N = FS.all_prompts(model.tokenizer, [record])
    assert len(enc) == 2 and fact_N.tolist() == [0, 0]
