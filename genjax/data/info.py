"""What a family needs to know about its data, without importing the data pipeline."""

import dataclasses
from typing import Any, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class DataInfo:
  name: str
  kind: str  # "image" or "text"
  shape: Tuple[int, ...]  # (H, W, C) for images; (block_size,) for text
  num_classes: Optional[int] = None
  vocab_size: Optional[int] = None
  binary: bool = False  # images take only the values -1 and 1 (binarized data)
  tokenizer: Any = None  # genjax.data.tokenizers.Tokenizer for text

  def to_dict(self) -> dict:
    """A JSON-ready dict (what a checkpoint records) that `from_dict` turns back into this."""
    d = dataclasses.asdict(dataclasses.replace(self, tokenizer=None))
    d["tokenizer"] = self.tokenizer.to_dict() if self.tokenizer is not None else None
    return d

  @classmethod
  def from_dict(cls, d: dict) -> "DataInfo":
    d = dict(d)
    if d.get("tokenizer") is not None:
      from genjax.data import tokenizers

      d["tokenizer"] = tokenizers.from_dict(d["tokenizer"])
    d["shape"] = tuple(d["shape"])
    return cls(**d)

  def example_batch(self, n: int = 8) -> dict:
    """Zeros shaped like `n` examples of a batch."""
    import numpy as np

    if self.kind == "text":
      return {"tokens": np.zeros((n, self.shape[0] + 1), np.int32)}
    return {"image": np.zeros((n, *self.shape), np.float32), "label": np.zeros((n,), np.int32)}
