"""genjax's DiT (genjax/nn/dit.py) against facebookresearch/DiT's models.py: the paper's models have
the reference's parameter counts, the same weights give the same outputs, and the layers are
initialised, shaped, conditioned and sharded as DiT's are.

The reference test runs experiments/reference/torch_dit.py with GENJAX_TORCH_PYTHON (a Python with
torch and timm, kept out of genjax's requirements) on the checkout GENJAX_DIT_DIR; it skips
without them, or where that Python has torch but not timm."""

import json
import os
import re
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from genjax import errors
from genjax.core import sharding
from genjax.nn import dit
from genjax.nn.unet import count_params

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The reference's trainable parameters (requires_grad: everything but the frozen pos_embed buffer,
# which it keeps as an nn.Parameter and genjax computes as a constant) at 32x32x4 latents with
# 1000 classes (1001-row label table) and learn_sigma, from
#   python experiments/reference/torch_dit.py --dit_dir DiT --out /tmp/ditref   (counts.json)
# with torch 2.14.1, timm 1.0.31 and facebookresearch/DiT's models.py. Its model.parameters()
# totals are these plus pos_embed's 256 (p=2), 64 (p=4) or 16 (p=8) tokens x hidden_size.
REFERENCE_TRAINABLE = {
  "DiT-S/2": 32_865_056,
  "DiT-B/2": 130_315_808,
  "DiT-L/2": 457_840_672,
  "DiT-XL/2": 674_834_720,
  "DiT-XL/4": 675_000_704,
  "DiT-XL/8": 675_664_640,
  "DiT-S/8": 33_142_016,
}
# The sizes the paper gives in millions (S 33M, B 130M, L 458M, XL 675M): counts without the frozen
# pos_embed (with it, DiT-B/2's 130,512,416 would round to 131M).
PAPER_MILLIONS = {"DiT-S/2": 33, "DiT-B/2": 130, "DiT-L/2": 458, "DiT-XL/2": 675}


def _conditional(name):
  return dit.DiT(**dit.DIT_CONFIGS[name], num_classes=1000, learn_sigma=True)


@pytest.mark.parametrize("name", sorted(REFERENCE_TRAINABLE))
def test_parameter_counts_equal_the_reference_and_the_paper(name):
  n = count_params(_conditional(name), (32, 32, 4), with_labels=True)
  assert n == REFERENCE_TRAINABLE[name]
  if name in PAPER_MILLIONS:
    assert round(n / 1e6) == PAPER_MILLIONS[name]


def test_the_configs_are_the_papers_table_1():
  assert len(dit.DIT_CONFIGS) == 12
  for name, cfg in dit.DIT_CONFIGS.items():
    size, p = re.fullmatch(r"DiT-(S|B|L|XL)/(2|4|8)", name).groups()
    expected = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}[size]
    assert (cfg["depth"], cfg["hidden_size"], cfg["num_heads"], cfg["patch_size"]) == (*expected, int(p))


def test_flax_dit_matches_the_reference_on_the_same_weights(tmp_path):
  python, dit_dir = os.environ.get("GENJAX_TORCH_PYTHON"), os.environ.get("GENJAX_DIT_DIR")
  if not python or not dit_dir:
    pytest.skip(
      "set GENJAX_TORCH_PYTHON to a Python with torch and timm, and GENJAX_DIT_DIR to a checkout of "
      "facebookresearch/DiT"
    )
  probe = subprocess.run([python, "-c", "import timm"], capture_output=True, text=True, timeout=300)
  if probe.returncode:
    pytest.skip(
      f"GENJAX_TORCH_PYTHON={python} cannot import timm, which DiT's models.py needs (pip install timm there): "
      + probe.stderr.strip().splitlines()[-1]
    )
  script = os.path.join(REPO, "experiments", "reference", "torch_dit.py")
  run = subprocess.run(
    [python, script, "--dit_dir", dit_dir, "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
  )
  assert run.returncode == 0, run.stderr[-3000:]
  weights = dict(np.load(tmp_path / "weights.npz"))
  io = np.load(tmp_path / "io.npz")
  model = dit.DiT(patch_size=2, hidden_size=64, depth=2, num_heads=4, num_classes=10, learn_sigma=True)
  variables = dit.variables_from_torch_state_dict(weights, num_heads=4)
  # Every parameter of the module is loaded, with its shape, and nothing else.
  shapes = jax.eval_shape(model.init, jax.random.key(0), io["x"], io["t"], io["y"])
  assert jax.tree.structure(shapes) == jax.tree.structure(variables)
  assert jax.tree.leaves(jax.tree.map(lambda s, v: s.shape == v.shape, shapes, variables)) == [True] * len(
    jax.tree.leaves(shapes)
  )
  # The fixed position embedding genjax computes is the reference's buffer.
  np.testing.assert_allclose(dit.sincos_pos_embed_2d(64, 4, 4), weights["pos_embed"][0], atol=1e-6)
  out = jax.jit(model.apply)(variables, io["x"], io["t"], io["y"])
  assert out.shape == io["out"].shape == (6, 8, 8, 8) and out.dtype == jnp.float32
  assert np.abs(io["out"]).max() > 1.0  # the perturbed adaLN-Zero layers make the output non-trivial
  diff = float(np.abs(np.asarray(out) - io["out"]).max())
  assert diff <= 1e-4, diff
  print(f"DiT vs the reference: max |diff| {diff:.2e} (max |out| {np.abs(io['out']).max():.2f})")

  # The real sizes, counted live by the reference (meta tensors, nothing allocated).
  counts = json.loads((tmp_path / "counts.json").read_text())
  assert set(counts) == set(dit.DIT_CONFIGS)
  for name, c in counts.items():
    cfg = dit.DIT_CONFIGS[name]
    assert c["total"] - c["trainable"] == c["pos_embed"] == (32 // cfg["patch_size"]) ** 2 * cfg["hidden_size"]
    assert count_params(_conditional(name), (32, 32, 4), with_labels=True) == c["trainable"], name


# Cheap behaviour: a 2-block model of width 64 on 8x8x4 inputs with 10 classes.
SMALL = dict(patch_size=2, hidden_size=64, depth=2, num_heads=4, num_classes=10)
X = jax.random.normal(jax.random.key(1), (3, 8, 8, 4))
T = jnp.array([0.0, 10.5, 999.0])
Y = jnp.array([0, 7, 10])  # 10: the null label


@pytest.fixture(scope="module")
def small():
  model = dit.DiT(**SMALL)
  return model, jax.jit(model.init)(jax.random.key(0), X, T, Y)


def _perturbed(variables, scale=0.1):
  """Every parameter plus noise, so the zero-initialised layers pass their inputs on."""
  rng = np.random.default_rng(2)  # numpy: jax.random would compile a program per leaf shape
  return jax.tree.map(lambda p: np.asarray(p) + np.float32(scale) * rng.standard_normal(p.shape, np.float32), variables)


def test_output_shapes_double_the_channels_with_learn_sigma(small):
  model, variables = small
  assert model.apply(variables, X, T, Y).shape == (3, 8, 8, 8)
  for fields, shape, out in (
    (dict(learn_sigma=False), (2, 8, 8, 4), 4),
    (dict(out_ch=3), (2, 8, 8, 4), 6),
    (dict(learn_sigma=False, patch_size=4), (2, 8, 16, 4), 4),  # not square: 2 x 4 tokens
  ):
    m = dit.DiT(**{**SMALL, **fields})
    y, _ = jax.eval_shape(m.init_with_output, jax.random.key(0), jnp.ones(shape), T[:2], Y[:2])
    assert (y.shape, y.dtype) == ((*shape[:3], out), jnp.float32)


def test_the_initialised_model_outputs_zeros_and_is_initialised_as_dit(small):
  model, variables = small
  assert set(variables) == {"params"}
  assert not np.any(np.asarray(model.apply(variables, X, T, Y)))
  params = variables["params"]
  # adaLN-Zero: every modulation and the final layer start at zero; so do all biases.
  for path, p in jax.tree_util.tree_leaves_with_path(params):
    name = sharding.path_name(path)
    if "adaLN_modulation" in name or name.startswith("final_layer") or name.endswith("bias"):
      assert not np.any(np.asarray(p)), name
  # xavier_uniform on the reference's 2-D shapes: bound sqrt(6 / (fan_in + fan_out)).
  block = params["blocks_0"]
  for kernel, fan_in, fan_out in (
    (block["attn"]["qkv"]["kernel"], 64, 192),
    (block["attn"]["proj"]["kernel"], 64, 64),
    (block["mlp"]["fc1"]["kernel"], 64, 256),
    (block["mlp"]["fc2"]["kernel"], 256, 64),
    (params["x_embedder"]["kernel"], 2 * 2 * 4, 64),  # the patch embedding, as a linear layer
  ):
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    assert 0.95 * bound < np.abs(kernel).max() <= bound
  for table in (params["y_embedder"]["embedding"], params["t_embedder"]["mlp_0"]["kernel"]):
    assert abs(float(np.std(table)) - 0.02) < 0.002
  assert params["y_embedder"]["embedding"].shape == (11, 64)  # num_classes + 1: the null label
  # The fixed position embedding is a constant, not a parameter (nor in another collection).
  assert set(params) == {"x_embedder", "t_embedder", "y_embedder", "blocks_0", "blocks_1", "final_layer"}
  assert not any("pos" in sharding.path_name(path) for path, _ in jax.tree_util.tree_leaves_with_path(variables))


def test_output_depends_on_time_and_label_and_positions(small):
  model, variables = small
  variables = _perturbed(variables)
  apply = jax.jit(model.apply)
  base = apply(variables, X, T, Y)
  assert np.abs(base).max() > 0.1
  assert np.abs(apply(variables, X, T + 1.0, Y) - base).max() > 1e-3
  assert np.abs(apply(variables, X, T, (Y + 1) % 11) - base).max() > 1e-3
  # A constant image: every token sees the same patch, so outputs differ only through positions.
  flat = apply(variables, jnp.ones_like(X), T, Y)
  assert np.abs(flat[:, :2, :2] - flat[:, 4:6, 4:6]).max() > 1e-3
  # Unconditional: no label table, labels ignored.
  uncond = dit.DiT(**{**SMALL, "num_classes": None})
  u_vars = jax.jit(uncond.init)(jax.random.key(0), X, T)
  assert "y_embedder" not in u_vars["params"]
  u_vars = _perturbed(u_vars)
  apply = jax.jit(uncond.apply)
  np.testing.assert_array_equal(apply(u_vars, X, T), apply(u_vars, X, T, Y))


def test_bfloat16_keeps_float32_params_and_output(small):
  model, variables = small
  variables = _perturbed(variables)
  half = dit.DiT(**SMALL, dtype=jnp.bfloat16)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(jax.eval_shape(half.init, jax.random.key(0), X, T, Y)))
  out16, out32 = half.apply(variables, X, T, Y), model.apply(variables, X, T, Y)
  assert out16.dtype == jnp.float32
  assert np.abs(out16 - out32).max() < 0.05 * np.abs(out32).max()


def test_patchify_position_embedding_and_time_embedding_layouts():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  tokens = dit.patchify(x, 2)
  assert tokens.shape == (2, 6, 12)
  # token 1 * 3 + 2: patch row 1, patch column 2, flattened (row, column, channel)
  np.testing.assert_array_equal(tokens[:, 5], x[:, 2:4, 4:6].reshape(2, -1))
  np.testing.assert_array_equal(dit.unpatchify(tokens, 2, 2, 3), x)
  pe = dit.sincos_pos_embed_2d(16, 3, 5).reshape(3, 5, 16)
  # first half: the column (same down a column), second half: the row (same along a row)
  np.testing.assert_array_equal(pe[0, :, :8], pe[2, :, :8])
  np.testing.assert_array_equal(pe[:, 0, 8:], pe[:, 4, 8:])
  np.testing.assert_allclose(pe[0, 0], np.tile(np.repeat([0.0, 1.0], 4), 2))  # sin 0, cos 0
  emb = dit.timestep_embedding(jnp.array([0.0, 3.0]), 8)
  np.testing.assert_allclose(emb[0], [1, 1, 1, 1, 0, 0, 0, 0])  # cosines first
  freqs = np.exp(-np.log(10_000.0) * np.arange(4) / 4)
  np.testing.assert_allclose(emb[1], np.concatenate([np.cos(3 * freqs), np.sin(3 * freqs)]), rtol=1e-6)


@pytest.mark.parametrize(
  "fields, shape, match",
  [
    (dict(patch_size=3), (1, 8, 8, 4), "patch_size 3 does not divide"),
    (dict(hidden_size=66), (1, 8, 8, 4), "does not split into num_heads"),
    (dict(hidden_size=6, num_heads=3), (1, 8, 8, 4), "divisible by 4"),
  ],
)
def test_bad_settings_raise_config_errors(fields, shape, match):
  model = dit.DiT(**{**SMALL, **fields})
  with pytest.raises(errors.ConfigError, match=match):
    jax.eval_shape(model.init, jax.random.key(0), jnp.ones(shape), T[:1], Y[:1])


def test_augmentation_labels_and_missing_labels_raise_config_errors(small):
  model, variables = small
  with pytest.raises(errors.ConfigError, match="augment"):
    model.apply(variables, X, T, Y, augment_BxA=jnp.zeros((3, 9)))
  with pytest.raises(errors.ConfigError, match="label_B"):
    model.apply(variables, X, T)
  patch = {"x_embedder.proj.weight": np.zeros((8, 4, 2, 2))}
  with pytest.raises(errors.ConfigError, match="does not know: blocks.0.attn.q_norm.weight"):
    dit.variables_from_torch_state_dict({**patch, "blocks.0.attn.q_norm.weight": np.zeros(8)}, 2)
  with pytest.raises(errors.ConfigError, match="has no 'x_embedder.proj.bias'"):
    dit.variables_from_torch_state_dict(patch, 2)


def test_partition_rules_split_heads_mlp_and_modulations_over_the_model_axis():
  mesh = {"data": 4, "model": 2}
  rules = dit.PARTITION_RULES
  shapes = jax.eval_shape(
    _conditional("DiT-XL/2").init,
    jax.random.key(0),
    jax.ShapeDtypeStruct((1, 32, 32, 4), jnp.float32),
    jax.ShapeDtypeStruct((1,), jnp.float32),
    jax.ShapeDtypeStruct((1,), jnp.int32),
  )["params"]
  named = {sharding.path_name(path): tuple(x.shape) for path, x in jax.tree_util.tree_leaves_with_path(shapes)}
  spec = lambda name, fsdp=True: sharding.spec_for(name, named[name], rules, mesh, fsdp=fsdp)
  # Tensor parallel as the GPT's: heads and MLP units over "model"; FSDP: the largest free dim over "data".
  assert named["blocks_0/attn/qkv/kernel"] == (1152, 3, 16, 72)
  assert spec("blocks_0/attn/qkv/kernel", fsdp=False) == P(None, None, "model")
  assert spec("blocks_0/attn/qkv/kernel") == P("data", None, "model")
  assert spec("blocks_0/attn/qkv/bias") == P(None, "model")
  assert spec("blocks_0/attn/proj/kernel") == P("model", None, "data")
  assert spec("blocks_27/mlp/fc1/kernel") == P("data", "model")
  assert spec("blocks_27/mlp/fc1/bias") == P("model")
  assert spec("blocks_27/mlp/fc2/kernel") == P("model", "data")
  assert spec("blocks_3/adaLN_modulation/kernel") == P("data", "model")
  assert spec("final_layer/adaLN_modulation/kernel") == P("data", "model")
  assert spec("y_embedder/embedding") == P(None, "data")  # 1001 rows do not split in 4
  # Optimizer moments end in the parameter's path.
  assert sharding.spec_for("0/mu/blocks_5/mlp/fc1/kernel", (1152, 4608), rules, mesh, fsdp=False) == P(None, "model")
  # Every rule names some parameter with its rank; what no rule names is small and left to FSDP.
  matched = set()
  for pattern, logical in rules:
    hits = [n for n, s in named.items() if re.search(pattern, n) and len(s) == len(logical)]
    assert hits, pattern
    matched.update(hits)
  unmatched = {re.sub(r"blocks_\d+", "blocks_i", n) for n in named if n not in matched}
  assert unmatched == {
    "x_embedder/kernel",
    "x_embedder/bias",
    "t_embedder/mlp_0/kernel",
    "t_embedder/mlp_0/bias",
    "t_embedder/mlp_2/kernel",
    "t_embedder/mlp_2/bias",
    "final_layer/linear/kernel",
    "final_layer/linear/bias",
    "blocks_i/attn/proj/bias",
    "blocks_i/mlp/fc2/bias",
  }
  left = sum(np.prod(named[n]) for n in named if n not in matched)
  assert left < 0.01 * sum(np.prod(s) for s in named.values())
