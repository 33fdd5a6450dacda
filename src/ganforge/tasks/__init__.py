"""Tasks: what a training step does (its phases), what its data is, and what goes into its snapshot.

One file per task, each registered here. ``TrainConfig.task`` selects one; the training loop only sees the
protocol in tasks/base.py.
"""

from ganforge.tasks.base import Phase, StepInputs, Task
from ganforge.tasks.gan import GanTask
from ganforge.tasks.restore import RestoreTask

TASKS: dict[str, type[Task]] = {
    "gan": GanTask,
    "restore": RestoreTask,
}

__all__ = ["TASKS", "GanTask", "Phase", "RestoreTask", "StepInputs", "Task"]
