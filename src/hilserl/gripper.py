"""The gripper, in one place: its discrete commands, where its state sits in the observation, and HIL-SERL's grasp
penalty.

In discrete mode the last action dimension is a command: close, stay or open. The grasp penalty (the HIL-SERL
reference's ``grasp_penalty``, stored per transition under that name and exported to LeRobot datasets as
``complementary_info.discrete_penalty``) is added to the discrete critic's reward when a command changes the
gripper's state (close while open, open while closed); it discourages chattering the gripper. The continuous
critic never sees it.
"""

from __future__ import annotations

import numpy as np

GRIPPER_CLOSE, GRIPPER_STAY, GRIPPER_OPEN = 0, 1, 2
GRIPPER_COMMANDS = (GRIPPER_CLOSE, GRIPPER_STAY, GRIPPER_OPEN)
# index of the closed-command flag (1 after a close command, 0 after an open one) in the state vector of the
# SO-101 envs: joint_pos[6], joint_vel[6], gripper_opening[1], gripper_closed_cmd[1], ee_pos[3]
STATE_CLOSED = 13


def grasp_penalty(closed, command, penalty: float):
    """`penalty` where `command` changes the gripper's state, else 0; elementwise over numpy arrays or tensors.
    `closed`: the closed-command flag (> 0.5: closed)."""
    is_closed = closed > 0.5
    changes = ((command == GRIPPER_CLOSE) & ~is_closed) | ((command == GRIPPER_OPEN) & is_closed)
    return changes * penalty


def step_grasp_penalty(state: np.ndarray, action: np.ndarray, penalty: float) -> float:
    """The grasp penalty of one step: the flag read from the state, the command from the action's last value."""
    return float(grasp_penalty(np.asarray(state[STATE_CLOSED]), np.asarray(int(round(float(action[-1])))), penalty))
