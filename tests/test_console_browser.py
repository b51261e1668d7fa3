"""The console in a real browser: Playwright driving Debian's headless Chromium against a short simulation run
with the console (loopback, a free port, bounded waits only). Screenshots go to the test's tmp_path, and a copy to
the folder $HILSERL_CONSOLE_SCREENS names when it is set (to look at them after a run)."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hilserl.config import load_config
from hilserl.console import ConsoleHub
from hilserl.train.config import TrainConfig

from browser_support import BROWSER_MARKS, keep_screenshot
from browser_support import browser  # noqa: F401  (the fixture)

pytestmark = BROWSER_MARKS

RUN = ["--env.obs_type=pixels_state", "--env.image_size=128", "--policy.encoder=conv",
       "--policy.backbone_trim_head=false", "--policy.cached_features=false", "--policy.hidden_dims=[32, 32]",
       "--policy.discrete_critic_hidden_dims=[32, 32]", "--train.batch_size=16", "--train.num_demos=1",
       "--train.training_starts=20", "--train.eval_every=0", "--train.checkpoint_every=0", "--train.log_every=10",
       "--train.torch_threads=1", "--human.enabled=false", "--buffers.online_capacity=3000",
       "--buffers.demo_capacity=1000", "--env.control_time_s=6", "--train.total_env_steps=2500", "--run_name=web"]


def _wait(predicate, timeout_s: float, what: str, period_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Shots:
    def __init__(self, page, tmp_path: Path):
        self.page, self.dir = page, tmp_path / "screens"
        self.dir.mkdir()

    def __call__(self, name: str) -> None:
        path = self.dir / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        keep_screenshot(path)



@pytest.fixture
def training(tmp_path):
    """A short pixel training run with the console, in a background thread; stopped (and joined) at the end."""
    from hilserl.console.server import ConsoleServer
    from hilserl.console.session import Console
    from hilserl.train.loop import train

    console = Console(log=lambda s: None)
    console.server = ConsoleServer(console.hub, port=0).start()
    cfg = load_config(TrainConfig, None, [*RUN, f"--output_dir={tmp_path}"])
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=train(cfg, log=lambda s: None, console=console)),
                              daemon=True)
    thread.start()
    yield console, thread, out, cfg
    console.stop_requested = True  # whatever happened above, the run ends
    thread.join(timeout=60)
    console.close()


def _state(console) -> dict:
    return console.hub.state()[0]


def test_the_console_shows_and_steers_a_training_run(training, browser, tmp_path):
    console, thread, out, cfg = training
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("dialog", lambda d: d.accept())  # the stop button asks first
    shot = Shots(page, tmp_path)
    page.goto(console.server.url, timeout=10_000)

    # the camera image changes within 5 s
    img = page.wait_for_selector("#cam-gripper", timeout=90_000)  # the run starts (demos first)
    _wait(lambda: img.evaluate("i => i.complete && i.naturalWidth > 0"), 30, "the first frame")
    first = img.screenshot()
    _wait(lambda: img.screenshot() != first, 5, "a new camera frame")
    _wait(lambda: img.evaluate("i => i.complete && i.naturalWidth") == 128, 10, "a 128-px frame (as the policy sees)")
    assert img.bounding_box()["width"] >= 3 * 128

    # episodes appear in the table, curves have points
    page.wait_for_selector("#episodes tbody tr", timeout=90_000)
    shot("01_live")

    # take over at the start of an episode, hold the up arrow: the end-effector moves +x, stored as interventions
    _wait(lambda: 0 < _state(console).get("step", 99) < 8, 60, "the start of an episode", 0.01)
    page.click("#btn-takeover")
    page.wait_for_function("document.querySelector('#actor').textContent.includes('you')", timeout=15_000)
    episode, x0 = _state(console)["episode"], _state(console)["ee_pos"][0]
    key, sign = ("ArrowUp", 1.0) if x0 < 0.23 else ("ArrowDown", -1.0)  # away from the nearer workspace bound
    page.keyboard.down(key)
    try:
        page.wait_for_function(f"document.querySelector('#move').textContent.includes('x {'+' if sign > 0 else ''}"
                               f"{sign * 0.5:.2f}')", timeout=15_000)
        # held until the console has shown a stored step driven along x and five more after it: the key stays down,
        # so each of those is driven too (at least six, however slowly a loaded machine steps; the arm's travel
        # alone cannot count them, since the arm can still be coasting from the policy's last steps)
        def driven():
            s = _state(console)
            return s if s.get("actor") == "you" and np.isclose(s.get("action", [0.0])[0], 0.5 * sign) else None

        first = _wait(driven, 30, f"a stored step driven {key}", 0.01)
        _wait(lambda: _state(console)["step"] >= first["step"] + 5, 30, f"five more steps with {key} held")
        shot("02_take_over")
    finally:
        page.keyboard.up(key)
    s = _state(console)
    assert s["episode"] == episode and s["actor"] == "you"
    assert sign * (s["ee_pos"][0] - x0) > 0.01, f"the end-effector did not move {key}: {x0} -> {s['ee_pos'][0]}"

    # success ends this episode as a success
    page.keyboard.press("y")
    row = page.wait_for_selector("#episodes tbody tr:first-child >> text=success (marked)", timeout=30_000)
    assert row.evaluate("r => r.parentElement.firstChild.textContent") == str(episode)
    shot("03_success")

    # stop: the run ends through the end of training (checkpoint, buffers committed)
    page.click("#btn-stop")
    thread.join(timeout=60)
    assert not thread.is_alive(), "stop did not end the run"
    res = out["result"]
    assert res.last_checkpoint is not None and res.last_checkpoint.name == f"{res.env_steps:07d}"
    page.wait_for_function("document.querySelector('#phase').textContent !== 'training'", timeout=15_000)
    shot("04_stopped")
    _check_stored_interventions(res.run_dir, sign)


def _check_stored_interventions(run_dir, sign: float):
    from hilserl.data import ReplayBuffer

    buf = ReplayBuffer.open(run_dir / "buffers" / "online")
    try:
        slots = np.flatnonzero(buf._valid & buf._intervention)
        driven = [s for s in slots if np.allclose(buf._action[s, :3], [0.5 * sign, 0.0, 0.0])]
        assert len(driven) >= 5, (f"{len(slots)} intervention steps, {len(driven)} of them along x ({sign:+}): "
                                  f"{buf._action[slots].round(2).tolist()}")
        state = buf._frames["state"]
        moved = [sign * (state[s + 1, 14] - state[s, 14]) for s in driven]
        assert np.mean(moved) > 0.003, moved  # about 1 cm a step in the commanded direction
        assert not buf._intervention[buf._valid].all()  # the policy's own steps stay unflagged
    finally:
        buf.close()


def test_the_threshold_set_on_the_page_reaches_the_reward_wrapper(browser, tmp_path):
    """The simulation run above has no classifier (its page says so); here the same console drives an actor whose
    reward is a (fake) classifier's, through the page's threshold form."""
    from hilserl.console.server import ConsoleServer
    from hilserl.console.session import Console
    from test_console import classifier_actor

    console = Console(log=lambda s: None)
    actor, wrapper = classifier_actor(console, tmp_path)
    console.server = ConsoleServer(console.hub, port=0).start()
    done = threading.Event()

    def act():
        episode = 0
        try:
            while not done.is_set():
                episode += 1
                actor.run_episode(episode, 0, console.transition)
        finally:
            wrapper.close()  # its renderer belongs to this thread's GL context

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(console.server.url, timeout=10_000)
        page.wait_for_function("document.querySelector('#prob-label').textContent.includes('classifier')",
                               timeout=10_000)
        assert page.text_content("#threshold") == "0.600"
        page.fill("#threshold-input", "0.3")
        page.click("#btn-threshold")
        _wait(lambda: wrapper.threshold == 0.3, 5, "the wrapper's new threshold")
        page.wait_for_function("document.querySelector('#threshold').textContent === '0.300'", timeout=5_000)
        Shots(page, tmp_path)("05_threshold")
    finally:
        done.set()
        thread.join(timeout=10)
        console.close()
    assert (tmp_path / "console.jsonl").read_text().count('"threshold"') == 1


def test_with_a_token_the_page_works_only_when_opened_with_it(browser, tmp_path):
    from hilserl.console.server import ConsoleServer

    hub = ConsoleHub()
    hub.update(phase="training", actor="policy", episode=1, step=3)
    hub.put_frames({"gripper": np.zeros((128, 128, 3), np.uint8)})
    token = "page-token-0123456789abcdef"
    server = ConsoleServer(hub, port=0, token=token).start()
    try:
        page = browser.new_page()
        page.goto(server.url, timeout=10_000)
        page.wait_for_function("document.querySelector('#message').textContent.includes('needs its token')",
                               timeout=5_000)
        page.click("#btn-pause")
        time.sleep(0.3)
        assert hub.pop_commands() == []  # refused without the token
        page.goto(server.url + f"#token={token}", timeout=10_000)
        page.reload()  # a new hash alone does not reload the page
        img = page.wait_for_selector("#cam-gripper", timeout=5_000)
        _wait(lambda: img.evaluate("i => i.complete && i.naturalWidth === 128"), 5, "the frame, fetched with the token")
        page.wait_for_function("document.querySelector('#link').textContent === 'live'", timeout=5_000)
        page.click("#btn-pause")
        assert _wait(lambda: hub.pop_commands(), 5, "the command sent with the token") == [
            {"command": "pause", "value": None}]
    finally:
        server.stop()
