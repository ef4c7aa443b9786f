"""FID Inception-v3: architecture against the published layer list, a random-weight forward
pass, and the torch-free reader of .pth files on synthetic files written here."""

import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.metrics import inception

# ---- The reference architecture, written out from torchvision's Inception3 (the layer list of
# Szegedy et al., 2016, as torchvision builds it) with pytorch-fid's changes: no AuxLogits,
# fc to 1008 classes. Each entry: BasicConv2d name -> (in channels, out channels, kh, kw).


def _inception_a(prefix, cin, pool):
  return {
    f"{prefix}.branch1x1": (cin, 64, 1, 1),
    f"{prefix}.branch5x5_1": (cin, 48, 1, 1),
    f"{prefix}.branch5x5_2": (48, 64, 5, 5),
    f"{prefix}.branch3x3dbl_1": (cin, 64, 1, 1),
    f"{prefix}.branch3x3dbl_2": (64, 96, 3, 3),
    f"{prefix}.branch3x3dbl_3": (96, 96, 3, 3),
    f"{prefix}.branch_pool": (cin, pool, 1, 1),
  }


def _inception_c(prefix, c7):
  return {
    f"{prefix}.branch1x1": (768, 192, 1, 1),
    f"{prefix}.branch7x7_1": (768, c7, 1, 1),
    f"{prefix}.branch7x7_2": (c7, c7, 1, 7),
    f"{prefix}.branch7x7_3": (c7, 192, 7, 1),
    f"{prefix}.branch7x7dbl_1": (768, c7, 1, 1),
    f"{prefix}.branch7x7dbl_2": (c7, c7, 7, 1),
    f"{prefix}.branch7x7dbl_3": (c7, c7, 1, 7),
    f"{prefix}.branch7x7dbl_4": (c7, c7, 7, 1),
    f"{prefix}.branch7x7dbl_5": (c7, 192, 1, 7),
    f"{prefix}.branch_pool": (768, 192, 1, 1),
  }


def _inception_e(prefix, cin):
  return {
    f"{prefix}.branch1x1": (cin, 320, 1, 1),
    f"{prefix}.branch3x3_1": (cin, 384, 1, 1),
    f"{prefix}.branch3x3_2a": (384, 384, 1, 3),
    f"{prefix}.branch3x3_2b": (384, 384, 3, 1),
    f"{prefix}.branch3x3dbl_1": (cin, 448, 1, 1),
    f"{prefix}.branch3x3dbl_2": (448, 384, 3, 3),
    f"{prefix}.branch3x3dbl_3a": (384, 384, 1, 3),
    f"{prefix}.branch3x3dbl_3b": (384, 384, 3, 1),
    f"{prefix}.branch_pool": (cin, 192, 1, 1),
  }


REFERENCE_CONVS = {
  "Conv2d_1a_3x3": (3, 32, 3, 3),
  "Conv2d_2a_3x3": (32, 32, 3, 3),
  "Conv2d_2b_3x3": (32, 64, 3, 3),
  "Conv2d_3b_1x1": (64, 80, 1, 1),
  "Conv2d_4a_3x3": (80, 192, 3, 3),
  **_inception_a("Mixed_5b", 192, 32),
  **_inception_a("Mixed_5c", 256, 64),
  **_inception_a("Mixed_5d", 288, 64),
  "Mixed_6a.branch3x3": (288, 384, 3, 3),
  "Mixed_6a.branch3x3dbl_1": (288, 64, 1, 1),
  "Mixed_6a.branch3x3dbl_2": (64, 96, 3, 3),
  "Mixed_6a.branch3x3dbl_3": (96, 96, 3, 3),
  **_inception_c("Mixed_6b", 128),
  **_inception_c("Mixed_6c", 160),
  **_inception_c("Mixed_6d", 160),
  **_inception_c("Mixed_6e", 192),
  "Mixed_7a.branch3x3_1": (768, 192, 1, 1),
  "Mixed_7a.branch3x3_2": (192, 320, 3, 3),
  "Mixed_7a.branch7x7x3_1": (768, 192, 1, 1),
  "Mixed_7a.branch7x7x3_2": (192, 192, 1, 7),
  "Mixed_7a.branch7x7x3_3": (192, 192, 7, 1),
  "Mixed_7a.branch7x7x3_4": (192, 192, 3, 3),
  **_inception_e("Mixed_7b", 1280),
  **_inception_e("Mixed_7c", 2048),
}


def reference_state_dict_shapes():
  """Names and shapes of pytorch-fid's FIDInceptionV3 state dict, from the layer list."""
  shapes = {}
  for name, (cin, cout, kh, kw) in REFERENCE_CONVS.items():
    shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
    for leaf in ("weight", "bias", "running_mean", "running_var"):
      shapes[f"{name}.bn.{leaf}"] = (cout,)
    shapes[f"{name}.bn.num_batches_tracked"] = ()
  shapes["fc.weight"], shapes["fc.bias"] = (1008, 2048), (1008,)
  return shapes


def flax_shapes():
  variables = inception.abstract_variables()
  return {
    (col, *(k.key for k in path)): leaf.shape
    for col in variables
    for path, leaf in jax.tree_util.tree_leaves_with_path(variables[col])
  }


def test_parameter_shapes_and_count_match_the_reference_architecture():
  reference = reference_state_dict_shapes()
  expected = {}
  for name, shape in reference.items():
    mapped = inception.torch_to_flax_name(name)
    if mapped is not None:
      collection, path = mapped
      expected[(collection, *path)] = inception.torch_to_flax_array(name, np.zeros(shape)).shape
  assert flax_shapes() == expected
  trainable = sum(
    int(np.prod(s))
    for n, s in reference.items()
    if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))
  )
  flax_params = sum(int(np.prod(s)) for k, s in flax_shapes().items() if k[0] == "params")
  assert flax_params == trainable
  # torchvision documents 27,161,264 parameters for inception_v3 (1000 classes, with the
  # auxiliary head); less the head (conv 768->128 1x1 + BN, conv 128->768 5x5 + BN, fc 768->1000)
  # and with 8 more classes (2048 weights + 1 bias each), pytorch-fid's network remains.
  aux_head = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
  assert flax_params == 27_161_264 - aux_head + 8 * 2049 == 23_850_960


def test_pooling_without_padding_counts_and_resize():
  x = jnp.ones((1, 5, 5, 2))
  np.testing.assert_allclose(inception._avg_pool_exclude_pad(x), 1.0, rtol=1e-6)
  # torch's bilinear interpolate(align_corners=False): source = (dst + 0.5) * in / out - 0.5,
  # clamped at the borders; a 2-pixel row resized to 4 pixels gives [a, .75a+.25b, .25a+.75b, b].
  row = jnp.array([-1.0, 1.0]).reshape(1, 1, 2, 1)
  out = inception.resize_for_inception(jnp.tile(row, (1, 2, 1, 1)), size=4)
  assert out.shape == (1, 4, 4, 3)
  np.testing.assert_allclose(out[0, 0, :, 0], [-1.0, -0.5, 0.5, 1.0], atol=1e-6)
  np.testing.assert_array_equal(out[..., 0], out[..., 2])  # grey replicated to RGB


def test_random_weight_forward_pass_is_deterministic_and_shape_correct():
  model = inception.FIDInceptionV3(input_size=75)  # the smallest input the network takes
  images = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1), minval=-1, maxval=1)
  # Random weights drawn in numpy from the abstract shapes (an eager model.init would compile
  # each of the ~100 layers separately); variances positive, kernels scaled to keep activations O(1).
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return rng.normal(size=leaf.shape).astype(np.float32) / np.sqrt(np.prod(leaf.shape[:-1]))
    if name in ("scale", "var"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return rng.normal(size=leaf.shape).astype(np.float32) * 0.1

  variables = jax.tree_util.tree_map_with_path(draw, inception.abstract_variables())
  apply = jax.jit(model.apply)
  features, logits = apply(variables, images)
  again, _ = apply(variables, images)
  assert features.shape == (2, 2048) and logits.shape == (2, 1008)
  assert np.isfinite(features).all() and (np.asarray(features) >= 0).all()  # after ReLU and mean
  np.testing.assert_array_equal(features, again)
  assert not np.allclose(features[0], features[1])  # depends on the input


# ---- Synthetic torch files ----------------------------------------------------------------


@pytest.fixture
def fake_torch(monkeypatch):
  """Importable stand-ins for the globals torch's pickles name, so the standard pickler writes
  exactly the GLOBAL opcodes torch.save writes (protocol 2), without torch."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  class FloatStorage:
    pass

  class LongStorage:
    pass

  def _rebuild_tensor_v2(*args):
    raise AssertionError("never called while writing")

  for obj, module in ((FloatStorage, "torch"), (LongStorage, "torch"), (_rebuild_tensor_v2, "torch._utils")):
    obj.__module__ = module
    obj.__qualname__ = obj.__name__
  torch.FloatStorage, torch.LongStorage, torch._utils = FloatStorage, LongStorage, utils
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  return torch


class _StorageRef:
  def __init__(self, key, storage_type, numel, view=None):
    self.key, self.storage_type, self.numel, self.view = key, storage_type, numel, view


class _TensorRecord:
  def __init__(self, torch, storage, offset, size, stride):
    self.torch, self.args = torch, (storage, offset, tuple(size), tuple(stride), False, OrderedDict())

  def __reduce__(self):
    return self.torch._utils._rebuild_tensor_v2, self.args


def _pickle(obj, legacy=False):
  buffer = io.BytesIO()
  pickler = pickle.Pickler(buffer, protocol=2)

  def persistent_id(o):
    if isinstance(o, _StorageRef):
      pid = ("storage", o.storage_type, o.key, "cpu", o.numel)
      return pid + (o.view,) if legacy else pid
    return None

  pickler.persistent_id = persistent_id
  pickler.dump(obj)
  return buffer.getvalue()


def _example(torch):
  """A state dict with a conv weight, a transposed (strided) view, an offset slice sharing one
  storage, an int64 scalar, and the expected numpy values."""
  rng = np.random.default_rng(0)
  base = rng.normal(size=24).astype(np.float32)
  ints = np.array([7, 9], np.int64)
  s0 = _StorageRef("0", torch.FloatStorage, 24)
  s1 = _StorageRef("1", torch.LongStorage, 2)
  state = OrderedDict()
  state["conv.weight"] = _TensorRecord(torch, s0, 0, (2, 3, 2, 2), (12, 4, 2, 1))
  state["fc.weight"] = _TensorRecord(torch, s0, 0, (4, 6), (1, 4))  # transposed view [6,4].T
  state["fc.bias"] = _TensorRecord(torch, s0, 20, (4,), (1,))
  state["bn.num_batches_tracked"] = _TensorRecord(torch, s1, 1, (), ())
  want = {
    "conv.weight": base.reshape(2, 3, 2, 2),
    "fc.weight": base.reshape(6, 4).T,
    "fc.bias": base[20:24],
    "bn.num_batches_tracked": np.array(9),
  }
  return state, {"0": base.tobytes(), "1": ints.tobytes()}, want


def test_reads_a_synthetic_torch_zip_file(tmp_path, fake_torch):
  state, storages, want = _example(fake_torch)
  path = tmp_path / "weights.pth"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", _pickle(state))
    for key, data in storages.items():
      z.writestr(f"archive/data/{key}", data)
    z.writestr("archive/version", "3\n")
  got = inception.read_torch_state_dict(str(path))
  assert list(got) == list(want)
  for name in want:
    assert got[name].dtype == want[name].dtype
    np.testing.assert_array_equal(got[name], want[name])


def test_reads_a_synthetic_legacy_torch_file(tmp_path, fake_torch):
  state, storages, want = _example(fake_torch)
  for record in state.values():
    record.args[0].view = None
  path = tmp_path / "legacy.pth"
  with open(path, "wb") as f:
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
      f.write(pickle.dumps(header, protocol=2))
    f.write(_pickle(state, legacy=True))
    f.write(pickle.dumps(sorted(storages), protocol=2))
    for key in sorted(storages):
      f.write(struct.pack("<q", len(storages[key]) // (8 if key == "1" else 4)) + storages[key])
  got = inception.read_torch_state_dict(str(path))
  for name in want:
    np.testing.assert_array_equal(got[name], want[name])


def test_refuses_to_execute_code_in_weight_files(tmp_path):
  class Evil:
    def __reduce__(self):
      return (print, ("this must never run",))

  path = tmp_path / "evil.pth"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
  with pytest.raises(pickle.UnpicklingError, match="print"):
    inception.read_torch_state_dict(str(path))


def test_state_dict_maps_onto_the_flax_tree_and_checks_shapes():
  rng = np.random.default_rng(0)
  state = {
    name: rng.standard_normal(shape, np.float32) if shape else np.array(3)
    for name, shape in reference_state_dict_shapes().items()
  }
  variables = inception.variables_from_state_dict(state)
  np.testing.assert_array_equal(
    variables["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"],
    state["Mixed_6b.branch7x7_2.conv.weight"].transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(variables["params"]["fc"]["kernel"], state["fc.weight"].T)
  np.testing.assert_array_equal(
    variables["batch_stats"]["Conv2d_1a_3x3"]["bn"]["var"], state["Conv2d_1a_3x3.bn.running_var"]
  )
  del state["Mixed_7c.branch_pool.bn.bias"]
  with pytest.raises(ValueError, match="missing"):
    inception.variables_from_state_dict(state)


def test_missing_weights_error_names_file_url_and_place(tmp_path, monkeypatch):
  monkeypatch.setenv("GENJAX_HOME", str(tmp_path))
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  monkeypatch.setattr(inception.urllib.request, "urlretrieve", lambda *a: (_ for _ in ()).throw(OSError("no network")))
  with pytest.raises(FileNotFoundError) as error:
    inception.find_weights()
  message = str(error.value)
  assert inception.WEIGHTS_FILE in message and inception.WEIGHTS_URL in message
  assert str(tmp_path / "weights") in message and inception.WEIGHTS_ENV in message


def test_weights_with_the_wrong_hash_are_rejected(tmp_path):
  path = tmp_path / inception.WEIGHTS_FILE
  path.write_bytes(b"not the weights")
  with pytest.raises(ValueError, match="SHA-256"):
    inception.find_weights(str(path))
