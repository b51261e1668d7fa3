"""A run's folder: where it is, whether it may start or resume there, and one training process at a time.

Layout (``<output_dir>/<run_name>/``): ``config.json`` (the full config, shapes filled in), ``buffers/`` (the
replay buffers, memory-mapped), ``checkpoints/`` (agent + loop state, safetensors + JSON), ``best_model/``,
metrics (CSV, TensorBoard), ``health.jsonl``, evaluation videos. A folder with a ``config.json`` holds a run:
starting another one there is refused, ``--resume`` continues it. A lock file keeps a second `hilserl train` or
`hilserl learner` out while one is using the folder.
"""

from __future__ import annotations

import fcntl
import json
from datetime import datetime
from pathlib import Path

import numpy as np

from hilserl.config import to_dict
from hilserl.fileio import atomic_write_json
from hilserl.train.checkpoint import last_checkpoint

LOCK_FILE = ".learner.lock"
CONFIG_FILE = "config.json"


def run_dir_for(cfg) -> Path:
    """``<output_dir>/<run_name>``; the run name defaults to the start time."""
    name = cfg.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(cfg.output_dir) / name


class RunFolder:
    def __init__(self, path: Path, lock):
        self.path = path
        self._lock = lock

    @classmethod
    def open(cls, cfg, resume: bool) -> "RunFolder":
        """The run folder of `cfg`, locked for this process. A new run needs a folder without a run in it;
        `resume` needs one with a run."""
        path = run_dir_for(cfg)
        holds_run = (path / CONFIG_FILE).exists()
        if resume and not holds_run:
            raise FileNotFoundError(f"--resume: {path} holds no run (set output_dir/run_name to the run to resume)")
        if not resume and holds_run:
            raise FileExistsError(f"{path} already holds a run; pass --resume to continue it or choose another "
                                  "run_name")
        path.mkdir(parents=True, exist_ok=True)
        fh = open(path / LOCK_FILE, "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise FileExistsError(f"another process is training in {path} (lock {path / LOCK_FILE})") from None
        return cls(path, fh)

    @property
    def buffers(self) -> Path:
        return self.path / "buffers"

    def write_config(self, cfg) -> None:
        atomic_write_json(self.path / CONFIG_FILE, to_dict(cfg))

    def last_checkpoint(self) -> Path | None:
        return last_checkpoint(self.path)

    def close(self) -> None:
        self._lock.close()


def rng_state(rng: np.random.Generator) -> np.ndarray:
    """A numpy Generator's state as an array (checkpoints hold arrays only)."""
    return np.frombuffer(json.dumps(rng.bit_generator.state).encode(), dtype=np.uint8).copy()


def set_rng_state(rng: np.random.Generator, arr: np.ndarray) -> None:
    rng.bit_generator.state = json.loads(bytes(arr.astype(np.uint8)).decode())
