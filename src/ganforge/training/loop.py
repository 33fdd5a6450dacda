"""The one explicit training loop, for every task.

It iterates the task's phases (tasks/base.py) and owns everything around them: data sampling, EMA, AMP on CUDA,
channels_last (CUDA and CPU), gradient all-reduce under torchrun, the NaN guard, the time budget, stats, preview
grids, snapshots and atomic checkpoints. It never names a module: the task says which exist, which have an
EMA copy, which optimizer trains which, and which go into the snapshot. Read it top to bottom.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganforge.config import TrainConfig
from ganforge.core import files
from ganforge.core import snapshot as snap
from ganforge.core.device import resolve_device
from ganforge.core.grid import save_grid
from ganforge.core.version import __version__
from ganforge.data.batches import TrainData
from ganforge.nets import net_name
from ganforge.tasks import TASKS, StepInputs, Task
from ganforge.training import checkpoint as ckpt
from ganforge.training.dist import (
    DistInfo,
    all_reduce_grads,
    all_reduce_mean,
    broadcast_module,
    init_distributed,
    params_in_sync,
    shutdown_distributed,
    step_generator,
)
from ganforge.training.guard import StopRequest, first_nonfinite
from ganforge.training.resume import check_resume_changes, config_changes
from ganforge.training.rundir import RunLog, create_run_dir, truncate_stats
from ganforge.training.stats import ProgressDisplay, StatsAccumulator, TensorBoardMirror


class TrainingStopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run after a final checkpoint; ``signum`` is the signal (exit 128 + signum)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class TrainingDiverged(RuntimeError):
    """A loss or the training state became NaN/inf. No checkpoint or snapshot with a non-finite value is ever
    written, so the last checkpoint is good; the message names it and says what to try."""


class EpochSampler:
    """Index stream over shuffled epochs; position p maps to perm(epoch)[p % N], a pure function of p."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._cache = n, seed, {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            self._cache = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._cache[epoch]

    def indices(self, start: int, count: int) -> np.ndarray:
        pos = np.arange(start, start + count)
        return np.concatenate([self._perm(int(e))[pos[pos // self.n == e] % self.n]
                               for e in np.unique(pos // self.n)])


def set_memory_format(module: nn.Module, fmt: torch.memory_format) -> nn.Module:
    """``module.to(memory_format=fmt)``, except that on the CPU transposed-convolution weights stay contiguous:
    oneDNN's deconvolution re-lays a channels_last weight in every backward pass (pix2pix-128 at batch 1: 0.57
    instead of 0.64 s per step on one thread, docs/benchmarks.md)."""
    module.to(memory_format=fmt)
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d) and m.weight.device.type == "cpu":
            m.weight.data = m.weight.data.contiguous()
    return module

def train_only(task: Task, trained: set[str]) -> None:
    """Only the parameters of the ``trained`` modules record gradients (the task's frozen ones never)."""
    for name, m in task.modules.items():
        m.requires_grad_(name in trained)
    for p in task.frozen:
        p.requires_grad_(False)


def _every(kimg: float, batch: int) -> int:
    return max(1, round(kimg * 1000 / batch))


def steps_for(kimg: float, batch: int) -> int:
    """Steps that reach ``kimg`` thousand images: rounded UP, so the target is always met (--kimg 1 at batch 64 is
    16 steps, 1.024 kimg). The 1e-9 absorbs float noise such as 0.4 * 1000 / 8 = 50.000000000000004."""
    return max(1, math.ceil(kimg * 1000 / batch - 1e-9))


def _snapshot_meta(cfg: TrainConfig, task: Task, data: TrainData, step: int, nimg: int) -> dict[str, Any]:
    modules = {s: {"net": net_name(task.modules[m]), "config": task.modules[m].config}
               for s, m in task.snapshot_modules.items()}
    return {"task": task.name, "pipeline": task.pipeline, "arch": cfg.model.arch, "modules": modules,
            **task.snapshot_meta(), "dataset": data.describe(), "kimg": nimg / 1000, "step": step,
            "config": cfg.model_dump(mode="json"), "ganforge_version": __version__, "metrics": {}}


def train(cfg: TrainConfig, resume: str | Path | None = None, progress: bool = True) -> Path:
    """Train according to ``cfg``; with ``resume`` (a run folder) continue it to ``cfg.run.kimg``.
    Returns the run folder."""
    rc, oc = cfg.run, cfg.optim

    # ---- Devices, processes, threads -------------------------------------------------------------------
    use_cuda = resolve_device(rc.device, "run.device (--device)").type == "cuda"
    dist: DistInfo = init_distributed("cuda" if use_cuda else "cpu")
    device = torch.device("cuda", dist.local_rank) if use_cuda else torch.device("cpu")
    if rc.threads:
        torch.set_num_threads(rc.threads)
    if oc.batch % dist.world_size:
        raise ValueError(f"optim.batch={oc.batch} must be divisible by the number of processes "
                         f"({dist.world_size})")
    local_batch = oc.batch // dist.world_size
    # Gradient accumulation: each process runs its share of the batch in `accum` micro-batches.
    micro = min(oc.batch_per_device or local_batch, local_batch)
    if local_batch % micro:
        raise ValueError(f"optim.batch_per_device={micro} must divide the per-process batch {local_batch} "
                         f"(batch {oc.batch} over {dist.world_size} processes)")
    accum = local_batch // micro
    amp_dtype = None
    if use_cuda and rc.amp != "off":
        bf16_ok = torch.cuda.is_bf16_supported()
        amp_dtype = torch.float16 if rc.amp == "fp16" or (rc.amp == "auto" and not bf16_ok) else torch.bfloat16
    channels_last = rc.channels_last != "off"  # auto = on: faster on CUDA and on CPU (docs/benchmarks.md)
    mem_fmt = torch.channels_last if channels_last else torch.contiguous_format

    # ---- Data and task ------------------------------------------------------------------------------------
    task_cls = TASKS[cfg.task]
    data = task_cls.load_data(cfg.data, device)
    sampler = EpochSampler(len(data), rc.seed)
    torch.manual_seed(rc.seed)
    task: Task = task_cls.from_data(cfg.model, cfg.loss, oc, cfg.data.resolution, data)
    for m in task.modules.values():
        set_memory_format(m.to(device), mem_fmt)
    opts = task.optimizers(oc)
    scalers = {name: torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16) for name in opts}

    # ---- Run folder and resume -----------------------------------------------------------------------------
    step, elapsed_before = 0, 0.0
    if resume is not None:
        run = Path(resume).expanduser().resolve()
        stale = [p for d in (run, run / "checkpoints", run / "snapshots", run / "samples")
                 for p in files.remove_stale_temps(d)] if dist.is_main else []
        path, state = ckpt.load_latest_checkpoint(run / "checkpoints")
        ckpt.load_modules(task.modules, ckpt.checkpoint_modules(state), path)
        opt_states, scaler_states = ckpt.checkpoint_optimizers(state)
        for name, opt in opts.items():
            # The learning rates and betas come from the config, which may lower them on resume (RESUME_CHANGEABLE);
            # unchanged, they are the very numbers the checkpoint holds.
            hyper = [{k: g[k] for k in ("lr", "betas")} for g in opt.param_groups]
            opt.load_state_dict(opt_states[name])
            for g, h in zip(opt.param_groups, hyper, strict=True):
                g.update(h)
            if scaler_states.get(name):  # a scaler that was disabled (no fp16) saved {}; a new device may enable it
                scalers[name].load_state_dict(scaler_states[name])
        step, elapsed_before = int(state["step"]), float(state["elapsed_s"])
        task.load_extra_state(state.get("task", {}))
        # The history comes from the checkpoint (config.json may be newer than it, after a resume that was killed
        # before its first checkpoint); the resume rule applies whoever calls train().
        saved = TrainConfig.from_saved(json.loads(state["config_json"])) if state.get("config_json") else cfg
        changes = config_changes(saved, cfg, step)
        check_resume_changes(changes, run.name)
        cfg = cfg.model_copy(update={"changes": [*saved.changes, *changes]})
        if data.fingerprint() != state["dataset_fingerprint"]:
            raise ValueError(f"the data at {cfg.data.source} changed since this run started (fingerprint "
                             f"{data.fingerprint()} != {state['dataset_fingerprint']}); exact resume needs the "
                             "same images. Start a new run, or restore the original data.")
    else:
        # Transfer learning: weights only, loaded on every rank (then broadcast like fresh weights).
        init_note = ckpt.init_weights(rc.init_from, cfg.model.arch, task.modules, task.snapshot_modules,
                                      task.ema) if rc.init_from else None
        if dist.is_main:
            run = create_run_dir(Path(rc.out), data.name, cfg.preset)
    if dist.world_size > 1:  # every rank needs the folder name chosen by rank 0
        obj = [str(run) if dist.is_main else None]
        torch.distributed.broadcast_object_list(obj, src=0)
        run = Path(obj[0])
    for m in task.modules.values():
        broadcast_module(m, dist)
    log = RunLog(run)
    ckpt_dir, snap_dir = run / "checkpoints", run / "snapshots"
    display = ProgressDisplay(rc.kimg, enabled=progress and dist.is_main)
    tb = TensorBoardMirror(run) if rc.tensorboard and dist.is_main else None
    if dist.is_main:
        files.atomic_write_text(run / "config.json", cfg.to_json())
        if resume is None:
            log.log(f"new run {run.name}: task {task.name}, {len(data)} items from {cfg.data.source} "
                    f"({data.fingerprint()}), {data.num_classes} classes, {dist.world_size} processes, device "
                    f"{device}, ganforge {__version__}")
            for skipped in data.report.skipped:
                log.log(f"skipped {skipped.path}: {skipped.reason}")
            for note in data.report.notes:
                log.log(f"note: {note}")
            if init_note:
                log.log(init_note)
        else:
            truncate_stats(run, step)
            log.log(f"resumed from {path.name} at step {step} ({step * oc.batch / 1000:.3f} kimg); "
                    f"target {rc.kimg} kimg")
            for c in changes:
                log.log(f"from step {c.step}: {c.field} {c.old!r} -> {c.new!r}")
            for p in stale:
                log.log(f"removed {p.name}, a temporary file left by an interrupted write")
        for note in task.log_notes():
            log.log(note)
        display.message(f"run folder: {run}")
        if steps_for(rc.kimg, oc.batch) * oc.batch != round(rc.kimg * 1000):
            log.log(f"kimg {rc.kimg} is not a whole number of steps of {oc.batch} images: training "
                    f"{steps_for(rc.kimg, oc.batch)} steps, {steps_for(rc.kimg, oc.batch) * oc.batch / 1000:g} kimg")

    # ---- Preview grids -------------------------------------------------------------------------------------------
    n_grid = rc.grid_samples
    if dist.is_main and not (run / "samples" / "reals.png").exists():
        save_grid(data.preview(sampler.indices(0, min(n_grid, len(data)))), run / "samples" / "reals.png",
                  task.grid_cols)

    def write_samples(tag: str) -> None:
        images, cols = task.preview(n_grid, device)
        save_grid(images, run / "samples" / f"fakes{tag}.png", cols)

    def last_checkpoint() -> str:
        last = ckpt.list_checkpoints(ckpt_dir)
        return f"the last good checkpoint is {last[-1][1]} (continue with --resume {run})" if last else \
            "no checkpoint was written yet (start the run again)"

    def agree(failed: bool) -> bool:
        """True when any process failed: every rank takes the same branch, so none waits forever for another."""
        return failed if dist.world_size == 1 else all_reduce_mean({"failed": float(failed)}, dist)["failed"] > 0

    def write_checkpoint_and_snapshot(nimg: int, snapshot: bool, checkpoint: bool, elapsed: float,
                                      tick_sums: dict[str, float]) -> None:
        if snapshot:
            meta = _snapshot_meta(cfg, task, data, step, nimg)
            weights = {s: task.modules[m].state_dict() for s, m in task.snapshot_modules.items()}
            snap.save_snapshot(snap_dir, f"step{step:09d}", weights, meta)
            snap.save_snapshot(snap_dir, "latest", weights, meta)
        if checkpoint:
            state = {"format": 2, "task": task.extra_state(), "step": step, "elapsed_s": elapsed,
                     "dataset_fingerprint": data.fingerprint(), "config_json": cfg.to_json(),
                     "ganforge_version": __version__, "torch_rng": torch.get_rng_state(),
                     "tick": {"sums": tick_sums, "counts": dict(acc.counts), "start_step": tick_start_step},
                     "modules": {name: m.state_dict() for name, m in task.modules.items()},
                     "optimizers": {name: opt.state_dict() for name, opt in opts.items()},
                     "scalers": {name: sc.state_dict() for name, sc in scalers.items()}}
            ckpt.save_checkpoint(ckpt_dir, step, state, keep=rc.keep_checkpoints)

    # ---- Main loop ---------------------------------------------------------------------------------------------
    total_steps = steps_for(rc.kimg, oc.batch)
    tick_every, sample_every = _every(rc.tick_kimg, oc.batch), _every(rc.sample_every_kimg, oc.batch)
    snap_every, ckpt_every = _every(rc.snapshot_every_kimg, oc.batch), _every(rc.checkpoint_every_kimg, oc.batch)
    phases = task.phases()
    # An optional learning-rate schedule of the task (tasks/base.py, e.g. CycleGAN's linear decay): each step's lr
    # is the config's lr x task.lr_scale(step, total_steps), a function of the step, so resume stays exact.
    lr_scale = getattr(task, "lr_scale", None)
    # Tensors the phases share within a step (pix2pix's G(A): scored detached by D's phase, trained through by G's).
    shared = getattr(task, "shared", None)
    base_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in opts.items()}
    acc = StatsAccumulator()
    t_start = t_tick = time.perf_counter()
    # The tick in progress at the checkpoint continues, so stats.jsonl after a resume equals an uninterrupted
    # run line for line (losses; timings are measured afresh from the resume).
    data_time, tick_start_step, timed_from_step = 0.0, step, step
    if resume is not None and "tick" in state:
        acc.sums.update(state["tick"]["sums"])
        acc.counts.update(state["tick"]["counts"])
        tick_start_step = int(state["tick"]["start_step"])
    if step >= total_steps and dist.is_main:
        display.message(f"nothing to do: the run is already at {step * oc.batch / 1000:.3f} kimg >= {rc.kimg}")
    stop = StopRequest(notify=display.message if dist.is_main else None).install()
    user_stop = False
    try:
        while step < total_steps:
            # Randomness for this step is a pure function of (seed, rank, step).
            gen = step_generator(rc.seed, dist.rank, step)
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))

            # -- Fetch this process's share of the batch; the data object does flips, crops, degradations --
            t0 = time.perf_counter()
            idx = sampler.indices(step * oc.batch + dist.rank * local_batch, local_batch)
            batch = {k: v.contiguous(memory_format=mem_fmt) if v.ndim == 4 else v
                     for k, v in data.fetch(idx, gen, device).items()}
            micro_inputs = [  # one entry unless gradients are accumulated over micro-batches
                StepInputs(batch={k: v[i:i + micro] for k, v in batch.items()}, gen=gen, step=step)
                for i in range(0, local_batch, micro)]
            data_time += time.perf_counter() - t0

            # -- Phases --
            if lr_scale is not None:
                factor = lr_scale(step, total_steps)
                for name, opt in opts.items():
                    for g, lr in zip(opt.param_groups, base_lrs[name], strict=True):
                        g["lr"] = lr * factor
            if shared is not None:  # once per micro-batch, recording grads for every module trained this step
                train_only(task, {phase.module for phase in phases if step % phase.interval == 0})
                with torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
                    for part in micro_inputs:
                        part.shared = shared(part)
            for phase in phases:
                if step % phase.interval:
                    continue
                train_only(task, {phase.module})
                opt, scaler = opts[phase.module], scalers[phase.module]
                opt.zero_grad(set_to_none=True)
                autocast = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype and not phase.reg \
                    else contextlib.nullcontext()
                for part in micro_inputs:
                    with autocast:
                        losses = phase.loss(part)
                    loss = losses["loss"]
                    if agree(not bool(torch.isfinite(loss))):  # one rank's NaN stops them all
                        value = loss.item() if not torch.isfinite(loss) else "non-finite on another process"
                        raise TrainingDiverged(
                            f"{phase.name} loss is {value} at step {step} ({step * oc.batch / 1000:.3f} "
                            f"kimg); {last_checkpoint()}. {task.divergence_hint}; a resumed run may change "
                            f"learning rates and loss weights (--lr, --set optim.*_lr=..., --set loss.*=...).")
                    scaler.scale(loss / accum).backward()
                    for name, v in losses.items():
                        if name != "loss":
                            acc.add(f"loss/{name}", float(v.detach()))
                all_reduce_grads([p for p in task.modules[phase.module].parameters()], dist)
                scaler.step(opt)
                scaler.update()
            for m in task.modules.values():
                m.requires_grad_(False)
            task.after_step(oc.batch, lambda values: all_reduce_mean(values, dist))

            # -- EMA copies with a half-life in kimg (Karras et al. 2018, Yazici et al. 2019) --
            nimg = (step + 1) * oc.batch
            with torch.no_grad():
                for copy_name, source_name in task.ema.items():
                    ema_m, src = task.modules[copy_name], task.modules[source_name]
                    if oc.ema_kimg > 0:
                        ema_nimg = oc.ema_kimg * 1000
                        if oc.ema_rampup is not None:
                            ema_nimg = min(ema_nimg, nimg * oc.ema_rampup)
                        beta = 0.5 ** (oc.batch / max(ema_nimg, 1e-8))
                        for p_ema, p in zip(ema_m.parameters(), src.parameters(), strict=True):
                            p_ema.lerp_(p, 1 - beta)
                    else:  # no averaging: the copy follows its source
                        for p_ema, p in zip(ema_m.parameters(), src.parameters(), strict=True):
                            p_ema.copy_(p)
                    for b_ema, b in zip(ema_m.buffers(), src.buffers(), strict=True):
                        b_ema.copy_(b)
            step += 1

            # -- Tick: stats record and progress --
            done = step >= total_steps
            if step % tick_every == 0 or done:
                now = time.perf_counter()
                means = all_reduce_mean(acc.means(), dist)
                n_steps = step - timed_from_step
                dt = now - t_tick
                record = {"step": step, "kimg": nimg / 1000, "time_s": elapsed_before + now - t_start,
                          **means, **task.stats(),
                          "timing/img_per_s": n_steps * oc.batch / dt if dt > 0 else 0.0,
                          "timing/sec_per_kimg": dt / (n_steps * oc.batch / 1000),
                          "timing/data_share": data_time / dt if dt > 0 else 0.0}
                if use_cuda:
                    record["memory/peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                if dist.is_main:
                    log.stats(record)
                    display.update(record)
                    if tb:
                        tb.write(record)
                acc.reset()
                t_tick, tick_start_step, timed_from_step, data_time = now, step, step, 0.0
                if rc.minutes is not None and not done:  # every rank must agree to stop
                    over = float(record["time_s"] > rc.minutes * 60)
                    done = all_reduce_mean({"stop": over}, dist)["stop"] > 0
                    if done and dist.is_main:
                        log.log(f"time budget of {rc.minutes} min reached at {nimg / 1000:.3f} kimg")

            # -- A stop request (Ctrl-C, SIGTERM) ends the run here, with a checkpoint; every rank must agree --
            stopped = stop.requested if dist.world_size == 1 else \
                all_reduce_mean({"stop": float(stop.requested)}, dist)["stop"] > 0
            if stopped and not done:
                done = user_stop = True
                if dist.is_main:
                    log.log(f"stopped by the user ({stop.signal_name or 'signal'}) at step {step} "
                            f"({nimg / 1000:.3f} kimg); continue with --resume {run}")

            # -- Samples, snapshots, checkpoints (rank 0 writes; all ranks wait) --
            if dist.is_main and (step % sample_every == 0 or done):
                write_samples(f"{step:09d}")
            want_snap, want_ckpt = step % snap_every == 0 or done, step % ckpt_every == 0 or done
            # The tick in progress, averaged over ranks like a tick record (every rank adds the same counts).
            tick_sums = all_reduce_mean(dict(acc.sums), dist) if want_ckpt else {}
            if want_snap or want_ckpt:
                # Every rank checks its state (BatchNorm statistics are per rank) before anything is written.
                bad = first_nonfinite(task.modules, opts)
                if agree(bad is not None):
                    raise TrainingDiverged(f"{bad or 'the state of another process'} became non-finite at step "
                                           f"{step}; not writing a checkpoint or snapshot, {last_checkpoint()}. "
                                           f"{task.divergence_hint}.")
                write_error = None
                if dist.is_main:
                    try:
                        write_checkpoint_and_snapshot(nimg, want_snap, want_ckpt,
                                                      elapsed_before + time.perf_counter() - t_start, tick_sums)
                    except files.CheckpointError as exc:
                        write_error = exc
                if agree(write_error is not None):  # in place of a barrier: the others learn of a failed write
                    raise write_error or files.CheckpointError("process 0 could not write the checkpoint (its "
                                                               "message says why)")
            if done:
                break
    except files.CheckpointError as exc:  # disk full while writing: say what is left and what to do
        where = last_checkpoint()
        message = f"{exc} {where[:1].upper()}{where[1:]}."
        if dist.is_main:
            with contextlib.suppress(OSError, files.CheckpointError):  # the log may be on the full disk too
                log.log(f"stopped: {message}")
        raise files.CheckpointError(message) from exc
    except TrainingDiverged as exc:
        if dist.is_main:
            log.log(f"stopped: {exc}")
        raise
    finally:
        stop.restore()
        display.close()
        if tb:
            tb.close()
    if user_stop:
        shutdown_distributed(dist)
        raise TrainingStopped(f"stopped by the user at step {step} ({step * oc.batch / 1000:.3f} kimg); the "
                              f"checkpoint is written: continue with --resume {run}", stop.signum)
    if not params_in_sync(list(task.modules.values()), dist):
        raise RuntimeError("parameters differ between processes; this is a bug in ganforge, please report it")
    if dist.is_main:
        if dist.world_size > 1:
            log.log(f"parameters identical across ranks ({dist.world_size} processes)")
        log.log(f"finished at step {step} ({step * oc.batch / 1000:.3f} kimg)")
        display.message(f"done: {run}/snapshots/latest")
    shutdown_distributed(dist)
    return run
