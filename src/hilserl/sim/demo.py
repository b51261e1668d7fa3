"""Expert episodes in the simulation, written as a video and a contact sheet of frames.

`make demo` starts with it (and `hilserl demo --expert_only` stops there): a scripted expert grasping the cube,
seen from the gripper camera (what the policy sees) beside a fixed front camera (what a person watching the arm
sees).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from hilserl.sim.env import GraspCubeConfig, SO101GraspCubeEnv
from hilserl.sim.expert import ScriptedExpert


@dataclass
class DemoResult:
    video: Path
    contact_sheet: Path
    episodes: int
    successes: int
    steps: list[int]


def video_frame(env, gripper_image: np.ndarray | None, ok: bool, view_size: int = 256) -> np.ndarray:
    """One video frame: the gripper camera (what the policy sees, upscaled) beside the fixed front camera, with a
    bar at the bottom that turns green once the grasp succeeded."""
    env = env.unwrapped
    grip = gripper_image if gripper_image is not None else env.render_camera("gripper")
    k = max(1, view_size // grip.shape[0])
    grip = np.kron(grip, np.ones((k, k, 1), dtype=np.uint8)) if k > 1 else grip
    frame = np.concatenate([grip, env.render_camera("front", view_size)], axis=1)
    frame[-6:] = (40, 190, 70) if ok else (90, 90, 90)
    return frame


def run_expert_demo(out_dir: str | Path = "outputs/demo", episodes: int = 6, seed: int = 0,
                    view_size: int = 256, progress=None) -> DemoResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = SO101GraspCubeEnv(GraspCubeConfig(cameras=("gripper",)))
    expert = ScriptedExpert(env)
    frames, sheet_rows, steps, successes = [], [], [], 0
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            expert.reset()
            ep_frames = []
            done, ok, n = False, False, 0
            while not done:
                ep_frames.append(video_frame(env, obs["pixels"]["gripper"], ok, view_size))
                obs, _, term, trunc, info = env.step(expert.act())
                ok = ok or info["is_success"]
                n += 1
                done = term or trunc
            last = video_frame(env, obs["pixels"]["gripper"], ok, view_size)
            ep_frames += [last] * 5  # hold the final frame for half a second
            frames += ep_frames
            successes += int(ok)
            steps.append(n)
            picks = np.linspace(0, len(ep_frames) - 5, 6).astype(int)
            sheet_rows.append(np.concatenate([ep_frames[i][:, :view_size] for i in picks] +
                                             [ep_frames[-1][:, view_size:]], axis=1))
            if progress:
                progress(ep + 1, episodes, ok, n)
    finally:
        env.close()
    video = out / "expert_episodes.mp4"
    imageio.mimwrite(video, frames, fps=env.cfg.fps, codec="libx264", quality=7, macro_block_size=16)
    sheet = out / "expert_contact_sheet.png"
    imageio.imwrite(sheet, np.concatenate(sheet_rows, axis=0))
    return DemoResult(video, sheet, episodes, successes, steps)
