"""The policy node: CyberDog joint state + IMU + skill commands in, PD targets out, at the control rate.

All decisions live in policy_loop.PolicyLoop (ROS-free); this node converts messages, keeps the newest sensor
samples with their receive times, runs the 50 Hz timer, and publishes the command, PolicyStatus and diagnostics.
Command and sensor topics use QoS that no publisher can silently mismatch (nodes/qos.py), and a command source
that falls silent is caught by the loop's command watchdog. The model file carries its own config; it is checked against the robot config at start and a mismatch stops the
node with the reason (it never drives the robot with a model trained for another layout).
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from cyberdog_msgs.msg import LegState, MotorCommand
from geometry_msgs.msg import Twist, TwistStamped
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from diffuseloco_msgs.msg import PolicyStatus, SkillCommand
from diffuseloco_msgs.srv import SetControllerState
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu

from ..cmd_vel import VelocityInput, velocity_from_twist
from ..command_classes import describe_command_classes
from ..command_feedback import describe as describe_feedback
from ..config import ConfigError, StackConfig, load_config
from ..controller import ControllerRequest, ControllerState
from ..inference import Sampler, describe_job
from ..log_text import shorten
from ..joints import JointConvention
from ..gains import describe_gains, with_model_gains
from ..model_file import (ModelMismatchError, default_model_path, model_view, skills_lacking,
                          within_trained_ranges)
from ..policy_loop import PlanMiss, PolicyLoop, TickReport
from ..providers import DEFAULT_PROVIDERS, parse_providers
from ..runtime import DEPLOYED_NOISE_SCALE, DEPLOYED_WARM_START_STEPS, PolicyRuntime, load_runtime
from ..safety import ImuSample, JointSample, PDCommand, VelocitySample
from ..sensor_gate import SensorGate
from ..timing import TickTiming
from ..motor_sdk import MotorCommand as SdkMotorCommand
from .conversions import body_velocity_from_msg, imu_reading_from_msg, joint_state_from_msg, motor_command_msg
from .parameters import declare_parameters
from .qos import COMMAND_QOS, QosWatch
from .source_filter import SourceFilter, filtered
from .spin import run_node, use_realtime_scheduling

PACKAGE = "diffuseloco_policy"
MOVING_REQUESTS = frozenset({ControllerRequest.STAND_UP, ControllerRequest.RUN, ControllerRequest.CLEAR_ESTOP})
EXPERT_STAND_IN = "expert"
# How long a tick waits for a plan that is not ready at its start, before it counts a deadline miss and follows
# the previous plan: a quarter of the 20 ms period. The plan normally arrives ~16 ms early; it is late when the
# process lost a CPU for most of a period (a late previous tick, a delayed sampler start), and in the soaks it was
# then often only 1-4 ms late. The wait delays that tick's command; the tick jitter counts it as a late start.
DEFAULT_INFERENCE_WAIT_MS = 5.0
# The spread (std) of the robot-clock time between the joint samples of consecutive ticks above which the node
# warns: 3 ms (1.5 joint-loop frames) is harmless in the harness, 6 ms is not (TickTiming.sample_used).
SAMPLE_SPACING_WARN_STD_MS = 4.0


@dataclass(frozen=True)
class SamplerSetup:
    """What the node's sampler factory provides: the sampler and its reset, whether the model was trained on the
    current frame s[t] (the ablation, sampled within the tick), and the config the model was trained for (None
    for the expert stand-in)."""

    sampler: Sampler
    reset: Callable[[], None]
    current_frame: bool
    trained: Optional[StackConfig]


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("diffuseloco_policy")
        # The sampler thread and the 500 Hz sensor callbacks share the GIL with the control tick; a short switch
        # interval (default 5 ms) bounds how long either thread waits for it. In the soak the sampler was off the
        # CPU (mostly waiting for the GIL) for 2.2 ms of a sample at p99 with 0.5 ms, for 0.9 ms with 0.1 ms.
        sys.setswitchinterval(0.0001)
        p = self._declare_parameters()
        self.config: StackConfig = load_config(p["config"] or None)
        self.convention = JointConvention(self.config.robot)
        setup = self._sampler(p)
        lacking = self._skills_lacking(setup.trained)
        if setup.trained is not None:
            narrowed = model_view(self._within_trained_ranges(setup.trained), setup.trained)
            self.config = self._with_model_gains(narrowed, setup.trained)
            self._log_command_classes()
        self.loop = PolicyLoop(self.config, setup.sampler, inference_wait_s=p["inference_wait_ms"] / 1000.0,
                               reset_sampler=setup.reset, current_frame=setup.current_frame, command_watchdog=True,
                               lacking_skills=lacking)
        self._joints: Optional[JointSample] = None
        self._imu: Optional[ImuSample] = None
        self._velocity: Optional[VelocitySample] = None
        self.period = 1.0 / self.config.rates.control_hz
        self.timing = TickTiming(self.period)
        self._joints_wall: Optional[float] = None
        self._miss_to_log: Optional[tuple[PlanMiss, int, tuple[float, float]]] = None
        self.leg_gate = SensorGate(self.config.safety.sensor_timeout)
        self.imu_gate = SensorGate(self.config.safety.sensor_timeout)
        self.velocity_gate = SensorGate(self.config.safety.sensor_timeout)
        self._reported = _Reported()
        self.qos = QosWatch(self)

        self.command_pub = self._publisher(MotorCommand, p["motor_command_topic"], 1)
        self.status_pub = self._publisher(PolicyStatus, p["status_topic"], 10)
        self.diag_pub = self._publisher(DiagnosticArray, "/diagnostics", 10)
        self.control_sources = frozenset(s.strip() for s in p["control_sources"].split(",") if s.strip())
        self.sensor_sources: list[SourceFilter] = []   # one per filtered subscription (sensors and cmd_vel)
        self.velocity_input = VelocityInput(self.config.watchdog.command_zero_after_s)
        self._subscribe_sensor(LegState, p["leg_state_topic"], self._on_leg_state, p["sensor_source"])
        self._subscribe_sensor(Imu, p["imu_topic"], self._on_imu, p["sensor_source"])
        # vBody: an input of models that observe it (then checked like any sensor), and the velocity loop's measure
        if self.loop.monitor.checks_velocity:
            self._subscribe_sensor(TwistStamped, p["body_velocity_topic"], self._on_body_velocity, p["sensor_source"])
        self._subscribe(SkillCommand, p["skill_command_topic"], self._on_skill_command, COMMAND_QOS)
        if p["cmd_vel_topic"]:   # a navigation stack's velocity: velocity only, from one node (cmd_vel.py)
            self._subscribe_filtered(Twist, p["cmd_vel_topic"], self._on_cmd_vel, p["cmd_vel_source"], COMMAND_QOS)
        self.create_service(SetControllerState, p["state_service"], self._on_state_request)
        self.create_timer(self.period, self._on_tick)
        self.create_timer(1.0, self._publish_diagnostics)
        source = "expert stand-in" if p["model"] == EXPERT_STAND_IN else (
            f"{self.model_path.name} ({p['backend']}, warm start {p['warm_start_steps'] or 'off'}, "
            f"noise scale {p['noise_scale']:g})")
        self.get_logger().info(f"policy {source} loaded, "
                               f"{self.config.rates.control_hz:.0f} Hz, state PASSIVE; "
                               f"{describe_feedback(self.config.command_feedback)}, vBody on {p['body_velocity_topic']}")
        use_realtime_scheduling(self, p["realtime_priority"])  # last: covers the inference and DDS threads
        # Everything allocated so far (modules, the model, the config) lives as long as the node: out of the
        # collector's sight, a full collection no longer walks it and holds the GIL for milliseconds mid-tick.
        gc.freeze()

    def _sampler(self, p: dict):
        """The model's sampler, or (model: expert, simulation only) the expert controllers standing in for it."""
        if p["model"] == EXPERT_STAND_IN:
            self.model_path = Path(EXPERT_STAND_IN)
            self.execution_providers = "none (expert stand-in)"
            stand_in = _expert_stand_in(self.config)
            self.create_subscription(TwistStamped, "/sim/base_twist", lambda m: stand_in.set_velocity(
                m.twist.linear.x, m.twist.linear.y), 10)
            self.get_logger().warning("EXPERT STAND-IN: the expert controllers drive the robot, using the "
                                      "simulator's ground-truth velocity; this is not a learned policy")
            return SamplerSetup(stand_in, stand_in.reset, current_frame=False, trained=None)
        self.model_path = Path(p["model"]) if p["model"] else default_model_path()
        if not self.model_path.is_file():
            hint = (" (the default model ships in the repository's models/ and is installed to "
                    f"share/{PACKAGE}/models: restore it, or name one with model:=PATH; in simulation, "
                    "model:=expert runs the expert stand-in)") if not p["model"] else ""
            raise FileNotFoundError(f"model file {self.model_path} not found{hint}")
        providers = parse_providers(p["providers"], p["providers_required"], p["tensorrt_engine_cache"] or None)
        runtime = load_runtime(self.model_path, robot=self.config, backend=p["backend"],
                               warm_start_steps=p["warm_start_steps"] or None,
                               intra_op_threads=p["intra_op_threads"] or None, noise_scale=p["noise_scale"],
                               providers=providers)
        self._log_providers(runtime, providers.text())
        runtime.warm_up()   # with TensorRT, the first start with a model builds its engine here (before any tick)
        current_frame = not runtime.info.spec.delayed_inputs
        if current_frame:
            self.get_logger().warning("this model was trained on the current frame (the delayed-input ablation): "
                                      "each tick samples from its own frame and waits inference_wait_ms for the "
                                      "plan; a plan that takes longer is used a tick late")
        return SamplerSetup(runtime.predict, runtime.reset, current_frame, trained=runtime.info.config)

    def _log_providers(self, runtime: PolicyRuntime, asked: str) -> None:
        """What the sampler runs on next to what was asked: a provider skipped is a warning, never silent."""
        for note in runtime.provider_notes:
            self.get_logger().warning(note)
        self.execution_providers = ",".join(runtime.providers_in_use)
        self.get_logger().info(f"sampler execution providers in use: {self.execution_providers} (asked: {asked})")

    def _skills_lacking(self, trained: Optional[StackConfig]) -> dict[int, str]:
        """The robot's skills the model file was not trained on (a model older than the robot config's skill
        list): the node runs the model over its own skills and refuses commands for these."""
        lacking = {} if trained is None else skills_lacking(self.config, trained)
        if lacking:
            self.get_logger().warning(
                f"the model file has no skill {', '.join(lacking.values())} (its skills: "
                f"{', '.join(s.name for s in trained.skills)}): commands for it are refused, the skill in effect "
                "stays")
        return lacking

    def _log_command_classes(self) -> None:
        """A class model picks the gait itself: say which commands it takes and that a gait's id commands its
        class, since every SkillCommand source still names gaits."""
        if self.config.command_classes:
            ranges = "; ".join(f"{c.name} vx {c.vx} vy {c.vy} yaw {c.yaw_rate}" for c in self.config.commands)
            self.get_logger().info(f"the model was trained on command classes {describe_command_classes(self.config)}: "
                                   f"a command for a gait of a class commands the class, and the model picks the "
                                   f"gait ({ranges})")

    def _within_trained_ranges(self, trained: StackConfig) -> StackConfig:
        """The robot config with commands clamped to the ranges the model file accepts (its training ranges, or an
        envelope narrowed at export) where those are narrower."""
        narrowed = within_trained_ranges(self.config, trained)
        for mine, cut in zip(self.config.skills, narrowed.skills):
            if cut != mine:
                self.get_logger().warning(
                    f"skill {cut.name}: commands limited to the model file's range vx {cut.vx}, vy {cut.vy}, "
                    f"yaw {cut.yaw_rate} (robot config: vx {mine.vx}, vy {mine.vy}, yaw {mine.yaw_rate})")
        return narrowed

    def _with_model_gains(self, config: StackConfig, trained: StackConfig) -> StackConfig:
        """The robot config with the model file's gains (its data's kp and kd, each skill's kp scale): a model is
        driven at the gains it learned the robot with (gains.py)."""
        driven = with_model_gains(config, trained)
        if (driven.robot.kp, driven.robot.kd) != (config.robot.kp, config.robot.kd):
            self.get_logger().info(f"the model was trained at kp {trained.robot.kp:g} kd {trained.robot.kd:g}; the "
                                   f"robot config's experts use kp {config.robot.kp:g} kd {config.robot.kd:g}")
        self.get_logger().info(f"policy gains from the model file: {describe_gains(driven)}")
        return driven

    def _declare_parameters(self) -> dict:
        defaults = {
            # the validated deployment settings (bringup config/*.yaml): 2-step warm start, no sampler noise
            "model": "", "config": "", "backend": "onnx",
            "warm_start_steps": DEPLOYED_WARM_START_STEPS, "noise_scale": DEPLOYED_NOISE_SCALE,
            "intra_op_threads": 0,
            # ONNX Runtime's execution providers in order of preference (tensorrt, cuda, cpu; cpu is always the
            # last fallback); one this onnxruntime build lacks is skipped with a warning, or refused when
            # providers_required; TensorRT caches its engines in tensorrt_engine_cache ("" = ~/.cache) (providers.py)
            "providers": DEFAULT_PROVIDERS, "providers_required": False, "tensorrt_engine_cache": "",
            "inference_wait_ms": DEFAULT_INFERENCE_WAIT_MS, "realtime_priority": 0,
            "leg_state_topic": "/cyberdog/leg_state", "imu_topic": "/cyberdog/imu",
            "body_velocity_topic": "/cyberdog/body_velocity", "motor_command_topic": "/cyberdog/motor_cmd",
            "skill_command_topic": "/diffuseloco/skill_cmd",
            "status_topic": "/diffuseloco/status", "state_service": "/diffuseloco/set_state",
            # the node whose joint state, IMU and vBody are accepted ("/lcm_bridge", "/cyberdog_sim"); "" pins
            # each stream to its first publisher (nodes/source_filter.py)
            "sensor_source": "",
            # who may stand the robot up, run it or clear an e-stop (comma-separated teleop names; "" = anyone);
            # anyone may e-stop, damp or get it down
            "control_sources": "",
            # geometry_msgs/Twist velocities for the skill in effect, within its range ("" = no such input); they
            # never choose a skill or a state, and a teleop's stick has priority (cmd_vel.py)
            "cmd_vel_topic": "/cmd_vel",
            # the node whose cmd_vel is accepted ("" pins the stream to its first publisher)
            "cmd_vel_source": "",
        }
        return declare_parameters(self, defaults)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _publisher(self, msg_type: type, topic: str, qos):
        return self.create_publisher(msg_type, topic, qos, event_callbacks=self.qos.publisher(topic))

    def _subscribe(self, msg_type: type, topic: str, callback: Callable, qos) -> None:
        self.create_subscription(msg_type, topic, callback, qos, event_callbacks=self.qos.subscription(topic))

    def _refused_caller(self, request: int, source: str) -> str:
        """Why a state request is refused for its caller ("" if it may ask): requests that move the robot or clear
        an e-stop come only through the stack's teleops (control_sources), so a stray `ros2 service call` or
        another program cannot stand the dog up or undo its e-stop. Stopping is everyone's right. The name is
        the caller's word; SROS2 makes it a guarantee (docs/deployment.md)."""
        allowed = self.control_sources
        if not allowed or request not in MOVING_REQUESTS or source in allowed:
            return ""
        name = ControllerRequest(request).name
        return (f"{name} refused for {shorten(source) or 'an anonymous caller'}: only {', '.join(sorted(allowed))} "
                "may stand the robot up, run it or clear an e-stop (control_sources)")

    def _subscribe_sensor(self, msg_type: type, topic: str, callback: Callable, source: str) -> None:
        """A sensor stream accepted from its one driver only: another publisher's messages are dropped and
        reported (a second source stamping slightly ahead would otherwise replace the real stream)."""
        self._subscribe_filtered(msg_type, topic, callback, source, qos_profile_sensor_data)

    def _subscribe_filtered(self, msg_type: type, topic: str, callback: Callable, source: str, qos) -> None:
        accepted = SourceFilter(self, topic, source)
        self.sensor_sources.append(accepted)
        self._subscribe(msg_type, topic, filtered(accepted, callback), qos)

    # ------------------------------------------------------------------------------------------- callbacks
    def _on_leg_state(self, msg: LegState) -> None:
        now = self._now()
        stamp = self._gate("joint state", self.leg_gate, msg.header.stamp, now)
        if stamp is None:
            return
        try:
            state = joint_state_from_msg(msg)
        except ValueError as exc:  # malformed: keep the old sample, which goes stale -> damping
            self.get_logger().warning(str(exc), throttle_duration_sec=1.0)
            return
        self._joints_wall = time.perf_counter()
        self._joints = JointSample(self.convention.to_model(state.q), self.convention.to_model(state.qd), now, stamp)

    def _on_imu(self, msg: Imu) -> None:
        now = self._now()
        stamp = self._gate("IMU", self.imu_gate, msg.header.stamp, now)
        if stamp is None:
            return
        reading = imu_reading_from_msg(msg)
        self._imu = ImuSample(reading.quaternion, reading.gyro, now, stamp, reading.accelerometer)

    def _on_body_velocity(self, msg: TwistStamped) -> None:
        now = self._now()
        stamp = self._gate("body velocity", self.velocity_gate, msg.header.stamp, now)
        if stamp is not None:
            self._velocity = VelocitySample(body_velocity_from_msg(msg), now, stamp)

    def _gate(self, stream: str, gate: SensorGate, header_stamp, now: float) -> Optional[float]:
        """The message's stamp (s) if it becomes the stream's new sample, else None (invalid, old or repeated)."""
        accepted, note, stamp = gate.offer_header(header_stamp.sec, header_stamp.nanosec, now)
        if note:
            self.get_logger().warning(f"{stream}: {note}", throttle_duration_sec=1.0)
        if accepted and note:  # a restart or a clock jump: the stamps start over, forget the old stream's
            self.loop.monitor.reset()
        return stamp if accepted else None

    def _on_skill_command(self, msg: SkillCommand) -> None:
        requested = velocity_from_twist(msg.vx, msg.vy, msg.yaw_rate)
        velocity = self.velocity_input.teleop(requested, self._now()) if requested is not None else None
        vx, vy, yaw_rate = (msg.vx, msg.vy, msg.yaw_rate) if velocity is None else velocity.as_array()
        self._set_command(int(msg.skill), vx, vy, yaw_rate, msg.source or "unknown")

    def _on_cmd_vel(self, msg: Twist) -> None:
        """A velocity for the skill in effect (never a skill or a state), unless a teleop's stick has the robot."""
        velocity = velocity_from_twist(msg.linear.x, msg.linear.y, msg.angular.z)
        if velocity is None:
            self.get_logger().warning("cmd_vel: refused a velocity that is not finite", throttle_duration_sec=1.0)
            return
        used = self.velocity_input.cmd_vel(velocity, self._now())
        if used is not None:
            self._set_command(int(self.loop.skill.skill), used.vx, used.vy, used.yaw_rate, "cmd_vel")

    def _set_command(self, skill: int, vx: float, vy: float, yaw_rate: float, source: str) -> None:
        state = self.loop.set_skill_command(skill, vx, vy, yaw_rate)
        if state.note and state.note != self.loop.skill_refusal:   # a refusal is logged once, by _log_changes
            self.get_logger().warning(f"{state.note} (from {shorten(source)})", throttle_duration_sec=1.0)

    def _on_state_request(self, request, response):
        source = request.source or "an anonymous caller"
        refusal = self._refused_caller(int(request.request), request.source)
        if refusal:
            self.get_logger().warning(refusal, throttle_duration_sec=1.0)
            response.accepted, response.message = False, refusal
        else:
            response.accepted, response.message = self.loop.request(int(request.request), source=source)
        response.state = int(self.loop.controller.state)
        return response

    def _on_tick(self) -> None:
        self.timing.tick_started(time.perf_counter())
        joints, joints_wall = self._joints, self._joints_wall
        report = self.loop.tick(self._now(), joints, self._imu, self._velocity)
        if joints is not None:
            self.timing.sample_used(joints.stamp if joints.stamp is not None else joints.received)
        stamp = self.get_clock().now().to_msg()
        self.command_pub.publish(motor_command_msg(self._to_sdk(report.command), stamp))
        self.timing.tick_finished(time.perf_counter(), joints_wall, report.plan_wait_s)
        self.status_pub.publish(self._status(report, stamp))
        self._log_deadline_miss(report)
        self._log_changes()

    def _log_changes(self) -> None:
        """Log each change of what the loop works around: a silent command source (the watchdog), a failing
        sampler, a body velocity the velocity loop cannot use (a fault only for models that observe it), a skill
        the model lacks (once per refusal, not per streamed command)."""
        loop = self.loop
        velocity = loop.monitor.velocity_fault if loop.monitor.checks_velocity and not loop.monitor.needs_velocity \
            else None
        now = _Reported(loop.command_timeout, loop.sampler_fault, velocity, loop.stale_reaction, loop.skill_refusal,
                        loop.command_class)
        before, self._reported = self._reported, now
        if now.command_class != before.command_class:
            self._log_change(False, "skill command: " + (now.command_class or "a skill of its own"))
        if now.skill_refusal != before.skill_refusal:
            self._log_change(bool(now.skill_refusal), "skill command: " + (
                now.skill_refusal or "accepted again"))
        if now.stale != before.stale:  # the first tick of a ride-through or stand says why; its end is logged too
            self._log_change(bool(now.stale), f"stale sensors: {loop.stale}" if now.stale else
                             "sensors fresh again" + (" (RUN to resume)" if before.stale == "stand" else ""))
        if now.command_timeout != before.command_timeout:
            self._log_change(bool(now.command_timeout), "command watchdog: " + (
                now.command_timeout or "a fresh skill command: the command is in effect again"))
        if now.sampler_fault != before.sampler_fault:
            self._log_change(bool(now.sampler_fault), f"sampler: {now.sampler_fault or 'a valid plan again'}",
                             error=True)
        if now.body_velocity != before.body_velocity:
            self._log_change(bool(now.body_velocity), "velocity loop: " + (
                f"vBody ignored, {now.body_velocity}" if now.body_velocity else "vBody in use again"))

    def _log_change(self, bad: bool, text: str, error: bool = False) -> None:
        """One call site per severity: rclpy refuses a logging call site whose severity changes."""
        if not bad:
            self.get_logger().info(text)
        elif error:
            self.get_logger().error(text)
        else:
            self.get_logger().warning(text)

    def _log_deadline_miss(self, report: TickReport) -> None:
        """Each deadline miss is logged (throttled), one tick later so that its sampler job has had time to finish,
        with what it takes to place a rare miss: the start-to-start intervals of the missing tick and the one
        before it (a late tick followed by an on-time one leaves the sampler less than a period), and when the
        missing plan's job was submitted, started and finished relative to the take."""
        pending, self._miss_to_log = self._miss_to_log, None
        if pending is not None:
            miss, total, (interval_ms, previous_ms) = pending
            job = describe_job(self.loop.worker.job_times(miss.due), miss.take_s, time.monotonic())
            self.get_logger().warning(
                f"deadline miss at tick {miss.tick} (total {total}): its plan was not ready within the "
                f"{self.loop.inference_wait_s * 1e3:.1f} ms the tick waits for it; the tick started "
                f"{interval_ms:.2f} ms after the one before, which started {previous_ms:.2f} ms after its own "
                f"predecessor (period {self.period * 1e3:.0f} ms); the plan's sampler job: {job}; the tick "
                f"followed the previous plan", throttle_duration_sec=1.0)
        if report.deadline_missed and self.loop.last_miss is not None:
            self._miss_to_log = (self.loop.last_miss, self.loop.deadline_misses, self.timing.intervals_ms)

    # -------------------------------------------------------------------------------------------- outputs
    def _to_sdk(self, cmd: PDCommand) -> SdkMotorCommand:
        c = self.convention
        return SdkMotorCommand(c.to_sdk(cmd.q), c.to_sdk(cmd.dq), np.asarray(cmd.kp), np.asarray(cmd.kd),
                               c.to_sdk(cmd.tau))

    def _status(self, report: TickReport, stamp) -> PolicyStatus:
        msg = PolicyStatus()
        msg.header.stamp = stamp
        msg.state = int(report.state)
        msg.state_name = ControllerState(report.state).name
        msg.active_skill = int(self.loop.skill.skill)
        msg.command = np.asarray(self.loop.skill.command, dtype=np.float32)
        msg.inference_latency_ms = float(report.inference_latency_s * 1000.0)
        msg.tick_jitter_ms = float(self.timing.last_jitter_ms)
        msg.ticks = int(self.loop.ticks)
        msg.deadline_misses = int(self.loop.deadline_misses)
        msg.model = str(self.model_path)
        msg.last_fault = self.loop.last_fault
        return msg

    def _health(self) -> tuple[bytes, str]:
        """Diagnostics level and message: ERROR for a stopped controller, a failing sampler, a QoS mismatch or a
        foreign sensor publisher,
        WARN for stale sensors ridden through or stood on, a reduced command, a body velocity the velocity loop
        ignores while RUNNING, or a refused command for a skill the model lacks."""
        loop, state = self.loop, self.loop.controller.state
        if state in (ControllerState.DAMPING, ControllerState.ESTOP):
            return DiagnosticStatus.ERROR, loop.last_fault or ControllerState(state).name
        for problem in (loop.sampler_fault, self.qos.summary(), *(s.problem for s in self.sensor_sources)):
            if problem:
                return DiagnosticStatus.ERROR, problem
        ignored = self._reported.body_velocity if state == ControllerState.RUNNING else None  # only RUNNING uses it
        for warning in (loop.stale, loop.command_timeout, ignored, loop.skill_refusal):
            if warning:
                return DiagnosticStatus.WARN, warning
        return DiagnosticStatus.OK, loop.last_fault or ControllerState(state).name

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name="diffuseloco_policy", hardware_id=self.config.robot.name)
        state = self.loop.controller.state
        status.level, status.message = self._health()
        status.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ("state", ControllerState(state).name), ("ticks", self.loop.ticks),
            ("deadline_misses", self.loop.deadline_misses), ("plans_waited_for", self.loop.plans_waited_for),
            ("inference_latency_ms", f"{self.loop.last_latency_s * 1000:.2f}"), ("model", self.model_path),
            ("execution_providers", self.execution_providers),
            *_components("model_command", self.loop.model_command),
            *_components("command_correction", self.loop.feedback.correction),
            ("cmd_vel", self.velocity_input.describe(self._now())),
            ("cmd_vel_messages", self.velocity_input.received), ("cmd_vel_ignored", self.velocity_input.ignored),
            ("command_watchdog", self.loop.command_timeout or "ok"), ("stale_sensors", self.loop.stale or "fresh"),
            ("skill_command", self.loop.skill_refusal or "ok"),
            ("command_class", self.loop.command_class or "none"),
            ("foreign_publishers", "; ".join(s.problem for s in self.sensor_sources if s.problem) or "none"),
            ("sampler_failures", self.loop.sampler_failures), ("sampler_fault", self.loop.sampler_fault or "none"),
            ("body_velocity", self._reported.body_velocity or "ok"), ("qos", self.qos.summary() or "ok"),
            *((k, f"{v:.3f}") for k, v in self.timing.summary().items()),
            *((f"{name}_{k}", str(v)) for name, gate in (("joint_state", self.leg_gate), ("imu", self.imu_gate),
                                                              ("body_velocity", self.velocity_gate))
              for k, v in vars(gate.counters).items()))]
        self._warn_about_sample_spacing()
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

    def _warn_about_sample_spacing(self) -> None:
        spacing = self.timing.sample_spacing_ms
        spread = spacing.std()
        if len(spacing) >= 250 and spread > SAMPLE_SPACING_WARN_STD_MS:
            self.get_logger().warning(
                f"the joint samples of consecutive ticks are {self.period * 1000:.0f} +- {spread:.1f} ms apart on the "
                f"robot's clock (std over the last {len(spacing)} ticks); the policy was trained "
                f"on exactly {self.period * 1000:.0f} ms, and at 6 ms it falls in simulation. Run the bridge and this "
                f"node under SCHED_FIFO (realtime_priority) on a less loaded machine", throttle_duration_sec=10.0)

    def destroy_node(self) -> None:
        loop = getattr(self, "loop", None)  # absent when the constructor refused the model
        if loop is not None:
            loop.close()
        super().destroy_node()


@dataclass(frozen=True)
class _Reported:
    """What the node last logged about the loop's workarounds ("" for none)."""

    command_timeout: str = ""
    sampler_fault: str = ""
    body_velocity: Optional[str] = None
    stale: str = ""           # "", "ride" or "stand"
    skill_refusal: str = ""   # a command for a skill the model lacks, refused
    command_class: str = ""   # the command class a command ran (a class model)


# Diagnostics keys whose values are words; every other value is one number, so that plotting tools
# (PlotJuggler, Foxglove) read each as a series.
TEXT_DIAGNOSTICS = frozenset({"state", "model", "command_watchdog", "stale_sensors", "foreign_publishers",
                              "sampler_fault", "body_velocity", "qos", "cmd_vel", "skill_command",
                              "execution_providers", "command_class"})


def _components(name: str, values: np.ndarray) -> list[tuple[str, str]]:
    """A (vx, vy, yaw rate) vector as three diagnostics values, one number per key."""
    return [(f"{name}_{axis}", f"{float(v):.3f}") for axis, v in zip(("vx", "vy", "yaw_rate"), values)]


def _expert_stand_in(config: StackConfig):
    """The expert controllers behind the sampler interface (simulation only). They belong to the learning side,
    which the robot image does not install, so they are imported only when asked for."""
    try:
        from diffuseloco_learning.experts.stand_in import ExpertStandIn
    except ImportError as exc:
        raise FileNotFoundError(f"model:=expert needs the diffuseloco_learning package ({exc}); it is not part "
                                "of the robot install") from exc
    return ExpertStandIn(config)


def main(args: Optional[list[str]] = None) -> None:
    run_node(PolicyNode, args, refuse=(ModelMismatchError, ConfigError, FileNotFoundError, OSError, ValueError))


if __name__ == "__main__":
    main()
