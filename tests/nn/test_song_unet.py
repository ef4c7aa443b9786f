"""EDM's SongUNet (DDPM++ / NCSN++): EDM's parameter counts, EDM's outputs on EDM's weights (with
torch and an EDM checkout), conditioning, resampling and the errors of bad settings."""

import json
import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import errors
from genjax.nn.song_unet import Conv2d, FourierEmbedding, SongUNet, variables_from_edm_state_dict
from genjax.nn.unet import count_params

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# EDM's train.py CIFAR-10 networks (--arch=ddpmpp / ncsnpp, dropout 0.13, augment_dim 9).
CIFAR10 = {
  "ddpmpp": dict(
    embedding_type="positional",
    encoder_type="standard",
    decoder_type="standard",
    channel_mult_noise=1,
    resample_filter=(1, 1),
    model_channels=128,
    channel_mult=(2, 2, 2),
  ),
  "ncsnpp": dict(
    embedding_type="fourier",
    encoder_type="residual",
    decoder_type="standard",
    channel_mult_noise=2,
    resample_filter=(1, 3, 3, 1),
    model_channels=128,
    channel_mult=(2, 2, 2),
  ),
}
# sum(p.numel() for p in SongUNet(...).parameters()) of EDM's own SongUNet, from
#   python experiments/reference/torch_edm_song_unet.py --edm EDM_CHECKOUT --out /tmp/edmref
# (its counts.json; torch 2.13.0, NVlabs/edm training/networks.py): the paper's 55.7M and 56.4M.
EDM_COUNTS = {
  "ddpmpp_uncond": 55_733_891,
  "ddpmpp_cond": 55_735_299,
  "ncsnpp_uncond": 56_397_827,
  "ncsnpp_cond": 56_400_643,
}


def cifar10_count(arch: str, cond: bool) -> int:
  model = SongUNet(**CIFAR10[arch], dropout=0.13, augment_dim=9, num_classes=10 if cond else None)
  return count_params(model, (32, 32, 3), with_labels=cond)


@pytest.mark.parametrize("arch", ["ddpmpp", "ncsnpp"])
def test_edm_cifar10_networks_have_edms_parameter_counts(arch):
  for cond in (False, True):
    assert cifar10_count(arch, cond) == EDM_COUNTS[f"{arch}_{'cond' if cond else 'uncond'}"]


def small(**kw):
  return SongUNet(
    **{
      "model_channels": 32,
      "channel_mult": (1, 2),
      "num_blocks": 1,
      "attn_resolutions": (4,),
      "dropout": 0.1,
      "num_classes": 10,
      "augment_dim": 9,
      **kw,
    }
  )


def randomize(params, key):
  """EDM's init leaves the last layer of each branch at 1e-5 scale; perturb every weight."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def test_shapes_conditioning_and_the_null_label():
  model = small()
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  t = jnp.array([-0.5, 0.7])
  label = jnp.array([3, 10])  # 10: the null label
  augment = jax.random.normal(jax.random.key(1), (2, 9))
  # Init without augment labels still creates the augmentation map (EDM's parameter count).
  params = jax.jit(lambda k: model.init(k, x, t, label))(jax.random.key(0))["params"]
  assert params["map_augment"]["kernel"].shape == (9, 32) and "bias" not in params["map_augment"]
  assert params["map_label"]["kernel"].shape == (10, 32)
  assert params["enc_8x8_conv"]["kernel"].dtype == jnp.float32
  apply = jax.jit(
    lambda p, x, t, lab, aug, k, train: model.apply(
      {"params": p}, x, t, lab, train=train, augment_BxA=aug, rngs={"dropout": k}
    ),
    static_argnames="train",
  )
  run = lambda p, t=t, lab=label, aug=augment, train=False, k=0: apply(p, x, t, lab, aug, jax.random.key(k), train)
  out = run(params)
  assert out.shape == (2, 8, 8, 3) and out.dtype == jnp.float32
  assert 0 < float(jnp.abs(out).max()) < 1e-3  # the output conv starts at 1e-5 scale
  params = randomize(params, jax.random.key(2))
  ref = run(params)
  differs = lambda a, b: float(jnp.abs(a - b).max()) > 1e-3
  assert differs(ref, run(params, t=jnp.array([0.5, 0.7])))
  assert differs(ref[:1], run(params, lab=jnp.array([4, 10]))[:1])
  assert differs(ref, run(params, aug=augment + 1.0))
  # No augment labels is the zero vector through the bias-free map (EDM skips the map).
  np.testing.assert_allclose(run(params, aug=None), run(params, aug=jnp.zeros_like(augment)), atol=1e-6)
  # The null label is the zero one-hot: the same as any label through a zeroed label map.
  zeroed = {**params, "map_label": {**params["map_label"], "kernel": jnp.zeros_like(params["map_label"]["kernel"])}}
  null = jnp.array([10, 10])
  np.testing.assert_allclose(run(params, lab=null), run(zeroed, lab=jnp.array([3, 7])), atol=1e-6)
  assert differs(run(params, lab=null), run(params, lab=jnp.array([3, 3])))
  # Dropout acts only in training, drawing from the "dropout" stream.
  assert differs(run(params, train=True, k=3), run(params, train=True, k=4))


def test_box_filter_resampling_and_fourier_constants():
  x = jax.random.normal(jax.random.key(0), (1, 4, 6, 2))
  up = Conv2d(2, 0, up=True, resample_filter=(1, 1))
  down = Conv2d(2, 0, down=True, resample_filter=(1, 1))
  assert up.init(jax.random.key(0), x) == {}  # kernel 0: resampling only, no parameters
  x_up = up.apply({}, x)
  np.testing.assert_allclose(x_up, jnp.repeat(jnp.repeat(x, 2, 1), 2, 2), atol=1e-6)  # [1, 1]: nearest
  np.testing.assert_allclose(down.apply({}, x_up), x, atol=1e-6)  # 2x2 mean undoes it
  x_dn = Conv2d(2, 0, down=True, resample_filter=(1, 3, 3, 1)).apply({}, x)
  assert x_dn.shape == (1, 2, 3, 2)
  # [1,3,3,1] / 8 (x) itself, zero padded by 1, stride 2: the top-left output reads rows/cols 0..2.
  w = np.outer([3, 3, 1], [3, 3, 1]) / 64.0
  np.testing.assert_allclose(x_dn[0, 0, 0], np.einsum("hw,hwc->c", w, np.asarray(x[0, :3, :3])), atol=1e-6)

  t = jnp.array([0.3, -1.0])
  emb = FourierEmbedding(8)
  assert emb.init(jax.random.key(0), t) == {}  # the frequencies are not parameters
  freqs = 16 * np.random.RandomState(0).randn(4).astype(np.float32)
  angles = np.asarray(t)[:, None] * (2 * np.pi * freqs)
  np.testing.assert_allclose(emb.apply({}, t), np.concatenate([np.sin(angles), np.cos(angles)], 1), atol=1e-5)
  override = emb.apply({"constants": {"freqs": jnp.ones(4)}}, t)
  np.testing.assert_allclose(override[:, :4], np.sin(2 * np.pi * np.asarray(t)[:, None] * np.ones(4)), atol=1e-5)


def test_bad_settings_raise_config_errors():
  x = jax.ShapeDtypeStruct((1, 12, 12, 3), jnp.float32)
  t = jax.ShapeDtypeStruct((1,), jnp.float32)
  init = lambda model: jax.eval_shape(lambda x, t: model.init(jax.random.key(0), x, t), x, t)
  with pytest.raises(errors.ConfigError, match="halved 3 times"):
    init(small(num_classes=None, channel_mult=(1, 2, 2, 2)))
  with pytest.raises(errors.ConfigError, match="embedding_type"):
    init(small(num_classes=None, embedding_type="sinusoidal"))
  with pytest.raises(errors.ConfigError, match="encoder_type"):
    init(small(num_classes=None, encoder_type="resnet"))
  with pytest.raises(errors.ConfigError, match="pass label_B"):
    init(small())
  with pytest.raises(errors.ConfigError, match="GroupNorm"):
    init(small(num_classes=None, model_channels=36, channel_mult=(1, 4)))


def flax_module(cfg: dict) -> SongUNet:
  """genjax's SongUNet for the keyword arguments of EDM's SongUNet."""
  kw = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
  del kw["img_resolution"], kw["in_channels"]
  out_ch, num_classes = kw.pop("out_channels"), kw.pop("label_dim", 0) or None
  return SongUNet(**kw, out_ch=out_ch, num_classes=num_classes)


SMALL_NETWORKS = ("ddpmpp_small", "ncsnpp_small", "skip_small")  # the reference script's SMALL


def max_diff_on_edms_weights(folder, name: str, edm_count: int) -> float:
  """max |genjax - EDM| on the outputs of the reference script's network `name`, on its weights."""
  cfg = json.loads((folder / f"{name}_config.json").read_text())
  io = dict(np.load(folder / f"{name}_io.npz"))
  model = flax_module(cfg)
  label = io["label"] if model.num_classes else None
  variables = variables_from_edm_state_dict(dict(np.load(folder / f"{name}_weights.npz")))
  # Every EDM tensor lands on a parameter of the same shape, and every parameter gets one.
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), io["x"], io["t"], label))["params"]
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(lambda a: a.shape, variables["params"])
  assert count_params(model, io["x"].shape[1:], with_labels=label is not None) == edm_count
  assert ("constants" in variables) == (cfg["embedding_type"] == "fourier")  # EDM's frequency buffer
  out = jax.jit(lambda v: model.apply(v, io["x"], io["t"], label, augment_BxA=io.get("augment")))(variables)
  assert np.std(io["out"]) > 0.3  # random weights everywhere: a comparison of non-trivial outputs
  return float(np.abs(np.asarray(out) - io["out"]).max())


@pytest.mark.slow
def test_matches_edms_songunet_on_the_same_weights(tmp_path):
  python, edm = os.environ.get("GENJAX_TORCH_PYTHON"), os.environ.get("GENJAX_EDM_DIR")
  if not python:
    pytest.skip("set GENJAX_TORCH_PYTHON to a Python with torch (and GENJAX_EDM_DIR to an NVlabs/edm checkout)")
  if not edm:
    pytest.skip("set GENJAX_EDM_DIR to a checkout of https://github.com/NVlabs/edm")
  script = os.path.join(REPO, "experiments", "reference", "torch_edm_song_unet.py")
  run = subprocess.run(
    [python, script, "--edm", edm, "--out", str(tmp_path)], capture_output=True, text=True, timeout=900
  )
  assert run.returncode == 0, run.stderr[-3000:]
  counts = json.loads((tmp_path / "counts.json").read_text())
  for name, n in EDM_COUNTS.items():
    arch, cond = name.split("_")
    assert cifar10_count(arch, cond == "cond") == counts[name], name
    assert counts[name] == n, (name, counts[name])  # the constants above are still EDM's
  diffs = {name: max_diff_on_edms_weights(tmp_path, name, counts[name]) for name in SMALL_NETWORKS}
  for name, diff in diffs.items():
    assert diff <= 1e-4, (name, diff)
  print("max |genjax - EDM|: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))


def test_bfloat16_compute_keeps_float32_params_and_output():
  model = small(dtype=jnp.bfloat16, embedding_type="fourier", encoder_type="residual", resample_filter=(1, 3, 3, 1))
  args = (
    jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32),
    jax.ShapeDtypeStruct((2,), jnp.float32),
    jax.ShapeDtypeStruct((2,), jnp.int32),
  )
  params = jax.eval_shape(lambda *a: model.init(jax.random.key(0), *a), *args)["params"]
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  out = jax.eval_shape(lambda p, *a: model.apply({"params": p}, *a), params, *args)
  assert out.shape == (2, 8, 8, 3) and out.dtype == jnp.float32
  # The blocks really compute in bfloat16 (Flax's intermediates of the first residual block).
  _, state = jax.eval_shape(
    lambda p, *a: model.apply({"params": p}, *a, capture_intermediates=True, mutable=["intermediates"]), params, *args
  )
  assert state["intermediates"]["enc_8x8_block0"]["__call__"][0].dtype == jnp.bfloat16
