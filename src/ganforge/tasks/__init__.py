"""Tasks: what a training step does (its phases), what its data is, and what goes into its snapshot.

One file per task, each registered here. ``TrainConfig.task`` selects one; the training loop only sees the
protocol in tasks/base.py.
"""

from ganforge.tasks.base import Phase, StepInputs, Task
from ganforge.tasks.gan import GanTask
from ganforge.tasks.inpaint import InpaintTask
from ganforge.tasks.restore import RestoreTask
from ganforge.tasks.translate import CycleGANTask, Pix2PixTask

TASKS: dict[str, type[Task]] = {
    "gan": GanTask,
    "restore": RestoreTask,
    "inpaint": InpaintTask,
    "pix2pix": Pix2PixTask,
    "cyclegan": CycleGANTask,
}

__all__ = ["TASKS", "CycleGANTask", "GanTask", "InpaintTask", "Phase", "Pix2PixTask", "RestoreTask", "StepInputs",
           "Task"]
