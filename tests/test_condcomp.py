"""condcomp: the shared data contract, purity, eval/train disjointness, per-op accuracy."""
import numpy as np
import pytest

from ffnkv.data import make_task
from ffnkv.data.condcomp import ALL_OPS, _apply, accuracy_per_op
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


def test_answers_follow_the_op(task):
    b = task.batch(1, 0, 256)
    for i, op in enumerate(task.ops):
        rows = b["op"] == i
        assert rows.any()
        assert (b["tokens"][rows, 0] == task.op_token(op)).all()
        np.testing.assert_array_equal(b["target"][rows], _apply(op, b["tokens"][rows, 1:-1].astype(np.int64), 7))


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
    acc = accuracy_per_op(logits, ev["target"], ev["op"], task.ops)
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
