"""Two-stage generation (van den Oord et al. 2017, "Neural Discrete Representation Learning",
section 3.2): a GPT learns the prior over a trained VQ-VAE's grid of codes; samples are codes
drawn from it and decoded by the VQ-VAE.

`Experiment.model = CodePriorConfig(vqvae=WORKDIR, ...)` with `family="autoregressive"` and the
image dataset the VQ-VAE was trained on. CodePriorConfig is a GPTConfig (every GPT and Llama
option applies) plus `vqvae`, the workdir of a genjax VQ-VAE run (experiments/vqvae_fashion_mnist.py
trains one). The run's newest checkpoint is read once, read-only, and its weights ride in the
train state as the "vqvae" collection, never updated nor averaged (as latent diffusion carries its
autoencoder), so a prior's checkpoint holds everything its samples need.

Tokens. Each training image is encoded inside the compiled step to its h x w codes (nearest
codebook vectors of the VQ-VAE's encoder output), read in raster order behind a start token:
[BOS, c_1, ..., c_hw] with BOS = K. The GPT's vocabulary is K + 1 rows and its block h*w tokens;
BOS is never a target and never drawn. The loss is the codes' cross-entropy in nats per code.

Bound. The VQ-VAE's posterior is one-hot (q(z|x) = 1 at z_q(x)), so the ELBO with this prior is

    -log p(x) <= -log p(x | z_q(x)) - log p_prior(z_q(x))        (nats per image)

the VQ-VAE's reconstruction plus the prior's summed code NLL; `evaluate` reports both terms, the
bound in bits/dim, and beside it the bound with the uniform prior the VQ-VAE trained against
(h w log K), which the learnt prior tightens.

Shapes: B batch, H W C image, h w code grid, K codes, T = h w tokens.
"""

import dataclasses
import functools
import json
import logging
import math
import os
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from genjax import config as config_lib
from genjax import errors
from genjax.config import ConfigError, Experiment
from genjax.core import step as step_lib
from genjax.data.info import DataInfo
from genjax.families import frozen, vqvae
from genjax.families.autoregressive import gpt
from genjax.families.autoregressive.gpt import GPT, GPTConfig

log = logging.getLogger("genjax")

COLLECTION = "vqvae"  # the train state's collection that holds the frozen VQ-VAE

_TRAINS_ONE = "experiments/vqvae_fashion_mnist.py trains one"


@dataclasses.dataclass(frozen=True)
class CodePriorConfig(GPTConfig):
  """A GPT over a VQ-VAE run's codes: GPTConfig's fields, and `vqvae`, the run's workdir.
  vocab_size is the codebook's K + 1 (the start token); leave it None."""

  vqvae: str = ""


@dataclasses.dataclass(frozen=True, eq=False)
class FrozenVQVAE:
  """A VQ-VAE run read for a prior: its model (for the prior's images), its variables (host
  arrays), the workdir and the checkpoint step. Compared and hashed by identity, so a model
  holding it binds as a static argument."""

  model: vqvae.VQVAE
  variables: Any
  path: str
  step: int


@dataclasses.dataclass(frozen=True)
class CodePrior:
  """The GPT over the codes and the frozen VQ-VAE they come from (hashable: a static argument)."""

  gpt: GPT
  vq: FrozenVQVAE

  @property
  def num_codes(self) -> int:
    return self.vq.model.config.num_codes

  @property
  def latent_shape(self) -> Tuple[int, int]:
    return self.vq.model.latent_shape

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    return self.vq.model.image_shape


# ----------------------------------------------------------------------------------------------
# Reading the VQ-VAE run
# ----------------------------------------------------------------------------------------------


def _run_config(path: str) -> Experiment:
  """The Experiment a VQ-VAE run recorded; one paragraph (MissingError / ConfigError) when `path` is
  not such a run."""
  from genjax import families

  if not path:
    raise ConfigError(
      "config.model.vqvae names no VQ-VAE run: a prior over codes needs the workdir of a trained genjax VQ-VAE "
      f"({_TRAINS_ONE}). Set --config.model.vqvae=WORKDIR."
    )
  if not os.path.isdir(path):
    raise errors.MissingError(
      f"config.model.vqvae = {path!r} is not a folder: name the workdir of a genjax VQ-VAE run ({_TRAINS_ONE})."
    )
  config_file = os.path.join(path, "config.json")
  try:
    with open(config_file) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(
      f"config.model.vqvae = {path!r} is not a genjax run: {config_file} cannot be read "
      f"({type(e).__name__}). Name the workdir of a genjax VQ-VAE run ({_TRAINS_ONE})."
    ) from None
  if not isinstance(data, dict) or data.get("model_class") != vqvae.VQVAEConfig.__name__:
    what = (
      f"a run of the {data.get('family')!r} family (model {data.get('model_class')!r}, experiment {data.get('name')!r})"
      if isinstance(data, dict)
      else "no genjax config"
    )
    raise ConfigError(
      f"config.model.vqvae = {path!r} is {what}, not a VQ-VAE run: a prior over codes needs a run whose model is "
      f"a VQVAEConfig ({_TRAINS_ONE})."
    )
  try:
    return config_lib.from_dict(data, families.model_classes())
  except (ConfigError, TypeError, ValueError) as e:
    raise ConfigError(f"The VQ-VAE run {path!r} has a config.json genjax cannot read back: {e}") from None


@functools.lru_cache(maxsize=4)
def _load(path: str, steps: Tuple[int, ...], info: DataInfo) -> FrozenVQVAE:
  del steps  # part of the key: a newer checkpoint is another load
  run = _run_config(path)
  image_info = dataclasses.replace(info, binary=run.data.binarize != "none")
  vq_model = vqvae.make_model(run.model, image_info)
  tree, step = frozen.newest_state(path, "VQ-VAE run")
  variables, _ = frozen.weights(tree)
  codebook = variables.get("vq", {}).get("codebook")
  if codebook is None or tuple(codebook.shape) != (run.model.num_codes, run.model.code_dim):
    raise errors.CheckpointError(
      f"Checkpoint {step} of the VQ-VAE run {path!r} holds no codebook of {run.model.num_codes} x "
      f"{run.model.code_dim} (its config.json's num_codes x code_dim): the run's files disagree. Nothing was changed."
    )
  log.info(
    "VQ-VAE of %s: checkpoint %d, %d codes on a %dx%d grid.", path, step, codebook.shape[0], *vq_model.latent_shape
  )
  return FrozenVQVAE(vq_model, variables, path, step)


def load(path: str, info: DataInfo, data_cfg=None) -> FrozenVQVAE:
  """The VQ-VAE run at `path` as the prior's images (`info`, and the data config when given) need
  it, loaded once per checkpoint; one paragraph for a run of another kind or other images."""
  path = os.path.abspath(path) if path else path
  run = _run_config(path)
  if info.kind != "image":
    raise ConfigError(
      f"A prior over VQ-VAE codes trains on the images its VQ-VAE encodes, but data {info.name!r} is {info.kind}: "
      f"set --config.data.name={run.data.name}."
    )
  if info.name != run.data.name or bool(info.binary) != (run.data.binarize != "none"):
    raise ConfigError(
      f"The VQ-VAE run {path!r} was trained on {run.data.name!r} (binarize={run.data.binarize!r}); this prior's data "
      f"is {info.name!r} (binary={info.binary}). Its codes mean nothing for other images: set --config.data.name="
      f"{run.data.name} --config.data.binarize={run.data.binarize}, or train a VQ-VAE on this data."
    )
  if data_cfg is not None and info.name == "folder":  # a folder's images depend on how they are read
    differ = [
      k for k in ("path", "channels", "image_size", "crop_size") if getattr(data_cfg, k) != getattr(run.data, k)
    ]
    if differ:
      raise ConfigError(
        f"The VQ-VAE run {path!r} read its folder of images with "
        f"{', '.join(f'data.{k}={getattr(run.data, k)!r}' for k in differ)}; this prior reads them with "
        f"{', '.join(f'{getattr(data_cfg, k)!r}' for k in differ)}. Give the prior the VQ-VAE's data settings."
      )
  return _load(path, tuple(frozen.checkpoint_steps(path)), info)


def check_vocabulary(cfg: CodePriorConfig, num_codes: int) -> None:
  if cfg.vocab_size is not None and cfg.vocab_size != num_codes + 1:
    raise ConfigError(
      f"config.model.vocab_size = {cfg.vocab_size}, but the VQ-VAE run {cfg.vqvae!r} has a codebook of K = "
      f"{num_codes} codes: the prior's vocabulary is the K codes and one start token, {num_codes + 1}. "
      "Leave vocab_size None (it is set from the codebook)."
    )


def make_model(cfg: CodePriorConfig, info: DataInfo, dtype=jnp.float32) -> CodePrior:
  """The GPT over the codes of the VQ-VAE run cfg.vqvae, for the images of `info`."""
  vq = load(cfg.vqvae, info)
  K = vq.model.config.num_codes
  check_vocabulary(cfg, K)
  h, w = vq.model.latent_shape
  tokens = DataInfo(name=f"{info.name} VQ-VAE codes", kind="text", shape=(h * w,), vocab_size=K)
  net = gpt.make_model(dataclasses.replace(cfg, vocab_size=K + 1), tokens, dtype)
  return CodePrior(net, vq)


# ----------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------


def tokens_of(vq_variables, images_BxHxWxC, model: CodePrior) -> jax.Array:
  """i32[B, 1 + h w]: the start token K, then each image's codes in raster order."""
  codes_Bxhxw = vqvae.codes_of(vq_variables, images_BxHxWxC, model.vq.model)
  B = codes_Bxhxw.shape[0]
  bos_Bx1 = jnp.full((B, 1), model.num_codes, jnp.int32)
  return jnp.concatenate([bos_Bx1, codes_Bxhxw.reshape(B, -1).astype(jnp.int32)], axis=1)


def _vq(variables, model: CodePrior):
  if COLLECTION not in variables:
    raise ConfigError(
      f"A prior over codes encodes and decodes with the '{COLLECTION}' collection of its variables (the frozen "
      "VQ-VAE the train state carries); pass state.variables() or add it."
    )
  return variables[COLLECTION]


def loss(params, vq_variables, batch, rng, model: CodePrior):
  """The codes' cross-entropy in nats per code: (loss, {"loss": loss})."""
  return gpt.loss(params, {"tokens": tokens_of(vq_variables, batch["image"], model)}, rng, model.gpt)


def updates(model: CodePrior) -> Tuple[step_lib.Update, ...]:
  def train_loss(params, state, batch, rng, i):
    value, metrics = loss(params, state.extra[COLLECTION], batch, rng, model)
    return value, (metrics, {})

  return (step_lib.Update(train_loss, finish=finish(model)),)


def bound_terms(variables, images_BxHxWxC, model: CodePrior) -> Dict[str, jax.Array]:
  """Per image, nats f32[B]: the prior's code NLL -log p(z_q(x)), the VQ-VAE's reconstruction
  -log p(x | z_q(x)), and their sum, the two-stage bound."""
  vq_variables = _vq(variables, model)
  prior = gpt.token_nll(variables["params"], tokens_of(vq_variables, images_BxHxWxC, model), model.gpt).sum(-1)
  recon = vqvae.bound_terms(vq_variables, images_BxHxWxC, model.vq.model)["recon_nats"]
  return {"prior_nats": prior, "recon_nats": recon, "nll_bound": prior + recon}


def eval_sums(variables, batch, rng, model: CodePrior):
  """Sums over the real images of the bound's terms; (sums, number of images)."""
  del rng
  terms = bound_terms(variables, batch["image"], model)
  return step_lib.masked_sums(terms, step_lib.batch_mask(batch, terms["nll_bound"].shape[0]))


def finish(model: CodePrior):
  """Train metrics: the loss (nats per code) in bits per code beside it. Evaluation means: the
  loss per code, and the bound (and the uniform prior's) in bits/dim."""
  h, w = model.latent_shape
  per_dim = float(np.prod(model.image_shape)) * math.log(2.0)
  uniform = h * w * math.log(model.num_codes)

  def done(m):
    out = dict(m)
    if "nll_bound" in m:
      out["loss"] = m["prior_nats"] / (h * w)
      out["bits_per_dim_bound"] = m["nll_bound"] / per_dim
      out["uniform_prior_bits_per_dim"] = (m["recon_nats"] + uniform) / per_dim
    out["bits_per_code"] = out["loss"] / math.log(2.0)
    return out

  return done


_jitted_eval_sums = jax.jit(lambda batch, variables, model: eval_sums(variables, batch, None, model), static_argnums=2)


def evaluate(variables, batches, rng, model: CodePrior) -> Dict[str, float]:
  """Over every real image of `batches`: the prior's nats per code, the reconstruction, the
  two-stage bound in nats and bits/dim, and the uniform prior's bound beside it."""
  del rng
  means, count, flops = step_lib.exact_means(_jitted_eval_sums, batches, variables, model)
  return {**finish(model)(means), "num_examples": count, "flops": flops}


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """Codes are drawn from the prior (temperature <= 0: greedy; top_k 0 or None and top_p None or
  1: off) and decoded by the VQ-VAE."""

  temperature: float = 1.0
  top_k: Optional[int] = None
  top_p: Optional[float] = None


def sample_codes(variables, rng, n: int, model: CodePrior, options: SampleOptions = SampleOptions()):
  """i32[n, h, w]: code grids drawn from the prior, token by token (KV-cached)."""
  h, w = model.latent_shape
  o = options
  tokens = gpt.sample_tokens(
    variables["params"], rng, n, model.gpt, [model.num_codes], h * w, o.temperature, o.top_k, o.top_p, model.num_codes
  )
  return tokens[:, 1:].reshape(n, h, w)


@functools.partial(jax.jit, static_argnames="model")
def decode(vq_variables, codes_nxhxw, model: CodePrior):
  """Images f32[n,H,W,C] in [-1, 1] from code grids."""
  return vqvae.decode_codes(vq_variables, codes_nxhxw, model.vq.model)


def sample(variables, rng, n: int, model: CodePrior, options: SampleOptions = SampleOptions()):
  """Images f32[n,H,W,C] in [-1, 1]: codes from the prior, decoded by the frozen VQ-VAE."""
  return decode(_vq(variables, model), sample_codes(variables, rng, n, model, options), model)


# ----------------------------------------------------------------------------------------------
# The adapter the trainer uses
# ----------------------------------------------------------------------------------------------

CONFIGS = (CodePriorConfig,)
OUTPUT = "image"
PARTITION_RULES = gpt.PARTITION_RULES
FROZEN_COLLECTIONS = (COLLECTION,)  # the VQ-VAE: carried by the state, never trained nor averaged


def init(rng, model: CodePrior):
  """Fresh variables: the GPT's {"params": ...} and the frozen VQ-VAE's collection."""
  return {"params": gpt.init(rng, model.gpt)["params"], COLLECTION: jax.tree.map(jnp.asarray, model.vq.variables)}


def check(exp: Experiment, info: DataInfo, batch_splits: int) -> None:
  """The data settings against the VQ-VAE run's, before anything compiles."""
  del batch_splits
  load(exp.model.vqvae, info, exp.data)


def optimizers(exp: Experiment, model: CodePrior):
  return gpt.optimizers(exp, model.gpt)


def notes(exp: Experiment, model: CodePrior) -> str:
  h, w = model.latent_shape
  n = gpt.num_params(model.gpt)
  return (
    f"prior over the {h}x{w} codes (K={model.num_codes}) of the VQ-VAE run {model.vq.path} (checkpoint "
    f"{model.vq.step}): GPT of {n / 1e6:.2f}M parameters, {h * w} tokens after a start token"
  )
