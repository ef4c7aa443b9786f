"""Your own data (genjax.data.files): image folders and text files, generated here."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

import genjax.data as gd
from genjax import config as config_lib
from genjax.config import ConfigError, Data
from genjax.data import files


def write_png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def class_folder(tmp_path, counts=(("cat", 6), ("dog", 5)), size=8):
  """One sub-folder per class; image k of class c is the constant (40 * class + 3 * k)."""
  root = tmp_path / "images"
  for c, (name, count) in enumerate(counts):
    for k in range(count):
      write_png(root / name / f"{k:03d}.png", np.full((size, size, 3), 40 * c + 3 * k, np.uint8))
  return root


def flat_folder(tmp_path, n=25, size=8):
  """n random RGB images named 000.png ...; returns the root and the arrays in sorted order."""
  root = tmp_path / "flat"
  rng = np.random.default_rng(0)
  arrays = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
  for k in range(n):
    write_png(root / f"{k:03d}.png", arrays[k])
  return root, arrays


def equal_batches(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_sub_folders_are_classes_in_sorted_order(tmp_path):
  root = class_folder(tmp_path, counts=(("dog", 5), ("cat", 6)))  # written dog first
  ds = gd.load(Data(name="folder", path=str(root), image_size=8, holdout=0.0), "all")
  assert ds.info.num_classes == 2 and ds.info.shape == (8, 8, 3) and ds.num_examples == 11
  images, labels = ds.source.get(np.arange(11))
  # Sorted: cat/000..005 (label 0), then dog/000..004 (label 1).
  np.testing.assert_array_equal(labels, [0] * 6 + [1] * 5)
  expected = [40 * 1 + 3 * k for k in range(6)] + [40 * 0 + 3 * k for k in range(5)]  # cat was class 1 above
  np.testing.assert_array_equal(images[:, 0, 0, 0], expected)
  batch = ds.batch(0, 4, seed=0)
  np.testing.assert_allclose(batch["image"][:, 0, 0, 0], np.asarray(expected)[ds._order.indices(0, 0, 4)] / 127.5 - 1)


def test_exact_size_png_keeps_its_pixels_and_no_sub_folders_means_no_labels(tmp_path):
  root, arrays = flat_folder(tmp_path, n=5)
  ds = gd.load(Data(name="folder", path=str(root), image_size=8, holdout=0.0), "all")
  assert ds.info.num_classes is None
  images, labels = ds.source.get(np.arange(5))
  np.testing.assert_array_equal(images, arrays)
  np.testing.assert_array_equal(labels, 0)


def test_center_crop_and_resize(tmp_path):
  # 8 high, 16 wide: columns 0-3 are 10, 4-11 are 200, 12-15 are 50; the center crop is all 200.
  wide = np.full((8, 16, 3), 10, np.uint8)
  wide[:, 4:12] = 200
  wide[:, 12:] = 50
  write_png(tmp_path / "f" / "wide.png", wide)
  gray = np.zeros((12, 12), np.uint8)
  gray[:, 6:] = 255  # left half black, right half white
  write_png(tmp_path / "f" / "zgray.png", gray)
  ds = gd.load(Data(name="folder", path=str(tmp_path / "f"), image_size=4, holdout=0.0), "all")
  images, _ = ds.source.get(np.arange(2))
  assert images.shape == (2, 4, 4, 3)
  np.testing.assert_array_equal(images[0], 200)
  assert (images[1][:, 0] == 0).all() and (images[1][:, -1] == 255).all()  # gray became RGB, halves kept
  one = gd.load(Data(name="folder", path=str(tmp_path / "f"), image_size=4, channels=1, holdout=0.0), "all")
  assert one.info.shape == (4, 4, 1)
  np.testing.assert_array_equal(
    one.source.get(np.array([0]))[0][0, :, :, 0], round(0.299 * 200 + 0.587 * 200 + 0.114 * 200)
  )


def test_crop_size_keeps_the_centered_square(tmp_path):
  # DCGAN's CelebA crop: a centered square of crop_size original pixels, then resized.
  image = np.full((12, 14, 3), 10, np.uint8)
  image[4:8, 5:9] = 200  # the centered 4x4 square of a 12x14 image
  write_png(tmp_path / "c" / "a.png", image)
  big = np.full((384, 384, 3), 20, np.uint8)
  big[128:256, 128:256] = (200, 60, 90)  # on JPEG block edges, so the reduced decode keeps its border
  (tmp_path / "c" / "b.jpg").parent.mkdir(exist_ok=True)
  Image.fromarray(big).save(tmp_path / "c" / "b.jpg", quality=95)
  ds = gd.load(Data(name="folder", path=str(tmp_path / "c"), image_size=4, crop_size=4, holdout=0.0), "all[:1]")
  np.testing.assert_array_equal(ds.source.get(np.array([0]))[0][0], 200)
  jpeg = gd.load(Data(name="folder", path=str(tmp_path / "c"), image_size=16, crop_size=128, holdout=0.0), "all[1:]")
  kept = jpeg.source.get(np.array([0]))[0][0]
  np.testing.assert_allclose(kept.reshape(-1, 3).mean(0), [200, 60, 90], atol=4)
  assert kept[..., 0].min() > 180  # no background (20) inside the crop, even at its edges
  too_big = gd.load(Data(name="folder", path=str(tmp_path / "c"), image_size=4, crop_size=13, holdout=0.0), "all")
  # the file is fine, the crop is not: the error names both and the fix, not "cannot decode"
  with pytest.raises(ConfigError, match="a.png is 14x12 pixels, smaller .* data.crop_size=13") as error:
    too_big.source.get(np.array([0]))
  assert "--config.data.crop_size=None" in str(error.value) and "at most 12 pixels" in str(error.value)
  assert not isinstance(error.value, files.UnreadableImageError)


def test_jpeg_is_decoded_and_reduced(tmp_path):
  big = np.zeros((256, 128, 3), np.uint8)
  big[..., 0], big[..., 1], big[..., 2] = 30, 120, 220
  (tmp_path / "j").mkdir()
  Image.fromarray(big).save(tmp_path / "j" / "a.JPG", quality=95)
  ds = gd.load(Data(name="folder", path=str(tmp_path / "j"), image_size=16, holdout=0.0), "all")
  image = ds.source.get(np.array([0]))[0][0]
  assert image.shape == (16, 16, 3)
  np.testing.assert_allclose(image.reshape(-1, 3).mean(0), [30, 120, 220], atol=3)


def png_48_bit(array):
  """The bytes of a 16-bit-per-channel RGB PNG of uint16[H, W, 3] `array` (Pillow writes none)."""
  import struct
  import zlib

  height, width, _ = array.shape
  rows = b"".join(b"\0" + array[y].astype(">u2").tobytes() for y in range(height))  # filter 0: raw rows
  chunk = lambda kind, data: (  # noqa: E731
    struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  )
  header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, color type 2 (RGB)
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_16_bit_images_are_scaled_to_8_bits_not_clipped(tmp_path):
  """A 16-bit gray PNG (Pillow mode I;16) keeps its grey levels, v -> round(v * 255 / 65535):
  Pillow's own convert clipped every value above 255 to white. 48-bit RGB decodes to each sample's
  high byte (within 1 of the rounded value); floating-point samples are refused by name."""
  levels = np.array([0, 257 * 100, 32768, 65535], np.uint16)
  gray = np.tile(levels, (4, 1))
  write_png(tmp_path / "d" / "a_gray16.png", gray)
  assert Image.open(tmp_path / "d" / "a_gray16.png").mode == "I;16"
  rgb = np.zeros((4, 4, 3), np.uint16)
  rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 257 * 37, 1000
  (tmp_path / "d" / "b_rgb48.png").write_bytes(png_48_bit(rgb))
  expected = np.round(levels / 65535 * 255)  # 0, 100, 128, 255
  one = gd.load(Data(name="folder", path=str(tmp_path / "d"), image_size=4, channels=1, holdout=0.0), "all")
  images, _ = one.source.get(np.arange(2))
  np.testing.assert_array_equal(images[0][:, :, 0], np.tile(expected, (4, 1)))
  three = gd.load(Data(name="folder", path=str(tmp_path / "d"), image_size=4, holdout=0.0), "all")
  images, _ = three.source.get(np.arange(2))
  np.testing.assert_array_equal(images[0][0], np.repeat(expected[:, None], 3, axis=1))  # gray -> RGB
  np.testing.assert_allclose(images[1].reshape(-1, 3), np.broadcast_to([255, 37, 1000 / 257], (16, 3)), atol=1)
  with pytest.raises(files.UnsupportedDepth, match="floating-point"):
    files.to_8bit(Image.fromarray(np.zeros((2, 2), np.float32)))


def test_images_far_smaller_than_the_training_size_are_named_once(tmp_path, caplog):
  root = tmp_path / "small"
  for k in range(3):
    write_png(root / f"{k}_tiny.png", np.full((8, 10, 3), 9, np.uint8))  # shorter side 8 < 32 / 2
  write_png(root / "3_fine.png", np.full((20, 20, 3), 9, np.uint8))  # 20 >= 16: upscaled, but not warned of
  ds = gd.load(Data(name="folder", path=str(root), image_size=32, holdout=0.0, in_memory_max_mb=0), "all")
  with caplog.at_level("WARNING", logger="genjax"):
    ds.source.get(np.arange(4))
    ds.source.get(np.arange(4))  # decoded again (streaming): no second warning
  warned = [r.getMessage() for r in caplog.records if "data.image_size" in r.getMessage()]
  assert len(warned) == 1, warned
  assert "3 of the first 4 images" in warned[0] and "0_tiny.png, 10x8 pixels" in warned[0]


def test_splits_hold_out_every_tenth_file_and_slice_the_sorted_list(tmp_path):
  root, _ = flat_folder(tmp_path, n=25)

  def names(split, **kw):
    ds = gd.load(Data(name="folder", path=str(root), image_size=8, **kw), split)
    return [f.rsplit("/", 1)[-1] for f in ds.source.files]

  all_names = [f"{k:03d}.png" for k in range(25)]
  assert names("test") == ["009.png", "019.png"]  # holdout 0.1: floor(25 / 10) = 2 files
  assert names("train") == [n for n in all_names if n not in ("009.png", "019.png")]
  assert names("all") == all_names
  assert names("train[:50%]") == names("train")[:11]  # floor(23 * 50 / 100)
  assert names("all[-5:]") == all_names[-5:]
  assert names("all[10%:20%]") == all_names[2:5]
  assert names("test", holdout=0.2) == ["004.png", "009.png", "014.png", "019.png", "024.png"]
  assert files.holdout_mask(1000, 0.1).sum() == 100 and files.holdout_mask(1000, 0.3).sum() == 300


@pytest.mark.parametrize("in_memory_max_mb", [4096, 0])
def test_batches_are_pure_in_seed_and_step_and_shares_concatenate(tmp_path, in_memory_max_mb):
  root = class_folder(tmp_path, counts=(("a", 7), ("b", 6), ("c", 4)))
  cfg = Data(name="folder", path=str(root), image_size=8, flip=True, holdout=0.0, in_memory_max_mb=in_memory_max_mb)
  first = gd.load(cfg, "train")
  assert (first.source._kept is not None) == bool(in_memory_max_mb)
  batches = [first.batch(step, 8, seed=3) for step in range(6)]
  resumed = gd.load(cfg, "train")  # a fresh object, as a resumed run builds
  for step in (5, 2, 3):
    assert equal_batches(batches[step], resumed.batch(step, 8, seed=3))
  other = gd.load(dataclasses.replace(cfg, in_memory_max_mb=4096 - in_memory_max_mb), "train")
  assert equal_batches(batches[4], other.batch(4, 8, seed=3))  # streamed == kept in memory
  for count in (2, 4):
    shares = [resumed.batch(4, 8, seed=3, process_index=p, process_count=count) for p in range(count)]
    for key in batches[4]:
      np.testing.assert_array_equal(np.concatenate([s[key] for s in shares]), batches[4][key])
  # Every example once per epoch (17 examples, 2 epochs in the first 34 rows).
  labels = np.concatenate([b["label"] for b in batches])
  assert sorted(labels[:17]) == [0] * 7 + [1] * 6 + [2] * 4
  assert not equal_batches(batches[0], first.batch(0, 8, seed=4))


def test_flip_mirrors_images(tmp_path):
  root = tmp_path / "lr"
  left = np.zeros((8, 8, 3), np.uint8)
  left[:, :4] = 255
  write_png(root / "left.png", left)
  ds = gd.load(Data(name="folder", path=str(root), image_size=8, flip=True, holdout=0.0), "all")
  firsts = np.array([ds.batch(step, 1, seed=0)["image"][0, 0, 0, 0] for step in range(40)])
  assert set(firsts.tolist()) == {-1.0, 1.0}  # both orientations occur


def test_streaming_opens_only_the_files_of_the_batch(tmp_path, monkeypatch):
  root, _ = flat_folder(tmp_path, n=25)
  opened = []
  read = files.paths.read_bytes
  monkeypatch.setattr(files.paths, "read_bytes", lambda p: (opened.append(p), read(p))[1])
  ds = gd.load(Data(name="folder", path=str(root), image_size=8, holdout=0.0, in_memory_max_mb=0), "all")
  assert opened == []  # loading lists names only
  ds.batch(0, 4, seed=0, process_index=1, process_count=2)
  expected = {ds.source.files[i] for i in ds._order.indices(0, 2, 2)}
  assert set(opened) == expected and len(opened) == 2  # this process's share only
  kept = gd.load(Data(name="folder", path=str(root), image_size=8, holdout=0.0), "all")
  opened.clear()
  kept.batch(0, 4, seed=0)
  kept.batch(0, 4, seed=0)
  assert len(opened) == 4  # decoded once, then read from memory


def test_bad_folders_say_what_to_do(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    gd.load(Data(name="folder", path=str(tmp_path / "nope")), "train")
  with pytest.raises(ConfigError, match="set --config.data.path"):
    gd.load(Data(name="folder"), "train")
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "notes.txt").write_text("hi")
  with pytest.raises(ConfigError, match="holds no PNG or JPEG.*notes.txt"):
    gd.load(Data(name="folder", path=str(tmp_path / "empty")), "train")
  root, _ = flat_folder(tmp_path, n=3)
  with pytest.raises(ConfigError, match="is empty: raise data.holdout"):
    gd.load(Data(name="folder", path=str(root)), "test")  # floor(3 * 0.1) = 0 held out
  with pytest.raises(ConfigError, match="Split 'training'.*train\\[:90%\\]"):
    gd.load(Data(name="folder", path=str(root)), "training")
  with pytest.raises(ConfigError, match="Split 'train\\[:x\\]'"):
    gd.load(Data(name="folder", path=str(root)), "train[:x]")
  write_png(root / "sub" / "a.png", np.zeros((4, 4, 3), np.uint8))
  with pytest.raises(ConfigError, match="directly in it.*sub-folders"):
    gd.load(Data(name="folder", path=str(root)), "train")


def test_unreadable_image_names_the_file(tmp_path):
  root, _ = flat_folder(tmp_path, n=2)
  (root / "001.png").write_bytes(b"not a png")
  ds = gd.load(Data(name="folder", path=str(root), image_size=8, holdout=0.0), "all")
  with pytest.raises(files.UnreadableImageError, match="001.png.*Replace or delete"):
    ds.source.get(np.arange(2))
  assert issubclass(files.UnreadableImageError, ConfigError)


def test_config_checks_own_data_fields():
  base = config_lib.Experiment(model=config_lib.load_config_file("experiments/default.py").model)
  for data, match in [
    (Data(channels=2), "channels"),
    (Data(holdout=1.0), "holdout"),
    (Data(image_size=0), "image_size"),
    (Data(decode_threads=-1), "decode_threads"),
    (Data(crop_size=0), "crop_size"),
    (Data(tokenizer="bpe", bpe_vocab_size=100), "bpe_vocab_size"),
    (Data(tokenizer="bpe", bpe_vocab_size=10**9), r"bpe_vocab_size = 1000000000 must lie in \[256, 1,048,576\]"),
  ]:
    with pytest.raises(ConfigError, match=match):
      config_lib.validate(dataclasses.replace(base, data=data))


# ----------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------


def test_text_file_and_folder(tmp_path):
  text = "".join(f"line {k}: the quick brown fox\n" for k in range(100))
  (tmp_path / "one.txt").write_text(text)
  cfg = Data(name="text", path=str(tmp_path / "one.txt"), block_size=16)
  train, test = gd.load(cfg, "train"), gd.load(cfg, "test")
  tok = train.tokenizer
  assert train.info.kind == "text" and train.info.vocab_size == len(set(text)) and tok == test.tokenizer
  cut = len(text) - len(text) // 10
  assert tok.decode(train.tokens) == text[:cut] and tok.decode(test.tokens) == text[cut:]
  assert tok.decode(gd.load(cfg, "all[:25%]").tokens) == text[: len(text) // 4]
  assert gd.load(dataclasses.replace(cfg, tokenizer="byte"), "all").info.vocab_size == 256
  # The batch of a step is a pure function of (seed, step); shares concatenate.
  again = gd.load(cfg, "train")
  whole = train.batch(7, 8, seed=1)
  assert equal_batches(whole, again.batch(7, 8, seed=1))
  halves = [again.batch(7, 8, seed=1, process_index=p, process_count=2)["tokens"] for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), whole["tokens"])
  for row in whole["tokens"]:
    assert tok.decode(row) in text[:cut]
  # A folder: its files sorted and joined, a newline added where one is missing.
  folder = tmp_path / "books"
  (folder / "b").mkdir(parents=True)
  (folder / "b" / "2.txt").write_text("second")
  (folder / "a.txt").write_text("first")
  (folder / ".hidden").write_text("skipped")
  assert files.read_corpus(str(folder)) == "first\nsecond"


def test_bad_text_says_what_to_do(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    gd.load(Data(name="text", path=str(tmp_path / "missing.txt")), "train")
  (tmp_path / "bin").mkdir()
  (tmp_path / "bin" / "x.dat").write_bytes(b"\xff\xfe\x00\x80")
  with pytest.raises(ConfigError, match="x.dat is not UTF-8"):
    gd.load(Data(name="text", path=str(tmp_path / "bin")), "train")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ConfigError, match="empty folder"):
    gd.load(Data(name="text", path=str(tmp_path / "empty")), "train")
  (tmp_path / "short.txt").write_text("tiny")
  with pytest.raises(ConfigError, match="lower data.block_size"):
    gd.load(Data(name="text", path=str(tmp_path / "short.txt"), block_size=8), "train")


def test_describe_lists_own_data(tmp_path):
  root = class_folder(tmp_path)
  info = gd.describe(Data(name="folder", path=str(root), image_size=8))
  assert info.shape == (8, 8, 3) and info.num_classes == 2 and info.kind == "image"


def test_bench_folder_prints_a_rate_per_thread_count(tmp_path, capsys):
  from genjax.data import bench_folder

  assert (
    bench_folder.main(["--num", "8", "--size", "32", "--image_size", "16", "--threads", "1,2", "--seconds", "0.05"])
    == 0
  )
  out = capsys.readouterr().out
  assert "wrote 8 32x32 JPEGs" in out and "threads=1: " in out and "threads=2: " in out and "images/s" in out


def test_text_with_a_bpe_tokenizer(tmp_path):
  pytest.importorskip("tokenizers")
  words = "to be or not that is the question whether tis nobler in mind suffer slings arrows".split()
  text = " ".join(np.random.default_rng(1).choice(words, 3000).tolist()) + "\n"
  (tmp_path / "t.txt").write_text(text)
  cfg = Data(name="text", path=str(tmp_path / "t.txt"), block_size=16, tokenizer="bpe", bpe_vocab_size=290)
  train, test = gd.load(cfg, "train"), gd.load(cfg, "test")
  cut = len(text) - len(text) // 10
  assert train.info.vocab_size == 290 and train.tokenizer == test.tokenizer
  from genjax.data import tokenizers

  assert train.tokenizer == tokenizers.make("bpe", text[:cut], 290)  # learnt on the training split only
  assert train.tokenizer != tokenizers.make("bpe", text, 290)
  assert train.tokenizer.decode(train.tokens) == text[:cut] and test.tokenizer.decode(test.tokens) == text[cut:]
  assert equal_batches(train.batch(3, 4, seed=0), gd.load(cfg, "train").batch(3, 4, seed=0))
  assert gd.describe(cfg).vocab_size == 290
