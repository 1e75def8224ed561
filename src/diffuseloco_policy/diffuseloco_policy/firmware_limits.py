"""The CyberDog 2 firmware's motor mode in numbers: what the robot side must know of it (the LCM bridge, the safety
filter) and the simulator's firmware model reproduces (diffuseloco_sim/firmware.py).

From the public firmware source (MiRoboticsLab/cyberdog_locomotion, control/src/fsm_states/fsm_state_motor_ctrl.cpp
and common/src/controllers/leg_controller.cpp; shared reference cyberdog-firmware.md): the command-gap thresholds
in milliseconds, the position band around the measured joint angle, the soft joint limits, and the meaning of each
motor_ctrl_state.err_flag bit. The robot package owns these facts so that nothing on the robot imports the
simulator.
"""

from __future__ import annotations

import numpy as np

# FsmStateMotorCtrl (fsm_state_motor_ctrl.cpp)
GAP_WARNING_MS = 10.0       # Ctrl_Over_Time_War: qd_des and tau_des divided by gap / 10 ms, err_flag bit 0
GAP_ERROR_MS = 500.0        # Ctrl_Over_Time_Err: err_flag bit 1, zeros with kd 4, then limp
FALLBACK_KD = 4.0           # kd of the frames that replace the command while bit 1 is set
RECONNECT_COUNTS = 5000     # wait_reconnect_ steps once per leg per frame: ~2.5 s at 500 Hz
ZERO_TOLERANCE = 0.001      # CheckZero(): |kp|, |kd|, |tau| at most this make an all-zero frame
JOINT_LIMIT_MARGIN = 0.04   # software_limit delta, rad inside the bounds
POSITION_BAND_DEG = (8.0, 10.0, 12.0)   # |q_des - q_measured| limit, abad / hip / knee
# LegController::UpdateCommand (leg_controller.cpp)
SOFT_LIMIT_DELTA = 0.05     # DELTA, rad
SOFT_LIMIT_KP = 20.0        # SOFT_KP, N m / rad
SOFT_LIMIT_KNEE_TAU = 1.0   # the knee's soft limit engages when the torque estimate exceeds this (N m)
FRAME_S = 0.002             # one frame of the 500 Hz loop
# Our side keeps q_des within this fraction of the band: the wire carries float32, whose rounding must not tip a
# q_des exactly on the band's edge over it (the safety filter, which bands each published q_des)
BAND_MARGIN = 0.99

# motor_ctrl_state.err_flag bits
ERR_GAP_WARNING = 0x01      # command gap > 10 ms: qd_des and tau_des divided by gap / 10 ms
ERR_GAP_DAMPING = 0x02      # gap > 500 ms, and on entering motor mode: kd 4 for ~2.5 s, then limp, until zeros
ERR_BAND_ABAD, ERR_BAND_HIP, ERR_BAND_KNEE = 0x04, 0x08, 0x10   # q_des clamped to the measured angle +- band
ERR_BAND_BITS = (ERR_BAND_ABAD, ERR_BAND_HIP, ERR_BAND_KNEE)
ERR_FLAG_NAMES = {ERR_GAP_WARNING: "command gap over 10 ms (qd_des, tau_des scaled down)",
                  ERR_GAP_DAMPING: "command gap over 500 ms or motor mode not activated (kd 4, then limp)",
                  ERR_BAND_ABAD: "abad q_des clamped to the measured angle +- 8 deg",
                  ERR_BAND_HIP: "hip q_des clamped to the measured angle +- 10 deg",
                  ERR_BAND_KNEE: "knee q_des clamped to the measured angle +- 12 deg"}


def decode_err_flag(err_flag: int) -> list[str]:
    """What each set bit of motor_ctrl_state.err_flag means (ERR_FLAG_NAMES), lowest bit first."""
    return [name for bit, name in ERR_FLAG_NAMES.items() if err_flag & bit]


def position_band_rad(num_joints: int = 12) -> np.ndarray:
    """The firmware's largest |q_des - q_measured| per joint (rad, leg after leg)."""
    return np.tile(np.radians(np.asarray(POSITION_BAND_DEG, dtype=np.float64)), num_joints // 3)

