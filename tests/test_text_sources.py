"""Data a user brings to the text preset (docs/data.md): text files by FFNKV_TEXT_FILES or data.files (paths or
globs), an array_record file and a prepared tfds dataset, each by one override and each with its own tiny data."""
import numpy as np
import pytest

from cli.main import main
from ffnkv.data.text import write_array_record
from ffnkv.errors import ConfigError, FfnkvError
from ffnkv.io.run import load_metrics
from train.config import apply_overrides, load_config_file, resolve

WORDS = "the cat dog sat on a mat and ran to house garden tree river stone bird sings".split()


def _documents(n=300, seed=0, tag=""):
    rng = np.random.default_rng(seed)
    return [" ".join([tag, *rng.choice(WORDS, 10)]).strip() + " ." for _ in range(n)]


def _text_file(path, docs):
    path.write_text("\n\n".join(docs) + "\n")
    return path


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FFNKV_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("FFNKV_TEXT_FILES", raising=False)
    return tmp_path


def _task(*overrides):
    return resolve(apply_overrides(load_config_file("text"), list(overrides) + ["data.seq_len=16"]))[1]


def test_text_files_by_environment_glob_or_override(data_home, monkeypatch):
    a = _text_file(data_home / "a.txt", _documents(seed=1))
    b = _text_file(data_home / "b.txt", _documents(seed=2))
    monkeypatch.setenv("FFNKV_TEXT_FILES", str(data_home / "*.txt"))
    assert _task().files == (str(a), str(b))
    monkeypatch.delenv("FFNKV_TEXT_FILES")
    assert _task(f"data.files=['{data_home}/*.txt']").files == (str(a), str(b))  # a glob in data.files
    assert _task(f"data.files=['{b}']").files == (str(b),)
    with pytest.raises(FfnkvError, match=r"pattern .*\*\.md' matches no regular file"):
        _task(f"data.files=['{data_home}/*.md']")


def test_array_record_file_needs_one_override(data_home):
    path = data_home / "corpus.array_record"
    assert write_array_record(_documents(), path) == 300
    task = _task(f"data.array_record={path}")
    assert task.files == () and task.meta["source"]["array_record"] == str(path) and task.meta["n_documents"] == 300
    with pytest.raises(ConfigError, match="exactly one"):  # two sources named together are refused
        _task(f"data.array_record={path}", f"data.files=['{path}']")


def _tiny_tfds(data_dir, docs):
    """A tfds dataset built locally (no download, no TensorFlow) in array_record format, as `tfds build` would."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class FfnkvTinyCorpus(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {"body": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            yield from ((i, {"body": d}) for i, d in enumerate(docs))

    FfnkvTinyCorpus(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return "ffnkv_tiny_corpus"


def test_prepared_tfds_dataset_needs_one_override(data_home):
    name = _tiny_tfds(data_home / "tfds", _documents())
    task = _task(f"data.tfds_name={name}", f"data.tfds_data_dir={data_home / 'tfds'}", "data.text_key=body")
    assert task.files == () and task.meta["source"]["tfds_name"] == name and task.meta["n_documents"] == 300
    assert "cat" in task.tokenizer.decode(np.asarray(task.tokens[:100]))


@pytest.mark.slow
def test_train_on_an_array_record_file_from_the_command_line(data_home, capsys):
    path = data_home / "corpus.array_record"
    write_array_record(_documents(), path)
    run = data_home / "run"
    argv = ["train", "text", "--out", str(run), "--no-progress", "--set", f"data.array_record={path}"]
    small = ["data.seq_len=16", "data.vocab_size_target=300", "model.n_layers=1", "model.d_ff=64", "steps=4",
             "eval_every=4", "ckpt_every=4", "log_every=2", "batch_size=8"]
    assert main(argv + [x for s in small for x in ("--set", s)]) == 0
    assert [r["step"] for r in load_metrics(run) if "eval/loss" in r] == [0, 4]
    assert (run / "loss.png").is_file() and (run / "metrics.csv").is_file()
