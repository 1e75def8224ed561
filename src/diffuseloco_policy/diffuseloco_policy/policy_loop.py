"""One control tick of the deployed policy, without ROS: sensors -> observation history -> sampler -> safety ->
PD targets. The policy node feeds it messages and publishes what it returns; tests drive it directly.

Timing of tick t (delayed inputs, receding horizon):
  1. take the chunk the worker computed during the last period from s[t-8..t-1], waiting for it at most
     inference_wait_s; execute its index To (with the next entry as the plan's velocity). If it is later than
     that, count a deadline miss (`last_miss` says when it was taken) and follow the previous chunk one step
     further (the plan it already made for this tick).
  2. the controller state machine turns it into a command (or stands up, gets down, damps); the safety filter
     has the last word.
  3. build s[t] from the sensors and the action actually applied at t-1, push it, and submit s[t-7..t] so the
     worker computes tick t+1's action during this period. The frame's goal carries the model command: the
     skill's command plus the outer velocity loop's correction (command_feedback.py), updated at the start of
     the tick from its gyro and vBody.

Skills the model lacks: a model trained before the robot config gained a skill runs over its own (model_file.py
model_view); a command for one of the others is refused: the skill in effect stays, its velocity goes to zero (the
source asked for something else; stepping in place is the gentlest stop), and `skill_refusal` says why until a
command is accepted again. The source counts as alive, so the watchdog does not stand the robot.

Command classes: a class model (config.CommandClassConfig: its goal names 'walk', not trot or pace) runs over
its classes; a command for any skill of a class is one for the class, clamped to the class's range, the class's
id (its first skill's) is the skill in effect, and `command_class` says so (the node puts it in /diagnostics).

Watchdogs (config.WatchdogConfig): with command_watchdog=True (the node) a command source that falls silent gets
its velocity zeroed, then the skill set to stand (command_watchdog.py). A sampler that fails (an exception,
non-finite actions) leaves the previous plan in use, like a deadline miss; WatchdogConfig.sampler_failures
failures in a row are a fault: DAMPING from RUNNING, RUN refused, the reason in last_fault.

Two ablation options (the paper's ablations; the defaults are the deployed design):
  current_frame=True: the sampler for tick t sees s[t-7..t], built at the start of tick t and sampled
     synchronously within the tick (waiting at most inference_wait_s), instead of s[t-8..t-1] one tick ahead.
  replan_every=N > 1: open-loop chunk execution: a chunk's entries execute_index .. execute_index+N-1 are
     executed one per tick, and a new chunk is sampled only every N ticks (instead of every tick).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import numpy as np

from .command_classes import describe_command
from .command_feedback import CommandFeedback, Measured
from .command_watchdog import CommandTimeout, CommandWatchdog
from .config import StackConfig
from .controller import Controller, ControllerRequest, ControllerState
from .gaits import GaitFollower
from .gains import SkillGains
from .history import ObservationHistory
from .inference import InferenceWorker, Sampler
from .log_text import shorten
from .observation import ObservationBuilder, RobotState, observes_applied_action, observes_gait_phase
from .pd_targets import ActionDecoder, JointTargets
from .safety import ImuSample, JointSample, PDCommand, SafetyFilter, SensorMonitor, VelocitySample, is_finite_number


@dataclass
class SkillCommandState:
    """The skill and velocity in effect, after clamping to the skill's trained range."""

    skill: int = 0
    command: np.ndarray = field(default_factory=lambda: np.zeros(3))
    note: str = ""


@dataclass(frozen=True)
class TickReport:
    """What one tick did: the command to send (model convention) and what PolicyStatus reports."""

    command: PDCommand
    state: ControllerState
    clamps: tuple[str, ...]
    fault: Optional[str]
    inference_latency_s: float
    deadline_missed: bool
    plan_wait_s: float = 0.0  # how long the tick waited for its plan (at most inference_wait_s)
    stale: str = ""           # why the tick rode through or stood on stale sensors ("" when they were fresh)


@dataclass(frozen=True)
class PlanMiss:
    """A tick whose plan was not ready: which tick, the tick the missing plan was for, and when the take began
    (time.monotonic() s; InferenceWorker.job_times(due) says when that job ran, for comparison)."""

    tick: int
    due: int
    take_s: float


class PolicyLoop:
    """Owns the per-tick pipeline and its state; not thread-safe: call from the control timer only."""

    def __init__(self, config: StackConfig, sampler: Sampler, inference_wait_s: float = 0.0,
                 reset_sampler: Optional[Callable[[], None]] = None, current_frame: bool = False,
                 replan_every: int = 1, command_watchdog: bool = False,
                 lacking_skills: Optional[Mapping[int, str]] = None) -> None:
        """sampler: (obs window, goal window) -> action chunk. reset_sampler: makes the next call start from
        scratch (a warm-starting runtime must not continue a plan made before a gap in the history).
        current_frame, replan_every: the ablations described in the module docstring. command_watchdog: reduce
        the command when set_skill_command is not called for a while (for streamed commands, as the node gets
        them; a harness that sets a command once per segment leaves it off). lacking_skills: the robot's skills
        (id -> name) that `config` (the model's view, model_file.model_view) lacks: refused with the reason."""
        longest = config.action.horizon - config.action.execute_index
        if not 1 <= replan_every <= longest:
            raise ValueError(f"replan_every must be in 1..{longest} (chunk entries from execute_index on), "
                             f"got {replan_every}")
        if current_frame and observes_applied_action(config):
            raise ValueError("the applied_action term is the action sent after the frame's state was measured: the "
                             "current-frame ablation records s[t] before acting, so it cannot run such a model")
        self.current_frame = current_frame
        self.replan_every = replan_every
        self.config = config
        self.builder = ObservationBuilder(config)
        self.history = ObservationHistory.from_config(config)
        # models with the gait_phase goal term: the experts' gait timing, run from the skills in effect
        self.gait = GaitFollower(config) if observes_gait_phase(config) else None
        self._stand_id = config.skill("stand").id
        self.decoder = ActionDecoder(config)
        self.controller = Controller(config)
        self.safety = SafetyFilter(config)
        self.monitor = SensorMonitor(config)
        self.worker = InferenceWorker(self._checked(sampler), reset_sampler)
        self._fresh = True  # the next sampler job starts without a warm start
        self.inference_wait_s = inference_wait_s
        self.skill = SkillCommandState()
        self.lacking_skills = dict(lacking_skills or {})
        overlap = set(self.lacking_skills) & {s.id for s in config.skills}
        if overlap:
            raise ValueError(f"lacking_skills {sorted(overlap)} are skills of the config the loop runs")
        self.skill_refusal = ""          # why the last skill command was refused for a skill the model lacks
        self.command_class = ""          # which command class the command in effect runs ("" for a plain skill)
        self.command_watchdog = CommandWatchdog(config.watchdog) if command_watchdog else None
        self.command_timeout = ""        # why the command in effect was reduced by the watchdog ("" if it is not)
        self._command_fresh = False      # set_skill_command accepted a command since the last tick
        self.sampler_failures = 0        # consecutive failed plans
        self.sampler_fault = ""          # set while sampler_failures has reached the limit
        self.stale = ""                  # this tick's stale sensors (or own stall) and the reaction, "" if fresh
        self.stale_reaction = ""         # "", "ride" (through, on the plan) or "stand"
        self.last_tick_at: Optional[float] = None   # the time of the last tick (the caller's clock)
        self._blind: Optional[tuple[float, float]] = None   # the latest span this process did not run
        self.feedback = CommandFeedback(config.command_feedback, config.rates.control_dt)
        self.gains = SkillGains(config)
        self.model_command = np.zeros(3)  # the command the model is given: the skill's, plus the velocity loop's
        self.ticks = 0
        self.deadline_misses = 0
        self.plans_waited_for = 0  # plans that came after the take began but within inference_wait_s
        self.last_miss: Optional[PlanMiss] = None
        self.last_fault = ""
        self.last_latency_s = 0.0
        self._plan: Optional[np.ndarray] = None     # the chunk being executed
        self._plan_index = config.action.execute_index
        self._submitted_for: Optional[int] = None
        self._last_q_des: Optional[np.ndarray] = None
        self._last_action = np.zeros(len(config.robot.joint_names))
        self._history_broken = False  # a tick without a healthy frame: the history has a hole

    def _checked(self, sampler: Sampler) -> Sampler:
        """A chunk the decoder cannot read counts as a failed sampler call (the current plan goes on), not a crash
        in the control tick."""
        def sample(obs_window: np.ndarray, goal_window: np.ndarray) -> np.ndarray:
            chunk = np.asarray(sampler(obs_window, goal_window), dtype=np.float64)
            self.decoder.check_chunk(chunk, self.config.action.horizon)
            return chunk
        return sample

    # ------------------------------------------------------------------------------------------------ inputs
    def set_skill_command(self, skill: int, vx: float, vy: float, yaw_rate: float) -> SkillCommandState:
        """Accept a teleop command: unknown skills are refused (the previous one stays), speeds clamped. A skill of
        a command class commands the class (the class's id is then the skill in effect)."""
        values = np.array([vx, vy, yaw_rate], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            self.skill.note = "refused a command with non-finite velocity"
            return self.skill
        if skill in self.lacking_skills:
            return self._refuse_lacking(skill)
        ids = [s.id for s in self.config.skills]
        if skill not in ids:
            self.skill.note = f"refused unknown skill id {skill}"
            return self.skill
        command = self.config.command(skill)
        clamped = np.array(command.clamp_command(*values))
        note = "velocity clamped to the skill's range" if not np.allclose(clamped, values) else ""
        self.skill = SkillCommandState(command.id, clamped, note)
        self.command_class = describe_command(self.config, skill)
        self.skill_refusal = ""
        self._command_fresh = True
        return self.skill

    def _refuse_lacking(self, skill: int) -> SkillCommandState:
        """A skill of the robot that the model was not trained on: keep the skill in effect at zero velocity."""
        kept = self.config.command(self.skill.skill).name
        self.skill_refusal = (f"refused skill {self.lacking_skills[skill]} (id {skill}): the model was not trained "
                              f"on it (its skills: {', '.join(s.name for s in self.config.skills)}); {kept} kept, "
                              "velocity zeroed")
        self.skill = SkillCommandState(self.skill.skill, np.zeros(3), self.skill_refusal)
        self._command_fresh = True
        return self.skill

    def request(self, request: int, source: str = "") -> tuple[bool, str]:
        if request == ControllerRequest.RUN and self.controller.state != ControllerState.RUNNING:
            if self.sampler_fault or self.monitor.staleness is not None:  # a broken sampler, sensors still stale
                return False, f"RUN refused: {self.sampler_fault or self.stale}"
        accepted, message = self.controller.request(request, shorten(source))
        if accepted and request == ControllerRequest.RUN:
            self._plan, self._fresh = None, True
        return accepted, message

    # ------------------------------------------------------------------------------------------------- tick
    def tick(self, now: float, joints: Optional[JointSample], imu: Optional[ImuSample],
             velocity: Optional[VelocitySample] = None) -> TickReport:
        """velocity: the state estimator's vBody, needed (and checked like any sensor) only by models that
        observe it."""
        self._watch_commands(now)
        fault = self.monitor.check(now, joints, imu, velocity, blind=self._blind_span(now))
        self._grade_staleness(now, fault)
        sensors = _Sensors(joints, imu, velocity)
        running = fault is None and self.controller.state == ControllerState.RUNNING  # before this tick's move
        self._update_model_command(sensors, running)
        if self.current_frame:  # ablation: s[t] is recorded first, and the chunk for tick t is sampled from it
            self._record_frame(sensors, fault, for_tick=self.ticks)
        latency, missed, waited = self._collect_plan()
        target = self._planned_targets() if fault is None else None
        q_target, dq_target, tau_target = (None, None, None) if target is None else target
        kp_scale = self.gains.update(self.skill.skill, running)
        if fault is None and self.sampler_fault and self.controller.state == ControllerState.RUNNING:
            fault = self.sampler_fault  # only RUNNING follows the sampler: the controller's fault path damps
        command = self.controller.tick(now, None if joints is None else joints.q, q_target, fault, dq_target, kp_scale,
                                       tau_target)
        safe, clamps = self.safety.filter(command, self._last_q_des, None if joints is None else joints.q)
        if self.controller.state in (ControllerState.DAMPING, ControllerState.ESTOP):
            # why the controller stopped the policy (a sensor fault, an e-stop); passive-state faults such as
            # "no joint state yet" at start-up are not faults of a running robot
            self.last_fault = self.controller.last_fault or fault or self.last_fault
        sent = self.decoder.action(safe.q)
        if not self.current_frame:  # s[t] is recorded after acting: the input of tick t+1
            self._record_frame(sensors, fault, for_tick=self.ticks + 1, sent=sent)
        self._last_q_des = safe.q
        if fault is None and joints is not None and imu is not None:
            self._last_action = sent
        self.ticks += 1
        return TickReport(safe, self.controller.state, tuple(clamps), fault, latency, missed, waited, self.stale)

    def _blind_span(self, now: float) -> Optional[tuple[float, float]]:
        """The latest span in which this process did not run (beyond one tick period after the previous tick):
        samples that arrived meanwhile waited in its queue, maybe behind more ticks, so their age says nothing
        about the sensors (SensorMonitor.check)."""
        if self.last_tick_at is not None and is_finite_number(now) \
                and now - self.last_tick_at > self.config.rates.control_dt:
            self._blind = (self.last_tick_at + self.config.rates.control_dt, float(now))
        return self._blind

    def _grade_staleness(self, now: float, fault: Optional[str]) -> None:
        """Stale but not lost sensors (SensorMonitor.staleness), or a tick that comes late after the previous one
        (this process stalled: a VM, a busy board): a short gap is ridden through on the current plan and the
        last sample; past safety.stale_stand_after a running robot stands (Controller.stand_in_place). A stall of
        this process is reported as such, not as stale sensors (the bridge or the simulated firmware held the
        robot meanwhile, and the plan is as old as the stall)."""
        previous, self.last_tick_at = self.last_tick_at, now
        safety = self.config.safety
        gap = now - previous if previous is not None else 0.0
        stale = self.monitor.staleness if fault is None else None
        stalled = fault is None and gap > safety.sensor_timeout
        if stale is None and not stalled:
            self.stale = self.stale_reaction = ""
            return
        own_stall = stalled and (stale is None or stale.age_s - gap < safety.sensor_timeout)
        if own_stall:
            cause, age = f"policy process stalled: {gap * 1000:.0f} ms since the previous tick", gap
        else:
            cause, age = f"{stale.stream} stale: {stale.age_s * 1000:.0f} ms old", stale.age_s
        limit = f"{safety.stale_stand_after * 1000:.0f} ms"
        if age <= safety.stale_stand_after:
            self.stale, self.stale_reaction = f"{cause}; riding through on the current plan (limit {limit})", "ride"
            return
        self.stale, self.stale_reaction = f"{cause}; standing until it is fresh (limit {limit})", "stand"
        if self.controller.stand_in_place(self.stale, from_target=not own_stall):
            self.last_fault = self.stale

    def _watch_commands(self, now: float) -> None:
        """The command watchdog: a fresh command (since the last tick) re-arms it; a silent source has its command
        reduced to zero velocity, then to stand."""
        if self.command_watchdog is None:
            return
        if self._command_fresh:
            self.command_watchdog.fresh(now)
            self._command_fresh = False
        timeout = self.command_watchdog.check(now)
        if timeout == CommandTimeout.NONE:
            self.command_timeout = ""
            return
        if not self.command_timeout or (timeout == CommandTimeout.STAND and self.skill.skill != self._stand_id):
            self.command_timeout = self.command_watchdog.describe(now)
        skill = self._stand_id if timeout == CommandTimeout.STAND else self.skill.skill
        if skill == self._stand_id:
            self.command_class = ""
        self.skill = SkillCommandState(skill, np.zeros(3), self.command_timeout)

    def _update_model_command(self, sensors: "_Sensors", running: bool) -> None:
        """The skill's command corrected by the outer velocity loop from this tick's gyro and vBody, as far as
        SensorMonitor passed them (`running`: RUNNING without a fault, so the IMU sample is sound; vBody has its
        own verdict)."""
        measured = None
        if running and sensors.imu is not None:
            velocity = sensors.velocity if self.monitor.velocity_fault is None else None
            planar = None if velocity is None else np.asarray(velocity.linear_velocity, dtype=np.float64)[:2]
            measured = Measured(planar, float(np.asarray(sensors.imu.angular_velocity, dtype=np.float64)[2]))
        self.model_command = self.feedback.update(self.config.command(self.skill.skill), self.skill.command, measured,
                                                  running)

    def _collect_plan(self) -> tuple[float, bool, float]:
        """Swap in the chunk computed for this tick, waiting for it at most inference_wait_s. If it is later, count
        a deadline miss and use the newest chunk that did finish (stepping into it by the ticks it is late), else
        step along the current plan. Returns (sampler latency, missed, how long the take waited)."""
        if self._submitted_for is None:  # no new chunk due for this tick: step along the current one
            if self._plan is not None:
                self._plan_index += 1
            return 0.0, False, 0.0
        take_s = time.monotonic()
        result = self.worker.take(self._submitted_for, self.inference_wait_s)
        waited = time.monotonic() - take_s
        missed = result is None or result.tick != self._submitted_for
        if missed:
            self.deadline_misses += 1
            self.last_miss = PlanMiss(self.ticks, self._submitted_for, take_s)
            self._plan_index += 1
        # a late chunk is awaited again next tick (the default flow submits a newer one anyway)
        self._submitted_for = self._submitted_for + 1 if missed else None
        if result is None:
            return self.last_latency_s, missed, waited
        self.last_latency_s = result.latency_s
        if result.error:
            self._sampler_failed(result.error, stepped=missed)
            return result.latency_s, missed, waited
        self.sampler_failures, self.sampler_fault = 0, ""
        if not missed and result.times is not None and result.times.finished_s > take_s:
            self.plans_waited_for += 1  # without the wait, a deadline miss
        late = self.ticks - result.tick
        self._plan, self._plan_index = result.chunk, self.config.action.execute_index + late
        return result.latency_s, missed, waited

    def _sampler_failed(self, error: str, stepped: bool) -> None:
        """A failed plan: the previous plan goes on (it was made for this tick too) until `sampler_failures` in
        a row, which are a fault. stepped: the plan was already stepped for this tick (a late failed result)."""
        self.last_fault = error
        self.sampler_failures += 1
        if not stepped and self._plan is not None:
            self._plan_index += 1
        limit = self.config.watchdog.sampler_failures
        if self.sampler_failures >= limit:
            self.sampler_fault = f"{error} ({self.sampler_failures} plans in a row, limit {limit})"

    def _planned_targets(self) -> Optional[JointTargets]:
        if self._plan is None or self._plan_index >= len(self._plan):
            return None
        return self.decoder.chunk_targets(self._plan, self._plan_index)

    def _replan_due(self) -> bool:
        """Whether the tick after the last executed one needs a new chunk: always with receding horizon, every
        replan_every ticks when executing chunks open-loop."""
        executed = self._plan_index - self.config.action.execute_index + 1  # entries of the plan used so far
        return self._plan is None or executed >= self.replan_every

    def _record_frame(self, sensors: "_Sensors", fault: Optional[str], for_tick: int,
                      sent: Optional[np.ndarray] = None) -> None:
        """Record s[t] with the action applied at t-1 (and the one sent at t, once this tick has acted) and, if a
        chunk is due, submit the window ending at s[t] as the input for tick `for_tick`."""
        state = None if fault is not None else sensors.robot_state()
        if state is None:
            self._history_broken = True
            return
        if self._history_broken:  # never stitch frames from before a sensor fault to frames after it
            self.history.reset()
            if self.gait is not None:
                self.gait.reset()
            self._plan, self._history_broken, self._fresh = None, False, True
        obs = self.builder.observation(state, self._last_action, sent)
        goal = self.builder.goal(self.model_command, self.skill.skill, self._gait_phase())
        self.history.push(obs, goal)
        if not self._replan_due():
            return
        obs_window, goal_window = self.history.window()  # s[t-7..t]: for tick t+1 (delayed) or t (current_frame)
        self.worker.submit(for_tick, obs_window, goal_window, fresh=self._fresh)
        self._fresh = False
        self._submitted_for = for_tick

    def _gait_phase(self) -> Optional[np.ndarray]:
        """This frame's gait_phase term: the gait stands until the policy runs (as the experts' episodes start),
        then follows the skill in effect."""
        if self.gait is None:
            return None
        running = self.controller.state == ControllerState.RUNNING
        return self.gait.step(self.skill.skill if running else self._stand_id)

    def close(self) -> None:
        self.worker.close()


@dataclass(frozen=True)
class _Sensors:
    """One tick's samples as the node handed them over."""

    joints: Optional[JointSample]
    imu: Optional[ImuSample]
    velocity: Optional[VelocitySample]

    def robot_state(self) -> Optional[RobotState]:
        """s[t] for the observation builder, or None without a joint state or IMU sample (a body velocity the
        model needs but lacks is already a SensorMonitor fault)."""
        if self.joints is None or self.imu is None:
            return None
        v = None if self.velocity is None else np.asarray(self.velocity.linear_velocity, dtype=np.float64)
        return RobotState(np.asarray(self.joints.q, dtype=np.float64), np.asarray(self.joints.dq, dtype=np.float64),
                          np.asarray(self.imu.quaternion, dtype=np.float64),
                          np.asarray(self.imu.angular_velocity, dtype=np.float64), v)
