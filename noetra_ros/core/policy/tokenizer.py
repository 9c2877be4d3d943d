"""Tokenizers for policy instructions: the word vocabulary (contract tokenizer `word_vocab`)
and a `tokenizers` library tokenizer.json shipped with the model (`hf_tokenizers`, contract
version 2). Both give the same Encoding: ids [1, L], the words / text the tokenizer did not know,
whether the instruction was truncated, and the attention mask.

The same functions must be used when building the training vocabulary and at run time, otherwise
token ids silently drift; `split_words` and `build_vocabulary` exist for the training side.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
import re
from typing import Any, Iterable, Protocol, Sequence, Union

import numpy as np

from noetra_ros.core.errors import ContractError, InputError, ModelLoadError

PAD_TOKEN = '<pad>'
UNK_TOKEN = '<unk>'
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN)
# A word is a maximal run of letters or digits (any script); everything else separates words.
# Digits are kept because instructions such as 'put it in bin 2' depend on them.
WORD_PATTERN = re.compile(r'[^\W_]+')
# Pad tokens of common tokenizer.json files whose own padding settings are empty (BERT-style
# `[PAD]`, SentencePiece-style `<pad>`): the default pad id when the contract gives none.
CONVENTIONAL_PAD_TOKENS = ('<pad>', '[PAD]', '<|pad|>')


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


class TokenizerFileSpec(Protocol):
    """The parts of a contract `hf_tokenizers` instruction input HFTokenizer needs."""

    @property
    def name(self) -> str: ...
    @property
    def max_length(self) -> int: ...
    @property
    def unknown_words(self) -> str: ...
    @property
    def tokenizer_file(self) -> str | None: ...
    @property
    def vocab_size(self) -> int | None: ...
    @property
    def pad_id(self) -> int | None: ...


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

    `ids` is int64 [1, max_length], right-padded (with `<pad>`, id 0, for word_vocab).
    `unknown_words` lists the words (for hf_tokenizers: the pieces of text) that were mapped to
    the unknown token (in order of appearance, without repeats) so the caller can warn;
    `truncated` is True when the instruction had more than `max_length` tokens and the tail was
    dropped; `length` is the number of real (non-pad) tokens.
    """

    ids: np.ndarray
    tokens: tuple[str, ...]
    unknown_words: tuple[str, ...]
    truncated: bool
    length: int

    @property
    def attention_mask(self) -> np.ndarray:
        """int64 [1, max_length]: 1 per real token, 0 per pad (both tokenizers pad right)."""
        positions = np.arange(self.ids.shape[1])
        return (positions < self.length).astype(np.int64).reshape(self.ids.shape)


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


class HFTokenizer:
    """A `tokenizers` library tokenizer.json (contract tokenizer `hf_tokenizers`) with the
    interface of `Tokenizer`.

    The contract decides the tensor: the text is truncated on the right to `max_length` tokens
    (special tokens of the file's post-processor kept) and right-padded with the contract's
    `pad_id`, whatever padding / truncation the file itself was saved with.
    """

    def __init__(self, spec: TokenizerFileSpec, model_dir: str | Path,
                 where: str = 'instruction input') -> None:
        """Load `spec.tokenizer_file` relative to `model_dir` (the model file's folder).

        `where` is the field path of the input (`inputs[2]`) for errors: ModelLoadError for a
        missing or unreadable file, ContractError when it does not hold `vocab_size` tokens.
        """
        try:
            import tokenizers
        except ImportError:
            raise ModelLoadError(f'{where}.tokenizer: hf_tokenizers needs the `tokenizers` '
                                 'package (pinned in requirements.txt)') from None
        path = Path(model_dir) / str(spec.tokenizer_file)
        if not path.is_file():
            raise ModelLoadError(f'{where}.tokenizer_file: {str(path)!r} does not exist or is '
                                 'not a file (the path is relative to the model file\'s folder)')
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(path))
        except Exception as error:  # noqa: BLE001 - the Rust bindings raise plain Exception
            raise ModelLoadError(f'{where}.tokenizer_file: cannot read {path}: {error}') from None
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        if size != spec.vocab_size:
            raise ContractError(f'{where}.vocab_size: the contract says {spec.vocab_size} but '
                                f'{path.name} holds {size} tokens (added tokens included); '
                                'the model would be fed ids it has no embedding for')
        pad_id = spec.pad_id if spec.pad_id is not None else default_pad_id(tokenizer)
        tokenizer.enable_truncation(max_length=spec.max_length, direction='right')
        tokenizer.enable_padding(direction='right', length=spec.max_length, pad_id=pad_id,
                                 pad_token=tokenizer.id_to_token(pad_id) or PAD_TOKEN)
        unk_token = getattr(tokenizer.model, 'unk_token', None)
        self._tokenizer = tokenizer
        self._name = spec.name
        self._max_length = int(spec.max_length)
        self._reject = spec.unknown_words == 'reject'
        self._unk_id = None if unk_token is None else tokenizer.token_to_id(unk_token)
        self.pad_id = pad_id
        self.path = path

    @property
    def max_length(self) -> int:
        """L, the length of every encoded tensor."""
        return self._max_length

    @property
    def vocab_size(self) -> int:
        """Token ids of the file, added tokens included."""
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> Encoding:
        """Encode `text`; raises InputError for a non-string or, with `reject`, text that
        became the unknown token."""
        if not isinstance(text, str):
            raise InputError(
                f'instruction for input {self._name!r} must be a string, got '
                f'{type(text).__name__}')
        encoded = self._tokenizer.encode(text)
        length = int(sum(encoded.attention_mask))
        unknown = tuple(dict.fromkeys(
            text[start:end] for token_id, (start, end) in zip(encoded.ids[:length],
                                                              encoded.offsets[:length])
            if token_id == self._unk_id))
        if unknown and self._reject:
            raise InputError(
                f'instruction for input {self._name!r} has text the tokenizer does not know: '
                f'{list(unknown)} (the contract says unknown_words: reject)')
        ids = np.asarray(encoded.ids, dtype=np.int64).reshape(1, self._max_length)
        return Encoding(ids=ids, tokens=tuple(encoded.tokens[:length]), unknown_words=unknown,
                        truncated=bool(encoded.overflowing), length=length)

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Tokens of `ids` (any shape), without padding; for logs and tests."""
        flat = np.asarray(ids).reshape(-1)
        return [str(self._tokenizer.id_to_token(int(i))) for i in flat if i != self.pad_id]


def default_pad_id(tokenizer: Any) -> int:
    """The pad id of a `tokenizers.Tokenizer` when the contract gives none: the one its file's
    padding settings name, else a conventional pad token's, else 0."""
    padding = tokenizer.padding
    if padding and padding.get('pad_id') is not None:
        return int(padding['pad_id'])
    for token in CONVENTIONAL_PAD_TOKENS:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    return 0


InstructionTokenizer = Union[Tokenizer, HFTokenizer]


def load_tokenizer(spec: Any, model_dir: str | Path,
                   where: str = 'instruction input') -> InstructionTokenizer:
    """The tokenizer of a contract instruction input: `Tokenizer` for word_vocab, `HFTokenizer`
    (its file looked up in `model_dir`, the model file's folder) for hf_tokenizers."""
    if spec.tokenizer == 'hf_tokenizers':
        return HFTokenizer(spec, model_dir, where)
    return Tokenizer(spec)
