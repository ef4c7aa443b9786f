"""GAN losses and penalties, as functions of discriminator logits (f32[B]) or of the discriminator.

  non_saturating   Goodfellow et al. 2014 / DCGAN: D minimises softplus(-D(x)) + softplus(D(G(z))),
                   G minimises softplus(-D(G(z))) (= -log sigmoid D(G(z))).
  hinge            Lim & Ye 2017, used by SNGAN (Miyato et al. 2018): D minimises
                   relu(1 - D(x)) + relu(1 + D(G(z))), G minimises -D(G(z)).
  wasserstein      WGAN (Arjovsky et al. 2017): D minimises D(G(z)) - D(x), G minimises -D(G(z));
                   pair it with the gradient penalty (Gulrajani et al. 2017).

The penalties take `critic(x) -> logits_B`, a function of the images alone (labels and
parameters closed over), and return per-example values whose mean the caller weights.
"""

import jax
import jax.numpy as jnp

from genjax import errors

LOSSES = ("non_saturating", "hinge", "wasserstein")


def discriminator_loss(kind: str, real_B: jax.Array, fake_B: jax.Array) -> jax.Array:
  """Per-example discriminator loss, f32[B], from logits on real and generated examples."""
  if kind == "non_saturating":
    return jax.nn.softplus(-real_B) + jax.nn.softplus(fake_B)
  if kind == "hinge":
    return jax.nn.relu(1.0 - real_B) + jax.nn.relu(1.0 + fake_B)
  if kind == "wasserstein":
    return fake_B - real_B
  raise errors.ConfigError(f"unknown GAN loss {kind!r}; expected one of {LOSSES}")


def generator_loss(kind: str, fake_B: jax.Array) -> jax.Array:
  """Per-example generator loss, f32[B], from the discriminator's logits on generated examples."""
  if kind == "non_saturating":
    return jax.nn.softplus(-fake_B)
  if kind in ("hinge", "wasserstein"):
    return -fake_B
  raise errors.ConfigError(f"unknown GAN loss {kind!r}; expected one of {LOSSES}")


def _input_grad_norms(critic, x_BxHxWxC: jax.Array, scale: float = 1.0) -> jax.Array:
  """||d critic(x)_b / d x_b||_2 for each example, times `scale` (2 when the critic reads x in
  [-1, 1] as (x + 1) / 2: the gradient with respect to the [0, 1] image). Taking the gradient of
  the sum gives every example's own gradient because the critic treats examples independently
  (no BatchNorm)."""
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_BxHxWxC)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1) + 1e-12)
  return norms if scale == 1.0 else scale * norms


def gradient_penalty(critic, real_BxHxWxC, fake_BxHxWxC, eps_B, scale: float = 1.0) -> jax.Array:
  """WGAN-GP (Gulrajani et al. 2017, Algorithm 1): (||grad D(x_hat)|| - 1)^2 at
  x_hat = eps * real + (1 - eps) * fake, eps ~ U[0, 1] per example. Returns f32[B]."""
  eps = eps_B.reshape((-1,) + (1,) * (real_BxHxWxC.ndim - 1))
  x_hat = eps * real_BxHxWxC + (1.0 - eps) * fake_BxHxWxC
  return jnp.square(_input_grad_norms(critic, x_hat, scale) - 1.0)


def r1_penalty(critic, real_BxHxWxC, scale: float = 1.0) -> jax.Array:
  """R1 (Mescheder et al. 2018): ||grad D(x)||^2 at real data; the caller weights it by gamma/2.
  Returns f32[B]."""
  return jnp.square(_input_grad_norms(critic, real_BxHxWxC, scale))
