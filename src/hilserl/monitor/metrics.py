"""Training metrics: CSV files in the run folder (always), TensorBoard scalars (optional), console lines.

    log = MetricsLogger(run_dir)               # run_dir/metrics/{episodes,learner,eval}.csv + run_dir/tensorboard/
    log.log_episode({"episode": 12, "env_step": 1034, "reward": 7.85, "length": 80,
                     "success": 1, "intervention_rate": 0.235})
    print(format_episode_line(rec))            # Episode 12 | step 1034 | reward 7.85 | intervention 23.5% | SUCCESS
    log.close()

CSV rules (one file per stream):
* The header is fixed by the first row ever written to the file (episodes.csv and eval.csv always start with
  their standard columns, EPISODE_COLUMNS / EVAL_COLUMNS, then come the first row's other keys). Reopening a run
  folder (resume) appends to the existing files and keeps their header, so a resumed run continues the same tables.
* A later row with keys the header does not have: those values go to TensorBoard only (a warning names them, once
  per key); the CSV stays rectangular. Keys of the header missing from a row are written as empty cells.
* Required keys (an error when missing): episode and env_step (episodes), learner_step (learner), env_step (eval).
* Each row is flushed as soon as it is written, so a crash loses nothing already logged. A half-written last line
  left by a crash (no trailing newline) is cut off when the file is reopened.
* A resumed run may log the same episode numbers / steps again (training restarts from its last checkpoint);
  the rows are kept as written and `hilserl.monitor.plots` keeps the newest copy of each.

TensorBoard tags are ``episode/<key>`` (step: env_step), ``learner/<key>`` (step: learner_step) and
``eval/<key>`` (step: env_step); only numeric values are sent.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import os
import warnings
from pathlib import Path
from typing import Any, Callable

EPISODE_KEYS = ("episode", "env_step")  # required; reward, length, success, intervention_rate are expected too
LEARNER_KEYS = ("learner_step",)
EVAL_KEYS = ("env_step",)

# columns a new file always gets (first, in this order), whether or not its first row has them
EPISODE_COLUMNS = ("episode", "env_step", "reward", "length", "success", "intervention_rate", "action_jitter",
                   "action_saturation")
EVAL_COLUMNS = ("env_step", "success_rate", "mean_reward", "mean_length", "episodes")

STREAMS = {
    # name: (file, TensorBoard prefix, key giving the TensorBoard step, required keys, standard columns)
    "episode": ("episodes.csv", "episode", "env_step", EPISODE_KEYS, EPISODE_COLUMNS),
    "learner": ("learner.csv", "learner", "learner_step", LEARNER_KEYS, LEARNER_KEYS),
    "eval": ("eval.csv", "eval", "env_step", EVAL_KEYS, EVAL_COLUMNS),
}


def _plain(value: Any) -> Any:
    """numpy / torch scalars and bools -> plain Python numbers; other values unchanged."""
    if getattr(value, "shape", None) == () and callable(getattr(value, "item", None)):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.10g}" if isinstance(value, float) else str(value)


class CsvTable:
    """Append-only CSV file whose header is fixed by its first row (or read back from an existing file)."""

    def __init__(self, path: str | Path, columns: tuple[str, ...] = ()):
        self.path = Path(path)
        self.columns = tuple(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.header: list[str] | None = None
        self._warned: set[str] = set()
        if self.path.exists() and self.path.stat().st_size > 0:
            self._repair_tail()
            with open(self.path, newline="", encoding="utf-8") as f:
                first = f.readline()
            if first.strip():
                self.header = next(csv.reader([first]))
        self._file = open(self.path, "a", newline="", encoding="utf-8")

    def _repair_tail(self) -> None:
        """Cut a half-written last line (a crash between write and newline) so appended rows start clean."""
        with open(self.path, "rb+") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
            cut = data.rfind(b"\n") + 1  # 0 if there is no complete line at all
            f.truncate(cut)

    def write(self, row: dict[str, Any]) -> list[str]:
        """Append one row; returns the keys that are not columns of this file (not written to the CSV)."""
        if self._file.closed:
            raise ValueError(f"{self.path}: the logger is closed")
        if self.header is None:
            self.header = list(self.columns) + [k for k in row if k not in self.columns]
            self._write_line(self.header)
        extra = [k for k in row if k not in self.header]
        new = [k for k in extra if k not in self._warned]
        if new:
            self._warned.update(new)
            warnings.warn(f"{self.path.name}: column(s) {new} are not in this file's header {self.header} "
                          "(fixed by its first row); they go to TensorBoard only", stacklevel=4)
        self._write_line([_cell(row.get(k)) for k in self.header])
        return extra

    def _write_line(self, cells: list[str]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        self._file.write(buf.getvalue())
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class MetricsLogger:
    """Per-run metrics: ``run_dir/metrics/*.csv`` (resume-safe, flushed per row) and TensorBoard scalars.

    ``echo``: optional callable given the console line of every episode / learner record (e.g. ``print``).
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, echo: Callable[[str], None] | None = None):
        self.run_dir = Path(run_dir)
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self._tables: dict[str, CsvTable] = {}
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception as e:  # tensorboard missing or broken: CSVs still work
                warnings.warn(f"TensorBoard logging disabled ({e}); the CSV files are still written")
            else:
                self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    # ---------------------------------------------------------------------------------------------- streams
    def log_episode(self, record: dict[str, Any]) -> None:
        """One finished episode: episode, env_step, reward, length, success (0/1), intervention_rate (0..1), ..."""
        self._log("episode", record)
        if self.echo is not None:
            self.echo(format_episode_line(record))

    def log_learner(self, record: dict[str, Any]) -> None:
        """Learner statistics at ``learner_step`` (critic_loss, actor_loss, temperature, online_size, ...)."""
        self._log("learner", record)
        if self.echo is not None:
            self.echo(format_learner_line(record))

    def log_eval(self, record: dict[str, Any]) -> None:
        """An evaluation at ``env_step``: success_rate, mean_reward, mean_length, episodes."""
        self._log("eval", record)

    def _log(self, stream: str, record: dict[str, Any]) -> None:
        filename, prefix, step_key, required, columns = STREAMS[stream]
        rec = {k: _plain(v) for k, v in record.items()}
        missing = [k for k in required if k not in rec]
        if missing:
            raise KeyError(f"log_{stream}: the record needs {list(required)}; missing {missing}")
        table = self._tables.get(stream)
        if table is None:
            table = self._tables[stream] = CsvTable(self.metrics_dir / filename, columns)
        table.write(rec)
        if self._writer is not None:
            step = int(rec[step_key])
            for key, value in rec.items():
                if key != step_key and _is_number(value) and math.isfinite(value):
                    self._writer.add_scalar(f"{prefix}/{key}", float(value), global_step=step)
            self._writer.flush()

    # ---------------------------------------------------------------------------------------------- lifetime
    def close(self) -> None:
        for table in self._tables.values():
            table.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ console lines
def format_episode_line(rec: dict[str, Any]) -> str:
    """``Episode 12 | step 1034 | reward 7.85 | intervention 23.5% | SUCCESS`` (parts with missing keys omitted)."""
    parts = [f"Episode {int(rec['episode'])}"]
    if rec.get("env_step") is not None:
        parts.append(f"step {int(rec['env_step'])}")
    if rec.get("reward") is not None:
        parts.append(f"reward {float(rec['reward']):.2f}")
    if rec.get("intervention_rate") is not None:
        parts.append(f"intervention {100.0 * float(rec['intervention_rate']):.1f}%")
    if rec.get("success") is not None:
        parts.append("SUCCESS" if float(_plain(rec["success"])) > 0.5 else "FAIL")
    return " | ".join(parts)


_LEARNER_FIELDS = (
    # (record key, label, format)
    ("critic_loss", "critic", "{:.4f}"),
    ("actor_loss", "actor", "{:.4f}"),
    ("temperature_loss", "temp", "{:.4f}"),
    ("temperature", "α", "{:.4f}"),
    ("noise_std", "noise_std", "{:.3f}"),  # DrQ-v2's exploration noise
    ("online_size", "online", "{:d}"),
    ("demo_size", "demo", "{:d}"),
    ("updates_per_s", "updates/s", "{:.1f}"),
)


def format_learner_line(rec: dict[str, Any]) -> str:
    """``Step 1200: critic=3.2051 actor=-12.8812 temp=-0.0012 α=0.0123 online=1530 demo=412 updates/s=9.8``."""
    parts = []
    for key, label, fmt in _LEARNER_FIELDS:
        value = rec.get(key)
        if value is None:
            continue
        value = _plain(value)
        value = int(value) if fmt == "{:d}" else float(value)
        parts.append(f"{label}={fmt.format(value)}")
    return f"Step {int(rec['learner_step'])}: " + " ".join(parts)
