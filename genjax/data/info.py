"""What a family needs to know about its data, without importing the data pipeline."""

import dataclasses
from typing import Any, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class DataInfo:
  name: str
  kind: str                      # "image" or "text"
  shape: Tuple[int, ...]         # (H, W, C) for images; (block_size,) for text
  num_classes: Optional[int] = None
  vocab_size: Optional[int] = None
  binary: bool = False           # images take only the values -1 and 1 (binarized data)
  tokenizer: Any = None          # genjax.data.tokenizers.Tokenizer for text
