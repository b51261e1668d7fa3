"""The real SO-101: the Feetech servo bus, an emulator of it, calibration, and the follower/leader arms."""

from hilserl.robot.bus import BusError, FeetechBus, PortLostError
from hilserl.robot.calibration import Calibration, CalibrationError, MotorCalibration, calibrate
from hilserl.robot.emulator import EmulatedBus, GoalWrite
from hilserl.robot.so101 import (
    DEFAULT_JOINT_LIMITS,
    JOINT_NAMES,
    ArmConnectionError,
    ArmDisconnectedError,
    ArmError,
    SO101Follower,
    SO101Leader,
)

__all__ = [
    "ArmConnectionError", "ArmDisconnectedError", "ArmError", "BusError", "Calibration", "CalibrationError",
    "DEFAULT_JOINT_LIMITS", "EmulatedBus", "FeetechBus", "GoalWrite", "JOINT_NAMES", "MotorCalibration",
    "PortLostError", "SO101Follower", "SO101Leader", "calibrate",
]
