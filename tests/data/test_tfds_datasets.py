"""TFDS datasets: errors that say which files go where, mocked CIFAR-10, and real prepared data.

Tests marked `dataset` read real data: they skip unless GENJAX_MANUAL_DIR names a folder with one
sub-folder of raw files per dataset; datasets are read from (or prepared into) GENJAX_DATA_DIR.
"""

import gzip
import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest

import genjax.data as gd
from genjax.config import Data
from genjax.data import tfds_io

MNIST_FILES = [
  "t10k-images-idx3-ubyte.gz",
  "t10k-labels-idx1-ubyte.gz",
  "train-images-idx3-ubyte.gz",
  "train-labels-idx1-ubyte.gz",
]


def real(name, **kwargs) -> Data:
  """The config of a real dataset, or a skip when no raw files were provided."""
  if not os.environ.get("GENJAX_MANUAL_DIR"):
    pytest.skip(
      "needs real data: set GENJAX_MANUAL_DIR (one sub-folder of raw files per dataset) "
      "and GENJAX_DATA_DIR, and run python -m genjax.data.prepare"
    )
  return Data(name=name, **kwargs)


def raw_dir(name) -> str:
  return os.path.join(os.environ["GENJAX_MANUAL_DIR"], name)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def test_missing_dataset_error_names_the_files_and_the_command(tmp_path, monkeypatch):
  monkeypatch.delenv("GENJAX_MANUAL_DIR", raising=False)
  (tmp_path / "raw" / "mnist").mkdir(parents=True)
  (tmp_path / "raw" / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(b"")
  cfg = Data(name="mnist", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "raw"))
  with pytest.raises(FileNotFoundError) as error:
    gd.load(cfg, "train")
  assert isinstance(error.value, gd.DatasetNotPreparedError)
  message = str(error.value)
  for name in MNIST_FILES:
    assert name in message
  assert str(tmp_path / "raw" / "mnist") in message
  assert "train-labels-idx1-ubyte.gz" in message.split("[present]")[0].splitlines()[-1]
  assert f"python -m genjax.data.prepare --datasets mnist --data_dir {tmp_path / 'tfds'}" in message


@pytest.mark.parametrize(
  "name,files",
  [
    ("binarized_mnist", ["binarized_mnist_test.amat", "binarized_mnist_train.amat", "binarized_mnist_valid.amat"]),
    ("tiny_shakespeare", ["input.txt"]),
    ("cifar10", ["cifar-10-binary.tar.gz"]),
  ],
)
def test_expected_files_are_the_names_tfds_looks_for(name, files):
  assert [f.filename for f in tfds_io.expected_files(name)] == files


def test_preparing_without_tensorflow_says_so(tmp_path, monkeypatch):
  monkeypatch.delenv("GENJAX_MANUAL_DIR", raising=False)
  (tmp_path / "tiny_shakespeare").mkdir()
  (tmp_path / "tiny_shakespeare" / "input.txt").write_text("to be")
  monkeypatch.setattr(tfds_io, "tensorflow_available", lambda: False)
  with pytest.raises(gd.DatasetNotPreparedError, match="tensorflow-cpu"):
    gd.load(Data(name="tiny_shakespeare", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path)), "train")


def test_manual_dir_is_the_dataset_folder_or_its_parent(tmp_path, monkeypatch):
  (tmp_path / "mnist").mkdir()
  assert tfds_io.manual_dir_for(Data(manual_dir=str(tmp_path)), "mnist") == str(tmp_path / "mnist")
  assert tfds_io.manual_dir_for(Data(manual_dir=str(tmp_path / "mnist")), "mnist") == str(tmp_path / "mnist")
  monkeypatch.setenv("GENJAX_MANUAL_DIR", str(tmp_path))
  assert tfds_io.manual_dir_for(Data(), "cifar10") == str(tmp_path / "cifar10")
  monkeypatch.setenv("GENJAX_DATA_DIR", str(tmp_path / "d"))
  assert tfds_io.data_dir_for(Data()) == str(tmp_path / "d")
  assert tfds_io.data_dir_for(Data(data_dir=str(tmp_path / "e"))) == str(tmp_path / "e")


def test_checksum_mismatch_is_reraised_with_the_fix(tmp_path, monkeypatch):
  if not tfds_io.tensorflow_available():
    pytest.skip("preparing needs TensorFlow")
  monkeypatch.delenv("GENJAX_MANUAL_DIR", raising=False)
  (tmp_path / "tiny_shakespeare").mkdir()
  (tmp_path / "tiny_shakespeare" / "input.txt").write_text("not the registered file\n")
  with pytest.raises(gd.ChecksumMismatchError) as error:
    tfds_io.prepare("tiny_shakespeare", str(tmp_path / "tfds"), str(tmp_path / "tiny_shakespeare"))
  message = str(error.value)
  assert "input.txt" in message and "1,115,394 bytes" in message and "python -m genjax.data.prepare" in message


# ----------------------------------------------------------------------------------------------
# CIFAR-10 through TFDS's mock data
# ----------------------------------------------------------------------------------------------


def _mock_getitems(record_keys, generator, serialized=False):
  return [generator[k] for k in record_keys]


@pytest.mark.parametrize("in_memory_max_mb", [4096, 0])
def test_cifar10_code_path_with_mock_data(in_memory_max_mb):
  """CIFAR-10 has no offline copy, so its reading path runs on TFDS's generated examples.

  tfds.testing.mock_data (4.9.10) leaves `is_prepared()` False and installs an unbound
  `__getitems__` on the mocked ArrayRecordDataSource (it fails with a missing argument), so
  the test patches both; everything else is the real code path.
  """
  tfds = tfds_io.import_tfds()
  from tensorflow_datasets.testing import mocking  # pylint: disable=g-import-not-at-top

  with (
    tfds.testing.mock_data(num_examples=20),
    mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True),
    mock.patch.object(mocking, "_getitems", _mock_getitems),
  ):
    ds = gd.load(Data(name="cifar10", in_memory_max_mb=in_memory_max_mb), "train")
    assert ds.info == gd.DataInfo(name="cifar10", kind="image", shape=(32, 32, 3), num_classes=10)
    assert ds.num_examples == 20
    assert isinstance(ds.source, gd.datasets.ArraySource if in_memory_max_mb else gd.sources.TfdsSource)
    batch = ds.batch(0, 8, seed=0)
    expected = (
      np.stack([ds.source.data_source[int(i)]["image"] for i in range(20)])
      if not in_memory_max_mb
      else ds.source.images
    )
    # Each batch image is one of the dataset's images, scaled to [-1, 1].
    pool = {bytes(((x.astype(np.float32) / 127.5) - 1).tobytes()) for x in expected}
    assert all(bytes(x.tobytes()) in pool for x in batch["image"])
    assert batch["image"].dtype == np.float32 and batch["label"].shape == (8,)
    assert ((0 <= batch["label"]) & (batch["label"] < 10)).all()
    masks = np.concatenate([b["mask"] for b in ds.eval_batches(8)])
    assert masks.sum() == 20 and len(masks) == 24


# ----------------------------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------------------------


def _idx(path, header):
  with gzip.open(path) as f:
    return np.frombuffer(f.read()[header:], dtype=np.uint8)


@pytest.mark.dataset
def test_reading_a_prepared_dataset_does_not_import_tensorflow():
  real("mnist")
  code = (
    "import sys; import genjax.data as gd; from genjax.config import Data\n"
    "for name in ('mnist', 'tiny_shakespeare'):\n"
    "  ds = gd.load(Data(name=name), 'test'); ds.batch(0, 8, 0); next(ds.eval_batches(8))\n"
    "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    "print('no tensorflow')\n"
  )
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "no tensorflow" in result.stdout


@pytest.mark.dataset
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_test_split_holds_the_raw_files(name):
  ds = gd.load(real(name), "test")
  assert ds.info == gd.DataInfo(name=name, kind="image", shape=(28, 28, 1), num_classes=10)
  assert ds.num_examples == 10000
  images = _idx(os.path.join(raw_dir(name), "t10k-images-idx3-ubyte.gz"), 16).reshape(-1, 784)
  labels = _idx(os.path.join(raw_dir(name), "t10k-labels-idx1-ubyte.gz"), 8)
  stored = ds.source.images.reshape(-1, 784)
  # TFDS stores examples in its own order: compare as multisets of (image, label).
  assert sorted(zip(map(bytes, stored), ds.source.labels.tolist())) == sorted(zip(map(bytes, images), labels.tolist()))


@pytest.mark.dataset
def test_fashion_mnist_is_not_mnist():
  # The two share raw file names; preparing both through one download folder silently reuses
  # MNIST's extracted files for Fashion-MNIST. genjax prepares each in its own folder.
  a = gd.load(real("mnist"), "test").source.images
  b = gd.load(real("fashion_mnist"), "test").source.images
  assert not np.array_equal(np.sort(a.reshape(len(a), -1).sum(1)), np.sort(b.reshape(len(b), -1).sum(1)))


@pytest.mark.dataset
def test_binarized_mnist_is_binary_and_holds_the_raw_file():
  ds = gd.load(real("binarized_mnist"), "test")
  assert ds.info.binary and ds.info.shape == (28, 28, 1) and ds.num_examples == 10000
  batch = ds.batch(0, 64, seed=0)
  assert set(np.unique(batch["image"])) == {-1.0, 1.0}
  with open(os.path.join(raw_dir("binarized_mnist"), "binarized_mnist_test.amat")) as f:
    raw = np.array(f.read().split(), dtype=np.uint8).reshape(-1, 784)
  assert sorted(map(bytes, ds.source.images.reshape(-1, 784) // 255)) == sorted(map(bytes, raw))


@pytest.mark.dataset
def test_stacked_mnist_covers_the_1000_modes():
  ds = gd.load(real("stacked_mnist"), "test")
  assert ds.info.shape == (28, 28, 3) and ds.info.num_classes == 1000 and ds.num_examples == 10000
  labels = np.concatenate([b["label"][b["mask"] == 1] for b in ds.eval_batches(1000)])
  assert labels.min() >= 0 and labels.max() < 1000
  # 10,000 draws of ~uniform modes leave about 1000 * exp(-10) < 1 mode unseen.
  assert len(np.unique(labels)) >= 990


@pytest.mark.dataset
def test_tiny_shakespeare_splits_match_input_txt_and_nanogpt():
  cfg = real("tiny_shakespeare", block_size=64)
  with open(os.path.join(raw_dir("tiny_shakespeare"), "input.txt"), encoding="utf-8") as f:
    raw = f.read()
  text, corpus = gd.sources.tfds_text("tiny_shakespeare", "all", cfg)
  assert corpus == raw and len(raw) == 1115394
  train = gd.load(cfg, "nanogpt_train")
  val = gd.load(cfg, "nanogpt_val")
  assert train.info.vocab_size == 65 and train.tokenizer.chars == "".join(sorted(set(raw)))
  n = len(raw)
  assert train.tokenizer.decode(train.tokens) == raw[: int(n * 0.9)]
  assert val.tokenizer.decode(val.tokens) == raw[int(n * 0.9) :]
  np.testing.assert_array_equal(gd.load(cfg, "train").tokens, train.tokens)  # TFDS train == nanoGPT train
  byte = gd.load(real("tiny_shakespeare", tokenizer="byte"), "validation")
  assert (
    byte.info.vocab_size == 256
    and byte.tokenizer.decode(byte.tokens) == raw[int(n * 0.9) : int(n * 0.9) + (n - int(n * 0.9)) // 2]
  )


@pytest.mark.dataset
@pytest.mark.slow
def test_prepare_command_prepares_into_a_fresh_folder(tmp_path):
  real("tiny_shakespeare")
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "genjax.data.prepare",
      "--datasets",
      "tiny_shakespeare,digits",
      "--data_dir",
      str(tmp_path),
      "--manual_dir",
      os.environ["GENJAX_MANUAL_DIR"],
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "tiny_shakespeare: prepared from" in result.stdout
  # genjax's summary lines only: no TFDS "Downloading and preparing", absl or oneDNN notices
  lines = (result.stdout + result.stderr).strip().splitlines()
  assert all(line.startswith(("tiny_shakespeare:", "digits:", "done in")) for line in lines), lines
  ds = gd.load(Data(name="tiny_shakespeare", data_dir=str(tmp_path)), "test")
  assert ds.num_tokens == 1115394 - int(1115394 * 0.9) - (1115394 - int(1115394 * 0.9)) // 2
  again = subprocess.run(
    [sys.executable, "-m", "genjax.data.prepare", "--datasets", "tiny_shakespeare", "--data_dir", str(tmp_path)],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert "already prepared" in again.stdout


@pytest.mark.dataset
@pytest.mark.slow
def test_load_prepares_automatically_in_a_child_process(tmp_path):
  """A run that finds its dataset unprepared prepares it in a child: TensorFlow never loads here."""
  real("tiny_shakespeare")
  if not tfds_io.tensorflow_available():
    pytest.skip("preparing needs TensorFlow")
  code = (
    "import sys; import genjax.data as gd; from genjax.config import Data\n"
    f"ds = gd.load(Data(name='tiny_shakespeare', data_dir={str(tmp_path)!r}, block_size=32), 'nanogpt_val')\n"
    "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    "print('tokens', ds.num_tokens)\n"
  )
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"tokens {1115394 - int(1115394 * 0.9)}" in result.stdout
  assert "(a child process)" in " ".join(result.stderr.split())
  assert (tmp_path / "tiny_shakespeare").is_dir()


@pytest.mark.slow
def test_a_child_preparation_error_comes_back_with_its_type_and_message(tmp_path, monkeypatch):
  if not tfds_io.tensorflow_available():
    pytest.skip("preparing needs TensorFlow")
  monkeypatch.delenv("GENJAX_MANUAL_DIR", raising=False)
  manual = tmp_path / "manual" / "tiny_shakespeare"
  manual.mkdir(parents=True)
  (manual / "input.txt").write_text("not the registered file\n")
  cfg = Data(name="tiny_shakespeare", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "manual"))
  with pytest.raises(gd.ChecksumMismatchError) as error:
    gd.load(cfg, "test")
  assert "input.txt" in str(error.value) and "1,115,394 bytes" in str(error.value)
  assert (manual / "input.txt").read_text() == "not the registered file\n"  # reported, not replaced
