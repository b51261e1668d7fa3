"""`hilserl report RUN_DIR`: one self-contained HTML page of a run, finished or still training.

    path = write_report(Path("outputs/demo"))                   # -> outputs/demo/report.html
    path = write_report(Path("outputs/train/run1"), Path("/tmp/run1.html"))

RUN_DIR is a training run folder (``config.json`` at its top: `hilserl train`, `hilserl learner`), a `hilserl demo`
folder (``train/``, ``eval/``, ``expert/``) or a `hilserl eval` folder (``eval.json``). The evaluations of a run are
found where `hilserl eval` and `hilserl demo` put them: ``<run>/eval``, ``<run>/checkpoints/*/eval`` and, when its
``eval.json`` names a checkpoint of this run, the ``eval`` folder beside the run.

The page holds the run's facts and episode summary, its final evaluation(s) (success rate with its 95% interval,
action jitter, the success map, the video, the episodes), the training plots (``plots/*.png``; drawn afresh from
``metrics/*.csv`` with `hilserl.monitor.plots.plot_training`, into a temporary folder, when ``plots/`` is missing or
older than the metrics), the evaluations during training (``metrics/eval.csv``), the health findings with their
advice (``health.jsonl``), the config doctor's findings (`hilserl.monitor.doctor.diagnose`), the config, the expert
demo and the browser console's commands (``console.jsonl``).

Self-contained: every image and video is a base64 data URI, the CSS is inline, there is no JavaScript, and a
Content-Security-Policy forbids loading anything else, so the file opens offline from a file:// URL and can be
mailed or archived alone. The videos are embedded as written (H.264 mp4 from imageio-ffmpeg; Debian's Chromium
plays them), up to `VIDEO_BUDGET_BYTES` in all; a video beyond that is left out with a note naming its file.

A run still training is read as it is: only complete CSV and JSON lines count, a video without its index (still
being written) or a PNG without its end is left out with a note. The run folder is never written to (only the
report itself, by default ``<RUN_DIR>/report.html``).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

REPORT_FILE = "report.html"
VIDEO_BUDGET_BYTES = 30 * 1024 * 1024  # raw video bytes embedded in one report (base64 makes them 4/3 larger)
VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm"}
RECENT = 20  # episodes in "the last N" numbers (the plots' running average and the HIL-SERL paper's use the same)
EPISODE_ROWS_OPEN = 20  # an evaluation's episode table is shown open up to this many episodes
CONSOLE_ROWS = 200  # console commands listed at most (the newest)
# the training plots in reading order (others follow by name)
PLOT_ORDER = ("success_rate_vs_env_step", "success_rate_vs_episode", "eval_success_rate_vs_env_step",
              "intervention_rate_vs_env_step", "intervention_rate_vs_episode", "reward_vs_env_step",
              "reward_vs_episode", "learner")
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND"
EXPECTED = ("expected a run folder (config.json, from hilserl train), a hilserl demo folder (train/config.json, "
            "eval/, expert/) or a hilserl eval folder (eval.json)")


class ReportError(FileNotFoundError):
    """RUN_DIR is missing or holds nothing to report (the message names the path and what was expected), or the
    report cannot be written. A FileNotFoundError, so `hilserl`'s main prints it as ``error: ...`` too."""


# ------------------------------------------------------------------------------------------------ finding the files
@dataclass
class Sources:
    root: Path  # what was asked for
    run_dir: Path | None = None  # the training run (config.json)
    evals: list[Path] = field(default_factory=list)  # folders with eval.json
    expert: Path | None = None  # the demo's expert folder


def _has_expert(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("expert_*"))


def _points_into(checkpoint: str, run_dir: Path) -> bool:
    """Whether an eval.json's checkpoint (absolute, or relative to where `hilserl eval` ran) is one of `run_dir`:
    it lies in it, or it ends in ``<run name>/checkpoints/<step>/...`` (or ``best_model``) and the run ends in the
    same relative path or holds that checkpoint (a run folder moved or copied since)."""
    run = run_dir.resolve()
    p = Path(checkpoint)
    where = (p if p.is_absolute() else Path.cwd() / p).resolve()
    if where == run or run in where.parents:
        return True
    parts = [s for s in p.parts if s not in (".", "")]
    for i, part in enumerate(parts):  # ".../<run>/checkpoints/<step>/pretrained_model" or ".../<run>/best_model"
        if part in ("checkpoints", "best_model") and i > 0:
            prefix = tuple(parts[:i])
            same_path = not p.is_absolute() and run.parts[-len(prefix):] == prefix
            return same_path or (parts[i - 1] == run.name and run.joinpath(*parts[i:]).exists())
    return False


def find_sources(path: Path) -> Sources:
    path = Path(path)
    if not path.exists():
        raise ReportError(f"{path}: no such folder ({EXPECTED})")
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder ({EXPECTED})")
    src = Sources(root=path)
    if (path / "config.json").is_file():
        src.run_dir = path
    elif (path / "train" / "config.json").is_file():
        src.run_dir = path / "train"
    candidates = [path, path / "eval"]
    if src.run_dir is not None:
        run = src.run_dir
        candidates += [run / "eval", *sorted((run / "checkpoints").glob("*/eval"))]  # where `hilserl eval` writes
        sibling = run.parent / "eval"
        if (sibling / "eval.json").is_file() and sibling.resolve() != (path / "eval").resolve():
            summary = _read_json(sibling / "eval.json").get("summary")
            ckpt = summary.get("checkpoint") if isinstance(summary, dict) else None
            if isinstance(ckpt, str) and _points_into(ckpt, run):
                candidates.append(sibling)
                if _has_expert(run.parent / "expert"):
                    src.expert = run.parent / "expert"
    seen = set()
    for c in candidates:
        if (c / "eval.json").is_file() and c.resolve() not in seen:
            seen.add(c.resolve())
            src.evals.append(c)
    if _has_expert(path / "expert"):
        src.expert = path / "expert"
    elif _has_expert(path) and path.name == "expert":
        src.expert = path
    if src.run_dir is None and not src.evals and src.expert is None:
        raise ReportError(f"{path}: nothing to report here ({EXPECTED})")
    return src


# ------------------------------------------------------------------------------------------------ reading safely
def _complete_text(path: Path) -> str:
    """The file's complete lines (a line still being written, without its newline, is left out)."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[:data.rfind(b"\n") + 1].decode("utf-8", errors="replace")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in _complete_text(path).splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            rows.append(value)
    return rows


def _snapshot_metrics(run_dir: Path, tmp: Path) -> Path:
    """A copy of ``metrics/*.csv`` (complete lines only) under ``tmp/<run name>/metrics``; returns its run folder,
    which `plot_training` and `read_csv` read as they would the run's own."""
    snap = tmp / run_dir.resolve().name
    (snap / "metrics").mkdir(parents=True)
    for csv_file in sorted((run_dir / "metrics").glob("*.csv")):
        (snap / "metrics" / csv_file.name).write_text(_complete_text(csv_file), encoding="utf-8")
    return snap


def _png(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(PNG_START) and data[-8:-4] == PNG_END else None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if _is_number(v)]
    return sum(vals) / len(vals) if vals else None


# ------------------------------------------------------------------------------------------------ HTML pieces
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v == "":
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return _e(v)


def _pct(v: Any) -> str:
    return f"{100 * v:.0f}%" if _is_number(v) else "–"


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML already (escape text with `_e`)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _facts(pairs: list[tuple[str, str]]) -> str:
    return '<table class="facts">' + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs) + "</table>"


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _img(data: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}" alt="{_e(alt)}">'


def _figure(path: Path, caption: str) -> str:
    data = _png(path)
    if data is None:
        return _note(f"{_e(path)}: not a complete PNG (still being written?); left out")
    return f"<figure>{_img(data, caption)}<figcaption>{_e(caption)}</figcaption></figure>"


class VideoBudget:
    """Embeds videos while their raw bytes stay within `limit` (default `VIDEO_BUDGET_BYTES`) in all."""

    def __init__(self, limit: int | None = None):
        self.limit, self.used = VIDEO_BUDGET_BYTES if limit is None else limit, 0

    def embed(self, path: Path, caption: str) -> str:
        mime = VIDEO_TYPES.get(path.suffix.lower())
        if mime is None:
            return _note(f"{_e(path)}: not embedded (only {', '.join(VIDEO_TYPES)} videos are)")
        try:
            data = path.read_bytes()
        except OSError as err:
            return _note(f"{_e(path)}: not readable ({_e(err)})")
        if mime == "video/mp4" and b"moov" not in data:
            return _note(f"{_e(path)}: incomplete (no index yet: still being written?); left out")
        if self.used + len(data) > self.limit:
            return _note(f"{_e(path)}: {len(data) / 1e6:.1f} MB, left out: the report embeds at most "
                         f"{self.limit / 1e6:.0f} MB of video ({self.used / 1e6:.1f} MB used); open the file itself")
        self.used += len(data)
        uri = f"data:{mime};base64,{base64.b64encode(data).decode()}"
        return (f'<figure><video controls preload="auto" src="{uri}"></video>'
                f"<figcaption>{_e(caption)} ({len(data) / 1e6:.2f} MB)</figcaption></figure>")


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1c1e21;
background:#f5f6f8}
header{background:#1f2933;color:#f5f7fa;padding:16px 28px}header h1{margin:0 0 4px;font-size:20px}
header code{color:#fff}header p{margin:2px 0;color:#cbd2d9}nav a{color:#9fd3ff;margin-right:14px}
main{padding:8px 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:4px 18px 14px;margin:16px 0}
h2{font-size:17px;border-bottom:1px solid #e4e7eb;padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}h4{font-size:14px;margin:12px 0 4px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}th,td{border:1px solid #dde1e6;padding:3px 8px;
text-align:left;vertical-align:top}thead th{background:#eef1f4}table.facts th{background:#f5f7f9;font-weight:600;
white-space:nowrap}table.nums td{text-align:right;font-variant-numeric:tabular-nums}
table.nums td:first-child{text-align:left}td:first-child span{white-space:nowrap}
.grid{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}figure{margin:6px 0;max-width:100%}
figure img,figure video{max-width:min(100%,900px);border:1px solid #dde1e6;display:block}figure video{width:640px}
figcaption{font-size:12px;color:#52606d}
.plots figure{flex:1 1 560px;max-width:880px}
.note{color:#52606d;font-style:italic}.big{font-size:22px;font-weight:600}
.error{color:#b00020;font-weight:600}.warning{color:#9a6700;font-weight:600}.info{color:#0b6e99}
.ok{color:#1a7f37;font-weight:600}.fail{color:#b00020}
pre{background:#f5f7f9;border:1px solid #dde1e6;padding:10px;overflow:auto;font-size:12px;max-height:640px}
details summary{cursor:pointer;color:#0b5cad;margin:6px 0}
"""
CSP = "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'"


# ------------------------------------------------------------------------------------------------ sections
def _config_section(config: dict | None, run_dir: Path) -> str:
    if config is None:
        return _note(f"{_e(run_dir / 'config.json')}: not readable")
    text = json.dumps(config, indent=2)
    return f"<details><summary>config.json ({len(text.splitlines())} lines)</summary><pre>{_e(text)}</pre></details>"


def _parse_config(config: dict | None) -> tuple[Any, str | None]:
    """The run's TrainConfig (as `hilserl eval` and `hilserl health` read a saved one), or None and why not."""
    if config is None:
        return None, "no readable config.json"
    try:
        from hilserl.config import from_dict, validate_tree
        from hilserl.train.config import TrainConfig, upgrade_saved_config

        cfg = from_dict(TrainConfig, upgrade_saved_config(config))
        validate_tree(cfg)
    except Exception as err:  # an old or hand-edited config: the report still shows the rest
        return None, f"{type(err).__name__}: {err}"
    return cfg, None


def _doctor_section(cfg: Any, why_not: str | None) -> str:
    """The config doctor's findings for this run's config (`diagnose`, as `hilserl doctor` shows them)."""
    if cfg is None:
        return _note(f"the config doctor could not run on this config: {_e(why_not)}")
    try:
        from hilserl.monitor.doctor import DECISIONS, diagnose
        from hilserl.monitor.doctor_report import MARKS, summary_line

        findings = diagnose(cfg)
    except Exception as err:
        return _note(f"the config doctor could not run on this config: {_e(type(err).__name__)}: {_e(err)}")
    out = f"<p>{_e(summary_line(findings))} Why each default is what it is: <code>{_e(DECISIONS)}</code>.</p>"
    if findings:
        rows = [[f'<span class="{_e(f.severity)}">{_e(MARKS[f.severity])} {_e(f.severity)}</span>',
                 f"<code>{_e(f.setting)}</code>", _num(f.value), _num(f.recommended), _e(f.why)] for f in findings]
        out += _table(["severity", "setting", "value", "recommended", "why"], rows)
    return out


def _episodes_summary(episodes: list[dict], total_steps: Any) -> str:
    if not episodes:
        return _note("no episodes logged yet (metrics/episodes.csv)")
    recent = episodes[-RECENT:]
    last_step = episodes[-1].get("env_step")
    steps = _num(last_step) + (f" of {_num(total_steps)}" if _is_number(total_steps) else "")

    def both(key: str, fmt) -> list[str]:
        return [fmt(_mean(r.get(key) for r in episodes)), fmt(_mean(r.get(key) for r in recent))]

    rows = [["success rate", *both("success", _pct)],
            ["intervention rate (share of steps under human control)", *both("intervention_rate", _pct)],
            ["episode reward (mean)", *both("reward", _num)], ["episode length (mean steps)", *both("length", _num)]]
    if any(_is_number(r.get("action_jitter")) for r in episodes):
        rows.append(["action jitter (policy, per tick, -1..1 scale)", *both("action_jitter", _num)])
    table = _table(["", f"all {len(episodes)} episodes", f"last {len(recent)}"], rows, "nums")
    return _facts([("episodes", _num(len(episodes))), ("environment steps", steps)]) + table


def _learner_summary(learner: list[dict]) -> str:
    if not learner:
        return _note("no learner records yet (metrics/learner.csv)")
    last = learner[-1]
    keys = ("learner_step", "env_step", "critic_loss", "actor_loss", "q_mean", "temperature", "entropy",
            "online_size", "demo_size", "updates_per_s")
    return _facts([(k, _num(last[k])) for k in keys if k in last]) + \
        _note(f"the newest of {len(learner)} learner records")


def _eval_csv_section(evals: list[dict]) -> str:
    cols = [c for c in ("env_step", "episode", "episodes", "success_rate", "mean_reward", "mean_length",
                        "action_jitter") if any(c in r for r in evals)]
    rows = []
    for r in evals:
        row = []
        for c in cols:
            if c == "success_rate":
                ci = (f" (95%: {_pct(r.get('success_ci_low'))}–{_pct(r.get('success_ci_high'))})"
                      if _is_number(r.get("success_ci_low")) else "")
                row.append(_pct(r.get(c)) + ci)
            else:
                row.append(_num(r.get(c)))
        rows.append(row)
    return _table(cols, rows, "nums")


def _jitter_text(jitter: Any, action_scale: Any) -> str:
    if not _is_number(jitter):
        return "–"
    text = f"{jitter:.3g} per tick (-1..1 scale)"
    if _is_number(action_scale):
        from hilserl.monitor.health import SHAKING_M, swing_verdict

        swing, verdict = swing_verdict(jitter, action_scale)
        verdict = f'<span class="{"ok" if verdict == "smooth" else "warning"}">{verdict}</span>'
        text += (f" = {swing * 1000:.1f} mm of commanded swing per tick: {verdict} "
                 f"(shaking: over {SHAKING_M * 1000:.0f} mm)")
    return text


def _eval_json_section(folder: Path, label: str, action_scale: Any, videos: VideoBudget) -> str:
    data = _read_json(folder / "eval.json")
    s, episodes = data.get("summary") or {}, data.get("episodes") or []
    episodes = [r for r in episodes if isinstance(r, dict)] if isinstance(episodes, list) else []
    title = f"<h3><code>{_e(folder.resolve())}</code></h3>"
    if not isinstance(s, dict) or not s:
        return title + _note(f"{_e(folder / 'eval.json')}: not readable (still being written?)")
    n, rate = s.get("episodes"), s.get("success_rate")
    wins = round(rate * n) if _is_number(rate) and _is_number(n) else None
    head = (f'<p class="big">success {_pct(rate)} ({_num(wins)}/{_num(n)} episodes), 95% interval '
            f"{_pct(s.get('success_ci_low'))}–{_pct(s.get('success_ci_high'))}</p>")
    facts = _facts([("checkpoint", f"<code>{_e(s.get('checkpoint', '–'))}</code>"),
                    ("reset", "fixed (nominal positions)" if s.get("fixed_reset") else "random, as in training"),
                    ("mean reward", _num(s.get("mean_reward"))), ("mean length", _num(s.get("mean_length"))),
                    ("action jitter", _jitter_text(s.get("action_jitter"), action_scale)),
                    ("action reversals", _num(s.get("action_reversals")))])
    media = ""
    if (folder / "success_map.png").is_file():
        media += _figure(folder / "success_map.png", f"{label}/success_map.png: success by cube start position")
    for video in sorted(folder.glob("*.mp4")) + sorted(folder.glob("*.webm")):
        media += videos.embed(video, f"{label}/{video.name}")
    out = f"{title}{head}<div class='grid'><div>{facts}</div>{media}</div>"
    if episodes:
        cols = [c for c in ("episode", "steps", "reward", "success", "action_jitter", "action_reversals")
                if any(c in r for r in episodes)]
        offset = all(all(_is_number(r.get(k)) for k in ("cube_x", "cube_y", "ee_x", "ee_y")) for r in episodes)
        rows = []
        for r in episodes:
            row = [('<span class="ok">success</span>' if r.get(c) else '<span class="fail">fail</span>')
                   if c == "success" else _num(r.get(c)) for c in cols]
            if offset:
                row.append(f"{100 * (r['cube_x'] - r['ee_x']):+.1f}, {100 * (r['cube_y'] - r['ee_y']):+.1f}")
            rows.append(row)
        header = cols + (["cube − gripper x, y (cm)"] if offset else [])
        is_open = " open" if len(episodes) <= EPISODE_ROWS_OPEN else ""
        out += (f"<details{is_open}><summary>the {len(episodes)} evaluation episodes</summary>"
                f"{_table(header, rows, 'nums')}</details>")
    console = _console_section(folder)  # `hilserl eval --console` journals its commands beside eval.json
    return out + (f"<h4>Browser console commands during this evaluation (console.jsonl)</h4>{console}" if console
                  else "")


def _health_section(run_dir: Path, config: dict | None) -> str:
    findings = _read_jsonl(run_dir / "health.jsonl")
    enabled = ((config or {}).get("health") or {}).get("enabled", True)
    if not findings:
        if not enabled:
            return _note("the health checks were off in this run (health.enabled=false); "
                         f"<code>hilserl health {_e(run_dir)}</code> runs them over its metrics")
        return _note("no health findings (health.jsonl): none of the checks fired")
    rows = [[f'<span class="{_e(f.get("severity", ""))}">{_e(f.get("severity", "–"))}</span>',
             f"<code>{_e(f.get('check', '–'))}</code>", _e(f.get("at", "–")), _e(f.get("message", "")),
             _e(f.get("advice", ""))] for f in findings]
    return _table(["severity", "check", "at", "what was seen", "advice"], rows)


def _console_section(run_dir: Path) -> str:
    rows = _read_jsonl(run_dir / "console.jsonl")
    if not rows:
        return ""
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r.get("command"))] = counts.get(str(r.get("command")), 0) + 1
    shown = rows[-CONSOLE_ROWS:]
    table = _table(["time", "command", "value", "applied", "env step", "episode", "step"],
                   [[_e(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))) if _is_number(r.get("time"))
                     else "–", _e(r.get("command")), _num(r.get("value")), _e(r.get("applied")),
                     _num(r.get("env_step")), _num(r.get("episode")), _num(r.get("step"))] for r in shown])
    summary = ", ".join(f"{_e(k)} ×{v}" for k, v in sorted(counts.items()))
    return (f"<p>{len(rows)} commands from the browser console: {summary}.</p><details><summary>the "
            f"{'newest ' + str(len(shown)) if len(shown) < len(rows) else len(shown)} commands</summary>{table}"
            "</details>")


def _plot_key(path: Path) -> tuple[int, str]:
    return (PLOT_ORDER.index(path.stem) if path.stem in PLOT_ORDER else len(PLOT_ORDER), path.name)


def _plots_section(run_dir: Path, snap: Path, has_metrics: bool) -> str:
    pngs = sorted((run_dir / "plots").glob("*.png"))
    csvs = sorted((run_dir / "metrics").glob("*.csv"))
    stale = bool(pngs and csvs) and max(c.stat().st_mtime for c in csvs) > min(p.stat().st_mtime for p in pngs)
    note = ""
    if (not pngs or stale) and has_metrics:
        from hilserl.monitor.plots import plot_training

        drawn = plot_training(snap)
        names = {p.name for p in drawn}
        pngs = drawn + [p for p in pngs if p.name not in names]
        note = _note("drawn now from metrics/*.csv " + ("(the run has no plots/ yet)" if not stale else
                                                        "(plots/ is older than the metrics)") +
                     f"; <code>hilserl plot {_e(run_dir)}</code> writes them into the run folder")
    if not pngs:
        return _note("no plots (plots/ is empty and there are no metrics to draw yet)")
    figures = "".join(_figure(p, p.name) for p in sorted(pngs, key=_plot_key))
    return f"{note}<div class='grid plots'>{figures}</div>"


def _run_status(run_dir: Path) -> str:
    """Whether a process holds the run's lock (training now), read without taking it."""
    import fcntl

    lock = run_dir / ".learner.lock"
    if not lock.is_file():
        return "not running"
    try:
        with open(lock, "r") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return '<span class="warning">training now</span> (a process holds the run\'s lock): a snapshot'
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        return "unknown"
    return "not running"


def _run_sections(run_dir: Path, tmp: Path) -> tuple[list[tuple[str, str, str]], dict | None]:
    """(id, title, html) of the run's sections, and its config."""
    from hilserl.monitor.plots import keep_newest, read_csv

    config = _read_json(run_dir / "config.json") or None
    parsed, why_not = _parse_config(config)
    snap = _snapshot_metrics(run_dir, tmp)
    episodes = keep_newest(read_csv(snap / "metrics" / "episodes.csv"), "episode")
    learner = keep_newest(read_csv(snap / "metrics" / "learner.csv"), "learner_step")
    evals = keep_newest(read_csv(snap / "metrics" / "eval.csv"), "env_step")
    cfg = config or {}
    env, policy, train = cfg.get("env") or {}, cfg.get("policy") or {}, cfg.get("train") or {}
    policy_type = parsed.policy.type if parsed is not None else policy.get("type", "?")  # old configs lack it
    last = _read_json(run_dir / "checkpoints" / "last.json")
    ckpt = (f"<code>{_e(run_dir / 'checkpoints' / str(last['path']))}</code> (env step {_num(last.get('env_step'))})"
            if last.get("path") else "none yet")
    best = _read_json(run_dir / "best_model" / "evaluation.json")
    facts = [("run folder", f"<code>{_e(run_dir.resolve())}</code>"), ("status", _run_status(run_dir)),
             ("environment", _e(f"{env.get('type', '?')}, observations {env.get('obs_type', '?')}"
                                f"{', cameras ' + ', '.join(env['cameras']) if env.get('cameras') else ''}")),
             ("policy", _e(f"{policy_type}, encoder {policy.get('encoder', '?')}")),
             ("budget", f"{_num(train.get('total_env_steps'))} env steps, {_num(train.get('num_demos'))} demos"),
             ("last checkpoint", ckpt)]
    if best:
        facts.append(("best model", f"<code>best_model/</code>: success {_pct(best.get('success_rate'))} at env step "
                                    f"{_num(best.get('env_step'))}"))
    summary = (_facts(facts) + "<h3>Episodes</h3>" + _episodes_summary(episodes, train.get("total_env_steps")) +
               "<h3>Learner</h3>" + _learner_summary(learner))
    sections = [("run", "Run", summary),
                ("plots", "Training curves", _plots_section(run_dir, snap, bool(episodes or learner or evals)))]
    if evals:
        sections.append(("evals", "Evaluations during training (metrics/eval.csv)", _eval_csv_section(evals)))
    sections += [("health", "Health checks (health.jsonl)", _health_section(run_dir, config)),
                 ("doctor", "Config doctor", _doctor_section(parsed, why_not)),
                 ("config", "Config", _config_section(config, run_dir))]
    console = _console_section(run_dir)
    if console:
        sections.append(("console", "Browser console commands (console.jsonl)", console))
    return sections, config


def _label(folder: Path, root: Path) -> str:
    try:
        rel = folder.resolve().relative_to(root.resolve())
        return str(rel) if str(rel) != "." else folder.resolve().name
    except ValueError:
        return str(folder)


def render(src: Sources, tmp: Path) -> str:
    sections: list[tuple[str, str, str]] = []
    config = None
    if src.run_dir is not None:
        sections, config = _run_sections(src.run_dir, tmp)
    videos = VideoBudget()
    scale = ((config or {}).get("env") or {}).get("action_scale")
    if src.evals:
        body = "".join(_eval_json_section(f, _label(f, src.root), scale, videos) for f in src.evals)
        sections.insert(1 if sections else 0, ("evaluation", "Evaluation (eval.json)", body))
    if src.expert is not None:
        body = "".join(_figure(p, p.name) for p in sorted(src.expert.glob("expert_*.png")))
        body += "".join(videos.embed(p, p.name) for p in sorted(src.expert.glob("expert_*.mp4")))
        sections.append(("expert", "Scripted expert demo", f"<div class='grid'>{body}</div>"))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    nav = "".join(f'<a href="#{sid}">{_e(title.split(" (")[0])}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(title)}</h2>{content}</section>' for sid, title, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>hilserl report: {_e(src.root.resolve().name)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>hilserl report: <code>{_e(src.root.resolve())}</code></h1>"
            f"<p>written {_e(stamp)} by <code>hilserl report</code>; self-contained (opens offline)</p>"
            f"<nav>{nav}</nav></header><main>{body}</main></body></html>\n")


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of `run_dir` (a run, demo or eval folder) to `out` (default ``<run_dir>/report.html``);
    returns its path. Raises ReportError for a folder with nothing to report or an unwritable `out`."""
    from hilserl.fileio import atomic_write

    src = find_sources(Path(run_dir))
    out = Path(out) if out is not None else src.root / REPORT_FILE
    with tempfile.TemporaryDirectory(prefix="hilserl-report-") as tmp:
        page = render(src, Path(tmp))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda path: Path(path).write_text(page, encoding="utf-8"))
    except OSError as err:
        raise ReportError(f"{out}: cannot write the report ({err.strerror or err})") from None
    return out


# ------------------------------------------------------------------------------------------------ command line
def add_parser(sub) -> argparse.ArgumentParser:
    """`hilserl report RUN_DIR [--out FILE]` on the `hilserl` subparsers."""
    p = sub.add_parser("report", help="one self-contained HTML page of a run (plots, evaluation, video, health, "
                       "doctor, config); opens offline")
    p.add_argument("run_dir", help="a run folder (config.json), a hilserl demo folder or a hilserl eval folder")
    p.add_argument("--out", default=None, help=f"the HTML file to write (default: RUN_DIR/{REPORT_FILE})")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, overrides: list[str] | None = None) -> int:
    if overrides:
        print(f"error: hilserl report takes no config overrides (got {overrides[0]})", file=sys.stderr)
        return 2
    try:
        path = write_report(Path(args.run_dir), Path(args.out) if args.out else None)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hilserl report", description="one self-contained HTML page of a run")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return run(parser.parse_args(["report", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    raise SystemExit(main())
