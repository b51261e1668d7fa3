"""Learner speed: SAC updates per second at batch 256, UTD 1 (one critic + actor + temperature + target update),
one thread, on the CPU or (`--device cuda`) a GPU. Prints one JSON object as its last line.

Configurations:
  state                   18-D state, 4-D continuous action
  state_gripper           18-D state, 3-D continuous action + discrete gripper critic
  state_float32, state_gripper_float32   the same with float32 updates (policy.mixed_precision=false)
  pixels_conv             + one 128x128 camera, small trainable conv encoder (augmentation every update)
  pixels_resnet10_frozen  + one 128x128 camera, frozen ResNet-10, faithful mode (augment pixels, backbone on obs
                          and next_obs every update)
  pixels_resnet10_cached  + one 128x128 camera, frozen ResNet-10, cached mode (features precomputed per frame
                          for K=4 shifts; the update picks one per sample and runs only the head)
  pixels_default          the shipped pixel policy (configs/sim_grasp.json): EfficientNet-Lite0 maps cached for
                          K=4 shifts, a 50-wide critic trunk, four critics with a TD target from two drawn at
                          random, the action-smoothness term
  pixels_default_2critics the same with two critics (the previous default)
On a GPU the "_bf16" rows force bf16 updates (policy.mixed_precision=true); "auto" picks float32 there.
Every configuration without "_float32" runs the defaults, so policy.mixed_precision="auto": bf16 matrix products
where the CPU has native bf16 (AVX512-BF16 / AMX), float32 elsewhere; "notes.precision" says which one ran.
sample_ms / bytes_per_transition: hilserl.data.ReplayBuffer (one 128x128 camera + 18-D state), sampling 256 plus
the random-shift augmentation of obs and next_obs.
`--smoke`: every configuration on a tiny budget (batch 8, a few updates each, a small buffer) in seconds, to check
that it runs; its figures mean nothing (the JSON says "smoke": true and the batch).

Reference (LeRobot 0.4.4, same machine, one thread): state 33/s, conv encoder 0.4/s, frozen ResNet-10 0.18/s,
sampling 324 ms, 196,696 bytes per transition.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from hilserl.agents import SACAgent, SACConfig
from hilserl.agents.augment import augment_batch

BATCH = 256
STATE_DIM = 18
CAMERA = "front"
IMAGE = (128, 128)


def synthetic_batch(cfg: SACConfig, b: int = BATCH, features: torch.Tensor | None = None, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def obs():
        o = {"state": torch.randn(b, cfg.state_dim, generator=g)}
        for cam in cfg.cameras:
            if features is not None:
                o["features." + cam] = features[torch.randint(0, features.shape[0], (b,), generator=g)]
            else:
                o["pixels." + cam] = torch.randint(0, 256, (b, 3, *IMAGE), dtype=torch.uint8, generator=g)
        return o

    actions = torch.rand(b, cfg.full_action_dim, generator=g) * 2 - 1
    if cfg.discrete_gripper:
        actions[:, -1] = torch.randint(0, 3, (b,), generator=g).float()
    batch = {
        "observations": obs(),
        "next_observations": obs(),
        "actions": actions,
        "rewards": torch.randn(b, generator=g),
        "terminals": torch.zeros(b),
        "is_intervention": torch.zeros(b),
    }
    if cfg.discrete_gripper:
        batch["grasp_penalty"] = torch.zeros(b)
    return batch


def sync(agent: SACAgent) -> None:
    """Wait for the GPU's queued work, so that a timer reads the time the updates took (a no-op on the CPU)."""
    if agent.device.type == "cuda":
        torch.cuda.synchronize(agent.device)


def updates_per_second(agent: SACAgent, batch: dict, budget_s: float, warmup: int) -> float:
    """Median rate over several timing windows (the machine may be shared). The batch lives on the CPU, as the
    learner samples it; each update moves it to the agent's device."""
    for _ in range(warmup):
        agent.update(batch)
    sync(agent)
    rates, spent = [], 0.0
    while spent < budget_s or len(rates) < 3:
        n, t0 = 0, time.perf_counter()
        while True:
            agent.update(batch)
            n += 1
            if agent.device.type == "cuda" and n % 8:
                continue  # read the clock (and so wait for the GPU) every 8 updates only
            sync(agent)
            el = time.perf_counter() - t0
            if el > min(1.0, budget_s / 3):
                break
        rates.append(n / el)
        spent += el
    return statistics.median(rates)


def bench_buffer(batch: int = BATCH, transitions: int = 1500, samples: int = 12
                 ) -> tuple[float | None, float | None, str]:
    try:
        from hilserl.data import ReplayBuffer
    except Exception as exc:  # colleague's module not there yet
        return None, None, f"hilserl.data not available ({exc.__class__.__name__})"
    rng = np.random.default_rng(0)
    spec = {"state": ((STATE_DIM,), np.float32), f"pixels.{CAMERA}": ((*IMAGE, 3), np.uint8)}
    buf = ReplayBuffer(2048, spec, action_dim=4, rng=0)

    def frame():
        return {"state": rng.standard_normal(STATE_DIM).astype(np.float32),
                f"pixels.{CAMERA}": rng.integers(0, 256, (*IMAGE, 3), dtype=np.uint8)}

    obs = frame()
    for step in range(transitions):
        nxt = frame()
        end = (step + 1) % 100 == 0
        buf.add({"observation": obs, "action": rng.uniform(-1, 1, 4).astype(np.float32), "reward": -0.05,
                 "terminated": False, "truncated": end, "next_observation": nxt})
        obs = frame() if end else nxt
    times, out, scratch = [], None, {}
    for i in range(samples):
        t0 = time.perf_counter()
        out = buf.sample(batch, out=out)
        augment_batch(out, pad=4, scratch=scratch)  # memory reused across batches, as the learner does
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:]) * 1e3, float(buf.bytes_per_transition), "ReplayBuffer.sample + augment_batch"


def configurations(dev: torch.device) -> dict[str, tuple[SACConfig, float, int]]:
    """name -> (config, timing budget in s, warm-up updates), in the order they run."""
    state = SACConfig(state_dim=STATE_DIM, action_dim=4)
    grip = SACConfig(state_dim=STATE_DIM, action_dim=3, discrete_gripper=True)
    r10 = SACConfig(state_dim=STATE_DIM, action_dim=4, cameras=(CAMERA,), image_size=IMAGE, encoder="resnet10")
    default = SACConfig(state_dim=STATE_DIM, action_dim=3, discrete_gripper=True, cameras=(CAMERA,), image_size=IMAGE,
                        encoder="efficientnet_lite0", backbone_trim_head=True, cached_features=True,
                        num_cached_shifts=4, temperature_init=0.01, target_entropy=None, backup_entropy=False,
                        discount=0.97, critic_trunk_dim=50, action_smoothness=1.0, critic_ensemble_size=4,
                        critic_subsample_size=2)

    def with_(cfg: SACConfig, **kw) -> SACConfig:
        return SACConfig(**{**cfg.to_dict(), **kw})

    table = {
        "state": (state, 6.0, 10),
        "state_gripper": (grip, 6.0, 10),
        # float32 updates (policy.mixed_precision=false; what "auto" gives on CPUs without native bf16)
        "state_float32": (with_(state, mixed_precision=False), 6.0, 10),
        "state_gripper_float32": (with_(grip, mixed_precision=False), 6.0, 10),
        "pixels_conv": (SACConfig(state_dim=STATE_DIM, action_dim=4, cameras=(CAMERA,), image_size=IMAGE,
                                  encoder="conv"), 8.0, 2),
        "pixels_resnet10_frozen": (r10, 12.0, 1),
        "pixels_resnet10_cached": (with_(r10, cached_features=True), 6.0, 3),
        "pixels_default": (default, 6.0, 3),
        "pixels_default_2critics": (with_(default, critic_ensemble_size=2, critic_subsample_size=None), 6.0, 3),
    }
    if dev.type == "cuda":  # "auto" is float32 on a GPU: what bf16 would give there
        table["state_bf16"] = (with_(state, mixed_precision=True), 6.0, 10)
        table["pixels_default_bf16"] = (with_(default, mixed_precision=True), 6.0, 3)
        table["pixels_default_2critics_bf16"] = (with_(table["pixels_default_2critics"][0], mixed_precision=True),
                                                 6.0, 3)
    return table


def cached_store(agent: SACAgent, frames: torch.Tensor) -> tuple[torch.Tensor, float]:
    """What a buffer holds per frame in cached mode ([N, K, C, h, w] float16, on the CPU) and the ms per frame it
    took to compute (after one warm-up call: a GPU's first call sets up its kernels)."""
    agent.precompute_features(frames[:2])
    sync(agent)
    t0 = time.perf_counter()
    store = agent.precompute_features(frames).cpu()
    return store, (time.perf_counter() - t0) * 1e3 / frames.shape[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny budget: checks that everything runs (seconds)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--only", nargs="+", metavar="NAME", help="these configurations only (default: all)")
    args = p.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here")
    table = configurations(dev)
    unknown = sorted(set(args.only or ()) - set(table))
    if unknown:
        p.error(f"--only: unknown configuration(s) {unknown}; expected some of {list(table)}")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results, notes = {}, {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
    t_start = time.perf_counter()
    b = 8 if args.smoke else BATCH
    frames = torch.randint(0, 256, (4 if args.smoke else 64, 3, *IMAGE), dtype=torch.uint8)
    for name, (cfg, budget_s, warmup) in table.items():
        if args.only and name not in args.only:
            continue
        agent = SACAgent(cfg).to(dev)
        store = None
        if cfg.cached_features:
            store, ms = cached_store(agent, frames)
            notes.setdefault(f"precompute_ms_per_frame.{cfg.encoder}", round(ms, 2))
            notes.setdefault(f"cached_bytes_per_frame.{cfg.encoder}", int(store[0].numel() * store.element_size()))
        if args.smoke:
            budget_s, warmup = 0.0, min(warmup, 1)  # one update per timing window, three windows
        results[name] = updates_per_second(agent, synthetic_batch(cfg, b, features=store), budget_s, warmup)
        if name == "state_gripper":
            notes["precision"] = agent.precision_summary()
        backbone = getattr(agent.encoder, "backbone", None)
        if backbone is not None:
            notes.setdefault(f"backbone_dtype.{cfg.encoder}", str(backbone.compute_dtype or torch.float32))

    sample_ms, bytes_per_transition, how = (bench_buffer(b, transitions=150, samples=4) if args.smoke
                                            else bench_buffer())
    notes["sample"] = how
    notes["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps({
        "updates_per_s": {k: round(v, 3) for k, v in results.items()},
        "sample_ms": None if sample_ms is None else round(sample_ms, 2),
        "bytes_per_transition": None if bytes_per_transition is None else round(bytes_per_transition, 1),
        "notes": notes,
        "batch": b,
        "smoke": args.smoke,
    }))


if __name__ == "__main__":
    main()
