"""Character- and byte-level tokenizers for text datasets.

Both map a string to int32 token ids and back, and serialise to a small JSON-ready dict
(`to_dict`) that `from_dict` turns back into the same tokenizer, so a checkpoint can carry the
exact vocabulary it was trained with.

- `CharTokenizer`: the vocabulary is the sorted set of characters of the whole corpus, as in
  nanoGPT's `data/shakespeare_char/prepare.py` (65 symbols for tiny_shakespeare).
- `ByteTokenizer`: UTF-8 bytes, 256 symbols; any text can be encoded, and decoding replaces
  byte sequences that are not valid UTF-8 (a model can sample those) with U+FFFD.
- `BpeTokenizer`: byte-level BPE (GPT-2's scheme) trained with Hugging Face `tokenizers` on the
  training split (`data.tokenizer=bpe`, `data.bpe_vocab_size`); any text can be encoded. Its
  `to_dict` carries the whole trained tokenizer (its JSON), so a checkpoint restores it exactly.
"""

from __future__ import annotations

import abc
from typing import Mapping

import numpy as np

from genjax import errors


class Tokenizer(abc.ABC):
  """Maps text to int32 token ids in [0, vocab_size) and back."""

  vocab_size: int

  @abc.abstractmethod
  def encode(self, text: str) -> np.ndarray:
    """Returns the token ids of `text` as int32[L]."""

  @abc.abstractmethod
  def decode(self, ids) -> str:
    """Returns the text of a sequence of token ids (any integer array-like of shape [L])."""

  @abc.abstractmethod
  def to_dict(self) -> dict:
    """A JSON-ready dict that `from_dict` turns back into an equal tokenizer."""

  def __eq__(self, other):
    return type(self) is type(other) and self.to_dict() == other.to_dict()

  def __hash__(self):
    return hash(repr(sorted(self.to_dict().items())))


class CharTokenizer(Tokenizer):
  """One token per Unicode character of a fixed vocabulary (ids follow the sorted order)."""

  def __init__(self, chars: str):
    if len(set(chars)) != len(chars):
      raise errors.ConfigError("CharTokenizer vocabulary has repeated characters.")
    self.chars = "".join(sorted(chars))
    self.vocab_size = len(self.chars)
    codepoints = np.array([ord(c) for c in self.chars], dtype=np.int64)
    # A dense code-point -> id table makes encoding a megabyte of text one numpy gather.
    self._table = np.full(int(codepoints.max(initial=0)) + 1, -1, dtype=np.int32)
    self._table[codepoints] = np.arange(self.vocab_size, dtype=np.int32)

  @classmethod
  def from_text(cls, text: str) -> "CharTokenizer":
    """The tokenizer whose vocabulary is every character that occurs in `text`."""
    return cls("".join(sorted(set(text))))

  def encode(self, text: str) -> np.ndarray:
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    ids = np.full(codepoints.shape, -1, dtype=np.int32)
    known = codepoints < len(self._table)
    ids[known] = self._table[codepoints[known]]
    if (ids < 0).any():
      unknown = sorted({chr(c) for c in codepoints[ids < 0]})
      raise errors.ConfigError(
        f"Characters {unknown[:10]!r} are not in this CharTokenizer's {self.vocab_size}-symbol "
        "vocabulary; use the byte tokenizer (--config.data.tokenizer=byte) for arbitrary text."
      )
    return ids

  def decode(self, ids) -> str:
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
      raise errors.ConfigError(f"Token ids must lie in [0, {self.vocab_size}), got range [{ids.min()}, {ids.max()}].")
    return "".join(self.chars[i] for i in ids.tolist())

  def to_dict(self) -> dict:
    return {"kind": "char", "chars": self.chars}

  def __repr__(self):
    return f"CharTokenizer(vocab_size={self.vocab_size})"


class ByteTokenizer(Tokenizer):
  """One token per UTF-8 byte (vocab_size 256)."""

  vocab_size = 256

  def encode(self, text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

  def decode(self, ids) -> str:
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() > 255):
      raise errors.ConfigError(f"Byte token ids must lie in [0, 256), got range [{ids.min()}, {ids.max()}].")
    return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

  def to_dict(self) -> dict:
    return {"kind": "byte"}

  def __repr__(self):
    return "ByteTokenizer()"


def _hf_tokenizers():
  try:
    import tokenizers as hf  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(
      "data.tokenizer=bpe needs Hugging Face tokenizers: pip install tokenizers==0.23.3 (see requirements.txt)."
    ) from None
  return hf


class BpeTokenizer(Tokenizer):
  """Byte-level BPE: text is split GPT-2 style (ByteLevel pre-tokenizer, no prefix space), its
  UTF-8 bytes mapped to 256 symbols, and merges learnt by `train` applied (Hugging Face
  `tokenizers`). Ids 0..255 are the single bytes; merged symbols follow in the order learnt."""

  def __init__(self, hf_tokenizer):
    self._tok = hf_tokenizer
    self.vocab_size = hf_tokenizer.get_vocab_size()

  @classmethod
  def train(cls, corpus: str, vocab_size: int) -> "BpeTokenizer":
    """Learns merges on `corpus` until the vocabulary has `vocab_size` symbols (or no pair
    repeats). Deterministic: the same corpus gives the same tokenizer."""
    hf = _hf_tokenizers()
    if vocab_size < 256:
      raise errors.ConfigError(f"data.bpe_vocab_size={vocab_size} must be >= 256 (the byte alphabet).")
    # Each merge needs a pair seen twice, so it removes at least two symbols: a corpus of L bytes
    # allows at most L // 2 merges. Asking for more learns the same merges, but Hugging Face
    # tokenizers reserves memory for the whole vocabulary first (a billion aborts the process).
    vocab_size = min(vocab_size, 256 + len(corpus.encode("utf-8")) // 2)
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(
      vocab_size=vocab_size,
      min_frequency=2,
      initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False,
      special_tokens=[],
    )
    tok.train_from_iterator([corpus], trainer=trainer)
    return cls(tok)

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._tok.encode(text).ids, dtype=np.int32)

  def decode(self, ids) -> str:
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
      raise errors.ConfigError(f"Token ids must lie in [0, {self.vocab_size}), got range [{ids.min()}, {ids.max()}].")
    return self._tok.decode(ids.tolist(), skip_special_tokens=False)

  def to_dict(self) -> dict:
    return {"kind": "bpe", "json": self._tok.to_str()}

  def __repr__(self):
    return f"BpeTokenizer(vocab_size={self.vocab_size})"


def from_dict(d: Mapping) -> Tokenizer:
  """Rebuilds the tokenizer that `Tokenizer.to_dict` described."""
  kind = d.get("kind")
  if kind == "char":
    return CharTokenizer(d["chars"])
  if kind == "byte":
    return ByteTokenizer()
  if kind == "bpe":
    return BpeTokenizer(_hf_tokenizers().Tokenizer.from_str(d["json"]))
  raise errors.ConfigError(
    f"Unknown tokenizer kind {kind!r} (expected 'char', 'byte' or 'bpe') in {str(dict(d))[:200]}."
  )


def make(kind: str, corpus: str, bpe_vocab_size: int = 1024) -> Tokenizer:
  """The tokenizer named by `data.tokenizer` ("char", "byte" or "bpe"), built from the whole corpus."""
  if kind == "char":
    return CharTokenizer.from_text(corpus)
  if kind == "byte":
    return ByteTokenizer()
  if kind == "bpe":
    return BpeTokenizer.train(corpus, bpe_vocab_size)
  raise errors.ConfigError(f"data.tokenizer={kind!r}: expected 'char', 'byte' or 'bpe'.")
