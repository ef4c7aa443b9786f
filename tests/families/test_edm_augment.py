"""genjax.families.diffusion.augment, EDM's augmentation pipeline: replayed against NVlabs/edm's own
AugmentPipe on the random numbers it drew (experiments/reference/torch_edm_augment.py, run with
GENJAX_TORCH_PYTHON, a Python with torch, on the checkout GENJAX_EDM_DIR; skipped without them),
and checked without torch: p = 0, exact flips and quarter turns, the rotation's direction, the
label layout and how often p makes each transform fire."""

import dataclasses
import json
import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import errors
from genjax.families.diffusion import augment

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EDM = augment.AugmentConfig()  # EDM's CIFAR-10 setting, p = 0.12
EDM_OFF = dict(  # all of EDM's transforms off
  xflip=0.0, yflip=0.0, scale=0.0, rotate_frac=0.0, aniso=0.0, translate_frac=0.0
)
# the reference's draw functions for each kind of draw
TORCH_KIND = {"uniform": "rand", "normal": "randn", "bit": "randint2", "quarter": "randint4"}
RUNS = (
  "edm_p012",
  "edm_p1",
  "edm_p1_large",
  "edm_extreme",
  "edm_p1_small",
  "edm_p0",
  "edm_rect_p1",
  "all_p05",
  "all_gray_p1",
)

_apply = jax.jit(augment.apply, static_argnums=2)


def smooth_images(n, h, w, c, max_frequency, seed=0):
  """Sums of plane waves in [-1, 1], NHWC, at most max_frequency cycles per image."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w]
  y, x = y / h, x / w
  out = np.zeros((n, h, w, c))
  for i in range(n):
    for k in range(c):
      fx, fy = rng.uniform(-max_frequency, max_frequency, 2)
      out[i, :, :, k] = np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
  return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Against NVlabs/edm's AugmentPipe, record and replay
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
  python, edm = os.environ.get("GENJAX_TORCH_PYTHON"), os.environ.get("GENJAX_EDM_DIR")
  if not python or not edm:
    pytest.skip(
      "set GENJAX_TORCH_PYTHON to a Python with torch and GENJAX_EDM_DIR to a checkout of NVlabs/edm "
      "to compare with its AugmentPipe"
    )
  out = tmp_path_factory.mktemp("edm_augment")
  script = os.path.join(REPO, "experiments", "reference", "torch_edm_augment.py")
  run = subprocess.run(
    [python, script, "--edm", edm, "--out", str(out), "--runs", ",".join(RUNS)],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  return out


def replayed(record):
  """(config, draws) from a recorded run: the pipe's settings, and its random tensors, in the
  order it drew them, as `augment.draw`'s pytree."""
  settings = json.loads(str(record["settings"]))
  assert set(settings) == {f.name for f in dataclasses.fields(augment.AugmentConfig)}
  cfg = augment.AugmentConfig(**settings)
  n = record["images"].shape[0]
  kinds = [str(k) for k in record["draw_kinds"]]
  draws, i = {}, 0
  for name in augment.enabled(cfg):
    draws[name] = {}
    for field, kind, width in augment.DRAWS[name]:
      assert kinds[i] == TORCH_KIND[kind], (name, field, kinds[i])
      value = record[f"draw_{i}"]
      assert value.size == n * width, (name, field, value.shape)
      value = value.reshape(n) if width == 1 else value.reshape(2, n).T
      draws[name][field] = jnp.asarray(value.astype(np.int32) if value.dtype.kind == "i" else value)
      i += 1
  assert i == len(kinds), f"the reference drew {len(kinds)} tensors, the replay used {i}"
  return cfg, draws


@pytest.mark.parametrize("run", RUNS)
def test_replay_matches_edm_augment_pipe(reference_dir, run, monkeypatch):
  record = np.load(reference_dir / f"{run}.npz")
  cfg, draws = replayed(record)
  images, ref_out, ref_labels = record["images"], record["out"], record["labels"]
  b, h, w, _ = images.shape
  out, labels = jax.device_get(_apply(images, draws, cfg))
  assert out.shape == images.shape and labels.shape == (b, augment.label_dim(cfg)) == ref_labels.shape
  image_err = np.abs(out - ref_out).max()
  label_err = np.abs(labels - ref_labels).max()
  print(f"{run}: max |image diff| {image_err:.2e} (|ref| <= {np.abs(ref_out).max():.2f}), labels {label_err:.2e}")
  assert image_err <= 1e-4 * max(1.0, np.abs(ref_out).max())
  assert label_err <= 1e-6
  assert np.abs(ref_out - images).max() > 0.1 or run == "edm_p0"  # the pipe changed something

  geometric = any(getattr(cfg, name) > 0 for name in augment.GEOMETRIC)
  assert geometric  # every run has the resampling step, whose padding was recorded
  g_inv, _ = augment.geometric_matrices(draws, cfg, h, w)
  margin = np.asarray(augment.reference_margin(g_inv, h, w))
  np.testing.assert_array_equal(margin, record["pad_margin"])  # (x0, y0, x1, y1)
  clamped = margin == [w - 1, h - 1, w - 1, h - 1]
  if run in ("edm_p1", "edm_p1_large"):
    assert clamped.any()  # large transforms: the reference's padding hit its clamp
    # p = 1: every geometric transform fired on every image (scale, rotation, aniso w cos r, translation)
    assert (labels[:, [2, 3, 5, 7, 8]] != 0).all()
  if run == "edm_p1_small":
    assert not clamped.any()
  if run == "edm_extreme":
    assert clamped.sum() == 1
  if run == "edm_p0":  # the reference at p = 0: identity (up to the filters' rounding), zero labels
    assert np.abs(ref_out - images).max() < 1e-5 and not ref_labels.any()
  if run == "edm_extreme":
    # Here a plain reflect padding of the static margin (no mask of the reference's window) is not
    # the reference: the sampler reads where the reference has zeros. (The replay above also
    # fails, by 2e-3, without the second mask, the one of the upsampled image.)
    full = jnp.asarray([w - 1, h - 1, w - 1, h - 1], jnp.int32)
    monkeypatch.setattr(augment, "reference_margin", lambda *_: full)
    unmasked, _ = augment.apply(images, draws, cfg)
    assert np.abs(np.asarray(unmasked) - ref_out).max() > 2e-4


# ----------------------------------------------------------------------------------------------
# Without torch
# ----------------------------------------------------------------------------------------------


def test_label_dim_and_draws_follow_the_config():
  assert augment.label_dim(EDM) == 9
  assert augment.enabled(EDM) == ("xflip", "yflip", "scale", "rotate_frac", "aniso", "translate_frac")
  everything = augment.AugmentConfig(**{name: 1.0 for name in augment.TRANSFORMS})
  assert augment.label_dim(everything) == 19
  assert augment.label_dim(augment.AugmentConfig(**EDM_OFF)) == 0
  draws = augment.draw(jax.random.PRNGKey(0), 5, EDM)
  assert set(draws) == set(augment.enabled(EDM))
  assert draws["translate_frac"]["z"].shape == (5, 2) and draws["xflip"]["bit"].dtype == jnp.int32
  images = smooth_images(5, 8, 8, 3, 2.0)
  out, labels = jax.jit(augment.augment, static_argnums=2)(jax.random.PRNGKey(0), images, EDM)
  expected_out, expected_labels = augment.apply(images, draws, EDM)
  assert labels.shape == (5, 9) and out.shape == images.shape
  np.testing.assert_allclose(out, expected_out, atol=1e-6)
  np.testing.assert_array_equal(labels, expected_labels)


def test_p0_is_the_identity_with_zero_labels():
  # xflip = 1e8 gates with 1e8 * p: any p > 0 flips half the images, p = 0 none
  images = smooth_images(64, 16, 16, 3, 4.0)
  cfg = dataclasses.replace(EDM, p=0.0)
  out, labels = _apply(images, augment.draw(jax.random.PRNGKey(1), 64, cfg), cfg)
  assert not np.asarray(labels).any()
  np.testing.assert_allclose(out, images, atol=1e-5)  # the resampling still runs, as the reference's


def test_xflip_is_exact():
  images = smooth_images(2, 8, 12, 3, 4.0)
  draws = {"xflip": {"bit": jnp.asarray([1, 0], jnp.int32), "gate": jnp.asarray([0.5, 0.5])}}
  cfg = augment.AugmentConfig(**{**EDM_OFF, "xflip": 1.0}, p=1.0)
  out, labels = augment.apply(images, draws, cfg)
  np.testing.assert_array_equal(out[0], images[0, :, ::-1])
  np.testing.assert_array_equal(out[1], images[1])
  np.testing.assert_array_equal(labels, [[1.0], [0.0]])
  # the same draw within EDM's pipeline: the flip, then the (identity) resampling; the gate 0.5
  # passes xflip's (1e8 p) and fails the others' (p = 0.12)
  draws = augment.draw(jax.random.PRNGKey(0), 2, EDM)
  draws = jax.tree_util.tree_map(lambda d: jnp.full_like(d, 0.5) if d.dtype == jnp.float32 else d, draws)
  draws["xflip"]["bit"] = jnp.asarray([1, 0], jnp.int32)
  out, labels = augment.apply(images, draws, EDM)
  np.testing.assert_allclose(out[0], images[0, :, ::-1], atol=1e-5)
  np.testing.assert_allclose(out[1], images[1], atol=1e-5)
  np.testing.assert_array_equal(labels, [[1.0] + [0.0] * 8, [0.0] * 9])


def test_quarter_turns():
  images = smooth_images(1, 32, 32, 3, 1.5, seed=3)
  # rotate_int: a pixel permutation, exactly np.rot90 (counter-clockwise in (row, column))
  cfg = augment.AugmentConfig(**EDM_OFF, rotate_int=1.0, p=1.0)
  draws = {"rotate_int": {"quarter": jnp.asarray([1], jnp.int32), "gate": jnp.asarray([0.0])}}
  out, labels = augment.apply(images, draws, cfg)
  np.testing.assert_array_equal(out, np.rot90(images, 1, axes=(1, 2)))
  np.testing.assert_array_equal(labels, [[1.0, 0.0]])
  # rotate_frac by a uniform of 0.75: an angle of pi / 2 in the same direction, through the
  # resampling: the same turn up to the sym6 filter, whose asymmetry the turn exposes (~2% on this
  # smooth image), away from the borders; the opposite turn is far off
  cfg = augment.AugmentConfig(**{**EDM_OFF, "rotate_frac": 1.0}, p=1.0)
  draws = {"rotate_frac": {"u": jnp.asarray([0.75]), "gate": jnp.asarray([0.0])}}
  out, labels = augment.apply(images, draws, cfg)
  interior = (slice(None), slice(6, -6), slice(6, -6))
  assert np.abs(out - np.rot90(images, 1, axes=(1, 2)))[interior].max() < 0.05
  assert np.abs(out - np.rot90(images, 3, axes=(1, 2)))[interior].max() > 1.0
  np.testing.assert_allclose(labels, [[-1.0, 1.0]], atol=1e-6)  # cos - 1, sin


def test_how_often_p_fires():
  n, p = 20000, 0.12
  images = np.zeros((n, 4, 4, 1), np.float32)
  _, labels = _apply(images, augment.draw(jax.random.PRNGKey(2), n, EDM), EDM)
  fired = np.asarray(labels) != 0

  def close(fraction, expected):
    se = np.sqrt(expected * (1 - expected) / n)
    assert abs(fraction - expected) < 5 * se, (fraction, expected, se)

  close(fired[:, 0].mean(), 0.5)  # xflip: 1e8 p >= 1, so only the random bit decides
  close(fired[:, 1].mean(), p / 2)  # yflip: gate p, then the random bit
  for column in (2, 4, 5, 7):  # scale; rotate_frac's sine; aniso's w cos r; translate_frac's x
    close(fired[:, column].mean(), p)
  close(fired[:, 1:].any(axis=1).mean(), 1 - (1 - p / 2) * (1 - p) ** 4)  # anything but xflip


def test_bad_settings_are_config_errors():
  images = np.zeros((1, 8, 8, 3), np.float32)
  for bad in (dict(p=1.5), dict(scale=-1.0), dict(aniso_rotate_prob=2.0), dict(scale_std=float("nan"))):
    with pytest.raises(errors.ConfigError):
      augment.apply(images, {}, dataclasses.replace(EDM, **bad))
  with pytest.raises(errors.ConfigError, match="square"):
    augment.augment(jax.random.PRNGKey(0), np.zeros((1, 8, 6, 3), np.float32), dataclasses.replace(EDM, rotate_int=1.0))
  with pytest.raises(errors.ConfigError, match="RGB"):
    augment.augment(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 2), np.float32), dataclasses.replace(EDM, hue=1.0))
