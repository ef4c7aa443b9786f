"""data.name="tfds:NAME": any TFDS dataset with an image or text feature, on TFDS's mock data."""

import contextlib
from unittest import mock

import numpy as np
import pytest

import genjax.data as gd
from genjax.config import ConfigError, Data
from genjax.data import files, tfds_io


def _mock_getitems(record_keys, generator, serialized=False):
  return [generator[k] for k in record_keys]


@contextlib.contextmanager
def mocked(num_examples=20):
  """TFDS's generated examples; see test_tfds_datasets.test_cifar10_code_path_with_mock_data for
  why `is_prepared` and `_getitems` are patched."""
  tfds = tfds_io.import_tfds()
  from tensorflow_datasets.testing import mocking  # pylint: disable=g-import-not-at-top

  with (
    tfds.testing.mock_data(num_examples=num_examples),
    mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True),
    mock.patch.object(mocking, "_getitems", _mock_getitems),
  ):
    yield


@pytest.mark.parametrize("in_memory_max_mb", [4096, 0])
def test_image_dataset_resized_with_its_labels(in_memory_max_mb, tmp_path):
  cfg = Data(name="tfds:svhn_cropped", image_size=16, in_memory_max_mb=in_memory_max_mb, data_dir=str(tmp_path))
  with mocked():
    ds = gd.load(cfg, "train")
    assert ds.info == gd.DataInfo(name="tfds:svhn_cropped", kind="image", shape=(16, 16, 3), num_classes=10)
    assert ds.num_examples == 20
    raw = tfds_io.import_tfds().builder("svhn_cropped", data_dir=str(tmp_path)).as_data_source("train")
    expected = np.stack([files.fit_array(raw[i]["image"], 16, 3) for i in range(20)])
    labels = np.array([raw[i]["label"] for i in range(20)])
    images, got_labels = ds.source.get(np.arange(20))
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(got_labels, labels)
    batch = ds.batch(3, 8, seed=1)
    again = gd.load(cfg, "train").batch(3, 8, seed=1)
    np.testing.assert_array_equal(batch["image"], again["image"])
    shares = [ds.batch(3, 8, seed=1, process_index=p, process_count=2)["label"] for p in range(2)]
    np.testing.assert_array_equal(np.concatenate(shares), batch["label"])
    np.testing.assert_array_equal(batch["label"], labels[ds._order.indices(1, 24, 8)])
    # (TFDS's mock data source ignores split slices, so slicing is not checked here.)
    gray = gd.load(Data(name="tfds:svhn_cropped", image_size=32, channels=1, data_dir=str(tmp_path)), "test")
    assert gray.info.shape == (32, 32, 1)


def test_text_dataset_joins_examples(tmp_path):
  with mocked(num_examples=6):
    ds = gd.load(Data(name="tfds:imdb_reviews", block_size=8, data_dir=str(tmp_path)), "train")
    raw = tfds_io.import_tfds().builder("imdb_reviews", data_dir=str(tmp_path)).as_data_source("train")
    text = "\n".join(raw[i]["text"].decode() if isinstance(raw[i]["text"], bytes) else raw[i]["text"] for i in range(6))
    assert ds.info.kind == "text" and ds.tokenizer.decode(ds.tokens) == text
    np.testing.assert_array_equal(ds.batch(2, 4, seed=0)["tokens"], ds.batch(2, 4, seed=0)["tokens"])


def test_unknown_and_unprepared_tfds_names_say_what_to_do(tmp_path):
  with pytest.raises(ConfigError, match="Did you mean svhn_cropped.*tfds:NAME:VERSION"):
    gd.load(Data(name="tfds:svhn_croped", data_dir=str(tmp_path)), "train")
  with pytest.raises(ConfigError, match="cannot be loaded at version"):
    gd.load(Data(name="tfds:mnist:9.9.9", data_dir=str(tmp_path)), "train")
  with pytest.raises(gd.DatasetNotPreparedError) as error:
    gd.load(Data(name="tfds:svhn_cropped", data_dir=str(tmp_path)), "train")
  assert f"tfds build svhn_cropped --data_dir {tmp_path} --file_format array_record" in str(error.value)
  with mocked(), pytest.raises(ConfigError, match="iris.*no top-level Image feature.*features \\(Tensor\\)"):
    gd.load(Data(name="tfds:iris", data_dir=str(tmp_path)), "train")


@pytest.mark.dataset
def test_a_prepared_dataset_by_name_slices_and_matches_the_builtin_reader():
  if not tfds_io.import_tfds().builder("mnist", data_dir=tfds_io.data_dir_for(Data())).is_prepared():
    pytest.skip("needs mnist prepared in GENJAX_DATA_DIR (python -m genjax.data.prepare --datasets mnist)")
  ds = gd.load(Data(name="tfds:mnist", image_size=28, channels=1), "test[:1%]")
  builtin = gd.load(Data(name="mnist"), "test")
  assert ds.num_examples == 100 and ds.info.num_classes == 10 and ds.info.shape == (28, 28, 1)
  images, labels = ds.source.get(np.arange(100))
  np.testing.assert_array_equal(images, builtin.source.images[:100])
  np.testing.assert_array_equal(labels, builtin.source.labels[:100])
  with pytest.raises(ConfigError, match="mnist has no split 'training'.*train\\[:90%\\]"):
    gd.load(Data(name="tfds:mnist"), "training")


@pytest.mark.parametrize("file_format", ["tfrecord", mock.Mock(value="tfrecord")])
def test_a_dataset_not_in_array_record_is_refused_with_the_remedy(file_format):
  builder = mock.Mock(data_dir="/d/mnist/3.0.1")
  builder.info.file_format = file_format
  with pytest.raises(tfds_io.DatasetNotPreparedError) as e:
    tfds_io._require_array_record(builder, "mnist", "Rebuild it somewhere else.")
  text = str(e.value)
  assert "prepared as tfrecord" in text and "/d/mnist/3.0.1" in text and text.endswith("Rebuild it somewhere else.")
  builder.info.file_format = mock.Mock(value="array_record")
  tfds_io._require_array_record(builder, "mnist", "unused")  # accepted: no error
