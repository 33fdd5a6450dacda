"""The documented Python API keeps working however often it is called and whatever was imported before."""

from __future__ import annotations

import ganforge
import ganforge.training.loop  # noqa: F401  (what the CLI and the function itself import)
from tests.conftest import tiny_overrides


def test_ganforge_train_is_callable_twice_after_the_loop_was_imported(class_folder, tmp_path):
    cfg = ganforge.resolve_config("dcgan-32", **tiny_overrides(str(class_folder), tmp_path, 0.008))
    first = ganforge.train(cfg, progress=False)
    second = ganforge.train(cfg, progress=False)
    assert callable(ganforge.train) and first != second
    assert ganforge.load(str(second)).generate([0]).shape == (1, 3, 16, 16)
