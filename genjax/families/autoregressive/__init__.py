"""Autoregressive models: a GPT over tokens (text) and a gated PixelCNN over binary images.

`Config.kind` picks the model; `build(exp, info)` returns the `Family` of pure functions the
shared loop calls. The models live in gpt.py and pixelcnn.py, the generation loops in
sampling.py.
"""

import dataclasses
from typing import Literal, Optional

from genjax.config import ConfigError, Experiment
from genjax.data.info import DataInfo
from genjax.families.base import Family


@dataclasses.dataclass(frozen=True)
class Config:
  """Model hyper-parameters. GPT fields apply when kind == "gpt", PixelCNN fields when
  kind == "pixelcnn"; `num_layers` and `dropout` apply to both."""

  kind: Literal["gpt", "pixelcnn"] = "gpt"
  num_layers: int = 6
  dropout: float = 0.0

  # GPT (defaults: nanoGPT's shakespeare_char model)
  num_heads: int = 6
  width: int = 384
  mlp_ratio: int = 4
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

  # PixelCNN (gated, van den Oord et al. 2016)
  channels: int = 128
  kernel_size: int = 3
  first_kernel_size: int = 7
  output_channels: int = 512


def build(exp: Experiment, info: DataInfo) -> Family:
  """The Family for `exp.model.kind`, checked against the data before anything compiles."""
  config = exp.model
  if not isinstance(config, Config):
    raise ConfigError(f"config.model must be genjax.families.autoregressive.Config for the "
                      f"autoregressive family, got {type(config).__name__}.")
  if config.num_layers <= 0:
    raise ConfigError(f"config.model.num_layers = {config.num_layers} must be positive.")
  if not 0.0 <= config.dropout < 1.0:
    raise ConfigError(f"config.model.dropout = {config.dropout} must lie in [0, 1).")
  if config.kind == "gpt":
    from genjax.families.autoregressive import gpt
    return gpt.build(exp, info)
  if config.kind == "pixelcnn":
    from genjax.families.autoregressive import pixelcnn
    return pixelcnn.build(exp, info)
  raise ConfigError(f"config.model.kind = {config.kind!r} is unknown: use 'gpt' or 'pixelcnn'.")
