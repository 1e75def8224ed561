"""Aggregation of episode results, the markdown tables and the plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from diffuseloco_policy.gains import describe_scales
from .episode import Trace, pattern_share

PATTERNS = ("diagonal", "lateral", "front_rear")
AXES = ("vx", "vy", "yaw_rate")


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
    return {"episodes": len(episodes), "falls": sum(e["fell"] for e in episodes),
            "fall_rate": _mean(float(e["fell"]) for e in episodes),
            "survival_s": _mean(e["survival_s"] for e in episodes),
            **_tracking(segments),
            "transitions": len(transitions),
            "transition_success": _mean(float(t["success"]) for t in transitions) if transitions else None,
            "gait": _pooled_gait(segments),
            "latency": _latency(episodes),
            "deadline_misses": sum(e["deadline_misses"] for e in episodes),
            "sampler_errors": sum(e["sampler_errors"] for e in episodes)}


def summarize_policy(episodes: list[dict], gaits: dict[str, str], min_two_feet: float) -> dict[str, Any]:
    groups = list(dict.fromkeys(e["group"] for e in episodes))
    scenarios = list(dict.fromkeys(e["scenario"] for e in episodes))
    by_skill: dict[str, list[dict]] = {}
    for e in episodes:
        for s in e["segments"]:
            if "gait" in s:  # segments with scored ticks only
                by_skill.setdefault(s["skill"], []).append(s)
    skills = {}
    for name, segs in by_skill.items():
        gait = _pooled_gait(segs)
        expected = gaits.get(name)
        skills[name] = {**_tracking(segs), "gait": gait, "expected_pattern": expected,
                        "expected_share": pattern_share(gait, expected, min_two_feet) if expected else None}
    return {"overall": summarize(episodes),
            "groups": {g: summarize([e for e in episodes if e["group"] == g]) for g in groups},
            "skills": skills,
            "scenarios": {s: summarize([e for e in episodes if e["scenario"] == s]) for s in scenarios}}


def _f(value: Optional[float], fmt: str = ".3f") -> str:
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


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"# Policy evaluation: {meta['matrix']}", "",
             f"Simulator: {meta['physics']}; {meta['seeds']} seed(s) per scenario; episode {meta['duration_s']} s "
             f"after RUN; tracking after {meta['settle_s']} s per segment; sampler wait "
             f"{meta['inference_wait_s']} s (deterministic), latency measured separately; episode seed "
             f"i is {meta['base_seed']} * 1000 + i.{_jitter_note(meta)}", "",
             f"Command ranges (the scenarios' speeds are fractions of them): {meta.get('command_ranges', 'not recorded')}.",
             "", _feedback_line(meta), "", _gains_line(meta), "", _skipped_line(meta), "",
             "Tracking error: mean per-tick |achieved - commanded| (ground truth, heading frame); vx bias: "
             "|segment mean - commanded| (the expert evaluator's metric). "
             "Transition: no fall within the window and the new skill's contact pattern. "
             "Latency: sampler wall-clock per call; over budget: calls longer than the control period.", "",
             "## Per policy and scenario group", "",
             "| policy | group | episodes | falls | survival s | vx err | vy err | yaw err | transitions ok | "
             "latency mean ms | p99 ms | over budget | deadline misses |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, s in summary.items():
        for group, g in [*s["groups"].items(), ("**all**", s["overall"])]:
            lat = g["latency"]
            ok = "-" if g["transition_success"] is None else f"{g['transition_success']:.2f} ({g['transitions']})"
            lines.append(f"| {label} | {group} | {g['episodes']} | {g['falls']} | {_f(g['survival_s'], '.1f')} | "
                         f"{_f(g['error_vx'])} | {_f(g['error_vy'])} | {_f(g['error_yaw_rate'])} | {ok} | "
                         f"{_f(lat.get('mean_ms'), '.2f')} | {_f(lat.get('p99_ms'), '.2f')} | "
                         f"{_f(lat.get('over_budget'), '.3f')} | {g['deadline_misses']} |")
    lines += ["", "## Per policy and skill (all scored segments)", "",
              "| policy | skill | segments | vx err | vy err | yaw err | vx bias | diagonal | lateral | "
              "front/rear | four feet | in step | expected pattern |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, s in summary.items():
        for skill, k in s["skills"].items():
            g = k["gait"]
            expected = ("-" if k["expected_pattern"] is None
                        else f"{k['expected_pattern']} {_f(k['expected_share'], '.2f')}")
            lines.append(f"| {label} | {skill} | {k['scored_segments']} | {_f(k['error_vx'])} | "
                         f"{_f(k['error_vy'])} | {_f(k['error_yaw_rate'])} | {_f(k['mean_error_vx'])} | "
                         f"{g['diagonal']:.2f} | "
                         f"{g['lateral']:.2f} | {g['front_rear']:.2f} | {g['four_feet_share']:.2f} | "
                         f"{g.get('in_step', 0.0):.2f} | {expected} |")
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
