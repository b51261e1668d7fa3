"""`hilserl report`: one self-contained HTML page of a real (tiny) run, its evaluation and video; a demo folder with
the evaluation beside the run; a run still being written; clear errors for folders with nothing to report."""

import base64
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from hilserl import report
from hilserl.config import load_config
from hilserl.report import ReportError, write_report
from hilserl.train.config import TrainConfig

TINY = ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.batch_size=32", "--train.num_demos=1", "--train.training_starts=20", "--train.eval_every=60",
        "--train.eval_episodes=2", "--train.checkpoint_every=0", "--train.log_every=20", "--train.torch_threads=1",
        "--buffers.online_capacity=1000", "--buffers.demo_capacity=500", "--train.total_env_steps=120",
        "--run_name=tiny"]
PNG_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
VIDEO_URI = re.compile(r'<video controls[^>]* src="data:video/mp4;base64,([A-Za-z0-9+/=]+)"')
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real two-episode state-only run (an evaluation every 60 steps), then `hilserl eval` of it with a video."""
    from rich.console import Console

    from hilserl.cli import run_eval
    from hilserl.train.loop import train

    out = tmp_path_factory.mktemp("report")
    res = train(load_config(TrainConfig, None, [*TINY, f"--output_dir={out}"]), log=lambda s: None)
    with open(out / "eval.txt", "w") as f:
        run_eval(str(res.run_dir), 2, res.run_dir / "eval", False, 1, 0, Console(file=f))
    return res.run_dir


@pytest.fixture
def light(run, tmp_path) -> Path:
    """A copy of the run without its buffers, checkpoints and TensorBoard files (for tests that change it)."""
    dst = tmp_path / "tiny"
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("buffers", "checkpoints", "tensorboard", "*.lock"))
    return dst


def _pngs(page: str) -> list[Image.Image]:
    images = []
    for b64 in PNG_URI.findall(page):
        data = base64.b64decode(b64)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        Image.open(io.BytesIO(data)).verify()
        images.append(Image.open(io.BytesIO(data)))
    return images


def test_the_report_of_a_run_holds_plots_video_config_doctor_and_the_evaluation(run):
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    path = write_report(run)
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    after = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert after == sorted([*before, Path("report.html")])  # the run folder is only read (no plots/ written)

    # the training curves, drawn from the metrics (train() writes no plots/), and the success map: real PNGs
    images = _pngs(page)
    assert len(images) >= 8 and all(im.width > 100 and im.height > 100 for im in images)
    assert "success_rate_vs_env_step.png" in page and "learner.png" in page and "success_map.png" in page
    assert "drawn now from metrics" in page

    # the evaluation video, byte for byte
    videos = VIDEO_URI.findall(page)
    assert len(videos) == 1 and base64.b64decode(videos[0]) == (run / "eval" / "eval_episodes.mp4").read_bytes()

    # the evaluation's numbers as eval.json has them
    s = json.loads((run / "eval" / "eval.json").read_text())["summary"]
    assert (f"success {s['success_rate']:.0%} ({round(s['success_rate'] * s['episodes'])}/{s['episodes']} episodes),"
            f" 95% interval {s['success_ci_low']:.0%}–{s['success_ci_high']:.0%}") in page
    assert f"{s['action_jitter']:.3g} per tick" in page
    assert "the 2 evaluation episodes" in page

    # the evaluations during training (metrics/eval.csv), the episodes, the config and the doctor's findings
    assert "Evaluations during training" in page and "last 2" in page
    assert "&quot;obs_type&quot;: &quot;state&quot;" in page and "&quot;run_name&quot;: &quot;tiny&quot;" in page
    assert "train.batch_size" in page and "doctor: " in page  # batch 32 against the reference's 256: a warning
    assert "no health findings" in page

    # self-contained: nothing to fetch, no script
    assert not REMOTE.search(page), REMOTE.search(page)
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page


def test_a_demo_folder_and_a_run_with_its_evaluation_beside_it(light, run, tmp_path):
    demo = tmp_path / "demo"
    demo.mkdir()
    light.rename(demo / "train")
    (demo / "train" / "eval").rename(demo / "eval")
    ev = json.loads((demo / "eval" / "eval.json").read_text())
    ev["summary"]["checkpoint"] = "outputs/demo/train/checkpoints/0000200/pretrained_model"  # as `make demo` writes
    (demo / "eval" / "eval.json").write_text(json.dumps(ev))
    (demo / "train" / "checkpoints" / "0000200" / "pretrained_model").mkdir(parents=True)
    (demo / "expert").mkdir()
    shutil.copy(demo / "eval" / "success_map.png", demo / "expert" / "expert_contact_sheet.png")
    shutil.copy(demo / "eval" / "eval_episodes.mp4", demo / "expert" / "expert_episodes.mp4")

    page = write_report(demo).read_text(encoding="utf-8")
    assert len(VIDEO_URI.findall(page)) == 2 and "Scripted expert demo" in page and "expert_contact_sheet.png" in page
    assert "Training curves" in page and "success 0% (0/2 episodes)" in page

    # the run folder of the demo: its evaluation beside it is found (its checkpoint is this run's), the expert too
    out = write_report(demo / "train", tmp_path / "train.html")
    page = out.read_text(encoding="utf-8")
    assert str((demo / "eval").resolve()) in page and len(VIDEO_URI.findall(page)) == 2

    # an evaluation beside it of another run's checkpoint is not this run's
    ev["summary"]["checkpoint"] = "/elsewhere/other/checkpoints/0000200/pretrained_model"
    (demo / "eval" / "eval.json").write_text(json.dumps(ev))
    page = write_report(demo / "train", tmp_path / "train.html").read_text(encoding="utf-8")
    assert "Evaluation (eval.json)" not in page and "Scripted expert demo" not in page

    # a `hilserl eval` folder alone
    (demo / "eval" / "console.jsonl").write_text(json.dumps({"time": 1.7e9, "command": "stop", "value": None,
                                                             "applied": True, "env_step": 0, "episode": 2}) + "\n")
    page = write_report(demo / "eval", tmp_path / "eval.html").read_text(encoding="utf-8")
    assert "success 0% (0/2 episodes)" in page and len(VIDEO_URI.findall(page)) == 1
    assert "during this evaluation" in page and "stop ×1" in page


def test_a_run_still_being_written_is_read_as_far_as_it_is_complete(light, monkeypatch):
    from hilserl.monitor.health import HealthFinding, HealthLog

    episodes = light / "metrics" / "episodes.csv"
    rows = episodes.read_text().count("\n") - 1
    with open(episodes, "a") as f:
        f.write("3,260,-1.5,6")  # a row being written: no newline yet
    HealthLog(light).write(HealthFinding("shaking", "warning", "episode 2", "the commanded target swings 11 mm per "
                                         "tick", "lower env.action_scale or raise policy.action_smoothness"))
    with open(light / "health.jsonl", "a") as f:
        f.write('{"check": "no_succ')
    (light / "console.jsonl").write_text(json.dumps({"time": 1.7e9, "command": "takeover", "value": None,
                                                     "applied": True, "env_step": 50, "episode": 1, "step": 3}) + "\n")
    video = light / "eval" / "eval_episodes.mp4"
    video.write_bytes(video.read_bytes()[:2000])  # the encoder has not written the index yet
    page = write_report(light).read_text(encoding="utf-8")
    assert f"all {rows} episodes" in page and f"all {rows + 1} episodes" not in page
    assert "lower env.action_scale or raise policy.action_smoothness" in page and "no_succ" not in page
    assert "incomplete" in page and not VIDEO_URI.findall(page)
    assert "takeover ×1" in page

    # over the video budget: left out with a note naming the file
    video.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"moov" * 1000)
    monkeypatch.setattr(report, "VIDEO_BUDGET_BYTES", 1000)
    page = write_report(light).read_text(encoding="utf-8")
    assert "left out: the report embeds at most" in page and "eval_episodes.mp4" in page


def test_a_config_the_doctor_cannot_read_and_a_run_that_just_started(tmp_path):
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"policy": {"type": "nope"}}))
    page = write_report(run).read_text(encoding="utf-8")
    assert "the config doctor could not run on this config" in page and "nope" in page
    assert "no episodes logged yet" in page and "no plots" in page


def test_folders_with_nothing_to_report_are_refused_with_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope"
    with pytest.raises(ReportError, match=re.escape(str(missing)) + ".*no such folder.*config.json"):
        write_report(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="nothing to report.*eval.json"):
        write_report(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ReportError, match="not a folder"):
        write_report(tmp_path / "file.txt")

    assert report.main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {missing}: no such folder") and "Traceback" not in err
    assert isinstance(ReportError("x"), FileNotFoundError)  # hilserl's main prints these as "error: ..." too
