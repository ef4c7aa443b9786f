"""GPT: a decoder-only transformer language model (Radford et al. 2019, GPT-2; layout of
karpathy/nanoGPT), trained by next-token prediction.

Shapes: B batch, L length (<= block size), D width, V vocabulary, T generated tokens.

  tokens i32[B,L] -> token embedding (+ learned position embedding, unless rotary) -> dropout
  -> num_layers x pre-LayerNorm Block (causal self-attention, GELU MLP)
  -> final LayerNorm -> logits f32[B,L,V] through the (tied) embedding matrix

Parameters are float32; activations run in exp.train.compute_dtype; the logits come out of a
matmul that accumulates in float32, and softmax and loss are float32. The loss is in nats per
token; bits per character (char tokenizer) or per byte (byte tokenizer) are logged beside it.
"""

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import flax.linen as nn

from genjax.config import ConfigError, Experiment
from genjax.data.info import DataInfo
from genjax.families.base import Family, eval_step_from_sums, exact_mean
from genjax.families.autoregressive import sampling
from genjax.nn.attention import init_cache
from genjax.nn.transformer import LAYER_NORM_EPS, Block, example_dropout
from genjax.train.optim import make_optimizer
from genjax.train.parallel import axis_name_for, example_keys, mean_over_data
from genjax.train.state import TrainState, apply_gradients


class GPT(nn.Module):
  """tokens i32[B,L] -> (logits f32[B,L,V], caches or None).

  positions_L defaults to 0..L-1; `caches` (one per layer, from `init_caches`) switches the
  attention to cached decoding; `dropout_keys_B` (one key per example) switches dropout on.
  """

  vocab_size: int
  block_size: int
  num_layers: int = 6
  num_heads: int = 6
  width: int = 384
  mlp_ratio: int = 4
  dropout: float = 0.0
  positions: str = "learned"
  tie_embeddings: bool = True
  use_bias: bool = False
  attention: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens_BxL, positions_L=None, caches=None, dropout_keys_B=None):
    L = tokens_BxL.shape[1]
    if positions_L is None:
      positions_L = jnp.arange(L)
    init = nn.initializers.normal(0.02)
    wte_VxD = self.param("wte", init, (self.vocab_size, self.width))
    x_BxLxD = jnp.take(wte_VxD, tokens_BxL, axis=0).astype(self.dtype)
    if self.positions == "learned":
      wpe_LxD = self.param("wpe", init, (self.block_size, self.width))
      x_BxLxD = x_BxLxD + jnp.take(wpe_LxD, positions_L, axis=0).astype(self.dtype)[None]
    x_BxLxD = example_dropout(x_BxLxD, self.dropout, dropout_keys_B, site=0)

    new_caches = []
    for i in range(self.num_layers):
      x_BxLxD, cache = Block(
          self.num_heads, mlp_ratio=self.mlp_ratio, dropout=self.dropout, causal=True,
          use_bias=self.use_bias, rotary=self.positions == "rotary", dtype=self.dtype,
          attention_implementation=self.attention,
          # GPT-2: residual projections start 1/sqrt(2 * layers) smaller, so the residual
          # stream's variance does not grow with depth.
          out_init_std=0.02 / math.sqrt(2 * self.num_layers), name=f"block_{i}",
      )(x_BxLxD, positions_L, None if caches is None else caches[i], dropout_keys_B, site=1 + 2 * i)
      new_caches.append(cache)

    x_BxLxD = nn.LayerNorm(LAYER_NORM_EPS, use_bias=self.use_bias, dtype=self.dtype, name="ln_f")(x_BxLxD)
    head_VxD = wte_VxD if self.tie_embeddings else self.param("head", init, (self.vocab_size, self.width))
    logits_BxLxV = jnp.einsum("bld,vd->blv", x_BxLxD, head_VxD.astype(self.dtype),
                              preferred_element_type=jnp.float32)
    return logits_BxLxV, (None if caches is None else new_caches)

  def init_caches(self, batch: int, capacity: int) -> list:
    """Empty key/value caches, one per layer, for `capacity` positions."""
    head_dim = self.width // self.num_heads
    return [init_cache(batch, capacity, self.num_heads, head_dim, self.dtype) for _ in range(self.num_layers)]


def decay_mask(params, decay_embeddings: bool = True):
  """Which parameters AdamW decays: the matmul weights, and (as nanoGPT does: its
  configure_optimizers decays every tensor of rank >= 2) the token and position embeddings;
  never biases or LayerNorm scales."""
  # By name, not by rank: the attention's qkv bias is f32[3,N,H], yet a bias.
  decayed = ("kernel", "head") + (("wte", "wpe") if decay_embeddings else ())
  decays = lambda path, p: getattr(path[-1], "key", None) in decayed
  return jax.tree_util.tree_map_with_path(decays, params)


def flops_per_token(model: GPT, num_params: int, context: int) -> float:
  """Training FLOPs per token (forward + backward), as in PaLM appendix B / nanoGPT's
  estimate_mfu: 6 * parameters + 12 * layers * width * context (attention scores)."""
  return 6 * num_params + 12 * model.num_layers * model.width * context


def build(exp: Experiment, info: DataInfo) -> Family:
  config = exp.model
  if info.kind != "text" or not info.vocab_size:
    raise ConfigError(f"the GPT models text, but data {info.name!r} is {info.kind!r} "
                      f"(vocab_size {info.vocab_size}): use a text dataset such as tiny_shakespeare, "
                      f"or --config.model.kind=pixelcnn for images.")
  vocab_size = config.vocab_size or info.vocab_size
  if vocab_size < info.vocab_size:
    raise ConfigError(f"config.model.vocab_size = {vocab_size} is smaller than the tokenizer's "
                      f"vocabulary {info.vocab_size}: leave it None or make it >= {info.vocab_size}.")
  if config.width % config.num_heads:
    raise ConfigError(f"config.model.width = {config.width} must be divisible by "
                      f"config.model.num_heads = {config.num_heads}.")
  if config.positions == "rotary" and (config.width // config.num_heads) % 2:
    raise ConfigError("rotary positions need an even head width (model.width / model.num_heads).")
  block_size = exp.data.block_size
  dtype = jnp.dtype(exp.train.compute_dtype)
  model = GPT(vocab_size=vocab_size, block_size=block_size, num_layers=config.num_layers,
              num_heads=config.num_heads, width=config.width, mlp_ratio=config.mlp_ratio,
              dropout=config.dropout, positions=config.positions,
              tie_embeddings=config.tie_embeddings, use_bias=config.use_bias,
              attention=config.attention, dtype=dtype)
  axis_name = axis_name_for(exp.parallel.mode)
  tx = make_optimizer(exp.optim, exp.train.steps,
                      decay_mask=lambda params: decay_mask(params, config.decay_embeddings))
  ema_decay = exp.optim.ema_decay
  bits_name = "bits_per_char" if exp.data.tokenizer == "char" else "bits_per_byte"

  def token_nll(params, tokens_BxLp1, dropout_keys_B=None):
    """f32[B,L]: -log p(token t+1 | tokens <= t) in nats."""
    inputs_BxL, targets_BxL = tokens_BxLp1[:, :-1], tokens_BxLp1[:, 1:]
    logits_BxLxV, _ = model.apply({"params": params}, inputs_BxL, dropout_keys_B=dropout_keys_B)
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)

  def metrics_of(loss):
    return {"loss": loss, bits_name: loss / math.log(2.0)}

  def init(rng, example_batch):
    tokens_1xL = jnp.asarray(example_batch["tokens"])[:1, :-1]
    params = model.init(rng, tokens_1xL)["params"]
    return TrainState.create(params, tx, ema=ema_decay is not None)

  def train_step(state, batch, rng):
    tokens_BxLp1 = batch["tokens"]
    keys_B = example_keys(rng, tokens_BxLp1.shape[0], axis_name) if config.dropout > 0 else None
    loss, grads = jax.value_and_grad(lambda p: token_nll(p, tokens_BxLp1, keys_B).mean())(state.params)
    grads, loss = mean_over_data((grads, loss), axis_name)
    state = apply_gradients(state, grads, tx, ema_decay=ema_decay, step=state.step + 1)
    return state, metrics_of(loss)

  def nll_sums(state, batch):
    """(sum of token NLLs over real examples, number of their tokens)."""
    nll_BxL = token_nll(state.variables()["params"], batch["tokens"])
    mask_B = batch.get("mask", jnp.ones(nll_BxL.shape[0], jnp.float32))
    return jnp.sum(nll_BxL.sum(-1) * mask_B), jnp.sum(mask_B) * nll_BxL.shape[1]

  eval_step = eval_step_from_sums(nll_sums, metrics_of, axis_name)
  jitted_sums = jax.jit(nll_sums)

  def evaluate(state, batches, rng):
    loss, count = exact_mean(jitted_sums, state, batches)
    return {"loss": loss, bits_name: loss / math.log(2.0), "tokens": count}

  @jax.jit
  def _generate(params, rng, prompt_BxP, temperature, top_k, top_p, length_T):
    # length_T: an empty i32[T] whose length is the number of new tokens (a static shape).
    length = length_T.shape[0]
    step_fn = lambda tokens, positions, caches: model.apply({"params": params}, tokens, positions, caches)
    # The cache always spans the whole block (or more, for rotary positions past it): every
    # step attends over the same number of slots, so a token costs the same whatever the
    # length asked for or already generated.
    capacity = max(block_size, prompt_BxP.shape[1] + length)
    caches = model.init_caches(prompt_BxP.shape[0], capacity)
    return sampling.generate_tokens(step_fn, caches, rng, prompt_BxP, length, temperature, top_k, top_p)

  default_start = _start_token(info)

  def sample(variables, rng, n, prompt=None, length=None, temperature=1.0, top_k=None, top_p=None):
    """i32[n, P + length]: n continuations of `prompt` (a 1-D int array; default: one
    newline token), each returned with the prompt in front. length defaults to
    exp.eval.sample_length, cut to what fits in the block. temperature <= 0 is greedy;
    top_k None/0 and top_p None/1.0 switch those filters off."""
    prompt_P = np.asarray([default_start] if prompt is None else prompt, np.int32)
    if prompt_P.ndim != 1 or prompt_P.size == 0:
      raise ValueError(f"prompt must be a non-empty 1-D array of token ids, got shape {prompt_P.shape}.")
    if prompt_P.min() < 0 or prompt_P.max() >= info.vocab_size:
      raise ValueError(f"prompt tokens must lie in [0, {info.vocab_size}); got {prompt_P.min()}..{prompt_P.max()}.")
    P = prompt_P.size
    if length is None:
      length = max(1, min(exp.eval.sample_length, block_size - P))
    if model.positions == "learned" and P + length > block_size:
      raise ValueError(f"prompt ({P} tokens) + length ({length}) exceeds the block size {block_size} "
                       f"that the learned positions cover: ask for at most {max(block_size - P, 0)} "
                       f"new tokens, or shorten the prompt.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
      raise ValueError(f"top_p must lie in (0, 1], got {top_p}.")
    if top_k is not None and top_k < 0:
      raise ValueError(f"top_k must be >= 0 (0: off), got {top_k}.")
    prompt_nxP = jnp.broadcast_to(jnp.asarray(prompt_P), (n, P))
    return _generate(variables["params"], rng, prompt_nxP, jnp.float32(temperature),
                     jnp.int32(top_k or 0), jnp.float32(1.0 if top_p is None else top_p),
                     jnp.zeros((length,), jnp.int32))

  num_params = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(
      jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, block_size), jnp.int32)))))
  notes = (f"GPT: {num_params / 1e6:.2f}M parameters (vocabulary {vocab_size}); training FLOPs per "
           f"token ~ {flops_per_token(model, num_params, block_size):.4g} (6N + 12*layers*width*block)")
  return Family(init=init, train_step=train_step, eval_step=eval_step, sample=sample,
                output="text", evaluate=evaluate, notes=notes)


def _start_token(info: DataInfo) -> int:
  """The newline token when the tokenizer has one (nanoGPT starts samples from it), else 0."""
  encode = getattr(info.tokenizer, "encode", None)
  if encode is not None:
    try:
      ids = list(encode("\n"))
      if len(ids) == 1:
        return int(ids[0])
    except (KeyError, ValueError, TypeError):
      pass
  return 0
