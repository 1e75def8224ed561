"""Aggregation of episode results, the markdown tables and the plots.

Every summary is computed from the episodes themselves (counts summed, errors averaged over segments), pooled and
per skill, so merged runs and older report files aggregate the same way. Falls come with an exact one-sided 95 %
upper bound on the fall rate (stats.py). Per skill: the episodes that reached one of its segments, the falls while
it was in effect, its tracking and gait over its scored segments, and the switches into it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from diffuseloco_policy.gains import describe_scales
from . import seeding
from .episode import Trace, pattern_share
from .modes import mode_summary
from .stats import percent, upper_bound

PATTERNS = ("diagonal", "lateral", "front_rear")
AXES = ("vx", "vy", "yaw_rate")
LEAD_IN = "lead_in"   # falls in the stand lead-in before an episode's first scored segment


def _mean(values: Iterable[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _tracking(segments: list[dict]) -> dict[str, Optional[float]]:
    scored = [s for s in segments if "abs_error" in s]
    out = {}
    for i, axis in enumerate(AXES):
        out[f"error_{axis}"] = _mean(s["abs_error"][i] for s in scored)
        out[f"mean_error_{axis}"] = _mean(s["mean_error"][i] for s in scored)
    out["scored_segments"] = len(scored)
    return out


def _pooled_gait(segments: list[dict]) -> dict[str, Any]:
    """contact_pattern shares pooled over segments, weighted by their two-feet-down ticks."""
    gaits = [s["gait"] for s in segments if "gait" in s]
    ticks = sum(g["ticks"] for g in gaits)
    two = sum(g["two_feet_ticks"] for g in gaits)
    out = {"ticks": ticks, "two_feet_ticks": two,
           "four_feet_share": sum(g["four_feet_share"] * g["ticks"] for g in gaits) / ticks if ticks else 0.0,
           "flight_ticks": sum(g.get("flight_ticks", 0) for g in gaits),
           "in_step": sum(g.get("in_step", 0.0) * g["ticks"] for g in gaits) / ticks if ticks else 0.0}
    for p in PATTERNS:
        out[p] = sum(g[p] * g["two_feet_ticks"] for g in gaits) / two if two else 0.0
    return out


def _latency(episodes: list[dict]) -> dict[str, Any]:
    stats = [e["latency"] for e in episodes if e["latency"].get("calls")]
    calls = sum(s["calls"] for s in stats)
    if not calls:
        return {"calls": 0}
    return {"calls": calls, "mean_ms": sum(s["mean_ms"] * s["calls"] for s in stats) / calls,
            "p99_ms": max(s["p99_ms"] for s in stats), "max_ms": max(s["max_ms"] for s in stats),
            "over_budget": sum(s["over_budget"] * s["calls"] for s in stats) / calls}


def summarize(episodes: list[dict]) -> dict[str, Any]:
    """One block of metrics over a set of episodes."""
    transitions = [t for e in episodes for t in e["transitions"]]
    segments = [s for e in episodes for s in e["segments"]]
    falls = sum(bool(e["fell"]) for e in episodes)
    return {"episodes": len(episodes), "falls": falls,
            "fall_rate": _mean(float(e["fell"]) for e in episodes),
            "fall_upper95": upper_bound(falls, len(episodes)),
            "survival_s": _mean(e["survival_s"] for e in episodes),
            **_tracking(segments),
            "transitions": len(transitions),
            "transition_success": _mean(float(t["success"]) for t in transitions) if transitions else None,
            "gait": _pooled_gait(segments),
            "latency": _latency(episodes),
            "deadline_misses": sum(e["deadline_misses"] for e in episodes),
            "sampler_errors": sum(e["sampler_errors"] for e in episodes)}


def fall_skill(episode: dict) -> Optional[str]:
    """The skill in effect when the episode fell (LEAD_IN before its first scored segment); None if it did not."""
    if not episode["fell"]:
        return None
    at = episode["fall_time_s"]
    current = LEAD_IN
    for segment in episode["segments"]:
        if segment["start_s"] < at:
            current = segment["skill"]
    return current


def _reached(episode: dict, segment: dict) -> bool:
    return not episode["fell"] or episode["fall_time_s"] > segment["start_s"]


def skill_summaries(episodes: list[dict], gaits: dict[str, str], min_two_feet: float) -> dict[str, Any]:
    """Per skill, in order of appearance: episodes that reached it, falls in it (with the 95 % bound), tracking
    and gait over its scored segments, and the switches into it. Works for any skill names the episodes hold."""
    reached: dict[str, int] = {}
    falls: dict[str, int] = {}
    scored: dict[str, list[dict]] = {}
    into: dict[str, list[dict]] = {}
    for e in episodes:
        for name in dict.fromkeys(s["skill"] for s in e["segments"] if _reached(e, s)):
            reached[name] = reached.get(name, 0) + 1
        for s in e["segments"]:
            if "gait" in s:  # segments with scored ticks only
                scored.setdefault(s["skill"], []).append(s)
        for t in e["transitions"]:
            into.setdefault(t["to"], []).append(t)
        if (name := fall_skill(e)) is not None:
            falls[name] = falls.get(name, 0) + 1
    if falls.get(LEAD_IN):
        reached[LEAD_IN] = len(episodes)   # every episode starts with the lead-in
    out = {}
    seen = [*reached, *scored, *into]
    for name in dict.fromkeys([*(k for k in gaits if k in seen), *seen]):   # the matrix's skill order first
        segs, switches = scored.get(name, []), into.get(name, [])
        gait = _pooled_gait(segs)
        expected = gaits.get(name)
        k, n = falls.get(name, 0), reached.get(name, 0)
        out[name] = {"episodes": n, "falls": k, "fall_upper95": upper_bound(k, n), **_tracking(segs),
                     "transitions": len(switches),
                     "transition_success": _mean(float(t["success"]) for t in switches) if switches else None,
                     "gait": gait, "expected_pattern": expected,
                     "expected_share": pattern_share(gait, expected, min_two_feet) if expected and segs else None}
    return out


def summarize_policy(episodes: list[dict], gaits: dict[str, str], min_two_feet: float) -> dict[str, Any]:
    groups = list(dict.fromkeys(e["group"] for e in episodes))
    scenarios = list(dict.fromkeys(e["scenario"] for e in episodes))
    return {"overall": summarize(episodes),
            "groups": {g: summarize([e for e in episodes if e["group"] == g]) for g in groups},
            "skills": skill_summaries(episodes, gaits, min_two_feet),
            "modes": mode_summary(episodes),
            "scenarios": {s: summarize([e for e in episodes if e["scenario"] == s]) for s in scenarios}}


def reference_label(policies: list[dict]) -> Optional[str]:
    """The policy others are compared with: the first expert run of the deployed loop (no ablation)."""
    experts = [p["label"] for p in policies if p.get("kind") == "expert"]
    deployed = [p["label"] for p in policies if p.get("kind") == "expert" and p.get("ablation") == "deployed"]
    return (deployed or experts or [None])[0]


def fmt(value: Optional[float], fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _feedback_line(meta: dict[str, Any]) -> str:
    """Which policies ran inside the stack's outer velocity loop (command_feedback.py)."""
    described = meta.get("command_feedback")
    if described is None:
        return "Outer velocity loop: not recorded (runs before it existed ran without one)."
    off = meta.get("feedback_off") or []
    return f"Outer velocity loop: {described}" + (f"; off for {', '.join(off)}." if off else ".")


def _gains_line(meta: dict[str, Any]) -> str:
    """The position gains each policy ran with (gains.py), where any differs from robot.kp."""
    gains = meta.get("policy_gains") or {}
    scaled = {label: line for label, line in gains.items() if line != describe_scales({})}
    if not scaled:
        return "Policy gains: robot.kp in every skill."
    return "Policy gains (multiples of robot.kp): " + "; ".join(f"{k}: {v}" for k, v in scaled.items()) + "."


def _skipped_line(meta: dict[str, Any]) -> str:
    """Which policies skipped scenarios, and why: a model file without a skill of the robot config cannot run
    them, and a table that silently left them out would read as if it had."""
    skipped = meta.get("skipped") or {}
    if not skipped:
        return "Skipped scenarios: none."
    return "Skipped scenarios: " + "; ".join(
        f"{label} has no skill {', '.join(s['skills'])} in its model file, {len(s['scenarios'])} scenario(s) not "
        f"run ({', '.join(s['scenarios'])})" for label, s in skipped.items()) + "."


def _jitter_note(meta: dict[str, Any]) -> str:
    jitter = meta.get("tick_jitter_steps") or 0.0
    return f" Physics steps between control ticks jittered by a standard deviation of {jitter:g}." if jitter else ""


def _falls(block: dict[str, Any]) -> str:
    """'0 (<= 0.42 %)': falls with the 95 % upper bound on the rate, from the counts (older reports too)."""
    episodes, falls = block.get("episodes"), block.get("falls")
    if episodes is None or falls is None:
        return "-"
    bound = upper_bound(int(falls), int(episodes))
    return f"{falls}" + ("" if bound is None else f" (<= {percent(bound)} %)")


def _transitions_ok(block: dict[str, Any]) -> str:
    rate = block.get("transition_success")
    return "-" if rate is None else f"{rate:.2f} ({block['transitions']})"


def _header(meta: dict[str, Any]) -> list[str]:
    condition = meta.get("condition")
    return [f"# Policy evaluation: {meta['matrix']}" + (f", condition {condition['name']}" if condition else ""), "",
            f"Simulator: {meta['physics']}; {_episodes(meta)}; episode {meta['duration_s']} s "
            f"after RUN; tracking after {meta['settle_s']} s per segment; sampler wait "
            f"{meta['inference_wait_s']} s (deterministic), latency measured separately; "
            f"{seeding.describe(meta)}.{_jitter_note(meta)}", "",
            f"Command ranges (the scenarios' speeds are fractions of them): {meta.get('command_ranges', 'not recorded')}.",
            "", _feedback_line(meta), "", _gains_line(meta), *_notes_lines(meta), "", _skipped_line(meta), "",
            "Tracking error: mean per-tick |achieved - commanded| (ground truth, heading frame); vx bias: "
            "|segment mean - commanded| (the expert evaluator's metric). "
            "Falls: count, and in brackets the exact one-sided 95 % upper bound on the fall rate (Clopper-Pearson). "
            "Transition: no fall within the window and the new skill's contact pattern. "
            "Latency: sampler wall-clock per call; over budget: calls longer than the control period.", ""]


def _episodes(meta: dict[str, Any]) -> str:
    """How many episodes: per scenario for one run, per policy for merged runs."""
    seeds = meta["seeds"]
    return f"{seeds} episode(s) per scenario" if isinstance(seeds, int) else f"episodes: {seeds}"


def _notes_lines(meta: dict[str, Any]) -> list[str]:
    notes = [f"{label}: {note}" for label, items in (meta.get("policy_notes") or {}).items() for note in items]
    return ["", "Not as deployed: " + "; ".join(notes) + "."] if notes else []


def _group_table(summary: dict[str, Any]) -> list[str]:
    lines = ["## Per policy and scenario group", "",
             "| policy | group | episodes | falls | survival s | vx err | vy err | yaw err | transitions ok | "
             "latency mean ms | p99 ms | over budget | deadline misses |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, s in summary.items():
        for group, g in [*s["groups"].items(), ("**all**", s["overall"])]:
            lat = g["latency"]
            lines.append(f"| {label} | {group} | {g['episodes']} | {_falls(g)} | {fmt(g['survival_s'], '.1f')} | "
                         f"{fmt(g['error_vx'])} | {fmt(g['error_vy'])} | {fmt(g['error_yaw_rate'])} | "
                         f"{_transitions_ok(g)} | {fmt(lat.get('mean_ms'), '.2f')} | {fmt(lat.get('p99_ms'), '.2f')} | "
                         f"{fmt(lat.get('over_budget'), '.3f')} | {g['deadline_misses']} |")
    return lines


def _skill_table(summary: dict[str, Any]) -> list[str]:
    lines = ["## Per policy and skill", "",
             "Episodes: those that reached a segment of the skill; falls: while it was in effect (lead_in: in the "
             "stand before the first scored segment); tracking and gait over its scored segments; transitions: "
             "switches into it; in step: ticks with the four feet together, all down or all up (a hop's pattern).", "",
             "| policy | skill | episodes | falls | segments | vx err | vy err | yaw err | vx bias | transitions ok | "
             "diagonal | lateral | front/rear | four feet | in step | expected pattern |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, s in summary.items():
        for skill, k in s["skills"].items():
            g = k["gait"]
            expected = ("-" if k["expected_pattern"] is None
                        else f"{k['expected_pattern']} {fmt(k['expected_share'], '.2f')}")
            lines.append(f"| {label} | {skill} | {k.get('episodes', '-')} | {_falls(k)} | {k['scored_segments']} | "
                         f"{fmt(k['error_vx'])} | {fmt(k['error_vy'])} | {fmt(k['error_yaw_rate'])} | "
                         f"{fmt(k['mean_error_vx'])} | {_transitions_ok(k) if 'transitions' in k else '-'} | "
                         f"{g['diagonal']:.2f} | {g['lateral']:.2f} | {g['front_rear']:.2f} | "
                         f"{g['four_feet_share']:.2f} | {g.get('in_step', 0.0):.2f} | {expected} |")
    return lines


def _shares(shares: dict[str, float]) -> str:
    """'trot 0.60, pace 0.40' (largest first)."""
    return ", ".join(f"{mode} {share:.2f}" for mode, share in sorted(shares.items(), key=lambda i: -i[1])) or "-"


def _mode_table(summary: dict[str, Any]) -> list[str]:
    """Which gait each policy walked per command, across the episodes (modes.py); [] for reports without modes."""
    rows = [(label, command, m) for label, s in summary.items() for command, m in (s.get("modes") or {}).items()]
    if not rows:
        return []
    lines = ["## Gait modes per policy and command", "",
             "The gait of every 0.5 s window of a scored segment, from the foot contacts (stand, trot, pace, bound, "
             "hop or unclear; evaluation/modes.py). Chosen: the share of episodes whose most frequent gait under the "
             "command was each gait (for a command class: which gait the policy picked); time: the share of all "
             "windows; purity: the chosen gait's share of an episode's windows under the command; flips: changes "
             "between gaits held for 1 s or more, in total and the episodes with any.", "",
             "| policy | command | episodes | chosen | time | purity mean | purity min | flips (episodes) |",
             "|---|---|---|---|---|---|---|---|"]
    for label, command, m in rows:
        lines.append(f"| {label} | {command} | {m['episodes']} | {_shares(m['chosen_share'])} | "
                     f"{_shares(m['time_share'])} | {fmt(m['purity_mean'], '.2f')} | {fmt(m['purity_min'], '.2f')} | "
                     f"{m['flips']} ({m['episodes_with_flips']}) |")
    return lines


def relative(value: Optional[float], reference: Optional[float]) -> str:
    """'+37 %': value against the reference's; '-' where either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0.0:
        return "-"
    return f"{100.0 * (value / reference - 1.0):+.0f} %"


def _reference_table(summary: dict[str, Any], reference: str, skipped: bool = False) -> list[str]:
    """Every other policy against the reference, pooled and per skill: a pooled figure can hide one skill."""
    ref = summary[reference]
    lines = [f"## Against {reference}, on the same episodes", "",
             "Tracking error relative to the reference's (+37 %: 1.37 times its error); falls side by side."
             + (" Where a policy skipped scenarios (above), its pooled row covers fewer episodes than the "
                "reference's; compare per skill." if skipped else ""), "",
             f"| policy | skill | vx err | yaw err | falls | falls of {reference} |", "|---|---|---|---|---|---|"]
    for label, s in summary.items():
        if label == reference:
            continue
        rows = [("**all**", s["overall"], ref["overall"])]
        rows += [(skill, k, ref["skills"].get(skill, {})) for skill, k in s["skills"].items()]
        for skill, mine, theirs in rows:
            lines.append(f"| {label} | {skill} | {relative(mine.get('error_vx'), theirs.get('error_vx'))} | "
                         f"{relative(mine.get('error_yaw_rate'), theirs.get('error_yaw_rate'))} | {_falls(mine)} | "
                         f"{_falls(theirs)} |")
    return lines


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [*_header(meta), *_group_table(summary), "", *_skill_table(summary)]
    modes = _mode_table(summary)
    if modes:
        lines += ["", *modes]
    reference = meta.get("reference")
    if reference in summary and len(summary) > 1 and meta.get("same_episodes", True):
        lines += ["", *_reference_table(summary, reference, bool(meta.get("skipped")))]
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def plot_episode(trace: Trace, title: str, out_dir: Path, stem: str) -> list[Path]:
    """velocity_<stem>.png (commanded vs achieved) and contacts_<stem>.png (foot-contact raster)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True)
    for i, (ax, label) in enumerate(zip(axes, ("vx [m/s]", "vy [m/s]", "yaw rate [rad/s]"))):
        ax.plot(trace.t, trace.command[:, i], "k--", lw=1.2, label="commanded")
        ax.plot(trace.t, trace.achieved[:, i], lw=0.9, label="achieved (ground truth)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time after RUN [s]")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    paths.append(out_dir / f"velocity_{_safe(stem)}.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 2.2))
    if len(trace.t):
        ax.imshow(trace.contacts.T, aspect="auto", interpolation="nearest", cmap="Greys",
                  extent=(trace.t[0], trace.t[-1], 3.5, -0.5))
    ax.set_yticks(range(4), ["FR", "FL", "RR", "RL"])
    ax.set_xlabel("time after RUN [s] (black: foot on the ground)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    paths.append(out_dir / f"contacts_{_safe(stem)}.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths


def bar_value(value: Optional[float]) -> tuple[float, str]:
    """A chart bar's length and label. None means nothing was scored (a policy that falls before any segment
    counts has no tracking error): no bar and "n/a", never a bar that reads as a perfect 0."""
    return (0.0, " n/a") if value is None else (float(value), f" {value:.3g}")


def plot_comparison(summary: dict[str, Any], path: Path) -> Path:
    """One chart of the headline metrics per policy: falls, velocity tracking error, transition success."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary)
    overall = [summary[label]["overall"] for label in labels]
    panels = [("fall rate", [o["fall_rate"] for o in overall]),
              ("vx error [m/s]", [o["error_vx"] for o in overall]),
              ("yaw-rate error [rad/s]", [o["error_yaw_rate"] for o in overall]),
              ("transition success", [o["transition_success"] for o in overall])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 0.45 * len(labels) + 1.6), sharey=True)
    for ax, (title, values) in zip(axes, panels):
        bars = [bar_value(v) for v in values]
        ax.barh(range(len(labels)), [width for width, _ in bars], color="tab:blue")
        for y, (width, text) in enumerate(bars):
            ax.text(width, y, text, va="center", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.25)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
