"""condcomp: the shared data contract, purity, eval/train disjointness, per-op accuracy."""
import numpy as np
import pytest

from ffnkv.data import make_task
from ffnkv.data.condcomp import ALL_OPS, accuracy_per_op_from_pred
from ffnkv.errors import ConfigError


@pytest.fixture
def task():
    return make_task("condcomp", n_operands=3, modulus=7, ops=("SUM", "MAX", "MIN", "RANGE"), n_eval=128)


def test_contract_fields(task):
    b = task.batch(0, 3, 32)
    T = task.seq_len
    assert b["tokens"].shape == b["targets"].shape == b["weights"].shape == (32, T)
    assert b["tokens"].dtype == b["targets"].dtype == np.int32 and b["weights"].dtype == np.float32
    np.testing.assert_array_equal(b["weights"][:, -1], 1.0)
    assert b["weights"][:, :-1].sum() == 0
    np.testing.assert_array_equal(b["targets"][:, -1], b["target"])
    np.testing.assert_array_equal(b["targets"][:, :-1], b["tokens"][:, 1:])
    assert (b["tokens"] < task.vocab_size).all() and (b["tokens"][:, -1] == task.vocab_size - 1).all()


# the answer of each op on one row of operands, written out independently of the task's vectorised rule
ANSWER = {"SUM": lambda xs: sum(xs) % 7, "MAX": max, "MIN": min, "RANGE": lambda xs: max(xs) - min(xs)}


def test_answers_follow_the_op(task):
    b = task.batch(1, 0, 256)
    for i, op in enumerate(task.ops):
        rows = b["op"] == i
        assert rows.any()
        assert (b["tokens"][rows, 0] == task.op_token(op)).all()
        expected = [ANSWER[op](xs.tolist()) for xs in b["tokens"][rows, 1:-1]]
        np.testing.assert_array_equal(b["target"][rows], expected)


def test_pure_function_of_seed_and_step(task):
    a, b, c = task.batch(0, 5, 16), task.batch(0, 5, 16), task.batch(0, 6, 16)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["tokens"], c["tokens"])


def test_eval_never_in_training(task):
    ev = {tuple(r) for r in task.eval_set(0)["tokens"]}
    assert len(ev) == 128
    seen = {tuple(r) for s in range(50) for r in task.batch(0, s, 64)["tokens"]}
    assert not ev & seen


def test_accuracy_per_op(task):
    ev = task.eval_set(0)
    logits = np.eye(task.vocab_size)[ev["target"]]
    logits[ev["op"] == 0] = np.roll(logits[ev["op"] == 0], 1, axis=-1)
    acc = accuracy_per_op_from_pred(logits.argmax(-1), ev["target"], ev["op"], task.ops)
    assert acc["SUM"] == 0.0 and acc["MAX"] == acc["MIN"] == acc["RANGE"] == 1.0
    pred_BT = np.zeros_like(ev["tokens"])
    pred_BT[:, -1] = ev["target"]
    assert task.eval_metrics(pred_BT, ev)["acc/all"] == 1.0


def test_bad_config():
    with pytest.raises(ConfigError):
        make_task("condcomp", ops=("SUM", "DIV"))
    with pytest.raises(ConfigError):
        make_task("condcomp", nope=1)
    with pytest.raises(ConfigError):
        make_task("nosuchtask")
    assert set(ALL_OPS) >= {"SUM", "MAX", "MIN"}


# ---- the plateau rule (studies.condcomp.Plateau, issue 20) ---------------------------------------------------
def _evals(curve_by_op: dict, every: int = 100) -> list[dict]:
    n = len(next(iter(curve_by_op.values())))
    return [{"step": i * every, "eval/loss": 1.0, **{f"eval/acc/{op}": float(c[i]) for op, c in curve_by_op.items()}}
            for i in range(n)]


def test_plateau_stops_on_a_plateau_and_not_before():
    from studies.condcomp import Plateau, end_slope

    rule = Plateau(delta=0.01, window=5, min_steps=1000)
    rising = np.minimum(1.0, np.linspace(0.08, 1.3, 31))          # saturates at step 1800
    flat = np.full(31, 1.0)
    stop = rule.stop_step(_evals({"SUM": rising, "MAX": flat}))
    first_one = int(np.argmax(rising >= 1.0)) * 100
    assert stop == first_one + 5 * 100                            # five flat evals after the last gain
    assert rule.stop_step(_evals({"SUM": np.linspace(0.1, 0.9, 31), "MAX": flat})) is None   # still rising: cap
    assert rule.stop_step(_evals({"SUM": np.full(31, 0.08)})) == 1000   # flat from the start: not before min_steps
    # a rise after a flat stretch longer than the window is cut at min_steps: min_steps is what guards it
    late = np.concatenate([np.full(12, 0.08), np.linspace(0.08, 1.0, 10), np.full(9, 1.0)])
    assert rule.stop_step(_evals({"SUM": late})) == 1000          # the window of 5 evals at step 1000 is flat
    assert Plateau(min_steps=1300).stop_step(_evals({"SUM": late})) == (21 + 5) * 100
    # noise below delta around a level is a plateau; one op still rising keeps training
    noisy = 0.9 + 0.004 * np.sin(np.arange(31))
    assert rule.stop_step(_evals({"SUM": noisy})) == 1000
    assert rule.stop_step(_evals({"SUM": noisy, "MIN": np.linspace(0.2, 1.0, 31)})) is None
    np.testing.assert_allclose(end_slope(list(range(0, 600, 100)), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 5), 1.0)
    with pytest.raises(ConfigError):
        Plateau(window=0)


def test_plateau_decision_resumed_from_any_eval_is_the_same():
    """The loop asks the rule after every eval; a resumed run asks it on the records read back from
    metrics.jsonl and then on each new one. From every resume point the decision is the uninterrupted one."""
    import json

    from studies.condcomp import Plateau

    rule = Plateau(delta=0.02, window=3, min_steps=500)
    rng = np.random.default_rng(0)
    curve = np.minimum(1.0, np.linspace(0.1, 1.4, 40)) - rng.uniform(0, 0.015, 40)
    records = _evals({"SUM": curve, "MAX": np.ones(40)})
    uninterrupted = rule.stop_step(records)
    assert uninterrupted is not None
    stop_index = [r["step"] for r in records].index(uninterrupted)
    for cut in range(1, stop_index + 1):                          # resumed at the checkpoint of eval `cut - 1`
        history = [json.loads(json.dumps(r)) for r in records[:cut]]
        decided = None
        for record in records[cut:]:
            history.append(record)
            if rule(history):
                decided = record["step"]
                break
        assert decided == uninterrupted


@pytest.mark.slow
def test_plateau_decision_is_the_same_on_resume(tmp_path):
    """A run stopped by the rule, resumed from an earlier checkpoint, stops at the same step with the same
    records; re-running a stopped run trains no further."""
    import shutil

    from _train_helpers import tiny_config

    from ffnkv.io.run import load_metrics
    from studies.condcomp import Plateau
    from train.loop import train

    cfg = tiny_config(steps=40, eval_every=5, ckpt_every=5, keep=10)
    rule = Plateau(delta=0.99, window=1, min_steps=15)             # a gain of 0.99 in one eval never happens here
    first = train(cfg, tmp_path / "a", stop_rule=rule)
    assert first["step"] == 15 and first["stopped_by_rule"]
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for step in (10, 15):
        shutil.rmtree(tmp_path / "b" / "checkpoints" / str(step))
    resumed = train(cfg, tmp_path / "b", stop_rule=rule)           # from step 5, records of steps 0 and 5 read back
    assert resumed["step"] == 15 and resumed["stopped_by_rule"]
    evals = lambda d: [r for r in load_metrics(d) if "eval/loss" in r]
    assert evals(tmp_path / "b") == evals(tmp_path / "a")
    again = train(cfg, tmp_path / "a", stop_rule=rule)
    assert again["step"] == 15 and again["stopped_by_rule"] and evals(tmp_path / "a") == evals(tmp_path / "b")
