"""Word-vocabulary tokenizer for policy instructions (contract tokenizer `word_vocab`).

The same functions must be used when building the training vocabulary and at run time, otherwise
token ids silently drift; `split_words` and `build_vocabulary` exist for the training side.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
import re
from typing import Iterable, Protocol, Sequence

import numpy as np

from noetra_ros.core.errors import InputError

PAD_TOKEN = '<pad>'
UNK_TOKEN = '<unk>'
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN)
# A word is a maximal run of letters or digits (any script); everything else separates words.
# Digits are kept because instructions such as 'put it in bin 2' depend on them.
WORD_PATTERN = re.compile(r'[^\W_]+')


class InstructionSpec(Protocol):
    """The parts of a contract instruction input the tokenizer needs (see contract.py).

    Read-only properties, so frozen dataclasses such as `InstructionInput` satisfy it.
    """

    @property
    def name(self) -> str: ...
    @property
    def vocabulary(self) -> tuple[str, ...]: ...
    @property
    def max_length(self) -> int: ...
    @property
    def unknown_words(self) -> str: ...


def split_words(text: str) -> list[str]:
    """Lower-case `text` and split it into words (runs of letters or digits)."""
    return WORD_PATTERN.findall(text.lower())


def build_vocabulary(texts: Iterable[str], min_count: int = 1) -> tuple[str, ...]:
    """Vocabulary for a set of training instructions: `<pad>`, `<unk>`, then words by frequency.

    Words seen fewer than `min_count` times are left out (they become `<unk>`). Ties are broken
    alphabetically so the result does not depend on the order of `texts`.
    """
    counts = Counter(word for text in texts for word in split_words(text))
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return SPECIAL_TOKENS + tuple(w for w in words if w not in SPECIAL_TOKENS)


@dataclass(frozen=True)
class Encoding:
    """Result of `Tokenizer.encode`.

    `ids` is int64 [1, max_length], right-padded with `<pad>` (id 0). `unknown_words` lists the
    words that were mapped to `<unk>` (in order of appearance, without repeats) so the caller can
    warn; `truncated` is True when the instruction had more than `max_length` words and the tail
    was dropped; `length` is the number of real (non-pad) tokens.
    """

    ids: np.ndarray
    tokens: tuple[str, ...]
    unknown_words: tuple[str, ...]
    truncated: bool
    length: int


class Tokenizer:
    """Turns an instruction string into the int64 token tensor a contract declares."""

    def __init__(self, spec: InstructionSpec) -> None:
        """Build the lookup table for `spec` (an `InstructionInput` of a validated contract)."""
        self._name = spec.name
        self._max_length = int(spec.max_length)
        self._reject = spec.unknown_words == 'reject'
        self._ids = {word: i for i, word in enumerate(spec.vocabulary)}
        self._pad_id = self._ids[PAD_TOKEN]
        self._unk_id = self._ids.get(UNK_TOKEN)

    @property
    def max_length(self) -> int:
        """L, the length of every encoded tensor."""
        return self._max_length

    def encode(self, text: str) -> Encoding:
        """Encode `text`; raises InputError for a non-string or, with `reject`, unknown words."""
        if not isinstance(text, str):
            raise InputError(
                f'instruction for input {self._name!r} must be a string, got '
                f'{type(text).__name__}')
        words = split_words(text)
        truncated = len(words) > self._max_length
        # Only the words that reach the model matter; a dropped tail cannot confuse it.
        words = words[:self._max_length]
        unknown: list[str] = []
        for word in words:
            if word not in self._ids and word not in unknown:
                unknown.append(word)
        if unknown and (self._reject or self._unk_id is None):
            raise InputError(
                f'instruction for input {self._name!r} has words outside the vocabulary: '
                f'{unknown} (the contract says unknown_words: reject)')
        ids = np.full((1, self._max_length), self._pad_id, dtype=np.int64)
        for i, word in enumerate(words):
            token_id = self._ids.get(word, self._unk_id)
            # An unknown word without `<unk>` in the vocabulary raised above.
            assert token_id is not None
            ids[0, i] = token_id
        tokens = tuple(w if w in self._ids else UNK_TOKEN for w in words)
        return Encoding(ids=ids, tokens=tokens, unknown_words=tuple(unknown),
                        truncated=truncated, length=len(words))

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Tokens of `ids` (any shape), without padding; for logs and tests."""
        vocab = list(self._ids)
        flat = np.asarray(ids).reshape(-1)
        return [vocab[i] for i in flat if i != self._pad_id]
