"""Autoregressive models: a GPT over tokens (text), a gated PixelCNN over binary images, and a GPT
prior over a VQ-VAE's codes (two-stage generation of images).

The model config picks the model: `GPTConfig` (gpt.py), `PixelCNNConfig` (pixelcnn.py) or
`CodePriorConfig` (code_prior.py, a GPTConfig with the VQ-VAE run's workdir); each
module holds its pure functions (the family contract of genjax.families.base). The
generation loops live in sampling.py.
"""

from genjax.families.autoregressive import code_prior, gpt, pixelcnn
from genjax.families.autoregressive.code_prior import CodePriorConfig
from genjax.families.autoregressive.gpt import GPTConfig
from genjax.families.autoregressive.pixelcnn import PixelCNNConfig

CONFIGS = (GPTConfig, PixelCNNConfig, CodePriorConfig)
SAMPLE_OPTIONS = {
  "GPTConfig": gpt.SampleOptions,
  "PixelCNNConfig": pixelcnn.SampleOptions,
  "CodePriorConfig": code_prior.SampleOptions,
}


def module_for(cfg):
  """The module of the model `cfg` configures: code_prior for a CodePriorConfig (a GPTConfig too),
  gpt for a GPTConfig, pixelcnn for a PixelCNNConfig."""
  if isinstance(cfg, CodePriorConfig):
    return code_prior
  return gpt if isinstance(cfg, GPTConfig) else pixelcnn
