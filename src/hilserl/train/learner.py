"""The learner: replay buffers in, SAC updates, policy weights out.

Transitions arrive from actors (`ingest(actor, seq, transition, episode)`) and are routed by
`hilserl.data.route_transition`: interventions to both buffers, the policy's own steps to the online buffer;
demonstrations (``demo=True``) go to the demo buffer only. Each `update()` draws `utd_ratio` mixed batches (half
demo, half online) and runs `utd_ratio` critic steps and one actor + temperature step on them.

The ledger (what makes "stored exactly once" hold across crashes): every actor numbers its transitions 1, 2, 3, ...
and every stored transition is tagged with its actor (an index into the ledger) and its seq. `commit()` flushes the
demo buffer and then the online buffer, each with the ledger in the same atomic metadata write as its contents. So
after a crash at any moment each buffer on disk agrees with its own copy of the ledger, and the online buffer's
(written last) is never ahead of the demo buffer's. On reopening, the online ledger says what is acknowledged; a
resent transition already in the demo buffer (the window between the two flushes) goes to the online buffer only.
Several actors feed the same buffers: when another actor's transition (or a new episode) arrives while an episode
is open in a buffer, that episode is closed there without a terminal flag (it still bootstraps from its stored
next observation) and the next one starts its own segment.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hilserl.agents.registry import make_agent
from hilserl.agents.sac import SACAgent, SACConfig
from hilserl.data import MixedSampler, ReplayBuffer, Transition, route_transition
from hilserl.obs_format import is_camera_key, is_feature_key
from hilserl.train.actor import policy_weights
from hilserl.train.config import BufferConfig

TAG_KEYS = ("actor", "seq")


class SequenceError(ValueError):
    """A transition whose seq does not continue its actor's stored sequence."""


@dataclass
class ActorRecord:
    """What the learner stores of one actor (persisted with the buffers)."""

    index: int  # the `actor` tag of its transitions
    seq: int = 0  # transitions 1..seq are stored
    episode: int = 0  # highest episode number among them
    env_steps: int = 0  # stored transitions that are not demonstrations
    demo_episodes: int = 0  # complete demonstrations stored
    logged_episode: int = 0  # last episode whose statistics were logged
    episodes_logged: int = 0

    @classmethod
    def from_json(cls, d: dict) -> "ActorRecord":
        return cls(**{f.name: int(d.get(f.name, 0)) for f in dataclasses.fields(cls)})


class Learner:
    def __init__(self, policy: SACConfig, buffers: BufferConfig, observation_spec: dict, batch_size: int,
                 buffer_dir: Path | None, seed: int = 0, device: str = "cpu", agent: SACAgent | None = None):
        self.agent = agent if agent is not None else make_agent(policy).to(device)
        self.batch_size = batch_size
        self.info_keys = ("grasp_penalty",) if policy.discrete_gripper else ()
        action_dim = policy.full_action_dim
        # cached mode: each stored frame holds K shifted copies' maps; a batch row gets one of them
        view_keys = tuple(k for k in observation_spec if is_feature_key(k))
        # policy.frame_stack: each camera's frames (pixels or cached maps) stacked by index, one frame stored per step
        stack_keys = tuple(k for k in observation_spec if is_camera_key(k)) if policy.frame_stack > 1 else ()

        def make(name: str, capacity: int, rng_seed: int) -> ReplayBuffer:
            where = None if buffer_dir is None else Path(buffer_dir) / name
            return ReplayBuffer(capacity, observation_spec, action_dim, info_keys=self.info_keys,
                                tag_keys=TAG_KEYS, view_keys=view_keys, frame_stack=policy.frame_stack,
                                stack_keys=stack_keys, n_step=policy.n_step,
                                discount=policy.discount, storage_dir=where,
                                rng=np.random.default_rng(rng_seed))

        self.online = make("online", buffers.online_capacity, seed + 1)
        self.demo = make("demo", buffers.demo_capacity, seed + 2)
        self.sampler = MixedSampler(self.online, self.demo, buffers.demo_fraction)
        self.updates = 0
        self.lock = threading.RLock()  # buffers and ledger: held by ingest/commit and while sampling
        self._batches: list[dict | None] = [None] * policy.utd_ratio  # reused batch memory, one per UTD slot
        self._rate_t0, self._rate_n = time.perf_counter(), 0
        self._restore_ledger()

    # ------------------------------------------------------------------------------------------------ ledger
    def _restore_ledger(self) -> None:
        online, demo = self.online.extra_state, self.demo.extra_state
        on_ledger, demo_ledger = online.get("ledger", {}), demo.get("ledger", {})
        # the demo copy may know an actor the online copy does not yet (same index: one ledger, two copies)
        self.actors: dict[str, ActorRecord] = {}
        for name, d in sorted({**demo_ledger, **on_ledger}.items(), key=lambda kv: kv[1]["index"]):
            self.actors[name] = ActorRecord.from_json(d) if name in on_ledger else ActorRecord(index=int(d["index"]))
        self._demo_seq = {a: int(r["seq"]) for a, r in demo_ledger.items()}
        self._open = {"online": tuple(online["open"]) if online.get("open") else None,
                      "demo": tuple(demo["open"]) if demo.get("open") else None}

    def _ledger_json(self) -> dict:
        return {a: dataclasses.asdict(r) for a, r in self.actors.items()}

    def record(self, actor: str) -> ActorRecord:
        rec = self.actors.get(actor)
        if rec is None:
            rec = self.actors[actor] = ActorRecord(index=len(self.actors))
        return rec

    def acked_seq(self, actor: str) -> int:
        rec = self.actors.get(actor)
        return rec.seq if rec else 0

    @property
    def env_steps(self) -> int:
        """Stored non-demonstration transitions of every actor (safe to read without the lock)."""
        return sum(r.env_steps for r in list(self.actors.values()))

    @property
    def demo_episodes(self) -> int:
        return sum(r.demo_episodes for r in list(self.actors.values()))

    def actor_names(self) -> dict[int, str]:
        """The `actor` tag of stored transitions -> actor id."""
        return {r.index: a for a, r in self.actors.items()}

    # ------------------------------------------------------------------------------------------------ data in
    def _segment(self, name: str, buf: ReplayBuffer, actor: str, episode: int) -> None:
        """Close the buffer's open episode if it belongs to another actor or episode."""
        if buf.episode_open and self._open[name] != (actor, episode):
            buf.end_episode()

    def ingest(self, actor: str, seq: int, transition: Transition, episode: int = 0, demo: bool = False) -> bool:
        """Store transition `seq` of `actor` unless it is already stored (False: a duplicate). A gap raises
        SequenceError. Not durable until `commit()`."""
        rec = self.record(actor)
        if seq <= rec.seq:
            return False
        if seq != rec.seq + 1:
            raise SequenceError(f"actor {actor!r}: transition seq {seq} does not follow the stored seq {rec.seq} "
                                f"(send {rec.seq + 1} next)")
        t = dataclasses.replace(transition, info={**(transition.info or {}), "actor": rec.index, "seq": seq})
        in_demo = seq <= self._demo_seq.get(actor, 0)  # already in the demo buffer (stored before a crash)
        touched = []
        if demo:
            if not in_demo:
                self._segment("demo", self.demo, actor, episode)
                self.demo.add(t)
                touched.append(("demo", self.demo))
            if t.terminated or t.truncated:
                rec.demo_episodes += 1
        else:
            self._segment("online", self.online, actor, episode)
            if in_demo:
                self.online.add(t)
                touched.append(("online", self.online))
            else:
                if t.is_intervention:
                    self._segment("demo", self.demo, actor, episode)
                route_transition(t, self.online, self.demo)
                touched += [("online", self.online), ("demo", self.demo)]
            rec.env_steps += 1
        for name, buf in touched:
            self._open[name] = (actor, episode) if buf.episode_open else None
        rec.seq = seq
        rec.episode = max(rec.episode, episode)
        self._demo_seq[actor] = max(self._demo_seq.get(actor, 0), seq)
        return True

    def add(self, transition: Transition, actor: str = "local", episode: int = 0) -> None:
        """Store the next transition of `actor` (numbered here)."""
        self.ingest(actor, self.acked_seq(actor) + 1, transition, episode)

    def add_demo(self, transition: Transition, actor: str = "local", episode: int = 0) -> None:
        self.ingest(actor, self.acked_seq(actor) + 1, transition, episode, demo=True)

    def load_demo_dataset(self, path: str, processor, grasp_penalty: float = -0.02) -> int:
        """Fill the demo buffer from a recorded demo dataset (`hilserl record`, or a LeRobot import), converting
        each frame as the actor does (`ObservationProcessor.to_stored`). Loaded once per run: a resumed run has
        them already. Returns the number of transitions added."""
        from hilserl.data.demo_dataset import DemoDataset
        from hilserl.gripper import step_grasp_penalty

        source = f"demos:{Path(path).resolve().name}"
        if self.acked_seq(source) > 0:
            return 0
        policy = self.agent.config
        ds = DemoDataset.open(path)
        try:
            cameras = sorted(ds.manifest.get("cameras", []))
            if cameras != sorted(policy.cameras):
                raise ValueError(f"train.demo_dataset: {path} holds cameras {cameras}, the policy uses "
                                 f"{sorted(policy.cameras)}")
            info = None
            if policy.discrete_gripper:
                def info(stored, action):
                    return {"grasp_penalty": step_grasp_penalty(stored["state"], action, grasp_penalty)}
            added = 0
            for episode, ep in enumerate(ds.episodes(), start=1):
                if ep.action_dim != policy.full_action_dim:
                    raise ValueError(f"train.demo_dataset: {path} episode {episode} has {ep.action_dim}-D actions, "
                                     f"the policy {policy.full_action_dim}-D")
                for t in ep.transitions(processor.to_stored, info):
                    self.add_demo(t, actor=source, episode=episode)
                    added += 1
        finally:
            ds.close()
        self.commit()
        return added

    def commit(self, sync: bool = True) -> None:
        """Make everything ingested durable: demo buffer first, then the online buffer (see module docstring).
        `sync=False`: durable against a crash of this process, not against a power cut."""
        ledger = self._ledger_json()
        self.demo.flush(extra_state={"ledger": ledger, "open": self._open["demo"]}, sync=sync)
        self.online.flush(extra_state={"ledger": ledger, "open": self._open["online"]}, sync=sync)

    # ------------------------------------------------------------------------------------------------ updates
    def ready(self, training_starts: int) -> bool:
        return len(self.online) >= max(1, training_starts) and len(self.online) + len(self.demo) > 0

    def update(self, actor: bool = True) -> dict[str, float]:
        """One agent update on fresh batches; ``actor=False``: the critics only."""
        with self.lock:  # actors may be storing transitions meanwhile (remote mode)
            for i in range(len(self._batches)):
                self._batches[i] = self.sampler.sample(self.batch_size, out=self._batches[i])
        metrics = self.agent.update(list(self._batches), actor=actor)
        self.updates += 1
        self._rate_n += 1
        return metrics

    def updates_per_second(self) -> float:
        """Since the last call."""
        now = time.perf_counter()
        rate = self._rate_n / max(1e-9, now - self._rate_t0)
        self._rate_t0, self._rate_n = now, 0
        return rate

    def policy_weights(self):
        return policy_weights(self.agent)

    def close(self) -> None:
        with self.lock:
            self.commit()
            for b in (self.online, self.demo):
                b.close()
