"""Character- and byte-level tokenizers for text datasets.

Both map a string to int32 token ids and back, and serialise to a small JSON-ready dict
(`to_dict`) that `from_dict` turns back into the same tokenizer, so a checkpoint can carry the
exact vocabulary it was trained with.

- `CharTokenizer`: the vocabulary is the sorted set of characters of the whole corpus, as in
  nanoGPT's `data/shakespeare_char/prepare.py` (65 symbols for tiny_shakespeare).
- `ByteTokenizer`: UTF-8 bytes, 256 symbols; any text can be encoded, and decoding replaces
  byte sequences that are not valid UTF-8 (a model can sample those) with U+FFFD.
"""

from __future__ import annotations

import abc
from typing import Mapping

import numpy as np


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
      raise ValueError("CharTokenizer vocabulary has repeated characters.")
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
      raise ValueError(
        f"Characters {unknown[:10]!r} are not in this CharTokenizer's {self.vocab_size}-symbol "
        "vocabulary; use the byte tokenizer (--config.data.tokenizer=byte) for arbitrary text."
      )
    return ids

  def decode(self, ids) -> str:
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
      raise ValueError(f"Token ids must lie in [0, {self.vocab_size}), got range [{ids.min()}, {ids.max()}].")
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
      raise ValueError(f"Byte token ids must lie in [0, 256), got range [{ids.min()}, {ids.max()}].")
    return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

  def to_dict(self) -> dict:
    return {"kind": "byte"}

  def __repr__(self):
    return "ByteTokenizer()"


def from_dict(d: Mapping) -> Tokenizer:
  """Rebuilds the tokenizer that `Tokenizer.to_dict` described."""
  kind = d.get("kind")
  if kind == "char":
    return CharTokenizer(d["chars"])
  if kind == "byte":
    return ByteTokenizer()
  raise ValueError(f"Unknown tokenizer kind {kind!r} (expected 'char' or 'byte') in {dict(d)!r}.")


def make(kind: str, corpus: str) -> Tokenizer:
  """The tokenizer named by `data.tokenizer` ("char" or "byte"), built from the whole corpus."""
  if kind == "char":
    return CharTokenizer.from_text(corpus)
  if kind == "byte":
    return ByteTokenizer()
  raise ValueError(f"data.tokenizer={kind!r}: expected 'char' or 'byte'.")
