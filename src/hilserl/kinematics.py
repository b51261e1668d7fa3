"""Damped least-squares inverse kinematics on MuJoCo Jacobians, with joint limits.

The SO-101 has five arm joints, so it cannot reach an arbitrary 6-D pose. End-effector control here means: the tool
point goes to a 3-D position and, optionally, the gripper's approach axis points along a given direction (for top
grasps: straight down). The wrist roll is not part of the solve; it stays where it is. The same solver drives the
simulated arm and the real one (the real arm only needs the kinematic model, not the physics).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np


@dataclass
class IKResult:
    qpos: np.ndarray  # solution for the solved joints, within limits
    pos_error: float  # metres, remaining distance of the tool point to the target
    axis_error: float  # sine of the angle between the approach axis and the wanted one
    iterations: int
    converged: bool


class DampedLeastSquaresIK:
    """Solve joint targets for a tool-point position (+ approach direction) on its own MjData copy.

    Task priority: the position comes first; the approach axis is turned toward the wanted direction only within
    the null space of the position task, so near the edge of the workspace the gripper tilts instead of missing
    the target. Joint limits are enforced by clamping after every step, which with the damping keeps the
    solver from "jumping" across the workspace; warm-starting from the current joints keeps solutions continuous.
    """

    def __init__(self, model: mujoco.MjModel, site: str = "tcp", joints=("shoulder_pan", "shoulder_lift",
                 "elbow_flex", "wrist_flex"), approach_axis: int | None = 0, axis_tol: float = 0.01,
                 damping: float = 1e-3, max_iters: int = 50, tol: float = 2e-4, max_step: float = 0.3):
        self.model = model
        self.data = mujoco.MjData(model)
        self.site_id = model.site(site).id
        self.joint_ids = np.array([model.joint(j).id for j in joints])
        self.qadr = model.jnt_qposadr[self.joint_ids]
        self.dofadr = model.jnt_dofadr[self.joint_ids]
        self.lower = model.jnt_range[self.joint_ids, 0].copy()
        self.upper = model.jnt_range[self.joint_ids, 1].copy()
        self.approach_axis = approach_axis
        self.axis_tol = axis_tol
        self.damping = damping
        self.max_iters = max_iters
        self.tol = tol
        self.max_step = max_step
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def forward(self, qpos_full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tool-point position and rotation matrix for a full qpos vector."""
        self.data.qpos[:] = qpos_full
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site_id].copy(), self.data.site_xmat[self.site_id].reshape(3, 3).copy()

    def _step(self, jp, e_pos, ja, e_axis) -> np.ndarray:
        jp_pinv = _damped_pinv(jp, self.damping)
        dq = jp_pinv @ e_pos
        if ja is not None:
            # second priority: turn the approach axis toward the wanted one in the null space of the position task
            null = np.eye(jp.shape[1]) - jp_pinv @ jp
            dq = dq + null @ (_damped_pinv(ja @ null, self.damping) @ (-e_axis - ja @ dq))
        return dq

    def solve(self, target_pos, qpos_full: np.ndarray, target_axis=(0.0, 0.0, -1.0)) -> IKResult:
        """Joint values for `target_pos`, starting from `qpos_full` (which also fixes the joints not solved)."""
        m, d = self.model, self.data
        target_pos = np.asarray(target_pos, dtype=float)
        use_axis = self.approach_axis is not None and target_axis is not None
        if use_axis:
            want = np.asarray(target_axis, dtype=float)
            want = want / np.linalg.norm(want)
        d.qpos[:] = qpos_full
        q = d.qpos[self.qadr].copy()
        err_p = err_a = prev_err_a = np.inf
        for it in range(1, self.max_iters + 1):
            d.qpos[self.qadr] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            pos = d.site_xpos[self.site_id]
            e_pos = target_pos - pos
            err_p = float(np.linalg.norm(e_pos))
            mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self.site_id)
            jp_full = self._jacp[:, self.dofadr]
            if use_axis:
                axis = d.site_xmat[self.site_id].reshape(3, 3)[:, self.approach_axis]
                e_axis = np.cross(axis, want)
                err_a = float(np.linalg.norm(e_axis))
                # d(axis)/dq = omega x axis; the error's Jacobian follows from the cross product with `want`
                ja_full = _skew(want) @ _skew(axis) @ self._jacr[:, self.dofadr]
            else:
                err_a, e_axis, ja_full = 0.0, None, None
            free = np.ones(len(q), dtype=bool)
            for _ in range(len(q)):
                # joints resting on a limit and pushed further out are taken out of the solve
                dq = self._step(jp_full * free, e_pos, None if ja_full is None else ja_full * free, e_axis)
                blocked = free & (((q <= self.lower + 1e-6) & (dq < 0)) | ((q >= self.upper - 1e-6) & (dq > 0)))
                if not blocked.any():
                    break
                free &= ~blocked
            if err_p < self.tol and (err_a < self.axis_tol or prev_err_a - err_a < 1e-5):
                # position reached, and the approach axis is as close as this position allows
                return IKResult(q, err_p, err_a, it, True)
            prev_err_a = err_a
            n = np.max(np.abs(dq))
            if n > self.max_step:
                dq *= self.max_step / n
            q = np.clip(q + dq, self.lower, self.upper)
        return IKResult(q, err_p, err_a, self.max_iters, False)


def _damped_pinv(j: np.ndarray, damping: float) -> np.ndarray:
    jjt = j @ j.T
    return j.T @ np.linalg.inv(jjt + damping ** 2 * np.eye(jjt.shape[0]))


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
