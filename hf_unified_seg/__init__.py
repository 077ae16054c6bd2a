"""hf_unified_seg: six research segmentation models as first-class Hugging Face models.

Importing the package registers every model with the transformers Auto classes, so
``AutoModel.from_pretrained(path)`` and ``pipeline("image-segmentation", model=path)`` work.
Heavier sub-packages (data, metrics, training, hub) are imported lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import models  # noqa: F401  (registration side effect)

__version__ = "0.1.0"

# public name -> sub-module that defines it (resolved lazily, see __getattr__)
_LAZY = {
    "load_shapesworld": "data",
    "build_shapesworld": "data",
    "get_categories": "data",
    "instance_masks": "data",
    "load_folder": "data",
    "export_coco": "data",
    "load_metric": "metrics",
    "list_metrics": "metrics",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        attr = "load" if name == "load_metric" else name
        return getattr(module, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", "models", *_LAZY]
