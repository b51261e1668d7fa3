"""What `hilserl train` is handed when the console is on: `Console`.

It attaches to the training loop with a few hooks and changes nothing it does not have to:

* the actor's human becomes `ConsoleHuman`: the browser person's take-over goes through `TeleopIntervention`,
  exactly as the terminal keyboard's does, and `ConsoleHuman.act` returns its action, so the actor stores the step
  as an intervention the way it stores the simulated human's (`Actor.run_episode`); without a take-over the
  simulated human (if any) acts as before. While the person drives the simulation it runs at ``env.fps``;
* the actor's env is wrapped in `ConsoleEnv`: it shows each observation and ends an episode the person marked
  (success: the success reward and a terminal step, as the recording keys do; failure and stop: truncated);
* the metrics logger and the health reporter are teed: episodes, learner points, evaluations and health findings
  reach the page as they are logged.

Without a command from the page the run is the run without the console (the same actions, the same buffers).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np

from hilserl.console.hub import ConsoleHub
from hilserl.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY, STATE_CLOSED
from hilserl.robot.teleop import Event, TeleopIntervention

COMMANDS = ("takeover", "giveback", "toggle", "gripper_close", "gripper_open", "success", "failure", "rerecord",
            "pause", "resume", "stop", "threshold")
_DRIVE = ("takeover", "giveback", "toggle", "gripper_close", "gripper_open")
# what the page may ask of each command's loop (the page shows only these controls; others are refused)
_TRAIN = (*_DRIVE, "success", "failure", "pause", "resume", "stop", "threshold")
CONTROLS = {
    "train": _TRAIN,  # hilserl train / demo
    "actor": _TRAIN,  # hilserl actor: as training (Stop ends this actor)
    "eval": ("pause", "resume", "stop", "threshold"),  # hilserl eval: the policy alone is measured
    "record": (*_DRIVE, "success", "failure", "rerecord", "pause", "resume", "stop"),  # hilserl record
    "reward_record": ("success", "failure", "rerecord", "pause", "resume", "stop"),  # hilserl reward record
    "collect": ("pause", "resume", "stop"),  # hilserl reward record --sim: the simulation labels its own frames
}
# a mark from the page as the recording loops read the terminal's keys (`info["teleop_events"]`)
MARK_EVENTS = {"success": "success", "failure": "failure", "rerecord": "rerecord", "stop": "quit"}
SPEED, FAST_SPEED = 0.5, 1.0  # the terminal keyboard's speed; Shift for full commands


class BrowserKeys:
    """The page's keys as a teleop device (`poll() -> [Event]`, `action()`), for `TeleopIntervention`."""

    def __init__(self, hub: ConsoleHub):
        self.hub = hub
        self.events: list[Event] = []
        self.gripper = GRIPPER_STAY

    def poll(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def action(self) -> np.ndarray:
        direction, fast = self.hub.motion()
        gripper, self.gripper = self.gripper, GRIPPER_STAY  # a tap closes or opens once
        return np.array([*(direction * (FAST_SPEED if fast else SPEED)), gripper], dtype=np.float32)

    def close(self) -> None:
        pass


class ConsoleHuman:
    """The actor's human with the browser person first: their take-over wins; otherwise `inner` (the simulated
    human, or None) decides as before. Commands from the page are taken here, before every step's action."""

    def __init__(self, inner, console: "Console", gripper_mode: str, fps: float | None):
        self.inner = inner
        self.console = console
        self.keys = BrowserKeys(console.hub)
        self.teleop = TeleopIntervention(self.keys, gripper_mode)
        self.period = 1.0 / fps if fps else 0.0
        self._next_tick = 0.0

    @property
    def intervening(self) -> bool:
        return self.teleop.intervening or bool(getattr(self.inner, "intervening", False))

    def start_episode(self, episode: int) -> None:
        self.teleop.reset()  # as on the terminal: a take-over ends with its episode
        self.console.start_episode(episode)
        if self.inner is not None:
            self.inner.start_episode(episode)

    def act(self, step: int) -> np.ndarray | None:
        self.console.poll()
        human = self.teleop.step(gripper_closed=self.console.gripper_closed())
        if human.is_intervention:
            self._pace()
            return human.action
        self._next_tick = 0.0
        return self.inner.act(step) if self.inner is not None else None

    def _pace(self) -> None:
        """The simulation at the arm's control rate while a person drives it (a no-op on the real arm: 0)."""
        if not self.period:
            return
        now = time.monotonic()
        if self._next_tick > now:
            time.sleep(self._next_tick - now)
        self._next_tick = max(now, self._next_tick) + self.period


class ConsolePerson:
    """`hilserl record`'s person with the browser person first: `person(obs, info)` gives the action (or None: hold
    still); while the browser person has taken over, their keys drive, otherwise `inner` (the scripted expert in the
    simulation, or None) does."""

    def __init__(self, inner, console: "Console", gripper_mode: str, fps: float | None):
        self.inner = inner
        self.human = console.human = ConsoleHuman(None, console, gripper_mode, fps)

    def reset(self) -> None:
        self.human.teleop.reset()  # a take-over ends with its episode, as in training
        if hasattr(self.inner, "reset"):
            self.inner.reset()

    def __call__(self, obs, info):
        action = self.human.act(0)
        if action is not None:
            return action
        return self.inner(obs, info) if self.inner is not None else None


class ConsoleEnv(gym.Wrapper):
    """Shows every observation on the page and ends an episode the person marked. A mark also reaches the loop as
    the terminal's key would (``info["teleop_events"]``: success, failure, rerecord, quit), which is how the
    recording commands read it and decide. With `success_reward` (training, the actor) the wrapper decides: a
    success mark is the success reward on a terminal step, as the recording keys give it; failure and stop cut the
    episode. A reset starts the page's next episode (a loop that numbers its episodes,
    like training, sets the number right after)."""

    def __init__(self, env: gym.Env, console: "Console", success_reward: float | None = None):
        super().__init__(env)
        self.console = console
        self.success_reward = None if success_reward is None else float(success_reward)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.console.start_episode(self.console.episode + 1)
        self.console.observe(obs, info)
        return obs, info

    def step(self, action):
        if self.console.human is None:  # no human to take the page's commands before the action: take them here
            self.console.poll()
        obs, reward, terminated, truncated, info = self.env.step(action)
        mark = self.console.take_mark()
        if mark is not None:
            info = {**info, "console_mark": mark,
                    "teleop_events": [*info.get("teleop_events", ()), MARK_EVENTS[mark]]}
            # without a success reward a recording loop reads the event and decides (a success toggles a label)
            if self.success_reward is not None:
                if mark == "success":
                    reward, terminated, info["is_success"] = self.success_reward, True, True
                else:  # failure or stop: the episode is cut, the learner still bootstraps
                    truncated = True
        if not self.console.fed_transitions:
            self.console.env_stepped(action, reward, info)
        self.console.observe(obs, info)
        return obs, reward, terminated, truncated, info


def classifier_of(env):
    """The `RewardClassifierWrapper` in `env`'s wrapper chain, or None."""
    from hilserl.reward.wrapper import RewardClassifierWrapper

    while env is not None:
        if isinstance(env, RewardClassifierWrapper):
            return env
        env = getattr(env, "env", None)
    return None


def _plain(value):
    if isinstance(value, np.ndarray):
        return [round(float(v), 4) for v in value.reshape(-1)]
    if isinstance(value, (np.floating, float)):
        return round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


class _LoggerTee:
    """The metrics logger, with every record also shown on the page."""

    def __init__(self, inner, hub: ConsoleHub):
        self.inner, self.hub = inner, hub

    def log_episode(self, rec: dict) -> None:
        self.inner.log_episode(rec)

    def log_learner(self, rec: dict) -> None:
        self.inner.log_learner(rec)
        keys = ("learner_step", "env_step", "critic_loss", "temperature", "updates_per_s")
        self.hub.publish("learner", {**{k: _plain(rec[k]) for k in keys if k in rec}, **self._learner_extras(rec)})

    def _learner_extras(self, rec: dict) -> dict:
        return {}

    def log_eval(self, rec: dict) -> None:
        self.inner.log_eval(rec)
        self.hub.publish("eval", {k: _plain(v) for k, v in rec.items() if np.isscalar(v)})

    def __getattr__(self, name):
        return getattr(self.inner, name)


class _HealthTee:
    """The health reporter, with each new finding (and its advice) also shown on the page."""

    def __init__(self, inner, hub: ConsoleHub):
        self.inner, self.hub = inner, hub

    def _watch(self, method, *args) -> None:
        monitor = self.inner.monitor
        seen = len(monitor.findings) if monitor is not None else 0
        try:
            method(*args)
        finally:
            for finding in (monitor.findings[seen:] if monitor is not None else ()):
                self.hub.publish("finding", asdict(finding))

    def update(self, metrics: dict, learner_step: int) -> None:
        self._watch(self.inner.update, metrics, learner_step)

    def learner(self, rec: dict) -> None:
        self._watch(self.inner.learner, rec)

    def episode(self, rec: dict) -> None:
        self._watch(self.inner.episode, rec)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class _EpisodeTee(_LoggerTee):
    """The logger tee that also tells the console an episode was logged (its result column)."""

    def __init__(self, inner, console: "Console"):
        super().__init__(inner, console.hub)
        self.console = console

    def log_episode(self, rec: dict) -> None:
        self.inner.log_episode(rec)
        self.console.episode_done(rec)

    def _learner_extras(self, rec: dict) -> dict:
        actor = self.console.actor
        if actor is None or "learner_step" not in rec:
            return {}
        return {"policy_lag_updates": int(rec["learner_step"]) - int(actor.weights_version)}  # updates behind


class Console:
    """A loop's handle on the console: hooks in, the page's commands out. `server` (a `ConsoleServer`) is stopped
    by `close`. One attach per command: `attach` (hilserl train / demo), `attach_actor` (hilserl actor),
    `attach_eval` (hilserl eval), `attach_record` (hilserl record, and reward record on the arm) and `watch`
    (a loop that only shows frames, e.g. reward record in the simulation). Each sets the mode, and with it the
    controls the page offers (`CONTROLS`)."""

    def __init__(self, hub: ConsoleHub | None = None, server=None, log=print):
        self.hub = hub or ConsoleHub()
        self.server = server
        self.log = log
        self.mode = "train"
        self.paused = self.stop_requested = False
        self.fed_transitions = False  # training and the actor feed `transition`; other loops count at the env
        self.actor = None
        self.human: ConsoleHuman | None = None
        self.classifier = None
        self.journal: Path | None = None
        self._mark: str | None = None
        self._last_mark: str | None = None
        self._in_episode = False
        self._gripper_closed = False
        self.episode = self.step = self.env_step = 0
        self.episode_return = 0.0

    def attach(self, cfg, actor, logger, health, run_dir: Path, env_step: int = 0):
        """Put the console between the actor and its human and env; returns the (logger, health) to use."""
        self._wrap_actor(cfg, actor, "train")
        self.journal = Path(run_dir) / "console.jsonl"
        self.env_step = env_step
        self.hub.update(phase="training", run_dir=str(run_dir), env_step=env_step,
                        total_env_steps=cfg.train.total_env_steps)
        return _EpisodeTee(logger, self), _HealthTee(health, self.hub)

    def attach_actor(self, cfg, actor, actor_id: str, journal: Path | None = None) -> None:
        """`hilserl actor`: the same hooks on the actor's human and env; the loop calls `transition`,
        `before_episode`, `episode_done` and `link` (the learner's lag as this actor sees it)."""
        self._wrap_actor(cfg, actor, "actor")
        self.journal = journal
        self.hub.update(phase="acting", run_dir=f"actor {actor_id}", total_env_steps=cfg.train.total_env_steps)

    def attach_eval(self, cfg, actor, num_episodes: int, out_dir: Path | None = None) -> None:
        """`hilserl eval`: the policy alone (no take-over, no marks); frames, steps and results shown, pause and
        stop between episodes (`before_episode`), the classifier's threshold changeable."""
        from hilserl.envs import env_type

        self.mode, self.actor, self.fed_transitions = "eval", actor, False
        actor.env = ConsoleEnv(actor.env, self)
        self._env_sources(actor.env)
        self.journal = Path(out_dir) / "console.jsonl" if out_dir is not None else None
        self.hub.update(phase="evaluating", run_dir=str(out_dir or ""), env_type=env_type(cfg.env), env_step=0,
                        total_env_steps=None, total_episodes=num_episodes, **self._mode_state())

    def attach_record(self, env, person, gripper_mode: str, fps: float | None, what: str = "record",
                      journal: Path | None = None):
        """`hilserl record` ("record") and `hilserl reward record` on the arm ("reward_record"): returns the
        (env, person) to record with. The page's marks reach the loop as the terminal's keys do; in "record" the
        browser person can take over from `person` (the scripted expert in the simulation, nobody on the arm,
        where the leader arm moves it inside the env) and drive with the keys."""
        if what not in ("record", "reward_record"):
            raise ValueError(f"what: expected 'record' or 'reward_record', got {what!r}")
        self.mode, self.fed_transitions = what, False
        wrapped = ConsoleEnv(env, self)
        self._env_sources(wrapped)
        self.journal = journal
        if what == "record":
            person = ConsolePerson(person, self, gripper_mode, fps)
        self.hub.update(phase="recording", env_type="sim" if fps else "real", env_step=0, total_env_steps=None,
                        **self._mode_state())
        return wrapped, person

    def watch(self, run_dir: str = "") -> None:
        """A loop that only shows its frames and results (`show`, `episode_done`; `before_episode` for pause and
        stop): the simulation's own labelled recording, `hilserl reward record --sim`."""
        self.mode, self.fed_transitions = "collect", False
        self.hub.update(phase="recording", run_dir=run_dir, env_type="sim", env_step=0, total_env_steps=None,
                        **self._mode_state())

    def show(self, frames: dict, success: bool | None = None, **values) -> None:
        """`watch`'s frames (camera -> image) and numbers, one call per frame."""
        self.poll()
        self.hub.put_frames({k: np.array(v, copy=True) for k, v in frames.items()})
        self.step += 1
        self.env_step += 1
        self.hub.update(success_now=bool(success), step=self.step, env_step=self.env_step, **values)

    def _wrap_actor(self, cfg, actor, mode: str) -> None:
        from hilserl.envs import env_type

        sim = env_type(cfg.env) == "sim"
        self.mode, self.actor, self.fed_transitions = mode, actor, True
        actor.human = self.human = ConsoleHuman(actor.human, self, cfg.env.gripper_mode, cfg.env.fps if sim else None)
        actor.env = ConsoleEnv(actor.env, self, cfg.reward.success_reward)
        self._env_sources(actor.env)
        self.hub.update(env_type=env_type(cfg.env), **self._mode_state())

    def _env_sources(self, env) -> None:
        """What the page reads from the env: the real arm's cameras (objects with `read_raw` and `crop`: their full
        frames) and the reward classifier (its threshold, changeable from the page)."""
        cameras = getattr(env.unwrapped, "cameras", None)
        if isinstance(cameras, dict):
            self.hub.set_raw_sources({name: (cam.read_raw, getattr(cam, "crop", None))
                                      for name, cam in cameras.items() if hasattr(cam, "read_raw")})
        self.classifier = clf = classifier_of(env)
        self.hub.update(classifier=clf is not None, threshold=clf.threshold if clf else None,
                        consecutive_frames=clf.consecutive_frames if clf else None)

    def _mode_state(self) -> dict:
        return {"mode": self.mode, "controls": list(CONTROLS[self.mode]), "actor": self._idle_actor(),
                "paused": False}

    def _idle_actor(self) -> str:
        return "human" if self.mode in ("record", "reward_record") else "policy"

    # ------------------------------------------------------------------ hooks of the control loop
    def start_episode(self, episode: int) -> None:
        self.episode, self.step, self.episode_return = episode, 0, 0.0
        self._mark = self._last_mark = None
        self._in_episode = True
        self.hub.update(episode=episode, step=0, episode_return=0.0, actor=self._idle_actor(), label=False)

    def observe(self, obs, info: dict) -> None:
        pixels = obs.get("pixels") if isinstance(obs, dict) else None
        if pixels:
            self.hub.put_frames({k: np.array(v, copy=True) for k, v in pixels.items()})
        state = obs.get("state") if isinstance(obs, dict) else None
        if state is not None and len(state) > STATE_CLOSED:
            self._gripper_closed = bool(state[STATE_CLOSED] > 0.5)
        values = {"success_now": bool(info.get("is_success", False)), "gripper_closed": self._gripper_closed}
        if "ee_pos" in info:
            values["ee_pos"] = _plain(np.asarray(info["ee_pos"], dtype=float))
        if "reward_classifier_prob" in info:
            values["classifier_prob"] = _plain(info["reward_classifier_prob"])
            values["classifier_consecutive"] = int(info.get("classifier_consecutive", 0))
        self.hub.update(**values)

    def transition(self, t) -> None:
        """A stored step (the learner's inbox): who acted, what they commanded, the return so far."""
        self._stepped(t.action, t.reward, bool(t.is_intervention))

    def env_stepped(self, action, reward, info: dict) -> None:
        """A step of a loop that stores no transitions (evaluation, recording), as the env saw it."""
        if "intervention_action" in info and info.get("is_intervention"):  # the arm: the leader arm moved it
            action = info["intervention_action"]
        by_person = bool(info.get("is_intervention")) or self.mode in ("record", "reward_record")
        self._stepped(action, reward, by_person)

    def _stepped(self, action, reward, by_person: bool) -> None:
        self.step += 1
        self.env_step += 1
        self.episode_return += float(reward)
        you = self.human is not None and self.human.teleop.intervening
        actor = "you" if you else "human" if by_person else "policy"
        self.hub.update(actor=actor, action=_plain(np.asarray(action)), reward=_plain(reward),
                        episode_return=round(self.episode_return, 4), step=self.step, env_step=self.env_step)

    def link(self, env_step: int, updates_behind: int, weights_version: int, weights_lag_ms: float | None) -> None:
        """`hilserl actor`: the learner's lag as this actor sees it, a point per episode."""
        self.hub.publish("learner", {"env_step": int(env_step), "policy_lag_updates": int(updates_behind),
                                     "weights_version": int(weights_version),
                                     "weights_lag_ms": None if weights_lag_ms is None else round(weights_lag_ms, 1)})

    def episode_done(self, rec: dict) -> None:
        self._in_episode = False
        mark = self._last_mark
        result = rec.get("result") or {"success": "success (marked)", "failure": "failure (marked)",
                                       "rerecord": "re-recorded", "stop": "stopped"}.get(
            mark, "success" if rec.get("success") else "timeout")
        keys = ("episode", "env_step", "reward", "length", "intervention_rate", "success")
        self.hub.publish("episode", {**{k: _plain(rec[k]) for k in keys if k in rec}, "result": result})

    def recorded(self, outcome: str, episode, saved: bool) -> None:
        """`hilserl record`'s attempt ended (`record_demos`' `on_outcome`): one row of the episodes table."""
        result = {"success": "success", "failure": "failure", "timeout": "timeout", "rerecord": "re-recorded",
                  "quit": "stopped"}.get(outcome, outcome)
        if outcome in ("success", "failure", "timeout"):
            result += ", saved" if saved else ", not kept"
        rec = {"episode": self.episode, "env_step": self.env_step, "reward": self.episode_return,
               "length": self.step, "intervention_rate": 1.0, "success": outcome == "success", "result": result}
        if episode is not None:
            rec.update(reward=float(np.sum(episode.rewards)), length=int(len(episode.rewards)),
                       intervention_rate=float(np.mean(episode.is_intervention)) if len(episode.rewards) else 0.0)
        self.episode_done(rec)

    def labelled(self, label: bool) -> None:
        """`hilserl reward record`: the label now in force for the frames being recorded."""
        self.hub.update(label=bool(label))

    def reward_recorded(self, outcome: str, frames: int, positives: int, kind: str | None = None) -> None:
        """`hilserl reward record`'s episode ended: one row of the episodes table."""
        what = {"saved": "saved", "rerecord": "re-recorded", "quit": "stopped"}.get(outcome, outcome)
        detail = f"{positives}/{frames} frames success" + (f", {kind}" if kind else "")
        self.episode_done({"episode": self.episode, "env_step": self.env_step, "reward": float(positives),
                           "length": int(frames), "intervention_rate": 0.0, "success": positives > 0,
                           "result": f"{what} ({detail})"})

    def before_episode(self) -> bool:
        """Between episodes: waits while paused (the page can still resume or stop); False once stop was asked."""
        self.poll()
        if self.paused and not self.stop_requested:
            self.hub.update(phase="paused")
            self.log("console: paused (resume or stop on the page)")
            while self.paused and not self.stop_requested and not self.hub.closed:
                time.sleep(0.05)
                self.poll()
            self.hub.update(phase="training")
        if self.stop_requested:
            self.hub.update(phase="stopping")
        return not self.stop_requested

    def gripper_closed(self) -> bool:
        return self._gripper_closed

    def take_mark(self) -> str | None:
        mark, self._mark = self._mark, None
        if mark is not None:
            self._last_mark = mark
        return mark

    # ------------------------------------------------------------------ the page's commands
    def poll(self) -> None:
        """Apply every pending command from the page (on the control thread, before a step's action)."""
        for cmd in self.hub.pop_commands():
            applied = self._apply(cmd.get("command"), cmd.get("value"))
            rec = {"command": cmd.get("command"), "value": cmd.get("value"), "applied": applied,
                   "env_step": self.env_step, "episode": self.episode, "step": self.step}
            self.hub.publish("command", rec)
            if self.journal is not None:
                with open(self.journal, "a") as f:
                    f.write(json.dumps({"time": round(time.time(), 3), **rec}) + "\n")

    def _apply(self, name: str, value) -> bool | str:
        if name not in CONTROLS[self.mode]:
            return f"not available in {self.mode.replace('_', ' ')}"
        keys = self.human.keys if self.human is not None else None
        if name in ("takeover", "giveback", "toggle") and keys is not None:
            keys.events.append({"takeover": Event.INTERVENE_ON, "giveback": Event.INTERVENE_OFF,
                                "toggle": Event.INTERVENE_TOGGLE}[name])
        elif name in ("gripper_close", "gripper_open") and keys is not None:
            keys.gripper = GRIPPER_CLOSE if name == "gripper_close" else GRIPPER_OPEN
        elif name in ("success", "failure", "rerecord"):
            if not self._in_episode:
                return "no episode is running"
            self._mark = name
        elif name in ("pause", "resume"):
            self.paused = name == "pause"
            self.hub.update(paused=self.paused)
        elif name == "stop":
            self.stop_requested = True
            self._mark = "stop" if self._in_episode else None
        elif name == "threshold":
            return self._set_threshold(value)
        else:
            return f"unknown command {name!r}"
        return True

    def _set_threshold(self, value) -> bool | str:
        clf = self.classifier
        if clf is None:
            return "no reward classifier in this run (the reward is the simulation's ground truth)"
        try:
            v = float(value)
        except (TypeError, ValueError):
            return f"threshold: expected a probability in [0, 1), got {value!r}"
        if not 0.0 <= v < 1.0:
            return f"threshold: expected a probability in [0, 1), got {v}"
        old, clf.threshold = clf.threshold, v
        self.hub.update(threshold=v)
        self.log(f"console: reward classifier threshold {old:.3f} -> {v:.3f} at env step {self.env_step}")
        return True

    def close(self, phase: str = "finished") -> None:
        """Tell open pages that the run is over, then stop the server."""
        self.hub.update(phase=phase, actor="policy")
        if self.server is not None:
            time.sleep(0.3)  # one more round of the live feed (every 0.1 s) carries the last state
            self.server.stop()
        self.hub.close()
