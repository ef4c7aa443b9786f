"""The Inception-v3 network of the standard FID, in Flax, and its weights read without torch.

The architecture is pytorch-fid's `FIDInceptionV3` (Seitzer, pytorch-fid 0.3), itself a port of
the TensorFlow graph `inception-2015-12-05` that Heusel et al. (2017) used for FID: torchvision's
Inception-v3 (no auxiliary head, 1008 classes) whose Mixed_5b-d / 6b-e / 7b blocks average-pool
without counting the padding, and whose Mixed_7c pools by max instead of average. Inputs are
resized to 299x299 by bilinear interpolation (align_corners=False, no anti-aliasing) and kept in
[-1, 1], exactly what pytorch-fid feeds the network after its own `2x - 1`.

Outputs: the 2048-d "pool3" features of FID and the 1008 logits of the Inception Score.

Weights: the standard file `pt_inception-2015-12-05-6726825d.pth` (pytorch-fid's release), read
by `load_fid_weights(path)` from the torch zip (or legacy) serialization with a restricted
unpickler that rebuilds tensors from their raw storages and refuses every other global, so no
code in the file is ever executed and torch is not needed. Module names follow torchvision's
(Mixed_5b/branch1x1/conv ...) so the state dict maps onto the Flax tree by name.
"""

import functools
import hashlib
import io
import os
import pickle
import struct
import urllib.request
import zipfile
from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors, paths

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
# torch.hub convention: the suffix of the file name is the start of its SHA-256.
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_ENV = "GENJAX_INCEPTION_WEIGHTS"
FEATURE_DIM = 2048
NUM_LOGITS = 1008
INPUT_SIZE = 299


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------

Pad = Tuple[int, int]


class BasicConv2d(nn.Module):
  """Convolution without bias, batch norm (eps 1e-3, inference statistics), ReLU."""

  features: int
  kernel: Tuple[int, int]
  strides: int = 1
  padding: Tuple[int, int] = (0, 0)  # (rows, columns) of zeros added on each side

  @nn.compact
  def __call__(self, x):
    (ph, pw) = self.padding
    x = nn.Conv(
      self.features, self.kernel, strides=self.strides, padding=((ph, ph), (pw, pw)), use_bias=False, name="conv"
    )(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool_exclude_pad(x):
  """3x3 stride-1 average pooling with padding 1 that divides by the number of real pixels
  (torch's count_include_pad=False, the TF graph's behaviour)."""
  total = nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=True) * 9.0
  ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
  count = nn.avg_pool(ones, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=True) * 9.0
  return total / count


def _max_pool_3x3(x, strides: int, padding: int = 0):
  pad = ((padding, padding), (padding, padding))
  return nn.max_pool(x, (3, 3), strides=(strides, strides), padding=pad)


class FIDInceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_exclude_pad(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, (3, 3), strides=2, name="branch3x3")(x)
    bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv2d(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2)], axis=-1)


class FIDInceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_exclude_pad(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv2d(320, (3, 3), strides=2, name="branch3x3_2")(b3)
    b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv2d(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2)], axis=-1)


class FIDInceptionE(nn.Module):
  """Mixed_7b (pool="avg", padding excluded) and Mixed_7c (pool="max") of the FID graph."""

  pool: str = "avg"

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate(
      [
        BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
        BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
      ],
      -1,
    )
    bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate(
      [
        BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
        BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
      ],
      -1,
    )
    pooled = _avg_pool_exclude_pad(x) if self.pool == "avg" else _max_pool_3x3(x, 1, padding=1)
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def resize_for_inception(images_NxHxWxC: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """[-1, 1] images of any size with 1 or 3 channels -> f32[N,size,size,3], bilinear
  (half-pixel centres, no anti-aliasing: torch's interpolate(align_corners=False))."""
  x = jnp.asarray(images_NxHxWxC, jnp.float32)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise errors.ConfigError(f"Inception takes images [N, H, W, 1 or 3], got shape {x.shape}.")
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, 3), method="bilinear", antialias=False)
  return x


class FIDInceptionV3(nn.Module):
  """images f32[N,H,W,C] in [-1, 1] -> (pool3 features f32[N,2048], logits f32[N,1008])."""

  input_size: int = INPUT_SIZE  # 299 for FID; tests may use a smaller size (>= 75)

  @nn.compact
  def __call__(self, images_NxHxWxC):
    x = resize_for_inception(images_NxHxWxC, self.input_size)
    x = BasicConv2d(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3(x, 2)
    x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3(x, 2)
    x = FIDInceptionA(32, name="Mixed_5b")(x)
    x = FIDInceptionA(64, name="Mixed_5c")(x)
    x = FIDInceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = FIDInceptionC(128, name="Mixed_6b")(x)
    x = FIDInceptionC(160, name="Mixed_6c")(x)
    x = FIDInceptionC(160, name="Mixed_6d")(x)
    x = FIDInceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = FIDInceptionE("avg", name="Mixed_7b")(x)
    x = FIDInceptionE("max", name="Mixed_7c")(x)
    features_NxF = jnp.mean(x, axis=(1, 2))
    logits_NxK = nn.Dense(NUM_LOGITS, name="fc")(features_NxF)
    return features_NxF, logits_NxK


# ----------------------------------------------------------------------------------------------
# Reading torch checkpoints without torch
# ----------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
  "FloatStorage": np.float32,
  "DoubleStorage": np.float64,
  "HalfStorage": np.float16,
  "LongStorage": np.int64,
  "IntStorage": np.int32,
  "ShortStorage": np.int16,
  "CharStorage": np.int8,
  "ByteStorage": np.uint8,
  "BoolStorage": np.bool_,
}


class _StorageType:
  def __init__(self, name):
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
  """A storage named in the pickle; `array` is filled in from the archive (zip: at once;
  legacy files: after the pickle, where their raw bytes follow it)."""

  def __init__(self, key: str, dtype: np.dtype, numel: int, view=None):
    self.key, self.dtype, self.numel, self.view = key, dtype, numel, view
    self.array: Optional[np.ndarray] = None


class _Tensor:
  """torch._utils._rebuild_tensor_v2's arguments, turned into numpy once storages are read."""

  def __init__(self, storage: _Storage, offset: int, size, stride, *unused):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def numpy(self) -> np.ndarray:
    flat = self.storage.array
    if self.storage.view is not None:  # legacy view of a larger storage: (key, offset, size)
      _, view_offset, view_size = self.storage.view
      flat = flat[view_offset : view_offset + view_size]
    if not self.size:
      return np.array(flat[self.offset])
    needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if needed > len(flat) or min(self.stride, default=0) < 0:
      raise errors.ConfigError(
        f"Tensor of size {self.size} and stride {self.stride} overruns its storage "
        f"({len(flat)} elements): the weight file is corrupt."
      )
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
      flat[self.offset :], shape=self.size, strides=tuple(s * itemsize for s in self.stride)
    )
    return np.array(view)  # a copy, independent of the file's buffer


def _rebuild_parameter(data, *unused):
  return data


class _AttrDict(dict):
  """OrderedDict stand-in that accepts torch's `_metadata` attribute (set through BUILD)."""


class _RestrictedUnpickler(pickle.Unpickler):
  """Allows only what a state dict of tensors needs; persistent ids name raw storages."""

  _ALLOWED = {
    ("collections", "OrderedDict"): _AttrDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Tensor,
    ("torch._utils", "_rebuild_tensor"): _Tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  }

  def __init__(self, file):
    super().__init__(file)
    self.storages: Dict[str, _Storage] = {}

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return self._ALLOWED[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise pickle.UnpicklingError(
      f"Refusing to load global {module}.{name}: only tensors and dicts are read from weight files."
    )

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
      raise pickle.UnpicklingError(f"Unsupported persistent id {pid!r} in the weight file.")
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
    view = pid[5] if len(pid) > 5 else None
    if key not in self.storages:
      self.storages[key] = _Storage(key, storage_type.dtype, numel)
    if view is None:
      return self.storages[key]
    viewed = _Storage(key, storage_type.dtype, numel, view)
    viewed.base = self.storages[key]
    return viewed


def _materialize(obj, storages: Dict[str, _Storage]):
  for storage in storages.values():
    if storage.array is None:
      raise errors.ConfigError(f"Storage {storage.key} is named in the weight file but has no data.")
  if isinstance(obj, dict):
    return {k: _materialize(v, storages) for k, v in obj.items()}
  if isinstance(obj, _Tensor):
    if obj.storage.view is not None:
      obj.storage.array = obj.storage.base.array
    return obj.numpy()
  return obj


def _load_zip(path: str):
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if len(pickles) != 1:
      raise errors.ConfigError(f"{path} is a zip file but not a torch checkpoint (no single data.pkl).")
    prefix = pickles[0][: -len("data.pkl")]
    unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])))
    obj = unpickler.load()
    for storage in unpickler.storages.values():
      data = archive.read(f"{prefix}data/{storage.key}")
      storage.array = np.frombuffer(data, dtype=storage.dtype, count=storage.numel)
  return _materialize(obj, unpickler.storages)


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _load_legacy(path: str):
  """torch < 1.6 files: pickled magic number, protocol, sys info, the object and the list of
  storage keys, then each storage's raw bytes in that order after an int64 element count."""
  with open(path, "rb") as f:
    try:
      magic = _RestrictedUnpickler(f).load()
    except Exception:  # noqa: BLE001 - anything unreadable is "not a torch file"
      magic = None
    if magic != _LEGACY_MAGIC:
      raise errors.ConfigError(f"{path} is neither a torch zip checkpoint nor a legacy torch file.")
    _RestrictedUnpickler(f).load()  # protocol version
    _RestrictedUnpickler(f).load()  # sys info
    unpickler = _RestrictedUnpickler(f)
    obj = unpickler.load()
    keys = _RestrictedUnpickler(f).load()
    for key in keys:
      (numel,) = struct.unpack("<q", f.read(8))
      storage = unpickler.storages[str(key)]
      storage.array = np.frombuffer(f.read(numel * storage.dtype.itemsize), storage.dtype, numel)
  return _materialize(obj, unpickler.storages)


def read_torch_state_dict(path: str) -> Dict[str, np.ndarray]:
  """The tensors of a torch `state_dict` file as numpy arrays, without torch or code execution."""
  if zipfile.is_zipfile(path):
    state = _load_zip(path)
  else:
    state = _load_legacy(path)
  if not isinstance(state, dict):
    raise errors.ConfigError(f"{path} does not hold a state dict (a mapping of names to tensors).")
  return {k: np.asarray(v) for k, v in state.items()}


# ----------------------------------------------------------------------------------------------
# From the torch state dict to Flax variables
# ----------------------------------------------------------------------------------------------


def torch_to_flax_name(torch_name: str) -> Optional[Tuple[str, Tuple[str, ...]]]:
  """'Mixed_5b.branch1x1.conv.weight' -> ("params", ("Mixed_5b", "branch1x1", "conv", "kernel")).
  None for entries Flax does not keep (num_batches_tracked)."""
  *path, leaf = torch_name.split(".")
  if leaf == "num_batches_tracked":
    return None
  owner = path[-1] if path else ""
  if owner == "bn":
    collection, leaf = {
      "weight": ("params", "scale"),
      "bias": ("params", "bias"),
      "running_mean": ("batch_stats", "mean"),
      "running_var": ("batch_stats", "var"),
    }[leaf]
  else:  # conv (no bias) and fc
    collection, leaf = "params", {"weight": "kernel", "bias": "bias"}[leaf]
  return collection, (*path, leaf)


def torch_to_flax_array(torch_name: str, array: np.ndarray) -> np.ndarray:
  """torch layouts -> Flax layouts: conv OIHW -> HWIO, linear [out, in] -> [in, out]."""
  if torch_name.endswith(".weight") and array.ndim == 4:
    return np.transpose(array, (2, 3, 1, 0))
  if torch_name.endswith(".weight") and array.ndim == 2:
    return array.T
  return array


@functools.lru_cache(maxsize=1)
def abstract_variables():
  """The shapes and dtypes of FIDInceptionV3's variables (jax.ShapeDtypeStruct leaves)."""
  return jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))


def variables_from_state_dict(state_dict: Dict[str, np.ndarray]) -> dict:
  """Flax variables {"params", "batch_stats"} of FIDInceptionV3 from pytorch-fid's state dict,
  checked against the module's own shapes (a wrong or truncated file fails here, by name)."""
  variables: dict = {"params": {}, "batch_stats": {}}
  for name, array in state_dict.items():
    mapped = torch_to_flax_name(name)
    if mapped is None:
      continue
    collection, path = mapped
    node = variables[collection]
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = torch_to_flax_array(name, np.asarray(array, np.float32))
  expected = abstract_variables()
  flat_expected = dict(jax.tree_util.tree_leaves_with_path(expected))
  flat_got = dict(jax.tree_util.tree_leaves_with_path(variables))
  missing = sorted(jax.tree_util.keystr(k) for k in set(flat_expected) - set(flat_got))
  extra = sorted(jax.tree_util.keystr(k) for k in set(flat_got) - set(flat_expected))
  if missing or extra:
    raise errors.ConfigError(
      f"The weights do not fit FIDInceptionV3: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
      f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}. Is this {WEIGHTS_FILE}?"
    )
  for key, spec in flat_expected.items():
    if flat_got[key].shape != spec.shape:
      raise errors.ConfigError(
        f"Weight {jax.tree_util.keystr(key)} has shape {flat_got[key].shape}, expected {spec.shape}."
      )
  return jax.tree.map(jnp.asarray, variables)


# ----------------------------------------------------------------------------------------------
# Finding the weights file
# ----------------------------------------------------------------------------------------------


def default_weights_path() -> str:
  return paths.join(paths.genjax_home(), "weights", WEIGHTS_FILE)


def _local_copy(remote: str) -> str:
  """A local copy of the weights file `remote` (in a bucket), kept in ~/.cache/genjax/weights and
  fetched again only when absent or damaged (the reader needs a seekable local file)."""
  local = os.path.join(os.path.expanduser("~"), ".cache", "genjax", "weights", os.path.basename(remote))
  if not (os.path.isfile(local) and sha256_of(local).startswith(WEIGHTS_SHA256_PREFIX)):
    os.makedirs(os.path.dirname(local), exist_ok=True)
    paths.write_atomic(local, paths.read_bytes(remote))
  return local


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def find_weights(path: Optional[str] = None, download: bool = True) -> str:
  """The local path of the FID Inception weights: `path`, else $GENJAX_INCEPTION_WEIGHTS, else
  $GENJAX_HOME/weights/<file> (default ~/.genjax), downloading there when a network exists.
  The file's SHA-256 must start with the hash in its name (the torch.hub convention)."""
  candidate = path or os.environ.get(WEIGHTS_ENV) or default_weights_path()
  if paths.is_remote(candidate):
    # the reader needs a local file: a copy of the bucket's, or a download into the local cache
    cache = os.path.join(os.path.expanduser("~"), ".cache", "genjax", "weights", WEIGHTS_FILE)
    candidate = _local_copy(candidate) if paths.exists(candidate) else cache
  if not os.path.isfile(candidate) and download and not (path or os.environ.get(WEIGHTS_ENV)):
    os.makedirs(os.path.dirname(candidate), exist_ok=True)
    partial = candidate + ".partial"
    try:
      urllib.request.urlretrieve(WEIGHTS_URL, partial)
      os.replace(partial, candidate)
    except OSError:
      if os.path.exists(partial):
        os.remove(partial)
  if not os.path.isfile(candidate):
    raise errors.MissingError(
      f"The FID Inception weights {WEIGHTS_FILE} were not found at {candidate} and could not be "
      f"downloaded. Download {WEIGHTS_URL} on a machine with a network and either put it at "
      f"{default_weights_path()} or point {WEIGHTS_ENV}=/path/to/{WEIGHTS_FILE} at it "
      f"(or pass --inception_weights). torch is not needed to read it."
    )
  digest = sha256_of(candidate)
  if not digest.startswith(WEIGHTS_SHA256_PREFIX):
    raise errors.ConfigError(
      f"{candidate} has SHA-256 {digest}, which does not start with "
      f"{WEIGHTS_SHA256_PREFIX} as {WEIGHTS_FILE} does: the file is corrupt or another "
      f"file. Download it again from {WEIGHTS_URL}."
    )
  return candidate


@functools.lru_cache(maxsize=2)
def load_fid_weights(path: Optional[str] = None) -> dict:
  """Flax variables of FIDInceptionV3 from the standard weights file (see `find_weights`)."""
  return variables_from_state_dict(read_torch_state_dict(find_weights(path)))
