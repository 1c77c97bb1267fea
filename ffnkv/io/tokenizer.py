"""One tokenizer interface for every model source.

``Tokenizer`` wraps either a ``tokenizers.Tokenizer`` (Hugging Face directories, GGUF metadata, the facts and
text tasks) or a closed list of token names split on whitespace (condcomp's ``3 7 SUM =`` style vocabulary):

* ``encode(text) -> list[int]`` (no special tokens unless ``special=True``), ``decode(ids) -> str``;
* ``encode_offsets(text) -> (ids, [(start, end)])``: character span of every token, so a prompt's subject
  can be located in tokens (``ffnkv.prompts``);
* ``token_str(id)``: the text of one token; ``vocab_size``; ``bos_id`` / ``eos_id`` (None where the vocabulary
  has none).
"""
from __future__ import annotations

import dataclasses
import re

from ffnkv.errors import FfnkvError


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """``backend``: a ``tokenizers.Tokenizer``; or ``names``: the token of each id (whitespace-separated text)."""

    backend: object = None
    names: tuple[str, ...] | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    hidden: tuple[int, ...] = ()  # ids that ``decode`` drops (padding, BOS of the facts vocabulary)
    add_bos: bool = False  # the model was trained with ``bos_id`` first in every sequence

    @classmethod
    def from_backend(cls, backend, bos: str | None = None, eos: str | None = None, hidden=(),
                     add_bos: bool = False) -> "Tokenizer":
        """Wrap a ``tokenizers.Tokenizer``; ``bos``/``eos`` name the special tokens (None: not in the vocabulary)."""
        find = lambda tok: None if tok is None else backend.token_to_id(tok)
        return cls(backend=backend, bos_id=find(bos), eos_id=find(eos), hidden=tuple(hidden),
                   add_bos=add_bos and find(bos) is not None)

    @property
    def vocab_size(self) -> int:
        return len(self.names) if self.names is not None else self.backend.get_vocab_size()

    def encode_offsets(self, text: str, special: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` and the ``(start, end)`` characters each covers."""
        if self.names is None:
            enc = self.backend.encode(text, add_special_tokens=special)
            return list(enc.ids), [tuple(o) for o in enc.offsets]
        lookup = {name: i for i, name in enumerate(self.names)}
        ids, offsets = [], []
        for match in re.finditer(r"\S+", text):
            if match.group() not in lookup:
                raise FfnkvError(f"{match.group()!r} is not a token of this vocabulary; use one of "
                                 f"{' '.join(self.names)}.")
            ids.append(lookup[match.group()])
            offsets.append(match.span())
        return ids, offsets

    def encode(self, text: str, special: bool = False) -> list[int]:
        """Token ids of ``text``; ``special=True`` adds the tokenizer's own special tokens (BERT's [CLS] … [SEP])."""
        return self.encode_offsets(text, special)[0]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids if int(i) not in self.hidden]
        if self.names is not None:
            return " ".join(self.names[i] for i in ids)
        return self.backend.decode(ids, skip_special_tokens=False)

    def token_str(self, token_id: int) -> str:
        """The text of one token (``decode([id])``; for names, the name)."""
        token_id = int(token_id)
        if self.names is not None:
            return self.names[token_id]
        return self.backend.decode([token_id], skip_special_tokens=False)


def task_tokenizer(task) -> Tokenizer:
    """The tokenizer of an ``ffnkv.data`` task: its own vocabulary (facts, text) or its token names (condcomp)."""
    own = getattr(task, "tokenizer", None)
    if own is not None and hasattr(own, "tokenizer"):
        vocab = own.tokenizer.get_vocab()
        hidden = [vocab[t] for t in ("[PAD]", "[BOS]") if t in vocab]
        return Tokenizer.from_backend(own.tokenizer, bos="[BOS]" if "[BOS]" in vocab else None,
                                      eos=next((t for t in ("<|endoftext|>", "[EOS]") if t in vocab), None),
                                      hidden=hidden, add_bos=True)
    if hasattr(task, "token_names"):
        return Tokenizer(names=tuple(task.token_names()))
    raise FfnkvError(f"task {type(task).__name__} has neither a tokenizer nor token names.")
