"""Autoregressive models: a GPT over tokens (text) and a gated PixelCNN over binary images.

The model config picks the model: `GPTConfig` (gpt.py) or `PixelCNNConfig` (pixelcnn.py); each
module holds its pure functions (loss, eval sums, sampler) and its `build` adapter. The
generation loops live in sampling.py.
"""

from genjax.config import Experiment
from genjax.data.info import DataInfo
from genjax.families.autoregressive import gpt, pixelcnn
from genjax.families.autoregressive.gpt import GPTConfig
from genjax.families.autoregressive.pixelcnn import PixelCNNConfig
from genjax.families.base import Family, NoOptions

CONFIGS = (GPTConfig, PixelCNNConfig)
SAMPLE_OPTIONS = {"GPTConfig": gpt.SampleOptions, "PixelCNNConfig": NoOptions}


def build(exp: Experiment, info: DataInfo, batch_splits: int = 1) -> Family:
  """The Family of the model `exp.model` configures, checked against the data first."""
  if isinstance(exp.model, GPTConfig):
    return gpt.build(exp, info, batch_splits)
  return pixelcnn.build(exp, info, batch_splits)
