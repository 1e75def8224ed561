"""The controller state machine: which PD command to send each tick, before the SafetyFilter.

PASSIVE -> STANDING_UP (measured pose -> default pose, then hold) -> RUNNING (policy targets) -> GETTING_DOWN
(measured pose -> lying pose) -> PASSIVE. A sensor fault in an active state drops to DAMPING; ESTOP is reachable
from every state and latches until CLEAR_ESTOP, which needs healthy sensors. The state and request numbers equal
PolicyStatus.STATE_* and SetControllerState.REQUEST_*, so the ROS node passes them through unchanged.

Time is whatever clock the caller uses (seconds); the controller never reads a clock itself, so it runs the
same in tests, in simulation and on the robot.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Optional, Union

import numpy as np

from .config import MAX_KP_SCALE, MIN_KP_SCALE, StackConfig
from .safety import is_finite_number, finite_vector, ArrayLike, PDCommand
from .stance_support import support_torques


class ControllerState(IntEnum):
    """PolicyStatus.STATE_*."""

    PASSIVE = 0
    STANDING_UP = 1
    RUNNING = 2
    GETTING_DOWN = 3
    DAMPING = 4
    ESTOP = 5


class ControllerRequest(IntEnum):
    """SetControllerState.REQUEST_*."""

    STAND_UP = 0
    RUN = 1
    GET_DOWN = 2
    DAMPING = 3
    ESTOP = 4
    CLEAR_ESTOP = 5


S, R = ControllerState, ControllerRequest
# States in which the controller commands positions: a sensor fault here means DAMPING.
ACTIVE_STATES = frozenset({S.STANDING_UP, S.RUNNING, S.GETTING_DOWN})
_STAND_UP_FROM = frozenset({S.PASSIVE, S.DAMPING, S.GETTING_DOWN, S.RUNNING})
_GET_DOWN_FROM = frozenset({S.PASSIVE, S.DAMPING, S.STANDING_UP, S.RUNNING})


def smoothstep(alpha: float) -> float:
    """0 -> 1 with zero slope at both ends, so an interpolated move starts and ends without a velocity jump."""
    a = min(max(alpha, 0.0), 1.0)
    return a * a * (3.0 - 2.0 * a)


class Controller:
    """Turns requests, measurements, policy targets and faults into one PDCommand per tick."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.cc = config.controller
        self.num_joints = config.robot.num_joints
        self.default_pose = np.asarray(config.robot.default_pose, dtype=np.float64)
        self.lying_pose = np.asarray(self.cc.lying_pose, dtype=np.float64)
        self._state = S.PASSIVE
        self.last_fault = ""
        self._sensor_fault: Optional[str] = "no sensor data yet"
        self._last_q: Optional[np.ndarray] = None   # last valid measured pose
        self._target: Optional[np.ndarray] = None   # last position target commanded
        self._now: Optional[float] = None
        self._move: Optional[Move] = None           # the running interpolation, if any
        self._move_pending = False                   # start a move from the measured pose at the next tick
        self._in_place_from: Optional[str] = None     # a quick stand in place: from the "target" or "measured" pose
        self._move_load = (0.0, 0.0)                 # share of the weight carried through tau_des: start, end

    # ------------------------------------------------------------------------------------------ queries
    @property
    def state(self) -> ControllerState:
        return self._state

    @property
    def state_name(self) -> str:
        return self._state.name

    @property
    def stand_complete(self) -> bool:
        """True once STANDING_UP has reached the default pose (it then holds it until RUN)."""
        return self._state == S.STANDING_UP and self._move is not None and self._move.done(self._now)

    @property
    def sensors_healthy(self) -> bool:
        return self._sensor_fault is None

    # ----------------------------------------------------------------------------------------- requests
    def request(self, request: Union[int, ControllerRequest], source: str = "") -> tuple[bool, str]:
        """Handle a SetControllerState request; returns (accepted, message). Illegal ones change nothing.

        Sensor health is the verdict of the latest tick: before the first tick nothing that moves is allowed.
        """
        try:
            if isinstance(request, bool) or not isinstance(request, (int, np.integer)):
                raise TypeError("requests are integers")
            r = ControllerRequest(int(request))
        except (TypeError, ValueError):
            known = ", ".join(f"{x.value}={x.name}" for x in ControllerRequest)
            return False, f"unknown request {request!r}; known: {known}"
        by = f" by {source}" if source else ""
        if r == R.ESTOP:
            return self._estop(by)
        if self._state == S.ESTOP and r != R.CLEAR_ESTOP:
            return False, f"{r.name} refused: e-stop is latched ({self.last_fault}); request CLEAR_ESTOP first"
        handler = {R.CLEAR_ESTOP: self._clear_estop, R.DAMPING: self._damping, R.STAND_UP: self._stand_up,
                   R.RUN: self._run, R.GET_DOWN: self._get_down}[r]
        return handler(by)

    def _estop(self, by: str) -> tuple[bool, str]:
        if self._state == S.ESTOP:
            return True, "already in ESTOP"
        self._enter(S.ESTOP, fault=f"e-stop requested{by}")
        return True, "ESTOP latched: damping until CLEAR_ESTOP"

    def _clear_estop(self, by: str) -> tuple[bool, str]:
        if self._state != S.ESTOP:
            return False, f"CLEAR_ESTOP refused: not in ESTOP (state {self.state_name})"
        if self._sensor_fault is not None:
            return False, f"CLEAR_ESTOP refused: sensors not healthy ({self._sensor_fault})"
        self._enter(S.PASSIVE)
        return True, "e-stop cleared: PASSIVE"

    def _damping(self, by: str) -> tuple[bool, str]:
        if self._state == S.DAMPING:
            return True, "already in DAMPING"
        self._enter(S.DAMPING, fault=f"damping requested{by}")
        return True, "DAMPING"

    def _stand_up(self, by: str) -> tuple[bool, str]:
        if self._state == S.STANDING_UP:
            return True, "already standing up" if not self.stand_complete else "standing: holding the default pose"
        refusal = self._refuse_motion(R.STAND_UP, _STAND_UP_FROM)
        if refusal:
            return False, refusal
        previous = self._state
        self._enter(S.STANDING_UP, move=True, load=(self._carried_load(previous), 1.0))
        return True, f"{previous.name} -> STANDING_UP over {self.cc.stand_up_duration:.1f} s"

    def _run(self, by: str) -> tuple[bool, str]:
        if self._state == S.RUNNING:
            return True, "already RUNNING"
        if self._state != S.STANDING_UP:
            return False, f"RUN refused in {self.state_name}: stand up first (STAND_UP)"
        if not self.stand_complete:
            left = self._move.remaining(self._now) if self._move is not None else self.cc.stand_up_duration
            return False, f"RUN refused: still standing up ({left:.1f} s left)"
        if self._sensor_fault is not None:
            return False, f"RUN refused: sensors not healthy ({self._sensor_fault})"
        self._enter(S.RUNNING)
        return True, "STANDING_UP -> RUNNING"

    def _get_down(self, by: str) -> tuple[bool, str]:
        if self._state == S.GETTING_DOWN:
            return True, "already getting down"
        refusal = self._refuse_motion(R.GET_DOWN, _GET_DOWN_FROM)
        if refusal:
            return False, refusal
        previous = self._state
        self._enter(S.GETTING_DOWN, move=True, load=(self._carried_load(previous), 0.0))
        return True, f"{previous.name} -> GETTING_DOWN over {self.cc.get_down_duration:.1f} s"

    def _refuse_motion(self, r: ControllerRequest, allowed_from: frozenset) -> str:
        if self._state not in allowed_from:
            return f"{r.name} refused in {self.state_name}"
        if self._sensor_fault is not None:
            return f"{r.name} refused: sensors not healthy ({self._sensor_fault})"
        return ""

    def stand_in_place(self, reason: str, from_target: bool = True) -> bool:
        """A running robot whose sensors went stale (safety.stale_stand_after) moves from its last targets to the
        default pose in controller.stale_stand_duration and holds it (STANDING_UP): the motor boards keep that
        posture without our sensors, where damping would drop a trotting dog. RUN resumes once they are fresh.
        from_target=False starts from the measured pose instead: after a stall of this process the sensors are
        fresh and the bridge has meanwhile stood the dog itself (bridge/stall_posture.py), away from our last
        target. Other states are left as they are (their moves do not read the sensors). Returns whether it
        stood."""
        if self._state != S.RUNNING:
            return False
        self._enter(S.STANDING_UP, fault=reason, move=True, load=(1.0, 1.0))
        self._in_place_from = "target" if from_target else "measured"
        return True

    def _carried_load(self, state: ControllerState) -> float:
        """The share of the weight the legs carry in `state`, where a move starts: a standing or running dog
        carries all of it; from PASSIVE or DAMPING it is taken to be lying, its weight on the ground."""
        if state == S.RUNNING:
            return 1.0
        if state in (S.STANDING_UP, S.GETTING_DOWN) and self._move is not None:
            return self._move.load_at(self._now)
        return 0.0

    def _enter(self, state: ControllerState, fault: str = "", move: bool = False,
               load: tuple[float, float] = (0.0, 0.0)) -> None:
        self._state = state
        if fault:
            self.last_fault = fault
        self._move = None
        self._move_pending = move
        self._in_place_from = None
        self._move_load = load

    # --------------------------------------------------------------------------------------------- tick
    def tick(self, now: float, measured_q: Optional[ArrayLike], policy_target_q: Optional[ArrayLike] = None,
             fault: Optional[str] = None, policy_target_dq: Optional[ArrayLike] = None,
             policy_kp_scale: float = 1.0, policy_target_tau: Optional[ArrayLike] = None) -> PDCommand:
        """One control tick: the command to send (still to be passed through the SafetyFilter).

        measured_q: joint positions (model convention); invalid ones count as a sensor fault.
        policy_target_q: the policy's joint target for this tick, or None if no action is ready (RUNNING then
        holds the last target). fault: the SensorMonitor's verdict (None = healthy). policy_target_dq: the plan's
        joint velocity (the velocity feed-forward, see pd_targets.py), used with policy_target_q.
        policy_kp_scale: robot.kp's multiple for the policy's targets (the skill's kp_scale, see gains.py); a value
        outside the config's bounds is cut to them. policy_target_tau: the plan's feed-forward torque (tau_des,
        N m), if it has one.
        """
        q = self._valid_vector(measured_q)
        if not is_finite_number(now):
            fault = fault or f"invalid time {now!r}"
        elif q is None:
            fault = fault or "measured joint positions missing, malformed or not finite"
        else:
            self._now = float(now)
            self._last_q = q
        self._sensor_fault = fault
        if fault is not None and self._state in ACTIVE_STATES:
            self._enter(S.DAMPING, fault=fault)
        if self._state == S.STANDING_UP:
            return self._tick_stand_up(policy_target_q, policy_target_dq, policy_target_tau)
        if self._state == S.RUNNING:
            return self._tick_running(policy_target_q, policy_target_dq, policy_kp_scale, policy_target_tau)
        if self._state == S.GETTING_DOWN:
            return self._tick_get_down()
        return self._passive_command()

    def _tick_stand_up(self, policy_target_q: Optional[ArrayLike], policy_target_dq: Optional[ArrayLike],
                       policy_target_tau: Optional[ArrayLike]) -> PDCommand:
        target = self._interpolate(self.default_pose, self.cc.stand_up_duration)
        if self.cc.auto_run and self.stand_complete:
            self._enter(S.RUNNING)
            return self._tick_running(policy_target_q, policy_target_dq, policy_target_tau=policy_target_tau)
        return self._hold(target)

    def _tick_running(self, policy_target_q: Optional[ArrayLike], policy_target_dq: Optional[ArrayLike],
                      kp_scale: float = 1.0, policy_target_tau: Optional[ArrayLike] = None) -> PDCommand:
        if policy_target_q is None:
            return self._hold(self._target if self._target is not None else self._last_q, load=1.0)
        target = self._valid_vector(policy_target_q)
        if target is None:
            self._enter(S.DAMPING, fault="policy target missing, malformed or not finite")
            return self._passive_command()
        self._target = target
        scale = min(max(kp_scale, MIN_KP_SCALE), MAX_KP_SCALE) if is_finite_number(kp_scale) else 1.0
        command = PDCommand.position(target, self.config.robot.kp * scale, self.config.robot.kd)
        dq, tau = self._valid_vector(policy_target_dq), self._valid_vector(policy_target_tau)
        if dq is not None:
            command = command.replace(dq=dq)
        return command if tau is None else command.replace(tau=tau)

    def _tick_get_down(self) -> PDCommand:
        target = self._interpolate(self.lying_pose, self.cc.get_down_duration)
        if self._move.done(self._now):
            self._enter(S.PASSIVE)
            return self._passive_command()
        return self._hold(target)

    def _interpolate(self, goal: np.ndarray, duration: float) -> np.ndarray:
        """The target of the current move, starting it from the measured pose on its first tick (a stand in place
        from the last target, and in controller.stale_stand_duration)."""
        if self._move_pending or self._move is None:
            start = self._last_q
            if self._in_place_from is not None:
                duration = self.cc.stale_stand_duration
                if self._in_place_from == "target" and self._target is not None:
                    start = self._target
            self._move = Move(start=start.copy(), goal=goal, t0=self._now, duration=duration, load=self._move_load)
            self._move_pending = False
        return self._move.at(self._now)

    def _hold(self, target: np.ndarray, load: Optional[float] = None) -> PDCommand:
        """Track a target at the stand gains, `load` (default: the move's share) of the weight carried through
        tau_des (stance_support.py): the firmware's band caps what the PD alone can lift."""
        self._target = np.asarray(target, dtype=np.float64).copy()
        command = PDCommand.position(self._target, self.cc.stand_kp, self.cc.stand_kd)
        if load is None:
            load = self._move.load_at(self._now) if self._move is not None else 0.0
        if load <= 0.0 or self.cc.support_mass <= 0.0 or self.num_joints != 12:
            return command
        return command.replace(tau=load * support_torques(self._target, self.cc.support_mass))

    def _passive_command(self) -> PDCommand:
        """PASSIVE uses the configured passive mode; DAMPING and ESTOP always damp."""
        self._target = None
        q = self._last_q if self._last_q is not None else self.default_pose
        if self._state == S.PASSIVE:
            if self.cc.passive_mode == "zero_torque":
                return PDCommand.zero_torque(q=q)
            return PDCommand.damping(self.cc.passive_kd, q=q)
        return PDCommand.damping(self.cc.damping_kd, q=q)

    def _valid_vector(self, value: Optional[ArrayLike]) -> Optional[np.ndarray]:
        return finite_vector(value, self.num_joints)


class Move:
    """A smooth joint-space move from start to goal over duration seconds, the weight the legs carry changing
    with it from load[0] to load[1] (shares of the whole). The controller's moves, and the bridge's stall
    posture (bridge/stall_posture.py)."""

    def __init__(self, start: np.ndarray, goal: np.ndarray, t0: float, duration: float,
                 load: tuple[float, float] = (0.0, 0.0)) -> None:
        self.start, self.goal, self.t0, self.duration = start, goal, t0, duration
        self.load = load

    def fraction(self, now: Optional[float]) -> float:
        return 0.0 if now is None else min(max((now - self.t0) / self.duration, 0.0), 1.0)

    def at(self, now: Optional[float]) -> np.ndarray:
        return self.start + smoothstep(self.fraction(now)) * (self.goal - self.start)

    def done(self, now: Optional[float]) -> bool:
        return self.fraction(now) >= 1.0

    def load_at(self, now: Optional[float]) -> float:
        return self.load[0] + smoothstep(self.fraction(now)) * (self.load[1] - self.load[0])

    def remaining(self, now: Optional[float]) -> float:
        return (1.0 - self.fraction(now)) * self.duration
