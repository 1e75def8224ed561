"""Expert-in-the-loop episodes: a random skill/command schedule driving the simulator at 50 Hz.

Shared by the dataset generator and the evaluator so both see the same closed loop: at tick t the expert reads
the robot's measured state (plus the true body velocity it is allowed) and returns its joint targets for t and
its plan for t+1 (and a feed-forward torque, `expert.torque`, sent as tau_des and recorded as Tick.torque_target);
pd_targets.ActionDecoder turns the targets into q_des and qd_des as it will the policy's chunk; the deployed
SafetyFilter (per-tick step limit, on by default, joint-limit margin, torque bounds) clamps the command;
the simulator runs one 0.02 s control period of the 500 Hz joint law with it. The dataset's action is the q_des
the filter let through, as an action. One `Tick` record holds exactly what the dataset stores.

With `ActionNoise` the executed targets are the expert's plus a slowly varying disturbance while the recorded
action stays the expert's own (DART, Laskey et al. 2017): the data then shows what to do from states a slightly
wrong policy drives the robot into, and the history's last actions (the executed ones) are no longer exact
copies of the labels. What it did for the clone: docs/research/policy_eval/tracking.md.

With a `LearnerInTheLoop` (experts/dagger.py) a trained policy drives stretches of the episode from its own
delayed window while the expert keeps computing, and the recorded action is still the expert's (DAgger).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from diffuseloco_policy.config import StackConfig
from diffuseloco_policy.observation import ObservationBuilder, RobotState, observes_gait_phase
from diffuseloco_policy.pd_targets import ActionDecoder
from diffuseloco_policy.safety import PDCommand, SafetyFilter
from diffuseloco_sim import CyberDogSim, SimConfig
from diffuseloco_sim.tick_clock import TickClock
from .controller import ExpertController, ExpertParams
from .dagger import LearnerInTheLoop, learner_rng


@dataclass(frozen=True)
class Segment:
    """A stretch of an episode with one skill and one command."""

    skill: int
    command: tuple[float, float, float]
    ticks: int


@dataclass(frozen=True)
class Tick:
    """One control tick: what the robot measured, what it was asked, what the expert sent."""

    state: RobotState
    observation: np.ndarray
    goal: np.ndarray
    action: np.ndarray          # ActionDecoder.action(q_des): the expert's filtered position target as an action
    target: np.ndarray          # q_des sent (model convention, after the SafetyFilter; with ActionNoise, disturbed)
    velocity_target: np.ndarray  # qd_des sent (model convention, after the SafetyFilter)
    skill: int
    command: np.ndarray
    filter_reasons: tuple = ()
    torque_target: Optional[np.ndarray] = None   # tau_des sent (model convention, after the SafetyFilter)


@dataclass(frozen=True)
class ActionNoise:
    """Disturbance added to the executed targets: an Ornstein-Uhlenbeck process per joint, in action units.

    Correlated rather than white because a clone's errors are: it drifts in stride and cadence over several
    ticks (docs/research/policy_eval/tracking.md), not independently from one tick to the next.
    """

    std: float = 0.0              # stationary standard deviation (action units; x action.scale rad)
    correlation_s: float = 0.1    # time constant

    def __post_init__(self) -> None:
        if self.std < 0.0 or self.correlation_s <= 0.0:
            raise ValueError(f"ActionNoise needs std >= 0 and correlation_s > 0, got {self}")

    @property
    def enabled(self) -> bool:
        return self.std > 0.0


class OrnsteinUhlenbeck:
    """x[k+1] = a x[k] + sqrt(1 - a^2) std w[k]: stationary with the given std, starting from a stationary draw."""

    def __init__(self, noise: ActionNoise, size: int, dt: float, rng: np.random.Generator) -> None:
        self.noise, self.size, self.rng = noise, size, rng
        self.decay = float(np.exp(-dt / noise.correlation_s))
        self.reset()

    def reset(self) -> None:
        self.value = self.noise.std * self.rng.standard_normal(self.size)

    def sample(self) -> np.ndarray:
        fresh = np.sqrt(1.0 - self.decay**2) * self.noise.std * self.rng.standard_normal(self.size)
        self.value = self.decay * self.value + fresh
        return self.value.copy()


def _noise_rng(seed: int) -> np.random.Generator:
    """The disturbance's own stream, apart from the simulator's, so a noisy episode keeps the same physics draw."""
    return np.random.default_rng([seed, 0xDA27])


def sample_command(config: StackConfig, skill: int, rng: np.random.Generator,
                   top_speed_share: float = 0.0) -> tuple[float, float, float]:
    """A command inside the skill's range: uniform, with some pure-axis and zero commands mixed in.

    top_speed_share: the fraction of commands whose forward speed is drawn from the outer quarter of the range
    instead (see top_speed). Uniform draws leave the ends of the range, where the experts and the clones fall
    first, with a few percent of the data (docs/research/policy_eval/tracking.md, "The envelope"). At 0 the draws are
    exactly the uniform ones, so datasets generated before the option are reproduced.

    With command classes the range is the class's (config.class_command: where every gait of the class was
    demonstrated), so a class model's command never tells it which gait the expert walked."""
    s = config.command(skill)
    cmd = np.array([rng.uniform(*s.vx), rng.uniform(*s.vy), rng.uniform(*s.yaw_rate)])
    if top_speed_share > 0.0 and rng.random() < top_speed_share:
        cmd[0] = top_speed(s.vx, rng)
    else:
        kind = rng.random()
        if kind < 0.1:
            cmd[:] = 0.0
        elif kind < 0.4:
            keep = rng.integers(3)
            cmd[np.arange(3) != keep] = 0.0
    return tuple(float(c) for c in s.clamp_command(*cmd))


def top_speed(vx_range: tuple[float, float], rng: np.random.Generator, quarter: float = 0.25) -> float:
    """A forward speed from the outer quarter of the range at one of its ends, the end picked in proportion to its
    magnitude (trot and bound: forward; pace's symmetric range: either way). 0 for a range with no speed."""
    low, high = vx_range
    if low == high == 0.0:
        return 0.0
    width = quarter * (high - low)
    if rng.random() < abs(high) / (abs(low) + abs(high)):
        return float(rng.uniform(high - width, high))
    return float(rng.uniform(low, low + width))


def random_schedule(config: StackConfig, rng: np.random.Generator, total_ticks: int,
                    skills: Optional[Sequence[int]] = None, segment_s: tuple[float, float] = (2.0, 6.0),
                    lead_in_s: float = 0.5, top_speed_share: float = 0.0) -> list[Segment]:
    """Segments of random skill and command filling an episode; starts standing for lead_in_s.

    With command classes a segment of the class the previous one had keeps its gait (only its command changes):
    the data then never switches gait under an unchanged class goal, so a class model learns to pick a gait when
    its class is commanded and to keep it, not to change gait unbidden. Without classes the draws are the same as
    before the classes existed."""
    skills = list(range(len(config.skills))) if skills is None else list(skills)
    hz = config.rates.control_hz
    stand = config.skill("stand").id
    segments = [Segment(stand, (0.0, 0.0, 0.0), int(lead_in_s * hz))]
    used = segments[0].ticks
    while used < total_ticks:
        skill = _keep_gait_in_class(config, int(rng.choice(skills)), segments[-1].skill)
        ticks = min(int(rng.uniform(*segment_s) * hz), total_ticks - used)
        segments.append(Segment(skill, sample_command(config, skill, rng, top_speed_share), ticks))
        used += ticks
    return segments


def _keep_gait_in_class(config: StackConfig, drawn: int, previous: int) -> int:
    """The previous segment's gait where the drawn skill is in the same command class, else the drawn skill."""
    same_class = config.command_class(drawn) is not None and config.command(drawn) == config.command(previous)
    return previous if same_class else drawn


def without_step_limit(config: StackConfig) -> StackConfig:
    """The config with the per-tick q_des step limit opened up (for diagnostics only: the robot has it)."""
    wide = (180.0, 180.0, 180.0)
    return dataclasses.replace(config, robot=dataclasses.replace(config.robot, max_target_step_deg=wide),
                               safety=dataclasses.replace(config.safety, max_target_step_deg=wide))


FEEDFORWARDS = ("plan", "next_action")


class ExpertRollout:
    """Simulator + expert + decoder + safety filter + observation builder, stepped one 50 Hz tick at a time."""

    def __init__(self, config: StackConfig, sim_config: Optional[SimConfig] = None, seed: int = 0,
                 expert_params: Optional[ExpertParams] = None, rate_limit: bool = True,
                 delayed: bool = False, action_noise: ActionNoise = ActionNoise(),
                 learner: Optional[LearnerInTheLoop] = None, feedforward: str = "plan",
                 tick_jitter_steps: float = 0.0) -> None:
        """delayed: the expert acts like the deployed policy, on s[t-1]: the targets applied at tick t are the ones
        it computed at t-1 (as experts/stand_in.py does in the graph). Data recorded so is a function of the
        delayed window a policy sees; with delayed=False the action of t reacts to s[t], which a delayed-input
        model can only guess (see README, Training and evaluation). action_noise: disturb the executed targets and
        record the expert's (see the module doc). learner: let a trained policy drive in turns, the expert labels.
        feedforward: where qd_des comes from. "plan" (the experts' own): the velocity of the plan the targets came
        from. "next_action" (diagnostic, needs delayed): the step to the target the expert applies next tick,
        which is what a policy that predicts actions alone executes (ActionDecoder.chunk_targets); how the experts
        walk with it: docs/research/policy_eval/tracking.md. tick_jitter_steps: vary the physics steps between ticks
        (sim/tick_clock.py), the timing of a live graph without real-time scheduling."""
        if feedforward not in FEEDFORWARDS:
            raise ValueError(f"feedforward {feedforward!r}: expected one of {FEEDFORWARDS}")
        if feedforward == "next_action" and not delayed:
            raise ValueError("feedforward 'next_action' needs delayed=True: only then is the next target known")
        self.feedforward = feedforward
        self.config = config
        self.delayed = delayed
        self.sim = CyberDogSim(config, sim_config, seed=seed)
        self.tick_jitter_steps = tick_jitter_steps
        self.clock = TickClock(self.sim.steps_per_tick, tick_jitter_steps, seed)
        self.expert = ExpertController(config, expert_params)
        self.builder = ObservationBuilder(config)
        self.observes_gait_phase = observes_gait_phase(config)
        self.decoder = ActionDecoder(config)
        self.rate_limit = rate_limit
        self.safety = SafetyFilter(config if rate_limit else without_step_limit(config))
        self.kp = np.full(config.robot.num_joints, config.robot.kp)
        self.kd = np.full(config.robot.num_joints, config.robot.kd)
        self.noise = OrnsteinUhlenbeck(action_noise, config.robot.num_joints, 1.0 / config.rates.control_hz,
                                       _noise_rng(seed)) if action_noise.enabled else None
        self.learner = learner
        self._reset_command()

    def _reset_command(self) -> None:
        self._pending: Optional[tuple[np.ndarray, np.ndarray]] = None  # delayed: the targets made at t-1
        self.last_action = np.zeros(self.config.robot.num_joints)
        self.last_q_des = np.asarray(self.config.robot.default_pose, dtype=np.float64).copy()  # the sim's hold
        if self.noise is not None:
            self.noise.reset()
        if self.learner is not None:
            self.learner.reset()

    def reset(self, seed: Optional[int] = None) -> None:
        self.sim.reset(seed=seed)
        if seed is not None:
            self.clock = TickClock(self.sim.steps_per_tick, self.tick_jitter_steps, seed)
        if self.noise is not None and seed is not None:
            self.noise.rng = _noise_rng(seed)
        if self.learner is not None and seed is not None:
            self.learner.rng = learner_rng(seed)
        self.expert.reset()
        self._reset_command()

    def tick(self, skill: int, command: Sequence[float]) -> Tick:
        """Act on the state at t, filter, record the observation (state at t, the action executed at t-1 and, for
        configs with applied_action, at t), advance the simulator one control period."""
        state = self.sim.robot_state()
        command = np.asarray(command, dtype=np.float64)
        velocity = self.sim.base_velocity_body()[:2]
        planned = (*self.expert.act(state, velocity, command, skill), np.array(self.expert.torque))
        applied = planned
        if self.delayed:  # apply what was planned from s[t-1]; on the first tick only s[t] exists
            applied, self._pending = self._pending or planned, planned
        target, target_next, torque = applied
        if self.feedforward == "next_action":
            target_next = planned[0]  # applied at t+1
        q_des, qd_des = self.decoder.targets(self.decoder.action(target), self.decoder.action(target_next))
        safe, reasons = self._filtered(q_des, qd_des, torque, state)
        action = self.decoder.action(safe.q)
        if self.noise is not None:
            safe, reasons = self._filtered(self.decoder.position(action + self.noise.sample()), qd_des, torque,
                                           state)
        if self.learner is not None:
            safe, reasons = self._learner_turn(safe, reasons, state)
        executed = self.decoder.action(safe.q)   # the next observation's last action
        observation = self.builder.observation(state, self.last_action, executed)
        gait_phase = self.expert.gait.phase_features() if self.observes_gait_phase else None  # as this tick planned
        goal = self.builder.goal(command, skill, gait_phase)
        if self.learner is not None:
            self.learner.record(observation, goal)
        record = Tick(state, observation, goal, action, np.array(safe.q),
                      np.array(safe.dq), skill, command, tuple(reasons), np.array(safe.tau))
        self.sim.command_pd(safe.q, safe.dq, safe.kp, safe.kd, safe.tau)
        self.sim.step(self.clock.next_period())
        self.last_action = executed
        self.last_q_des = np.array(safe.q)
        return record

    def _learner_turn(self, expert: PDCommand, reasons: list, state: RobotState) -> tuple[PDCommand, list]:
        """The learner's receding-horizon targets through the same safety filter when it drives this tick,
        else the expert's command unchanged."""
        chunk = self.learner.propose()
        if not self.learner.drives():
            return expert, reasons
        targets = self.decoder.chunk_targets(chunk, self.learner.execute_index)
        return self._filtered(targets.q, targets.dq, targets.tau, state)

    def _filtered(self, q_des: np.ndarray, qd_des: np.ndarray, tau_des: np.ndarray,
                  state: RobotState) -> tuple[PDCommand, list]:
        return self.safety.filter(PDCommand(q=q_des, dq=qd_des, kp=self.kp, kd=self.kd, tau=np.asarray(tau_des)),
                                  previous_q_des=self.last_q_des, measured_q=state.joint_position)

    def run(self, segments: Sequence[Segment]) -> Iterator[Tick]:
        """Ticks along a schedule; stops early (after yielding) when the robot falls."""
        for segment in segments:
            for _ in range(segment.ticks):
                yield self.tick(segment.skill, segment.command)
                if self.sim.fallen():
                    return
