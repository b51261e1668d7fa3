"""The browser console's cost to the control loop: the actor's tick with the console open against the same tick
without it. Prints progress lines and one JSON object as its last line.

One tick is the actor's control-loop work for one step, exactly as `hilserl train` runs it (`Actor.run_episode`),
timed with time.perf_counter from the top of the step to the end of the step's transition hook: the human's turn
(with the console: `ConsoleHuman.act`, which takes the page's commands, `Console.poll`), the policy's action for the
observation, env.step (with the console: `ConsoleEnv`, which shows the observation, `Console.observe`), the frozen
backbone's cached features of the new frame, the reward shaping, and the transition hook (with the console:
`Console.transition`). Not in it: the learner (`learner.add` and the updates: the same in every arm), and the resets
between episodes. The simulation and a freshly initialised policy come from configs/sim_grasp.json (the default
pixel config: one 128x128 gripper camera, EfficientNet-Lite0 features cached for 4 shifts), with the simulated human
off, so the policy acts on every tick (`-- --human.enabled=true` puts it back). One torch thread.

Arms, run in interleaved blocks (block i of every arm runs the same episodes with the same random draws, and the
arms' order rotates from block to block, so machine noise hits every arm alike):
  closed            no console at all (the plain loop);
  open              the console attached, its server on loopback on a free port, and a real headless Chromium
                    (Playwright, Debian's /usr/lib/chromium/chromium or $HILSERL_CHROMIUM) on the same machine with
                    the page open during the whole block, receiving the live feed and the camera images;
  open_no_browser   the console attached and its server running, nobody connected;
  open_http_client  the console attached and read by a plain HTTP client in another process that takes the live
                    feed and fetches every new frame as the page does: the server's work for a reader without the
                    page's rendering (what a browser on another machine, through the SSH tunnel, costs this one).
Every console block starts a fresh console and server (closed blocks have none) and opens a fresh page (client)
once the server is up; every block, in every arm, then runs `--lead_in` untimed ticks (the page has been showing
the run for half a second, past its start-up, when the timing starts; a page is normally open for hours).

Reported per arm: tick p50, p99 and mean (ms), the number of ticks, and where the time goes: `cpu_p50_ms` (the
loop thread's own CPU time per tick: the same in every arm means the console adds no work to the tick, and a longer
wall time is waiting: for a CPU, or for the GIL while the server thread holds it), `hooks_p50_ms` (the console's
hooks within the tick, clocked around each call), `server_cpu_ms_per_s` (the console's server thread) and
`reader_cpu_ms_per_s` (the reader's processes: Chromium's and the Playwright driver, or the HTTP client) per second
of the block; `frames_received` and `feed_messages_received`: what the reader got (the page's image load events,
counted in the page and read with `page.evaluate`; the client's frames), so the JSON shows it really was streaming.
Then the ratios to closed at p50 and p99 (target: open at most 1.05 at p50), and `p50_ratio_block_median`, the
median over blocks of the same ratio within a block (robust to load that drifts from block to block). On a machine
whose cores are all busy, the browser's CPU time is taken from the loop's share: `--browser_nice 19` runs Chromium
at the lowest priority.

    python benchmarks/bench_console.py                       # 12 blocks x 100 ticks per arm (about 5 minutes)
    python benchmarks/bench_console.py --blocks 6 --ticks 50
    python benchmarks/bench_console.py --browser_nice 19     # the browser below the loop's priority
    python benchmarks/bench_console.py --no_browser          # every arm but open (no Chromium needed)
    python benchmarks/bench_console.py --quick               # a smoke run (about 15 s); its figures mean little
    python benchmarks/bench_console.py -- --policy.encoder=conv   # config overrides after --
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import hilserl  # noqa: F401  (before mujoco)

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("closed", "open", "open_no_browser", "open_http_client")
READER_TIMEOUT_S = 30.0  # every wait on the browser or the client is bounded by this

# counts, inside the page, the camera images it loaded and the live feed's state messages (before its own script)
PAGE_COUNTERS = """
window.__bench = {frames: 0, states: 0};
document.addEventListener("load", (e) => { if (e.target && e.target.tagName === "IMG") window.__bench.frames++; },
                          true);
const BenchEventSource = window.EventSource;
window.EventSource = class extends BenchEventSource {
  constructor(...args) { super(...args); this.addEventListener("state", () => { window.__bench.states++; }); }
};
"""

# the open_http_client arm's reader, another process: the live feed, and each new frame fetched as the page does
# (one request at a time per camera, the latest version); one line per state message and per frame on stdout
HTTP_CLIENT = r"""
import json, sys, urllib.request
base, last = sys.argv[1], None
with urllib.request.urlopen(base + "api/events", timeout=60) as feed:
    print("ready", flush=True)
    for raw in feed:
        if not raw.startswith(b"data: "):
            continue
        msg = json.loads(raw[6:])
        if "frame_version" not in msg:
            continue
        print("state", flush=True)
        if msg.get("cameras") and msg["frame_version"] != last:
            last = msg["frame_version"]
            for cam in msg["cameras"]:
                urllib.request.urlopen(f"{base}api/frame/{cam}?v={last}", timeout=10).read()
                print("frame", flush=True)
"""


class BenchError(RuntimeError):
    """The benchmark cannot run as asked (a missing browser); the message says what to install."""


def find_chromium() -> str | None:
    """The Chromium executable, as tests/test_console_browser.py finds it."""
    return next((p for p in (os.environ.get("HILSERL_CHROMIUM"), "/usr/lib/chromium/chromium", "/usr/bin/chromium",
                             shutil.which("chromium") or "", shutil.which("chromium-browser") or "")
                 if p and Path(p).is_file()), None)


class _BlockDone(Exception):
    """Raised from the step hook once a block has its ticks: ends the episode where it is."""


class Browser:
    """A headless Chromium driven by Playwright (sync API, this thread only). `close` is safe to call twice."""

    def __init__(self, nice: int = 0):
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as e:
            raise BenchError(f"the open arm needs Playwright ({e}): pip install playwright (in hilserl's test extra; "
                             "no browser download is needed), or run with --no_browser") from None
        chromium = find_chromium()
        if chromium is None:
            raise BenchError("the open arm needs a Chromium executable: apt-get install chromium (Debian), or set "
                             "HILSERL_CHROMIUM=/path/to/chromium; or run with --no_browser")
        self.executable, self.nice, self._wrapper_dir = chromium, nice, None
        if nice:  # Chromium at a lower priority than this process: launched through `nice -n N`
            self._wrapper_dir = tempfile.mkdtemp(prefix="bench_console_chromium_")
            chromium = str(Path(self._wrapper_dir) / "chromium")
            Path(chromium).write_text(f'#!/bin/sh\nexec nice -n {int(nice)} {shlex.quote(self.executable)} "$@"\n')
            os.chmod(chromium, 0o755)
        self.browser = None
        self._pw = sync_playwright().start()
        try:
            self.browser = self._pw.chromium.launch(executable_path=chromium, headless=True,
                                                    timeout=READER_TIMEOUT_S * 1000)
        except BaseException:
            self._pw.stop()
            self._remove_wrapper()
            raise
        self.version = self.browser.version

    def open(self, url: str) -> "_Page":
        """A new page at `url` with its counters, once its live feed is connected."""
        page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.set_default_timeout(READER_TIMEOUT_S * 1000)
            page.add_init_script(PAGE_COUNTERS)
            page.goto(url, timeout=READER_TIMEOUT_S * 1000)
            page.wait_for_function("document.querySelector('#link').textContent === 'live'",
                                   timeout=READER_TIMEOUT_S * 1000)
        except BaseException:
            page.close()
            raise
        return _Page(page)

    def close(self) -> None:
        if self.browser is not None:
            try:
                self.browser.close()
            finally:
                self.browser = None
                self._pw.stop()
                self._remove_wrapper()

    def _remove_wrapper(self) -> None:
        if self._wrapper_dir is not None:
            shutil.rmtree(self._wrapper_dir, ignore_errors=True)
            self._wrapper_dir = None


class _Page:
    """An open console page: what it received so far (`counts`), and `close`."""

    def __init__(self, page):
        self.page = page

    def counts(self) -> dict:
        got = self.page.evaluate("window.__bench")
        return {"frames": int(got["frames"]), "states": int(got["states"])}

    def cpu_s(self) -> float:
        return descendants_cpu_s()  # Chromium's processes and the Playwright driver

    def close(self) -> None:
        self.page.close()


class HttpClient:
    """The open_http_client arm's reader: `open(url)` starts `HTTP_CLIENT` in another process (what a browser on
    another machine costs this one, less the network, and less the page's rendering)."""

    def open(self, url: str) -> "_ClientRun":
        return _ClientRun(url)


class _ClientRun:
    def __init__(self, url: str):
        import subprocess
        import threading

        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-c", HTTP_CLIENT, url], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + READER_TIMEOUT_S
        while "ready" not in self.lines:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BenchError(f"the HTTP client did not connect to {url} within {READER_TIMEOUT_S:.0f} s")
            time.sleep(0.02)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def counts(self) -> dict:
        lines = list(self.lines)
        return {"frames": lines.count("frame"), "states": lines.count("state")}

    def cpu_s(self) -> float:
        return descendants_cpu_s(self.proc.pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)


def build(config: Path, overrides: list[str], seed: int = 0):
    """(cfg, env, actor, human) as `hilserl train` builds them: its env, a fresh agent of its policy, its actor."""
    from hilserl.agents.registry import make_agent
    from hilserl.config import load_config
    from hilserl.train.build import make_actor, make_env, make_human, policy_config
    from hilserl.train.config import TrainConfig

    cfg = load_config(TrainConfig, config, ["--human.enabled=false", *overrides])
    env = make_env(cfg)
    policy = policy_config(cfg, env.observation_space, env.action_space)
    agent = make_agent(policy).to(cfg.train.device)
    human = make_human(cfg, env, np.random.default_rng(seed))
    actor = make_actor(cfg, env, agent, human, seed)
    return cfg, env, actor, human


class Ticks:
    """Per tick: wall time (`wall`), this thread's CPU time (`cpu`) and the console hooks' own time (`hooks`), in s."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.hooks: list[float] = []

    def __iadd__(self, other: "Ticks") -> "Ticks":
        self.wall += other.wall
        self.cpu += other.cpu
        self.hooks += other.hooks
        return self


class HookClock:
    """Adds up the time spent in the console's hooks within a tick (`wrap` one callable at a time)."""

    def __init__(self):
        self.tick = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.tick += time.perf_counter() - t0

        return timed


def run_block(actor, ticks: int, first_episode: int, seed: int, console=None, lead_in: int = 0,
              on_start=None) -> tuple[Ticks, float]:
    """`lead_in` untimed ticks, then `ticks` timed control ticks of `actor`, over as many episodes as that takes
    (the last one cut where the ticks are done); returns the timed ticks and their wall time. `on_start()` is called
    when the timed part starts. The random draws are reset from `seed` first, so every arm's block with the same
    seed does the same work. With `console` (attached to `actor`) the transition hook calls it, as `hilserl train`
    does, and the hooks' own time is clocked."""
    torch.manual_seed(seed)
    if actor.processor.generator is not None:
        actor.processor.generator.manual_seed(seed + 17)
    human = getattr(actor.human, "inner", actor.human)
    if human is not None and hasattr(human, "rng"):  # the simulated human, when it is on
        human.rng = np.random.default_rng(seed)
        human.expert.rng = human.rng
    clock = HookClock()
    transition = None
    if console is not None:  # instance attributes: what the actor, ConsoleEnv and ConsoleHuman call
        console.human.act = clock.wrap(console.human.act)  # takes the page's commands (Console.poll)
        console.observe = clock.wrap(console.observe)
        console.take_mark = clock.wrap(console.take_mark)
        transition = clock.wrap(console.transition)
    out = Ticks()
    start = [0.0, 0.0]
    done = [0]  # ticks done, the lead-in's included
    wall = [0.0]

    def before_step():
        if done[0] == lead_in:
            if on_start is not None:
                on_start()
            wall[0] = time.perf_counter()
        if done[0] >= lead_in + ticks:
            raise _BlockDone
        clock.tick = 0.0
        start[0], start[1] = time.perf_counter(), time.thread_time()

    def on_transition(t):
        if transition is not None:
            transition(t)
        elapsed, cpu = time.perf_counter() - start[0], time.thread_time() - start[1]
        done[0] += 1
        if done[0] > lead_in:
            out.wall.append(elapsed)
            out.cpu.append(cpu)
            out.hooks.append(clock.tick)

    episode = first_episode
    while done[0] < lead_in + ticks:
        try:
            actor.run_episode(episode, 0, on_transition, before_step=before_step)
        except _BlockDone:
            break
        episode += 1
    return out, time.perf_counter() - wall[0]


def _cpu_s(stat_path: str) -> float:
    """utime + stime (s) of a /proc stat file; 0 when it is gone."""
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(native_id: int | None) -> float:
    """CPU seconds of one thread of this process (Linux /proc; 0 elsewhere)."""
    return _cpu_s(f"/proc/self/task/{native_id}/stat") if native_id else 0.0


def descendants_cpu_s(root: int | None = None) -> float:
    """CPU seconds of `root` and its live descendants; without `root`, of this process's live descendants (the
    Playwright driver and the Chromium processes)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    todo, total = [root] if root is not None else list(children.get(os.getpid(), ())), 0.0
    while todo:
        pid = todo.pop()
        total += _cpu_s(f"/proc/{pid}/stat")
        todo += children.get(pid, ())
    return total


def run_console_block(cfg, actor, base, ticks: int, first_episode: int, seed: int, reader, run_dir: Path,
                      lead_in: int = 0) -> tuple[Ticks, float, dict]:
    """One block with a fresh console and server attached to `actor`, read by `reader` (a `Browser` or an
    `HttpClient`, opened on it for the block; None: nobody); the actor's own env and human are put back afterwards.
    Returns the ticks, their wall time and a dict: what the reader received during the timed ticks (frames,
    states) and the CPU seconds the server thread and the reader's processes used then."""
    from hilserl.console.server import ConsoleServer
    from hilserl.console.session import Console

    env, human = base
    actor.env, actor.human = env, human
    console = Console(log=lambda s: None)
    opened = None
    extra: dict = {}
    try:
        console.server = ConsoleServer(console.hub, port=0).start()
        console.attach(cfg, actor, _Null(), _Null(), run_dir)
        if reader is not None:
            opened = reader.open(console.server.url)
        server_tid = console.server.thread.native_id
        at_start = {}

        def on_start():  # the counters where the timed ticks start (after the lead-in)
            at_start.update(server=thread_cpu_s(server_tid), reader=opened.cpu_s() if opened else 0.0,
                            counts=opened.counts() if opened else {})

        times, wall = run_block(actor, ticks, first_episode, seed, console, lead_in, on_start)
        extra["server_cpu_s"] = thread_cpu_s(server_tid) - at_start["server"]
        if opened is not None:
            extra["reader_cpu_s"] = opened.cpu_s() - at_start["reader"]
            time.sleep(0.3)  # the last frame's fetch (the feed looks every 0.1 s)
            got = opened.counts()
            extra.update({k: got[k] - at_start["counts"].get(k, 0) for k in ("frames", "states")})
    finally:
        actor.env, actor.human = env, human
        try:
            if opened is not None:
                opened.close()
        finally:
            console.close()
    return times, wall, extra


class _Null:
    """The metrics logger and health reporter the console tees (nothing is logged here)."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def ms(values: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(values, q)), 3)


def summary(t: Ticks, console: bool) -> dict:
    out = {"p50_ms": ms(t.wall, 50), "p99_ms": ms(t.wall, 99), "mean_ms": round(1000 * float(np.mean(t.wall)), 3),
           "ticks": len(t.wall), "cpu_p50_ms": ms(t.cpu, 50), "cpu_mean_ms": round(1000 * float(np.mean(t.cpu)), 3)}
    if console:
        out.update(hooks_p50_ms=ms(t.hooks, 50), hooks_p99_ms=ms(t.hooks, 99),
                   hooks_mean_ms=round(1000 * float(np.mean(t.hooks)), 4))
    return out


def block_orders(arms: tuple[str, ...], blocks: int) -> list[tuple[str, ...]]:
    """The arms' order in each block: rotated by one every block, and reversed every other round of rotations, so
    each arm runs in each position equally often (over every 2 x len(arms) blocks), before and after its
    neighbours."""
    n = len(arms)
    orders = []
    for b in range(blocks):
        order = arms[b % n:] + arms[:b % n]
        orders.append(tuple(reversed(order)) if (b // n) % 2 else order)
    return orders


def measure(config: Path, overrides: list[str], arms: tuple[str, ...], blocks: int, ticks: int, warmup: int,
            browser: Browser | None = None, log=print, lead_in: int = 0) -> dict:
    """The benchmark's core: every arm in `arms` for `blocks` interleaved blocks of `ticks` timed ticks, each after
    `lead_in` untimed ones (after a warm-up round of `warmup` ticks per arm, not counted). The "open" arm needs
    `browser`."""
    if "open" in arms and browser is None:
        raise BenchError("the open arm needs a browser")
    if arms[0] != "closed" or not set(arms) <= set(ARMS):
        raise ValueError(f"measure: arms must start with 'closed' (the others are compared with it), from {ARMS}")
    readers = {"closed": None, "open": browser, "open_no_browser": None, "open_http_client": HttpClient()}
    torch.set_num_threads(1)
    cfg, env, actor, human = build(config, overrides)
    base = (actor.env, actor.human)
    ticks_of = {a: Ticks() for a in arms}
    block_p50 = {a: [] for a in arms}
    walls = {a: 0.0 for a in arms}
    totals = {a: {} for a in arms}
    run_dir = Path(tempfile.mkdtemp(prefix="bench_console_"))
    try:
        def one(arm: str, n: int, block: int):
            seed, first = 1000 + block, 1000 * (block + 1)  # the same episodes and draws for every arm in a block
            if arm == "closed":
                t, wall = run_block(actor, n, first, seed, None, lead_in)
                return t, wall, {}
            return run_console_block(cfg, actor, base, n, first, seed, readers[arm], run_dir, lead_in)

        if warmup:
            for arm in arms:
                one(arm, warmup, -1)
            log(f"warm-up: {warmup} ticks per arm")
        for b, order in enumerate(block_orders(arms, blocks)):
            line = []
            for arm in order:
                t, wall, got = one(arm, ticks, b)
                ticks_of[arm] += t
                walls[arm] += wall
                block_p50[arm].append(float(np.median(t.wall)))
                for k, v in got.items():
                    totals[arm][k] = totals[arm].get(k, 0) + v
                line.append(f"{arm} p50 {1000 * np.median(t.wall):.1f} ms"
                            + (f" ({got['frames']} frames)" if "frames" in got else ""))
            log(f"block {b + 1}/{blocks}: " + ", ".join(line))
    finally:
        env.close()
        shutil.rmtree(run_dir, ignore_errors=True)

    out = {"arms": {a: summary(ticks_of[a], a != "closed") for a in arms}}
    closed = out["arms"]["closed"]
    for arm in arms:
        got, per_s = totals[arm], 1000 / max(walls[arm], 1e-9)
        row = out["arms"][arm]
        if "server_cpu_s" in got:
            row["server_cpu_ms_per_s"] = round(got["server_cpu_s"] * per_s, 2)
        if "reader_cpu_s" in got:
            row["reader_cpu_ms_per_s"] = round(got["reader_cpu_s"] * per_s, 2)
        if "frames" in got:
            row["frames_received"], row["feed_messages_received"] = int(got["frames"]), int(got["states"])
            row["frames_per_s"] = round(got["frames"] * per_s / 1000, 2)
        if arm == "closed":
            continue
        out[f"{arm}_vs_closed"] = {
            "p50_ratio": round(row["p50_ms"] / closed["p50_ms"], 4),
            "p99_ratio": round(row["p99_ms"] / closed["p99_ms"], 4),
            "p50_ratio_block_median": round(statistics.median(
                o / c for o, c in zip(block_p50[arm], block_p50["closed"])), 4)}
    if "open" in arms:
        out["frames_received"] = out["arms"]["open"]["frames_received"]  # the page's, in the open arm
    out["blocks"], out["ticks_per_block"], out["lead_in_ticks"], out["warmup_ticks"] = blocks, ticks, lead_in, warmup
    out["precision"] = actor.agent.precision_summary()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "sim_grasp.json"))
    p.add_argument("--blocks", type=int, default=12, help="interleaved blocks per arm")
    p.add_argument("--ticks", type=int, default=100, help="timed ticks per block")
    p.add_argument("--warmup", type=int, default=30, help="untimed ticks per arm before the first block")
    p.add_argument("--lead_in", type=int, default=20, help="untimed ticks at the start of every block (the page "
                   "has been showing the run for a while when the timing starts)")
    p.add_argument("--no_browser", action="store_true", help="every arm but open (no Chromium needed)")
    p.add_argument("--browser_nice", type=int, default=0, help="run Chromium this many nice steps below the "
                   "benchmark (e.g. 19: the browser only gets CPU time the loop leaves); default 0: the same priority")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 blocks x 10 ticks, 5 warm-up ticks")
    p.add_argument("overrides", nargs="*", help="config overrides, after --")
    args = p.parse_args()
    if args.quick:
        args.blocks, args.ticks, args.warmup, args.lead_in = 2, 10, 5, 5
    if args.blocks < 1 or args.ticks < 1 or args.warmup < 0 or args.lead_in < 0:
        p.error("--blocks and --ticks must be >= 1, --warmup and --lead_in >= 0")
    arms = tuple(a for a in ARMS if a != "open") if args.no_browser else ARMS
    browser = None
    try:
        if not args.no_browser:
            browser = Browser(args.browser_nice)
            print(f"browser: headless Chromium {browser.version} ({browser.executable}, nice +{args.browser_nice})",
                  flush=True)
        from hilserl.agents.precision import cpu_description

        out = measure(Path(args.config), args.overrides, arms, args.blocks, args.ticks, args.warmup, browser,
                      log=lambda s: print(s, flush=True), lead_in=args.lead_in)
    except BenchError as e:
        raise SystemExit(f"bench_console: {e}") from None
    finally:
        if browser is not None:
            browser.close()
    out.update({"config": str(Path(args.config).resolve().relative_to(ROOT)) if Path(args.config).resolve()
                .is_relative_to(ROOT) else args.config, "overrides": args.overrides, "quick": args.quick,
                "cpu": cpu_description(), "threads": 1,
                "browser": None if args.no_browser else f"headless Chromium {browser.version} (Playwright), same "
                f"machine, nice +{args.browser_nice} relative to the loop"})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
