"""`hilserl learner`: replay buffers, SAC updates and checkpoints in their own process, fed by actors over gRPC.

Guarantees (with `hilserl.distributed.server` and `hilserl.train.learner`):
- An actor's transitions are acknowledged only after they are in the on-disk buffers together with the ledger of
  stored sequence numbers (`Learner.commit`; fsynced unless ``transport.fsync=false``). After `kill -9` at any
  moment, `hilserl learner --resume` reopens the buffers exactly as of the last commit: every acknowledged
  transition is there, none twice; actors learn at reconnect where their numbering continues and resend the rest.
- The agent (weights, optimizer, update count) continues from the last checkpoint; checkpoints are written every
  ``train.checkpoint_every`` stored environment steps, atomically (a crash mid-write keeps the previous one).
- One learner per run folder (a lock file); a second one is refused.
- Updates follow the data: ``train.updates_per_env_step`` updates per stored environment step once
  ``train.training_starts`` online transitions exist, like `hilserl train`. New policy weights are published every
  ``train.push_weights_every`` updates. When ``train.total_env_steps`` steps are stored the learner tells the actors
  to stop, waits for them to finish sending, writes the final checkpoint and exits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import torch

from hilserl.distributed import codec
from hilserl.distributed.auth import check_bind, load_token, server_credentials
from hilserl.distributed.server import ActorStart, IngestResult, LearnerServer, Refused, WeightsBoard, settings_from
from hilserl.fileio import atomic_write_json
from hilserl.monitor.health import HealthReporter
from hilserl.train.actor import policy_fingerprint
from hilserl.train.config import TrainConfig
from hilserl.train.learner import Learner, SequenceError
from hilserl.train.learner_loop import LearnerLoop, open_learner, updates_due
from hilserl.train.run_folder import RunFolder

ADDRESS_FILE = "learner.json"


class LearnerSink:
    """The server's storage: ingest into the Learner, commit, then the server acks. Also hands out demo quotas and
    logs the actors' episode statistics (once per episode, remembered in the ledger)."""

    def __init__(self, learner: Learner, cfg: TrainConfig, policy_cfg, logger, log, health: HealthReporter):
        self.learner = learner
        self.cfg = cfg
        self.logger = logger
        self.log = log
        self.health = health
        self.schema = codec.TransitionSchema(dict(learner.online.spec), learner.online.action_dim,
                                             learner.info_keys)
        self.policy_spec = codec.weights_spec(learner.policy_weights())
        self.policy_digest = policy_fingerprint(policy_cfg)
        self.data_arrived = threading.Condition()  # the update loop waits on it
        self._demo_quota: dict[str, tuple[int, int]] = {}  # actor -> (demos promised, its demo count then)
        self._quota_lock = threading.Lock()  # not the learner's lock: dropping an actor never waits for storage
        self._sync = cfg.transport.fsync

    def _outstanding(self, actor: str) -> int:
        promised, before = self._demo_quota.get(actor, (0, 0))
        rec = self.learner.actors.get(actor)
        return max(0, promised - ((rec.demo_episodes if rec else 0) - before))

    def actor_connected(self, actor_id: str) -> ActorStart:
        with self.learner.lock, self._quota_lock:
            rec = self.learner.actors.get(actor_id)
            self._demo_quota.pop(actor_id, None)
            others = sum(self._outstanding(a) for a in self._demo_quota)
            wanted = 0 if self.cfg.train.demo_dataset else max(
                0, self.cfg.train.num_demos - self.learner.demo_episodes - others)
            self._demo_quota[actor_id] = (wanted, rec.demo_episodes if rec else 0)
            return ActorStart(rec.seq if rec else 0, rec.episode if rec else 0, wanted)

    def actor_disconnected(self, actor_id: str) -> None:
        with self._quota_lock:
            self._demo_quota.pop(actor_id, None)  # a replacement asks again

    def training_done(self) -> bool:
        return self.learner.env_steps >= self.cfg.train.total_env_steps

    def updates_behind(self) -> int:
        """Updates the learner still owes to the stored data (actors may wait for it)."""
        return updates_due(self.learner, self.cfg.train) - self.learner.updates

    def ingest(self, actor_id, transitions, episodes) -> IngestResult:
        """Store a message's transitions, commit, and only then return (the server acks after this)."""
        learner = self.learner
        stored, to_log = 0, []
        with learner.lock:
            try:
                for w in transitions:
                    stored += learner.ingest(actor_id, w.seq, w.transition, w.episode, w.demo)
            except SequenceError as e:  # what was stored before the gap is committed with the next message
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
            rec = learner.record(actor_id)
            for episode, last_seq, values in episodes:  # once per episode, also across a learner restart
                if episode > rec.logged_episode and last_seq <= rec.seq:
                    rec.logged_episode = episode
                    if not values.get("demo"):
                        rec.episodes_logged += 1
                        to_log.append((episode, values, sum(r.episodes_logged for r in learner.actors.values())))
            learner.commit(sync=self._sync)
            acked, env_steps = rec.seq, learner.env_steps
        for episode, values, number in to_log:
            rec = {**values, "episode": number, "env_step": env_steps, "actor": actor_id, "actor_episode": episode}
            self.logger.log_episode(rec)
            self.health.episode(rec)
        if stored:
            with self.data_arrived:
                self.data_arrived.notify_all()
        return IngestResult(acked, stored, len(transitions) - stored)


@dataclass
class LearnerResult:
    run_dir: Path
    env_steps: int
    learner_updates: int
    last_checkpoint: Path | None
    actors: dict[str, int]  # actor id -> stored seq
    wall_s: float


def _resumed_line(run: RunFolder, opened) -> str:
    learner = opened.learner
    return (f"resumed {run.path}: agent from {opened.checkpoint or 'scratch (no checkpoint yet)'} at "
            f"{learner.updates} updates; buffers hold {learner.env_steps} env steps from {len(learner.actors)} "
            "actors " + ", ".join(f"{a}: seq 1..{r.seq}" for a, r in learner.actors.items()))


def _drain(server: LearnerServer, drain_s: float, stop: threading.Event) -> None:
    """Wait until the actors have disconnected, as long as they still deliver something every `drain_s`."""
    stored, idle_since = server.metrics()["transitions_stored"], time.monotonic()
    while server.live_actors() and time.monotonic() - idle_since < drain_s and not stop.is_set():
        time.sleep(0.05)
        now_stored = server.metrics()["transitions_stored"]
        if now_stored != stored:
            stored, idle_since = now_stored, time.monotonic()


def _transport_summary(m: dict) -> str:
    return (f"transport: {m['messages']} messages, {m['transitions_received']} transitions received, "
            f"{m['transitions_stored']} stored, {m['duplicates']} duplicates, {m['malformed']} refused messages, "
            f"{m['refused']} refused calls, {m['actors_dropped']} actors dropped, {m['actors_replaced']} replaced, "
            f"{m['weights_sent']} weights sent; storing took {m['ingest_s']:.1f} s")


def run_learner(cfg: TrainConfig, resume: bool = False, log=print, stop: threading.Event | None = None,
                drain_s: float = 15.0) -> LearnerResult:
    """Serve actors and train until `train.total_env_steps` are stored (or `stop` is set / SIGTERM / SIGINT)."""
    from hilserl.monitor.metrics import MetricsLogger, require_wandb

    t_start = time.perf_counter()
    loop, transport = cfg.train, cfg.transport
    if loop.torch_threads:
        torch.set_num_threads(loop.torch_threads)
    torch.manual_seed(loop.seed)
    token = load_token(transport.token_file)
    check_bind(transport.host, token, transport.tls)
    credentials = server_credentials(transport.tls_cert, transport.tls_key, transport.tls_ca) if transport.tls else None
    if not cfg.buffers.on_disk:
        raise ValueError("buffers.on_disk: the learner process stores transitions on disk before acknowledging them; "
                         "it cannot run with on_disk=false")
    require_wandb(cfg.log)  # log.wandb without the wandb package: fail before the run folder is touched
    run = RunFolder.open(cfg, resume)
    stop = stop or threading.Event()
    opened = open_learner(cfg, run, resume, log)
    cfg, learner = opened.cfg, opened.learner
    if resume:
        log(_resumed_line(run, opened))
    logger = MetricsLogger(run.path, log_cfg=cfg.log, config=cfg, note=log)
    health = HealthReporter(cfg, run.path, log)
    sink = LearnerSink(learner, cfg, cfg.policy, logger, log, health)
    board = WeightsBoard()
    server = LearnerServer(sink, settings_from(transport), board, token, credentials)
    trainer = LearnerLoop(cfg, run, learner, board.publish, logger, health, log, extra_metrics=server.metrics)
    trainer.publish_weights()
    port = server.start()
    atomic_write_json(run.path / ADDRESS_FILE, {"host": transport.host, "port": port, "pid": os.getpid()})
    log(f"learner listening on {transport.host}:{port} (run folder {run.path})")

    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous_handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        if opened.checkpoint is None:
            trainer.checkpoint()  # a resume always finds one
        _serve(trainer, sink, server, stop, log)
        if sink.training_done():
            trainer.publish_weights()
            log(f"reached {loop.total_env_steps} env steps; waiting for the actors to finish sending")
            _drain(server, drain_s, stop)
    finally:
        log(_transport_summary(server.metrics()))
        server.stop(grace=1.0)
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    last_ckpt = trainer.checkpoint()
    log(f"learner stopped: {learner.env_steps} env steps stored, {learner.updates} updates; checkpoint {last_ckpt}")
    result = LearnerResult(run.path, learner.env_steps, learner.updates, last_ckpt,
                           {a: r.seq for a, r in learner.actors.items()}, time.perf_counter() - t_start)
    logger.close()
    learner.close()
    (run.path / ADDRESS_FILE).unlink(missing_ok=True)
    run.close()
    return result


def _serve(trainer: LearnerLoop, sink: LearnerSink, server: LearnerServer, stop: threading.Event, log) -> None:
    """The update loop: the updates owed to the stored data, checkpoints as the data grows, a transport summary
    every 30 s; returns when training is done or `stop` is set."""
    learner, every = trainer.learner, trainer.cfg.train.checkpoint_every
    next_ckpt = (learner.env_steps // every + 1) * every if every else None
    last_status = time.monotonic()
    while not stop.is_set():
        with learner.lock:
            owed = trainer.updates_behind()
        if owed > 0:
            trainer.update()
        elif sink.training_done():
            return
        else:
            with sink.data_arrived:
                sink.data_arrived.wait(timeout=0.5)
        if next_ckpt is not None and learner.env_steps >= next_ckpt:
            next_ckpt = (learner.env_steps // every + 1) * every
            log(f"checkpoint: {trainer.checkpoint()}")
        if time.monotonic() - last_status > 30:
            last_status = time.monotonic()
            log(_transport_summary(server.metrics()))
