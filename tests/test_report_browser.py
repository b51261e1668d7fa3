"""The report in a real browser: Playwright driving Debian's headless Chromium on the report of a tiny `hilserl demo`
(the command `make demo` runs, with a short budget), opened
from a file:// URL with the network cut off. Every image must decode, the evaluation video must load (metadata and
a duration within a bounded wait) and play a frame. The screenshot goes to the test's tmp_path, and a copy to the
folder $HILSERL_CONSOLE_SCREENS names when it is set (to look at it after a run)."""

from pathlib import Path

import pytest

from browser_support import BROWSER_MARKS, keep_screenshot
from browser_support import browser  # noqa: F401  (the fixture)

pytestmark = BROWSER_MARKS

TINY = ["--env.obs_type=state", "--policy.hidden_dims=[32, 32]", "--policy.discrete_critic_hidden_dims=[32, 32]",
        "--train.batch_size=32", "--train.num_demos=1", "--train.training_starts=20", "--train.log_every=20",
        "--train.torch_threads=1", "--buffers.online_capacity=1000", "--buffers.demo_capacity=500"]


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    """`hilserl report` on what `hilserl demo` wrote (expert video, training run, evaluation with video): the demo
    as `make demo` runs it, on the state config with a 120-step budget and two evaluation episodes."""
    from hilserl.cli import main

    out = tmp_path_factory.mktemp("report")
    demo = out / "demo"
    assert main(["demo", "--config_path", "configs/sim_grasp_state.json", "--env_steps", "120", "--eval_episodes",
                 "2", "--out", str(demo), *TINY]) == 0
    page = out / "page" / "report.html"
    assert main(["report", str(demo), "--out", str(page)]) == 0
    return page



def test_the_report_opens_offline_with_every_image_and_the_video(report_file, browser, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, offline=True)
    page = context.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(report_file.resolve().as_uri(), timeout=15_000)

    # every image decoded (plots, success map)
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=15_000)
    widths = page.evaluate("[...document.images].map(i => i.naturalWidth)")
    assert len(widths) >= 8 and all(w > 0 for w in widths), widths

    # the evaluation video: metadata and a duration, then a decoded frame
    video = page.wait_for_selector("video", timeout=5_000)
    page.wait_for_function("(v) => v.readyState >= 1 && v.duration > 0", arg=video, timeout=15_000)
    assert page.evaluate("document.querySelectorAll('video').length") == 2  # the expert's and the evaluation's
    assert video.evaluate("v => v.error") is None and video.evaluate("v => v.duration") > 1.0
    page.wait_for_function("(v) => v.readyState >= 2 && v.videoWidth > 0", arg=video, timeout=15_000)

    # the headings a reader looks for
    text = page.inner_text("body")
    for heading in ("Run", "Evaluation (eval.json)", "Training curves", "Health checks", "Config doctor", "Config"):
        assert heading in text
    page.wait_for_timeout(1000)  # the player's loading spinner fades (cosmetic, for the screenshot)
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    keep_screenshot(shot)

    # nothing but the file itself was requested (data URIs are not requests), and nothing failed
    assert [u for u in requests if not u.startswith("data:")] == [report_file.resolve().as_uri()]
    assert not errors, errors
    context.close()
