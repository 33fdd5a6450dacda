"""Job records in SQLite: one file in the data dir (WAL, stdlib sqlite3), so jobs outlive the server.

A record says what was asked (task, preset, dataset, overrides), what the studio made of it (the resolved config,
the job folder), and where it stands (status, worker pid, exit code, error). The job's files are in its run
folder, which the CLI can read and resume too; the record only points at it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# created: not started yet; queued: waiting for a free worker slot; running; stopping: SIGTERM sent, the worker is
# writing its checkpoint; stopped: by the user, resumable; finished: reached its kimg; failed: the worker reported an
# error (error says which); interrupted: the worker died without finishing (killed, server crash), resumable.
STATUSES = ("created", "queued", "running", "stopping", "stopped", "finished", "failed", "interrupted")
ACTIVE = frozenset({"queued", "running", "stopping"})
RESUMABLE = frozenset({"stopped", "interrupted", "failed", "finished"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    task TEXT NOT NULL,
    preset TEXT NOT NULL,
    dataset TEXT NOT NULL,
    overrides TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    job_dir TEXT NOT NULL,
    resume INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    exit_code INTEGER,
    error TEXT,
    created REAL NOT NULL,
    queued REAL,
    started REAL,
    ended REAL
);
"""


@dataclass
class JobRecord:
    id: int
    name: str
    task: str
    preset: str
    dataset: str
    overrides: dict[str, Any]
    config: dict[str, Any]  # the resolved TrainConfig, as JSON
    status: str
    job_dir: str
    resume: bool  # the next start continues the run folder's last checkpoint
    pid: int | None
    exit_code: int | None
    error: str | None
    created: float
    queued: float | None
    started: float | None
    ended: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        d = dict(row)
        d["overrides"], d["config"] = json.loads(d["overrides"]), json.loads(d["config"])
        d["resume"] = bool(d["resume"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a shallow dict (for JSON answers; dataclasses.asdict deep-copies the config, which was
        half the job list's time with 100 jobs)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class JobStore:
    """Thread-safe by construction: every call opens its own short connection (SQLite serialises writers)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    def create(self, *, name: str, task: str, preset: str, dataset: str, overrides: dict[str, Any],
               config: dict[str, Any], job_dir_of: Any) -> JobRecord:
        """Insert a job in status ``created``; ``job_dir_of(id)`` names its folder (known once the id is)."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute("INSERT INTO jobs (name, task, preset, dataset, overrides, config, status, job_dir, "
                             "created) VALUES (?, ?, ?, ?, ?, ?, 'created', '', ?)",
                             (name, task, preset, dataset, json.dumps(overrides), json.dumps(config), time.time()))
            job_id = int(cur.lastrowid)
            db.execute("UPDATE jobs SET job_dir = ? WHERE id = ?", (str(job_dir_of(job_id)), job_id))
            db.execute("COMMIT")
        return self.get(job_id)  # type: ignore[return-value]

    def get(self, job_id: int) -> JobRecord | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRecord.from_row(row) if row else None

    def list(self, statuses: tuple[str, ...] | frozenset[str] | None = None) -> list[JobRecord]:
        """Jobs in id order (the FIFO order of the queue is by ``queued`` time, see ``next_queued``)."""
        with self._db() as db:
            if statuses:
                marks = ",".join("?" * len(statuses))
                rows = db.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY id", tuple(statuses))
            else:
                rows = db.execute("SELECT * FROM jobs ORDER BY id")
            return [JobRecord.from_row(r) for r in rows.fetchall()]

    def next_queued(self) -> JobRecord | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY queued, id LIMIT 1").fetchone()
        return JobRecord.from_row(row) if row else None

    def update(self, job_id: int, expect: tuple[str, ...] | frozenset[str] | None = None, **fields: Any) -> bool:
        """Set ``fields``; with ``expect``, only if the status is one of those (a compare-and-set: two requests
        racing to start or stop one job cannot both win). Returns whether the row changed."""
        for key in ("overrides", "config"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        if "resume" in fields:
            fields["resume"] = int(bool(fields["resume"]))
        sets = ", ".join(f"{k} = ?" for k in fields)
        args: list[Any] = [*fields.values(), job_id]
        where = "id = ?"
        if expect:
            where += f" AND status IN ({','.join('?' * len(expect))})"
            args += list(expect)
        with self._db() as db:
            return db.execute(f"UPDATE jobs SET {sets} WHERE {where}", args).rowcount == 1

    def delete(self, job_id: int) -> None:
        with self._db() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
