"""Experiment configuration: frozen dataclasses, config files, dotted overrides, validation.

An experiment is an `Experiment` tree of frozen dataclasses. A config file is a Python file
whose `get_config(arg=None)` returns one (`path/to/file.py:arg` passes `arg`). Command-line
overrides use the dotted form TPU users know, `--config.train.steps=100`; each value is
converted to the type of the field it replaces and the result is validated before anything is
compiled.

The `model` field holds the family's own model dataclass (each family module defines `Config`).
This module imports nothing of genjax: callers that read a saved `config.json` back pass the
mapping from family name to model class.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import json
import math
import os
import types
import typing
from typing import Any, Literal, Mapping, Optional, Sequence, Tuple, Union

from genjax.errors import ConfigError  # noqa: F401 - genjax.config.ConfigError, as before

# JAX's PRNG keys take 32-bit seeds (without jax_enable_x64): a larger seed gives the keys of a
# smaller one (2**32 those of 0), so every seed is an integer in [0, MAX_SEED].
MAX_SEED = 2**32 - 1
# Simulated CPU devices are threads of one process; past a few thousand XLA spends minutes making them.
MAX_CPU_DEVICES = 4096
# A byte-level BPE vocabulary larger than this is no tokenizer anyone trains (GPT-4's has 100,277
# symbols, Gemma's 256,000), and Hugging Face tokenizers reserves memory for it up front: a
# billion aborts the process.
MAX_BPE_VOCAB = 2**20

# ----------------------------------------------------------------------------------------------
# The experiment tree
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Data:
  """Which dataset and how examples are prepared.

  `name` is a TFDS name (mnist, fashion_mnist, binarized_mnist, tiny_shakespeare, cifar10), one
  built by genjax from them (stacked_mnist), or `digits` (scikit-learn's bundled 8x8 digits, no
  download). `manual_dir` holds the raw files TFDS would download (or a folder with one
  sub-folder per dataset; the GENJAX_MANUAL_DIR environment variable is the fallback).

  Your own data (genjax.data.files): `name="folder"` reads the PNG/JPEG images under `path`
  (sub-folders are classes), center-cropped (to `crop_size`, or the largest square) and resized to
  `image_size` x `image_size` with `channels` 3 (RGB) or 1 (gray); `name="text"` reads a text
  file, or every file under a folder `path`. Their splits are "train", "test" (the held-out
  fraction `holdout`) and "all", each sliceable as in TFDS ("train[:90%]", "all[100:200]").
  `name="tfds:NAME[/CONFIG][:VERSION]"` reads any prepared TFDS dataset with an Image feature
  (resized the same way) or a Text feature. `tokenizer="bpe"` learns a byte-level BPE of
  `bpe_vocab_size` symbols on the training split (Hugging Face tokenizers).
  """

  name: str = "digits"
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  train_split: str = "train"
  eval_split: str = "test"
  binarize: Literal["none", "dynamic", "threshold"] = "none"
  flip: bool = False
  block_size: int = 256
  tokenizer: Literal["char", "byte", "bpe"] = "char"
  bpe_vocab_size: int = 1024  # tokenizer="bpe": byte-level BPE learnt on the training split, up to this vocabulary
  in_memory_max_mb: int = 4096
  path: Optional[str] = None  # name="folder" / "text": the folder or file (local or gs://)
  image_size: int = 64  # name="folder" / "tfds:...": images are center-cropped and resized to this square
  channels: int = 3  # name="folder" / "tfds:...": 3 (RGB) or 1 (grayscale)
  crop_size: Optional[int] = (
    None  # name="folder" / "tfds:...": the centered square kept before resizing (None: the largest)
  )
  holdout: float = 0.1  # name="folder" / "text": the fraction of examples in the "test" split
  decode_threads: int = 0  # name="folder": threads decoding a batch's images; 0: one per CPU, at most 8


@dataclasses.dataclass(frozen=True)
class Optim:
  """The optax optimizer and learning-rate schedule."""

  name: Literal["adam", "adamw", "sgd", "muon"] = "adam"
  learning_rate: float = 1e-3
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 0.0
  schedule: Literal["constant", "warmup_cosine", "piecewise"] = "constant"
  warmup_steps: int = 0
  # Cosine decays to learning_rate * end_lr_ratio over `decay_steps` (default: train.steps).
  end_lr_ratio: float = 0.1
  decay_steps: Optional[int] = None
  # Piecewise constant: at step boundaries[i] the rate is multiplied by scales[i].
  boundaries: Tuple[int, ...] = ()
  scales: Tuple[float, ...] = ()
  grad_clip_norm: Optional[float] = None
  grad_accum_steps: int = 1
  # An EMA of the weights (and of the BatchNorm statistics of the networks that keep one), which
  # samples and evaluations use; with ema_warmup its decay at update t is min(ema_decay,
  # (1 + t) / (10 + t)) (genjax.core.state.EMA).
  ema_decay: Optional[float] = None
  ema_warmup: bool = True
  # name "muon" (Jordan et al. 2024, optax.contrib): the hidden matrices a family names (a GPT's
  # attention and MLP kernels) take Muon, momentum orthogonalised by ns_steps Newton-Schulz
  # iterations, at muon_learning_rate on the schedule above; the embeddings, head, norm scales and
  # biases take AdamW with the fields above (genjax.core.optim.muon_with_adamw).
  muon_learning_rate: float = 0.02
  muon_momentum: float = 0.95
  muon_nesterov: bool = True
  muon_ns_steps: int = 5
  muon_weight_decay: float = 0.0  # decoupled, times muon_learning_rate (optax.contrib.muon's)


@dataclasses.dataclass(frozen=True)
class Train:
  """The loop: how long, how big, how often to log, evaluate and checkpoint."""

  steps: int = 1000
  batch_size: int = 128  # the global batch, over all devices and hosts
  seed: int = 0
  log_every: int = 50
  eval_every: int = 500
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  async_checkpoints: bool = True
  compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
  steps_per_call: int = 1  # >1 runs several train steps inside one jitted lax.scan
  progress: bool = True
  # (first, last): a jax.profiler trace of the steps from `first` to `last` into WORKDIR/profile
  # (TensorBoard's profile plugin or XProf reads it), e.g. --config.train.profile_steps=10,20.
  profile_steps: Tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Parallel:
  """How a step is spread over devices (genjax.core.parallel):

  jit    data parallel: jax.jit on a ("data",) mesh, the state replicated, batches sharded;
  fsdp   the same, with parameters, gradients and optimizer state sharded over the data axis
         (each the largest dimension that divides; XLA gathers a layer's weights when it needs them);
  pmap   data parallel under jax.pmap (one state copy per device).
  model_parallel > 1 adds a "model" mesh axis of that size (jit and fsdp): the parameters that a
  family's partition rules name (a GPT's attention heads and MLP) are split over it (tensor
  parallelism), batches over the data axis of num_devices / model_parallel devices.
  cpu_devices: `python -m genjax.train` splits the host CPU into this many JAX devices before JAX
  starts (what --cpu_devices does; the flag wins). When the CPU is what runs the step, data
  parallelism over its cores can beat one device's threads: on 2 cores the small CPU GPT takes
  ~37 ms per step as 2 devices and ~50 ms as one (experiments/RESULTS.md). No effect on the
  accelerators; steps and losses do not depend on it.
  keep_cpu_memory: `python -m genjax.train` keeps XLA:CPU's freed buffers mapped from one step to
  the next instead of letting glibc unmap them and fault them in again (genjax.cli.tune_malloc,
  its heap capped at a quarter of the machine's memory): for configs whose CPU step was measured
  faster with it (the MNIST U-Net 0.85-0.89x diffusers' time instead of 1.04x). $GENJAX_MALLOC_TUNING
  wins ("on" or "off"). No effect on the accelerators or on the numbers.
  """

  mode: Literal["jit", "fsdp", "pmap"] = "jit"
  num_devices: Optional[int] = None  # None: every device of every process
  model_parallel: int = 1
  cpu_devices: Optional[int] = None
  keep_cpu_memory: bool = False


@dataclasses.dataclass(frozen=True)
class Eval:
  """Periodic evaluation and sample pictures."""

  num_batches: int = 4
  batch_size: Optional[int] = None  # default: train.batch_size
  num_samples: int = 64  # images in each sample grid / text samples per eval
  sample_length: int = 256  # tokens per text sample


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One experiment: the family and its model config, data, optimizer, loop, parallelism."""

  name: str = "default"
  family: str = "vae"
  model: Any = None
  data: Data = Data()
  optim: Optim = Optim()
  train: Train = Train()
  parallel: Parallel = Parallel()
  eval: Eval = Eval()


# ----------------------------------------------------------------------------------------------
# Loading config files
# ----------------------------------------------------------------------------------------------


def load_config_file(spec: str) -> Experiment:
  """Loads `path.py` or `path.py:arg` and returns the `Experiment` its `get_config` builds."""
  path, _, arg = spec.partition(":")
  if not path.endswith(".py"):
    raise ConfigError(f"--config must name a Python file (experiments/NAME.py[:arg]), got {spec!r}.")
  if not os.path.isfile(path):
    here = os.path.dirname(path) or "."
    known = sorted(f for f in os.listdir(here) if f.endswith(".py")) if os.path.isdir(here) else []
    close = difflib.get_close_matches(os.path.basename(path), known, n=3)
    hint = f" Did you mean: {', '.join(os.path.join(here, c) for c in close)}?" if close else ""
    raise ConfigError(f"Config file {path!r} does not exist.{hint}")
  module_spec = importlib.util.spec_from_file_location(f"genjax_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(
      f"Config file {e.filename}:{e.lineno}: {e.msg} ({(e.text or '').strip()!r}). "
      "Fix the file; it must be Python defining get_config()."
    ) from None
  except Exception as e:  # noqa: BLE001 - anything the file itself raises is the user's to fix
    raise ConfigError(f"Config file {path}{_line_in(e, path)} raised {type(e).__name__}: {e}. Fix the file.") from None
  if not hasattr(module, "get_config"):
    raise ConfigError(f"Config file {path!r} has no get_config() function returning an Experiment.")
  if arg and not _reads_its_argument(module.get_config, path):
    raise ConfigError(
      f"{path} takes no argument after ':' (its get_config never reads one; got {arg!r}): use {path} alone."
    )
  try:
    exp = module.get_config(arg) if arg else module.get_config()
  except ConfigError:
    raise
  except TypeError as e:
    if arg and "positional argument" in str(e):
      raise ConfigError(f"{path} takes no argument after ':' (got {arg!r}): use {path} alone.") from None
    raise ConfigError(f"{spec}: get_config raised TypeError{_line_in(e, path)}: {e}.") from None
  except (ValueError, KeyError, AttributeError, NameError) as e:
    raise ConfigError(
      f"{spec}: {e}"
      if isinstance(e, ValueError)
      else f"{spec}: get_config raised {type(e).__name__}{_line_in(e, path)}: {e}."
    ) from None
  if not isinstance(exp, Experiment):
    raise ConfigError(f"{path}: get_config() returned {type(exp).__name__}, expected genjax.config.Experiment.")
  return exp


def _reads_its_argument(get_config, path: str) -> bool:
  """False when `get_config`, defined in the file `path`, takes no argument or never reads its first
  one (`del arg`): ':ARG' would be ignored. True when it reads it, or when that cannot be told (a
  get_config imported from elsewhere, or taking *args)."""
  import inspect

  try:
    params = list(inspect.signature(get_config).parameters.values())
  except (TypeError, ValueError):
    return True
  if not params:
    return False
  if params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
    return True
  code = getattr(get_config, "__code__", None)
  if code is None or os.path.abspath(code.co_filename) != os.path.abspath(path):
    return True
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read())
  defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "get_config"]
  if not defs:
    return True
  name = params[0].name
  body = ast.Module(body=defs[-1].body, type_ignores=[])
  return any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load) for n in ast.walk(body))


def _line_in(error: BaseException, path: str) -> str:
  """ " (line N)" for the deepest frame of `error`'s traceback that is in the file `path`."""
  import traceback

  lines = [
    f.lineno for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) == os.path.abspath(path)
  ]
  return f" (line {lines[-1]})" if lines else ""


# ----------------------------------------------------------------------------------------------
# Dotted overrides
# ----------------------------------------------------------------------------------------------


def _field_types(cls) -> dict:
  return typing.get_type_hints(cls)


def _type_name(tp) -> str:
  if typing.get_origin(tp) is Literal:
    return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
  if isinstance(tp, type):
    return tp.__name__
  return str(tp).replace("typing.", "")


def convert_value(text: str, tp, where: str):
  """Converts the command-line string `text` to type `tp` (the field's annotation)."""
  origin, args = typing.get_origin(tp), typing.get_args(tp)
  if origin in (Union, types.UnionType):
    if type(None) in args and text.strip().lower() in ("none", "null"):
      return None
    errors = []
    for option in (a for a in args if a is not type(None)):
      try:
        return convert_value(text, option, where)
      except ConfigError as e:
        errors.append(str(e))
    raise ConfigError(errors[0] if errors else f"{where}: cannot convert {text!r}.")
  if origin is Literal:
    if text in args:
      return text
    raise ConfigError(f"{where}={text!r} is not allowed: expected {_type_name(tp)}.")
  if tp is bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
    raise ConfigError(f"{where}={text!r}: expected a boolean (true or false).")
  if tp is int:
    try:
      value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
      value = None
    if isinstance(value, float) and not math.isfinite(value):
      value = None  # 1e310 reads as inf, which int() cannot take
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
      raise ConfigError(f"{where}={text!r}: expected an integer, e.g. {where}=100.")
    return int(value)
  if tp is float:
    try:
      return float(text)
    except ValueError:
      raise ConfigError(f"{where}={text!r}: expected a number, e.g. {where}=0.001.") from None
  if tp is str:
    return text
  if origin in (tuple, Tuple):
    items = [s for s in text.strip().strip("()[]").split(",") if s.strip()]
    inner = args[0] if args else str
    return tuple(convert_value(s.strip(), inner, where) for s in items)
  raise ConfigError(f"{where}: fields of type {_type_name(tp)} cannot be set from the command line.")


def _closest(name: str, options: Sequence[str]) -> str:
  close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
  return f" Did you mean {', '.join(close)}?" if close else f" Valid keys: {', '.join(options)}."


def override(exp: Experiment, key: str, text: str) -> Experiment:
  """Returns `exp` with the dotted field `key` (e.g. "train.steps") set from the string `text`."""
  parts = key.split(".")
  return _override(exp, parts, text, prefix="")


def _override(node, parts: list, text: str, prefix: str):
  if not dataclasses.is_dataclass(node):
    raise ConfigError(f"--config.{prefix.rstrip('.')} is a value, not a group: cannot set {'.'.join(parts)} inside it.")
  names = [f.name for f in dataclasses.fields(node)]
  head, rest = parts[0], parts[1:]
  where = f"--config.{prefix}{head}"
  if head not in names:
    raise ConfigError(f"Unknown config key {where}.{_closest(head, names)}")
  current = getattr(node, head)
  if rest:
    return dataclasses.replace(node, **{head: _override(current, rest, text, prefix + head + ".")})
  if dataclasses.is_dataclass(current):
    raise ConfigError(
      f"{where} is a group of settings; set one of its fields, e.g. {where}.{dataclasses.fields(current)[0].name}=..."
    )
  tp = _field_types(type(node))[head]
  if tp is Any:
    raise ConfigError(f"{where} cannot be set from the command line.")
  return dataclasses.replace(node, **{head: convert_value(text, tp, where)})


def apply_overrides(exp: Experiment, overrides: Mapping[str, str] | Sequence[str]) -> Experiment:
  """Applies `{"train.steps": "100"}` or `["--config.train.steps=100", ...]` overrides."""
  if not isinstance(overrides, Mapping):
    pairs = {}
    for item in overrides:
      body = item[len("--config.") :] if item.startswith("--config.") else item
      if "=" not in body:
        raise ConfigError(f"Override {item!r} has no value: write --config.a.b=VALUE.")
      key, _, value = body.partition("=")
      pairs[key] = value
    overrides = pairs
  for key, value in overrides.items():
    exp = override(exp, key, value)
  return exp


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def _check_types(node, prefix: str):
  """Checks every field holds a value of its annotated type (config files are Python too)."""
  hints = _field_types(type(node))
  for f in dataclasses.fields(node):
    value, tp, where = getattr(node, f.name), hints[f.name], f"{prefix}{f.name}"
    if dataclasses.is_dataclass(value):
      _check_types(value, where + ".")
      continue
    if tp is Any:
      continue
    if not _is_instance(value, tp):
      raise ConfigError(f"config.{where} = {value!r} has type {type(value).__name__}; expected {_type_name(tp)}.")


def _is_instance(value, tp) -> bool:
  origin, args = typing.get_origin(tp), typing.get_args(tp)
  if origin in (Union, types.UnionType):
    return any(_is_instance(value, a) for a in args)
  if origin is Literal:
    return value in args
  if tp is type(None):
    return value is None
  if tp is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if tp is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if origin in (tuple, Tuple):
    return (
      isinstance(value, tuple) and all(_is_instance(v, args[0]) for v in value) if args else isinstance(value, tuple)
    )
  if isinstance(tp, type):
    return isinstance(value, tp)
  return True


def _float_fields(node, prefix=""):
  for f in dataclasses.fields(node):
    value = getattr(node, f.name)
    if dataclasses.is_dataclass(value):
      yield from _float_fields(value, f"{prefix}{f.name}.")
    elif isinstance(value, float):
      yield f"{prefix}{f.name}", value
    elif isinstance(value, tuple):
      for i, v in enumerate(value):
        if isinstance(v, float):
          yield f"{prefix}{f.name}[{i}]", v


def validate(exp: Experiment) -> Experiment:
  """Raises ConfigError naming the field, the problem and the fix; returns `exp` when valid.
  What depends on the devices (batches that divide over them, a model axis that fits) is checked
  where the devices are known: genjax.core.placement."""
  _check_types(exp, "")
  if exp.model is None or not dataclasses.is_dataclass(exp.model):
    raise ConfigError(
      f"config.model must be the family's model config dataclass (e.g. genjax.families.{exp.family}.Config), "
      f"got {exp.model!r}."
    )
  _check_counts(exp)
  _check_data(exp.data)
  _check_optim(exp.optim, exp.train)
  _check_parallel(exp.parallel)
  return exp


def _check_counts(exp: Experiment):
  """Counts that must be positive, numbers that must be finite, the seed, the profiled steps."""
  t, o = exp.train, exp.optim
  positive = {
    "train.steps": t.steps,
    "train.batch_size": t.batch_size,
    "train.log_every": t.log_every,
    "train.eval_every": t.eval_every,
    "train.checkpoint_every": t.checkpoint_every,
    "train.keep_checkpoints": t.keep_checkpoints,
    "train.steps_per_call": t.steps_per_call,
    "optim.grad_accum_steps": o.grad_accum_steps,
    "eval.num_samples": exp.eval.num_samples,
    "data.block_size": exp.data.block_size,
    "data.image_size": exp.data.image_size,
  }
  for where, value in positive.items():
    if value <= 0:
      raise ConfigError(f"config.{where} = {value} must be a positive integer.")
  for where, value in _float_fields(exp):
    if value is not None and not math.isfinite(value):
      raise ConfigError(f"config.{where} = {value} must be a finite number.")
  if not 0 <= t.seed <= MAX_SEED:
    raise ConfigError(
      f"config.train.seed = {t.seed} must be an integer from 0 to {MAX_SEED} (2**32 - 1; it seeds the data "
      "order and the keys, which take 32-bit seeds)."
    )
  if t.profile_steps and (len(t.profile_steps) != 2 or not 0 <= t.profile_steps[0] < t.profile_steps[1]):
    raise ConfigError(
      f"config.train.profile_steps = {t.profile_steps} must be two steps, first < last, e.g. "
      "--config.train.profile_steps=10,20 (or empty for no profile)."
    )


def _check_data(d: Data):
  if d.crop_size is not None and d.crop_size < 1:
    raise ConfigError(f"config.data.crop_size = {d.crop_size} must be a positive number of pixels, or None.")
  if d.channels not in (1, 3):
    raise ConfigError(f"config.data.channels = {d.channels} must be 3 (RGB) or 1 (grayscale).")
  if not 0 <= d.holdout < 1:
    raise ConfigError(
      f"config.data.holdout = {d.holdout} must lie in [0, 1): the fraction of your own data held out as "
      "the 'test' split (e.g. 0.1)."
    )
  if d.tokenizer == "bpe" and not 256 <= d.bpe_vocab_size <= MAX_BPE_VOCAB:
    raise ConfigError(
      f"config.data.bpe_vocab_size = {d.bpe_vocab_size} must lie in [256, {MAX_BPE_VOCAB:,}] (2**20): the 256 "
      "bytes plus learnt merges, e.g. 1024 for a small corpus, 50,257 as GPT-2."
    )
  if d.decode_threads < 0:
    raise ConfigError(f"config.data.decode_threads = {d.decode_threads} must be >= 0 (0: one per CPU).")


def _check_optim(o: Optim, t: Train):
  if o.learning_rate <= 0:
    raise ConfigError(f"config.optim.learning_rate = {o.learning_rate} must be > 0 (e.g. 1e-3).")
  if o.weight_decay < 0:
    raise ConfigError(f"config.optim.weight_decay = {o.weight_decay} must be >= 0.")
  if not 0 <= o.b1 < 1 or not 0 <= o.b2 < 1:
    raise ConfigError(f"config.optim.b1/b2 = {o.b1}/{o.b2} must lie in [0, 1).")
  _check_muon(o)
  if o.ema_decay is not None and not 0 < o.ema_decay < 1:
    raise ConfigError(f"config.optim.ema_decay = {o.ema_decay} must lie in (0, 1), or be None for no EMA.")
  if o.grad_clip_norm is not None and o.grad_clip_norm <= 0:
    raise ConfigError(f"config.optim.grad_clip_norm = {o.grad_clip_norm} must be > 0, or None for no clipping.")
  if len(o.boundaries) != len(o.scales):
    raise ConfigError(
      f"config.optim.boundaries ({len(o.boundaries)}) and optim.scales ({len(o.scales)}) must have the same length."
    )
  if o.schedule == "warmup_cosine" and o.warmup_steps >= (o.decay_steps or t.steps):
    length = (
      f"config.optim.decay_steps = {o.decay_steps}"
      if o.decay_steps
      else f"config.train.steps = {t.steps} (the cosine's length while config.optim.decay_steps is None)"
    )
    raise ConfigError(
      f"config.optim.warmup_steps = {o.warmup_steps} must be smaller than {length}: the warmup would "
      f"never end. For a shortened run lower the warmup with it, e.g. "
      f"--config.optim.warmup_steps={max(0, (o.decay_steps or t.steps) // 10)}."
    )


def _check_muon(o: Optim):
  if o.muon_learning_rate <= 0:
    raise ConfigError(
      f"config.optim.muon_learning_rate = {o.muon_learning_rate} must be > 0 (Muon's rate for the hidden "
      "matrices, e.g. 0.02; optim.learning_rate is AdamW's for the rest)."
    )
  if not 0 <= o.muon_momentum < 1:
    raise ConfigError(f"config.optim.muon_momentum = {o.muon_momentum} must lie in [0, 1) (e.g. 0.95).")
  if o.muon_ns_steps < 1:
    raise ConfigError(
      f"config.optim.muon_ns_steps = {o.muon_ns_steps} must be a positive number of Newton-Schulz steps (e.g. 5)."
    )
  if o.muon_weight_decay < 0:
    raise ConfigError(f"config.optim.muon_weight_decay = {o.muon_weight_decay} must be >= 0.")


def _check_parallel(p: Parallel):
  if p.num_devices is not None and p.num_devices <= 0:
    raise ConfigError(f"config.parallel.num_devices = {p.num_devices} must be positive, or None for all devices.")
  if p.cpu_devices is not None and not 0 < p.cpu_devices <= MAX_CPU_DEVICES:
    raise ConfigError(
      f"config.parallel.cpu_devices = {p.cpu_devices} must be a positive number of CPU devices, at most "
      f"{MAX_CPU_DEVICES}, or None for JAX's default."
    )
  if p.model_parallel < 1:
    raise ConfigError(f"config.parallel.model_parallel = {p.model_parallel} must be >= 1 (1: no tensor parallelism).")
  if p.model_parallel > 1 and p.mode == "pmap":
    raise ConfigError(
      "config.parallel.model_parallel > 1 needs a device mesh: use --config.parallel.mode=jit or "
      "fsdp (pmap maps one whole model copy per device)."
    )


# ----------------------------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------------------------


def to_dict(exp: Experiment) -> dict:
  """A JSON-ready dict of the whole tree (tuples become lists); `model_class` names the model
  config's class (a family may have several, e.g. GPTConfig and PixelCNNConfig)."""
  d = dataclasses.asdict(exp)
  if exp.model is not None:
    d["model_class"] = type(exp.model).__name__
  return d


def to_json(exp: Experiment) -> str:
  return json.dumps(to_dict(exp), indent=2, sort_keys=True)


def _from_dict(cls, data: Mapping, where: str):
  hints = _field_types(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = set(data) - names
  if unknown:
    raise ConfigError(
      f"Saved config has unknown keys {sorted(unknown)} under {where or 'the top level'}: written by another genjax version?"
    )
  kwargs = {}
  for f in dataclasses.fields(cls):
    if f.name not in data:
      continue
    value, tp = data[f.name], hints[f.name]
    if dataclasses.is_dataclass(tp):
      value = _from_dict(tp, value, f"{where}{f.name}.")
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[f.name] = value
  return cls(**kwargs)


def from_dict(data: Mapping, model_classes: Mapping[str, Sequence[type]]) -> Experiment:
  """Rebuilds an `Experiment` from `to_dict` output; `model_classes` maps each family to its
  model config classes (the one named by "model_class" is used, else the first)."""
  data = dict(data)
  family = data.get("family", "vae")
  if family not in model_classes:
    raise ConfigError(f"Saved config names family {family!r}; known families: {', '.join(sorted(model_classes))}.")
  given = model_classes[family]
  classes = {c.__name__: c for c in (given if isinstance(given, (tuple, list)) else (given,))}
  name = data.pop("model_class", None) or next(iter(classes))
  if name not in classes:
    raise ConfigError(
      f"Saved config names model class {name!r}, which the {family} family does not have "
      f"({', '.join(classes)}): written by another genjax version?"
    )
  model = _from_dict(classes[name], data.pop("model") or {}, "model.")
  exp = _from_dict(Experiment, data, "")
  return dataclasses.replace(exp, model=model)


def diff(a: Experiment, b: Experiment, prefix: str = "") -> list:
  """The dotted names of fields whose values differ between two experiments."""
  out = []
  da, db = to_dict(a), to_dict(b)

  def walk(x, y, path):
    if isinstance(x, dict) and isinstance(y, dict):
      for k in sorted(set(x) | set(y)):
        walk(x.get(k), y.get(k), f"{path}{k}.")
    elif x != y:
      out.append(path.rstrip("."))

  walk(da, db, prefix)
  return out
