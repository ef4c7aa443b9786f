"""genjax.data.registry is the one table of the built-in datasets: prepare, export, the TFDS
reader, load/describe and the metrics' feature network all read it."""

import json
import types

import numpy as np
import pytest

import genjax.data as gd
from genjax.config import ConfigError, Data
from genjax.data import export, prepare, registry, sources, tfds_io
from genjax.data.datasets import ArraySource
from genjax.metrics import features

_TFDS_IMAGES = sources.tfds_images  # the real reader (the tests below replace it)

# What the tables the registry replaced said, copied from them before they were deleted (they were
# the old code's answers, not recomputed here): genjax.data.SHAPES, IMAGE_DATASETS, TEXT_DATASETS,
# DATASETS; genjax.data.export.IMAGE_SPLITS / TEXT_SPLITS; genjax.data.prepare._CACHE_SPLITS;
# genjax.data.tfds_io.TFDS_DATASETS; genjax.data.sources.TEXT_SPLITS; the feature-network domain
# map of genjax.metrics.features.default_for; and the split sizes in genjax.data's docstring table.
OLD_SHAPES = {
  "digits": ("image", (8, 8, 1), 10, False, None),
  "mnist": ("image", (28, 28, 1), 10, False, None),
  "fashion_mnist": ("image", (28, 28, 1), 10, False, None),
  "binarized_mnist": ("image", (28, 28, 1), None, True, None),
  "cifar10": ("image", (32, 32, 3), 10, False, None),
  "stacked_mnist": ("image", (28, 28, 3), 1000, False, None),
  "tiny_shakespeare": ("text", None, None, False, 65),
}
OLD_IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist", "binarized_mnist", "cifar10", "stacked_mnist")
OLD_TEXT_DATASETS = ("tiny_shakespeare",)
OLD_DATASETS = OLD_IMAGE_DATASETS + OLD_TEXT_DATASETS + ("folder", "text")
OLD_EXPORT_IMAGE_SPLITS = {  # also prepare's _CACHE_SPLITS, the same table
  "mnist": ("train", "test"),
  "fashion_mnist": ("train", "test"),
  "cifar10": ("train", "test"),
  "binarized_mnist": ("train", "validation", "test"),
}
OLD_EXPORT_TEXT_SPLITS = {"tiny_shakespeare": ("train", "validation", "test")}
OLD_TFDS_DATASETS = ("mnist", "fashion_mnist", "binarized_mnist", "tiny_shakespeare", "cifar10")
OLD_TEXT_SPLITS = ("train", "validation", "test", "nanogpt_train", "nanogpt_val", "all")
OLD_DOMAINS = {"mnist": "mnist", "binarized_mnist": "mnist", "fashion_mnist": "fashion_mnist"}
OLD_DOC_SIZES = {
  "digits": {"train": 1500, "test": 297},
  "mnist": {"train": 60000, "test": 10000},
  "fashion_mnist": {"train": 60000, "test": 10000},
  "binarized_mnist": {"train": 50000, "validation": 10000, "test": 10000},
  "stacked_mnist": {"train": 60000, "test": 10000},
  "cifar10": {"train": 50000, "test": 10000},
}


def test_every_entry_says_what_the_old_tables_said():
  assert gd.SHAPES == OLD_SHAPES
  for name, old in OLD_SHAPES.items():
    entry = registry.get(name)
    assert (entry.kind, entry.shape, entry.num_classes, entry.binary, entry.char_vocab) == old, name
  assert registry.names("image") == gd.IMAGE_DATASETS == OLD_IMAGE_DATASETS
  assert registry.names("text") == gd.TEXT_DATASETS == OLD_TEXT_DATASETS
  assert registry.known_names() == gd.DATASETS == OLD_DATASETS and gd.OWN_DATASETS == ("folder", "text")
  tfds = {b.name: b.stored_splits() for b in registry.tfds_entries()}
  assert tfds == {**OLD_EXPORT_IMAGE_SPLITS, **OLD_EXPORT_TEXT_SPLITS}
  assert {b.name for b in registry.tfds_entries() if b.kind == "image"} == set(OLD_EXPORT_IMAGE_SPLITS)
  assert sorted(tfds_io.builtin_names()) == sorted(OLD_TFDS_DATASETS)
  assert registry.get("tiny_shakespeare").split_names() == OLD_TEXT_SPLITS
  assert {n: b.feature_domain for n, b in registry.BUILTINS.items() if b.feature_domain} == OLD_DOMAINS
  for name, sizes in OLD_DOC_SIZES.items():
    assert {s.name: s.size for s in registry.get(name).splits if s.stored} == sizes
  # the name checks the old code made: binarized_mnist's 0/1 pixels, stacked_mnist built from mnist
  assert [n for n, b in registry.BUILTINS.items() if b.pixel_scale != 1] == ["binarized_mnist"]
  assert registry.tfds_source("stacked_mnist").name == "mnist" and registry.tfds_source("digits") is None


def test_the_registry_sizes_of_digits_are_what_load_reads():
  for split in registry.get("digits").split_names():
    size = next(s.size for s in registry.get("digits").splits if s.name == split)
    assert gd.load(Data(name="digits"), split).num_examples == size


def test_every_built_in_dataset_is_in_the_data_docstring():
  for name in registry.names():
    assert f"| {name}" in gd.__doc__ or f", {name} |" in gd.__doc__, name


def test_an_unknown_name_gets_the_close_matches():
  with pytest.raises(ConfigError, match=r"'fashion_mnst'\. Did you mean fashion_mnist\? Known: digits, mnist,"):
    registry.get("fashion_mnst")
  assert registry.find("fashion_mnst") is None


# A dataset that exists only in this test: genjax calls it "kuzushiji", TFDS "kmnist".
EXTRA = registry.Builtin(
  name="kuzushiji",
  kind="image",
  shape=(28, 28, 1),
  num_classes=10,
  splits=(registry.Split("train", 5), registry.Split("test", 3), registry.Split("both", 8, stored=False)),
  tfds_name="kmnist",
  feature_domain="kmnist",
)


@pytest.fixture
def extra(monkeypatch):
  """EXTRA registered, its TFDS reading replaced by tiny arrays; yields the (name, split) asked for."""
  monkeypatch.setitem(registry.BUILTINS, EXTRA.name, EXTRA)
  asked = []

  def tfds_images(name, split, data_cfg):
    asked.append((name, split))
    n = {"train": 5, "test": 3}[split]
    return ArraySource(np.full((n, 28, 28, 1), 7, np.uint8), np.arange(n, dtype=np.int32)), 10

  monkeypatch.setattr(sources, "tfds_images", tfds_images)
  return asked


def test_one_entry_is_seen_by_describe_load_tfds_io_and_the_metrics(extra):
  assert "kuzushiji" in gd.DATASETS and "kuzushiji" in gd.IMAGE_DATASETS and gd.SHAPES["kuzushiji"][1] == (28, 28, 1)
  info = gd.describe(Data(name="kuzushiji"))
  assert (info.kind, info.shape, info.num_classes, info.binary) == ("image", (28, 28, 1), 10, False)
  assert gd.load(Data(name="kuzushiji"), "test").num_examples == 3 and extra == [("kuzushiji", "test")]
  assert "kmnist" in tfds_io.builtin_names()
  assert features.default_for("kuzushiji") == "classifier_kmnist"
  with pytest.raises(ConfigError, match="Did you mean kuzushiji"):
    gd.describe(Data(name="kuzushij"))


def test_one_entry_is_what_prepare_prepares_and_caches(extra, monkeypatch, tmp_path, capsys):
  built = []

  def builder(name, data_dir, file_format):
    built.append(name)
    return types.SimpleNamespace(is_prepared=lambda: True, data_dir=f"{data_dir}/{name}/1.0.0")

  fake_tfds = types.SimpleNamespace(disable_progress_bar=lambda: None, builder=builder)
  monkeypatch.setattr(tfds_io, "import_tfds", lambda: fake_tfds)
  loaded = []
  monkeypatch.setattr(prepare, "load", lambda cfg, split: loaded.append((cfg.name, split)))
  assert prepare.main(["--datasets", "kuzushiji", "--data_dir", str(tmp_path)]) == 0
  assert built == ["kmnist"]  # TFDS is asked for its own name
  assert loaded == [("kuzushiji", "train"), ("kuzushiji", "test")]  # the stored splits, not "both"
  out = capsys.readouterr().out
  assert f"kuzushiji: already prepared in {tmp_path}/kmnist/1.0.0" in out and "kuzushiji: decoded" in out


def test_one_entry_is_what_export_writes(extra, monkeypatch, tmp_path):
  info = export.export("kuzushiji", str(tmp_path), Data(name="kuzushiji"))
  assert info["splits"] == {"train": 5, "test": 3} and info["shape"] == [28, 28, 1]
  assert extra == [("kuzushiji", "train"), ("kuzushiji", "test")]
  assert json.loads((tmp_path / "kuzushiji" / export.MARKER).read_text()) == info
  with pytest.raises(ValueError, match="genjax exports binarized_mnist, cifar10, fashion_mnist, kuzushiji, mnist"):
    export.export("stacked_mnist", str(tmp_path), Data(name="stacked_mnist"))
  # and genjax reads the export back (genjax.data.portable) under the entry's name
  monkeypatch.setattr(sources, "tfds_images", _TFDS_IMAGES)
  dataset = gd.load(Data(name="kuzushiji", data_dir=str(tmp_path)), "train")
  assert dataset.num_examples == 5 and dataset.info.num_classes == 10


def test_reading_tfds_without_tensorflow_datasets_names_the_extra(monkeypatch):
  """The lightest install (`pip install -e .`) has no tensorflow-datasets: a TFDS dataset gets one
  paragraph naming the extra to install and the portable export that needs none."""
  import sys

  import pytest

  from genjax import errors
  from genjax.data import tfds_io

  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # `import` now fails as if absent
  with pytest.raises(errors.UserError, match=r'pip install -e "\.\[tfds\]"') as e:
    tfds_io.import_tfds()
  assert "genjax.data.export" in str(e.value) and isinstance(e.value, tfds_io.DatasetNotPreparedError)
