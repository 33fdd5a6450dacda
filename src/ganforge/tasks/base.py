"""The task protocol: what the one training loop (training/loop.py) needs from a task, and nothing more.

A task owns its named modules, their optimizers, which of them have an EMA copy, its phases, how its data
becomes batches, its preview grid and which modules go into the snapshot. The loop runs phases and handles
everything around them (devices, AMP, channels_last, DDP, EMA, stats, the NaN guard, the time budget,
checkpoints and snapshots) without ever naming a module.

    modules           {"G": ..., "D": ..., "G_ema": ...} | {"net": ...}: every module, EMA copies included;
                      all are checkpointed, and moved to the device by the loop
    ema               {"G_ema": "G"}: the loop lerps each copy toward its source after every step
    snapshot_modules  {"G": "G_ema"}: name in the snapshot -> module it is taken from
    optimizers()      {"G": Adam, "D": Adam}: keyed by the module a phase trains (``Phase.module``)
    phases()          [Phase("D", "D", 1, ...), ...]: run in order when step % interval == 0
    lr_scale(step, total_steps)  optional: a factor on every optimizer's configured lr for this step (a schedule,
                      e.g. CycleGAN's linear decay to 0); tasks without it train at the configured lr
    shared(inp)       optional: tensors computed once per (micro-)batch before the phases, while every module that
                      a phase of this step trains requires grad; the phases find them in ``inp.shared``. pix2pix's
                      G(A): D's phase scores it detached, G's phase backpropagates through it (one forward and one
                      dropout mask per step, as in the reference implementations)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.adam import adam as adam_functional

from ganforge.config import DataConfig, OptimConfig
from ganforge.data.batches import TrainData


@dataclass
class StepInputs:
    batch: dict[str, Tensor]  # one (micro-)batch from TrainData.fetch, on the training device
    gen: torch.Generator      # CPU generator seeded by (seed, rank, step): all randomness of this step
    step: int
    shared: dict[str, Tensor] = field(default_factory=dict)  # task.shared(inp) for this (micro-)batch, if any


@dataclass(frozen=True)
class Phase:
    name: str
    module: str                                        # key in task.modules whose parameters it updates
    interval: int                                      # runs when step % interval == 0
    loss: Callable[[StepInputs], dict[str, Tensor]]    # must contain "loss"
    reg: bool = False                                  # regulariser: computed in fp32, never under autocast


class Task(Protocol):
    name: ClassVar[str]        # the key in tasks.TASKS, stored in checkpoints and snapshots
    pipeline: ClassVar[str]    # the key in infer.pipelines.PIPELINES that applies this task's snapshots
    modules: dict[str, nn.Module]
    ema: dict[str, str]
    snapshot_modules: dict[str, str]
    frozen: set[nn.Parameter]  # parameters no phase may update (FreezeD); not in any optimizer
    grid_cols: int | None      # columns of the reals grid (None = square)
    divergence_hint: ClassVar[str]  # what to try when a loss becomes NaN/inf ("Try ...")

    @staticmethod
    def load_data(data: DataConfig, device: torch.device) -> TrainData:
        """Read the task's data layout; raises DatasetError with what was found and what to do."""
        ...

    @classmethod
    def from_data(cls, model: Any, loss: Any, optim: OptimConfig, resolution: int, data: TrainData) -> Task:
        """Build the modules for this data (channels, classes); the model and loss sections are the task's own
        config classes (config.TASK_ARCHS)."""
        ...

    def optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]: ...

    def phases(self) -> list[Phase]: ...

    def preview(self, n: int, device: torch.device) -> tuple[np.ndarray, int | None]:
        """A fixed preview grid: uint8 [N, C, H, W] and the number of columns (None = square)."""
        ...

    def snapshot_meta(self) -> dict[str, Any]:
        """Task-specific snapshot metadata (class names, scale, ...)."""
        ...

    def after_step(self, batch: int, reduce: Callable[[dict[str, float]], dict[str, float]]) -> None:
        """Once per step, after the phases; ``reduce`` averages over processes."""
        ...

    def stats(self) -> dict[str, float]:
        """Extra values for the tick's stats record."""
        ...

    def log_notes(self) -> list[str]:
        """Lines for log.txt when a run starts or resumes (choices the task made that a user should know)."""
        ...

    def extra_state(self) -> dict[str, Any]:
        """State beyond modules and optimizers, checkpointed (plain numbers, strings and tensors)."""
        ...

    def load_extra_state(self, state: dict[str, Any]) -> None: ...


def _dense_views(tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """A parameter's (param, grad, exp_avg, exp_avg_sq) as contiguous tensors over the same memory: channels_last
    4-D tensors as their NHWC permutation (Adam is elementwise, so any common order gives the same update); others
    as they are."""
    if all(t.is_contiguous() for t in tensors):
        return tensors
    if tensors[0].dim() == 4 and all(t.is_contiguous(memory_format=torch.channels_last) for t in tensors):
        return tuple(t.permute(0, 2, 3, 1) for t in tensors)
    return tensors


class Adam(torch.optim.Adam):
    """torch.optim.Adam whose fused CPU step hands channels_last weights to the kernel as the dense NHWC tensors
    they are. The fused kernel calls ``.contiguous()`` on every tensor, so each channels_last weight (the loop's
    default layout) was cloned and copied back on every step: 0.110 instead of 0.050 s for pix2pix-128's 42 M
    parameters on one thread. Same state_dict, the same update bit for bit (tests/test_train.py); non-fused groups,
    AMP gradient scaling and CUDA take torch's own step.

    Moments restored in another layout than their weight's (a run resumed with another run.channels_last) are
    re-laid first, on every path: given a channels_last weight and contiguous moments, torch's fused CPU kernel
    updated the weight with other elements' moments (a wrong update, no error; tests/test_train.py)."""

    def _moments_follow_weights(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p, {})
                for k, v in state.items():
                    if isinstance(v, Tensor) and v.shape == p.shape and v.stride() != p.stride():
                        relaid = torch.empty_like(p, memory_format=torch.preserve_format)
                        if relaid.stride() == p.stride():  # a dense weight (any other keeps its moments)
                            state[k] = relaid.copy_(v)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        self._moments_follow_weights()
        groups = self.param_groups
        if (not all(g["fused"] and not g["amsgrad"] and not g["capturable"] for g in groups)
                or getattr(self, "grad_scale", None) is not None
                or any(p.device.type != "cpu" for g in groups for p in g["params"])):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in groups:
            cols: list[list[Tensor]] = [[], [], [], []]
            steps: list[Tensor] = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # as torch.optim.Adam._init_group for a fused group
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                for col, t in zip(cols, _dense_views((p, p.grad, state["exp_avg"], state["exp_avg_sq"])),
                                  strict=True):
                    col.append(t)
                steps.append(state["step"])
            adam_functional(*cols, [], steps, fused=True, amsgrad=False, beta1=group["betas"][0],
                            beta2=group["betas"][1], lr=group["lr"], weight_decay=group["weight_decay"],
                            eps=group["eps"], maximize=group["maximize"],
                            decoupled_weight_decay=group.get("decoupled_weight_decay", False))
        return loss


def adam(params, lr: float, optim: OptimConfig, ratio: float = 1.0) -> torch.optim.Adam:
    """Adam at ``lr`` with ``optim``'s betas; with lazy regularisation every k steps sharing the optimizer, StyleGAN2
    (appx. B) scales lr and betas by ratio = k / (k + 1) so the regulariser's occasional big steps keep the same
    effective dynamics.

    ``optim.fused_adam``: the fused kernel (one pass over each tensor) where every parameter is on the CPU
    or a CUDA device: the same update in another rounding order, ~3x faster than the per-tensor loop on a CPU
    (0.09 vs 0.30 s per step for pix2pix-256's 54 M parameters on one thread), which matters at batch 1. A resumed
    run keeps the implementation its checkpoint was written with (the optimizer state carries the flag)."""
    params = list(params)
    fused = optim.fused_adam and bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                                      for p in params)
    return Adam(params, lr=lr * ratio, betas=(optim.beta1 ** ratio, optim.beta2 ** ratio), fused=fused or None)


def optional_ema(modules: dict[str, nn.Module], ema_kimg: float) -> tuple[dict[str, str], dict[str, str]]:
    """The (ema, snapshot_modules) pair of a task whose generator ``modules["G"]`` has an EMA copy only when
    ``ema_kimg > 0``: then a frozen eval-mode copy is added as ``modules["G_ema"]`` and goes into the snapshot as
    "G"; otherwise "G" itself does."""
    if ema_kimg <= 0:
        return {}, {"G": "G"}
    modules["G_ema"] = copy.deepcopy(modules["G"]).eval().requires_grad_(False)
    return {"G_ema": "G"}, {"G": "G_ema"}
