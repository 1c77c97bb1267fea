"""studies.editing.run, notebook-style, on a pretrained-format model (a tiny random llama written as a
Hugging Face dir) and on a trained facts run: one function for both."""
import dataclasses
import json

import pytest

from analysis.memit import MEMIT_HPARAMS
from analysis.rome import ROME_HPARAMS
from ffnkv.data.counterfact import FactRecord, world_fact_records
from ffnkv.io.load import load_model
from ffnkv.prompts import encode_prompts
from studies import editing
from studies import facts as FS

SPECIALS = ["[PAD]", "[UNK]", "<s>", "</s>"]
WORDS = SPECIALS + ["the", "a", "sat", "on", "in", "is", "of", "mat", "red", "blue", "cat", "dog", "owl", "fox",
                    "bee", "cow", "pig", "hen", "ant", "elk", "yak", "emu", "Paris", "Rome", "Oslo", "Lima"]
SUBJECTS = WORDS[14:26]
QUICK = dict(n_edits=3, n_unrelated=3, n_calibration=2, lambda_sweep=(1.0,), delta_check=2, cov_batches=2,
             cov_batch_size=8, rome=dataclasses.replace(ROME_HPARAMS, steps=3, prefixes=((3, 2),)),
             memit=dataclasses.replace(MEMIT_HPARAMS, steps=3, prefixes=((3, 2),)))


def _llama_dir(path):
    torch = pytest.importorskip("torch", reason="the tiny Hugging Face model needs the 'hf' extra")
    transformers = pytest.importorskip("transformers", reason="the tiny Hugging Face model needs the 'hf' extra")
    from tokenizers import Tokenizer, models, pre_tokenizers

    config = transformers.LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).eval().save_pretrained(path, safe_serialization=True)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path / "tokenizer.json"))
    return load_model(path)


def _records_the_model_knows(model):
    """One record per subject whose top-1 continuation of "{s} sat on the" is a plain word: that word is its
    target_true, so the model 'knows' it by construction."""
    prompts = [f"{s} sat on the" for s in SUBJECTS]
    top = FS.top1(model.params, model.cfg, encode_prompts(model.tokenizer, prompts, SUBJECTS))
    records = []
    for i, (s, t) in enumerate(zip(SUBJECTS, top)):
        if WORDS[t] in SPECIALS:
            continue
        new = next(w for w in WORDS[4:] if w != WORDS[t])
        others = [o for o in SUBJECTS if o != s][:2]
        records.append(FactRecord(i, "{} sat on the", s, "R1", WORDS[t], new,
                                  (f"the {s} sat on the", f"a {s} sat on the"),
                                  tuple(f"{o} sat on the" for o in others)))
    return records


def _check(result, n_layers, first_ratio=1.0):
    for key in ("unedited", "rome_single", "rome_sequential", "memit"):
        assert set(result[key]) >= {"ES", "PS", "NS", "S", "unrelated_acc"}
        assert all(0.0 <= result[key][m] <= 1.0 for m in ("ES", "PS", "NS", "S"))
    assert result["unedited"]["ES"] == 0.0                         # unedited: P(true) > P(new) on every known fact
    assert 0 <= result["layer"] < n_layers
    rule = result["layer_rule"]
    assert set(rule["S_by_layer"]) == set(rule["per_edit_by_layer"]) == {str(l) for l in range(n_layers)}
    assert all(len(p[k]) == len(rule["calibration"]) == result["n_calibration"]
               for p in rule["per_edit_by_layer"].values() for k in ("ES", "PS", "NS"))
    lam = result["memit_lambda_rule"]
    assert lam["lambda"] == pytest.approx(lam["ratio"] * lam["mean_key_mahalanobis"])
    assert [p["lambda_ratio"] for p in result["memit_lambda_sweep"]][0] == pytest.approx(first_ratio, rel=1e-5)
    json.dumps(result)                                             # JSON-able


@pytest.mark.slow
def test_editing_study_on_a_pretrained_format_model(tmp_path):
    model = _llama_dir(tmp_path / "llama")
    records = _records_the_model_knows(model)
    assert len(records) >= 6
    (tmp_path / "text.txt").write_text(" ".join(WORDS[4:] * 20))
    s = editing.EditSettings(**QUICK, cov_text=str(tmp_path / "text.txt"), cov_tokens=200, cov_window=16)
    result = editing.run(model, records, s)
    _check(result, 2)
    assert "text.txt" in result["covariance"]["source"] and result["covariance"]["n_positions"] > 0


@pytest.mark.slow
def test_editing_study_on_a_trained_facts_run(tmp_path):
    from ffnkv.config import ModelConfig
    from train.config import DataConfig, OptimConfig, TrainConfig
    from train.loop import train

    cfg = TrainConfig(model=ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, ffn="gelu"),
                      data=DataConfig("facts", {"n_entities": 6, "n_relations": 2, "n_attributes": 4, "loss": "all",
                                                "names": "families"}),
                      optim=OptimConfig(lr=5e-3, warmup_steps=10), steps=300, batch_size=32, eval_every=300,
                      ckpt_every=300, keep=1, log_every=100, seed=0, progress=False)
    train(cfg, tmp_path / "run")
    model = load_model(tmp_path / "run")
    records = FS.model_facts(model, training_paraphrases=False)  # the seam `ffnkv edit` reads facts through
    assert [r.paraphrase_prompts for r in records] == [r.paraphrase_prompts for r in
                                                       sorted(world_fact_records(model.run.task),
                                                              key=lambda r: r.case_id)]
    result = editing.run(model, records, editing.EditSettings(**(QUICK | {"lambda_sweep": None, "sweep_points": 3})))
    _check(result, 2, first_ratio=result["memit_lambda_rule"]["readings"]["measured"])
    assert "padding masked" in result["covariance"]["source"]
    sweep = result["memit_lambda_sweep"]                           # the default sweep: both readings, then λ = 15000
    readings = result["memit_lambda_rule"]["readings"]
    assert [p["lambda_ratio"] for p in sweep[:3]] == pytest.approx(
        [readings["measured"], (readings["measured"] * readings["d_ff"]) ** 0.5, readings["d_ff"]], rel=1e-5)
    assert sweep[-1]["lambda"] == pytest.approx(15000.0) and sweep[-1]["reading"] == "paper λ = 15000"
    assert [p["reading"] for p in sweep[:3]] == ["E[kᵀC⁻¹k] = 4.7·d_ff", "", "E[kᵀC⁻¹k] = d_ff"]
    # the rule's λ is the d_ff reading: the main MEMIT row and that sweep row are the same program's output
    assert result["memit"]["S"] == sweep[2]["S"] and result["memit"]["lambda"] == pytest.approx(sweep[2]["lambda"])


def test_lambda_sweep_report_renders_the_readings(tmp_path):
    """The editing report's sweep table and figure: one row per λ, each reading named, the figure written."""
    from studies.report.edit_figures import edit_markdown, plot_lambda_sweep

    scores = {"ES": 0.5, "PS": 0.4, "NS": 0.9, "S": 0.55, "EM": 0.1, "PM": 0.1, "NM": 0.2, "unrelated_acc": 0.8}
    rows = [scores | {"lambda": 10.0 * r, "lambda_ratio": r, "band_realised": 0.9, "reading": name}
            for r, name in ((0.078, "E[kᵀC⁻¹k] = 4.7·d_ff"), (0.2, ""), (0.461, "E[kᵀC⁻¹k] = d_ff"))]
    rows.append(scores
                | {"lambda": 15000.0, "lambda_ratio": 1500.0, "band_realised": 0.01, "reading": "paper λ = 15000"})
    result = {"model": "m", "ffn": "relu", "n_edits": 3, "n_known_facts": 5, "n_facts": 6, "n_unrelated": 2, "layer": 1,
              "layer_rule": {"rule": "given"}, "memit_layers": [0, 1], "token": "subject_last", "constraint": "bare",
              "memit": scores, "memit_lambda_sweep": rows,
              "memit_lambda_rule": {"lambda": 4.61, "rule": "r", "ratio": 0.461, "mean_key_mahalanobis": 10.0,
                                    "d_ff": 8, "readings": {"d_ff": 0.461, "measured": 0.078, "key_scale": 4.7},
                                    "key_scale_here": 1.25}}
    text = edit_markdown(result)
    assert "r = 0.461 if GPT-J's keys" in text and "r = 0.078 if 4.7·d_ff" in text and "1.25·d_ff" in text
    assert sum("E[kᵀC⁻¹k]" in line for line in text.splitlines() if line.startswith("|")) == 2
    assert "paper λ = 15000" in text
    plot_lambda_sweep(result, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0
