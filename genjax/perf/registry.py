"""The benchmarked configs: one Entry per standard config of a family (BENCHMARKS), the
test-size shrinkers of each kind of model, the Experiment a benchmark runs (experiment_for) and
synthetic batches of the right shapes (no dataset needed)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, Optional

import numpy as np

from genjax import config as config_lib
from genjax import data as data_lib
from genjax.data.info import DataInfo


@dataclasses.dataclass(frozen=True)
class Entry:
  """One benchmarked config: a config file spec (relative to the repo root); the batch used on
  CPU; the test-size model."""

  config: str
  cpu_batch: int
  quick: Callable[[Any], Any]  # model Config -> test-size model Config
  quick_batch: int = 8  # the test-size batch (GANs: a multiple of n_critic * pack)
  note: str = ""
  cpu_bound: str = ""  # what holds the CPU step below the MFU target, printed when it is missed
  # Left out of a bare `python -m genjax.bench` on a CPU (named with --only, or --quick, it runs):
  # a model whose full-size step takes minutes there and tens of GB of memory.
  accelerator_only: bool = False
  # Synthetic data of this shape instead of the config's dataset: a latent model benchmarked on
  # its latents, the frozen encoder left out (as DiT's own fast training reads cached latents).
  info: Optional[DataInfo] = None


def tiny_gpt(m):
  # A Llama's explicit key/value heads and MLP width shrink with it (None stays None).
  return dataclasses.replace(
    m,
    num_layers=2,
    num_heads=2,
    width=64,
    dropout=0.0,
    num_kv_heads=m.num_kv_heads and 1,
    mlp_hidden=m.mlp_hidden and 128,
  )


def tiny_unet(m):
  return dataclasses.replace(m, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), dropout=0.0)


def tiny_gan(m):
  if m.arch == "dcgan_mnist":
    return dataclasses.replace(m, g_widths=(64, 16), d_widths=(8, 32), latent_dim=16)
  if m.arch == "dcgan":
    return dataclasses.replace(m, g_widths=(64, 32, 16, 8), d_widths=(8, 16, 32, 64), latent_dim=16)
  return dataclasses.replace(m, g_widths=(32, 32, 32, 32), d_widths=(32, 32, 32, 32), latent_dim=16, n_critic=1)


def tiny_dit(m):
  return dataclasses.replace(m, hidden_size=64, depth=2, num_heads=4, sample_steps=4)


def tiny_vae(m):
  return dataclasses.replace(
    m, hidden=(32,), latents=(8,), conv_channels=(8, 16), train_samples=min(m.train_samples, 4)
  )


BENCHMARKS: Dict[str, Entry] = {
  "gpt_shakespeare_char": Entry("experiments/gpt_shakespeare_char.py", cpu_batch=8, quick=tiny_gpt),
  "gpt2_small": Entry("experiments/gpt2_small.py", cpu_batch=1, quick=tiny_gpt),
  "llama_1b": Entry(
    "experiments/llama_1b.py",
    cpu_batch=1,
    quick=tiny_gpt,
    note="Llama 3.2 1B's architecture (1.24B parameters, grouped-query attention, SwiGLU); random weights",
    accelerator_only=True,
  ),
  "ddpm_mnist": Entry(
    "experiments/ddpm_mnist.py",
    cpu_batch=16,
    quick=tiny_unet,
    cpu_bound="3x3 convolutions of 64-128 channels at 28x28 to 7x7: their backward pass "
    "(input and kernel gradients) runs at about a quarter of the matmul rate, the "
    "forward at about 0.4, with XLA's convolutions and with im2col products alike",
  ),
  "ddpm_cifar10": Entry("experiments/ddpm_cifar10.py", cpu_batch=4, quick=tiny_unet),
  "dit_xl2": Entry(
    "experiments/dit_imagenet256.py:XL2",
    cpu_batch=2,
    quick=tiny_dit,
    quick_batch=4,
    note="DiT-XL/2 (675M parameters) on SD's 32x32x4 latents of ImageNet 256x256 (synthetic), learned "
    "variances; the frozen autoencoder's encoding left out",
    accelerator_only=True,
    info=DataInfo(name="imagenet256_sd_latents", kind="image", shape=(32, 32, 4), num_classes=1000),
  ),
  "dcgan_mnist": Entry("experiments/dcgan_mnist.py", cpu_batch=64, quick=tiny_gan, quick_batch=10),
  "sngan_cifar10": Entry("experiments/sngan_cifar10.py", cpu_batch=10, quick=tiny_gan, quick_batch=10),
  "vae_conv_fashion_mnist": Entry(
    "experiments/vae_conv_fashion_mnist.py",
    cpu_batch=128,
    quick=tiny_vae,
    cpu_bound="a 4 GFLOP step of small layers (32-64 channels at 14x14 and 7x7): "
    "im2col copies, the likelihood and the update weigh as much as the matmuls",
  ),
  "vae_binarized_mnist": Entry(
    "experiments/vae_binarized_mnist.py:vae",
    cpu_batch=20,
    quick=tiny_vae,
    note="the IWAE paper's one-layer VAE; the loop runs 100 steps per call (its config's steps_per_call)",
    cpu_bound="20-row matrices against 784x200 weights: each step streams every weight, its gradient and "
    "Adam's two moments through the cache several times (~16 MB), for 51 MFLOP",
  ),
  "iwae_binarized_mnist": Entry(
    "experiments/vae_binarized_mnist.py:iwae",
    cpu_batch=20,
    quick=tiny_vae,
    cpu_bound="matrices of 20x50 samples by 200 units are too small to fill the cores' matmul kernels",
  ),
}

# the checkout that holds this package: genjax/perf/registry.py -> the folder above genjax/
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def repo_path(spec: str) -> str:
  """experiments/X.py[:arg] relative to the working directory, else to the package's checkout."""
  path, sep, arg = spec.partition(":")
  if not os.path.exists(path):
    candidate = os.path.join(REPO_ROOT, path)
    if os.path.exists(candidate):
      path = candidate
  return path + sep + arg


def load_config(spec: str) -> config_lib.Experiment:
  return config_lib.load_config_file(repo_path(spec))


def experiment_for(
  name: str, quick: bool, on_cpu: bool, data_dir: Optional[str] = None, dtype: Optional[str] = None
) -> config_lib.Experiment:
  """The benchmarked Experiment: the standard config, its batch cut to `cpu_batch` on a CPU,
  shrunk to test size in quick mode; one device; no steps_per_call (one step per call);
  `dtype` replaces the config's compute dtype."""
  entry = BENCHMARKS[name]
  exp = load_config(entry.config)
  train = dataclasses.replace(
    exp.train, steps_per_call=1, progress=False, compute_dtype=dtype or exp.train.compute_dtype
  )
  data = dataclasses.replace(exp.data, data_dir=data_dir or exp.data.data_dir)
  if entry.info is not None and getattr(exp.model, "autoencoder", None) is not None:
    exp = dataclasses.replace(exp, model=dataclasses.replace(exp.model, autoencoder=None))
  if quick and entry.info is None:
    exp = dataclasses.replace(exp, model=entry.quick(exp.model))
    train = dataclasses.replace(train, batch_size=min(exp.train.batch_size, entry.quick_batch))
    if data_lib.describe(data).kind == "text":
      data = dataclasses.replace(data, block_size=32)
  elif quick:
    exp = dataclasses.replace(exp, model=entry.quick(exp.model))
    train = dataclasses.replace(train, batch_size=min(exp.train.batch_size, entry.quick_batch))
  elif on_cpu:
    train = dataclasses.replace(train, batch_size=min(exp.train.batch_size, entry.cpu_batch))
  return dataclasses.replace(exp, train=train, data=data, parallel=config_lib.Parallel(mode="jit", num_devices=1))


def synthetic_batch(info: DataInfo, batch: int, seed: int = 0) -> Dict[str, np.ndarray]:
  """A batch of the right shapes and ranges: tokens in [0, V), images in [-1, 1] (binary: +-1)."""
  r = np.random.default_rng(seed)
  if info.kind == "text":
    return {"tokens": r.integers(0, info.vocab_size, (batch, info.shape[0] + 1), dtype=np.int32)}
  image = r.uniform(-1, 1, (batch, *info.shape)).astype(np.float32)
  if info.binary:
    image = np.where(image > 0, 1.0, -1.0).astype(np.float32)
  return {"image": image, "label": r.integers(0, info.num_classes or 1, (batch,), dtype=np.int32)}
