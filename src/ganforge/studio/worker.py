"""The studio's training worker: ``python -m ganforge.studio.worker --job-dir DIR [--resume RUN]``.

Runs one job through the library (``ganforge.train``, never the CLI) with the config the studio validated
(``DIR/studio-config.json``), and writes its outcome to ``DIR/result.json``: finished, stopped (SIGTERM/SIGINT after a
final checkpoint) or failed (with the error's message). A worker killed before it can write one leaves no result,
which the studio reads as "interrupted". Its stdout and stderr go to ``DIR/worker.log`` (the studio opens it).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from ganforge.core.files import atomic_write_text


def _result(job_dir: Path, status: str, error: str | None = None, run: str | None = None) -> None:
    atomic_write_text(job_dir / "result.json", json.dumps({"status": status, "error": error, "run": run}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ganforge.studio.worker")
    parser.add_argument("--job-dir", type=Path, required=True)
    parser.add_argument("--resume", type=Path, default=None)
    args = parser.parse_args(argv)
    job_dir: Path = args.job_dir.resolve()

    import ganforge
    from ganforge.config import ConfigError, TrainConfig
    from ganforge.core.files import CheckpointError
    from ganforge.data import DatasetError
    from ganforge.training.loop import TrainingDiverged, TrainingStopped

    user_errors = (ConfigError, DatasetError, CheckpointError, TrainingDiverged, ValueError, FileNotFoundError)

    try:
        cfg = TrainConfig.model_validate(json.loads((job_dir / "studio-config.json").read_text(encoding="utf-8")))
        run = ganforge.train(cfg, resume=str(args.resume) if args.resume else None, progress=False)
    except TrainingStopped as exc:
        print(str(exc), flush=True)
        _result(job_dir, "stopped", None)
        return 128 + exc.signum
    except user_errors as exc:  # a message for the user: bad data, divergence, disk full
        print(f"error: {exc}", file=sys.stderr, flush=True)
        _result(job_dir, "failed", str(exc))
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: keep the traceback in the log, a line in the record
        traceback.print_exc()
        _result(job_dir, "failed", f"{type(exc).__name__}: {exc} (traceback in worker.log)")
        return 1
    print(f"done: {run}", flush=True)
    _result(job_dir, "finished", None, str(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
