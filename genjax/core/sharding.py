"""Sharding as data: where each array of the train state lives on a ("data", "model") mesh.

A family names the logical axes of its large parameters with partition rules, pairs of a regex
(searched in the parameter's path, "block_0/attn/qkv/kernel") and one logical name (or None) per
dimension:

    (r"attn/qkv/kernel$", ("embed", None, "heads", None))

The same rules match the optimizer's moments and the EMA, whose paths end in the parameter's.
`LOGICAL_TO_MESH` maps logical names to mesh axes: attention heads and MLP hidden units go to the
"model" axis (tensor parallelism, as Megatron splits a transformer layer), everything else stays
whole. Under FSDP every array of at least `FSDP_MIN_SIZE` elements is then split over the "data"
axis along its largest dimension that is not split yet and divides evenly. Arrays that match no
rule are only FSDP-sharded; nothing is split where it does not divide.

`coverage` says how much of a state a layout splits (what a sharded run logs, and what
genjax.core.placement checks); `split_fraction` the same for a mesh of other sizes, without
building it (the sizes a refusal or a warning suggests).
"""

import dataclasses
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS, MODEL_AXIS = "data", "model"
LOGICAL_TO_MESH: Dict[str, Optional[str]] = {"heads": MODEL_AXIS, "mlp": MODEL_AXIS, "embed": None, "vocab": None}
# Arrays smaller than this stay whole under FSDP: biases and norm scales cost more to gather than to keep.
FSDP_MIN_SIZE = 1 << 12

Rules = Sequence[Tuple[str, Tuple[Optional[str], ...]]]


def path_name(path) -> str:
  """A pytree key path as "a/b/c" (dict keys, attribute names and indices)."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(parts)


def spec_for(name: str, shape: Tuple[int, ...], rules: Rules, mesh_axes: Dict[str, int], fsdp: bool) -> P:
  """The PartitionSpec of one array: the first rule whose regex is found in `name` and whose rank
  matches names its dimensions' logical axes; FSDP adds the data axis."""
  axes = [None] * len(shape)
  for pattern, logical in rules:
    if len(logical) == len(shape) and re.search(pattern, name):
      axes = [LOGICAL_TO_MESH.get(a) if a else None for a in logical]
      break
  axes = [
    a if a is not None and mesh_axes.get(a, 1) > 1 and shape[i] % mesh_axes[a] == 0 else None
    for i, a in enumerate(axes)
  ]
  data = mesh_axes.get(DATA_AXIS, 1)
  if fsdp and data > 1 and math.prod(shape) >= FSDP_MIN_SIZE:
    free = [i for i, a in enumerate(axes) if a is None and shape[i] % data == 0]
    if free:
      axes[max(free, key=lambda i: shape[i])] = DATA_AXIS
  while axes and axes[-1] is None:
    axes.pop()
  return P(*axes)


def state_shardings(abstract_state, mesh, rules: Rules, fsdp: bool):
  """A NamedSharding for every leaf of `abstract_state` (a pytree of arrays or ShapeDtypeStructs)."""
  mesh_axes = dict(zip(mesh.axis_names, mesh.devices.shape))
  return jax.tree_util.tree_map_with_path(
    lambda path, x: NamedSharding(mesh, spec_for(path_name(path), tuple(x.shape), rules, mesh_axes, fsdp)),
    abstract_state,
  )


def bytes_per_device(abstract_state, shardings) -> int:
  """The bytes of `abstract_state` that each device holds under `shardings` (the largest shard)."""
  total = 0
  for x, sharding in zip(jax.tree.leaves(abstract_state), jax.tree.leaves(shardings)):
    shard = sharding.shard_shape(tuple(x.shape))
    total += math.prod(shard) * jax.numpy.dtype(x.dtype).itemsize
  return total


# ----------------------------------------------------------------------------------------------
# How much of a state a layout splits
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Coverage:
  """How much of a state its shardings split: arrays and bytes split over each mesh axis, and the
  bytes one device holds against one whole copy."""

  arrays: int
  total_bytes: int  # one whole copy of the state
  bytes_per_device: int  # the largest shard of every array, summed
  split_arrays: Dict[str, int]  # mesh axis -> arrays split over it
  split_bytes: Dict[str, int]  # mesh axis -> bytes of those arrays (whole)

  def fraction(self, axis: str) -> float:
    return self.split_bytes.get(axis, 0) / max(self.total_bytes, 1)


def _nbytes(x) -> int:
  return math.prod(x.shape) * jax.numpy.dtype(x.dtype).itemsize


def coverage(abstract_state, shardings) -> Coverage:
  """The Coverage of `abstract_state` (arrays or ShapeDtypeStructs) under `shardings` (NamedShardings)."""
  leaves = jax.tree.leaves(abstract_state)
  arrays, nbytes = {}, {}
  for x, sharding in zip(leaves, jax.tree.leaves(shardings)):
    for axis in {a for entry in sharding.spec for a in (entry if isinstance(entry, tuple) else (entry,)) if a}:
      arrays[axis] = arrays.get(axis, 0) + 1
      nbytes[axis] = nbytes.get(axis, 0) + _nbytes(x)
  return Coverage(
    arrays=len(leaves),
    total_bytes=sum(_nbytes(x) for x in leaves),
    bytes_per_device=bytes_per_device(abstract_state, shardings),
    split_arrays=arrays,
    split_bytes=nbytes,
  )


def named_shapes(abstract_state) -> List[Tuple[str, Tuple[int, ...], int]]:
  """(path name, shape, bytes) of every array of `abstract_state`."""
  out = []
  jax.tree_util.tree_map_with_path(
    lambda path, x: out.append((path_name(path), tuple(x.shape), _nbytes(x))), abstract_state
  )
  return out


def split_fraction(named, rules: Rules, mesh_axes: Dict[str, int], fsdp: bool, axis: str) -> float:
  """The fraction of the bytes of `named` (named_shapes' rows) that a mesh of `mesh_axes` sizes
  would split over `axis`."""
  total = sum(n for _, _, n in named)
  split = sum(n for name, shape, n in named if axis in spec_for(name, shape, rules, mesh_axes, fsdp))
  return split / max(total, 1)


def model_dims(named, rules: Rules) -> Dict[str, List[int]]:
  """{logical name: the sizes of the dimensions it names}, for the logical names that go to the
  model axis: what tensor parallelism would split."""
  dims: Dict[str, set] = {}
  for name, shape, _ in named:
    for pattern, logical in rules:
      if len(logical) == len(shape) and re.search(pattern, name):
        for size, a in zip(shape, logical):
          if a and LOGICAL_TO_MESH.get(a) == MODEL_AXIS:
            dims.setdefault(a, set()).add(size)
        break
  return {a: sorted(sizes) for a, sizes in dims.items()}


def format_bytes(n: float) -> str:
  for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if n >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{int(n)} B"
