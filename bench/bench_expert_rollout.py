"""Expert rollout speed per core: simulated seconds per CPU second of this process (not a test).

What data.generate and the evaluation spend their time on: one randomized, pushed expert episode after another
(data.generate's run_episode, 50 Hz ticks, 10 physics steps each), in one process and one thread. CPU time
(time.process_time) rather than wall time, because the number is per core and a machine busy with other jobs
stretches wall time but not the CPU time this process gets. --profile prints where that time goes.

Usage: .venv/bin/python bench/bench_expert_rollout.py [--episodes 3] [--seconds 20] [--profile]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):   # one core: before numpy loads
    os.environ[_var] = "1"

import argparse   # noqa: E402
import cProfile   # noqa: E402
import pstats     # noqa: E402
import time       # noqa: E402

from diffuseloco_policy.config import load_config                              # noqa: E402
from diffuseloco_learning.data.generate import GenerateSettings, run_episode    # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each episode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="print the 25 functions with the most own time")
    args = parser.parse_args()
    config = load_config()
    settings = GenerateSettings(seed=args.seed, episode_s=args.seconds)
    run_episode(config, GenerateSettings(seed=args.seed, episode_s=1.0), 0)   # imports and caches warm
    profiler = cProfile.Profile() if args.profile else None
    simulated = cpu = 0.0
    for index in range(args.episodes):
        start = time.process_time()
        if profiler:
            profiler.enable()
        episode = run_episode(config, settings, index)
        if profiler:
            profiler.disable()
        spent = time.process_time() - start
        seconds = episode.ticks * config.rates.control_dt
        simulated, cpu = simulated + seconds, cpu + spent
        print(f"episode {index}: {seconds:.1f} sim s in {spent:.2f} CPU s = {seconds / spent:.1f}x real time"
              + (" (fell)" if episode.fell else ""))
    print(f"expert rollout: {simulated / cpu:.1f}x real time per core ({simulated:.0f} sim s, {cpu:.2f} CPU s"
          f"{', profiled' if profiler else ''})")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
