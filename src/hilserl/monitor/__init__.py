"""Monitoring a training run: metrics (CSV + TensorBoard + console lines), plots, and the config doctor.

Heavy imports (torch for TensorBoard, matplotlib, the training config) happen only when a name is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MetricsLogger": "metrics",
    "CsvTable": "metrics",
    "format_episode_line": "metrics",
    "format_learner_line": "metrics",
    "plot_training": "plots",
    "running_average": "plots",
    "keep_newest": "plots",
    "read_csv": "plots",
    "Finding": "doctor",
    "diagnose": "doctor",
    "render_table": "doctor_report",
    "run_doctor": "doctor_report",
    "summary_line": "doctor_report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hilserl.monitor' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hilserl.monitor.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
