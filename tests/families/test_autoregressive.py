"""The autoregressive family: GPT and gated PixelCNN (genjax.families.autoregressive)."""

import dataclasses
import functools
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as C
from genjax import families
from genjax.config import ConfigError, Parallel
from genjax.core.placement import place
from genjax.data.info import DataInfo
from genjax.data.tokenizers import CharTokenizer
from genjax.families import autoregressive as ar
from genjax.families.autoregressive import gpt as gpt_lib
from genjax.families.autoregressive import pixelcnn as pixelcnn_lib
from genjax.families.autoregressive import sampling
from genjax.nn.transformer import example_dropout

V, BLOCK = 11, 12
TOKENIZER = CharTokenizer("\nabcdefghij")  # ids: "\n" 0, "a" 1, "b" 2, ...
TEXT = DataInfo("tiny_shakespeare", "text", (BLOCK,), vocab_size=V, tokenizer=TOKENIZER)
BINARY = DataInfo("binarized_mnist", "image", (5, 5, 1), binary=True)


def text_exp(mode="jit", **model):
  model = {"num_layers": 2, "num_heads": 2, "width": 16, **model}
  return C.Experiment(
    family="autoregressive",
    model=ar.GPTConfig(**model),
    data=C.Data(name="tiny_shakespeare", block_size=BLOCK),
    optim=C.Optim(name="adamw", learning_rate=3e-3, weight_decay=0.1),
    train=C.Train(steps=100, batch_size=8),
    parallel=C.Parallel(mode=mode),
  )


def image_exp(**model):
  model = {"num_layers": 3, "channels": 8, "output_channels": 16, "first_kernel_size": 3, **model}
  return C.Experiment(
    family="autoregressive",
    model=ar.PixelCNNConfig(**model),
    data=C.Data(name="binarized_mnist"),
    train=C.Train(steps=10, batch_size=4),
  )


def gpt_model(**model):
  cfg = text_exp(use_bias=True, **model).model
  return gpt_lib.make_model(cfg, TEXT, block_size=BLOCK)


# ------------------------------------------------------------------------------------------------
# GPT
# ------------------------------------------------------------------------------------------------


def build_gpt(exp):
  """The GPT family adapter of `exp` on TEXT."""
  return families.build(exp, TEXT)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_gpt_is_causal(positions):
  model = gpt_model(positions=positions)
  tokens = jax.random.randint(jax.random.key(0), (1, BLOCK), 0, V)
  params = model.init(jax.random.key(1), tokens)
  apply = jax.jit(model.apply)
  logits, _ = apply(params, tokens)
  t = 5
  changed = tokens.at[0, t].set((tokens[0, t] + 1) % V)
  logits2, _ = apply(params, changed)
  np.testing.assert_array_equal(logits[:, :t], logits2[:, :t])  # nothing before t moves
  assert np.abs(logits[:, t:] - logits2[:, t:]).max(axis=-1).min() > 0  # every later position does


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_gpt_cached_decoding_matches_full_pass(positions):
  model = gpt_model(positions=positions)
  tokens = jax.random.randint(jax.random.key(0), (2, BLOCK), 0, V)
  params = model.init(jax.random.key(1), tokens)
  apply = jax.jit(model.apply)
  full, _ = apply(params, tokens)
  P = 4
  caches = model.init_caches(2, BLOCK)
  first, caches = apply(params, tokens[:, :P], jnp.arange(P), caches)
  steps = [first]
  for t in range(P, BLOCK):
    logits, caches = apply(params, tokens[:, t : t + 1], jnp.array([t]), caches)
    steps.append(logits)
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_gpt_loss_is_numpy_cross_entropy_in_nats():
  exp = text_exp()
  family = build_gpt(exp)
  tokens = np.random.default_rng(0).integers(0, V, (3, BLOCK + 1)).astype(np.int32)
  state = family.init(jax.random.key(0))
  mask = np.array([1.0, 1.0, 0.0], np.float32)
  metrics, count = family.eval_step(state, {"tokens": tokens, "mask": mask}, jax.random.key(1))
  assert float(count) == 2 * BLOCK  # the real examples' tokens
  # Independent cross-entropy: numpy log-softmax in float64 of the model's logits.
  model = gpt_lib.GPT(vocab_size=V, block_size=BLOCK, num_layers=2, num_heads=2, width=16)
  logits, _ = model.apply({"params": state.params}, tokens[:, :-1])
  logits = np.asarray(logits, np.float64)
  logp = logits - logits.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
  expected = nll[:2].mean()  # the masked-out third example does not count
  assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)
  assert float(metrics["bits_per_char"]) == pytest.approx(expected / math.log(2), rel=1e-5)
  full = family.evaluate(state, [{"tokens": tokens, "mask": mask}], jax.random.key(2))
  assert full["loss"] == pytest.approx(expected, rel=1e-5) and full["tokens"] == 2 * BLOCK


def test_gpt_learns_a_periodic_sequence():
  exp = text_exp()
  family = build_gpt(exp)
  pattern = np.arange(BLOCK + 1 + 8) % 5
  tokens = np.stack([pattern[i : i + BLOCK + 1] for i in range(8)]).astype(np.int32)
  state = family.init(jax.random.key(0))
  step = jax.jit(family.train_step)
  first = None
  for i in range(100):
    state, metrics = step(state, {"tokens": tokens}, jax.random.key(i))
    first = float(metrics["loss"]) if first is None else first
  assert first > 2.0 and float(metrics["loss"]) < 0.3, (first, float(metrics["loss"]))
  assert int(state.step) == 100


def test_gpt_module_loss_under_a_researchers_own_jit_and_grad():
  exp = text_exp(dropout=0.2)
  model = gpt_lib.make_model(exp.model, TEXT, block_size=BLOCK)
  params = gpt_lib.init(jax.random.key(0), model)["params"]
  batch = {"tokens": jnp.asarray(np.random.default_rng(3).integers(0, V, (4, BLOCK + 1)), jnp.int32)}
  rng = jax.random.key(9)
  loss_fn = jax.jit(functools.partial(gpt_lib.loss, model=model))
  value, metrics = loss_fn(params, batch, rng)
  assert set(metrics) == {"loss"} and float(metrics["loss"]) == float(value)
  assert float(loss_fn(params, batch, jax.random.key(10))[0]) != float(value)  # the key draws the dropout masks

  # Gradients are finite and non-zero, and one SGD step along them lowers the loss (same key).
  grads, _ = jax.jit(jax.grad(functools.partial(gpt_lib.loss, model=model), has_aux=True))(params, batch, rng)
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.sum(jnp.square(g))) for g in leaves) > 1e-8
  stepped = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
  new_value, _ = loss_fn(stepped, batch, rng)
  assert float(new_value) < float(value), (float(new_value), float(value))

  # The family's train step logs the same loss (dropout included) for the same params, batch and key.
  family = build_gpt(exp)
  state = family.init(jax.random.key(0))
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  _, logged = jax.jit(family.train_step)(state, batch, rng)
  assert float(logged["loss"]) == pytest.approx(float(value), rel=1e-6)
  assert float(logged["bits_per_char"]) == pytest.approx(float(value) / math.log(2), rel=1e-6)


def test_gpt_bfloat16_compute_keeps_float32_params_and_logits():
  model = gpt_lib.GPT(vocab_size=V, block_size=BLOCK, num_layers=1, num_heads=2, width=16, dtype=jnp.bfloat16)
  tokens = jnp.zeros((1, BLOCK), jnp.int32)
  params = model.init(jax.random.key(0), tokens)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  logits, _ = model.apply(params, tokens)
  assert logits.dtype == jnp.float32
  reference, _ = model.clone(dtype=jnp.float32).apply(params, tokens)
  np.testing.assert_allclose(logits, reference, atol=0.05)  # bfloat16 rounding, same function


def test_gpt_weight_decay_mask():
  family_model = gpt_model()
  params = family_model.init(jax.random.key(0), jnp.zeros((1, BLOCK), jnp.int32))["params"]
  nanogpt_mask = gpt_lib.decay_mask(params)
  assert nanogpt_mask["wte"] and nanogpt_mask["wpe"]
  mask = gpt_lib.decay_mask(params, decay_embeddings=False)
  assert not mask["wte"] and not mask["wpe"]
  assert not mask["ln_f"]["scale"] and not mask["block_0"]["attn"]["qkv"]["bias"]
  assert not mask["block_0"]["ln_attn"]["bias"] and not mask["block_1"]["mlp"]["fc"]["bias"]
  assert mask["block_0"]["attn"]["qkv"]["kernel"] and mask["block_1"]["mlp"]["fc"]["kernel"]
  assert mask["block_0"]["attn"]["out"]["kernel"]


def test_dropout_masks_do_not_depend_on_how_the_batch_is_split():
  x = jnp.ones((8, 4, 6))
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(jnp.arange(8))
  whole = example_dropout(x, 0.5, keys, site=2)
  halves = jnp.concatenate(
    [example_dropout(x[:4], 0.5, keys[:4], site=2), example_dropout(x[4:], 0.5, keys[4:], site=2)]
  )
  np.testing.assert_array_equal(whole, halves)
  assert 0.3 < float((whole == 0).mean()) < 0.7
  assert not np.array_equal(whole, example_dropout(x, 0.5, keys, site=3))


def test_gpt_pmap_step_equals_jit_step_with_dropout():
  tokens = np.random.default_rng(1).integers(0, V, (4, BLOCK + 1)).astype(np.int32)
  family = build_gpt(text_exp(dropout=0.3))  # families take no device axis: one build serves both
  state = family.init(jax.random.key(0))
  rng = jax.random.key(5)
  jit_state, jit_metrics = jax.jit(family.train_step)(state, {"tokens": tokens}, rng)
  if jax.device_count() < 2:
    pytest.skip("needs 2 devices (tests/conftest.py simulates 8 CPU devices)")
  par = place(Parallel(mode="pmap", num_devices=2))
  pmap_state, pmap_metrics = par.compile(family.train_step, returns_state=True)(
    par.put_state(state), par.put_batch({"tokens": tokens}), rng
  )
  assert float(pmap_metrics["loss"][0]) == pytest.approx(float(jit_metrics["loss"]), rel=1e-5)
  assert float(pmap_metrics["loss"][1]) == pytest.approx(float(jit_metrics["loss"]), rel=1e-5)
  np.testing.assert_allclose(pmap_state.params["wte"][0], jit_state.params["wte"], atol=1e-6)
  np.testing.assert_allclose(pmap_state.params["wte"][1], jit_state.params["wte"], atol=1e-6)
  # Dropout is on: a step without it moves the parameters elsewhere, so the agreement is not vacuous.
  no_dropout = build_gpt(text_exp())
  _, plain_metrics = jax.jit(no_dropout.train_step)(state, {"tokens": tokens}, rng)
  assert abs(float(plain_metrics["loss"]) - float(jit_metrics["loss"])) > 1e-4


def test_top_k_and_top_p_never_sample_outside_their_sets():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(4, 20)).astype(np.float32) * 2
  k, p = 5, 0.6
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  keys = jax.random.split(jax.random.key(0), 300)
  draw = jax.jit(jax.vmap(lambda key, tk, tp: sampling.sample_token(key, logits, 1.0, tk, tp), in_axes=(0, None, None)))
  for row in range(4):
    order = np.argsort(-probs[row])
    top_k_set = set(order[:k].tolist())
    cum = np.cumsum(probs[row][order])
    nucleus = set(order[: int(np.searchsorted(cum, p) + 1)].tolist())  # smallest set reaching p
    seen_k = set(np.asarray(draw(keys, k, 1.0))[:, row].tolist())
    seen_p = set(np.asarray(draw(keys, 0, p))[:, row].tolist())
    assert seen_k <= top_k_set and len(seen_k) > 1
    assert seen_p <= nucleus
    assert len(seen_p) == len(nucleus) or min(probs[row][list(nucleus - seen_p)]) < 0.02
  greedy = sampling.sample_token(jax.random.key(1), logits, 0.0, 0, 1.0)
  np.testing.assert_array_equal(greedy, logits.argmax(-1))


def compiles_of(caplog, name):
  """How many compilations of the jitted function `name` the captured log records."""
  return sum(f"Compiling jit({name})" in r.getMessage() for r in caplog.records)


def test_gpt_sampling_is_one_compiled_call_and_deterministic(caplog):
  family = build_gpt(text_exp())
  variables = family.init(jax.random.key(0)).variables()
  prompt = np.array([3, 1, 4])
  assert TOKENIZER.decode(prompt) == "cad"
  options = lambda **kw: gpt_lib.SampleOptions(prompt="cad", length=8, **kw)
  with jax.log_compiles(), caplog.at_level(logging.WARNING):
    a = family.sample(variables, jax.random.key(7), 4, options(temperature=0.8, top_k=4))
    compiled_first = compiles_of(caplog, "generate")
    caplog.clear()
    b = family.sample(variables, jax.random.key(7), 4, options(temperature=0.8, top_k=4))
    c = family.sample(variables, jax.random.key(8), 4, options(temperature=1.3, top_p=0.9))
    compiled_again = compiles_of(caplog, "generate")
  assert compiled_first == 1 and compiled_again == 0
  assert a.shape == (4, 3 + 8) and a.dtype == jnp.int32
  np.testing.assert_array_equal(a[:, :3], np.broadcast_to(prompt, (4, 3)))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  # The module-level sampler takes token ids and gives the adapter's tokens for the same key.
  model = gpt_lib.make_model(text_exp().model, TEXT, block_size=BLOCK)
  direct = gpt_lib.sample_tokens(variables["params"], jax.random.key(7), 4, model, prompt, 8, temperature=0.8, top_k=4)
  np.testing.assert_array_equal(direct, a)


def uncached_reference(params, model, rng, prompt, length, temperature, top_k, top_p):
  """nanoGPT's `generate`, written out: every token from a full pass over the last block_size
  tokens, token i drawn with key fold_in(rng, i). A window shorter than the block is padded at
  the end (causality, tested above, keeps the padding out of the logits read), so one compiled
  pass serves every step."""
  seq = np.asarray(prompt, np.int32)
  apply = jax.jit(lambda window: model.apply({"params": params}, window)[0])
  for i in range(length):
    window = seq[:, -model.block_size :]
    n = window.shape[1]
    logits = apply(jnp.pad(jnp.asarray(window), ((0, 0), (0, model.block_size - n))))[:, n - 1]
    token = sampling.sample_token(jax.random.fold_in(rng, i), logits, temperature, top_k, top_p)
    seq = np.concatenate([seq, np.asarray(token)[:, None]], axis=1)
  return seq


@pytest.mark.parametrize("prompt_length", [3, BLOCK + 5])
def test_gpt_generates_past_the_block_as_nanogpt_does(prompt_length):
  """Learned positions cover one block: a longer sequence crops its context to the last block,
  and the cached-then-windowed sampler draws the very tokens of the uncached reference (a short
  prompt, and one longer than the block)."""
  model = gpt_model()
  params = gpt_lib.init(jax.random.key(1), model)["params"]
  prompt = np.asarray(jax.random.randint(jax.random.key(2), (prompt_length,), 0, V))
  length = 3 * BLOCK
  rng = jax.random.key(5)
  got = np.asarray(gpt_lib.sample_tokens(params, rng, 3, model, prompt, length, temperature=0.9, top_k=6))
  want = uncached_reference(params, model, rng, np.broadcast_to(prompt, (3, prompt_length)), length, 0.9, 6, 1.0)
  assert got.shape == (3, prompt_length + length)
  np.testing.assert_array_equal(got, want)
  assert len(set(map(tuple, got[:, prompt_length:]))) == 3  # three different continuations: not all greedy


def test_gpt_config_errors_are_actionable():
  with pytest.raises(ConfigError, match="divisible"):
    families.build(text_exp(width=15), TEXT)
  with pytest.raises(ConfigError, match=r"num_kv_heads = 3 must divide config.model.num_heads = 4.*1, 2, 4"):
    families.build(text_exp(num_heads=4, num_kv_heads=3), TEXT)
  with pytest.raises(ConfigError, match="mlp_hidden = 0"):
    families.build(text_exp(mlp="swiglu", mlp_hidden=0), TEXT)
  with pytest.raises(ConfigError, match="text dataset"):
    families.build(text_exp(), BINARY)
  with pytest.raises(ConfigError, match="smaller than the tokenizer"):
    families.build(text_exp(vocab_size=5), TEXT)


# ------------------------------------------------------------------------------------------------
# Llama-style GPT and Muon
# ------------------------------------------------------------------------------------------------

LLAMA = dict(
  num_heads=4,
  num_kv_heads=2,
  norm="rmsnorm",
  mlp="swiglu",
  mlp_hidden=24,
  positions="rotary",
  qk_norm=True,
  tie_embeddings=False,
  use_bias=False,
)


def params_of(model):
  return gpt_lib.init(jax.random.key(1), model)["params"]


def test_defaults_keep_gpt2_parameter_names_and_llama_options_add_theirs():
  shapes = lambda params: {
    jax.tree_util.keystr(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(params)
  }
  gpt2 = shapes(params_of(gpt_model()))  # biases on, fused qkv, GELU MLP, LayerNorm, learned positions, tied
  block = {k.split("]", 1)[1] for k in gpt2 if k.startswith("['block_0']")}
  assert block == {
    "['attn']['qkv']['kernel']",
    "['attn']['qkv']['bias']",
    "['attn']['out']['kernel']",
    "['attn']['out']['bias']",
    "['ln_attn']['scale']",
    "['ln_attn']['bias']",
    "['ln_mlp']['scale']",
    "['ln_mlp']['bias']",
    "['mlp']['fc']['kernel']",
    "['mlp']['fc']['bias']",
    "['mlp']['proj']['kernel']",
    "['mlp']['proj']['bias']",
  }
  assert "['wpe']" in gpt2 and "['head']" not in gpt2 and gpt2["['block_0']['attn']['qkv']['kernel']"] == (16, 3, 2, 8)
  llama = shapes(params_of(gpt_lib.make_model(text_exp(**LLAMA).model, TEXT)))
  block = {k.split("]", 1)[1]: v for k, v in llama.items() if k.startswith("['block_0']")}
  assert block == {
    "['attn']['q']['kernel']": (16, 4, 4),  # D, N, H
    "['attn']['kv']['kernel']": (16, 2, 2, 4),  # D, (k, v), K, H
    "['attn']['q_norm']['scale']": (4,),
    "['attn']['k_norm']['scale']": (4,),
    "['attn']['out']['kernel']": (4, 4, 16),
    "['ln_attn']['scale']": (16,),  # RMSNorm: a scale, no bias
    "['ln_mlp']['scale']": (16,),
    "['mlp']['gate']['kernel']": (16, 24),
    "['mlp']['up']['kernel']": (16, 24),
    "['mlp']['proj']['kernel']": (24, 16),
  }
  assert "['wpe']" not in llama and llama["['head']"] == (V, 16) and llama["['ln_f']['scale']"] == (16,)


@pytest.mark.parametrize("num_kv_heads", [2, 1])
def test_grouped_query_cached_decoding_equals_the_full_pass(num_kv_heads):
  """Grouped-query (4 query heads over 2 key/value heads) and multi-query (over 1) attention:
  the KV-cached logits, prefilled then one token at a time, are the uncached pass's to 1e-6, and
  the cached sampler draws the uncached reference's tokens."""
  model = gpt_lib.make_model(text_exp(**{**LLAMA, "num_kv_heads": num_kv_heads}).model, TEXT)
  caches = model.init_caches(2, BLOCK)
  assert caches[0]["k"].shape == (2, BLOCK, num_kv_heads, 4)  # K heads cached, not N
  params = params_of(model)
  tokens = jax.random.randint(jax.random.key(0), (2, BLOCK), 0, V)
  apply = jax.jit(model.apply)
  full, _ = apply({"params": params}, tokens)
  P = 4
  first, caches = apply({"params": params}, tokens[:, :P], jnp.arange(P), caches)
  steps = [first]
  for t in range(P, BLOCK):
    logits, caches = apply({"params": params}, tokens[:, t : t + 1], jnp.array([t]), caches)
    steps.append(logits)
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-6, rtol=0)
  prompt = np.asarray(tokens[0, :3])
  rng = jax.random.key(5)
  got = gpt_lib.sample_tokens(params, rng, 3, model, prompt, BLOCK - 3, temperature=0.9)
  want = uncached_reference(params, model, rng, np.broadcast_to(prompt, (3, 3)), BLOCK - 3, 0.9, 0, 1.0)
  np.testing.assert_array_equal(got, want)


def test_muon_takes_the_block_matrices_and_adamw_the_rest():
  """The partition of a Llama-style GPT's parameters (modded-nanogpt's split): attention and MLP
  kernels to Muon; embeddings, head, norm scales (the QK-norm's too) and biases to AdamW."""
  from genjax.core.optim import muon_labels

  for model in (gpt_model(), gpt_lib.make_model(text_exp(**{**LLAMA, "use_bias": True}).model, TEXT)):
    labels = muon_labels(params_of(model), gpt_lib.matrix_axes)
    flat = {jax.tree_util.keystr(p): label for p, label in jax.tree_util.tree_leaves_with_path(labels)}
    muon = sorted(k.replace("['block_0']", "") for k, v in flat.items() if v == "muon" and "block_0" in k)
    adamw = {k for k, v in flat.items() if v == "adamw"}
    assert all(k.endswith("['kernel']") for k in muon) and not any(k.endswith("['kernel']") for k in adamw)
    assert {"['wte']", "['ln_f']['scale']"} <= adamw
    assert all(k.startswith("['block_") for k, v in flat.items() if v == "muon")
    if model.num_kv_heads is None:
      assert muon == sorted(
        f"['{m}']['{n}']['kernel']" for m, n in [("attn", "qkv"), ("attn", "out"), ("mlp", "fc"), ("mlp", "proj")]
      )
      assert "['wpe']" in adamw
    else:
      names = [("attn", "q"), ("attn", "kv"), ("attn", "out"), ("mlp", "gate"), ("mlp", "up"), ("mlp", "proj")]
      assert muon == sorted(f"['{m}']['{n}']['kernel']" for m, n in names)
      assert {"['head']", "['block_0']['attn']['q_norm']['scale']", "['block_0']['mlp']['up']['bias']"} <= adamw


def test_a_tiny_llama_trains_with_muon():
  exp = text_exp(**LLAMA)
  exp = dataclasses.replace(exp, optim=dataclasses.replace(exp.optim, name="muon", muon_learning_rate=0.02))
  family = build_gpt(exp)
  pattern = np.arange(BLOCK + 1 + 8) % 5
  tokens = np.stack([pattern[i : i + BLOCK + 1] for i in range(8)]).astype(np.int32)
  state = family.init(jax.random.key(0))
  step = jax.jit(family.train_step)
  losses = []
  for i in range(20):
    state, metrics = step(state, {"tokens": tokens}, jax.random.key(i))
    losses.append(float(metrics["loss"]))
  assert losses[-1] < losses[0] - 0.8 and all(np.isfinite(losses)), losses


def test_muon_on_a_family_without_named_matrices_is_refused():
  exp = dataclasses.replace(image_exp(), optim=C.Optim(name="muon"))
  with pytest.raises(ConfigError, match="names its hidden matrices"):
    families.build(exp, BINARY)


def test_llama_configs_parameter_counts():
  """experiments/llama_1b.py is Llama 3.2 1B: 1,235,814,400 parameters (tied embeddings), the
  count its docstring derives by hand, here from genjax's model (jax.eval_shape: nothing is
  allocated); gpt_shakespeare_char.py:llama_cpu stays within 1% of :cpu."""
  count = lambda spec: gpt_lib.num_params(_model_of(spec))
  V_, D, L, Hd, K, F = 128256, 2048, 16, 64, 8, 8192
  by_hand = V_ * D + L * (2 * D * D + 2 * D * K * Hd + 3 * D * F + 2 * D) + D
  assert by_hand == 1_235_814_400
  assert count("llama_1b.py") == by_hand
  assert count("gpt_shakespeare_char.py:cpu") == 804_096
  assert count("gpt_shakespeare_char.py:llama_cpu") == 800_000
  assert count("gpt_shakespeare_char.py:llama_muon_cpu") == 800_000


def _model_of(spec):
  from genjax import data as data_lib
  from genjax.perf.registry import load_config

  exp = load_config(f"experiments/{spec}")
  return gpt_lib.make_model(exp.model, data_lib.describe(exp.data))


# ------------------------------------------------------------------------------------------------
# PixelCNN
# ------------------------------------------------------------------------------------------------


def test_pixelcnn_pixel_sees_exactly_the_pixels_before_it():
  H, W = 6, 6
  model = pixelcnn_lib.PixelCNN(num_layers=4, channels=8, kernel_size=3, first_kernel_size=3, output_channels=8)
  x = jax.random.bernoulli(jax.random.key(0), 0.5, (1, H, W, 1)).astype(jnp.float32)
  params = model.init(jax.random.key(1), x)
  # d logit(pixel i) / d x(pixel j) for every pair, in one compiled Jacobian.
  jacobian = jax.jit(jax.jacrev(lambda x: model.apply(params, x).reshape(-1)))(x).reshape(H * W, H * W)
  order = np.arange(H * W).reshape(H, W)
  for here in range(H * W):
    r, c = divmod(here, W)
    grad = np.asarray(jacobian[here]).reshape(H, W)
    assert np.all(grad[order >= here] == 0), (r, c)  # itself and later pixels: no influence
    # No blind spot: with 4 layers of 3x3 the receptive field covers every earlier pixel within
    # reach, including the ones up and to the right that the original PixelCNN missed.
    reach = (order < here) & (np.abs(np.arange(W)[None] - c) <= 3) & (r - np.arange(H)[:, None] <= 4)
    assert np.all(grad[reach] != 0), (r, c, grad)


def test_pixelcnn_nll_is_numpy_bernoulli_nll_and_evaluate_uses_mask():
  exp = image_exp()
  family = families.build(exp, BINARY)
  image = np.where(np.random.default_rng(0).random((3, 5, 5, 1)) < 0.5, -1.0, 1.0).astype(np.float32)
  state = family.init(jax.random.key(0))
  model = pixelcnn_lib.PixelCNN(num_layers=3, channels=8, output_channels=16, first_kernel_size=3)
  x = (image + 1) / 2
  logits = np.asarray(model.apply({"params": state.params}, x), np.float64)
  p1 = 1 / (1 + np.exp(-logits))
  nll = -(x * np.log(p1) + (1 - x) * np.log(1 - p1)).sum(axis=(1, 2, 3))
  mask = np.array([1.0, 0.0, 1.0], np.float32)
  metrics, count = family.eval_step(state, {"image": image, "mask": mask}, None)
  assert float(count) == 2
  assert float(metrics["nll_nats"]) == pytest.approx((nll[0] + nll[2]) / 2, rel=1e-5)
  full = family.evaluate(state, [{"image": image, "mask": mask}, {"image": image[:1], "mask": mask[:1]}], None)
  assert full["nll_nats"] == pytest.approx((2 * nll[0] + nll[2]) / 3, rel=1e-5)
  assert full["bits_per_dim"] == pytest.approx(full["nll_nats"] / (25 * math.log(2)), rel=1e-6)


def test_pixelcnn_sampling_follows_the_model_and_is_deterministic(caplog):
  info = DataInfo("binarized_mnist", "image", (3, 3, 1), binary=True)
  family = families.build(image_exp(num_layers=2), info)
  state = family.init(jax.random.key(2))
  # Make the first pixel's probability far from 1/2, so the frequency test means something.
  params = jax.tree.map(lambda p: p, state.params)
  params["out_logits"]["bias"] = params["out_logits"]["bias"] + 1.0
  variables = {"params": params}
  with jax.log_compiles(), caplog.at_level(logging.WARNING):
    a = family.sample(variables, jax.random.key(0), 4000)
    b = family.sample(variables, jax.random.key(0), 4000)
  assert compiles_of(caplog, "_sample") == 1  # pixelcnn._sample, the one compiled loop
  np.testing.assert_array_equal(a, b)
  assert set(np.unique(a).tolist()) <= {-1.0, 1.0}
  # Pixel (0, 0) has nothing before it: its probability is the model's constant logit there.
  logit00 = pixelcnn_lib.PixelCNN(num_layers=2, channels=8, output_channels=16, first_kernel_size=3).apply(
    variables, jnp.zeros((1, 3, 3, 1))
  )[0, 0, 0, 0]
  assert float((a[:, 0, 0, 0] > 0).mean()) == pytest.approx(float(jax.nn.sigmoid(logit00)), abs=0.03)


def test_pixelcnn_needs_binary_images():
  with pytest.raises(ConfigError, match="binary"):
    families.build(image_exp(), DataInfo("mnist", "image", (28, 28, 1)))
  with pytest.raises(ConfigError, match="odd"):
    families.build(image_exp(kernel_size=4), BINARY)
