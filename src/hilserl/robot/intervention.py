"""When is a person holding the leader arm? Variance of the leader-follower tracking error, with hysteresis.

While the policy acts, the leader arm is driven to follow the follower (torque on). Its tracking error — the norm
over the six joints, in radians — is then servo lag plus encoder noise: small and smooth. A person who grabs the
leader pulls it off its target within a tick, so the error *jumps*; a person who guides the arm keeps it moving;
a person who lets go leaves it still. Looking at the error's variance rather than its size makes the detector
blind to steady offsets (a leader that sags under gravity, a gripper that cannot quite close, a calibration that
is a few degrees off) and to the slow error changes of a policy that speeds up or slows down.

* start: variance of the last `start_window` errors above `start_threshold`. For two samples the variance is
  (jump / 2)², so the default 2e-3 rad² fires on a jump of more than 0.089 rad (5°) in one 100 ms tick.
* release: variance over the last `window` errors below `release_threshold`: the error has settled for a whole
  window (default 10 ticks = 1 s at 10 Hz, standard deviation below 0.01 rad) — the person has stopped moving
  the leader or let go. The history starts over at a release: when the leader turns stiff again its error
  changes level (from the distance to the follower to its own servo lag), and that step is not a new grab.

The gap between the two thresholds is the hysteresis: a person moving the leader keeps the variance between
them and stays in control. The defaults come from the synthetic traces in ``tests/test_intervention.py`` built
from the model below (the encoder resolution is a fact; the jitter, lag and grab sizes are assumptions, not
measurements); re-tune them on the real arm by logging `info["tracking_error"]` while tracking, grabbing,
guiding and letting go.

* STS3215 encoder: 4096 steps per turn, 0.0015 rad per step; readings assumed to jitter by 1-2 steps, so twelve joints
  (two arms) give an error norm with a standard deviation of about 0.003 rad (variance ~1e-5 rad²).
* A position servo following a moving target lags by about velocity × 30 ms; the policy's fastest change of
  speed (2 cm per tick, from rest) changes that lag by at most ~0.06 rad per tick (two-sample variance ≤ 1e-3).
* A person grabbing the leader moves it by 0.15-0.5 rad within a tick against the servo (variance ≥ 5e-3).

Margins on those traces (200 random seeds each): tracking a policy that keeps changing speed peaks at a
two-sample variance of 7e-4 (start threshold 2e-3); a person guiding the arm never goes below a window variance
of 2.4e-3 (release threshold 1e-4); a person holding still with hand tremor stays below 5e-5, so it releases.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

DEFAULT_WINDOW = 10
DEFAULT_START_WINDOW = 2
DEFAULT_START_THRESHOLD = 2e-3  # rad²: a jump of > 0.089 rad within one tick
DEFAULT_RELEASE_THRESHOLD = 1e-4  # rad²: settled to a standard deviation of < 0.01 rad over the window


@dataclass
class DetectorConfig:
    """Thresholds of the leader-arm intervention detector (``env.detector``); see `TrackingErrorDetector`."""

    window: int = DEFAULT_WINDOW
    start_window: int = DEFAULT_START_WINDOW
    start_threshold: float = DEFAULT_START_THRESHOLD
    release_threshold: float = DEFAULT_RELEASE_THRESHOLD

    def __post_init__(self) -> None:
        _check(self.window, self.start_window, self.start_threshold, self.release_threshold)

    def build(self) -> "TrackingErrorDetector":
        return TrackingErrorDetector(self.window, self.start_threshold, self.release_threshold, self.start_window)


def _check(window: int, start_window: int, start_threshold: float, release_threshold: float) -> None:
    if window < 2:
        raise ValueError(f"window: expected at least 2 steps, got {window}")
    if not 2 <= start_window <= window:
        raise ValueError(f"start_window: expected 2 <= start_window <= window ({window}), got {start_window}")
    for name, v in (("start_threshold", start_threshold), ("release_threshold", release_threshold)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name}: expected a positive variance in rad², got {v}")
    if release_threshold >= start_threshold:
        raise ValueError(f"release_threshold: expected below start_threshold ({start_threshold}) so that the "
                         f"detector has hysteresis, got {release_threshold}")


class TrackingErrorDetector:
    """Fed one tracking error per control step; says whether a person is intervening."""

    def __init__(self, window: int = DEFAULT_WINDOW, start_threshold: float = DEFAULT_START_THRESHOLD,
                 release_threshold: float = DEFAULT_RELEASE_THRESHOLD, start_window: int = DEFAULT_START_WINDOW):
        _check(window, start_window, start_threshold, release_threshold)
        self.window = int(window)
        self.start_window = int(start_window)
        self.start_threshold = float(start_threshold)
        self.release_threshold = float(release_threshold)
        self._errors: deque[float] = deque(maxlen=self.window)
        self.intervening = False
        self.start_variance = 0.0
        self.window_variance = 0.0

    def reset(self) -> None:
        """A new episode: forget the history, nobody is intervening."""
        self._errors.clear()
        self.intervening = False
        self.start_variance = self.window_variance = 0.0

    def update(self, error: float) -> bool:
        error = float(error)
        if not math.isfinite(error) or error < 0:
            raise ValueError(f"tracking error: expected a finite norm >= 0 (radians), got {error}")
        self._errors.append(error)
        recent = list(self._errors)
        self.start_variance = float(np.var(recent[-self.start_window:])) if len(recent) >= self.start_window else 0.0
        self.window_variance = float(np.var(recent))
        if not self.intervening:
            self.intervening = self.start_variance > self.start_threshold
        elif len(recent) == self.window and self.window_variance < self.release_threshold:
            self.intervening = False
            # the error changes level when the leader turns stiff again; that step is not a new grab
            self._errors.clear()
        return self.intervening


__all__ = ["DetectorConfig", "TrackingErrorDetector", "DEFAULT_START_THRESHOLD", "DEFAULT_RELEASE_THRESHOLD"]
