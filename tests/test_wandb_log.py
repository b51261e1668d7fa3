"""Optional Weights & Biases logging (``log.wandb=true``): the same metric names and step axes as TensorBoard, the
run inside the run folder, a clear error without the package, and W&B failures that never stop training.

Nothing here touches the network: the real-W&B tests run offline (WANDB_MODE=offline, mode "offline"), with every
W&B directory in the test's tmp folder and error reporting off; the mode tests give "auto" a fake server probe."""

from __future__ import annotations

import json
import struct
import sys
import types
import warnings
from pathlib import Path

import pytest

from hilserl.config import ConfigError, load_config
from hilserl.monitor.metrics import WANDB_MISSING, MetricsLogger, require_wandb, resolve_wandb_mode
from hilserl.train.config import LogConfig, TrainConfig

try:
    import wandb  # noqa: F401

    HAVE_WANDB = True
except Exception:
    HAVE_WANDB = False

needs_wandb = pytest.mark.skipif(not HAVE_WANDB, reason="wandb is not installed (pip install -e .[wandb])")


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline with all its folders under tmp_path and nothing reported anywhere."""
    for var, sub in (("WANDB_DIR", "wandb_dir"), ("WANDB_CACHE_DIR", "wandb_cache"),
                     ("WANDB_CONFIG_DIR", "wandb_config"), ("WANDB_DATA_DIR", "wandb_data"),
                     ("WANDB_ARTIFACT_DIR", "wandb_artifacts")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    return tmp_path


def _records(path: Path) -> list:
    """The protobuf records of a run's ``.wandb`` transaction log (W&B's LevelDB-style log format: a 7-byte
    ``:W&B`` header, then 32 KiB blocks of chunks, each with a 7-byte header: crc32c, length, type)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if data[:4] != b":W&B":
        pytest.skip(f"{path.name}: not the .wandb log format this test reads (header {data[:7]!r})")
    block, pos, parts, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        body, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:  # FULL
            out.append(body)
        elif kind == 2:  # FIRST
            parts = body
        elif kind == 3:  # MIDDLE
            parts += body
        elif kind == 4:  # LAST
            out.append(parts + body)
    records = []
    for raw in out:
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        records.append(rec)
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@needs_wandb
def test_offline_run_in_the_run_folder_has_the_tensorboard_names(offline_wandb, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = offline_wandb / "runs" / "grasp-seed0"
    cfg = TrainConfig(log=LogConfig(wandb=True, wandb_mode="offline"))
    notes = []
    log = MetricsLogger(run_dir, log_cfg=cfg.log, config=cfg, note=notes.append)
    for i in (1, 2, 3):
        log.log_episode({"episode": i, "env_step": 100 * i, "reward": -1.0 + i, "length": 100, "success": i == 3,
                         "intervention_rate": 0.1 * i, "cube_x": float("nan") if i == 1 else 0.2, "tag": "x"})
    log.log_learner({"learner_step": 50, "env_step": 150, "critic_loss": 3.25, "temperature": 0.01})
    log.log_learner({"learner_step": 100, "env_step": 250, "critic_loss": 2.5, "temperature": 0.02})
    log.log_eval({"env_step": 300, "success_rate": 0.6, "mean_reward": 4.0, "episodes": 5})
    summary_keys = set(log._wandb.run.summary.keys())  # what W&B itself reports, before the run ends
    log.close()

    # where it went: <run>/wandb/offline-run-*, and the notes say how to upload it
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, list((run_dir / "wandb").iterdir())
    assert not any((offline_wandb / "wandb_dir").iterdir())  # dir= (the run folder) wins over WANDB_DIR
    assert any(f"wandb sync {offline[0]}" in n for n in notes), notes

    # the same names as TensorBoard's tags; the step keys are the x axes
    tb = EventAccumulator(str(run_dir / "tensorboard"))
    tb.Reload()
    tags = set(tb.Tags()["scalars"])
    assert {"episode/reward", "episode/cube_x", "learner/critic_loss", "learner/env_step", "eval/success_rate"} <= tags
    assert {k for k in summary_keys if not k.startswith("_")} == tags | {"env_step", "learner_step"}

    records = _records(next(offline[0].glob("run-*.wandb")))
    rows = [{_key(i): json.loads(i.value_json) for i in r.history.item} for r in records
            if r.WhichOneof("record_type") == "history"]
    assert len(rows) == 6
    logged = {k for row in rows for k in row if not k.startswith("_")}
    assert logged == tags | {"env_step", "learner_step"}
    # each value at the step TensorBoard has it
    for row in rows:
        step_key = "learner_step" if any(k.startswith("learner/") for k in row) else "env_step"
        for key, value in row.items():
            if key.startswith(("episode/", "learner/", "eval/")):
                got = {e.step: e.value for e in tb.Scalars(key)}
                assert got[row[step_key]] == pytest.approx(value, rel=1e-6), (key, row)
    assert [r["episode/reward"] for r in rows if "episode/reward" in r] == [0.0, 1.0, 2.0]
    assert [r["episode/success"] for r in rows if "episode/success" in r] == [0, 0, 1]
    assert "episode/cube_x" not in rows[0] and "episode/tag" not in rows[0]  # NaN and text: not sent (as in TB)

    # the run's name is the run folder's, its config the train config
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert runs and runs[0].display_name == "grasp-seed0" and runs[0].project == "hilserl"
    config = {_key(i): json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "run"
              for i in r.run.config.update}
    config.update({_key(i): json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "config"
                   for i in r.config.update})
    assert config["log"]["wandb"] is True and config["train"]["total_env_steps"] == cfg.train.total_env_steps


@needs_wandb
def test_training_logs_to_wandb_with_log_wandb_true(offline_wandb):
    from hilserl.train.loop import train

    tiny = ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
            "--train.batch_size=32", "--train.num_demos=1", "--train.training_starts=20", "--train.log_every=20",
            "--train.checkpoint_every=0", "--train.torch_threads=1", "--buffers.online_capacity=5000",
            "--buffers.demo_capacity=2000", "--train.total_env_steps=50", "--train.eval_every=40",
            "--train.eval_episodes=1", f"--output_dir={offline_wandb / 'out'}", "--run_name=tiny",
            "--log.wandb=true", "--log.wandb_mode=offline"]
    lines = []
    res = train(load_config(TrainConfig, None, tiny), log=lines.append)
    (offline,) = (res.run_dir / "wandb").glob("offline-run-*")
    assert any(f"wandb sync {offline}" in line for line in lines)
    records = _records(next(offline.glob("run-*.wandb")))
    keys = {_key(i) for r in records if r.WhichOneof("record_type") == "history" for i in r.history.item}
    assert {"episode/reward", "learner/critic_loss", "eval/success_rate", "env_step", "learner_step"} <= keys


def test_missing_wandb_is_a_clear_error_at_start(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # "import wandb" now raises ImportError
    on = LogConfig(wandb=True)
    assert require_wandb(LogConfig()) is None  # off: never imported
    with pytest.raises(ConfigError) as e:
        require_wandb(on)
    assert str(e.value) == WANDB_MISSING and str(e.value).startswith("log.wandb: ")
    with pytest.raises(ConfigError, match=r"^log\.wandb: the wandb package is not installed"):
        MetricsLogger(tmp_path / "run", log_cfg=on)
    assert not (tmp_path / "run").exists()

    from hilserl.train.loop import train

    cfg = TrainConfig(log=on, output_dir=str(tmp_path / "out"), run_name="r")
    with pytest.raises(ConfigError, match=r"^log\.wandb: .*pip install wandb.*log\.wandb=false"):
        train(cfg, log=lambda line: None)
    assert not (tmp_path / "out").exists()  # failed before the run folder was made

    with MetricsLogger(tmp_path / "plain", tensorboard=False) as log:  # W&B off: no import, as before
        log.log_episode({"episode": 1, "env_step": 10})


@pytest.mark.parametrize("override, field", [
    ("--log.wandb_mode=cloud", "log.wandb_mode"),
    ("--log.wandb_project=me/hilserl", "log.wandb_project"),
    ("--log.wandb_project= ", "log.wandb_project"),
    ("--log.wandb_entity=", "log.wandb_entity"),
    ("--log.wandb=yes", "log.wandb"),
    ("--log.wandbb=true", "log.wandbb"),
])
def test_validation_errors_name_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, None, [override])
    assert str(e.value).startswith(f"{field}: "), str(e.value)


def test_log_section_defaults_and_overrides():
    cfg = load_config(TrainConfig)
    assert cfg.log == LogConfig() and cfg.log.wandb is False and cfg.log.wandb_mode == "auto"
    cfg = load_config(TrainConfig, None, ["--log.wandb=true", "--log.wandb_mode=offline", "--log.wandb_entity=lab"])
    assert (cfg.log.wandb, cfg.log.wandb_mode, cfg.log.wandb_entity, cfg.log.wandb_project) == \
        (True, "offline", "lab", "hilserl")


def test_auto_mode_is_offline_without_a_key_and_never_probes(tmp_path):
    def probe():
        raise AssertionError("auto mode without an API key must not touch the network")

    no_key = {"NETRC": str(tmp_path / "missing")}
    assert resolve_wandb_mode("auto", no_key, probe)[0] == "offline"
    assert resolve_wandb_mode("online", no_key, probe)[0] == "online"  # asked for: W&B itself says what is wrong
    assert resolve_wandb_mode("offline", {"WANDB_API_KEY": "k"}, probe)[0] == "offline"
    assert resolve_wandb_mode("auto", {**no_key, "WANDB_MODE": "disabled"}, probe)[0] == "disabled"
    assert resolve_wandb_mode("auto", {**no_key, "WANDB_MODE": "dryrun"}, probe)[0] == "offline"

    key = {"WANDB_API_KEY": "k" * 40}
    assert resolve_wandb_mode("auto", key, lambda: True)[0] == "online"
    assert resolve_wandb_mode("auto", key, lambda: False) == ("offline", "the W&B server did not answer")

    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "p" * 40 + "\n")
    netrc.chmod(0o600)
    assert resolve_wandb_mode("auto", {"NETRC": str(netrc)}, lambda: True)[0] == "online"
    other = {"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.org"}  # a key for another host
    assert resolve_wandb_mode("auto", other, probe)[0] == "offline"


class _FakeRun:
    def __init__(self, fail_after: int):
        self.fail_after, self.logged, self.finished = fail_after, [], False
        self.settings = types.SimpleNamespace(sync_dir="/nowhere/offline-run-x")
        self.dir = "/nowhere/offline-run-x/files"

    def define_metric(self, *args, **kwargs):
        pass

    def log(self, data):
        if len(self.logged) >= self.fail_after:
            raise RuntimeError("wandb-core went away")
        self.logged.append(data)

    def finish(self, exit_code=None):
        self.finished = True


def _fake_wandb(run=None, init_error=None, failing_modes=()):
    def init(**kwargs):
        if init_error is not None or kwargs["mode"] in failing_modes:
            raise init_error or RuntimeError(f"{kwargs['mode']} refused")
        run.init_kwargs = kwargs
        return run

    return types.SimpleNamespace(Settings=lambda **kw: kw, init=init)


def test_a_wandb_failure_mid_run_warns_once_and_training_logs_on(tmp_path, monkeypatch):
    run = _FakeRun(fail_after=2)
    monkeypatch.setitem(sys.modules, "wandb", _fake_wandb(run))
    log = MetricsLogger(tmp_path, tensorboard=False, log_cfg=LogConfig(wandb=True, wandb_mode="offline"),
                        note=lambda line: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(1, 6):
            log.log_episode({"episode": i, "env_step": 10 * i, "reward": float(i)})
    log.close()
    assert [w for w in caught if "W&B logging stopped" in str(w.message)] == caught and len(caught) == 1
    assert len(run.logged) == 2 and run.logged[0] == {"env_step": 10, "episode/episode": 1.0, "episode/reward": 1.0}
    assert len((tmp_path / "metrics" / "episodes.csv").read_text().splitlines()) == 6  # header + all 5 episodes


def test_a_failed_wandb_start_warns_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", _fake_wandb(init_error=RuntimeError("no wandb-core")))
    with pytest.warns(UserWarning, match="W&B logging stopped: start failed"):
        log = MetricsLogger(tmp_path, tensorboard=False, log_cfg=LogConfig(wandb=True, wandb_mode="offline"),
                            note=lambda line: None)
    log.log_episode({"episode": 1, "env_step": 10})
    log.close()
    assert (tmp_path / "metrics" / "episodes.csv").exists()


def test_a_failed_online_start_falls_back_to_offline(tmp_path, monkeypatch):
    run = _FakeRun(fail_after=100)
    monkeypatch.setitem(sys.modules, "wandb", _fake_wandb(run, failing_modes=("online",)))
    notes = []
    with pytest.warns(UserWarning, match="could not start an online run"):
        log = MetricsLogger(tmp_path / "run-7", tensorboard=False, note=notes.append,
                            log_cfg=LogConfig(wandb=True, wandb_mode="online", wandb_entity="lab"))
    assert run.init_kwargs["mode"] == "offline" and run.init_kwargs["name"] == "run-7"
    assert run.init_kwargs["dir"] == str(tmp_path / "run-7") and run.init_kwargs["entity"] == "lab"
    assert any("wandb sync /nowhere/offline-run-x" in n for n in notes)
    log.log_learner({"learner_step": 20, "critic_loss": 1.5})
    log.close()
    assert run.logged == [{"learner_step": 20, "learner/critic_loss": 1.5}] and run.finished
