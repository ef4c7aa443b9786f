"""Autoregressive models: a GPT over tokens (text) and a gated PixelCNN over binary images.

The model config picks the model: `GPTConfig` (gpt.py) or `PixelCNNConfig` (pixelcnn.py); each
module holds its pure functions (the family contract of genjax.families.base). The
generation loops live in sampling.py.
"""

from genjax.families.autoregressive import gpt, pixelcnn
from genjax.families.autoregressive.gpt import GPTConfig
from genjax.families.autoregressive.pixelcnn import PixelCNNConfig

CONFIGS = (GPTConfig, PixelCNNConfig)
SAMPLE_OPTIONS = {"GPTConfig": gpt.SampleOptions, "PixelCNNConfig": pixelcnn.SampleOptions}


def module_for(cfg):
  """The module of the model `cfg` configures: gpt for a GPTConfig, pixelcnn for a PixelCNNConfig."""
  return gpt if isinstance(cfg, GPTConfig) else pixelcnn
