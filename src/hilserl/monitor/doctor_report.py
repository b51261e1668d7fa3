"""How `hilserl doctor` shows its findings: a table coloured by severity, one summary line, and the exit code.

    findings = diagnose(cfg)           # hilserl.monitor.doctor: list[Finding], errors first
    render_table(findings)             # rich table + one-line summary
    code = run_doctor("configs/sim_grasp.json", ["--policy.temperature_init=0.2"])   # 1 if any error
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hilserl.monitor.doctor import DECISIONS, SEVERITIES, Finding, diagnose
from hilserl.train.config import TrainConfig

STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}
MARKS = {"error": "✗", "warning": "!", "info": "i"}  # readable without colour too


def _show(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else "None" if v is None else str(v)


def summary_line(findings: Sequence[Finding]) -> str:
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    if not findings:
        return "doctor: no problems found - the settings match the HIL-SERL reference."
    parts = []
    for s, word in (("error", "error"), ("warning", "warning"), ("info", "note")):
        if counts[s]:
            parts.append(f"{counts[s]} {word}{'s' if counts[s] != 1 else ''}")
    tail = (" - fix the errors before training." if counts["error"] else
            " - training can start; read the warnings." if counts["warning"] else " - nothing to fix.")
    return "doctor: " + ", ".join(parts) + tail


def render_table(findings: Sequence[Finding], console=None) -> None:
    """Print the findings as a rich table (setting | value | recommended | why, coloured by severity) + a summary."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if findings:
        table = Table(title=f"hilserl doctor  (✗ error, ! warning, i note; why each default: {DECISIONS})",
                      show_lines=True, title_justify="left")
        table.add_column("setting", no_wrap=True)
        table.add_column("value")
        table.add_column("recommended")
        table.add_column("why", ratio=1)
        for f in findings:
            table.add_row(f"{MARKS[f.severity]} {f.setting}", _show(f.value), _show(f.recommended), f.why,
                          style=STYLES[f.severity])
        console.print(table)
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    style = "bold red" if counts["error"] else "yellow" if counts["warning"] else "green"
    console.print(summary_line(findings), style=style)


def run_doctor(config_path: str | Path | None, overrides: list[str] | None = None, console=None) -> int:
    """Load the config (a `hilserl.config.ConfigError` propagates), print the findings; 1 if any error, else 0."""
    from hilserl.config import load_config

    cfg = load_config(TrainConfig, config_path, overrides or [])
    findings = diagnose(cfg)
    render_table(findings, console=console)
    return 1 if any(f.severity == "error" for f in findings) else 0
