"""Tasks: what a training step does (its phases) and what inference does. One file per task."""

from ganforge.tasks.gan import GanTask, Phase, StepInputs

TASKS = {"gan": GanTask}

__all__ = ["TASKS", "GanTask", "Phase", "StepInputs"]
