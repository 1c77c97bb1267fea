"""Real text: a byte-level BPE tokenizer (``tokenizers``), a token memmap, random-window batches.

Sources (nothing is downloaded at run time):
* local text files, one document per paragraph, including WikiText-103's raw files (``wiki.train.raw``:
  `` = Title = `` headings, one paragraph per line, ``@-@``-style escapes undone with ``wikitext=True``);
* a local array_record file of UTF-8 documents (``write_array_record`` builds one from text files);
* a prepared tensorflow-datasets catalog dataset read through ``tfds.data_source`` (array_record, no
  TensorFlow), e.g. ``tfds_name="wikipedia/20230601.en"`` with the text under ``text_key``.

``prepare_corpus`` trains the tokenizer and writes ``tokenizer.json``, ``tokens.bin`` and ``meta.json`` into a
cache directory (each written to a temporary name and renamed, so a failure leaves nothing half-written).
The documents (paragraphs of text files, records of array_record or tfds) are stored in a seeded random order,
so the held-out tail is a random sample of whole documents from every file, not the end of the last one.
``TextTask`` serves windows of ``seq_len + 1`` tokens: training windows start anywhere in the first
``1 - eval_fraction`` of the stored corpus (cut at the nearest document boundary), evaluation windows lie in
the held-out tail.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ffnkv.config import check_fields, ints, reals
from ffnkv.errors import ConfigError, FfnkvError

EOS = "<|endoftext|>"
CACHE_FORMAT = 4  # bump when the reading or encoding of a source changes (4: documents stored shuffled)
SHUFFLE_SEED = 0  # the order documents are stored in, so the held-out tail is random documents
_WIKITEXT_ESCAPES = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))


class TextTokenizer:
    """encode(str) -> ids, decode(ids) -> str over a trained ``tokenizers`` BPE model."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, path) -> "TextTokenizer":
        return cls(Tokenizer.from_file(str(path)))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def eos_id(self) -> int:
        return self.tokenizer.token_to_id(EOS)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_names(self) -> list[str]:
        return [self.decode([i]) for i in range(self.vocab_size)]


_HASHES: dict = {}


def content_hash(path) -> str:
    """sha256 of a file's bytes (memoised per process on path, size, mtime and inode)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise FfnkvError(f"text source {str(path)!r} does not exist; check data.files, data.array_record "
                         "or FFNKV_TEXT_FILES.") from None
    if not path.is_file():
        raise FfnkvError(f"text source {str(path)!r} is not a regular file; check data.files, data.array_record "
                         "or FFNKV_TEXT_FILES.")
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASHES:
        with open(path, "rb") as handle:
            _HASHES[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return _HASHES[key]


def read_text_files(files: Iterable, wikitext: bool = False) -> Iterator[str]:
    """Paragraphs (runs of non-blank lines, joined by newlines) of each file, one document each.

    WikiText's raw files hold one paragraph or heading per line between blank lines, so each becomes a
    document; with ``wikitext`` its tokenisation escapes (`` @-@ ``, `` @,@ ``, `` @.@ ``) are undone.
    """
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise FfnkvError(f"text file {str(path)!r} does not exist; check data.files (or FFNKV_TEXT_FILES).")
        paragraph = []
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                line = line.strip()
                if line:
                    paragraph.append(line)
                    continue
                if paragraph:
                    yield _clean("\n".join(paragraph), wikitext)
                paragraph = []
        if paragraph:
            yield _clean("\n".join(paragraph), wikitext)


def _clean(text: str, wikitext: bool) -> str:
    if wikitext:
        for escaped, plain in _WIKITEXT_ESCAPES:
            text = text.replace(escaped, plain)
    return text


def write_array_record(texts: Iterable[str], path) -> int:
    """Write each text as one UTF-8 record of an array_record file; returns the number of records."""
    from array_record.python.array_record_module import ArrayRecordWriter

    tmp = f"{path}.tmp"
    writer = ArrayRecordWriter(tmp, "group_size:1")
    count = 0
    for text in texts:
        writer.write(text.encode("utf-8"))
        count += 1
    writer.close()
    os.replace(tmp, path)
    return count


def read_array_record(path) -> Iterator[str]:
    """The UTF-8 records of a local array_record file."""
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    if not Path(path).is_file():
        raise FfnkvError(f"array_record file {str(path)!r} does not exist; build it with write_array_record.")
    source = ArrayRecordDataSource([str(path)])
    for start in range(0, len(source), 1024):
        for record in source.__getitems__(range(start, min(start + 1024, len(source)))):
            yield record.decode("utf-8")


def read_tfds(name: str, split: str = "train", data_dir=None, text_key: str = "text") -> Iterator[str]:
    """Texts of a prepared tfds catalog dataset through ``tfds.data_source`` (array_record; no TensorFlow)."""
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as error:  # tfds raises several types for a dataset that is not prepared
        raise FfnkvError(f"tfds dataset {name!r} (split {split!r}) is not prepared under data_dir={data_dir!r}: "
                         f"{str(error).splitlines()[0]}") from None
    for i in range(len(source)):
        value = source[i][text_key]
        yield value.decode("utf-8") if isinstance(value, bytes) else str(value)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> TextTokenizer:
    """Byte-level BPE (Sennrich et al. 2016; GPT-2's byte alphabet) with an end-of-text token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tokenizer)


def encode_to_memmap(tokenizer: TextTokenizer, texts: Iterable[str], path, chunk: int = 4096) -> np.ndarray:
    """Append ``text + EOS`` token ids of every text to ``path`` (uint16 when the vocabulary fits, else uint32);
    returns where each text's tokens start, then the total, ``[n_texts + 1]`` int64."""
    dtype = np.uint16 if tokenizer.vocab_size <= 2 ** 16 else np.uint32
    tmp, lengths, buffer = f"{path}.tmp", [], []
    with open(tmp, "wb") as out:
        def flush():
            for enc in tokenizer.tokenizer.encode_batch(buffer, add_special_tokens=False):
                ids = np.asarray(enc.ids + [tokenizer.eos_id], dtype)
                out.write(ids.tobytes())
                lengths.append(len(ids))
            buffer.clear()

        for text in texts:
            buffer.append(text)
            if len(buffer) >= chunk:
                flush()
        flush()
    os.replace(tmp, path)
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


def shuffle_documents(src, dst, bounds, dtype, seed: int = 0, chunk_tokens: int = 1 << 22) -> np.ndarray:
    """Copy the documents of the token file ``src`` (``bounds``: their starts, then the end) to ``dst`` in a
    seeded random order; returns the new bounds. The tail of the shuffled file is then random documents."""
    tokens = np.memmap(src, dtype=dtype, mode="r") if bounds[-1] else np.zeros(0, dtype)
    order = np.random.default_rng([seed, 0xD0C5]).permutation(len(bounds) - 1)
    lengths = np.diff(bounds)[order]
    tmp, parts, held = f"{dst}.tmp", [], 0
    with open(tmp, "wb") as out:
        for i in order:
            parts.append(tokens[bounds[i]:bounds[i + 1]])
            held += len(parts[-1])
            if held >= chunk_tokens:
                out.write(np.concatenate(parts).tobytes())
                parts, held = [], 0
        if parts:
            out.write(np.concatenate(parts).tobytes())
    del tokens
    os.replace(tmp, dst)
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


def expand_files(files) -> tuple[str, ...]:
    """``data.files`` with each glob (``corpus/*.txt``) replaced by the regular files it matches, sorted; a glob
    that matches none is an error, a plain path is kept as given (a missing one fails when it is read)."""
    out = []
    for name in files:
        name = str(name)
        if not any(c in name for c in "*?["):
            out.append(name)
            continue
        matched = sorted(p for p in glob.glob(name, recursive=True) if os.path.isfile(p))
        if not matched:
            raise FfnkvError(f"data.files pattern {name!r} matches no regular file; give text files or a glob "
                             "of them, e.g. 'corpus/*.txt'.")
        out += matched
    return tuple(out)


def _check_one_source(files, array_record, tfds_name) -> None:
    if sum(bool(x) for x in (files, array_record, tfds_name)) != 1:
        raise ConfigError("give exactly one text source: data.files (the text preset takes FFNKV_TEXT_FILES), "
                          "data.array_record or data.tfds_name.")


def _texts(files=(), wikitext=False, array_record=None, tfds_name=None, tfds_split="train", tfds_data_dir=None,
           text_key="text") -> Iterator[str]:
    _check_one_source(files, array_record, tfds_name)
    if files:
        return read_text_files([files] if isinstance(files, str) else files, wikitext)
    if array_record:
        return read_array_record(array_record)
    return read_tfds(tfds_name, tfds_split, tfds_data_dir, text_key)


def source_record(files=(), wikitext=False, array_record=None, tfds_name=None, tfds_split="train",
                  tfds_data_dir=None, text_key="text") -> dict:
    """What a cache is built from (JSON-ready); local files enter by their sha256, so a replaced or grown file
    is a different source."""
    files = [files] if isinstance(files, str) else [str(f) for f in files]
    local = files + ([array_record] if array_record else [])
    return {"files": files, "wikitext": wikitext, "array_record": array_record, "tfds_name": tfds_name,
            "tfds_split": tfds_split, "tfds_data_dir": tfds_data_dir, "text_key": text_key,
            "sha256": [content_hash(f) for f in local]}


def prepare_corpus(cache_dir, vocab_size: int = 4096, tokenizer_chars: int = 50_000_000, accept=None,
                   **source) -> Path:
    """Train the tokenizer (on the first ``tokenizer_chars`` characters) and encode the source into ``cache_dir``.

    ``source`` is one of ``files`` (+ ``wikitext``), ``array_record``, or ``tfds_name`` (+ split/dir/key).
    Does nothing when ``cache_dir/meta.json`` exists. The corpus is built in a temporary directory beside
    ``cache_dir`` and moved in (``meta.json`` last) only once ``accept(meta)`` has not raised, so a failure or
    a rejected corpus leaves nothing behind, not even the parent directories it made.
    """
    cache = Path(cache_dir)
    if (cache / "meta.json").is_file():
        return cache
    _check_one_source(source.get("files"), source.get("array_record"), source.get("tfds_name"))
    made = [p for p in (cache.parent, *cache.parent.parents) if not p.exists()]
    cache.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{cache.name}.", suffix=".tmp", dir=cache.parent))
    try:
        def sample():
            seen = 0
            for text in _texts(**source):
                if seen >= tokenizer_chars:
                    return
                seen += len(text)
                yield text

        tokenizer = train_tokenizer(sample(), vocab_size)
        tokenizer.tokenizer.save(str(build / "tokenizer.json"))
        dtype = "uint16" if tokenizer.vocab_size <= 2 ** 16 else "uint32"
        read_order = encode_to_memmap(tokenizer, _texts(**source), build / "read_order.bin")
        bounds = shuffle_documents(build / "read_order.bin", build / "tokens.bin", read_order, dtype, SHUFFLE_SEED)
        np.save(build / "documents.npy", bounds)
        meta = {"n_tokens": int(bounds[-1]), "dtype": dtype, "vocab_size": tokenizer.vocab_size,
                "n_documents": len(bounds) - 1, "order": f"documents shuffled with seed {SHUFFLE_SEED}",
                "source": source_record(**source)}
        if accept is not None:
            accept(meta)
        (build / "meta.json").write_text(json.dumps(meta, indent=1))
        cache.mkdir(exist_ok=True)
        for name in ("tokenizer.json", "tokens.bin", "documents.npy", "meta.json"):
            os.replace(build / name, cache / name)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        for path in made:  # innermost first
            try:
                path.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(build, ignore_errors=True)
    return cache


@dataclasses.dataclass(frozen=True)
class TextTask:
    """Language modelling on a token memmap in ``cache_dir`` (prepared from the given source if missing).

    ``cache_dir=None`` picks ``$FFNKV_DATA/text/<hash of the source and vocabulary size>`` (``FFNKV_DATA``
    defaults to ``data``); local files and array_record files enter the key by their sha256, so a replaced or
    grown file builds a new cache. A given ``cache_dir`` built from a different source is refused rather than
    silently reused.
    """

    ONE_OF = ("files", "array_record", "tfds_name")  # the sources; an override of one replaces the others

    cache_dir: str | None = None
    files: tuple[str, ...] = ()
    wikitext: bool = False
    array_record: str | None = None
    tfds_name: str | None = None
    tfds_split: str = "train"
    tfds_data_dir: str | None = None
    text_key: str = "text"
    vocab_size_target: int = 4096
    seq_len: int = 128
    eval_fraction: float = 0.02
    n_eval: int = 256

    def __post_init__(self):
        if isinstance(self.files, str):
            object.__setattr__(self, "files", (self.files,))
        check_fields(self, "data.", {"vocab_size_target": ints(257, 2 ** 20), "seq_len": ints(1, 2 ** 20),
                                     "eval_fraction": reals(0, 0.5, lo_open=True, hi_open=True),
                                     "n_eval": ints(1, 2 ** 20)})
        object.__setattr__(self, "files", expand_files(self.files))
        if self.cache_dir is None or not (Path(self.cache_dir) / "meta.json").is_file():
            _check_one_source(self.files, self.array_record, self.tfds_name)  # a built cache may stand alone
        source = self._source()  # a missing or unreadable source file fails here
        if self.cache_dir is None:
            key = json.dumps([source, self.vocab_size_target, CACHE_FORMAT], sort_keys=True)
            digest = hashlib.sha1(key.encode()).hexdigest()[:12]
            object.__setattr__(self, "cache_dir", str(Path(os.environ.get("FFNKV_DATA", "data")) / "text" / digest))
        if not (Path(self.cache_dir) / "meta.json").is_file():
            if self.files:  # each byte is at most 3 tokens (an undecodable one becomes U+FFFD), plus one EOS
                self._check_tokens(4 * sum(Path(f).stat().st_size for f in self.files), "at most ")
            prepare_corpus(self.cache_dir, self.vocab_size_target, files=self.files, wikitext=self.wikitext,
                           array_record=self.array_record, tfds_name=self.tfds_name, tfds_split=self.tfds_split,
                           tfds_data_dir=self.tfds_data_dir, text_key=self.text_key,
                           accept=lambda meta: self._check_tokens(meta["n_tokens"]))
        if (self.files or self.array_record or self.tfds_name) and self.meta["source"] != source:
            built = {k: v for k, v in self.meta["source"].items() if k != "sha256"}
            if built == {k: v for k, v in source.items() if k != "sha256"}:
                names = built["files"] + ([built["array_record"]] if built["array_record"] else [])
                raise FfnkvError(f"the contents of {', '.join(names)} "
                                 f"changed since cache_dir {self.cache_dir!r} was built from them (a run trained on "
                                 "it saw the old text); restore the files, or build a new cache and train again.")
            raise FfnkvError(f"cache_dir {self.cache_dir!r} holds a corpus built from another source "
                             f"({self.meta['source']}); use another cache_dir.")
        self._check_tokens(self.meta["n_tokens"])

    def _check_tokens(self, n_tokens: int, bound: str = "") -> None:
        """Both the training part and the held-out tail must hold a window of ``seq_len + 1`` tokens."""
        n_train = int(n_tokens * (1.0 - self.eval_fraction))
        if n_train < self.seq_len + 1 or n_tokens - n_train < self.seq_len + 1:
            raise FfnkvError(f"the corpus ({', '.join(self.files) or self.cache_dir}) has {bound}{n_tokens} tokens, "
                             f"too few for seq_len={self.seq_len} with eval_fraction={self.eval_fraction}; add text "
                             "or shorten seq_len.")

    def _source(self) -> dict:
        return source_record(files=self.files, wikitext=self.wikitext, array_record=self.array_record,
                             tfds_name=self.tfds_name, tfds_split=self.tfds_split, tfds_data_dir=self.tfds_data_dir,
                             text_key=self.text_key)

    @functools.cached_property
    def meta(self) -> dict:
        return json.loads((Path(self.cache_dir) / "meta.json").read_text())

    @functools.cached_property
    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer.load(Path(self.cache_dir) / "tokenizer.json")

    @functools.cached_property
    def tokens(self) -> np.memmap:
        return np.memmap(Path(self.cache_dir) / "tokens.bin", dtype=self.meta["dtype"], mode="r")

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @functools.cached_property
    def n_train(self) -> int:
        """Where the held-out tail starts: the document boundary nearest ``(1 - eval_fraction)`` of the tokens,
        if one within half the tail's size leaves a window on both sides, else that token (so does a cache of
        format ≤ 3, stored in reading order)."""
        n = int(self.meta["n_tokens"])
        cut = int(n * (1.0 - self.eval_fraction))
        path = Path(self.cache_dir) / "documents.npy"
        if not path.is_file():
            return cut
        bounds = np.load(path)
        near = np.abs(bounds - cut) <= (n - cut) // 2
        fits = bounds[near & (bounds >= self.seq_len + 1) & (n - bounds >= self.seq_len + 1)]
        return int(fits[np.argmin(np.abs(fits - cut))]) if fits.size else cut

    def _windows(self, starts) -> dict:
        idx = np.asarray(starts)[:, None] + np.arange(self.seq_len + 1)
        w = np.asarray(self.tokens[idx], np.int32)
        return {"tokens": w[:, :-1], "targets": w[:, 1:], "weights": np.ones(w[:, 1:].shape, np.float32)}

    def batch(self, seed: int, step: int, batch_size: int) -> dict:
        """Random windows of the training region; a pure function of (seed, step)."""
        rng = np.random.default_rng([seed, step, 0x7E47])
        return self._windows(rng.integers(0, self.n_train - self.seq_len, batch_size))

    def eval_set(self, seed: int = 0) -> dict:
        """``n_eval`` random windows of the held-out tail."""
        rng = np.random.default_rng([seed, 0xE7A1])
        return self._windows(rng.integers(self.n_train, self.meta["n_tokens"] - self.seq_len, self.n_eval))

    def windows(self, max_tokens: int | None = None, split: str = "train") -> dict:
        """Contiguous non-overlapping windows (a zero-copy view of the memmap) for streaming analyses.

        Returns ``tokens`` and ``targets`` as ``[N, seq_len]`` views; ``offset`` maps row n to corpus position.
        """
        lo, hi = (0, self.n_train) if split == "train" else (self.n_train, int(self.meta["n_tokens"]))
        if max_tokens is not None:
            hi = min(hi, lo + int(max_tokens) + 1)
        n = (hi - lo - 1) // self.seq_len
        flat = self.tokens[lo: lo + n * self.seq_len + 1]
        return {"tokens": flat[:-1].reshape(n, self.seq_len), "targets": flat[1:].reshape(n, self.seq_len),
                "offset": lo}
