"""`hilserl record`: demonstrations into a demo dataset, on the real arm (leader arm, keyboard or gamepad) or in the
simulation (the scripted expert plays the person).

One episode: the env is reset, the policy side sends "hold still" (no motion, gripper unchanged) and the person
moves the arm (on the real arm the env replaces the action with the person's and reports it in
``info["intervention_action"]``; in the simulation `person` returns the action). The episode ends on the person's
SUCCESS key (or the simulation's ground truth), FAILURE, RE-RECORD, QUIT or the time limit. Successful episodes are
stored with the success reward on their last step and the step penalty on the others (the caller passes them from
the config's reward section, their only home), terminated; failed and
timed-out ones are dropped unless ``keep_failed``; re-recorded ones are always dropped and the episode is run again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hilserl.data.demo_dataset import DemoDataset
from hilserl.data.episodes import Episode
from hilserl.gripper import GRIPPER_STAY


@dataclass
class RecordSummary:
    saved: int = 0
    dropped_failed: int = 0
    rerecorded: int = 0
    quit: bool = False
    lengths: list[int] = field(default_factory=list)


def hold_still(gripper_mode: str) -> np.ndarray:
    """The action that keeps the arm where it is: no motion; the discrete gripper stays as it is, the continuous
    one is held open (a continuous command is an absolute jaw target, so "unchanged" has no fixed value)."""
    return np.array([0.0, 0.0, 0.0, GRIPPER_STAY if gripper_mode == "discrete" else 1.0], dtype=np.float32)


def record_episode(env, *, success_reward: float, step_penalty: float,
                   person: Callable[[dict, dict], np.ndarray | None] | None = None, gripper_mode: str = "discrete",
                   seed: int | None = None, task: str = "") -> tuple[str, Episode | None]:
    """Run one episode. Returns (outcome, episode): outcome is "success", "failure", "timeout", "rerecord" or
    "quit"; the episode is None for "rerecord" and "quit". `person(obs, info)` gives the person's action or None
    (its `reset()`, if it has one, is called at the start of the episode)."""
    obs, info = env.reset(seed=seed)
    if person is not None and hasattr(person, "reset"):
        person.reset()
    observations, actions, flags = [obs], [], []
    hold = hold_still(gripper_mode)
    outcome = "timeout"
    while True:
        proposed = person(obs, info) if person is not None else None
        action = hold if proposed is None else np.asarray(proposed, dtype=np.float32)
        obs, _, terminated, truncated, info = env.step(action)
        if "intervention_action" in info:  # the real arm: the person's motion replaced ours
            executed, by_person = np.asarray(info["intervention_action"], np.float32), bool(info["is_intervention"])
        else:
            executed, by_person = action, proposed is not None
        events = set(info.get("teleop_events", ()))
        if "quit" in events:
            return "quit", None
        if "rerecord" in events:
            return "rerecord", None
        observations.append(obs)
        actions.append(executed)
        flags.append(by_person)
        if "success" in events or info.get("is_success", False):
            outcome = "success"
            break
        if "failure" in events:
            outcome = "failure"
            break
        if terminated or truncated:
            break
    rewards = np.full(len(actions), step_penalty, dtype=np.float32)
    if outcome == "success":
        rewards[-1] = success_reward
    episode = Episode(observations, np.stack(actions), rewards, terminated=outcome == "success",
                      truncated=outcome != "success", is_intervention=np.asarray(flags, dtype=bool), task=task)
    return outcome, episode


def record_demos(env, dataset: DemoDataset, num_episodes: int, *, success_reward: float, step_penalty: float,
                 person=None, gripper_mode: str = "discrete", keep_failed: bool = False, seed: int = 0,
                 max_attempts: int | None = None, task: str = "", log: Callable[[str], None] = print,
                 before_episode: Callable[[], bool] | None = None,
                 on_outcome: Callable[[str, Episode | None, bool], None] | None = None) -> RecordSummary:
    """Record until `num_episodes` episodes are saved in `dataset` (or the person quits, or `max_attempts`).
    `before_episode()` (the console: pause, stop) ends the recording when it returns False; `on_outcome(outcome,
    episode, saved)` sees every attempt."""
    summary = RecordSummary()
    attempts = 0
    limit = max_attempts if max_attempts is not None else 5 * num_episodes + 10
    report = on_outcome or (lambda outcome, episode, saved: None)
    while summary.saved < num_episodes and attempts < limit:
        if before_episode is not None and not before_episode():
            summary.quit = True
            log(f"stopped: {summary.saved} episodes saved in {dataset.root}")
            break
        attempts += 1
        outcome, episode = record_episode(env, person=person, gripper_mode=gripper_mode,
                                          success_reward=success_reward, step_penalty=step_penalty,
                                          seed=seed + attempts, task=task)
        if outcome == "quit":
            report(outcome, episode, False)
            summary.quit = True
            log(f"quit: {summary.saved} episodes saved in {dataset.root}")
            break
        if outcome == "rerecord":
            report(outcome, episode, False)
            summary.rerecorded += 1
            log(f"episode {summary.saved + 1}: re-recording")
            continue
        if outcome != "success" and not keep_failed:
            report(outcome, episode, False)
            summary.dropped_failed += 1
            log(f"episode {summary.saved + 1}: {outcome.upper()} after {episode.length} steps, not kept "
                f"(press the success key when the cube is lifted; --keep_failed keeps failures)")
            continue
        dataset.add_episode(episode)
        report(outcome, episode, True)
        summary.saved += 1
        summary.lengths.append(episode.length)
        log(f"episode {summary.saved}/{num_episodes}: {outcome.upper()}, {episode.length} steps, "
            f"{int(episode.is_intervention.sum())} by the person, saved")
    return summary
