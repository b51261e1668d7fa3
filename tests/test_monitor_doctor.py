"""The config doctor flags each hyperparameter mistake from the user's devlogs, and nothing in the defaults or the
shipped configs; its recommendations are the reference config's values."""

import json
from pathlib import Path

import pytest
from rich.console import Console

from hilserl.config import ConfigError, load_config
from hilserl.monitor.doctor import CHECKS, REFERENCE_CONFIG, Finding, diagnose, exploration_std, reference
from hilserl.monitor.doctor_report import render_table, run_doctor
from hilserl.train.config import TrainConfig

BAD = ("error", "warning")


def _problems(findings):
    return [f for f in findings if f.severity in BAD]


def test_default_config_has_no_warning_or_error():
    findings = diagnose(TrainConfig())
    assert _problems(findings) == [], [f"{f.setting}: {f.why}" for f in findings]


@pytest.mark.parametrize("override, setting", [
    ("--policy.temperature_init=0.2", "policy.temperature_init"),
    ("--policy.temperature_init=1.0", "policy.temperature_init"),
    ("--policy.target_entropy=-4", "policy.target_entropy"),
    ("--policy.backup_entropy=true", "policy.backup_entropy"),
    ("--policy.utd_ratio=1", "policy.utd_ratio"),
    ("--reward.step_penalty=0", "reward.step_penalty"),
    ("--reward.success_reward=1", "reward.success_reward"),
    ("--policy.augmentation_pad=0", "policy.augmentation_pad"),
    ("--buffers.online_capacity=30000", "buffers.online_capacity"),
    ("--train.num_demos=5", "train.num_demos"),
    ("--env.action_scale=0.002", "env.action_scale"),
    ("--policy.discount=0.8", "policy.discount"),
    ("--policy.critic_ensemble_size=1", "policy.critic_ensemble_size"),
    ("--policy.critic_ensemble_size=4 --policy.critic_subsample_size=1", "policy.critic_subsample_size"),
    ("--train.batch_size=64", "train.batch_size"),
    ("--policy.encoder=resnet10", "policy.encoder"),
])
def test_each_seeded_mistake_is_flagged(override, setting):
    overrides = override.split()
    if "resnet10" in override:
        overrides.append("--policy.backbone_trim_head=false")  # only valid for efficientnet
    cfg = load_config(TrainConfig, None, overrides)
    flagged = {f.setting: f for f in _problems(diagnose(cfg))}
    assert setting in flagged, f"{override} not flagged; got {sorted(flagged)}"
    f = flagged[setting]
    assert f.why and f.recommended is not None
    assert set(flagged) == {setting}, f"{override} also flagged {sorted(set(flagged) - {setting})}"


def test_severities_of_the_mistakes_that_broke_real_runs():
    cfg = load_config(TrainConfig, None, ["--policy.temperature_init=0.2", "--policy.target_entropy=-4",
                                          "--policy.augmentation_pad=0"])
    errors = {f.setting for f in diagnose(cfg) if f.severity == "error"}
    assert errors == {"policy.temperature_init", "policy.target_entropy", "policy.augmentation_pad"}


def test_arm_that_did_not_move():
    """4 continuous dims with target entropy -4 (= -dim): the policy's outputs shrink to about +-0.1 and the arm
    stops moving. The cause is the target entropy (an error), not the action scale."""
    base = ["--env.gripper_mode=continuous", "--policy.discrete_gripper=false", "--policy.action_dim=4",
            "--env.action_scale=0.02"]
    stuck = load_config(TrainConfig, None, base + ["--policy.target_entropy=-4"])
    assert {f.setting: f.severity for f in _problems(diagnose(stuck))} == {"policy.target_entropy": "error"}
    fixed = load_config(TrainConfig, None, base + ["--policy.target_entropy=-2"])  # -action_dim / 2
    assert _problems(diagnose(fixed)) == []
    assert 0.08 < exploration_std(-4, 4) < 0.1  # outputs around +-0.1


def test_action_scale_is_judged_in_millimetres_per_typical_action():
    """A typical action (|a| = 0.5) must move the arm at least 2.5 mm per tick: 0.01 m (5 mm) and 0.02 m pass,
    0.004 m (2 mm) does not, whatever the target entropy; more than 5 cm per tick at full command is flagged too."""
    def scale_findings(scale):
        cfg = load_config(TrainConfig, None, [f"--env.action_scale={scale}"])
        return [f for f in _problems(diagnose(cfg)) if f.setting == "env.action_scale"]

    assert scale_findings(0.01) == [] and scale_findings(0.02) == []
    (small,) = scale_findings(0.004)
    assert "2.0 mm per tick" in small.why
    assert len(scale_findings(0.06)) == 1


def test_augmentation_does_not_matter_without_images():
    cfg = load_config(TrainConfig, None, ["--env.obs_type=state", "--policy.augmentation_pad=0"])
    assert "policy.augmentation_pad" not in {f.setting for f in diagnose(cfg)}


def test_findings_are_sorted_errors_first():
    cfg = load_config(TrainConfig, None, ["--train.num_demos=5", "--policy.temperature_init=0.2",
                                          "--buffers.demo_fraction=0.3"])
    assert [f.severity for f in diagnose(cfg)] == ["error", "warning", "info"]
    with pytest.raises(ValueError):
        Finding("x", 1, 2, "fatal", "no such severity")


def test_run_doctor_exit_codes_and_table(tmp_path):
    console = Console(record=True, width=160, color_system=None)
    assert run_doctor(None, [], console=console) == 0
    assert "no problems found" in console.export_text()
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"policy": {"temperature_init": 0.2}, "train": {"num_demos": 5}}))
    console = Console(record=True, width=160, color_system=None)
    assert run_doctor(path, ["--policy.utd_ratio=1"], console=console) == 1
    text = console.export_text()
    for needle in ("policy.temperature_init", "train.num_demos", "policy.utd_ratio", "0.01", "1 error, 2 warnings"):
        assert needle in text
    assert run_doctor(None, ["--train.num_demos=5"], console=Console(file=open(tmp_path / "o", "w"))) == 0


def test_config_errors_propagate():
    with pytest.raises(ConfigError, match="temprature_init"):
        run_doctor(None, ["--policy.temprature_init=0.01"], console=Console(quiet=True))


def test_render_table_without_findings_prints_summary():
    console = Console(record=True, width=100, color_system=None)
    render_table([], console=console)
    assert console.export_text().strip() == "doctor: no problems found - the settings match the HIL-SERL reference."


def test_real_arm_config_missing_files_are_errors_and_present_files_are_not(tmp_path):
    from hilserl.config import load_config
    from hilserl.monitor.doctor import diagnose
    from hilserl.train.config import TrainConfig

    cfg = load_config(TrainConfig, "configs/so101_grasp.json", [
        f"--env.follower_calibration={tmp_path / 'f.json'}", f"--env.leader_calibration={tmp_path / 'l.json'}",
        f"--reward.classifier_path={tmp_path / 'clf'}", f"--train.demo_dataset={tmp_path / 'demos'}"])
    errors = {f.setting for f in diagnose(cfg) if f.severity == "error"}
    assert errors == {"env.follower_calibration", "env.leader_calibration", "reward.classifier_path",
                      "train.demo_dataset"}
    for name in ("f.json", "l.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "clf").mkdir()
    (tmp_path / "demos").mkdir()
    findings = diagnose(cfg)
    assert not [f for f in findings if f.severity == "error"]
    assert not any(f.setting.startswith("human.") for f in findings)  # no simulated human on the real arm


def test_missing_initial_policy_is_an_error(tmp_path):
    cfg = load_config(TrainConfig, None, [f"--train.init_policy={tmp_path / 'no_such_run'}"])
    errors = [f for f in diagnose(cfg) if f.severity == "error"]
    assert [f.setting for f in errors] == ["train.init_policy"]


def test_every_shipped_config_raises_no_warning_or_error(tmp_path, monkeypatch):
    """Every configs/*.json as shipped. The real-arm config names files a user makes first (calibrations, the
    classifier, the demos; missing ones are errors by design): they exist here, relative to the working folder."""
    configs = sorted(Path("configs").resolve().glob("*.json"))
    assert len(configs) >= 3
    monkeypatch.chdir(tmp_path)
    for name in ("calibration/follower.json", "calibration/leader.json"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}")
    for name in ("models/reward_classifier", "data/demos"):
        (tmp_path / name).mkdir(parents=True)
    for path in configs:
        findings = diagnose(load_config(TrainConfig, path, []))
        assert _problems(findings) == [], (path.name, [f"{f.setting}: {f.why}" for f in _problems(findings)])
        console = Console(record=True, width=160, color_system=None)
        assert run_doctor(path, [], console=console) == 0


def test_recommendations_come_from_the_reference_config():
    ref = reference()
    assert REFERENCE_CONFIG.name == "sim_grasp.json" and ref == load_config(TrainConfig, REFERENCE_CONFIG, [])
    cfg = load_config(TrainConfig, None, ["--policy.temperature_init=0.2", "--reward.step_penalty=0",
                                          "--buffers.online_capacity=30000", "--env.action_scale=0.002",
                                          "--policy.discount=0.8", "--train.batch_size=64"])
    rec = {f.setting: f.recommended for f in diagnose(cfg)}
    assert rec == {"policy.temperature_init": ref.policy.temperature_init,
                   "reward.step_penalty": ref.reward.step_penalty,
                   "buffers.online_capacity": ref.buffers.online_capacity,
                   "env.action_scale": ref.env.action_scale, "policy.discount": ref.policy.discount,
                   "train.batch_size": ref.train.batch_size}
    assert rec["env.action_scale"] == 0.01  # the measured pixel value, not the simulation dataclass's 0.02
    # another reference moves the recommendation and the limits with it
    other = load_config(TrainConfig, REFERENCE_CONFIG, ["--policy.utd_ratio=4", "--train.num_demos=30"])
    findings = {f.setting: f for f in diagnose(TrainConfig(), other)}
    assert findings["policy.utd_ratio"].recommended == 4 and findings["train.num_demos"].recommended == 30
    assert "4 critic steps" in findings["policy.utd_ratio"].why


def test_every_check_is_small_and_listed():
    import inspect

    from hilserl.monitor import doctor

    defined = [f for name, f in vars(doctor).items() if name.startswith("check_") and inspect.isfunction(f)]
    assert set(defined) == set(CHECKS) and len(CHECKS) == len(set(CHECKS))
    for check in CHECKS:
        assert len(inspect.getsource(check).splitlines()) <= 30, check.__name__


def test_a_pixel_critic_without_trunk_is_flagged():
    cfg = load_config(TrainConfig, "configs/sim_grasp.json", ["--policy.critic_trunk_dim=null"])
    (finding,) = _problems(diagnose(cfg))
    assert finding.setting == "policy.critic_trunk_dim" and finding.recommended == 50
    state = load_config(TrainConfig, "configs/sim_grasp_state.json", ["--policy.critic_trunk_dim=null"])
    assert _problems(diagnose(state)) == []  # proprioception alone: a small embedding, no finding


def test_an_average_spanning_too_much_of_the_run_is_flagged():
    assert not [f for f in diagnose(load_config(TrainConfig, "configs/sim_grasp.json", []))
                if f.setting == "policy.average_rate"]  # the shipped default: 500 updates of 9,900
    short = load_config(TrainConfig, "configs/sim_grasp.json", ["--train.total_env_steps=1500"])
    (finding,) = [f for f in diagnose(short) if f.setting == "policy.average_rate"]
    assert finding.severity == "warning" and "500" in finding.why and "1,400" in finding.why
    assert finding.recommended == pytest.approx(4 / 1400)
    off = load_config(TrainConfig, "configs/sim_grasp.json", ["--train.total_env_steps=1500", "--policy.average_rate=0"])
    assert not [f for f in diagnose(off) if f.setting == "policy.average_rate"]


def test_the_smoothness_term_off_is_noted_and_a_huge_one_is_flagged():
    ref = reference().policy.action_smoothness
    assert ref > 0  # the shipped pixel config trains with it
    off = diagnose(load_config(TrainConfig, "configs/sim_grasp.json", ["--policy.action_smoothness=0"]))
    assert _problems(off) == []
    (note,) = [f for f in off if f.setting == "policy.action_smoothness"]
    assert note.severity == "info" and note.recommended == ref
    huge = load_config(TrainConfig, "configs/sim_grasp.json", [f"--policy.action_smoothness={ref * 20:g}"])
    (finding,) = _problems(diagnose(huge))
    assert finding.setting == "policy.action_smoothness" and finding.severity == "warning"
    state = diagnose(load_config(TrainConfig, "configs/sim_grasp_state.json", []))
    assert not [f for f in state if f.setting == "policy.action_smoothness"]  # no camera: nothing to note
