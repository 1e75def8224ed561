"""What the command relay sends when the policy node falls silent: stand, hold, lie down, then nothing.

A trotting dog whose commander stops must not wait for the firmware's own fallback: the firmware divides qd_des
and tau_des once frames are 10 ms late and only after 500 ms replaces them by kd 4 damping
(FsmStateMotorCtrl::Run(), firmware_limits.py), and a frozen trot frame or damping both drop the body. Once the
newest command is older than the relay's hold time, the bridge (and the simulated bridge in the sim node) moves
from the last target it sent to the default pose at the controller's stand gains, the body's weight fed forward
through tau_des (stance_support.py), holds the stand for a while in case the policy comes back (it then takes
over with its own stand, Controller.stand_in_place), lies the dog down and goes silent, so the firmware's gap
rules leave a lying dog limp. Poses and gains are the robot config's controller section; model convention
inside, SDK convention out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..config import StackConfig
from ..controller import Move
from ..joints import JointConvention
from ..motor_sdk import MotorCommand as SdkMotorCommand
from ..stance_support import support_torques


@dataclass(frozen=True)
class StallTiming:
    """Seconds of each phase after the commands stopped (counted from the relay's hold time running out)."""

    stand_s: float = 0.5       # last target -> default pose (the controller's stale_stand_duration)
    hold_s: float = 3.0        # standing, waiting for the policy to come back
    lie_down_s: float = 2.0    # default pose -> lying pose, the weight handed to the ground

    def __post_init__(self) -> None:
        if not (self.stand_s > 0 and self.hold_s >= 0 and self.lie_down_s > 0):
            raise ValueError(f"stall posture timing must be positive, got {self}")

    @property
    def total_s(self) -> float:
        return self.stand_s + self.hold_s + self.lie_down_s


class StallPosture:
    """Frames for a silent commander, as a function of the time since the silence began."""

    def __init__(self, config: StackConfig, timing: Optional[StallTiming] = None) -> None:
        self.convention = JointConvention(config.robot)
        cc = config.controller
        self.timing = timing or StallTiming(stand_s=cc.stale_stand_duration)
        self.default_pose = np.asarray(config.robot.default_pose, dtype=np.float64)
        self.lying_pose = np.asarray(cc.lying_pose, dtype=np.float64)
        self.kp, self.kd, self.mass = float(cc.stand_kp), float(cc.stand_kd), float(cc.support_mass)

    def phase(self, elapsed: float) -> str:
        """'stand', 'hold', 'lie down' or 'done' (send nothing)."""
        t = self.timing
        if elapsed < t.stand_s:
            return "stand"
        if elapsed < t.stand_s + t.hold_s:
            return "hold"
        return "lie down" if elapsed < t.total_s else "done"

    def frame(self, elapsed: float, start_sdk: np.ndarray) -> Optional[SdkMotorCommand]:
        """The frame `elapsed` s into the silence, starting from the SDK-convention pose `start_sdk` (the last
        target sent); None once the dog lies (the firmware's gap rules take over)."""
        q, load = self._target(elapsed, self.convention.to_model(np.asarray(start_sdk, dtype=np.float64)))
        if q is None:
            return None
        to_sdk = self.convention.to_sdk
        n = q.size
        tau = load * support_torques(q, self.mass) if self.mass > 0 else np.zeros(n)
        return SdkMotorCommand(to_sdk(q), np.zeros(n), np.full(n, self.kp), np.full(n, self.kd), to_sdk(tau))

    def _target(self, elapsed: float, start: np.ndarray) -> tuple[Optional[np.ndarray], float]:
        """(model-convention q_des, share of the weight carried) at `elapsed`: the stand move (held at its goal
        through the hold), then the lie-down move, then nothing."""
        t = self.timing
        phase = self.phase(elapsed)
        if phase in ("stand", "hold"):
            move = Move(start, self.default_pose, t0=0.0, duration=t.stand_s, load=(1.0, 1.0))
        elif phase == "lie down":
            move = Move(self.default_pose, self.lying_pose, t0=t.stand_s + t.hold_s, duration=t.lie_down_s,
                        load=(1.0, 0.0))
        else:
            return None, 0.0
        return move.at(elapsed), move.load_at(elapsed)
