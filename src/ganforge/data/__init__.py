"""Data intake: folders, zip archives and built-in datasets as one uint8 `[N, C, H, W]` array (`load_dataset`),
and as random patches of pairs, unpaired domains or images with masks for restoration, translation and
inpainting (`load_pairs`, `load_unpaired`, `load_masked`). `decode` is the image decoding both use."""

import importlib
from typing import TYPE_CHECKING, Any

from ganforge.data.builtin import BUILTINS, DatasetError
from ganforge.data.dataset import (
    IMAGE_EXTENSIONS,
    ImageDataset,
    IntakeReport,
    SkippedFile,
    inspect_source,
    load_dataset,
    parse_builtin,
)

if TYPE_CHECKING:
    from ganforge.data.derive import DERIVES, Derive, parse_derive
    from ganforge.data.pairs import (
        MaskedBatches,
        PairBatches,
        UnpairedBatches,
        load_masked,
        load_pairs,
        load_unpaired,
    )
    from ganforge.data.patches import PatchCache, Patches, load_patches

# These modules import torch; they load on first use, so that `import ganforge.data` (the CLI's `dataset
# inspect`, `load_dataset`) stays free of it. name -> module.
_LAZY = {
    "DERIVES": "ganforge.data.derive",
    "Derive": "ganforge.data.derive",
    "parse_derive": "ganforge.data.derive",
    "MaskedBatches": "ganforge.data.pairs",
    "PairBatches": "ganforge.data.pairs",
    "UnpairedBatches": "ganforge.data.pairs",
    "load_masked": "ganforge.data.pairs",
    "load_pairs": "ganforge.data.pairs",
    "load_unpaired": "ganforge.data.pairs",
    "PatchCache": "ganforge.data.patches",
    "Patches": "ganforge.data.patches",
    "load_patches": "ganforge.data.patches",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ganforge.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "BUILTINS",
    "DERIVES",
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "Derive",
    "ImageDataset",
    "IntakeReport",
    "MaskedBatches",
    "PairBatches",
    "PatchCache",
    "Patches",
    "SkippedFile",
    "UnpairedBatches",
    "inspect_source",
    "load_dataset",
    "load_masked",
    "load_pairs",
    "load_patches",
    "load_unpaired",
    "parse_builtin",
    "parse_derive",
]
