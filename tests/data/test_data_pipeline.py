"""Batch order, process shares, evaluation coverage and augmentation of genjax.data datasets.

These use in-memory sources whose labels are the example indices, so a batch's labels say
exactly which examples it holds; no downloaded data is needed.
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits

import genjax.data as gd
from genjax.config import Data
from genjax.data.datasets import ArraySource, ImageDataset, process_share, uniform_rows
from genjax.data.info import DataInfo
from genjax.data.sources import StackedMnistSource

N = 37  # not a multiple of any batch size used below, so batches straddle epochs


def indexed_dataset(n=N, binarize="none", flip=False, shape=(4, 5, 1)):
  """Images with random pixels; label k marks example k."""
  rng = np.random.default_rng(123)
  images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
  info = DataInfo(name="indexed", kind="image", shape=shape, num_classes=n)
  return ImageDataset(info, ArraySource(images, np.arange(n)), binarize=binarize, flip=flip)


def equal_batches(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_same_step_gives_same_batch_and_seeds_differ():
  ds = indexed_dataset(binarize="dynamic", flip=True)
  first = ds.batch(5, 8, seed=3)
  ds.batch(6, 8, seed=3)
  assert equal_batches(first, ds.batch(5, 8, seed=3))
  assert not np.array_equal(first["label"], ds.batch(5, 8, seed=4)["label"])
  assert not np.array_equal(first["label"], ds.batch(6, 8, seed=3)["label"])


def test_resumed_run_reads_the_batches_of_an_uninterrupted_run():
  uninterrupted = indexed_dataset(binarize="dynamic", flip=True)
  batches = [uninterrupted.batch(step, 8, seed=1) for step in range(12)]
  resumed = indexed_dataset(binarize="dynamic", flip=True)  # fresh object: nothing cached
  for step in range(7, 12):  # resume mid-epoch (7 * 8 = 56 = epoch 1, position 19)
    assert equal_batches(batches[step], resumed.batch(step, 8, seed=1))


def test_every_example_appears_once_per_epoch():
  ds = indexed_dataset()
  batch = 8
  steps = 4 * N // batch + 2
  labels = np.concatenate([ds.batch(s, batch, seed=0)["label"] for s in range(steps)])
  for epoch in range(4):
    assert sorted(labels[epoch * N : (epoch + 1) * N]) == list(range(N))
  # Different epochs are shuffled differently.
  assert not np.array_equal(labels[:N], labels[N : 2 * N])


@pytest.mark.parametrize("process_count", [1, 2, 4])
@pytest.mark.parametrize("binarize", ["none", "dynamic"])
def test_process_shares_concatenate_to_the_global_batch(process_count, binarize):
  ds = indexed_dataset(binarize=binarize, flip=True)
  for step in (0, 4, 9):  # step 4 straddles the first epoch boundary (32..39)
    whole = ds.batch(step, 8, seed=2)
    shares = [ds.batch(step, 8, seed=2, process_index=p, process_count=process_count) for p in range(process_count)]
    for key in whole:
      assert np.array_equal(np.concatenate([s[key] for s in shares]), whole[key])


def test_uniform_rows_equals_slices_of_the_whole_draw():
  whole = np.random.Generator(np.random.PCG64(np.random.SeedSequence([7, 3]))).random((10, 2, 3))
  for start, count in [(0, 10), (3, 4), (9, 1)]:
    np.testing.assert_array_equal(uniform_rows((7, 3), start, count, (2, 3)), whole[start : start + count])


def test_shares_must_divide_the_batch():
  assert process_share(8, 3, 4) == (6, 8)
  with pytest.raises(ValueError, match="multiple"):
    process_share(6, 0, 4)
  with pytest.raises(ValueError, match="process_index"):
    process_share(8, 4, 4)


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_eval_batches_cover_every_example_once(process_count):
  ds = indexed_dataset(binarize="dynamic")
  seen, batches = [], 0
  for b in range(-(-N // 8)):
    shares = [list(ds.eval_batches(8, process_index=p, process_count=process_count))[b] for p in range(process_count)]
    labels = np.concatenate([s["label"] for s in shares])
    mask = np.concatenate([s["mask"] for s in shares])
    assert labels.shape == mask.shape == (8,)
    seen.extend(labels[mask == 1].tolist())
    batches += 1
  assert seen == list(range(N))  # stored order, each once; the 3 padded rows are masked
  assert batches == len(list(ds.eval_batches(8)))
  assert len(list(ds.eval_batches(8, num_batches=2))) == 2


def test_eval_binarization_is_fixed_per_example():
  ds = indexed_dataset(binarize="dynamic")
  by8 = np.concatenate([b["image"][b["mask"] == 1] for b in ds.eval_batches(8)])
  by4 = np.concatenate([b["image"][b["mask"] == 1] for b in ds.eval_batches(4)])
  np.testing.assert_array_equal(by8, by4)
  np.testing.assert_array_equal(by8, np.concatenate([b["image"][b["mask"] == 1] for b in ds.eval_batches(8)]))


def test_image_scaling_and_threshold_binarization():
  ds = indexed_dataset()
  raw = ds.source.images
  batch = ds.batch(0, 8, seed=0)
  expected = raw[batch["label"]].astype(np.float64) * 2 / 255 - 1
  np.testing.assert_allclose(batch["image"], expected, atol=1e-6)
  assert batch["image"].dtype == np.float32
  thresholded = indexed_dataset(binarize="threshold").batch(0, 8, seed=0)
  np.testing.assert_array_equal(thresholded["image"], np.where(raw[batch["label"]] / 255 > 0.5, 1, -1))


def test_dynamic_binarization_draws_bernoulli_of_the_intensity():
  values = np.array([0, 64, 128, 255], dtype=np.uint8)
  images = np.broadcast_to(values[None, None, :, None], (10, 50, 4, 1)).copy()  # columns of fixed value
  info = DataInfo(name="const", kind="image", shape=(50, 4, 1))
  ds = ImageDataset(info, ArraySource(images, np.zeros(10)), binarize="dynamic")
  draws = np.concatenate([ds.batch(s, 10, seed=0)["image"] for s in range(20)])  # 200 x 50 per column
  assert set(np.unique(draws)) == {-1.0, 1.0}
  on = (draws == 1).mean(axis=(0, 1, 3))
  p = values / 255
  assert on[0] == 0 and on[3] == 1
  # 10,000 draws per column: 5 standard deviations of a Bernoulli mean is below 0.025.
  np.testing.assert_allclose(on[1:3], p[1:3], atol=0.025)


def test_flip_mirrors_about_half_of_the_images():
  ds = indexed_dataset(flip=True)
  plain = indexed_dataset()
  flipped = 0
  for step in range(10):
    a, b = ds.batch(step, 8, seed=0), plain.batch(step, 8, seed=0)
    for x, y in zip(a["image"], b["image"]):
      same, mirrored = np.array_equal(x, y), np.array_equal(x, y[:, ::-1])
      assert same or mirrored
      flipped += mirrored and not same
  assert 20 <= flipped <= 60  # of 80, expected 40


def test_digits_split_and_scale():
  bunch = load_digits()
  train, test = gd.load(Data(name="digits"), "train"), gd.load(Data(name="digits"), "test")
  assert (train.num_examples, test.num_examples) == (1500, 297)
  assert train.info == DataInfo(name="digits", kind="image", shape=(8, 8, 1), num_classes=10)
  np.testing.assert_array_equal(np.concatenate([train.source.labels, test.source.labels]), bunch.target)
  batch = next(test.eval_batches(297))
  np.testing.assert_allclose(batch["image"][..., 0], bunch.images[1500:] / 8 - 1, atol=1e-6)
  assert batch["image"].min() == -1 and batch["image"].max() == 1
  assert sorted(np.unique(batch["label"])) == list(range(10))
  binarized = gd.load(Data(name="digits", binarize="dynamic"), "train")
  assert binarized.info.binary and set(np.unique(binarized.batch(0, 64, 0)["image"])) == {-1.0, 1.0}


def test_stacked_mnist_construction():
  rng = np.random.default_rng(0)
  n = 50
  mnist = ArraySource(rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8), rng.integers(0, 10, n))
  stacked = StackedMnistSource(mnist)
  images, labels = stacked.get(np.arange(n))
  assert images.shape == (n, 6, 6, 3) and stacked.shape == (6, 6, 3)
  channel_sources = []
  for c in range(3):
    # Find which MNIST digit each channel shows, independently of the stored index table.
    match = [[j for j in range(n) if np.array_equal(images[k, ..., c], mnist.images[j, ..., 0])] for k in range(n)]
    assert all(len(m) >= 1 for m in match)
    channel_sources.append([m[0] for m in match])
  d = np.array(channel_sources).T  # [n, 3]
  np.testing.assert_array_equal(
    labels, 100 * mnist.labels[d[:, 0]] + 10 * mnist.labels[d[:, 1]] + mnist.labels[d[:, 2]]
  )
  np.testing.assert_array_equal(d[:, 0], np.arange(n))
  for c in (1, 2):  # every digit used once per channel
    assert sorted(d[:, c]) == list(range(n))
  assert not np.array_equal(d[:, 1], d[:, 2])
  # Deterministic: a second construction is identical.
  np.testing.assert_array_equal(StackedMnistSource(mnist).digit_indices_Nx3, stacked.digit_indices_Nx3)


def test_unknown_dataset_suggests_a_name():
  with pytest.raises(ValueError, match="Did you mean mnist"):
    gd.load(Data(name="mnsit"), "train")


def test_pipeline_throughput_is_positive():
  assert gd.pipeline_throughput(gd.load(Data(name="digits"), "train"), 64, steps=3) > 0


def test_first_examples_masks_everything_after_the_limit():
  from genjax.data.datasets import first_examples

  batches = [
    {"x": np.arange(4), "mask": np.array([1, 1, 1, 1], np.float32)},
    {"x": np.arange(4), "mask": np.array([1, 1, 0, 0], np.float32)},
    {"x": np.arange(4), "mask": np.array([1, 1, 1, 1], np.float32)},
  ]
  out = list(first_examples(iter(batches), 5))
  assert len(out) == 2  # nothing after the batch that reaches the limit
  np.testing.assert_array_equal(out[1]["mask"], [1, 0, 0, 0])
  assert sum(b["mask"].sum() for b in out) == 5
  assert list(first_examples(iter(batches), None)) == batches
  no_mask = list(first_examples(iter([{"x": np.zeros(3)}]), 2))
  np.testing.assert_array_equal(no_mask[0]["mask"], [1, 1, 0])
