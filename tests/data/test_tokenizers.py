"""Tokenizers and text batches."""

import json

import numpy as np
import pytest

from genjax.data import tokenizers
from genjax.data.datasets import TextDataset
from genjax.data.info import DataInfo

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


def test_char_tokenizer_round_trip_and_sorted_vocabulary():
  tok = tokenizers.CharTokenizer.from_text(TEXT)
  assert tok.chars == "".join(sorted(set(TEXT)))
  ids = tok.encode(TEXT)
  assert ids.dtype == np.int32 and ids.shape == (len(TEXT),)
  assert [tok.chars[i] for i in ids] == list(TEXT)
  assert tok.decode(ids) == TEXT
  with pytest.raises(ValueError, match="not in this CharTokenizer"):
    tok.encode("Zebra")  # 'Z' and 'b' never occur in TEXT


def test_byte_tokenizer_round_trips_non_ascii():
  tok = tokenizers.ByteTokenizer()
  text = "héllo wörld, 日本語 🚀"
  ids = tok.encode(text)
  assert list(ids) == list(text.encode("utf-8")) and tok.vocab_size == 256
  assert tok.decode(ids) == text
  assert tok.decode([0xF0, 0x9F]) == "\ufffd"  # a cut multi-byte sequence decodes, replaced


@pytest.mark.parametrize("tok", [tokenizers.CharTokenizer.from_text("añb\n"), tokenizers.ByteTokenizer()])
def test_to_dict_from_dict_through_json(tok):
  back = tokenizers.from_dict(json.loads(json.dumps(tok.to_dict())))
  assert back == tok and back.vocab_size == tok.vocab_size
  np.testing.assert_array_equal(back.encode("añb"), tok.encode("añb"))


def text_dataset(num_tokens=1000, block_size=16):
  tok = tokenizers.ByteTokenizer()
  tokens = np.arange(num_tokens) % 251  # token t sits at positions t, t + 251, ...
  info = DataInfo(name="t", kind="text", shape=(block_size,), vocab_size=256, tokenizer=tok)
  return TextDataset(info, tokens, tok, block_size)


def test_text_batches_are_windows_and_depend_only_on_seed_and_step():
  ds = text_dataset()
  batch = ds.batch(3, 8, seed=0)["tokens"]
  assert batch.shape == (8, 17) and batch.dtype == np.int32
  # Every row is a contiguous slice of the token stream.
  assert np.all(np.diff(batch, axis=1) % 251 == 1)
  np.testing.assert_array_equal(batch, text_dataset().batch(3, 8, seed=0)["tokens"])
  assert not np.array_equal(batch, ds.batch(3, 8, seed=1)["tokens"])
  for p_count in (2, 4):
    shares = [ds.batch(3, 8, 0, process_index=p, process_count=p_count)["tokens"] for p in range(p_count)]
    np.testing.assert_array_equal(np.concatenate(shares), batch)


def test_text_eval_windows_are_consecutive_and_cover_the_split():
  ds = text_dataset(num_tokens=1000, block_size=16)
  assert ds.num_examples == 999 // 16
  rows = []
  for b in ds.eval_batches(8):
    rows.extend(b["tokens"][b["mask"] == 1])
  rows = np.array(rows)
  assert len(rows) == ds.num_examples
  # Inputs tile the stream without overlap; each window's last token starts the next window.
  np.testing.assert_array_equal(rows[:, :-1].reshape(-1), ds.tokens[: ds.num_examples * 16])
  np.testing.assert_array_equal(rows[:-1, -1], rows[1:, 0])
  shares = [list(ds.eval_batches(8, process_index=p, process_count=2)) for p in range(2)]
  np.testing.assert_array_equal(np.concatenate([shares[0][0]["tokens"], shares[1][0]["tokens"]]), rows[:8])


# ----------------------------------------------------------------------------------------------
# Byte-level BPE (Hugging Face tokenizers)
# ----------------------------------------------------------------------------------------------

_WORDS = "the king and queen spoke to people of town castle river bread sword horse night morning".split()
# 3000 words drawn at random: enough distinct pairs for a few hundred merges.
CORPUS = " ".join(np.random.default_rng(0).choice(_WORDS, 3000).tolist()) + "\n"


def test_bpe_learns_merges_round_trips_any_text_and_is_deterministic():
  pytest.importorskip("tokenizers")
  tok = tokenizers.make("bpe", CORPUS, bpe_vocab_size=300)
  assert isinstance(tok, tokenizers.BpeTokenizer) and tok.vocab_size == 300
  ids = tok.encode(CORPUS)
  assert ids.dtype == np.int32 and ids.max() < 300
  assert len(ids) < len(CORPUS.encode()) / 2  # 44 merges already halve the length
  assert tok.decode(ids) == CORPUS
  unseen = "Zebras: héllo wörld, 日本語 🚀"
  assert tok.decode(tok.encode(unseen)) == unseen  # byte-level: no unknown symbols
  assert tokenizers.make("bpe", CORPUS, bpe_vocab_size=300) == tok  # same corpus, same merges
  assert tokenizers.make("bpe", CORPUS, bpe_vocab_size=280) != tok
  with pytest.raises(ValueError, match="ids must lie"):
    tok.decode([300])


def test_bpe_travels_with_data_info_as_json():
  pytest.importorskip("tokenizers")
  tok = tokenizers.make("bpe", CORPUS, bpe_vocab_size=280)
  info = DataInfo(name="text", kind="text", shape=(16,), vocab_size=tok.vocab_size, tokenizer=tok)
  restored = DataInfo.from_dict(json.loads(json.dumps(info.to_dict())))
  assert restored == info and isinstance(restored.tokenizer, tokenizers.BpeTokenizer)
  np.testing.assert_array_equal(restored.tokenizer.encode(CORPUS), tok.encode(CORPUS))
