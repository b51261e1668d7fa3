"""Recording labelled reward-classifier episodes from a person: from any frame source with a label signal
(``record_episode``) or from an env whose person moves the arm and switches the label with keys
(``record_with_env``, the real SO-101). Written with a `hilserl.reward.dataset.DatasetWriter`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from hilserl.reward.dataset import DatasetWriter, arm_state


def record_episode(writer: DatasetWriter, frames: Iterable[Mapping[str, np.ndarray]],
                   label_source: Callable[[], bool], max_frames: int | None = None, kind: str = "recorded",
                   meta: dict | None = None) -> dict | None:
    """Record one episode from any frame source: ``frames`` yields camera -> uint8 [H, W, 3] dicts (a camera loop
    on the real arm; the iteration ends the episode), and ``label_source()`` is asked once per frame, right after
    the frame arrives, whether the scene is a success (on the real arm: is the key / leader-arm signal held).
    Writes the episode with ``writer`` and returns its manifest entry."""
    per_cam: dict[str, list] = {c: [] for c in writer.cameras}
    labels = []
    for i, frame in enumerate(frames):
        if max_frames is not None and i >= max_frames:
            break
        for cam in writer.cameras:
            if cam not in frame:
                raise ValueError(f"frame {i}: no image for camera {cam!r} (got {sorted(frame)})")
            per_cam[cam].append(np.asarray(frame[cam], dtype=np.uint8))
        labels.append(bool(label_source()))
    if not labels:
        return None
    return writer.add_episode({c: np.stack(v) for c, v in per_cam.items()}, labels, kind=kind, meta=meta)


def record_with_env(writer: DatasetWriter, env, num_episodes: int, *, hold_action: np.ndarray,
                    log: Callable[[str], None] = print, before_episode: Callable[[], bool] | None = None,
                    on_label: Callable[[bool], None] | None = None,
                    on_episode: Callable[[str, int, int], None] | None = None) -> dict:
    """Record labelled episodes from an env whose person moves the arm and presses keys (the real SO-101 with the
    leader arm, keyboard or gamepad; `hilserl.envs.so101`). The label is a switch: the SUCCESS key (or gamepad
    button) turns it on — press it when the cube is held up — and off again; FAILURE turns it off; RE-RECORD drops
    the episode; QUIT stops. A terminal cannot see a key being *held*, so a press toggles. Every frame of every
    camera in ``writer.cameras`` is stored with the label in force when it was taken (and, when the writer is
    ``with_arm``, with what the arm measured: ``ARM_STATE`` from the observation's state). The console's hooks:
    ``before_episode()`` (pause; False stops), ``on_label(label)`` when the label switches, ``on_episode(outcome,
    frames, positives)`` after each episode (outcome "saved", "rerecord" or "quit")."""
    saved = dropped = 0
    quit_ = False
    while saved < num_episodes and not quit_:
        if before_episode is not None and not before_episode():
            quit_ = True
            break
        obs, _ = env.reset()
        frames: dict[str, list] = {c: [] for c in writer.cameras}
        labels: list[bool] = []
        arm: list[np.ndarray] = []
        label, keep, done = False, True, False
        while not done:
            if writer.with_arm:
                arm.append(arm_state(obs["state"]))
            for cam in writer.cameras:
                if cam not in obs["pixels"]:
                    raise ValueError(f"camera {cam!r}: not in the env's observation (it has {sorted(obs['pixels'])})")
                frames[cam].append(np.asarray(obs["pixels"][cam], dtype=np.uint8))
            labels.append(label)
            obs, _, terminated, truncated, info = env.step(hold_action)
            before = label
            for event in info.get("teleop_events", ()):
                if event == "success":
                    label = not label
                    log(f"label: {'SUCCESS' if label else 'not a success'}")
                elif event == "failure":
                    label = False
                elif event == "rerecord":
                    keep, done = False, True
                elif event == "quit":
                    keep, done, quit_ = False, True, True
            if on_label is not None and label != before:
                on_label(label)
            done = done or terminated or truncated
        if on_episode is not None:
            on_episode("saved" if keep else "quit" if quit_ else "rerecord", len(labels), int(sum(labels)))
        if not keep:
            dropped += 1
            continue
        writer.add_episode({c: np.stack(v) for c, v in frames.items()}, labels, kind="recorded",
                           arm=np.stack(arm) if writer.with_arm else None)
        saved += 1
        log(f"episode {saved}/{num_episodes}: {len(labels)} frames, {sum(labels)} labelled success")
    return {"saved": saved, "dropped": dropped, "quit": quit_, "positives": writer.num_positive,
            "negatives": writer.num_negative}


__all__ = ["record_episode", "record_with_env"]
