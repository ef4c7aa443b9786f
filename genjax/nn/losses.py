"""Elementwise likelihood terms shared by the families, written for XLA:CPU as well as GPU/TPU."""

import jax
import jax.numpy as jnp


@jax.custom_jvp
def bernoulli_nll(logits, targets):
  """-log Bernoulli(targets; sigmoid(logits)) per element, for targets in [0, 1]:
  relu(l) - t*l + log1p(exp(-|l|)).

  Equal, element for element, to optax.sigmoid_binary_cross_entropy for targets in {0, 1} (the
  same softplus terms, evaluated once instead of once per log-sigmoid), with the derivative
  sigmoid(l) - t in closed form: on a CPU the likelihood of a 784-pixel image then costs two
  fused loops instead of the two logaddexp chains and their derivatives (a quarter of the small
  MLP VAE's step before)."""
  return jnp.maximum(logits, 0.0) - targets * logits + jnp.log1p(jnp.exp(-jnp.abs(logits)))


@bernoulli_nll.defjvp
def _bernoulli_nll_jvp(primals, tangents):
  logits, targets = primals
  dlogits, dtargets = tangents
  out = bernoulli_nll(logits, targets)
  return out, (jax.nn.sigmoid(logits) - targets) * dlogits - logits * dtargets
