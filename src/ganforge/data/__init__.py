"""Data intake: folders, zip archives and built-in datasets as one uint8 `[N, C, H, W]` array."""

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

__all__ = [
    "BUILTINS",
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "ImageDataset",
    "IntakeReport",
    "SkippedFile",
    "inspect_source",
    "load_dataset",
    "parse_builtin",
]
