"""Actor -> learner transport over loopback gRPC: sustained transitions per second, weight push latency, bytes.

The learner side (this process) is the real one: `LearnerServer` + `LearnerSink` + `Learner` with its on-disk
buffers, so every transition is validated, written to the memory-mapped buffer files with the ledger and committed
before it is acknowledged (transport.fsync as configured, default false: durable against a learner crash). The
actor side is a separate process running the real `LearnerClient`: one 128x128 camera (uint8 pixels, i.e. the
faithful-mode payload; cached mode sends float16 features of 40,960 bytes instead) + the 17-float state, 100-step
episodes, sent as fast as the link takes them, for `--seconds` (default 30) after `--warmup`. Between two transitions the actor
applies new weights if any arrived (`take_weights` + `load_state_dict`), as the real actor does before each step.
"As fast as the link takes them": the client's unacked queue is `UNACKED_AHEAD` bytes (four full messages), so
`send` blocks once the link has the next messages ready. With the default 1 GB queue the actor would serialise
transitions into it at a full core's speed, measuring the queue filling rather than the link (on 2 cores a
2-second window could then see no acknowledgement at all, and weights took 0.2-2 s instead of ~0.05 s).

transitions_per_s: transitions acknowledged per second over the measured window (after a warm-up).
weights_push_ms: median over the window of (actor has loaded version v) - (learner made version v: policy weights
  of the pixel policy, configs/sim_grasp.json, extracted, encoded, published), pushed once per second while the
  transitions stream; the actor measures with the same clock (same machine).
bytes_per_transition_on_wire: protobuf bytes the learner received per transition (HTTP/2 framing, ~0.02%, not
  counted); within an episode a transition carries its next observation only (the observation is the previous
  one's next observation on the same stream).
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("LP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import hilserl  # noqa: E402,F401
from hilserl.config import load_config  # noqa: E402
from hilserl.train.config import TrainConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sim_grasp.json"
OVERRIDES = ["--policy.cached_features=false", "--train.torch_threads=1", "--buffers.online_capacity=200000",
             "--buffers.demo_capacity=1000", "--train.total_env_steps=100000000", "--train.num_demos=0"]
UNACKED_AHEAD = 16 << 20  # the client's unacked queue here: bytes the actor runs ahead of the acknowledgements
SPEC = {"state": ((17,), np.float32), "pixels.gripper": ((128, 128, 3), np.uint8)}


def policy_and_agent(cfg: TrainConfig):
    from hilserl.agents.sac import SACAgent
    from hilserl.train.build import make_env, policy_config

    env = make_env(cfg)
    policy = policy_config(cfg, env.observation_space, env.action_space)
    env.close()
    return policy, SACAgent(policy)


# ------------------------------------------------------------------------------------------------ actor process
def run_client(port: int) -> None:
    """Stream transitions until stdin closes; print one JSON line per weights version the moment it is loaded."""
    from hilserl.data import Transition
    from hilserl.distributed import codec
    from hilserl.distributed.client import ClientSettings, LearnerClient
    from hilserl.train.actor import policy_fingerprint, policy_weights

    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, CONFIG, OVERRIDES)
    policy, agent = policy_and_agent(cfg)
    logging.getLogger("hilserl.transport").setLevel(logging.ERROR)  # a full queue is the point here
    client = LearnerClient(ClientSettings(f"127.0.0.1:{port}", "bench", max_unacked_bytes=UNACKED_AHEAD), SPEC,
                           codec.weights_spec(policy_weights(agent)), policy_fingerprint(policy))
    client.start()
    client.wait_connected(60)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (32, 128, 128, 3), dtype=np.uint8)
    action = np.zeros(4, np.float32)

    def observation(i):
        return {"state": rng.standard_normal(17).astype(np.float32), "pixels.gripper": frames[i % 32]}

    sent, episode, step = 0, 1, 0
    obs = observation(0)
    while not stop.is_set():
        got = client.take_weights()
        if got is not None:
            version, weights, made = got
            agent.load_state_dict(weights, strict=False)  # the actor uses them from this step on
            print(json.dumps({"version": version, "lag_ms": 1000.0 * (time.time() - made)}), flush=True)
        nxt = observation(sent + 1)
        end = step == 99
        client.send(Transition(obs, action, -0.05, False, end, nxt, False, {"grasp_penalty": 0.0}), episode,
                    continues=step > 0)
        sent += 1
        step, obs = (0, observation(sent + 1)) if end else (step + 1, nxt)
        episode += int(end)
    client.close(timeout=60)
    print(json.dumps({"sent": sent}), flush=True)


# ------------------------------------------------------------------------------------------------ learner process
class _NoLogger:
    def log_episode(self, record) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--fsync", action="store_true", help="fsync every commit (survives a power cut, slower)")
    p.add_argument("--client", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client is not None:
        return run_client(args.client)

    from hilserl.distributed.server import LearnerServer, WeightsBoard, settings_from
    from hilserl.monitor.health import HealthReporter
    from hilserl.train.learner import Learner
    from hilserl.train.learner_process import LearnerSink

    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, CONFIG, [*OVERRIDES, f"--transport.fsync={str(args.fsync).lower()}",
                                            "--transport.port=0"])
    policy, agent = policy_and_agent(cfg)
    with tempfile.TemporaryDirectory(dir=ROOT / "outputs" if (ROOT / "outputs").is_dir() else None) as tmp:
        learner = Learner(policy, cfg.buffers, SPEC, 256, Path(tmp) / "buffers", agent=agent)
        sink = LearnerSink(learner, cfg, policy, _NoLogger(), print, HealthReporter(cfg, tmp, print))
        board = WeightsBoard()
        weights_bytes = board.publish(learner.policy_weights(), 0)
        server = LearnerServer(sink, settings_from(cfg.transport), board)
        port = server.start()
        client = subprocess.Popen([sys.executable, __file__, "--client", str(port)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        loaded: dict[int, float] = {}  # version -> lag (ms), as the actor reports each load
        lines: list[str] = []

        def read_client():
            for line in client.stdout:
                lines.append(line)
                if '"version"' in line:
                    record = json.loads(line)
                    loaded[record["version"]] = record["lag_ms"]

        reader = threading.Thread(target=read_client, daemon=True)
        reader.start()
        stop = threading.Event()
        made_in_window: list[int] = []
        window = threading.Event()  # set while the measured window is open

        def push_weights():
            version = 0
            while not stop.wait(1.0):
                version += 1
                made = time.time()
                board.publish(learner.policy_weights(), version, since=made)
                if window.is_set():
                    made_in_window.append(version)

        while server.metrics()["transitions_stored"] == 0 and client.poll() is None:
            time.sleep(0.05)
        pusher = threading.Thread(target=push_weights, daemon=True)
        pusher.start()
        time.sleep(args.warmup)
        m0, t0 = server.metrics(), time.monotonic()
        window.set()
        time.sleep(args.seconds)
        window.clear()
        m1, t1 = server.metrics(), time.monotonic()
        stop.set()
        pusher.join()
        deadline = time.monotonic() + 60  # the actor keeps streaming until it has loaded the window's last push
        while made_in_window and made_in_window[-1] not in loaded and client.poll() is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"the actor never loaded weights version {made_in_window[-1]}")
            time.sleep(0.05)
        client.stdin.close()
        client.wait(timeout=300)
        reader.join(timeout=10)
        server.stop(grace=1.0)
        learner.close()
    if client.returncode != 0:
        raise SystemExit(f"the actor process exited with {client.returncode}")
    # a version the actor skipped (two pushes between two of its steps) has no lag: it never ran those weights
    lags = [loaded[v] for v in made_in_window if v in loaded]
    n = m1["transitions_received"] - m0["transitions_received"]
    print(json.dumps({
        "transitions_per_s": round((m1["transitions_stored"] - m0["transitions_stored"]) / (t1 - t0), 1),
        "weights_push_ms": round(statistics.median(lags), 1) if lags else None,
        "bytes_per_transition_on_wire": round((m1["bytes_received"] - m0["bytes_received"]) / max(1, n), 1),
        "weights_push_ms_p90": round(float(np.percentile(lags, 90)), 1) if lags else None,
        "weights_pushes": len(lags),
        "weights_bytes": weights_bytes,
        "transitions_per_message": round(n / max(1, m1["messages"] - m0["messages"]), 1),
        "fsync": args.fsync,
        "payload": "128x128x3 uint8 pixels + 17 float32 state, 4 float32 action",
        "seconds": args.seconds,
    }))


if __name__ == "__main__":
    main()
