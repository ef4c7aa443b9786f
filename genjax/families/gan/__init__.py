"""Generative adversarial networks: DCGAN, SNGAN, WGAN-GP and PacGAN as one family.

The family contract of genjax.families.base: `updates(model)` is the step the shared loop runs,
`init`, `eval_sums`, `sample` and `pictures` the rest. One `train_step` makes
`n_critic` discriminator updates and then `g_steps` generator updates, each network with its own
optax optimizer, in a single jitted call:

  state.params     = {"g": generator params, "d": discriminator params}
  state.opt_state  = {"g": ..., "d": ...}
  state.ema_params = {"g": ...} when optim.ema_decay is set (sampling then uses it), else None
  state.extra      = {"batch_stats": {"g": ..., "d": ...}, "spectral": {"d": ...}}, holding only
                     the collections the networks have (BatchNorm running statistics; spectral
                     normalisation's power-iteration vectors)

Which examples each discriminator update sees (`critic_batches`):
  "same"   every one of the n_critic updates uses the whole batch of real images (fresh noise);
  "split"  update i uses examples i, i + n, i + 2n, ... of the global batch (B / n_critic real
           images each), like WGAN-GP's fresh real batch per critic iteration, and each generator
           update uses B / n_critic noise vectors (WGAN-GP's generator batch). The strided split
           picks the same examples whether the batch is whole or cut into device shares, so
           every parallel mode computes the same step.

Each update draws its noise from per-example keys (`genjax.core.parallel.example_keys`) folded
with the update's index, so every parallel mode gives the same numbers; the step builder
(genjax.core.step) averages gradients and metrics over devices, and BatchNorm's statistics span
the global batch (genjax.nn.norm).

The pure functions take `model`, a `GAN` (the two Flax modules and the config):

  discriminator_loss(d_params, d_collections, g_variables, x_real, y_real, keys_B, phase, model)
  generator_loss(g_params, g_collections, d_variables, keys_B, phase, model)
  sample(variables, rng, n, model, options)        eval_sums(variables, batch, rng, model)

each returning what its docstring says; `updates` chains them into the trainer's step.

Generators are in train mode (batch statistics) while training, and sample with running
averages. The generator's running statistics are updated by the generator updates only.

Packing (PacGAN, Lin et al. 2018): with `pack = m` the discriminator sees groups of m
consecutive examples concatenated along channels, so a batch of B images gives it B / m inputs.
"""

import dataclasses
import functools
from typing import Any, Dict, Literal, Optional, Tuple

import jax
import jax.numpy as jnp

from genjax import errors
from genjax.config import ConfigError
from genjax.core import step as step_lib
from genjax.core.optim import make_optimizer
from genjax.core.parallel import example_keys
from genjax.core.state import TrainState
from genjax.families.base import Layout
from genjax.families.gan import losses
from genjax.families.gan.models import KERNEL_SIZES, SPECTRAL, Discriminator, Generator  # noqa: F401 - SPECTRAL re-exported

# Pictures are drawn from noise derived from this key at every evaluation, so successive grids
# show the same latents and progress is visible.
FIXED_NOISE_SEED = 1234


@dataclasses.dataclass(frozen=True)
class Config:
  """GAN hyper-parameters. Defaults: DCGAN (Radford et al. 2016) with the non-saturating loss."""

  arch: Literal["dcgan", "dcgan_mnist", "sngan_cnn", "sngan_resnet"] = "dcgan"
  latent_dim: int = 100
  latent_dist: Literal["uniform", "normal"] = "uniform"  # U[-1, 1] (DCGAN) or N(0, I)
  # Channels, coarse to fine (see models.Generator / models.Discriminator).
  g_widths: Tuple[int, ...] = (512, 256, 128, 64)
  d_widths: Tuple[int, ...] = (64, 128, 256, 512)
  kernel_size: Optional[int] = None  # the (transposed) convolutions'; None: the architecture's (models.KERNEL_SIZES)
  # Weight initialisation (models.weight_init): auto (N(0, 0.02) for the DCGANs, LeCun for SNGAN), normal, lecun, tflib.
  weight_init: Literal["auto", "normal", "lecun", "tflib"] = "auto"
  crop: Literal["tf", "top_left"] = "tf"  # the window an odd size keeps (models.Generator)
  # "sigmoid": the networks work on [0, 1] images as the references that end G in a sigmoid
  # (batches and samples stay in [-1, 1]; penalties are taken with respect to the [0, 1] images).
  pixels: Literal["tanh", "sigmoid"] = "tanh"
  g_norm: Literal["batch", "none"] = "batch"
  d_norm: Literal["batch", "none"] = "batch"
  spectral_norm: bool = False  # in the discriminator
  bn_momentum: float = 0.9
  loss: Literal["non_saturating", "hinge", "wasserstein"] = "non_saturating"
  gp_weight: float = 0.0  # WGAN-GP lambda (10 in Gulrajani et al.)
  r1_weight: float = 0.0  # R1 gamma; the penalty is gamma / 2 * ||grad D(x)||^2
  n_critic: int = 1  # discriminator updates per step
  critic_batches: Literal["same", "split"] = "same"
  g_steps: int = 1  # generator updates per step (PacGAN's DCGAN code makes 2)
  d_learning_rate: Optional[float] = None  # TTUR: the discriminator's rate (None: optim.learning_rate)
  conditional: bool = False  # conditional BatchNorm in G, projection D (dcgan_mnist: labels concatenated)
  # Labels of the generated images: "random" classes, or the real batch's ("real", DCGAN-tensorflow).
  fake_labels: Literal["random", "real"] = "random"
  reuse_noise: bool = False  # every update of a step draws the same z (DCGAN-tensorflow's one batch_z)
  pack: int = 1  # PacGAN packing degree m
  # "per_slot": slot k of every pack comes from its own generator call (own BatchNorm statistics),
  # as PacGAN's code runs G once per slot; "one": one call for the whole batch.
  pack_g_calls: Literal["per_slot", "one"] = "per_slot"

  def kernel(self) -> int:
    return self.kernel_size or KERNEL_SIZES[self.arch]


def _check(cfg: Config, info, exp, batch_splits: int = 1):
  if info.kind != "image":
    raise ConfigError(
      f"The gan family generates images; dataset {info.name!r} is {info.kind}. "
      f"Use --config.data.name=mnist (or fashion_mnist, cifar10, stacked_mnist)."
    )
  if cfg.gp_weight < 0 or cfg.r1_weight < 0:
    raise ConfigError("config.model.gp_weight and model.r1_weight must be >= 0.")
  if (cfg.gp_weight > 0 or cfg.r1_weight > 0) and cfg.d_norm == "batch":
    raise ConfigError(
      "Gradient penalties need each example's own input gradient, which BatchNorm in "
      "the discriminator mixes across the batch: set --config.model.d_norm=none."
    )
  if cfg.n_critic < 1 or cfg.g_steps < 1 or cfg.pack < 1:
    raise ConfigError("config.model.n_critic, model.g_steps and model.pack must be >= 1.")
  if cfg.conditional and not info.num_classes:
    raise ConfigError(f"model.conditional=True needs labelled data; {info.name!r} has no classes.")
  if cfg.conditional and cfg.pack > 1:
    raise ConfigError(
      "Packing (model.pack > 1) and class conditioning cannot be combined: a packed "
      "discriminator input has several labels. Set one of them off."
    )
  if cfg.arch == "sngan_resnet" and cfg.d_norm != "none":
    raise ConfigError("The sngan_resnet discriminator has no normalisation layers: set --config.model.d_norm=none.")
  if cfg.arch == "dcgan_mnist":
    if not cfg.conditional:
      raise ConfigError(
        "arch=dcgan_mnist is DCGAN-tensorflow's class-conditional MNIST network: set "
        "--config.model.conditional=true (with a labelled dataset)."
      )
    if len(cfg.g_widths) != 2 or len(cfg.d_widths) != 2 or info.shape[0] % 4 or info.shape[1] % 4:
      raise ConfigError(
        f"arch=dcgan_mnist takes g_widths=(dense width, channels) and d_widths=(df_dim, dense "
        f"width), e.g. (1024, 128) and (64, 1024), and images whose sides divide by 4; got "
        f"{cfg.g_widths}, {cfg.d_widths}, {info.shape}."
      )
  if cfg.fake_labels == "real" and not cfg.conditional:
    raise ConfigError(
      "model.fake_labels='real' conditions generated images on the batch's labels: it needs model.conditional=true."
    )
  if cfg.kernel_size is not None and cfg.kernel_size < 1:
    raise ConfigError(f"config.model.kernel_size = {cfg.kernel_size} must be positive (or None: the architecture's).")
  # Each piece of the batch that a step function sees (the whole global batch under jit, one
  # device's rows when the step is mapped over devices) is cut into n_critic parts ("split") and packs of `pack` images.
  per_critic = cfg.n_critic if cfg.critic_batches == "split" else 1
  n = batch_splits
  if exp.train.batch_size % (per_critic * cfg.pack * n):
    raise ConfigError(
      f"config.train.batch_size = {exp.train.batch_size} must be a multiple of "
      f"{'n_critic * ' if per_critic > 1 else ''}pack{' * devices' if n > 1 else ''} = {per_critic * cfg.pack * n} "
      f"(each discriminator update packs groups of {cfg.pack} from its share of each device's batch)."
    )


def pack_images(x_BxHxWxC: jax.Array, m: int) -> jax.Array:
  """PacGAN packing: groups of m consecutive examples concatenated along channels,
  f32[B,H,W,C] -> f32[B/m,H,W,C*m]."""
  if m == 1:
    return x_BxHxWxC
  B, H, W, C = x_BxHxWxC.shape
  x = x_BxHxWxC.reshape(B // m, m, H, W, C)
  return jnp.moveaxis(x, 1, 3).reshape(B // m, H, W, m * C)


@dataclasses.dataclass(frozen=True)
class GAN:
  """What the pure functions take as `model`: the config, the two networks and the number of
  classes they are conditioned on (None: unconditional)."""

  config: Config
  generator: Generator
  discriminator: Discriminator
  num_classes: Optional[int] = None

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    return self.generator.out_shape


def make_model(cfg: Config, info, dtype=jnp.float32) -> GAN:
  """The generator / discriminator pair of `cfg` for images shaped like `info`."""
  dtype = jnp.dtype(dtype)
  num_classes = info.num_classes if cfg.conditional else None
  g = Generator(
    arch=cfg.arch,
    out_shape=tuple(info.shape),
    widths=cfg.g_widths,
    kernel_size=cfg.kernel(),
    norm=cfg.g_norm == "batch",
    num_classes=num_classes,
    momentum=cfg.bn_momentum,
    init_scheme=cfg.weight_init,
    crop=cfg.crop,
    pixels=cfg.pixels,
    dtype=dtype,
  )
  d = Discriminator(
    arch=cfg.arch,
    widths=cfg.d_widths,
    kernel_size=cfg.kernel(),
    norm=cfg.d_norm == "batch",
    spectral_norm=cfg.spectral_norm,
    num_classes=num_classes,
    momentum=cfg.bn_momentum,
    init_scheme=cfg.weight_init,
    pixels=cfg.pixels,
    dtype=dtype,
  )
  return GAN(cfg, g, d, num_classes)


# ----------------------------------------------------------------------------------------------
# Noise and the two networks
# ----------------------------------------------------------------------------------------------


def draw_latent(cfg: Config, key) -> jax.Array:
  """One latent f32[Z]: U[-1, 1] (DCGAN) or N(0, I)."""
  if cfg.latent_dist == "uniform":
    return jax.random.uniform(key, (cfg.latent_dim,), minval=-1.0, maxval=1.0)
  return jax.random.normal(key, (cfg.latent_dim,))


def draw_inputs(model: GAN, keys_B, phase: int):
  """Per-example noise z f32[B,Z], fake labels i32[B] and interpolation weights f32[B] for update
  `phase` (the update's index within the step; with reuse_noise every update draws phase 0's)."""
  phase = 0 if model.config.reuse_noise else phase

  def one(key):
    kz, ky, ke = jax.random.split(jax.random.fold_in(key, phase), 3)
    y = jax.random.randint(ky, (), 0, model.num_classes) if model.num_classes else jnp.zeros((), jnp.int32)
    return draw_latent(model.config, kz), y, jax.random.uniform(ke, ())

  return jax.vmap(one)(keys_B)


def _labels(model: GAN, y):
  return y if model.num_classes else None


def generate(g_variables, z, y, model: GAN, train: bool):
  """Generator forward pass: (images f32[B,H,W,C], new generator collections). In train mode
  BatchNorm uses (and updates) batch statistics; otherwise its running averages."""
  if not train:
    return model.generator.apply(g_variables, z, _labels(model, y), train=False), {}
  mutable = [k for k in g_variables if k != "params"]
  if not mutable:
    return model.generator.apply(g_variables, z, _labels(model, y), train=True), {}
  return model.generator.apply(g_variables, z, _labels(model, y), train=True, mutable=mutable)


def generate_for_packs(g_variables, z, y, model: GAN, train: bool):
  """`generate` for a discriminator that packs groups of m consecutive images: with
  pack_g_calls="per_slot" slot k of every group (images k, k + m, ...) comes from its own
  generator call, each with its own batch statistics (PacGAN's code), the collections passed
  from one call to the next."""
  m = model.config.pack
  if m == 1 or model.config.pack_g_calls == "one" or not train:
    return generate(g_variables, z, y, model, train)
  parts, colls = [], {}
  for k in range(m):
    x_k, new = generate({**g_variables, **colls}, z[k::m], y[k::m], model, train)
    parts.append(x_k)
    colls = dict(new) or colls
  x = jnp.stack(parts, axis=1).reshape((-1,) + parts[0].shape[1:])  # [B/m, m, ...] -> slot order k, k + m, ...
  return x, colls


def discriminate(d_params, d_collections, x, y, model: GAN, train: bool = True, update_stats: bool = True):
  """Discriminator logits f32[B'] and its updated collections (BatchNorm statistics in train mode,
  power-iteration vectors when update_stats); pass the returned collections on or drop them."""
  mutable = list(d_collections) if (train or update_stats) else False
  out = model.discriminator.apply(
    {"params": d_params, **d_collections},
    x,
    _labels(model, y),
    train=train,
    update_stats=update_stats,
    mutable=mutable or False,
  )
  return out if mutable else (out, d_collections)


# ----------------------------------------------------------------------------------------------
# Losses: one per network
# ----------------------------------------------------------------------------------------------


def discriminator_loss(d_params, d_collections, g_variables, x_real, y_real, keys_B, phase: int, model: GAN):
  """The discriminator's loss on real images x_real f32[B,H,W,C] (labels y_real i32[B]) and on
  generated ones drawn from keys_B (plus the gradient penalties the config asks for):
  (loss, (metrics, new discriminator collections)). The generator runs in train mode (batch
  statistics) but its own statistics move only in generator updates, so they are dropped."""
  cfg = model.config
  z, y_fake, eps = draw_inputs(model, keys_B, phase)
  if cfg.fake_labels == "real":
    y_fake = y_real
  x_fake, _ = generate_for_packs(g_variables, z, y_fake, model, train=True)
  x_fake = jax.lax.stop_gradient(x_fake)
  scale = 2.0 if cfg.pixels == "sigmoid" else 1.0  # gradients with respect to [0, 1] images
  packed_real, packed_fake = pack_images(x_real, cfg.pack), pack_images(x_fake, cfg.pack)
  colls = d_collections
  real_B, colls = discriminate(d_params, colls, packed_real, y_real, model)
  fake_B, colls = discriminate(d_params, colls, packed_fake, y_fake, model)
  loss_B = losses.discriminator_loss(cfg.loss, real_B, fake_B)
  metrics = {"d_loss": jnp.mean(loss_B), "d_real_logit": jnp.mean(real_B), "d_fake_logit": jnp.mean(fake_B)}
  total = jnp.mean(loss_B)
  # Penalties: D has no BatchNorm here (checked in build), so its examples are independent.
  if cfg.gp_weight > 0:
    critic = lambda x: discriminate(d_params, colls, x, y_fake, model, update_stats=False)[0]
    gp = jnp.mean(losses.gradient_penalty(critic, packed_real, packed_fake, eps[:: cfg.pack], scale))
    total += cfg.gp_weight * gp
    metrics["gp"] = gp
  if cfg.r1_weight > 0:
    critic = lambda x: discriminate(d_params, colls, x, y_real, model, update_stats=False)[0]
    r1 = jnp.mean(losses.r1_penalty(critic, packed_real, scale))
    total += 0.5 * cfg.r1_weight * r1
    metrics["r1"] = r1
  return total, (metrics, colls)


def generator_loss(g_params, g_collections, d_variables, keys_B, phase: int, model: GAN, labels_B=None):
  """The generator's loss on images drawn from keys_B (of classes labels_B with fake_labels
  "real"): (loss, ({"g_loss": loss}, new generator collections)). The discriminator's statistics
  and power iteration do not move here."""
  cfg = model.config
  z, y_fake, _ = draw_inputs(model, keys_B, phase)
  if cfg.fake_labels == "real":
    y_fake = labels_B
  x_fake, g_colls = generate_for_packs({"params": g_params, **g_collections}, z, y_fake, model, train=True)
  d_colls = {k: v for k, v in d_variables.items() if k != "params"}
  fake_B, _ = discriminate(
    d_variables["params"], d_colls, pack_images(x_fake, cfg.pack), y_fake[:: cfg.pack], model, update_stats=False
  )
  value = jnp.mean(losses.generator_loss(cfg.loss, fake_B))
  return value, ({"g_loss": value}, g_colls)


def with_keys(batch, rng):
  """The batch with its per-example keys (drawn once per step, shared by every update)."""
  return {**batch, "keys": example_keys(rng, batch["image"].shape[0])}


def critic_inputs(batch, model: GAN, i: int):
  """The real images, labels and example keys that discriminator update i of a step sees: the
  whole batch ("same"), or examples i, i + n, i + 2n, ... ("split"). `batch` has "keys"."""
  cfg = model.config
  x_BxHxWxC = batch["image"].astype(jnp.float32)
  B = x_BxHxWxC.shape[0]
  y_B = batch["label"] if model.num_classes else jnp.zeros((B,), jnp.int32)
  keys_B = batch["keys"]
  if cfg.critic_batches == "split":
    part = slice(i, None, cfg.n_critic)
    return x_BxHxWxC[part], y_B[part], keys_B[part]
  return x_BxHxWxC, y_B, keys_B


def generator_inputs(batch, model: GAN):
  """The example keys and labels of a step's generator updates (B / n_critic with "split")."""
  keys_B = batch["keys"]
  labels_B = batch["label"] if model.num_classes else jnp.zeros(keys_B.shape[:1], jnp.int32)
  if model.config.critic_batches == "split":
    return keys_B[:: model.config.n_critic], labels_B[:: model.config.n_critic]
  return keys_B, labels_B


def _variables(state: TrainState, net: str, params=None) -> Dict[str, Any]:
  return {"params": state.params[net] if params is None else params, **step_lib.collections_of(state, net)}


def updates(model: GAN):
  """The step as the builder runs it (with `prepare=with_keys`): n_critic discriminator updates,
  then g_steps generator updates."""
  cfg = model.config

  def d_update(d_params, state, batch, rng, i):
    x, y, keys = critic_inputs(batch, model, i)
    return discriminator_loss(
      d_params, step_lib.collections_of(state, "d"), _variables(state, "g"), x, y, keys, i, model
    )

  def g_update(g_params, state, batch, rng, j):
    keys, labels = generator_inputs(batch, model)
    return generator_loss(
      g_params, step_lib.collections_of(state, "g"), _variables(state, "d"), keys, cfg.n_critic + j, model, labels
    )

  return (
    step_lib.Update(d_update, key="d", repeat=cfg.n_critic),
    step_lib.Update(g_update, key="g", repeat=cfg.g_steps),
  )


# ----------------------------------------------------------------------------------------------
# Evaluation, sampling, pictures
# ----------------------------------------------------------------------------------------------


def eval_sums(variables, batch, rng, model: GAN):
  """Held-out real images against fresh samples, both networks in inference mode: sums over the
  real examples of the discriminator's loss, its logits and how often it classifies each side
  correctly; (sums, count). `variables` are {"params": {"g", "d"}, collection: {"g", "d"}}."""
  cfg = model.config
  x = batch["image"].astype(jnp.float32)
  B = x.shape[0]
  mask_B = step_lib.batch_mask(batch, B)
  y_B = batch["label"] if model.num_classes else jnp.zeros((B,), jnp.int32)
  z, y_fake, _ = draw_inputs(model, example_keys(rng, B), 0)
  x_fake, _ = generate(_net(variables, "g"), z, y_fake, model, train=False)
  d = _net(variables, "d")
  d_params, colls = d.pop("params"), d
  # Packed groups count as real only if all their members are (padding comes last).
  mask_P = mask_B.reshape(-1, cfg.pack).min(axis=1)
  real_P, _ = discriminate(
    d_params, colls, pack_images(x, cfg.pack), y_B[:: cfg.pack], model, train=False, update_stats=False
  )
  fake_P, _ = discriminate(
    d_params, colls, pack_images(x_fake, cfg.pack), y_fake[:: cfg.pack], model, train=False, update_stats=False
  )
  loss_P = losses.discriminator_loss(cfg.loss, real_P, fake_P)
  threshold = 0.0
  values = {
    "d_loss": loss_P,
    "d_real_logit": real_P,
    "d_fake_logit": fake_P,
    "d_accuracy": 0.5 * ((real_P > threshold).astype(jnp.float32) + (fake_P < threshold)),
  }
  return step_lib.masked_sums(values, mask_P)


def _net(variables, net: str) -> Dict[str, Any]:
  """The Flax variables of network `net` out of the GAN's {"params": {"g", "d"}, coll: {"g", "d"}}."""
  return {name: coll[net] for name, coll in variables.items() if net in coll}


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """label: conditional models draw this class for every image (default: 0, 1, 2, ... in turn)."""

  label: Optional[int] = None


def sample_from(g_variables, z, y, model: GAN):
  """Images f32[n,H,W,C] in [-1, 1] from latents z f32[n,Z] (and labels y i32[n])."""
  return model.generator.apply(g_variables, z, _labels(model, y), train=False)


def sample(variables, rng, n: int, model: GAN, options: SampleOptions = SampleOptions()):
  """n images f32[n,H,W,C] in [-1, 1] from the GAN's variables (its generator's part: the EMA
  weights when the run kept them); labels cycle through the classes for conditional models
  unless options.label."""
  return sample_generator(_net(variables, "g"), rng, n, model, options)


def sample_generator(g_variables, rng, n: int, model: GAN, options: SampleOptions = SampleOptions()):
  """`sample` from the generator's own variables ({"params": g_params, ...})."""
  z = jax.vmap(functools.partial(draw_latent, model.config))(jax.random.split(rng, n))
  if options.label is not None:
    if not model.num_classes:
      raise errors.ConfigError("label is for class-conditional models (model.conditional=True).")
    if not 0 <= options.label < model.num_classes:
      raise errors.ConfigError(f"label must lie in [0, {model.num_classes}), got {options.label}.")
    y = jnp.full((n,), options.label, jnp.int32)
  else:
    y = jnp.arange(n, dtype=jnp.int32) % (model.num_classes or 1)
  return sample_from(g_variables, z, y, model)


def pictures(variables, batch, rng, model: GAN, n: int = 64):
  """Grids from FIXED noise (the same every evaluation, whatever `rng`; `batch` unused): n
  samples, one row per class for conditional models (same noise across rows), and latent
  interpolations (8 rows of 8), from the generator's part of `variables`."""
  del batch, rng
  g_variables = _net(variables, "g")
  cfg, num_classes = model.config, model.num_classes
  draw = functools.partial(draw_latent, cfg)
  key = jax.random.PRNGKey(FIXED_NOISE_SEED)
  k_samples, k_ends = jax.random.split(key)
  out = {"fixed_noise": sample_generator(g_variables, k_samples, n, model)}
  if num_classes:
    cols = 10
    z = jnp.tile(jax.vmap(draw)(jax.random.split(k_samples, cols)), (num_classes, 1))
    y = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), cols)
    out["class_rows"] = sample_from(g_variables, z, y, model)
  ends = jax.vmap(draw)(jax.random.split(k_ends, 16)).reshape(8, 2, cfg.latent_dim)
  t = jnp.linspace(0.0, 1.0, 8)[None, :, None]
  z = (1 - t) * ends[:, :1] + t * ends[:, 1:]  # [8 rows, 8 steps, Z]
  y = jnp.repeat(jnp.arange(8, dtype=jnp.int32) % (num_classes or 1), 8)
  out["interpolation"] = sample_from(g_variables, z.reshape(64, cfg.latent_dim), y, model)
  return out


# ----------------------------------------------------------------------------------------------
# The adapter the trainer uses
# ----------------------------------------------------------------------------------------------

CONFIGS = (Config,)
SAMPLE_OPTIONS = {"Config": SampleOptions}


def init(rng, model: GAN):
  """Fresh variables of both networks: {"params": {"g", "d"}, collection: {"g", "d"}}."""
  cfg = model.config
  H, W, C = model.image_shape
  kg, kd, kz = jax.random.split(rng, 3)
  n = 2 * cfg.pack
  z = jax.vmap(functools.partial(draw_latent, cfg))(jax.random.split(kz, n))
  y = jnp.zeros((n,), jnp.int32)
  g_vars = model.generator.init(kg, z, _labels(model, y), train=False)
  x = pack_images(jnp.zeros((n, H, W, C), jnp.float32), cfg.pack)
  d_vars = model.discriminator.init(kd, x, _labels(model, y[: x.shape[0]]), train=False, update_stats=False)
  extra = {}
  for net, variables in (("g", g_vars), ("d", d_vars)):
    extra = step_lib.merge_collections(extra, net, {k: v for k, v in variables.items() if k != "params"})
  return {"params": {"g": g_vars["params"], "d": d_vars["params"]}, **extra}


# The EMA follows the generator, with its BatchNorm statistics (as BigGAN's code does); evaluation
# pits the raw generator against the discriminator it trains with; one step's updates share
# per-example keys (with_keys).
EMA_OF = "g"
EVAL_EMA = False
prepare = with_keys


def optimizers(exp, model: GAN):
  """One optimizer per network, each with its own number of updates (n_critic, g_steps) and the
  discriminator's learning rate (TTUR) where set."""
  cfg = model.config
  return {
    "g": make_optimizer(exp.optim, exp.train.steps * cfg.g_steps),
    "d": make_optimizer(exp.optim, exp.train.steps * cfg.n_critic, learning_rate=cfg.d_learning_rate),
  }


def check(exp, info, batch_splits: int = 1):
  """The checks that need the experiment and the batch split (see _check)."""
  _check(exp.model, info, exp, batch_splits)


def layouts(model: GAN, n: int):
  """Labels of the grids: conditional samples in columns by class (labels cycle 0, 1, ...), the
  class rows one row per class, the interpolations eight steps from one end to the other."""
  K = model.num_classes
  classes = tuple(str(k) for k in range(K or 0))
  out = {
    "interpolation": Layout(
      ncols=8,
      rows=tuple(str(k % K) for k in range(8)) if K else (),
      cols=tuple(f"{t / 7:.2f}" for t in range(8)),
      caption="latent interpolations: columns from one end (0) to the other (1)"
      + ("; the class of each row at the left" if K else ""),
    )
  }
  if K:
    out["samples"] = Layout(ncols=K, cols=classes, caption="one class per column")
    out["class_rows"] = Layout(ncols=10, rows=classes, caption="one class per row, the same noise in every row")
  return out


def notes(exp, model: GAN) -> str:
  cfg = model.config
  return (
    f"{cfg.arch} G/D ({cfg.kernel()}x{cfg.kernel()} kernels), {cfg.loss} loss, n_critic={cfg.n_critic}, "
    f"g_steps={cfg.g_steps}"
    + (", spectral norm" if cfg.spectral_norm else "")
    + (f", pack={cfg.pack}" if cfg.pack > 1 else "")
  )
