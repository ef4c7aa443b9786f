"""GPT: a decoder-only transformer language model (Radford et al. 2019, GPT-2; layout of
karpathy/nanoGPT), trained by next-token prediction; with the options, a Llama (Touvron et al.
2023; Llama 3, Dubey et al. 2024).

Shapes: B batch, L length (<= block size), D width, V vocabulary, T generated tokens.

  tokens i32[B,L] -> token embedding (+ learned position embedding, unless rotary) -> dropout
  -> num_layers x pre-norm Block (causal self-attention, MLP)
  -> final norm -> logits f32[B,L,V] through the (tied) embedding matrix, or a separate head

GPT-2 (the defaults): LayerNorm, GELU MLP of 4 x width, learned positions, multi-head attention.
Llama: norm="rmsnorm", mlp="swiglu" (hidden width mlp_hidden, or Llama's two-thirds rule),
positions="rotary" with rope_theta, use_bias=False, num_kv_heads < num_heads (grouped-query
attention; Llama 2 70B, Llama 3), tie_embeddings as the model has it (Llama 3.2 1B and 3B tie,
the larger ones do not). Also: mlp="relu2" and qk_norm (modded-nanogpt; QK-norm as Qwen3, OLMo 2).
experiments/llama_1b.py is Llama 3.2 1B's architecture.

Parameters are float32; activations run in exp.train.compute_dtype; the logits come out of a
matmul that accumulates in float32, and softmax and loss are float32. The loss is in nats per
token; bits per character (char tokenizer), per byte (byte tokenizer) or per token (bpe) are logged beside it.
"""

import dataclasses
import functools
import math
from typing import Any, Dict, Literal, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import errors
from genjax.config import ConfigError, Experiment
from genjax.core import step as step_lib
from genjax.core.optim import make_optimizer
from genjax.core.parallel import example_keys
from genjax.data.info import DataInfo
from genjax.families import base
from genjax.families.autoregressive import sampling
from genjax.nn.attention import init_cache
from genjax.nn.transformer import Block, example_dropout, make_norm


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  """GPT hyper-parameters; the defaults are nanoGPT's shakespeare_char model."""

  num_layers: int = 6
  num_heads: int = 6
  width: int = 384
  mlp_ratio: int = 4
  dropout: float = 0.0
  positions: Literal["learned", "rotary"] = "learned"
  tie_embeddings: bool = True
  use_bias: bool = False  # biases in Dense and LayerNorm (GPT-2: True; nanoGPT default: False)
  # The embedding table's rows; None: the tokenizer's vocabulary. Larger values (GPT-2's 50304)
  # keep the parameter count and FLOPs of a model with a bigger vocabulary; the extra rows are
  # never targets, so they only cost compute.
  vocab_size: Optional[int] = None
  attention: Literal["auto", "xla", "cudnn"] = "auto"
  # AdamW's weight decay also shrinks the token / position embeddings, as in nanoGPT.
  decay_embeddings: bool = True
  # Llama-style options (genjax.nn.transformer, genjax.nn.attention); the defaults are GPT-2's.
  norm: Literal["layernorm", "rmsnorm"] = "layernorm"
  mlp: Literal["gelu", "swiglu", "relu2"] = "gelu"
  # The MLP's hidden width; None: mlp_ratio * width, for SwiGLU two thirds of it rounded up to a
  # multiple of 256 (Llama's rule, genjax.nn.transformer.mlp_hidden_size).
  mlp_hidden: Optional[int] = None
  num_kv_heads: Optional[int] = None  # key/value heads (grouped-query attention); None: num_heads
  qk_norm: bool = False  # RMSNorm on each head's queries and keys before the rotation
  rope_theta: float = 10000.0  # the rotary base: Llama 2 10000, Llama 3 500000


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
  norm: str = "layernorm"
  mlp: str = "gelu"
  mlp_hidden: Optional[int] = None
  num_kv_heads: Optional[int] = None
  qk_norm: bool = False
  rope_theta: float = 10000.0
  # What the tokens are, for samplers and metric names (no parameters): the tokenizer's
  # vocabulary, the tokens a sampler draws among (None: all vocab_size rows; the embedding may
  # have padding rows past it, e.g. GPT-2's 50304), and the unit of bits_per_<unit>.
  tokens: Optional[int] = None
  token_unit: str = "token"

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
        self.num_heads,
        mlp_ratio=self.mlp_ratio,
        dropout=self.dropout,
        causal=True,
        use_bias=self.use_bias,
        rotary=self.positions == "rotary",
        dtype=self.dtype,
        attention_implementation=self.attention,
        # GPT-2: residual projections start 1/sqrt(2 * layers) smaller, so the residual
        # stream's variance does not grow with depth.
        out_init_std=0.02 / math.sqrt(2 * self.num_layers),
        norm=self.norm,
        mlp_kind=self.mlp,
        mlp_hidden=self.mlp_hidden,
        num_kv_heads=self.num_kv_heads,
        qk_norm=self.qk_norm,
        rope_base=self.rope_theta,
        name=f"block_{i}",
      )(x_BxLxD, positions_L, None if caches is None else caches[i], dropout_keys_B, site=1 + 2 * i)
      new_caches.append(cache)

    x_BxLxD = make_norm(self.norm, self.use_bias, self.dtype, "ln_f")(x_BxLxD)
    head_VxD = wte_VxD if self.tie_embeddings else self.param("head", init, (self.vocab_size, self.width))
    logits_BxLxV = jnp.einsum("bld,vd->blv", x_BxLxD, head_VxD.astype(self.dtype), preferred_element_type=jnp.float32)
    return logits_BxLxV, (None if caches is None else new_caches)

  def init_caches(self, batch: int, capacity: int) -> list:
    """Empty key/value caches, one per layer, for `capacity` positions (of the num_kv_heads
    key/value heads: grouped-query attention caches num_heads / num_kv_heads times less)."""
    head_dim, kv_heads = self.width // self.num_heads, self.num_kv_heads or self.num_heads
    return [init_cache(batch, capacity, kv_heads, head_dim, self.dtype) for _ in range(self.num_layers)]


# Megatron's split of a transformer layer over the "model" axis: attention heads (the key/value
# heads of grouped-query attention too), and the MLP's hidden units: the input projections (fc,
# SwiGLU's gate and up) on their output dimension, the down projection on its input dimension
# (genjax.core.sharding maps the logical names to mesh axes).
PARTITION_RULES = (
  (r"attn/qkv/kernel$", ("embed", None, "heads", None)),
  (r"attn/qkv/bias$", (None, "heads", None)),
  (r"attn/q/kernel$", ("embed", "heads", None)),
  (r"attn/q/bias$", ("heads", None)),
  (r"attn/kv/kernel$", ("embed", None, "heads", None)),
  (r"attn/kv/bias$", (None, "heads", None)),
  (r"attn/out/kernel$", ("heads", None, "embed")),
  (r"mlp/(fc|gate|up)/kernel$", ("embed", "mlp")),
  (r"mlp/(fc|gate|up)/bias$", ("mlp",)),
  (r"mlp/proj/kernel$", ("mlp", "embed")),
  (r"(wte|wpe|head)$", ("vocab", "embed")),
)

# Which axes of a block's kernels are a matrix's input (reduction) and output axes, for Muon
# (genjax.core.optim): the fused qkv kernel f[D,3,N,H] is three D x (N*H) matrices, q, k and v
# orthogonalised apart (its axis 1 a batch axis), as modded-nanogpt splits its fused QKV
# gradient (KellerJordan/modded-nanogpt, train_gpt.py, class Muon); so is grouped-query
# attention's kv f[D,2,K,H]; out f[N,H,D] is one (N*H) x D matrix.
MATRIX_AXES = {
  "qkv": ((0,), (2, 3)),
  "q": ((0,), (1, 2)),
  "kv": ((0,), (2, 3)),
  "out": ((0, 1), (2,)),
  "fc": ((0,), (1,)),
  "gate": ((0,), (1,)),
  "up": ((0,), (1,)),
  "proj": ((0,), (1,)),
}


def matrix_axes(path, shape):
  """(reduction axes, output axes) of a hidden matrix (a kernel inside a block: the attention's
  and the MLP's), or None (embeddings, head, norm scales, biases): which parameters Muon
  orthogonalises and which AdamW updates, as modded-nanogpt splits them (train_gpt.py: the
  blocks' parameters of rank >= 2 to Muon; embeddings, head and scalars to Adam)."""
  del shape  # the name says it all: every block kernel of one name has the layout above
  names = [str(getattr(k, "key", k)) for k in path]
  if len(names) < 3 or not names[0].startswith("block_") or names[-1] != "kernel":
    return None
  return MATRIX_AXES.get(names[-2])


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


def check_config(cfg: GPTConfig, info: DataInfo) -> None:
  """Raises ConfigError, before anything compiles, for settings that cannot work with the data."""
  if info.kind != "text" or not info.vocab_size:
    raise ConfigError(
      f"the GPT models text, but data {info.name!r} is {info.kind!r} "
      f"(vocab_size {info.vocab_size}): use a text dataset such as tiny_shakespeare, "
      f"or a PixelCNNConfig model for binary images."
    )
  if cfg.num_layers <= 0:
    raise ConfigError(f"config.model.num_layers = {cfg.num_layers} must be positive.")
  if not 0.0 <= cfg.dropout < 1.0:
    raise ConfigError(f"config.model.dropout = {cfg.dropout} must lie in [0, 1).")
  vocab_size = cfg.vocab_size or info.vocab_size
  if vocab_size < info.vocab_size:
    raise ConfigError(
      f"config.model.vocab_size = {vocab_size} is smaller than the tokenizer's "
      f"vocabulary {info.vocab_size}: leave it None or make it >= {info.vocab_size}."
    )
  if cfg.width % cfg.num_heads:
    raise ConfigError(
      f"config.model.width = {cfg.width} must be divisible by config.model.num_heads = {cfg.num_heads}."
    )
  if cfg.positions == "rotary" and (cfg.width // cfg.num_heads) % 2:
    raise ConfigError("rotary positions need an even head width (model.width / model.num_heads).")
  _check_llama_options(cfg)


def _check_llama_options(cfg: GPTConfig) -> None:
  kv = cfg.num_kv_heads
  if kv is not None and (kv < 1 or cfg.num_heads % kv):
    divisors = [d for d in range(1, cfg.num_heads + 1) if cfg.num_heads % d == 0]
    raise ConfigError(
      f"config.model.num_kv_heads = {kv} must divide config.model.num_heads = {cfg.num_heads}: each "
      f"key/value head serves num_heads / num_kv_heads query heads (grouped-query attention). Use one "
      f"of {', '.join(map(str, divisors))} ({cfg.num_heads}: multi-head, 1: multi-query attention), or "
      "None for num_heads."
    )
  if cfg.mlp_hidden is not None and cfg.mlp_hidden < 1:
    raise ConfigError(
      f"config.model.mlp_hidden = {cfg.mlp_hidden} must be a positive width, or None for the rule of "
      "config.model.mlp (mlp_ratio * width; SwiGLU: two thirds of it, rounded up to a multiple of 256)."
    )
  if cfg.rope_theta <= 0:
    raise ConfigError(f"config.model.rope_theta = {cfg.rope_theta} must be > 0 (Llama 2: 10000, Llama 3: 500000).")


def make_model(cfg: GPTConfig, info: DataInfo, dtype=jnp.float32, block_size: Optional[int] = None) -> GPT:
  """The GPT of `cfg` for a vocabulary of info.vocab_size tokens (or cfg.vocab_size rows) and
  contexts of `block_size` tokens (default: the data's, info.shape[0])."""
  check_config(cfg, info)
  kind = info.tokenizer.to_dict().get("kind") if info.tokenizer is not None else None
  return GPT(
    tokens=info.vocab_size,
    token_unit={"char": "char", "byte": "byte"}.get(kind, "token"),
    vocab_size=cfg.vocab_size or info.vocab_size,
    block_size=block_size or info.shape[0],
    num_layers=cfg.num_layers,
    num_heads=cfg.num_heads,
    width=cfg.width,
    mlp_ratio=cfg.mlp_ratio,
    dropout=cfg.dropout,
    positions=cfg.positions,
    tie_embeddings=cfg.tie_embeddings,
    use_bias=cfg.use_bias,
    attention=cfg.attention,
    dtype=jnp.dtype(dtype),
    norm=cfg.norm,
    mlp=cfg.mlp,
    mlp_hidden=cfg.mlp_hidden,
    num_kv_heads=cfg.num_kv_heads,
    qk_norm=cfg.qk_norm,
    rope_theta=float(cfg.rope_theta),
  )


# ----------------------------------------------------------------------------------------------
# Pure functions: loss, evaluation, sampling (call them under your own jax.jit)
# ----------------------------------------------------------------------------------------------


def token_nll(params, tokens_BxLp1, model: GPT, dropout_keys_B=None):
  """f32[B,L]: -log p(token t+1 | tokens <= t) in nats."""
  inputs_BxL, targets_BxL = tokens_BxLp1[:, :-1], tokens_BxLp1[:, 1:]
  logits_BxLxV, _ = model.apply({"params": params}, inputs_BxL, dropout_keys_B=dropout_keys_B)
  return optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)


def loss(params, batch, rng, model: GPT):
  """Next-token cross-entropy in nats per token over batch["tokens"] i32[B, L+1], with dropout
  (per-example masks from rng) when the model has any: (loss, {"loss": loss})."""
  tokens_BxLp1 = batch["tokens"]
  keys_B = example_keys(rng, tokens_BxLp1.shape[0]) if model.dropout > 0 else None
  value = token_nll(params, tokens_BxLp1, model, keys_B).mean()
  return value, {"loss": value}


def eval_sums(variables, batch, rng, model: GPT):
  """({"loss": sum of token NLLs over the real examples}, number of their tokens)."""
  del rng
  nll_BxL = token_nll(variables["params"], batch["tokens"], model)
  mask_B = step_lib.batch_mask(batch, nll_BxL.shape[0])
  return {"loss": jnp.sum(nll_BxL.sum(-1) * mask_B)}, jnp.sum(mask_B) * nll_BxL.shape[1]


@functools.partial(jax.jit, static_argnames=("model", "length", "vocab_size"))
def generate(
  params,
  rng,
  prompt_BxP,
  model: GPT,
  length: int,
  temperature=1.0,
  top_k=0,
  top_p=1.0,
  vocab_size: Optional[int] = None,
):
  """i32[B, P + length]: the prompt followed by `length` sampled tokens (KV-cached, one compiled
  call). temperature <= 0 is greedy; top_k 0 and top_p 1 switch those filters off; the three are
  traced, so changing them does not recompile. Only the first `vocab_size` tokens are drawn (the
  tokenizer's, model.tokens, by default; the embedding table may have padding rows past them,
  e.g. GPT-2's 50304).

  With learned positions a sequence longer than the block goes on as nanoGPT's `generate` does:
  each token past the block is drawn from the last block_size tokens (an uncached pass over the
  window; a prompt longer than the block is cropped the same way). Rotary positions have no such
  limit: their cache grows past the block and every token attends to the whole sequence.
  """
  limit = vocab_size or model.tokens or model.vocab_size
  temperature, top_k, top_p = jnp.float32(temperature), jnp.int32(top_k), jnp.float32(top_p)
  B, P = prompt_BxP.shape
  block = model.block_size
  windowed = model.positions == "learned" and P + length > block
  context_BxC = prompt_BxP[:, -block:] if windowed else prompt_BxP
  C = context_BxC.shape[1]
  cached = min(length, block - C) if windowed else length  # tokens drawn with the KV cache

  def step_fn(tokens, positions, caches):
    logits, caches = model.apply({"params": params}, tokens, positions, caches)
    return logits[..., :limit], caches

  # The cache always spans the whole block (or more, for rotary positions past it): every
  # step attends over the same number of slots, so a token costs the same whatever the
  # length asked for or already generated.
  caches = model.init_caches(B, max(block, C + cached))
  tokens_BxT = sampling.generate_tokens(step_fn, caches, rng, context_BxC, cached, temperature, top_k, top_p)
  if not windowed:
    return tokens_BxT
  window_fn = lambda window_BxW: model.apply({"params": params}, window_BxW)[0][..., :limit]
  rest_BxR = sampling.continue_in_window(
    window_fn, rng, tokens_BxT[:, -block:], length - cached, cached, temperature, top_k, top_p
  )
  return jnp.concatenate([prompt_BxP, tokens_BxT[:, C:], rest_BxR], axis=1)


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """prompt: the text to continue (default: a newline; `resolve_options` turns it into the token
  ids that `sample` takes, a tuple of ints); length: new tokens (default: the experiment's
  eval.sample_length, cut to the block); temperature <= 0 is greedy; top_k (0 or None: off) and
  top_p (None or 1: off) filter the distribution before sampling."""

  prompt: Optional[str] = None
  length: Optional[int] = None
  temperature: float = 1.0
  top_k: Optional[int] = None
  top_p: Optional[float] = None


def sample(variables, rng, n: int, model: GPT, options: SampleOptions = SampleOptions()):
  """i32[n, P + length]: n continuations of the prompt's token ids (options.prompt as
  `resolve_options` leaves it: a tuple of ids; default token 0), the prompt in front."""
  o = options
  if isinstance(o.prompt, str):
    raise errors.ConfigError(
      "gpt.sample takes the prompt as token ids: pass SampleOptions(prompt=tuple(tokenizer.encode(text))), "
      "or resolve the options first (gpt.resolve_options)."
    )
  prompt = None if o.prompt is None else np.asarray(o.prompt, np.int32)
  return sample_tokens(variables["params"], rng, n, model, prompt, o.length, o.temperature, o.top_k, o.top_p)


def sample_tokens(
  params,
  rng,
  n: int,
  model: GPT,
  prompt_P=None,
  length: Optional[int] = None,
  temperature: float = 1.0,
  top_k: Optional[int] = None,
  top_p: Optional[float] = None,
  vocab_size: Optional[int] = None,
):
  """i32[n, P + length]: n continuations of the token ids `prompt_P` (default: token 0), each with
  the prompt in front; length defaults to what fits in the block; tokens are drawn among the
  first `vocab_size` (default: the tokenizer's, model.tokens). Checks its arguments."""
  prompt_P = np.asarray([0] if prompt_P is None else prompt_P, np.int32)
  if prompt_P.ndim != 1 or prompt_P.size == 0:
    raise errors.ConfigError(f"prompt must be a non-empty 1-D array of token ids, got shape {prompt_P.shape}.")
  if prompt_P.min() < 0 or prompt_P.max() >= model.vocab_size:
    raise errors.ConfigError(
      f"prompt tokens must lie in [0, {model.vocab_size}); got {prompt_P.min()}..{prompt_P.max()}."
    )
  P, block_size = prompt_P.size, model.block_size
  if length is None:
    length = max(1, block_size - P)
  if length < 1:
    raise errors.ConfigError(f"length must be at least 1 new token, got {length}.")
  if top_p is not None and not 0.0 < top_p <= 1.0:
    raise errors.ConfigError(f"top_p must lie in (0, 1], got {top_p}.")
  if top_k is not None and top_k < 0:
    raise errors.ConfigError(f"top_k must be >= 0 (0: off), got {top_k}.")
  prompt_nxP = jnp.broadcast_to(jnp.asarray(prompt_P), (n, P))
  return generate(
    params, rng, prompt_nxP, model, int(length), temperature, top_k or 0, 1.0 if top_p is None else top_p, vocab_size
  )


# ----------------------------------------------------------------------------------------------
# The adapter the trainer uses
# ----------------------------------------------------------------------------------------------


def init(rng, model: GPT):
  """Fresh variables: {"params": ...}."""
  return {"params": model.init(rng, jnp.zeros((1, model.block_size), jnp.int32))["params"]}


def num_params(model: GPT) -> int:
  return sum(
    int(np.prod(s.shape))
    for s in jax.tree.leaves(jax.eval_shape(functools.partial(init, model=model), jax.random.key(0)))
  )


CONFIGS = (GPTConfig,)
OUTPUT = "text"


def finish(model: GPT):
  """The loss in bits per token (per char or byte for those tokenizers) beside the nats."""
  name = f"bits_per_{model.token_unit}"
  return lambda m: {"loss": m["loss"], name: m["loss"] / math.log(2.0)}


updates = base.loss_updates(loss, finish)


def optimizers(exp: Experiment, model: GPT):
  """AdamW that decays the matmul weights and, unless model.decay_embeddings is False, the
  embeddings; with optim.name "muon", Muon for the hidden matrices (matrix_axes) beside it."""
  keep = exp.model.decay_embeddings
  tx = make_optimizer(exp.optim, exp.train.steps, decay_mask=lambda p: decay_mask(p, keep), matrix_axes=matrix_axes)
  return {None: tx}


_jitted_eval_sums = jax.jit(
  lambda batch, params, model: eval_sums({"params": params}, batch, None, model), static_argnums=2
)


def evaluate(variables, batches, rng, model: GPT) -> Dict[str, float]:
  """The exact mean token NLL over every real example of `batches`, in nats and bits."""
  del rng
  means, count, flops = step_lib.exact_means(_jitted_eval_sums, batches, variables["params"], model)
  return {**finish(model)(means), "tokens": count, "flops": flops}


def resolve_options(options: SampleOptions, model: GPT, exp: Experiment, info: DataInfo) -> SampleOptions:
  """The prompt (default: a newline, where the tokenizer has one) as token ids, and the length
  (default: eval.sample_length, cut to what fits in the block)."""
  if options.prompt is not None and not isinstance(options.prompt, str):
    return options  # resolved already: token ids
  prompt = "\n" if options.prompt is None and _start_token(info) is not None else options.prompt
  ids = tuple(int(i) for i in info.tokenizer.encode(prompt)) if prompt else None
  length = options.length or max(1, min(exp.eval.sample_length, model.block_size - (len(ids) if ids else 1)))
  return dataclasses.replace(options, prompt=ids, length=length)


def decode_text(ids, info: DataInfo) -> str:
  return info.tokenizer.decode(np.asarray(ids).tolist())


def notes(exp: Experiment, model: GPT) -> str:
  n = num_params(model)
  flops = flops_per_token(model, n, model.block_size)
  return (
    f"GPT: {n / 1e6:.2f}M parameters (vocabulary {model.vocab_size}); training FLOPs "
    f"per token ~ {flops:.4g} (6N + 12*layers*width*block)"
  )


def _start_token(info: DataInfo) -> Optional[int]:
  """The newline token when the tokenizer has one (nanoGPT starts samples from it), else None."""
  encode = getattr(info.tokenizer, "encode", None)
  if encode is not None:
    try:
      ids = list(encode("\n"))
      if len(ids) == 1:
        return int(ids[0])
    except (KeyError, ValueError, TypeError):
      pass
  return None
