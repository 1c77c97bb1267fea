"""Text corpora: BPE tokenizer, memmap, WikiText raw files, array_record, tfds errors, pure batches."""
import json

import numpy as np
import pytest

from ffnkv.data import make_task
from ffnkv.data.text import TextTask, read_text_files, read_tfds, write_array_record
from ffnkv.errors import FfnkvError

WORDS = "the cat dog sat on a mat and ran to house garden tree river stone bird sings loudly quietly".split()


def _write_corpus(path, n_lines=300, seed=0, wikitext=False):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_lines):
        if wikitext and i % 50 == 0:
            lines += ["", f" = Article {i} = ", ""]
        words = rng.choice(WORDS, rng.integers(5, 15))
        lines.append(" " + " ".join(words) + (" 1 @,@ 000 well @-@ known ." if wikitext else " ."))
        if wikitext or i % 10 == 9:
            lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    files = [str(_write_corpus(root / "a.txt", seed=0)), str(_write_corpus(root / "b.txt", seed=1))]
    return make_task("text", cache_dir=str(root / "cache"), files=files, vocab_size_target=300, seq_len=16,
                     eval_fraction=0.1, n_eval=8)


def test_prepared_memmap_and_tokenizer(task):
    meta = json.loads((task.cache_dir and open(f"{task.cache_dir}/meta.json").read()))
    assert meta["n_tokens"] == len(task.tokens) > 1000
    assert task.vocab_size == task.tokenizer.vocab_size <= 300
    text = "the cat sat on a mat ."
    assert task.tokenizer.decode(task.tokenizer.encode(text)) == text
    assert (np.asarray(task.tokens) < task.vocab_size).all()
    assert (np.asarray(task.tokens) == task.tokenizer.eos_id).sum() == 60  # one per paragraph


def test_batches_are_pure_windows(task):
    a, b = task.batch(0, 3, 4), task.batch(0, 3, 4)
    assert all((a[k] == b[k]).all() for k in a)
    assert a["tokens"].shape == a["targets"].shape == (4, 16) and a["tokens"].dtype == np.int32
    assert (a["tokens"][:, 1:] == a["targets"][:, :-1]).all() and (a["weights"] == 1).all()
    corpus = np.asarray(task.tokens)
    for row in a["tokens"]:
        hits = [s for s in range(len(corpus) - 16) if (corpus[s:s + 16] == row).all()]
        assert hits and min(hits) < task.n_train
    ev = task.eval_set(0)
    assert ev["tokens"].shape == (8, 16)


def test_windows_view(task):
    w = task.windows(max_tokens=200)
    assert isinstance(w["tokens"], np.memmap) and w["tokens"].shape == (12, 16)
    flat = np.asarray(task.tokens)
    assert (w["tokens"].reshape(-1) == flat[:192]).all() and (w["targets"].reshape(-1) == flat[1:193]).all()


def test_wikitext_escapes_and_array_record(tmp_path):
    path = _write_corpus(tmp_path / "wiki.train.raw", 60, wikitext=True)
    lines = list(read_text_files([path], wikitext=True))
    assert lines[0] == "= Article 0 =" and lines[1].endswith("1,000 well-known .") and "" not in lines
    assert len(lines) == 60 + 2 and "\n" not in "".join(lines)
    assert write_array_record(lines, tmp_path / "wiki.array_record") == len(lines)
    t = TextTask(cache_dir=str(tmp_path / "c"), array_record=str(tmp_path / "wiki.array_record"),
                 vocab_size_target=280, seq_len=8)
    assert "well-known" in t.tokenizer.decode(np.asarray(t.tokens[:200]))


def test_user_errors_leave_nothing(tmp_path):
    with pytest.raises(FfnkvError, match="does not exist"):
        TextTask(cache_dir=str(tmp_path / "c"), files=[str(tmp_path / "missing.txt")])
    assert not (tmp_path / "c" / "meta.json").exists()
    with pytest.raises(FfnkvError, match="not prepared"):
        next(read_tfds("definitely_not_a_dataset_xyz", data_dir=str(tmp_path)))
    with pytest.raises(FfnkvError, match="exactly one"):
        TextTask(cache_dir=str(tmp_path / "d"))
    small = _write_corpus(tmp_path / "s.txt", 3)
    with pytest.raises(FfnkvError, match="too few"):
        TextTask(cache_dir=str(tmp_path / "e"), files=[str(small)], vocab_size_target=280, seq_len=64)


def test_default_cache_dir_and_source_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("FFNKV_DATA", str(tmp_path / "data"))
    a = _write_corpus(tmp_path / "a.txt", 80)
    t = TextTask(files=[str(a)], vocab_size_target=280, seq_len=8)
    assert t.cache_dir.startswith(str(tmp_path / "data" / "text"))
    b = _write_corpus(tmp_path / "b.txt", 80, seed=1)
    assert TextTask(files=[str(b)], vocab_size_target=280, seq_len=8).cache_dir != t.cache_dir
    with pytest.raises(FfnkvError, match="another source"):
        TextTask(cache_dir=t.cache_dir, files=[str(b)], vocab_size_target=280, seq_len=8)
    assert TextTask(cache_dir=t.cache_dir, seq_len=8).vocab_size == t.vocab_size  # a prepared cache alone


def test_eval_split_is_random_whole_documents_of_every_file(tmp_path):
    """Documents are stored in a seeded random order: the held-out tail holds paragraphs of both files (not the
    end of the last one), starts at a document boundary, and the same source gives the same split."""
    a = _write_corpus(tmp_path / "a.txt", seed=0)
    b = _write_corpus(tmp_path / "b.txt", seed=1)
    tagged = []
    for path, tag in ((a, "alpha"), (b, "omega")):  # every paragraph of a file names its file
        mine = [f"{tag} {p}" for p in read_text_files([path])]
        path.write_text("\n\n".join(mine) + "\n")
        tagged += mine
    kw = dict(files=[str(a), str(b)], vocab_size_target=300, seq_len=16, eval_fraction=0.2)
    t = TextTask(cache_dir=str(tmp_path / "c"), **kw)
    tokens, eos = np.asarray(t.tokens), t.tokenizer.eos_id
    assert tokens[t.n_train - 1] == eos and abs(t.n_train - 0.8 * len(tokens)) < 0.1 * len(tokens)
    split = lambda part: t.tokenizer.decode(part).split(t.tokenizer.decode([eos]))[:-1]
    held = split(tokens[t.n_train:])
    assert sorted(held + split(tokens[:t.n_train])) == sorted(tagged)
    assert {d.split()[0] for d in held} == {"alpha", "omega"} and held != tagged[-len(held):]
    again = TextTask(cache_dir=str(tmp_path / "d"), **kw)
    assert again.n_train == t.n_train and (np.asarray(again.tokens) == tokens).all()
    for row in t.eval_set(0)["tokens"]:  # evaluation windows lie in the held-out documents
        assert any((tokens[s:s + 16] == row).all() for s in range(t.n_train, len(tokens) - 15))
