"""An evaluation's episodes run in plan order: in this process, or spread over worker processes.

Every episode starts from a reset simulator and a reset policy and draws everything random about it (physics,
sensor noise, pushes, tick jitter, the sampler's noise) from its own seed (seeding.py), so where it runs changes
nothing it measures: with any number of workers the results come back in the plan's order and equal the serial
run's; only wall-clock fields (the sampler's latency, the run's wall time) differ. The workers are spawned
processes (nothing inherited from the parent but what they are handed); each builds one simulator and opens each
policy once, with the intra-op threads a serial run gives it (WORKER_THREADS).
"""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from diffuseloco_policy.config import StackConfig
from diffuseloco_sim import CyberDogSim, SimConfig
from .episode import LoopOptions, Trace, run_episode
from .policies import EvalPolicy, make_policy
from .scenarios import Scenario, ScenarioMatrix

# A model's intra-op threads in a worker process unless its spec names threads=N: None, the runtime's default,
# as in a serial run. Two threads round some sums differently from one (1e-6 per action at width 256), which a
# closed loop can grow: results must not depend on --workers, even if wide models then use 2 threads a worker.
WORKER_THREADS: Optional[int] = None

Outcome = tuple[dict[str, Any], Optional[Trace]]


@dataclass(frozen=True)
class Setting:
    """What every episode of one evaluation shares: the robot config the policies are opened against and the
    simulator is built for, the physics the episodes are drawn from, the matrix and the base seed."""

    config: StackConfig
    physics: SimConfig
    matrix: ScenarioMatrix
    base_seed: int


@dataclass(frozen=True)
class EpisodeJob:
    """One episode of the plan: which policy (its spec) runs, how, on which scenario and physics draw."""

    spec: str
    label: str
    loop_config: StackConfig
    options: LoopOptions
    scenario: Scenario
    index: int
    seed: int
    keep_trace: bool = False   # the per-tick trace comes back only for an episode that is plotted

    @property
    def name(self) -> str:
        return f"{self.label} | {self.scenario.name} #{self.index} seed {self.seed}"


class EpisodeFailed(RuntimeError):
    """An episode raised. The message names the policy, the scenario, the episode and its seed, so the failure
    can be rerun alone; the original error is chained (from a worker: its traceback as text)."""


class EpisodeRunner:
    """Runs jobs in this process on one simulator, each policy opened once (or handed in already open)."""

    def __init__(self, setting: Setting, policies: Optional[dict[str, EvalPolicy]] = None,
                 threads: Optional[int] = None) -> None:
        self.setting, self.threads = setting, threads
        self.policies: dict[str, EvalPolicy] = dict(policies or {})
        self._sim: Optional[CyberDogSim] = None

    def policy(self, spec: str) -> EvalPolicy:
        if spec not in self.policies:
            self.policies[spec] = make_policy(spec, self.setting.config, seed=self.setting.base_seed,
                                              threads=self.threads)
        return self.policies[spec]

    def sim(self) -> CyberDogSim:
        if self._sim is None:
            setting = self.setting
            self._sim = CyberDogSim(setting.config, setting.physics, seed=setting.base_seed)
        return self._sim

    def __call__(self, job: EpisodeJob) -> Outcome:
        try:
            result, trace = run_episode(job.loop_config, self.sim(), self.policy(job.spec), job.scenario,
                                        self.setting.matrix, job.seed, job.options)
        except Exception as error:
            raise EpisodeFailed(f"episode {job.name} failed: {type(error).__name__}: {error}") from error
        return result, trace if job.keep_trace else None


_worker_runner: Optional[EpisodeRunner] = None


def _start_worker(setting: Setting) -> None:
    """A worker ignores Ctrl-C: the parent gets it and stops the pool, instead of every worker printing a
    traceback and the pool replacing the workers that died."""
    global _worker_runner
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_runner = EpisodeRunner(setting, threads=WORKER_THREADS)


def _run_in_worker(job: EpisodeJob) -> Outcome:
    assert _worker_runner is not None, "the pool's initializer sets up the runner"
    return _worker_runner(job)


def run_episodes(jobs: list[EpisodeJob], setting: Setting, workers: int = 1,
                 policies: Optional[dict[str, EvalPolicy]] = None) -> Iterator[Outcome]:
    """(result, trace or None) of every job, in the jobs' order. workers 1: in this process, with `policies`
    (spec -> an open policy; others are opened here). More: in a spawned pool of at most one worker per job. A
    failed episode raises EpisodeFailed when its turn comes; that, Ctrl-C, or the caller stopping early ends the
    pool at once (its workers are terminated)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        yield from map(EpisodeRunner(setting, policies), jobs)
        return
    if not jobs:
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(jobs)), initializer=_start_worker, initargs=(setting,)) as pool:
        yield from pool.imap(_run_in_worker, jobs, chunksize=1)
