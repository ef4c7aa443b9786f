"""Generative adversarial networks: DCGAN, SNGAN, WGAN-GP and PacGAN as one family.

`build(exp, info)` returns the pure functions the shared loop calls. One `train_step` makes
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
           picks the same examples whether the batch is whole (jit) or cut into device shares
           (pmap), so both modes compute the same step.

Each update draws its noise from `example_keys(rng, ...)` folded with the update's index, so one
device, jit and pmap give the same numbers. Under pmap (axis_name "data") gradients and metrics
are averaged over devices and BatchNorm averages its batch statistics with axis_name.

Generators are in train mode (batch statistics) while training, and sample with running
averages. The generator's running statistics are updated by the generator updates only.

Packing (PacGAN, Lin et al. 2018): with `pack = m` the discriminator sees groups of m
consecutive examples concatenated along channels, so a batch of B images gives it B / m inputs.
"""

import dataclasses
import types
from typing import Literal, Optional, Tuple

import jax
import jax.numpy as jnp

from genjax.config import ConfigError
from genjax.families.base import Family
from genjax.families.gan import losses
from genjax.families.gan.models import SPECTRAL, Discriminator, Generator
from genjax.train.optim import make_optimizer
from genjax.train.parallel import axis_name_for, example_keys, mean_over_data
from genjax.train.state import TrainState, apply_gradients

# Pictures are drawn from noise derived from this key at every evaluation, so successive grids
# show the same latents and progress is visible.
FIXED_NOISE_SEED = 1234


@dataclasses.dataclass(frozen=True)
class Config:
  """GAN hyper-parameters. Defaults: DCGAN (Radford et al. 2016) with the non-saturating loss."""

  arch: Literal["dcgan", "sngan_cnn", "sngan_resnet"] = "dcgan"
  latent_dim: int = 100
  latent_dist: Literal["uniform", "normal"] = "uniform"  # U[-1, 1] (DCGAN) or N(0, I)
  # Channels, coarse to fine (see models.Generator / models.Discriminator).
  g_widths: Tuple[int, ...] = (512, 256, 128, 64)
  d_widths: Tuple[int, ...] = (64, 128, 256, 512)
  kernel_size: int = 5  # dcgan convolutions
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
  conditional: bool = False  # conditional BatchNorm in G, projection discriminator
  pack: int = 1  # PacGAN packing degree m


def _check(cfg: Config, info, exp):
  if info.kind != "image":
    raise ConfigError(f"The gan family generates images; dataset {info.name!r} is {info.kind}. "
                      f"Use --config.data.name=mnist (or fashion_mnist, cifar10, stacked_mnist).")
  if cfg.gp_weight < 0 or cfg.r1_weight < 0:
    raise ConfigError("config.model.gp_weight and model.r1_weight must be >= 0.")
  if (cfg.gp_weight > 0 or cfg.r1_weight > 0) and cfg.d_norm == "batch":
    raise ConfigError("Gradient penalties need each example's own input gradient, which BatchNorm in "
                      "the discriminator mixes across the batch: set --config.model.d_norm=none.")
  if cfg.n_critic < 1 or cfg.g_steps < 1 or cfg.pack < 1:
    raise ConfigError("config.model.n_critic, model.g_steps and model.pack must be >= 1.")
  if cfg.conditional and not info.num_classes:
    raise ConfigError(f"model.conditional=True needs labelled data; {info.name!r} has no classes.")
  if cfg.conditional and cfg.pack > 1:
    raise ConfigError("Packing (model.pack > 1) and class conditioning cannot be combined: a packed "
                      "discriminator input has several labels. Set one of them off.")
  if cfg.arch == "sngan_resnet" and cfg.d_norm != "none":
    raise ConfigError("The sngan_resnet discriminator has no normalisation layers: set --config.model.d_norm=none.")
  per_critic = cfg.n_critic if cfg.critic_batches == "split" else 1
  n = exp.parallel.num_devices or 1
  if exp.train.batch_size % (per_critic * cfg.pack * n):
    raise ConfigError(
        f"config.train.batch_size = {exp.train.batch_size} must be a multiple of "
        f"{'n_critic * ' if per_critic > 1 else ''}pack{' * devices' if n > 1 else ''} = {per_critic * cfg.pack * n} "
        f"(each discriminator update packs groups of {cfg.pack} from its share of each device's batch).")


def pack_images(x_BxHxWxC: jax.Array, m: int) -> jax.Array:
  """PacGAN packing: groups of m consecutive examples concatenated along channels,
  f32[B,H,W,C] -> f32[B/m,H,W,C*m]."""
  if m == 1:
    return x_BxHxWxC
  B, H, W, C = x_BxHxWxC.shape
  x = x_BxHxWxC.reshape(B // m, m, H, W, C)
  return jnp.moveaxis(x, 1, 3).reshape(B // m, H, W, m * C)


def build(exp, info) -> Family:
  """The Family the loop trains; see `functions` for what each piece does."""
  f = functions(exp, info)
  return Family(init=f.init, train_step=f.train_step, eval_step=f.eval_step, sample=f.sample,
                output="image", pictures=f.pictures, notes=f.notes)


def functions(exp, info) -> types.SimpleNamespace:
  """All of the family's pure functions, including the single discriminator and generator
  updates (`critic_update(state, x, y, keys, phase)`, `generator_update(state, keys, phase)`)
  that `train_step` chains, so that tests can call them one at a time."""
  cfg: Config = exp.model
  _check(cfg, info, exp)
  axis_name = axis_name_for(exp.parallel.mode)
  dtype = jnp.dtype(exp.train.compute_dtype)
  num_classes = info.num_classes if cfg.conditional else None
  H, W, C = info.shape

  def networks(axis):
    g = Generator(arch=cfg.arch, out_shape=(H, W, C), widths=cfg.g_widths, kernel_size=cfg.kernel_size,
                  norm=cfg.g_norm == "batch", num_classes=num_classes, momentum=cfg.bn_momentum,
                  axis_name=axis, dtype=dtype)
    d = Discriminator(arch=cfg.arch, widths=cfg.d_widths, kernel_size=cfg.kernel_size,
                      norm=cfg.d_norm == "batch", spectral_norm=cfg.spectral_norm,
                      num_classes=num_classes, momentum=cfg.bn_momentum, axis_name=axis, dtype=dtype)
    return g, d

  # The training pair averages BatchNorm statistics over devices under pmap; the plain pair
  # (same parameters) is for init, sampling and pictures outside any mapped axis.
  G, D = networks(axis_name)
  G_plain, D_plain = networks(None)
  tx_g = make_optimizer(exp.optim, exp.train.steps * cfg.g_steps)
  tx_d = make_optimizer(exp.optim, exp.train.steps * cfg.n_critic, learning_rate=cfg.d_learning_rate)
  ema_decay = exp.optim.ema_decay

  def draw_latent(key):
    if cfg.latent_dist == "uniform":
      return jax.random.uniform(key, (cfg.latent_dim,), minval=-1.0, maxval=1.0)
    return jax.random.normal(key, (cfg.latent_dim,))

  def draw(keys_B, phase):
    """Per-example noise, fake labels and interpolation weights for update `phase`."""
    def one(key):
      kz, ky, ke = jax.random.split(jax.random.fold_in(key, phase), 3)
      y = jax.random.randint(ky, (), 0, num_classes) if num_classes else jnp.zeros((), jnp.int32)
      return draw_latent(kz), y, jax.random.uniform(ke, ())
    return jax.vmap(one)(keys_B)

  def labels(y):
    return y if num_classes else None

  def collections(state, net):
    """The non-param variables of network `net` ("g" or "d") held in state.extra."""
    return {name: coll[net] for name, coll in state.extra.items() if net in coll}

  def merge(extra, net, updates):
    extra = dict(extra)
    for name, value in updates.items():
      extra[name] = {**extra.get(name, {}), net: value}
    return extra

  # -------------------------------------------------------------------------------------------
  # init
  # -------------------------------------------------------------------------------------------

  def init(rng, example_batch) -> TrainState:
    del example_batch  # shapes come from DataInfo
    kg, kd, kz = jax.random.split(rng, 3)
    n = 2 * cfg.pack
    z = jax.vmap(draw_latent)(jax.random.split(kz, n))
    y = jnp.zeros((n,), jnp.int32)
    g_vars = G_plain.init(kg, z, labels(y), train=False)
    x = pack_images(jnp.zeros((n, H, W, C), jnp.float32), cfg.pack)
    d_vars = D_plain.init(kd, x, labels(y[: x.shape[0]]), train=False, update_stats=False)
    params = {"g": g_vars["params"], "d": d_vars["params"]}
    extra = {}
    for net, variables in (("g", g_vars), ("d", d_vars)):
      extra = merge(extra, net, {k: v for k, v in variables.items() if k != "params"})
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state={"g": tx_g.init(params["g"]), "d": tx_d.init(params["d"])},
                      ema_params={"g": jax.tree.map(jnp.copy, params["g"])} if ema_decay else None,
                      extra=extra)

  # -------------------------------------------------------------------------------------------
  # train_step
  # -------------------------------------------------------------------------------------------

  def generate(state, z, y, train):
    """Generator forward pass; returns (images, updated G collections)."""
    g_vars = {"params": state.params["g"], **collections(state, "g")}
    if not train:
      return G_plain.apply(g_vars, z, labels(y), train=False), {}
    mutable = [k for k in g_vars if k != "params"]
    if not mutable:
      return G.apply(g_vars, z, labels(y), train=True), {}
    return G.apply(g_vars, z, labels(y), train=True, mutable=mutable)

  def discriminate(d_params, colls, x, y, train=True, update_stats=True):
    """Discriminator logits and its updated collections (BatchNorm statistics in train mode,
    power-iteration vectors when update_stats); pass the returned collections on or drop them."""
    mutable = list(colls) if (train or update_stats) else False
    out = D.apply({"params": d_params, **colls}, x, labels(y), train=train, update_stats=update_stats,
                  mutable=mutable or False)
    return out if mutable else (out, colls)

  def critic_update(state, x_real, y_real, keys_B, phase):
    z, y_fake, eps = draw(keys_B, phase)
    x_fake, _ = generate(state, z, y_fake, train=True)  # G's statistics move only in G updates
    x_fake = jax.lax.stop_gradient(x_fake)
    packed_real, packed_fake = pack_images(x_real, cfg.pack), pack_images(x_fake, cfg.pack)

    def loss_fn(d_params):
      colls = collections(state, "d")
      real_B, colls = discriminate(d_params, colls, packed_real, y_real)
      fake_B, colls = discriminate(d_params, colls, packed_fake, y_fake)
      loss_B = losses.discriminator_loss(cfg.loss, real_B, fake_B)
      metrics = {"d_loss": jnp.mean(loss_B), "d_real_logit": jnp.mean(real_B),
                 "d_fake_logit": jnp.mean(fake_B)}
      total = jnp.mean(loss_B)
      # Penalties: D has no BatchNorm here (checked in build), so its examples are independent.
      if cfg.gp_weight > 0:
        critic = lambda x: discriminate(d_params, colls, x, y_fake, update_stats=False)[0]
        gp = jnp.mean(losses.gradient_penalty(critic, packed_real, packed_fake, eps[:: cfg.pack]))
        total += cfg.gp_weight * gp
        metrics["gp"] = gp
      if cfg.r1_weight > 0:
        critic = lambda x: discriminate(d_params, colls, x, y_real, update_stats=False)[0]
        r1 = jnp.mean(losses.r1_penalty(critic, packed_real))
        total += 0.5 * cfg.r1_weight * r1
        metrics["r1"] = r1
      return total, (colls, metrics)

    grads, (d_colls, metrics) = jax.grad(loss_fn, has_aux=True)(state.params["d"])
    grads, metrics = mean_over_data((grads, metrics), axis_name)
    state = apply_gradients(state, grads, tx_d, params_key="d", extra=merge(state.extra, "d", d_colls))
    return state, metrics

  def generator_update(state, keys_B, phase):
    z, y_fake, _ = draw(keys_B, phase)

    def loss_fn(g_params):
      x_fake, g_colls = generate(state.replace(params={**state.params, "g": g_params}), z, y_fake, train=True)
      # D's statistics and power iteration are dropped: only discriminator updates move them.
      fake_B, _ = discriminate(state.params["d"], collections(state, "d"), pack_images(x_fake, cfg.pack),
                               y_fake[:: cfg.pack], update_stats=False)
      return jnp.mean(losses.generator_loss(cfg.loss, fake_B)), g_colls

    (loss, g_colls), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["g"])
    grads, loss = mean_over_data((grads, loss), axis_name)
    state = apply_gradients(state, grads, tx_g, ema_decay=ema_decay, params_key="g",
                            extra=merge(state.extra, "g", g_colls))
    return state, {"g_loss": loss}

  def train_step(state, batch, rng):
    x_BxHxWxC = batch["image"].astype(jnp.float32)
    y_B = batch["label"] if num_classes else jnp.zeros(x_BxHxWxC.shape[:1], jnp.int32)
    B = x_BxHxWxC.shape[0]
    keys_B = example_keys(rng, B, axis_name)
    metrics = {}
    for i in range(cfg.n_critic):
      if cfg.critic_batches == "split":
        part = slice(i, None, cfg.n_critic)
        x_i, y_i, keys_i = x_BxHxWxC[part], y_B[part], keys_B[part]
      else:
        x_i, y_i, keys_i = x_BxHxWxC, y_B, keys_B
      state, metrics_i = critic_update(state, x_i, y_i, keys_i, phase=i)
      metrics = {k: metrics.get(k, 0.0) + v / cfg.n_critic for k, v in metrics_i.items()}
    keys_g = keys_B[:: cfg.n_critic] if cfg.critic_batches == "split" else keys_B
    for j in range(cfg.g_steps):
      state, metrics_j = generator_update(state, keys_g, phase=cfg.n_critic + j)
      metrics = {**metrics, "g_loss": metrics.get("g_loss", 0.0) + metrics_j["g_loss"] / cfg.g_steps}
    return state.replace(step=state.step + 1), metrics

  # -------------------------------------------------------------------------------------------
  # eval_step, sample, pictures
  # -------------------------------------------------------------------------------------------

  def eval_step(state, batch, rng):
    """Held-out real images against fresh samples, both networks in inference mode: the
    discriminator's loss, its mean logits and how often it classifies each side correctly."""
    x = batch["image"].astype(jnp.float32)
    mask_B = batch.get("mask", jnp.ones(x.shape[:1], jnp.float32))
    y_B = batch["label"] if num_classes else jnp.zeros(x.shape[:1], jnp.int32)
    B = x.shape[0]
    z, y_fake, _ = draw(example_keys(rng, B, axis_name), 0)
    x_fake, _ = generate(state, z, y_fake, train=False)
    d_params, colls = state.params["d"], collections(state, "d")
    # Packed groups count as real only if all their members are (padding comes last).
    mask_P = mask_B.reshape(-1, cfg.pack).min(axis=1)
    real_P, _ = discriminate(d_params, colls, pack_images(x, cfg.pack), y_B[:: cfg.pack], train=False, update_stats=False)
    fake_P, _ = discriminate(d_params, colls, pack_images(x_fake, cfg.pack), y_fake[:: cfg.pack],
                             train=False, update_stats=False)
    loss_P = losses.discriminator_loss(cfg.loss, real_P, fake_P)
    threshold = 0.0
    sums = {"d_loss": loss_P, "d_real_logit": real_P, "d_fake_logit": fake_P,
            "d_accuracy": 0.5 * ((real_P > threshold).astype(jnp.float32) + (fake_P < threshold))}
    sums = {k: jnp.sum(v * mask_P) for k, v in sums.items()}
    sums, count = mean_over_data((sums, jnp.sum(mask_P)), axis_name)
    return {k: v / jnp.maximum(count, 1.0) for k, v in sums.items()}

  def sample_with(variables, z, y):
    """Images from the generator variables {"params": {"g": ...}, collection: {"g": ...}}."""
    g_vars = {name: coll["g"] for name, coll in variables.items() if "g" in coll}
    return G_plain.apply(g_vars, z, labels(y), train=False)

  def sample(variables, rng, n):
    """n images f32[n,H,W,C] in [-1, 1]; labels cycle through the classes for conditional models.
    `variables` is state.variables() (EMA generator weights when present)."""
    z = jax.vmap(draw_latent)(jax.random.split(rng, n))
    y = jnp.arange(n, dtype=jnp.int32) % (num_classes or 1)
    return sample_with(variables, z, y)

  def pictures(state, batch, rng):
    """Grids from FIXED noise (the same every evaluation): samples, one row per class for
    conditional models (same noise across rows), and latent interpolations (8 rows of 8)."""
    del batch, rng
    variables = state.variables(ema=True)
    key = jax.random.PRNGKey(FIXED_NOISE_SEED)
    k_samples, k_ends = jax.random.split(key)
    n = exp.eval.num_samples
    out = {"fixed_noise": sample(variables, k_samples, n)}
    if num_classes:
      cols = 10
      z = jax.vmap(draw_latent)(jax.random.split(k_samples, cols))
      z = jnp.tile(z, (num_classes, 1))
      y = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), cols)
      out["class_rows"] = sample_with(variables, z, y)
    ends = jax.vmap(draw_latent)(jax.random.split(k_ends, 16)).reshape(8, 2, cfg.latent_dim)
    t = jnp.linspace(0.0, 1.0, 8)[None, :, None]
    z = (1 - t) * ends[:, :1] + t * ends[:, 1:]  # [8 rows, 8 steps, Z]
    y = jnp.repeat(jnp.arange(8, dtype=jnp.int32) % (num_classes or 1), 8)
    out["interpolation"] = sample_with(variables, z.reshape(64, cfg.latent_dim), y)
    return out

  notes = (f"{cfg.arch} G/D, {cfg.loss} loss, n_critic={cfg.n_critic}, g_steps={cfg.g_steps}"
           + (", spectral norm" if cfg.spectral_norm else "") + (f", pack={cfg.pack}" if cfg.pack > 1 else ""))
  return types.SimpleNamespace(
      init=init, train_step=train_step, eval_step=eval_step, sample=sample, pictures=pictures,
      notes=notes, critic_update=critic_update, generator_update=generator_update,
      generator=G_plain, discriminator=D_plain)
