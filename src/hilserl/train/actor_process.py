"""`hilserl actor`: the environment, the policy and the human beside the robot, feeding a learner over gRPC.

Flow: connect (the learner says where this actor's sequence numbers continue, which episode number it reached and
how many demonstrations it still wants, then sends the current policy weights) -> record the demonstrations it
wants (successful ones only; they go to the demo buffer) -> run episodes until the learner says training is done
-> wait until everything sent is acknowledged. New weights take effect at the next environment step.

While the learner is unreachable the actor keeps its last weights and every unacknowledged transition, and
reconnects with backoff (see `hilserl.distributed.client`). `transport.disconnected_behavior` says what happens
to the robot meanwhile: "keep_acting" runs episodes on and queues their transitions (up to
`transport.max_unacked_mb`; then it holds still), "hold" stops stepping the environment until the learner is back.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from hilserl.agents.registry import make_agent
from hilserl.distributed import codec
from hilserl.distributed.auth import load_token
from hilserl.distributed.client import ClientSettings, LearnerClient, TransportError
from hilserl.train.actor import Actor, policy_fingerprint, policy_weights
from hilserl.train.build import collect_demos, make_actor, make_env, make_human, policy_config
from hilserl.train.config import TrainConfig
from hilserl.train.curriculum import TrainingCurricula


def actor_seed(seed: int, actor_id: str) -> int:
    """Each actor id plays its own sequence of episodes (two sims with one seed would play the same ones)."""
    return seed + zlib.crc32(actor_id.encode()) % 1_000_003


def client_settings(cfg: TrainConfig, address: str, actor_id: str) -> ClientSettings:
    t = cfg.transport
    return ClientSettings(address=address, actor_id=actor_id, token=load_token(t.token_file), tls=t.tls,
                          tls_ca=t.tls_ca, tls_cert=t.tls_cert, tls_key=t.tls_key, tls_server_name=t.tls_server_name,
                          max_message_bytes=int(t.max_message_mb * 2**20),
                          max_batch_bytes=min(4 << 20, int(t.max_message_mb * 2**20) // 2),
                          max_unacked_bytes=int(t.max_unacked_mb * 2**20), reconnect_min_s=t.reconnect_min_s,
                          reconnect_max_s=t.reconnect_max_s, give_up_after_s=t.give_up_after_s,
                          # a learner busy on a loaded machine may ack late; a dead one closes the connection
                          learner_dead_after_s=max(10.0, 2 * t.dead_actor_timeout_s))


@dataclass
class ActorResult:
    actor_id: str
    episodes: int
    demos: int
    env_steps: int
    last_seq: int
    acked_seq: int
    reconnects: int
    weights_lag_ms: list[float]


class _Link:
    """Hands transitions to the client with their episode and continuity, applies new weights before each step,
    and holds still while disconnected when asked to."""

    def __init__(self, client: LearnerClient, actor: Actor, hold: bool, max_updates_behind: int, log):
        self.client, self.actor, self.hold, self.log = client, actor, hold, log
        self.max_updates_behind = max_updates_behind
        self.episode = 0
        self.demo = False
        self._step_in_episode = 0
        self.weights_lag_ms: list[float] = []

    def start_episode(self, episode: int, demo: bool) -> None:
        self.episode, self.demo, self._step_in_episode = episode, demo, 0

    def on_transition(self, t) -> None:
        self.client.send(t, self.episode, demo=self.demo, weights_version=self.actor.weights_version,
                         continues=self._step_in_episode > 0)
        self._step_in_episode += 1

    def apply_weights(self) -> bool:
        got = self.client.take_weights()
        if got is None:
            return False
        version, weights, published = got
        self.actor.load_policy_weights(weights, version)
        self.client.weights_version_in_use = version
        self.weights_lag_ms.append(1000.0 * (time.time() - published))
        return True

    def before_step(self) -> None:
        self.apply_weights()
        if self.hold and not self.client.connected:
            self.log("learner unreachable: holding still until it is back")
            while not self.client.connected:
                try:
                    self.client.wait_connected(timeout=1.0)
                except TimeoutError:
                    continue
            self.log("learner back: acting again")
        if self.max_updates_behind and not self.demo:
            while (self.client.connected and not self.client.training_done
                   and self.client.updates_behind > self.max_updates_behind):
                self.client.refresh_status(timeout=0.5)  # the learner catches up on its updates
                self.apply_weights()


def _send_demos(cfg: TrainConfig, env, agent, link: "_Link", client: LearnerClient, wanted: int, seed: int,
                episode: int) -> int:
    """Record the demonstrations the learner wants and send them (demo buffer); returns the last episode number."""
    def keep(transitions, stats):
        nonlocal episode
        episode += 1
        link.start_episode(episode, demo=True)
        for t in transitions:
            link.on_transition(t)
        client.send_episode(episode, client.last_seq, {**stats.record(), "demo": 1})

    collect_demos(cfg, env, agent, wanted, seed, keep, first_seed_index=episode)  # a reconnect records new ones
    return episode


def run_actor(cfg: TrainConfig, learner_address: str, actor_id: str, log=print,
              first_weights_timeout_s: float = 120.0, console=None) -> ActorResult:
    """`console` (`hilserl.console.session.Console`, or None): the browser console beside the robot; its Stop
    ends this actor (the learner goes on with the others)."""
    loop = cfg.train
    if loop.torch_threads:
        torch.set_num_threads(loop.torch_threads)
    seed = actor_seed(loop.seed, actor_id)
    torch.manual_seed(seed)
    env = make_env(cfg)
    policy_cfg = policy_config(cfg, env.observation_space, env.action_space)
    agent = make_agent(policy_cfg).to(loop.device)
    human = make_human(cfg, env, np.random.default_rng(seed + 101))
    actor = make_actor(cfg, env, agent, human, seed)
    if console is not None:
        console.attach_actor(cfg, actor, actor_id)
    client = LearnerClient(client_settings(cfg, learner_address, actor_id), actor.processor.spec,
                           codec.weights_spec(policy_weights(agent)), policy_fingerprint(policy_cfg),
                           heartbeat_s=cfg.transport.heartbeat_s)
    link = _Link(client, actor, cfg.transport.disconnected_behavior == "hold", cfg.transport.max_updates_behind, log)
    client.start()
    try:
        log(f"actor {actor_id}: connecting to the learner at {learner_address}")
        hello = client.wait_connected(timeout=None if not cfg.transport.give_up_after_s else
                                      cfg.transport.give_up_after_s + cfg.transport.reconnect_max_s + 10)
        log(f"actor {actor_id}: connected; continuing at seq {hello.acked_seq + 1}, episode "
            f"{hello.last_episode + 1}; the learner wants {hello.demos_wanted} demonstrations")
        deadline = time.monotonic() + first_weights_timeout_s
        while not link.apply_weights():  # act with the learner's policy, never with a random local one
            if time.monotonic() > deadline:
                raise TransportError(f"no policy weights from the learner within {first_weights_timeout_s} s")
            client.flush(timeout=0.05)
        episode, demos, episodes, steps = hello.last_episode, 0, 0, 0
        if hello.demos_wanted and not client.training_done and human is None:
            raise RuntimeError(f"the learner wants {hello.demos_wanted} demonstrations, which only the simulation "
                               "can make by itself; on the real arm record them (hilserl record) and start the "
                               "learner with --train.demo_dataset=FOLDER")
        if hello.demos_wanted and not client.training_done:
            episode = _send_demos(cfg, env, agent, link, client, hello.demos_wanted, seed, episode)
            demos = hello.demos_wanted
            log(f"actor {actor_id}: sent {demos} demonstrations")
        curriculum = TrainingCurricula(loop, seed=seed)  # a restarted actor starts them over

        def on_transition(t) -> None:
            link.on_transition(t)
            if console is not None:
                console.transition(t)

        while not client.training_done and (console is None or console.before_episode()):
            episode += 1
            link.start_episode(episode, demo=False)
            stats = actor.run_episode(episode, steps, on_transition, before_step=link.before_step,
                                      reset_options=curriculum.reset_options(episode))
            steps += stats.length
            episodes += 1
            record = {**stats.record(), "weights_version": actor.weights_version,
                      **curriculum.after_episode(stats, log, f"actor {actor_id}: ")}
            client.send_episode(episode, client.last_seq, record)
            if console is not None:
                console.episode_done(record)
                console.link(steps, client.updates_behind, actor.weights_version,
                             link.weights_lag_ms[-1] if link.weights_lag_ms else None)
            log(f"actor {actor_id} | episode {episode} | steps {stats.length} | reward {stats.reward:.2f} | "
                f"intervention {100 * stats.intervention_rate:.0f}% | {'SUCCESS' if stats.success else 'FAIL'} | "
                f"weights v{actor.weights_version} | acked {client.acked_seq}/{client.last_seq}")
        drained = client.close(timeout=60.0)
        ended = "stopped from the console" if console is not None and console.stop_requested else "training done"
        log(f"actor {actor_id}: {ended}; sent seq 1..{client.last_seq}, learner acknowledged up to "
            f"{client.acked_seq}{'' if drained else ' (NOT all acknowledged)'}; {client.reconnects} reconnects")
        return ActorResult(actor_id, episodes, demos, steps, client.last_seq, client.acked_seq, client.reconnects,
                           link.weights_lag_ms)
    finally:
        client.close(timeout=0.0)  # no-op after the close above; on an error: disconnect now
        env.close()
