"""The training configuration: one JSON file (``configs/*.json``) plus ``--a.b=c`` overrides.

Sections: ``env`` (the simulation or the real arm), ``policy`` (the agent, by ``policy.type``: "sac" or
"drqv2"; its shape fields are filled in from the environment), ``buffers``, ``human`` (the simulated human who
intervenes), ``reward``, ``train`` (the loop), ``transport`` (the actor <-> learner link of `hilserl learner` /
`hilserl actor`), ``health`` (the training health checks) and ``log`` (optional Weights & Biases logging).
Defaults follow the HIL-SERL reference and measured SO-101 settings; `hilserl doctor` and docs/decisions.md
explain them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hilserl.agents.drqv2_config import DrQV2Config
from hilserl.agents.sac import SACConfig
from hilserl.envs.gym_env import GymEnvConfig
from hilserl.envs.so101 import SO101EnvConfig
from hilserl.sim.env import GraspCubeConfig
from hilserl.sim.human import SimHumanConfig
from hilserl.sim.randomization import VIEW_HOOKS
from hilserl.train.curriculum import CurriculumConfig, HardStartsConfig


@dataclass
class BufferConfig:
    online_capacity: int = 200_000  # transitions (HIL-SERL reference)
    demo_capacity: int = 50_000  # demos + every human intervention
    demo_fraction: float = 0.5  # share of each batch drawn from the demo buffer (RLPD: 0.5)
    on_disk: bool = True  # memory-mapped files in the run folder: survive a crash, need not fit in RAM

    def validate(self) -> None:
        if self.online_capacity < 1000:
            raise ValueError(f"online_capacity: expected >= 1000 transitions, got {self.online_capacity}")
        if self.demo_capacity < 100:
            raise ValueError(f"demo_capacity: expected >= 100 transitions, got {self.demo_capacity}")
        if not 0.0 <= self.demo_fraction <= 1.0:
            raise ValueError(f"demo_fraction: expected a value in [0, 1], got {self.demo_fraction}")


REWARD_TYPES = ("ground_truth", "env", "classifier")


@dataclass
class RewardConfig:
    """The reward, and the only home of its shaping: `success_reward` on the step that succeeds, `step_penalty` on
    every other step, whoever says "success" (`hilserl.reward.wrapper.wrap_reward`, applied by
    `hilserl.train.build.make_env`; `hilserl record` stores the same values in the demos it records).
    "ground_truth": the env's own success (``info["is_success"]``; not on the real arm). "env": the env's own reward
    as it is, unshaped (a gymnasium env with a reward of its own). "classifier": a trained reward classifier
    (`hilserl reward train`), turned into the reward by `hilserl.reward.RewardClassifierWrapper`: success when
    p > threshold for `consecutive_frames` frames in a row and at least `min_steps` into the episode; the env's own
    (ground-truth) termination is then ignored."""

    type: str = "ground_truth"  # "ground_truth", "env" or "classifier"
    classifier_path: str | None = None  # folder with classifier.json + classifier.safetensors
    threshold: float | None = None  # None: the threshold stored in the classifier file
    consecutive_frames: int = 10
    min_steps: int = 30
    success_reward: float = 10.0  # both reward types, simulation and real arm (docs/decisions.md)
    step_penalty: float = -0.05  # every step that is not the success
    # both reward types, simulation and real arm: reward -= action_rate_penalty * mean((a_t - a_t-1)^2) over the
    # continuous action dims (-1..1 scale) of what ran; discourages a policy that swings from tick to tick
    action_rate_penalty: float = 0.0
    # both reward types, simulation and real arm: reward -= action_penalty * mean(a_t^2) over the continuous action
    # dims of what ran (a control cost): a command that does not help the task (e.g. sideways while lifting) costs
    # something, so the policy leaves it at zero instead of at an arbitrary value
    action_penalty: float = 0.0

    def validate(self) -> None:
        if self.action_penalty < 0:
            raise ValueError(f"action_penalty: expected >= 0 (it is subtracted), got {self.action_penalty}")
        if self.action_rate_penalty < 0:
            raise ValueError(f"action_rate_penalty: expected >= 0 (it is subtracted), got {self.action_rate_penalty}")
        if self.type not in REWARD_TYPES:
            raise ValueError(f"type: expected one of {list(REWARD_TYPES)}, got {self.type!r}")
        if self.type == "classifier" and not self.classifier_path:
            raise ValueError("classifier_path: required when reward.type is 'classifier' (the folder written by "
                             "`hilserl reward train`)")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold: expected a probability in (0, 1) or null, got {self.threshold}")
        if self.consecutive_frames < 1:
            raise ValueError(f"consecutive_frames: expected >= 1, got {self.consecutive_frames}")
        if self.min_steps < 0:
            raise ValueError(f"min_steps: expected >= 0, got {self.min_steps}")
        if self.success_reward <= self.step_penalty:
            raise ValueError(f"success_reward: expected more than step_penalty ({self.step_penalty}), "
                             f"got {self.success_reward}")


@dataclass
class LoopConfig:
    seed: int = 0
    total_env_steps: int = 10_000
    num_demos: int = 20  # scripted-expert episodes in the demo buffer before online training (simulation)
    demo_dataset: str | None = None  # a recorded demo dataset (hilserl record / dataset import-lerobot) for the
    #                                  demo buffer instead of scripted-expert episodes (the real arm needs one)
    init_policy: str | None = None  # start a new run from this trained policy (run, checkpoint or pretrained_model
    #                                 folder), e.g. one pretrained in the simulation; ignored by --resume
    # false: take the policy's actor, image heads and gripper critic but start the continuous critic fresh. Its values
    # were fitted in the scene it trained in; fine-tuning a sim-pretrained policy in a new look was slower with them
    # than from scratch, and as fast without them (docs/benchmarks.md)
    init_critic: bool = True
    # with init_policy: the run's first critic_warmup learner updates train only the critics (and the image heads they
    # train), the loaded actor's weights stay; a fresh critic's first values would otherwise pull the actor off what
    # it learned
    # (docs/benchmarks.md). 0: off
    critic_warmup: int = 0
    batch_size: int = 256
    training_starts: int = 100  # online transitions before the first update
    updates_per_env_step: float = 1.0  # learner updates (each = utd_ratio critic steps + 1 actor step) per env step
    push_weights_every: int = 50  # learner updates between policy weights sent to the actor
    log_every: int = 100  # learner updates between learner log lines
    eval_every: int = 1000  # env steps between evaluations (0: never)
    eval_episodes: int = 20
    checkpoint_every: int = 2000  # env steps between checkpoints (0: only at the end)
    torch_threads: int = 0  # 0: leave torch's default
    device: str = "cpu"
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)  # the simulation's start region
    # the simulation's randomized view: the share of training episodes that draw the view hooks, from 0 up
    view_curriculum: CurriculumConfig = field(default_factory=lambda: CurriculumConfig(start=0.0))
    # the simulation: replay the starts of training episodes that failed or needed the person (share 0: off)
    hard_starts: HardStartsConfig = field(default_factory=HardStartsConfig)

    def validate(self) -> None:
        positive = ("total_env_steps", "batch_size", "push_weights_every", "log_every", "eval_episodes")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("num_demos", "training_starts", "eval_every", "checkpoint_every", "torch_threads",
                     "critic_warmup"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.updates_per_env_step <= 0:
            raise ValueError(f"updates_per_env_step: expected > 0, got {self.updates_per_env_step}")
        if self.critic_warmup and not self.init_policy:
            raise ValueError(f"critic_warmup: {self.critic_warmup} is for a run that starts from a trained policy "
                             "(train.init_policy); without one there is no actor to keep: set it to 0")


@dataclass
class HealthConfig:
    """Training health checks (hilserl.monitor.health): warnings in the log and in <run>/health.jsonl while the run
    trains; NaN weights stop it."""

    enabled: bool = True
    window: int = 20  # episodes per comparison window of the episode checks

    def validate(self) -> None:
        if self.window < 5:
            raise ValueError(f"window: expected >= 5 episodes, got {self.window}")


WANDB_MODES = ("auto", "online", "offline")
_WANDB_NAME_FORBIDDEN = set("/\\#?%:")  # characters W&B does not accept in a project or entity name


@dataclass
class LogConfig:
    """Where the training metrics go besides the CSV files and TensorBoard (which are always written): optionally
    Weights & Biases, with the same metric names and step axes as TensorBoard (hilserl.monitor.metrics). `wandb`
    is an optional extra (``pip install wandb`` or ``pip install -e .[wandb]``), imported only when this is on."""

    wandb: bool = False
    wandb_project: str = "hilserl"
    # "auto": online when a W&B API key is configured (WANDB_API_KEY or a ~/.netrc entry for api.wandb.ai) and the
    # server answers within a second or two, else offline; "offline": <run>/wandb/, upload later with `wandb sync`
    wandb_mode: str = "auto"
    wandb_entity: str | None = None  # the W&B user or team; None: the API key's default entity

    def validate(self) -> None:
        if self.wandb_mode not in WANDB_MODES:
            raise ValueError(f"wandb_mode: expected one of {list(WANDB_MODES)}, got {self.wandb_mode!r}")
        for name in ("wandb_project", "wandb_entity"):
            value = getattr(self, name)
            if value is None and name == "wandb_entity":
                continue
            if not value.strip():
                raise ValueError(f"{name}: expected a non-empty name, got {value!r}")
            if len(value) > 128 or _WANDB_NAME_FORBIDDEN & set(value):
                raise ValueError(f"{name}: expected a name of at most 128 characters without any of "
                                 f"{' '.join(sorted(_WANDB_NAME_FORBIDDEN))}, got {value!r}")


DISCONNECTED_BEHAVIORS = ("keep_acting", "hold")


@dataclass
class TransportConfig:
    """The gRPC link between `hilserl learner` and `hilserl actor`. There is deliberately no token setting: the
    shared token comes from the environment variable HILSERL_TOKEN or from the file `token_file`, never from the
    command line (which `ps` and shell histories show)."""

    host: str = "127.0.0.1"  # where the learner listens; any non-loopback address requires a token
    port: int = 50051  # 0: any free port (the learner writes the one it got to <run>/learner.json)
    token_file: str | None = None  # file holding the shared token (alternative: HILSERL_TOKEN)
    tls: bool = False  # encrypt the link (learner: tls_cert + tls_key; actor: verifies with tls_ca)
    tls_cert: str | None = None  # PEM; learner: its certificate; actor: its client certificate (mutual TLS)
    tls_key: str | None = None
    tls_ca: str | None = None  # PEM; actor: CA of the learner's certificate; learner: CA of client certificates
    tls_server_name: str | None = None  # actor: the name in the learner's certificate, if not the address
    max_message_mb: float = 64.0  # largest message either side accepts (a batch of transitions, the weights)
    max_actors: int = 8
    heartbeat_s: float = 1.0  # an idle actor sends a heartbeat this often
    dead_actor_timeout_s: float = 10.0  # learner: an actor silent this long is dropped (and may reconnect)
    disconnected_behavior: str = "keep_acting"  # actor while the learner is away: "keep_acting" or "hold" (still)
    max_unacked_mb: float = 1024.0  # actor: transitions kept until acked; beyond it the actor holds still
    reconnect_min_s: float = 0.2  # actor: first reconnect delay, doubling up to reconnect_max_s (with jitter)
    reconnect_max_s: float = 5.0
    give_up_after_s: float = 0.0  # actor: exit with an error after this long without the learner (0: never)
    max_updates_behind: int = 0  # actor: pause while the learner owes more updates than this (0: never pause;
    #                              a simulated actor that outruns the learner would otherwise act on stale weights)
    # learner: acks always follow the write of the transitions and the ledger to the buffer files (survives kill -9
    # of the learner at any moment); fsync=true also waits for the disk before each ack (survives a power cut too,
    # but each commit then takes ~100 ms on a typical VM disk: 2 buffers x 13 files)
    fsync: bool = False

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: expected 0-65535, got {self.port}")
        if not 0 < self.max_message_mb <= 2000:
            raise ValueError(f"max_message_mb: expected a size in (0, 2000] MB, got {self.max_message_mb}")
        if self.max_actors < 1:
            raise ValueError(f"max_actors: expected >= 1, got {self.max_actors}")
        if not 0 < self.heartbeat_s <= self.dead_actor_timeout_s / 2:
            raise ValueError(f"heartbeat_s: expected > 0 and at most half of dead_actor_timeout_s "
                             f"({self.dead_actor_timeout_s}), got {self.heartbeat_s}")
        if self.disconnected_behavior not in DISCONNECTED_BEHAVIORS:
            raise ValueError(f"disconnected_behavior: expected one of {list(DISCONNECTED_BEHAVIORS)}, "
                             f"got {self.disconnected_behavior!r}")
        if self.max_unacked_mb < self.max_message_mb:
            raise ValueError(f"max_unacked_mb: expected at least max_message_mb ({self.max_message_mb}), "
                             f"got {self.max_unacked_mb}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError(f"reconnect_min_s: expected 0 < reconnect_min_s <= reconnect_max_s, got "
                             f"{self.reconnect_min_s} and {self.reconnect_max_s}")
        if self.max_updates_behind < 0:
            raise ValueError(f"max_updates_behind: expected >= 0, got {self.max_updates_behind}")
        if self.give_up_after_s < 0:
            raise ValueError(f"give_up_after_s: expected >= 0, got {self.give_up_after_s}")
        if self.tls and self.tls_key and not self.tls_cert:
            raise ValueError("tls_cert: required with tls_key")


@dataclass
class TrainConfig:
    env: GraspCubeConfig | SO101EnvConfig | GymEnvConfig = field(default_factory=GraspCubeConfig)  # by env.type
    policy: SACConfig | DrQV2Config = field(default_factory=lambda: SACConfig(  # by policy.type
        encoder="efficientnet_lite0", backbone_trim_head=True, cached_features=True, critic_trunk_dim=50,
        action_smoothness=1.0))
    #  the policy's shape fields (state_dim, action_dim, discrete_gripper, cameras, image_size) are filled in from the
    #  environment's spaces when a run starts (hilserl.train.build.policy_config); values set here are replaced
    buffers: BufferConfig = field(default_factory=BufferConfig)
    human: SimHumanConfig = field(default_factory=SimHumanConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    log: LogConfig = field(default_factory=LogConfig)  # optional Weights & Biases logging beside CSV/TensorBoard
    output_dir: str = "outputs/train"
    run_name: str | None = None  # default: a timestamp

    def validate(self) -> None:
        if self.env.type == "so101" and self.reward.type != "classifier":
            raise ValueError("reward.type: the real arm (env.type so101) has no ground truth; train a classifier "
                             "(hilserl reward train) and set reward.type=classifier and reward.classifier_path")
        if self.env.type == "so101" and self.train.num_demos and not self.train.demo_dataset:
            raise ValueError("train.demo_dataset: the real arm cannot make demonstrations by itself; record them "
                             "(hilserl record --out FOLDER) and pass --train.demo_dataset=FOLDER (or num_demos=0)")
        if self.env.type == "gym" and self.train.num_demos and not self.train.demo_dataset:
            raise ValueError("train.num_demos: a gymnasium env has no scripted expert to make demonstrations; set "
                             "train.num_demos=0 or give recorded ones with --train.demo_dataset=FOLDER")
        if self.train.curriculum.enabled and self.env.type != "sim":
            raise ValueError("train.curriculum: the start-region curriculum is the simulation's (on the real arm you "
                             "place the cube: start near the gripper and widen as it succeeds); set it to false")
        if self.train.view_curriculum.enabled:
            if self.env.type != "sim":
                raise ValueError("train.view_curriculum: the randomized-view curriculum is the simulation's (the real "
                                 "camera sees what it sees); set it to false")
            if not any(getattr(self.env.randomization, h) for h in VIEW_HOOKS):
                raise ValueError("train.view_curriculum: there is no view to randomize: turn on at least one of the "
                                 f"view hooks of env.randomization ({', '.join(VIEW_HOOKS)}), e.g. with "
                                 "configs/sim_pretrain.json")
        if self.train.hard_starts.share > 0:
            if self.env.type != "sim":
                raise ValueError("train.hard_starts: replaying starts is the simulation's (on the real arm you place "
                                 "the cube: put it where the policy failed); set share to 0")
            if self.env.randomization.cube_size:
                raise ValueError("train.hard_starts: a replayed start keeps the cube where it was, and a cube of "
                                 "another size may then touch the jaws: turn env.randomization.cube_size off or "
                                 "set share to 0")
        if self.buffers.online_capacity < self.train.batch_size:
            raise ValueError("buffers.online_capacity: must hold at least one batch (train.batch_size)")


# env keys that earlier hilserl versions wrote into saved configs (the sim's ground-truth reward shaping)
_OLD_ENV_REWARD_KEYS = ("success_reward", "step_penalty")


def upgrade_saved_config(data: dict) -> dict:
    """A train config saved by an earlier hilserl (a run's config.json, a checkpoint's train_config.json) in today's
    layout, so old runs can still be evaluated and checked. Earlier versions shaped the simulation's ground-truth
    reward with ``env.success_reward`` / ``env.step_penalty`` (and ``env.reward_type``); the reward section is now
    the only home of both: for a ground-truth reward the env's values move there (they are what that run trained
    on), for a classifier reward they are dropped (the reward section's own values were the ones used)."""
    data = {**data}
    env, reward = dict(data.get("env") or {}), dict(data.get("reward") or {})
    ground_truth = reward.get("type", "ground_truth") == "ground_truth"
    for key in _OLD_ENV_REWARD_KEYS:
        if key in env:
            value = env.pop(key)
            if ground_truth:
                reward[key] = value
    if env.pop("reward_type", "shaped") == "sparse" and ground_truth:
        reward["success_reward"], reward["step_penalty"] = 1.0, 0.0
    data["env"], data["reward"] = env, reward
    return data

