"""Stable Diffusion's KL-f8 autoencoder (genjax/nn/autoencoder_kl.py): diffusers' parameter count,
shapes, the posterior's helpers, the weight files it reads and writes, and the errors a user gets.

The reference tests run experiments/reference/torch_autoencoder_kl.py with GENJAX_TORCH_PYTHON (a
Python with torch, diffusers and safetensors, kept out of genjax's requirements) and compare
diffusers' encoder moments and decoder outputs with genjax's on the same random weights, read from
diffusers' layout, the original LDM layout and a full SD checkpoint; they skip without it."""

import json
import os
import struct
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from genjax import errors
from genjax.nn import autoencoder_kl as akl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# diffusers' AutoencoderKL with SD's KL-f8 config, sum(p.numel() for p in net.parameters()), from
#   python experiments/reference/torch_autoencoder_kl.py --out /tmp/akl   (counts.json)
# with torch 2.13.0 and diffusers 0.42.1.
KL_F8_PARAMETERS = 83_653_863
# the reference script's small model (3 levels: downsampling factor 4)
SMALL = dict(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8, latent_channels=4)
TOL = 1e-4  # max abs difference from diffusers (float32 on CPU)


def small_model():
  return akl.AutoencoderKL(**SMALL)


_JITTED = {}


def fns(model):
  """Jitted encode, decode and deterministic forward of `model`, compiled once per model and shape."""
  key = repr(model)
  if key not in _JITTED:
    _JITTED[key] = (
      jax.jit(lambda v, x: model.apply(v, x, method=model.encode)),
      jax.jit(lambda v, z: model.apply(v, z, method=model.decode)),
      jax.jit(lambda v, x: model.apply(v, x, sample_posterior=False)[0]),
    )
  return _JITTED[key]


@pytest.fixture(scope="module")
def small_variables():
  """Random weights for the small model, drawn in numpy from its shapes (no compiled init): kernels
  scaled by 1/sqrt(fan_in), and norm scales, norm shifts and biases away from 1 and 0, so that every
  tensor's mapping is tested."""
  rng = np.random.default_rng(0)

  def draw(path, s):
    if path[-1] == "kernel":
      return rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1]))
    return (1.0 if path[-1] == "scale" else 0.0) + 0.2 * rng.normal(size=s.shape)

  flat = traverse_util.flatten_dict(akl.param_shapes(small_model()))
  params = {p: jnp.asarray(draw(p, s), jnp.float32) for p, s in flat.items()}
  return {"params": traverse_util.unflatten_dict(params)}


def _safetensors():
  return pytest.importorskip("safetensors.numpy", reason="load_weights and save_weights need safetensors")


def _assert_same_tree(a, b):
  fa, fb = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
  assert set(fa) == set(fb)
  for k in fa:
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=str(k))


def test_kl_f8_has_diffusers_parameter_count():
  assert akl.count_params(akl.AutoencoderKL()) == KL_F8_PARAMETERS


def test_kl_f8_shapes_downsample_by_8():
  model = akl.AutoencoderKL()
  x = jax.ShapeDtypeStruct((2, 64, 48, 3), jnp.float32)

  def run(x):
    variables = model.init(jax.random.key(0), x, sample_posterior=False)
    mean, logvar = model.apply(variables, x, method=model.encode)
    return mean, logvar, model.apply(variables, mean, method=model.decode), model.apply(variables, x, jax.random.key(1))

  mean, logvar, dec, (recon, mean2, _) = jax.eval_shape(run, x)
  assert mean.shape == logvar.shape == mean2.shape == (2, 8, 6, 4)
  assert dec.shape == recon.shape == (2, 64, 48, 3)
  assert {a.dtype for a in (mean, logvar, dec, recon)} == {jnp.dtype(jnp.float32)}
  params = akl.param_shapes(model)
  assert params["quant_conv"]["kernel"].shape == (1, 1, 8, 8) and params["post_quant_conv"]["kernel"].shape == (
    1,
    1,
    4,
    4,
  )
  # the decoder has layers_per_block + 1 resnets per level; only the encoder's first three levels downsample
  assert "up_blocks_3_resnets_2" in params["decoder"] and "up_blocks_3_upsamplers_0" not in params["decoder"]
  assert "down_blocks_2_downsamplers_0" in params["encoder"] and "down_blocks_3_downsamplers_0" not in params["encoder"]


def test_small_model_shapes_sampling_and_bfloat16(small_variables):
  model = small_model()
  encode, decode, forward = fns(model)
  x = jax.random.uniform(jax.random.key(2), (2, 32, 48, 3), minval=-1.0, maxval=1.0)
  mean, logvar = encode(small_variables, x)
  assert mean.shape == logvar.shape == (2, 8, 12, 4)
  assert decode(small_variables, mean).shape == (2, 32, 48, 3)
  np.testing.assert_allclose(forward(small_variables, x), decode(small_variables, mean), atol=1e-6)
  # sample_posterior decodes mean + std * eps, with eps drawn from rng
  call = jax.jit(lambda v, x, k: model.apply(v, x, k))
  recon, mean2, logvar2 = call(small_variables, x, jax.random.key(3))
  np.testing.assert_allclose(mean2, mean, atol=1e-6)
  z = akl.sample_latent(jax.random.key(3), mean, logvar)
  np.testing.assert_allclose(
    z, mean + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.key(3), mean.shape), atol=1e-6
  )
  np.testing.assert_allclose(recon, decode(small_variables, z), atol=1e-5)
  assert float(jnp.abs(recon - call(small_variables, x, jax.random.key(4))[0]).max()) > 1e-3
  # bfloat16 computation keeps float32 parameters and float32 outputs, close to float32's
  model16 = akl.AutoencoderKL(**SMALL, dtype=jnp.bfloat16)
  mean16, _ = jax.jit(lambda v, x: model16.apply(v, x, method=model16.encode))(small_variables, x)
  assert mean16.dtype == jnp.float32
  assert 0 < float(jnp.abs(mean16 - mean).max()) < 0.1 * float(jnp.abs(mean).max())


def test_logvar_is_clamped_to_diffusers_range(small_variables):
  encode = fns(small_model())[0]
  x = jnp.zeros((1, 8, 8, 3))
  for bias, expected in ((100.0, 20.0), (-100.0, -30.0)):
    params = jax.tree.map(lambda p: p, small_variables["params"])
    params["quant_conv"] = {
      "kernel": params["quant_conv"]["kernel"],
      "bias": params["quant_conv"]["bias"].at[4:].set(bias),
    }
    mean, logvar = encode({"params": params}, x)
    np.testing.assert_array_equal(logvar, expected)
    np.testing.assert_allclose(mean, encode(small_variables, x)[0])  # the mean channels are untouched


def test_kl_is_diffusers_formula():
  rng = np.random.default_rng(0)
  mean, logvar = rng.normal(size=(3, 4, 5, 4)), rng.normal(size=(3, 4, 5, 4))
  expected = 0.5 * np.sum(mean**2 + np.exp(logvar) - 1.0 - logvar, axis=(1, 2, 3))
  got = akl.kl(jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32))
  assert got.shape == (3,)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  np.testing.assert_allclose(akl.kl(jnp.zeros((2, 3, 3, 4)), jnp.zeros((2, 3, 3, 4))), 0.0)


def test_config_and_input_errors():
  with pytest.raises(errors.ConfigError, match="norm_num_groups"):
    akl.AutoencoderKL(block_out_channels=(32, 48), norm_num_groups=32).init(
      jax.random.key(0), jnp.zeros((1, 4, 4, 3)), sample_posterior=False
    )
  model = small_model()
  with pytest.raises(errors.ConfigError, match="multiple of 4"):
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x, sample_posterior=False), jnp.zeros((1, 30, 32, 3)))
  with pytest.raises(errors.ConfigError, match="in_channels=3"):
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x, method=model.encode), jnp.zeros((1, 32, 32, 1)))


def test_missing_file_says_where_sd_weights_come_from(tmp_path):
  path = str(tmp_path / "nowhere" / "diffusion_pytorch_model.safetensors")
  with pytest.raises(errors.MissingError) as e:
    akl.load_weights(path)
  assert path in str(e.value) and "stabilityai/sd-vae-ft-mse" in str(e.value)
  assert isinstance(e.value, FileNotFoundError)


def test_file_of_another_architecture_names_its_keys(tmp_path, small_variables):
  st = _safetensors()
  path = str(tmp_path / "other.safetensors")
  st.save_file({"linear.weight": np.ones((3, 2), np.float32), "linear.bias": np.zeros(3, np.float32)}, path)
  with pytest.raises(errors.ConfigError) as e:
    akl.load_weights(path)
  msg = str(e.value)
  assert "decoder.conv_in.bias" in msg and "linear.bias" in msg and "block_out_channels=(128, 256, 512, 512)" in msg
  assert f"{len(traverse_util.flatten_dict(akl.param_shapes(akl.AutoencoderKL())))} parameters are missing" in msg
  # the small model's weights read as SD's KL-f8: shapes differ, the fourth level is missing
  path = str(tmp_path / "small.safetensors")
  akl.save_weights(small_variables, path)
  with pytest.raises(errors.ConfigError) as e:
    akl.load_weights(path)
  msg = str(e.value)
  assert "have other shapes" in msg and "decoder.conv_in.weight [64, 4, 3, 3] (expected [512, 4, 3, 3])" in msg
  assert "parameters are missing (decoder.up_blocks.0.resnets.2.conv1.bias" in msg  # KL-f8's third decoder resnet
  # and with one layer more per block than they have
  with pytest.raises(errors.ConfigError, match=r"missing \(decoder\.up_blocks\.0\.resnets\.2\.conv1\.bias"):
    akl.load_weights(path, akl.AutoencoderKL(**{**SMALL, "layers_per_block": 2}))
  # not a safetensors file at all
  (tmp_path / "model.ckpt").write_bytes(b"PK\x03\x04 a pickled torch checkpoint")
  with pytest.raises(errors.ConfigError, match="is not a .safetensors file"):
    akl.load_weights(str(tmp_path / "model.ckpt"))


def test_save_load_round_trip_and_old_diffusers_names(tmp_path, small_variables):
  st = _safetensors()
  model = small_model()
  (tmp_path / "vae").mkdir()
  path = str(tmp_path / "vae" / "diffusion_pytorch_model.safetensors")
  akl.save_weights(small_variables, path)
  _assert_same_tree(akl.load_weights(path, model), small_variables)
  _assert_same_tree(akl.load_weights(str(tmp_path / "vae"), model), small_variables)  # a diffusers model folder
  stored = st.load_file(path)
  conv = stored["encoder.down_blocks.0.resnets.0.conv1.weight"]
  assert conv.shape == (32, 32, 3, 3)  # torch's OIHW
  np.testing.assert_array_equal(
    conv.transpose(2, 3, 1, 0), small_variables["params"]["encoder"]["down_blocks_0_resnets_0"]["conv1"]["kernel"]
  )
  q = stored["decoder.mid_block.attentions.0.to_q.weight"]
  np.testing.assert_array_equal(
    q.T, small_variables["params"]["decoder"]["mid_block"]["attentions_0"]["to_q"]["kernel"]
  )
  # diffusers before 0.14 (stabilityai/sd-vae-ft-mse's file) named the attention layers query, key, value, proj_attn
  old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
  renamed = {}
  for k, v in stored.items():
    for new, name in old.items():
      k = k.replace(f".attentions.0.{new}.", f".attentions.0.{name}.")
    renamed[k] = v
  assert "encoder.mid_block.attentions.0.proj_attn.weight" in renamed
  st.save_file(renamed, str(tmp_path / "old.safetensors"))
  _assert_same_tree(akl.load_weights(str(tmp_path / "old.safetensors"), model), small_variables)


def _write_safetensors_by_hand(path, arrays: dict, dtypes: dict):
  """The safetensors format (little-endian u64 header size, JSON header, raw buffers), for dtypes
  safetensors.numpy cannot write (bfloat16)."""
  header, data = {}, b""
  for name, a in arrays.items():
    buf = a.tobytes()
    header[name] = {
      "dtype": dtypes[a.dtype.name],
      "shape": list(a.shape),
      "data_offsets": [len(data), len(data) + len(buf)],
    }
    data += buf
  h = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)


def test_bfloat16_file_is_read(tmp_path, small_variables):
  st = _safetensors()
  import ml_dtypes

  akl.save_weights(small_variables, tmp_path / "f32.safetensors")
  bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in st.load_file(str(tmp_path / "f32.safetensors")).items()}
  _write_safetensors_by_hand(tmp_path / "bf16.safetensors", bf16, {"bfloat16": "BF16"})
  loaded = akl.load_weights(tmp_path / "bf16.safetensors", small_model())
  expected = jax.tree.map(lambda p: jnp.asarray(p, jnp.bfloat16).astype(jnp.float32), small_variables)
  _assert_same_tree(loaded, expected)
  assert jax.tree.leaves(loaded)[0].dtype == jnp.float32


# ---------------------------------------------------------------------------------------------
# Against diffusers itself.


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  python = os.environ.get("GENJAX_TORCH_PYTHON")
  if not python:
    pytest.skip("set GENJAX_TORCH_PYTHON to a Python with torch, diffusers and safetensors")
  probe = subprocess.run([python, "-c", "import torch, diffusers, safetensors"], capture_output=True, text=True)
  if probe.returncode:
    pytest.skip(f"{python} cannot import torch, diffusers and safetensors: {probe.stderr.strip()[-300:]}")
  _safetensors()
  out = tmp_path_factory.mktemp("torch_autoencoder_kl")
  script = os.path.join(REPO, "experiments", "reference", "torch_autoencoder_kl.py")
  run = subprocess.run([python, script, "--out", str(out)], capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  yield out
  os.remove(out / "kl_f8.safetensors")  # 335 MB


def _compare(model, variables, io, size):
  encode, decode, forward = fns(model)
  mean, logvar = encode(variables, io[f"x_{size}"])
  diffs = {
    "mean": np.abs(np.asarray(mean) - io[f"mean_{size}"]).max(),
    "logvar": np.abs(np.asarray(logvar) - io[f"logvar_{size}"]).max(),
    "decoder": np.abs(np.asarray(decode(variables, io[f"z_{size}"])) - io[f"dec_{size}"]).max(),
    "forward": np.abs(np.asarray(forward(variables, io[f"x_{size}"])) - io[f"recon_{size}"]).max(),
  }
  # the random networks' outputs are far from constant, so a tolerance of 1e-4 says something
  assert all(np.std(io[f"{k}_{size}"]) > 0.1 for k in ("mean", "logvar", "dec", "recon"))
  return diffs


@pytest.mark.parametrize("layout", ["small", "small_ldm", "small_sd"])
def test_matches_diffusers_on_the_same_weights(reference, layout):
  """diffusers' layout, the original LDM layout (attention as 1x1 convs, reversed decoder levels,
  a training-loss tensor beside) and a full SD checkpoint (first_stage_model. among other models)."""
  model = small_model()
  variables = akl.load_weights(str(reference / f"{layout}.safetensors"), model)
  io = np.load(reference / "small.npz")
  for size in ("32x32", "48x64"):
    diffs = _compare(model, variables, io, size)
    print(f"{layout} {size}: max |diff| " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= TOL, diffs
  assert io["x_48x64"].shape == (2, 48, 64, 3) and io["mean_48x64"].shape == (2, 12, 16, 4)


def test_kl_f8_matches_diffusers(reference):
  counts = json.loads((reference / "counts.json").read_text())
  model = akl.AutoencoderKL()
  assert counts["kl_f8"] == KL_F8_PARAMETERS == akl.count_params(model)
  assert counts["small"] == akl.count_params(small_model())
  variables = akl.load_weights(str(reference / "kl_f8.safetensors"))
  diffs = _compare(model, variables, np.load(reference / "kl_f8.npz"), "16x16")
  print("kl_f8 16x16: max |diff| " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
  assert max(diffs.values()) <= TOL, diffs


def test_save_weights_writes_diffusers_file(reference, tmp_path):
  st = _safetensors()
  variables = akl.load_weights(str(reference / "small_ldm.safetensors"), small_model())
  akl.save_weights(variables, tmp_path / "saved.safetensors")
  ours, theirs = st.load_file(str(tmp_path / "saved.safetensors")), st.load_file(str(reference / "small.safetensors"))
  assert set(ours) == set(theirs)
  for k in theirs:
    np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
