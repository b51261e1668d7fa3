"""The leader-arm intervention detector on synthetic tracking-error traces shaped like the real arm's.

Units: the error is the norm over six joints in radians, one sample per 100 ms control tick. Noise levels follow
the STS3215's encoder (0.0015 rad per step, readings jitter by 1-2 steps); see hilserl.robot.intervention.
"""

import numpy as np
import pytest

from hilserl.robot.intervention import DetectorConfig, TrackingErrorDetector

SERVO_NOISE = 0.003  # rad, std of the error norm while tracking


def tracking(rng, n, base=0.02):
    """The leader follows a policy that keeps changing speed: a lag that varies smoothly plus encoder noise."""
    speed = np.clip(np.cumsum(rng.normal(0, 0.3, n)), -1, 1)  # policy speed in [-1, 1], random walk
    lag = base + 0.05 * np.abs(speed)  # servo lag grows with speed (up to 0.05 rad at full speed)
    return np.abs(lag + rng.normal(0, SERVO_NOISE, n))


def grab(start, peak, steps=1):
    """A person pulls the leader off its target within `steps` ticks."""
    return np.linspace(start, peak, steps + 1)[1:]


def guide(rng, n, level=0.2):
    """A person moving the leader: the follower lags by a varying amount (their speed changes)."""
    t = np.arange(n)
    return level + 0.1 * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 6)) + rng.normal(0, 0.01, n)


def hold(rng, n, level=0.25):
    """The person holds the leader still where the follower cannot match it (wrist roll, workspace bound):
    a large but steady error with a little hand tremor."""
    return level + rng.normal(0, 0.004, n)


def settle(rng, n, start, base=0.02):
    """The person let go: the error decays to tracking level within a few ticks."""
    t = np.arange(1, n + 1)
    return base + (start - base) * np.exp(-t / 1.5) + rng.normal(0, SERVO_NOISE, n)


def run(detector, trace):
    return np.array([detector.update(e) for e in trace])


@pytest.fixture
def detector():
    return TrackingErrorDetector()  # the defaults under test


@pytest.mark.parametrize("seed", range(20))
def test_tracking_a_moving_policy_never_starts(detector, seed):
    rng = np.random.default_rng(seed)
    assert not run(detector, tracking(rng, 600)).any()


def test_policy_jumping_from_rest_to_full_speed_does_not_start(detector):
    rng = np.random.default_rng(0)
    # lag steps from 0.02 to 0.07 rad and back, repeatedly (bang-bang policy)
    trace = np.tile(np.r_[np.full(5, 0.02), np.full(5, 0.07)], 30) + rng.normal(0, SERVO_NOISE, 300)
    assert not run(detector, trace).any()


@pytest.mark.parametrize("offset", [0.1, 0.3, 0.6])
def test_large_steady_offset_does_not_start(detector, offset):
    """A sagging leader or a calibration a few degrees off: large error, but steady."""
    rng = np.random.default_rng(1)
    assert not run(detector, offset + rng.normal(0, SERVO_NOISE, 300)).any()


@pytest.mark.parametrize("seed", range(10))
def test_bumps_and_jitter_do_not_start(detector, seed):
    rng = np.random.default_rng(seed)
    trace = tracking(rng, 400)
    bumps = rng.choice(400, 15, replace=False)
    trace[bumps] += rng.uniform(0.02, 0.06, 15)  # a cable tug, the arm touching the table: one tick
    trace[200:230] += rng.normal(0, 0.01, 30)  # a burst of vibration
    assert not run(detector, trace).any()


def test_grab_starts_on_the_jump(detector):
    rng = np.random.default_rng(2)
    pre = tracking(rng, 50)
    out = run(detector, np.r_[pre, grab(pre[-1], 0.3)])
    assert not out[:-1].any() and out[-1]


def test_slower_grab_over_two_ticks_starts_within_them(detector):
    rng = np.random.default_rng(3)
    pre = tracking(rng, 50)
    out = run(detector, np.r_[pre, grab(pre[-1], 0.4, steps=2)])
    assert not out[:50].any() and out[50:].any()


@pytest.mark.parametrize("seed", range(10))
def test_full_intervention_grab_guide_hold_release(detector, seed):
    """Grab, guide for 3 s, then hold still: on from the grab through the guiding, released while holding still
    (the person stopped moving) at most one window after the motion stopped. From then on the leader is stiff
    again and its error is servo lag against its own targets (closed loop: the regime follows the detector),
    and the detector stays off."""
    rng = np.random.default_rng(seed)
    pre = tracking(rng, 40)
    assert not run(detector, pre).any()
    assert run(detector, grab(pre[-1], 0.3))[-1]
    assert run(detector, guide(rng, 30)).all(), "released while the person was still moving the leader"
    still = hold(rng, 20)
    released_at = next((k for k, e in enumerate(still) if not detector.update(e)), None)
    assert released_at is not None and released_at <= detector.window, "not released after a steady window"
    assert not run(detector, tracking(rng, 60)).any(), "re-started after the release"


def test_release_on_letting_go_after_guiding(detector):
    rng = np.random.default_rng(4)
    pre = tracking(rng, 30)
    parts = [pre, grab(pre[-1], 0.3), guide(rng, 20), settle(rng, 30, 0.3)]
    out = run(detector, np.concatenate(parts))
    on_until = len(parts[0]) + len(parts[1]) + len(parts[2])
    assert out[on_until - 1]
    released = np.flatnonzero(~out[on_until:])
    assert released.size and released[0] <= detector.window + 3  # about one window after letting go
    assert not out[on_until + released[0]:].any()


def test_hysteresis_keeps_control_between_thresholds():
    """A variance between the two thresholds neither starts nor releases."""
    d = TrackingErrorDetector(window=4, start_threshold=1e-2, release_threshold=1e-4)
    mid = [0.0, 0.04, 0.0, 0.04] * 5  # two-sample variance 4e-4: between the thresholds
    assert not run(d, mid).any()
    d.reset()
    run(d, [0.0, 0.0, 0.0, 0.5])  # start
    assert d.intervening
    assert run(d, mid).all()


def test_reset_forgets_the_episode(detector):
    run(detector, [0.02, 0.4])
    assert detector.intervening
    detector.reset()
    assert not detector.intervening
    assert not detector.update(0.02)  # a single sample after reset: no variance yet


def test_no_release_before_the_window_is_full():
    d = TrackingErrorDetector(window=10, start_threshold=1e-3, release_threshold=1e-4)
    out = run(d, [0.0, 0.3] + [0.3] * 7)  # 9 samples: window not full, and the jump is still inside it
    assert out[1:].all()


@pytest.mark.parametrize("kwargs, key", [
    (dict(window=1), "window"),
    (dict(start_window=1), "start_window"),
    (dict(window=5, start_window=6), "start_window"),
    (dict(start_threshold=-1.0), "start_threshold"),
    (dict(release_threshold=float("nan")), "release_threshold"),
    (dict(start_threshold=1e-4, release_threshold=1e-3), "release_threshold"),
])
def test_bad_settings_name_the_field(kwargs, key):
    with pytest.raises(ValueError, match=key):
        TrackingErrorDetector(**kwargs)
    with pytest.raises(ValueError, match=key):
        DetectorConfig(**kwargs)


def test_bad_error_value_is_refused(detector):
    with pytest.raises(ValueError, match="tracking error"):
        detector.update(float("nan"))


def test_config_builds_the_same_detector():
    d = DetectorConfig(window=8, start_window=3, start_threshold=5e-3, release_threshold=2e-4).build()
    assert (d.window, d.start_window, d.start_threshold, d.release_threshold) == (8, 3, 5e-3, 2e-4)
