"""The prompt contract: what attribution, tracing and editing read about a batch of prompts.

``Prompts`` holds right-padded token ids and, per prompt, where the subject lies and where the answer is
predicted. It reads like the dict the analyses took so far (``enc["tokens"]``), so both spellings work.

    tokens         [N, T] int32, right-padded with ``pad_id``
    lengths        [N]    real tokens per prompt
    predict_pos    [N]    the position whose logits predict the answer (``lengths - 1``)
    target         [N]    the answer's first token id (-1 where no answer was given)
    subject_start  [N]    first subject token
    subject_end    [N]    one past the last subject token (the subject's last token is ``subject_end - 1``)

``encode_prompts`` builds it from text with any ``ffnkv.io.tokenizer.Tokenizer``: the subject's tokens are the
ones whose characters overlap the subject's first occurrence in the prompt, and the answer's first token is
read off ``prompt + " " + answer`` so that byte-level BPE sees the answer with its leading space.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ffnkv.errors import FfnkvError

FIELDS = ("tokens", "lengths", "predict_pos", "target", "subject_start", "subject_end")


@dataclasses.dataclass(frozen=True)
class Prompts:
    tokens: np.ndarray
    lengths: np.ndarray
    predict_pos: np.ndarray
    target: np.ndarray
    subject_start: np.ndarray
    subject_end: np.ndarray

    def __getitem__(self, name: str):
        if name not in FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name) -> bool:
        return name in FIELDS

    def __len__(self) -> int:
        return len(self.tokens)

    def keys(self):
        return FIELDS

    def select(self, rows) -> "Prompts":
        """The prompts at ``rows`` (indices or a boolean mask), padding trimmed to the longest kept prompt."""
        picked = {f: np.asarray(getattr(self, f))[rows] for f in FIELDS}
        T = int(picked["lengths"].max(initial=1))
        return Prompts(**picked | {"tokens": picked["tokens"][:, :T]})


def _subject_span(offsets, start: int, end: int) -> tuple[int, int]:
    hit = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    return (hit[0], hit[-1] + 1) if hit else (-1, -1)


def encode_prompts(tokenizer, prompts, subjects, answers=None, pad_id: int = 0, bos: bool | None = None) -> Prompts:
    """``Prompts`` for ``prompts`` (text whose next token is the answer) with their ``subjects`` (text found
    in the prompt, or filling its ``{}`` placeholder, as in CounterFact) and optional ``answers``.

    ``bos``: put ``tokenizer.bos_id`` first (default: ``tokenizer.add_bos``, i.e. as the model was trained).
    A subject missing from its prompt or an answer that tokenises to nothing raises FfnkvError naming it.
    """
    bos = tokenizer.add_bos if bos is None else bos
    if bos and tokenizer.bos_id is None:
        raise FfnkvError("bos=True, but this tokenizer has no BOS token.")
    head = [tokenizer.bos_id] if bos else []
    rows, spans, targets = [], [], []
    for n, (prompt, subject) in enumerate(zip(prompts, subjects)):
        prompt = prompt.replace("{}", subject) if "{}" in prompt else prompt
        at = prompt.find(subject) if subject else -1
        if at < 0:
            raise FfnkvError(f"prompt {n} ({prompt!r}): the subject {subject!r} is not in it.")
        ids, offsets = tokenizer.encode_offsets(prompt)
        s0, s1 = _subject_span(offsets, at, at + len(subject))
        if s0 < 0:
            raise FfnkvError(f"prompt {n} ({prompt!r}): the subject {subject!r} covers no token.")
        target = -1
        if answers is not None:
            full_ids, full_offsets = tokenizer.encode_offsets(prompt + " " + answers[n])
            after = [i for i, (a, _) in zip(full_ids, full_offsets) if a >= len(prompt)]
            if not after:
                raise FfnkvError(f"prompt {n} ({prompt!r}): the answer {answers[n]!r} tokenises to nothing.")
            target = after[0]
        rows.append(head + ids)
        spans.append((s0 + len(head), s1 + len(head)))
        targets.append(target)
    if not rows:
        raise FfnkvError("no prompts to encode.")
    lengths = np.array([len(r) for r in rows], np.int32)
    tokens = np.full((len(rows), int(lengths.max())), pad_id, np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    start, end = (np.array(s, np.int32) for s in zip(*spans))
    return Prompts(tokens, lengths, lengths - 1, np.array(targets, np.int32), start, end)
