"""Evaluation: the deterministic policy on fresh episodes, a table, a success rate with its 95% interval, a video,
and a map of success against where the cube started (a policy that only learned the "easy" cube positions, as in
SO-101 users report, shows up at a glance)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hilserl.sim.demo import video_frame


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate (sensible for small n and rates near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EvalResult:
    rows: list[dict] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        return len(self.rows)

    @property
    def successes(self) -> int:
        return sum(r["success"] for r in self.rows)

    @property
    def success_rate(self) -> float:
        return self.successes / max(1, self.episodes)

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)

    def summary(self) -> dict:
        lo, hi = self.interval
        return {"episodes": self.episodes, "success_rate": round(self.success_rate, 4),
                "success_ci_low": round(lo, 4), "success_ci_high": round(hi, 4),
                "mean_reward": round(float(np.mean([r["reward"] for r in self.rows])) if self.rows else 0.0, 4),
                "mean_length": round(float(np.mean([r["steps"] for r in self.rows])) if self.rows else 0.0, 2),
                "action_jitter": self.action_jitter, "action_reversals": self.action_reversals}

    @property
    def action_jitter(self) -> float | None:
        """Mean |a_t - a_t-1| of the policy's continuous actions per tick (-1..1 scale): how much the arm would
        shake. A smooth policy stays well under 0.3; None when no episode was long enough."""
        return self._mean("action_jitter")

    @property
    def action_reversals(self) -> float | None:
        """Share of the policy's tick-to-tick changes that reverse the previous one (back-and-forth shaking: near
        1; a grasp that turns once from descending to lifting: near 0); None when no episode was long enough."""
        return self._mean("action_reversals")

    def _mean(self, key: str) -> float | None:
        values = [r[key] for r in self.rows if r.get(key) is not None]
        return round(float(np.mean(values)), 3) if values else None


def camera_frame(images: dict, ok: bool, view_size: int = 256) -> np.ndarray:
    """A video frame of the real arm: every camera image upscaled to `view_size`, with the success bar."""
    tiles = []
    for image in images.values():
        k = max(1, view_size // image.shape[0])
        tiles.append(np.kron(image, np.ones((k, k, 1), dtype=np.uint8)) if k > 1 else image)
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    frame = np.concatenate(tiles, axis=1)
    frame[-6:] = (40, 190, 70) if ok else (90, 90, 90)
    return frame


def evaluate(actor, num_episodes: int, seed_offset: int = 10_000_000, fixed_reset: bool = False,
             video_path: Path | None = None, video_episodes: int = 5, view_size: int = 256,
             before_episode=None, on_episode=None) -> EvalResult:
    """Run `num_episodes` deterministic episodes with `actor` (no human). `fixed_reset` puts the gripper and the
    cube at their nominal positions every time; otherwise they are randomized as in training. `before_episode()`
    (the console: pause, stop) may end the evaluation early by returning False; `on_episode(row)` sees each
    episode's row as it is added."""
    env = actor.env.unwrapped
    result = EvalResult()
    frames: list[np.ndarray] = []
    options = None
    if fixed_reset:  # the nominal gripper pose, the cube square to the jaws 2 cm in front of the tool point
        x, y, z = env.cfg.ee_reset_pos
        options = {"ee_pos": (x, y, z), "cube_pos": (x + 0.02, y), "cube_yaw": 0.0}
    human, actor.human = actor.human, None
    try:
        for i in range(num_episodes):
            if before_episode is not None and not before_episode():
                break
            record = video_path is not None and i < video_episodes
            ok = [False]

            def on_step(obs, info, record=record, ok=ok):
                if not record:
                    return
                ok[0] = ok[0] or bool(info.get("is_success", info.get("classifier_success", False)))
                if hasattr(env, "render_camera"):  # the simulation: gripper camera beside the front view
                    grip = obs["pixels"]["gripper"] if "pixels" in obs and "gripper" in obs["pixels"] else None
                    frames.append(video_frame(env, grip, ok[0], view_size))
                else:  # the real arm: its cameras side by side
                    frames.append(camera_frame(obs["pixels"], ok[0], view_size))

            stats = actor.run_episode(seed_offset + i, 0, None, explore=False, reset_options=options,
                                      on_step=on_step)
            result.rows.append({"episode": i + 1, "steps": stats.length, "reward": round(stats.reward, 3),
                                "success": int(stats.success), "cube_x": stats.cube_start[0],
                                "cube_y": stats.cube_start[1], "ee_x": stats.ee_start[0], "ee_y": stats.ee_start[1],
                                "action_jitter": stats.extra.get("action_jitter"),
                                "action_reversals": stats.extra.get("action_reversals")})
            if on_episode is not None:
                on_episode(result.rows[-1])
    finally:
        actor.human = human
    if video_path is not None and frames:
        import imageio.v2 as imageio

        Path(video_path).parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(video_path, frames, fps=env.cfg.fps, codec="libx264", quality=7, macro_block_size=16)
    return result


def print_table(result: EvalResult, console=None, action_scale: float | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="Evaluation")
    for col in ("Episode", "Steps", "Reward", "Result"):
        table.add_column(col, justify="right" if col != "Result" else "left")
    for r in result.rows:
        res = "[green]SUCCESS[/green]" if r["success"] else "[red]FAIL (timeout)[/red]"
        table.add_row(str(r["episode"]), str(r["steps"]), f"{r['reward']:.2f}", res)
    console.print(table)
    lo, hi = result.interval
    console.print(f"Success rate: {result.success_rate:.0%} ({result.successes}/{result.episodes}), "
                  f"95% interval {lo:.0%}-{hi:.0%}")
    if result.action_jitter is not None:
        line = f"Action jitter: {result.action_jitter:.2f} per tick on the -1..1 scale"
        if action_scale is not None:  # judged like the shaking health check: millimetres of commanded swing
            from hilserl.monitor.health import SHAKING_M, swing_verdict

            swing, verdict = swing_verdict(result.action_jitter, action_scale)
            line += f" = {swing * 1000:.1f} mm of commanded swing per tick ({verdict}; shaking: over {SHAKING_M * 1000:.0f} mm)"
        console.print(line)


def plot_success_map(result: EvalResult, path: Path, title: str = "Success by cube start position") -> Path:
    """Cube start position relative to the gripper's start, green = success, red = failure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    for ok, colour, label in ((1, "tab:green", "success"), (0, "tab:red", "failure")):
        pts = [(100 * (r["cube_x"] - r["ee_x"]), 100 * (r["cube_y"] - r["ee_y"])) for r in result.rows
               if r["success"] == ok]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(ys, xs, c=colour, s=40, label=f"{label} ({len(pts)})", edgecolors="black", linewidths=0.4)
    ax.scatter([0], [0], marker="+", c="black", s=120, label="gripper start")
    ax.set_xlabel("cube − gripper, y (cm)  [robot's left is +]")
    ax.set_ylabel("cube − gripper, x (cm)  [away from the robot is +]")
    lo, hi = result.interval
    ax.set_title(f"{title}\n{result.success_rate:.0%} success, 95% CI {lo:.0%}-{hi:.0%}, n={result.episodes}")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
