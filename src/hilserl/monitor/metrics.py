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
``eval/<key>`` (step: env_step); only finite numeric values are sent.

Weights & Biases (optional, ``log.wandb=true``; the `wandb` package is an optional extra, imported only then):
the same keys as the TensorBoard tags, each stream plotted against the same step (``episode/*`` and ``eval/*``
against ``env_step``, ``learner/*`` against ``learner_step``, declared with ``define_metric``; W&B's own ``_step``
just counts the records). The run is named after the run folder, its config is the train config, and its files
go to ``<run>/wandb/``. An error of W&B while training is warned about once and ends the W&B logging only.
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

from hilserl.config import ConfigError

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
    ``log_cfg``: the ``log`` config section (`hilserl.train.config.LogConfig`); with ``log_cfg.wandb`` the records
    also go to Weights & Biases, whose run gets ``config`` (a dataclass config or a dict) as its config and whose
    notes (mode, where an offline run is, how to upload it) go to ``note`` (default ``print``).
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, echo: Callable[[str], None] | None = None,
                 log_cfg: Any = None, config: Any = None, note: Callable[[str], None] | None = None):
        self.run_dir = Path(run_dir)
        wandb = require_wandb(log_cfg)  # before anything is written: a missing package is a config error
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self._tables: dict[str, CsvTable] = {}
        self._writer = None
        self._wandb = WandbSink(wandb, log_cfg, self.run_dir, config, note or print) if wandb is not None else None
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
        if self._wandb is not None:
            self._wandb.log(prefix, step_key, rec)

    # ---------------------------------------------------------------------------------------------- lifetime
    def close(self) -> None:
        for table in self._tables.values():
            table.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._wandb is not None:
            self._wandb.close()
            self._wandb = None

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ Weights & Biases
WANDB_MISSING = "log.wandb: the wandb package is not installed (pip install wandb), or set log.wandb=false"
WANDB_HOST = "https://api.wandb.ai"
PROBE_TIMEOUT_S = 1.5  # "auto" mode with an API key: how long the W&B server may take to accept a connection
INIT_TIMEOUT_S = 30.0  # online wandb.init; beyond it the run falls back to offline


def require_wandb(log_cfg: Any) -> Any:
    """The `wandb` module when ``log_cfg.wandb`` is on, None when it is off (or there is no ``log_cfg``); a
    ConfigError naming ``log.wandb`` when the package cannot be imported. Call it before a run starts."""
    if log_cfg is None or not getattr(log_cfg, "wandb", False):
        return None
    try:
        import wandb
    except ImportError:
        raise ConfigError(WANDB_MISSING) from None
    except Exception as e:  # installed but broken (e.g. a dependency of the wrong version)
        raise ConfigError(f"log.wandb: the wandb package failed to import ({type(e).__name__}: {e}); repair it "
                          "(pip install -U wandb) or set log.wandb=false") from None
    return wandb


def wandb_api_key_configured(environ: dict | None = None) -> bool:
    """Whether W&B has an API key here: WANDB_API_KEY, or a netrc entry (~/.netrc, or $NETRC) for the W&B host
    (WANDB_BASE_URL, default api.wandb.ai). Reads no network."""
    import netrc
    from urllib.parse import urlparse

    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY", "").strip():
        return True
    host = urlparse(environ.get("WANDB_BASE_URL") or WANDB_HOST).hostname or ""
    path = environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def wandb_server_answers(environ: dict | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the W&B server accepts a TCP connection within `timeout_s` (name lookup included: the probe runs
    in a daemon thread, so a resolver that hangs cannot hold the run up)."""
    import socket
    import threading
    from urllib.parse import urlparse

    environ = os.environ if environ is None else environ
    url = urlparse(environ.get("WANDB_BASE_URL") or WANDB_HOST)
    host, port = url.hostname, url.port or (80 if url.scheme == "http" else 443)
    if not host:
        return False
    answered = threading.Event()

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                answered.set()
        except OSError:
            pass

    threading.Thread(target=probe, name="wandb-probe", daemon=True).start()
    return answered.wait(timeout_s)


def resolve_wandb_mode(mode: str, environ: dict | None = None, server_answers: Callable[[], bool] | None = None
                       ) -> tuple[str, str]:
    """("online" | "offline" | "disabled", why) for ``log.wandb_mode``. "online"/"offline" are taken as they are;
    "auto" follows WANDB_MODE when that is set, else is online only when an API key is configured and the
    server answers quickly (no key: offline at once, without touching the network)."""
    environ = os.environ if environ is None else environ
    if mode in ("online", "offline"):
        return mode, f"log.wandb_mode={mode}"
    env_mode = {"run": "online", "dryrun": "offline"}.get(environ.get("WANDB_MODE", "").strip().lower(),
                                                          environ.get("WANDB_MODE", "").strip().lower())
    if env_mode in ("online", "offline", "disabled"):
        return env_mode, f"WANDB_MODE={env_mode}"
    if not wandb_api_key_configured(environ):
        return "offline", "no W&B API key configured (WANDB_API_KEY or `wandb login`)"
    answers = server_answers if server_answers is not None else (lambda: wandb_server_answers(environ))
    if not answers():
        return "offline", "the W&B server did not answer"
    return "online", "W&B API key configured and the server answers"


class WandbSink:
    """One W&B run for a `MetricsLogger`: ``log(prefix, step_key, record)`` sends a record's finite numbers as
    ``<prefix>/<key>`` plus its step (``env_step`` / ``learner_step``, the x axis of that prefix's charts). Any
    exception of W&B after the start is warned about once and switches W&B off for the rest of the run; the CSV
    files and TensorBoard carry on."""

    def __init__(self, wandb: Any, log_cfg: Any, run_dir: Path, config: Any, note: Callable[[str], None]):
        self.note = note
        self.run = None
        self.offline_dir: Path | None = None
        try:
            self._start(wandb, log_cfg, run_dir, config)
        except Exception as e:  # anything unexpected: the run trains on without W&B
            self._fail("start", e)

    def _start(self, wandb: Any, log_cfg: Any, run_dir: Path, config: Any) -> None:
        note = self.note
        mode, why = resolve_wandb_mode(log_cfg.wandb_mode)
        if mode == "disabled":
            note(f"W&B: disabled ({why}); metrics go to the CSV files and TensorBoard only")
            return
        kwargs = dict(project=log_cfg.wandb_project, entity=log_cfg.wandb_entity, name=run_dir.name,
                      dir=str(run_dir), config=_config_dict(config))
        try:
            self.run = self._init(wandb, mode, kwargs)
        except Exception as e:
            if mode != "online":
                raise
            warnings.warn(f"W&B: could not start an online run ({type(e).__name__}: {e}); logging offline instead",
                          stacklevel=4)
            mode, why = "offline", "the online start failed"
            self.run = self._init(wandb, mode, kwargs)
        try:
            for _file, prefix, step_key, *_ in STREAMS.values():
                self.run.define_metric(step_key, hidden=True)
                self.run.define_metric(f"{prefix}/*", step_metric=step_key)
        except Exception as e:  # the charts then use W&B's _step; the values are still logged
            warnings.warn(f"W&B: could not set the step axes ({type(e).__name__}: {e})", stacklevel=4)
        if mode == "offline":
            self.offline_dir = Path(getattr(self.run.settings, "sync_dir", None) or Path(self.run.dir).parent)
            note(f"W&B: logging offline ({why}) to {self.offline_dir}; upload it later with: "
                 f"wandb sync {self.offline_dir}")
        else:
            note(f"W&B: logging online ({why}): {getattr(self.run, 'url', None) or log_cfg.wandb_project}")

    @staticmethod
    def _init(wandb: Any, mode: str, kwargs: dict) -> Any:
        settings = wandb.Settings(console="off", init_timeout=INIT_TIMEOUT_S)
        return wandb.init(mode=mode, settings=settings, **kwargs)

    def log(self, prefix: str, step_key: str, rec: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            data: dict[str, float] = {step_key: int(rec[step_key])}
            for key, value in rec.items():
                if key != step_key and _is_number(value) and math.isfinite(value):
                    data[f"{prefix}/{key}"] = float(value)
            self.run.log(data)
        except Exception as e:
            self._fail("log", e)

    def _fail(self, what: str, e: Exception) -> None:
        warnings.warn(f"W&B logging stopped: {what} failed ({type(e).__name__}: {e}); the CSV files and "
                      "TensorBoard carry on", stacklevel=4)
        self.run = None  # not finished here: a W&B that just failed may hang in finish(); its exit hook finishes it

    def close(self) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.finish()
        except Exception as e:
            warnings.warn(f"W&B: finishing the run failed ({type(e).__name__}: {e})", stacklevel=3)
            return
        if self.offline_dir is not None:
            self.note(f"W&B: offline run saved in {self.offline_dir}; upload it with: wandb sync {self.offline_dir}")


def _config_dict(config: Any) -> dict | None:
    """A dataclass config as a plain JSON-ready dict (dicts pass through)."""
    import dataclasses

    if config is None or isinstance(config, dict):
        return config
    if dataclasses.is_dataclass(config):
        from hilserl.config import to_dict

        return to_dict(config)
    return dict(config)


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
