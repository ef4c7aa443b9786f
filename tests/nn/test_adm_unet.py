"""The ADM U-Net (genjax.nn.adm_unet): the flow-matching reference's parameter counts, its outputs
on the same weights (PyTorch, when available), shapes, zero output at init, conditioning, errors."""

import json
import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import errors
from genjax.nn import adm_unet
from genjax.nn.adm_unet import ADMUNet, count_params

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Parameter counts of the reference UNetModel for the "cifar10" and "imagenet" entries of
# examples/image/models/model_configs.py (facebookresearch/flow_matching), computed with
#   cd examples/image && python -c "from models.unet import UNetModel; \
#     from models.model_configs import MODEL_CONFIGS as C; \
#     print([sum(p.numel() for p in UNetModel(**C[k]).parameters()) for k in ('cifar10', 'imagenet')])"
# -> [55676419, 295900035] (torch 2.13.0); test_outputs_match_the_reference re-counts them live.
REFERENCE_CIFAR10_PARAMS = 55_676_419
REFERENCE_IMAGENET_PARAMS = 295_900_035


def imagenet64():
  # The "imagenet" entry on 64x64 images: downsample rates [2, 4, 8] are feature maps 32, 16, 8.
  return ADMUNet(
    model_channels=192,
    channel_mult=(1, 2, 3, 4),
    num_res_blocks=3,
    attn_resolutions=(32, 16, 8),
    dropout=0.1,
    num_heads=4,
    num_head_channels=64,
    resblock_updown=True,
    num_classes=1000,
  )


def test_parameter_counts_equal_the_reference():
  assert count_params(ADMUNet(), (32, 32, 3)) == REFERENCE_CIFAR10_PARAMS  # the defaults are "cifar10"
  assert count_params(imagenet64(), (64, 64, 3), with_labels=True) == REFERENCE_IMAGENET_PARAMS


def config_from_reference(config, image_size: int) -> ADMUNet:
  """The ADMUNet of a reference UNetModel's arguments (downsample rates become feature-map sizes)."""
  return ADMUNet(
    model_channels=config["model_channels"],
    channel_mult=tuple(config["channel_mult"]),
    num_res_blocks=config["num_res_blocks"],
    attn_resolutions=tuple(image_size // r for r in config["attention_resolutions"]),
    dropout=config["dropout"],
    num_heads=config["num_heads"],
    num_head_channels=None if config["num_head_channels"] == -1 else config["num_head_channels"],
    use_scale_shift_norm=config["use_scale_shift_norm"],
    resblock_updown=config["resblock_updown"],
    conv_resample=config["conv_resample"],
    out_ch=config["out_channels"],
    num_classes=config.get("num_classes"),
  )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  python, checkout = os.environ.get("GENJAX_TORCH_PYTHON"), os.environ.get("GENJAX_FLOW_MATCHING_DIR")
  if not python or not checkout:
    pytest.skip(
      "set GENJAX_TORCH_PYTHON to a Python with torch and GENJAX_FLOW_MATCHING_DIR to a "
      "facebookresearch/flow_matching checkout"
    )
  out = tmp_path_factory.mktemp("adm_reference")
  script = os.path.join(REPO, "experiments", "reference", "torch_adm_unet.py")
  run = subprocess.run(
    [python, script, "--flow_matching_dir", checkout, "--out", str(out)], capture_output=True, text=True, timeout=900
  )
  assert run.returncode == 0, run.stderr[-3000:]
  with open(out / "cases.json") as f:
    return out, json.load(f)


def test_reference_counts_parameters_as_recorded(reference):
  _, cases = reference
  assert cases["cifar10"]["num_params"] == REFERENCE_CIFAR10_PARAMS
  assert cases["imagenet"]["num_params"] == REFERENCE_IMAGENET_PARAMS


@pytest.mark.parametrize("case", ["small_cifar_like", "small_updown_labels", "small_conv_resample_legacy"])
def test_outputs_match_the_reference(reference, case):
  out_dir, cases = reference
  config = cases[case]["config"]
  weights = dict(np.load(out_dir / f"{case}_weights.npz"))
  io = dict(np.load(out_dir / f"{case}_io.npz"))
  model = config_from_reference(config, image_size=io["x"].shape[-1])
  variables = adm_unet.variables_from_torch_state_dict(
    weights,
    legacy_attention_order=not config["use_new_attention_order"],
    num_heads=model.num_heads,
    num_head_channels=model.num_head_channels,
  )
  x = io["x"].transpose(0, 2, 3, 1)  # NCHW -> NHWC
  label = jnp.asarray(io["label"], jnp.int32) if "label" in io else None
  # Every weight lands on a parameter of the same shape, and nothing is left over.
  init_shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, io["t"], label))["params"]
  assert jax.tree.structure(variables["params"]) == jax.tree.structure(init_shapes)
  assert jax.tree.map(jnp.shape, variables["params"]) == jax.tree.map(lambda s: s.shape, init_shapes)
  assert cases[case]["num_params"] == sum(w.size for w in weights.values())

  apply = jax.jit(lambda v, *a: model.apply(v, *a))
  ours = np.asarray(apply(variables, x, io["t"], label)).transpose(0, 3, 1, 2)
  diff = float(np.abs(ours - io["out"]).max())
  print(f"{case}: max |genjax - reference| {diff:.2e} (output std {io['out'].std():.3f})")
  assert io["out"].std() > 0.1  # the perturbed model's output is far from trivial
  assert diff <= 1e-4
  if "out_no_label" in io:  # no label: the null label, as in the reference
    ours = np.asarray(apply(variables, x, io["t"], None)).transpose(0, 3, 1, 2)
    assert float(np.abs(ours - io["out_no_label"]).max()) <= 1e-4
    assert float(np.abs(io["out_no_label"] - io["out"]).max()) > 1e-2


def small(**kw):
  return ADMUNet(
    **{
      "model_channels": 32,
      "channel_mult": (1, 2),
      "num_res_blocks": 1,
      "attn_resolutions": (4,),
      "dropout": 0.3,
      **kw,
    }
  )


def init(model, *args):
  return jax.jit(lambda k, *a: model.init(k, *a))(jax.random.key(0), *args)["params"]


def randomize(params, key):
  """Zero-initialised output layers make a fresh model output 0; perturb every weight to test more."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@pytest.fixture(scope="module")
def conditional():
  """A small class-conditional model, its inputs, and its parameters at init (one compiled init)."""
  model = small(num_classes=10, out_ch=2)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  t, y = jnp.array([0.1, 0.9]), jnp.array([3, 10])
  return model, (x, t, y), init(model, x, t, y)


def test_shapes_zero_output_at_init_time_and_label_dependence(conditional):
  model, (x, t, y), params = conditional
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  # the null label's row starts at zero, like the reference's padding_idx row
  np.testing.assert_array_equal(params["label_emb"]["embedding"][10], 0.0)
  apply = jax.jit(lambda p, *a: model.apply({"params": p}, *a))
  out = apply(params, x, t, y)
  assert out.shape == (2, 8, 8, 2) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, 0.0)  # zero_module: residual branches and the output conv
  params = randomize(params, jax.random.key(1))
  out = apply(params, x, t, y)
  assert float(jnp.abs(out[0] - apply(params, x, t[::-1], y)[0]).max()) > 1e-2  # t 0.1 -> 0.9, same label
  assert float(jnp.abs(out - apply(params, x, t, jnp.array([4, 10]))).max()) > 1e-2
  # bfloat16 compute on the same float32 parameters: a float32 output near the float32 one.
  out_bf16 = jax.jit(lambda p, *a: model.clone(dtype=jnp.bfloat16).apply({"params": p}, *a))(params, x, t, y)
  assert out_bf16.dtype == jnp.float32
  assert float(jnp.abs(out_bf16 - out).max()) < 0.1 * float(jnp.abs(out).max())


def test_null_label_row_gets_no_gradient():
  embed = adm_unet._LabelEmbedding(num_classes=4, features=8)
  y = jnp.array([1, 4, 4])
  params = embed.init(jax.random.key(0), y)
  params = jax.tree.map(lambda p: p + 1.0, params)  # a trained null row need not be zero: it is still read
  np.testing.assert_array_equal(embed.apply(params, y)[1], params["params"]["embedding"][4])
  grad = jax.grad(lambda p: jnp.sum(embed.apply(p, y) ** 2))(params)["params"]["embedding"]
  assert float(jnp.abs(grad[1]).max()) > 0 and float(jnp.abs(grad[4]).max()) == 0.0


def test_dropout_only_in_training():
  block = adm_unet.ResBlock(32, dropout=0.3, use_scale_shift_norm=True)
  x, emb = jax.random.normal(jax.random.key(0), (2, 4, 4, 32)), jnp.ones((2, 16))
  params = randomize(block.init(jax.random.key(1), x, emb, False), jax.random.key(2))
  run = jax.jit(lambda k, train: block.apply(params, x, emb, train, rngs={"dropout": k}), static_argnums=1)
  assert float(jnp.abs(run(jax.random.key(3), True) - run(jax.random.key(4), True)).max()) > 0
  np.testing.assert_array_equal(run(jax.random.key(3), False), run(jax.random.key(4), False))


def test_timestep_embedding_is_the_references():
  # nn.py's timestep_embedding(t, 5): cos then sin of t * exp(-ln(1e4) * i / 2), a zero column.
  emb = np.asarray(adm_unet.timestep_embedding(jnp.array([0.0, 0.5]), 5))
  freqs = np.exp(-np.log(1e4) * np.arange(2) / 2)
  want = np.concatenate([np.cos(0.5 * freqs), np.sin(0.5 * freqs), [0.0]])
  np.testing.assert_allclose(emb[1], want, rtol=1e-6)
  np.testing.assert_array_equal(emb[0], [1, 1, 0, 0, 0])


def test_attention_at_the_listed_sizes_and_parameter_names():
  shapes = jax.eval_shape(
    lambda: small(attn_resolutions=(8,)).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.zeros((1,)))
  )["params"]
  # input_blocks: 0 conv, 1 res(+attn at 8x8), 2 downsample, 3 res at 4x4; output_blocks 0-1 at 4x4
  # (1 ends in the upsampling), 2-3 at 8x8 with attention.
  assert {"input_blocks_1_1", "output_blocks_2_1", "output_blocks_3_1", "middle_block_1"} <= set(shapes)
  assert not {"input_blocks_3_1", "output_blocks_0_1", "output_blocks_1_1"} & set(shapes)
  assert shapes["input_blocks_1_0"]["in_layers_2"]["kernel"].shape == (3, 3, 32, 32)


@pytest.mark.parametrize(
  "kw, shape, match",
  [
    ({"channel_mult": (1, 2, 2)}, (1, 6, 6, 3), "cannot be halved"),
    ({"num_head_channels": 24}, (1, 8, 8, 3), "num_head_channels=24"),
    ({"num_heads": 3}, (1, 8, 8, 3), "num_heads=3"),
    ({"model_channels": 48}, (1, 8, 8, 3), "divisible by 32"),
  ],
)
def test_bad_settings_raise_config_error(kw, shape, match):
  with pytest.raises(errors.ConfigError, match=match):
    jax.eval_shape(lambda: small(**kw).init(jax.random.key(0), jnp.zeros(shape), jnp.zeros((1,))))


def test_augmentation_labels_are_refused():
  with pytest.raises(errors.ConfigError, match="augment_BxA"):
    jax.eval_shape(
      lambda: small().init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.zeros((1,)), augment_BxA=jnp.zeros((1, 9)))
    )
