"""`hilserl demo` end to end on a tiny budget: expert video, training, the final policy evaluated, and the summary
line with the wall time, the success rate with its interval and the action jitter."""

import re

import hilserl  # noqa: F401  (before mujoco)
from hilserl.cli import main


def test_demo_trains_evaluates_the_final_policy_and_prints_its_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--env_steps", "120", "--eval_episodes", "3", "--out", str(out),
                 "--train.num_demos=2", "--train.training_starts=50", "--train.batch_size=32",
                 "--policy.backbone_dtype=float32"])
    assert code == 0
    text = capsys.readouterr().out
    line = re.search(r"hilserl demo: ([\d.]+) min in all; success (\d+)% \((\d+)/3 new episodes, 95% interval "
                     r"(\d+)%-(\d+)%\); action jitter ([\d.]+|n/a) per tick", text)
    assert line, text[-2000:]
    assert float(line.group(1)) > 0 and int(line.group(4)) <= int(line.group(2)) <= int(line.group(5))
    assert (out / "eval" / "eval.json").exists() and (out / "eval" / "eval_episodes.mp4").exists()
    assert (out / "expert" / "expert_episodes.mp4").exists()
    assert list((out / "train" / "plots").glob("*.png"))
