"""Which gait a policy walks, read from its foot contacts: the mode metrics of the evaluation.

Why: a class model (config.CommandClassConfig) is asked for 'walk' and must pick trot or pace itself and keep it;
DiffuseLoco's claim is that a diffusion policy does, where a unimodal one blends the gaits. Whether it did can only
be read from what the robot did: the simulator's foot contacts, never the policy's inputs.

A stretch of contacts is cut into windows of WINDOW_S (two strides of the slowest gait, bound's 0.35 s, nearly)
and each window gets a mode, from the patterns the evaluation already reports (experts.evaluate):
- stand: all four feet down in at least STAND_SHARE of its ticks;
- hop: the four feet together (all down or all up, in_step_share) in at least IN_STEP of its ticks, with all four
  in the air in at least FLIGHT of them (a stand has its feet together too; a hop at speed lands its front feet a
  few ticks before the rear ones, 0.7 of its ticks together; bound and pace never have all four feet up);
- trot, pace, bound: among its ticks with exactly two feet down (at least TWO_FEET of the window), the diagonal,
  lateral or front/rear pair (contact_pattern) in at least PAIRED of them;
- unclear: anything else (a gait change under way, a stumble).
On the experts (SimConfig.randomized(), pushes included, 10 random commands per skill, 2.5 s each after a 1.5 s
settle) every window of every skill was classified as that skill (tests/test_evaluation_modes.py checks a short
version); a gait's own pair type held 0.8 to 1.0 of a window's two-feet ticks.

Per stretch (a scored segment, the tracking metrics' ticks): the windows per mode, the dominant mode (the one
with most windows; unclear never dominates), its purity (its share of all windows, unclear ones included: time in
no clear gait is not time in the chosen one) and the flips: changes between settled modes, a mode being settled
where it holds for MIN_RUN windows in a row (unclear windows skipped), so one odd window is no flip.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Optional

import numpy as np

from ..experts.evaluate import contact_pattern, in_step_share

WINDOW_S = 0.5
STAND_SHARE = 0.9
IN_STEP = 0.6
FLIGHT = 0.1
TWO_FEET = 0.2
PAIRED = 0.7
MIN_RUN = 2
UNCLEAR = "unclear"
MODES = ("stand", "trot", "pace", "bound", "hop")
PAIR_MODES = {"diagonal": "trot", "lateral": "pace", "front_rear": "bound"}   # contact_pattern's pair types


def window_ticks(control_hz: float) -> int:
    return max(1, int(round(WINDOW_S * control_hz)))


def classify_window(contacts: np.ndarray) -> str:
    """The mode of one window of contacts (FR, FL, RR, RL columns; see the module doc)."""
    contacts = np.asarray(contacts, dtype=bool).reshape(-1, 4)
    if len(contacts) == 0:
        return UNCLEAR
    down = contacts.sum(axis=1)
    if np.mean(down == 4) >= STAND_SHARE:
        return "stand"
    if in_step_share(contacts) >= IN_STEP and np.mean(down == 0) >= FLIGHT:
        return "hop"
    if np.mean(down == 2) >= TWO_FEET:
        pattern, share = max(contact_pattern(contacts).items(), key=lambda item: item[1])
        if share >= PAIRED:
            return PAIR_MODES[pattern]
    return UNCLEAR


def classify(contacts: np.ndarray, control_hz: float) -> list[str]:
    """The mode of every whole window of a contact sequence (a last partial window is left out)."""
    contacts = np.asarray(contacts, dtype=bool).reshape(-1, 4)
    n = window_ticks(control_hz)
    return [classify_window(contacts[i:i + n]) for i in range(0, len(contacts) - n + 1, n)]


def flips(labels: Iterable[str], min_run: int = MIN_RUN) -> int:
    """Changes between settled modes (held for min_run windows in a row, unclear windows skipped)."""
    runs: list[list[Any]] = []
    for label in (x for x in labels if x != UNCLEAR):
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    settled = [mode for mode, length in runs if length >= min_run]
    return sum(1 for a, b in zip(settled, settled[1:]) if a != b)


def stretch_modes(contacts: np.ndarray, control_hz: float) -> dict[str, Any]:
    """One stretch's windows per mode and flips (what a segment stores; pool stretches with pooled_modes)."""
    labels = classify(contacts, control_hz)
    return {"windows": len(labels), "counts": dict(Counter(labels)), "flips": flips(labels)}


def pooled_modes(stretches: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Several stretches as one: windows and flips summed, the dominant mode and its purity over all of them."""
    counts: Counter = Counter()
    windows = flips_total = 0
    for stretch in stretches:
        counts.update(stretch["counts"])
        windows += stretch["windows"]
        flips_total += stretch["flips"]
    dominant = dominant_mode(counts)
    return {"windows": windows, "counts": dict(counts), "flips": flips_total, "dominant": dominant,
            "purity": counts[dominant] / windows if dominant is not None and windows else None}


def dominant_mode(counts: dict[str, int]) -> Optional[str]:
    """The mode with the most windows (ties: the first in MODES order), None when every window is unclear."""
    clear = [(counts.get(mode, 0), -i, mode) for i, mode in enumerate(MODES) if counts.get(mode, 0) > 0]
    return max(clear)[2] if clear else None


def episode_modes(segments: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per command (a class, or a skill of its own) of one episode: its scored segments' modes pooled."""
    by_command: dict[str, list[dict[str, Any]]] = {}
    for segment in segments:
        if "modes" in segment:
            by_command.setdefault(segment.get("command_class", segment["skill"]), []).append(segment["modes"])
    return {command: pooled_modes(stretches) for command, stretches in by_command.items()}


def mode_summary(episodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Across episodes (seeds), per command: the share of episodes whose dominant mode is each mode (the gait it
    chose), the share of windows in each mode (unclear included), the mean and lowest purity, and the flips."""
    out: dict[str, dict[str, Any]] = {}
    commands = list(dict.fromkeys(c for e in episodes for c in e.get("modes", {})))
    for command in commands:
        per_episode = [e["modes"][command] for e in episodes if command in e.get("modes", {})]
        pooled = pooled_modes(per_episode)
        chosen = Counter(m["dominant"] or UNCLEAR for m in per_episode)
        purities = [m["purity"] for m in per_episode if m["purity"] is not None]
        windows = pooled["windows"]
        out[command] = {"episodes": len(per_episode),
                        "chosen_share": {mode: n / len(per_episode) for mode, n in _ordered(chosen)},
                        "time_share": {mode: n / windows for mode, n in _ordered(Counter(pooled["counts"]))}
                        if windows else {},
                        "purity_mean": float(np.mean(purities)) if purities else None,
                        "purity_min": float(np.min(purities)) if purities else None,
                        "flips": pooled["flips"],
                        "episodes_with_flips": sum(1 for m in per_episode if m["flips"] > 0)}
    return out


def _ordered(counts: Counter) -> list[tuple[str, int]]:
    order = {mode: i for i, mode in enumerate((*MODES, UNCLEAR))}
    return sorted(counts.items(), key=lambda item: order.get(item[0], len(order)))
