"""CLI startup time: `ganforge --help` must stay under 1 s, so nothing heavy may be imported at load.

Measures, in one run, the median wall-clock of fresh interpreters doing:
  - nothing (`python -c pass`), the floor;
  - `python -m ganforge --help` and `python -m ganforge train --help`;
  - `python -c "import torch"`, what --help would cost if torch were imported eagerly.

    python bench/startup.py            # writes bench/results/startup.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = {
    "python_floor": ["-c", "pass"],
    "ganforge_help": ["-m", "ganforge", "--help"],
    "ganforge_train_help": ["-m", "ganforge", "train", "--help"],
    "import_torch": ["-c", "import torch"],
}


def timed(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), COLUMNS="100")
    repeats = int(os.environ.get("REPEATS", "7"))
    for args in CASES.values():  # warm the OS file cache once
        timed(args, env)
    seconds = {name: [] for name in CASES}
    for _ in range(repeats):  # interleaved, so that background load hits every case alike
        for name, args in CASES.items():
            seconds[name].append(timed(args, env))
    med = {name: statistics.median(v) for name, v in seconds.items()}
    result = {
        "bench": "startup", "repeats": repeats,
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "help_over_floor_s": round(med["ganforge_help"] - med["python_floor"], 3),
        "help_vs_import_torch": round(med["ganforge_help"] / med["import_torch"], 3),
        "target_s": 1.0, "meets_target": med["ganforge_help"] < 1.0,
        "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "startup.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
