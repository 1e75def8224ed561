"""Write the live view's layouts: a Foxglove layout (built with foxglove-sdk's layout types) and a PlotJuggler
layout, into the bringup's config/foxglove/ and config/plotjuggler/. Run after changing a panel:

    python scripts/write_layouts.py

tests/test_layouts.py checks that the committed files are this script's output and that every topic and field
they name is one the live view streams.

Panels: the robot in 3D (URDF from /robot_description, /tf), the controller state and the policy status,
commanded vs achieved velocity (PolicyStatus.command, /cmd_vel, /odom's body-frame twist), measured vs target
joints (/joint_states vs MotorCommand.q_des, both in the SDK convention), timing (inference latency, tick
jitter, deadline misses), faults (/diagnostics, /rosout).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import foxglove.layouts as fl

ROOT = Path(__file__).resolve().parents[1]
FOXGLOVE = ROOT / "src" / "diffuseloco_bringup" / "config" / "foxglove" / "diffuseloco.json"
PLOTJUGGLER = ROOT / "src" / "diffuseloco_bringup" / "config" / "plotjuggler" / "diffuseloco.xml"
STATUS, ODOM, CMD_VEL, JOINTS, TARGET = ("/diffuseloco/status", "/odom", "/cmd_vel", "/joint_states",
                                         "/cyberdog/motor_cmd")
LEGS = ("FR", "FL", "RR", "RL")
LEG_JOINTS = ("abad", "hip", "knee")
TRACED_LEGS = ("FR", "RL")          # a front and a hind leg on the other side: enough to see a gait
COLOURS = ("#4e98e2", "#f5774d", "#61cbff", "#f7df71", "#9cd67b", "#e06c9f")
# (label, commanded path, achieved path) of the velocity plots; Foxglove message-path syntax
VELOCITY = (("vx (m/s)", f"{STATUS}.command[0]", f"{ODOM}.twist.twist.linear.x", f"{CMD_VEL}.linear.x"),
            ("vy (m/s)", f"{STATUS}.command[1]", f"{ODOM}.twist.twist.linear.y", f"{CMD_VEL}.linear.y"),
            ("yaw rate (rad/s)", f"{STATUS}.command[2]", f"{ODOM}.twist.twist.angular.z", f"{CMD_VEL}.angular.z"))
TIMING = (f"{STATUS}.inference_latency_ms", f"{STATUS}.tick_jitter_ms")


def joint_index(leg: str, joint: str) -> int:
    return 3 * LEGS.index(leg) + LEG_JOINTS.index(joint)


def _series(value: str, label: str, colour: int, dashed: bool = False) -> fl.PlotSeries:
    return fl.PlotSeries(value=value, label=label, color=COLOURS[colour % len(COLOURS)], enabled=True,
                         timestamp_method="receiveTime", line_style="dashed" if dashed else "solid")


def _plot(title: str, series: list[fl.PlotSeries], y_label: str) -> fl.PlotPanel:
    return fl.PlotPanel(title=title, config=fl.PlotConfig(paths=series, show_legend=True, y_axis_label=y_label,
                                                          time_window_mode="sliding", following_view_width=20.0))


def _column(*panels, proportions=None) -> fl.SplitContainer:
    share = proportions or [1.0 / len(panels)] * len(panels)
    return fl.SplitContainer(direction="column", items=[fl.SplitItem(proportion=p, content=c)
                                                        for p, c in zip(share, panels)])


def _diagnostics() -> fl.DiagnosticsSummaryPanel:
    return fl.DiagnosticsSummaryPanel(title="Diagnostics", config=fl.DiagnosticsSummaryConfig(
        topic_to_render="/diagnostics", sort_by_level=True))


def foxglove_layout() -> fl.Layout:
    robot = fl.ThreeDeePanel(title="CyberDog 2", config=fl.ThreeDeeConfig(
        follow_tf="base_link", follow_mode="follow-position",
        layers={"robot": fl.BaseRendererUrdfLayerSettings(layer_id="foxglove.Urdf", label="CyberDog 2 (URDF)",
                                                          source_type="topic", topic="/robot_description",
                                                          visible=True)}))
    state = fl.StateTransitionsPanel(title="Controller state", config=fl.StateTransitionsConfig(
        paths=[fl.StateTransitionsSeries(value=f"{STATUS}.state_name", label="state"),
               fl.StateTransitionsSeries(value=f"{STATUS}.active_skill", label="skill")]))
    status = fl.RawMessagesPanel(title="Policy status", config=fl.RawMessagesConfig(topic_path=STATUS))
    velocity = [_plot(f"{label}: commanded vs achieved", [
        _series(commanded, "commanded (policy status)", 0), _series(navigation, "cmd_vel", 2, dashed=True),
        _series(achieved, "achieved (odom)", 1)], label) for label, commanded, achieved, navigation in VELOCITY]
    joints = [_plot(f"{joint}: measured vs target (rad, SDK convention)", [
        series for n, leg in enumerate(TRACED_LEGS) for series in (
            _series(f"{JOINTS}.position[{joint_index(leg, joint)}]", f"{leg} measured", 2 * n),
            _series(f"{TARGET}.q_des[{joint_index(leg, joint)}]", f"{leg} target", 2 * n + 1, dashed=True))],
        "rad") for joint in LEG_JOINTS]
    timing = _plot("Timing (ms)", [_series(path, path.rsplit(".", 1)[1], i) for i, path in enumerate(TIMING)], "ms")
    misses = _plot("Deadline misses", [_series(f"{STATUS}.deadline_misses", "deadline misses", 4)], "ticks")
    log = fl.LogPanel(title="Log", config=fl.LogConfig(topic_to_render="/rosout", min_log_level=2))
    tabs = [
        fl.TabItem(title="Robot", content=fl.SplitContainer(direction="row", items=[
            fl.SplitItem(proportion=0.55, content=robot),
            fl.SplitItem(proportion=0.45, content=_column(state, status, _diagnostics(),
                                                          proportions=[0.25, 0.45, 0.3]))])),
        fl.TabItem(title="Velocity", content=_column(*velocity)),
        fl.TabItem(title="Joints", content=_column(*joints)),
        fl.TabItem(title="Timing and faults", content=fl.SplitContainer(direction="row", items=[
            fl.SplitItem(proportion=0.5, content=_column(timing, misses)),
            fl.SplitItem(proportion=0.5, content=_column(_diagnostics(), log))])),
    ]
    return fl.Layout(content=fl.TabContainer(selected_tab_index=0, tabs=tabs))


# ------------------------------------------------------------------------------------------------ PlotJuggler
def pj_path(foxglove_path: str) -> str:
    """A Foxglove message path as PlotJuggler names the series: '/topic.a.b[2]' -> '/topic/a/b[2]'."""
    topic, _, fields = foxglove_path.partition(".")
    return topic + "/" + fields.replace(".", "/")


def pj_joint(leg: str, joint: str) -> str:
    """PlotJuggler's JointState parser names each joint: /joint_states/<name>/position."""
    return f"{JOINTS}/{leg}_{joint}/position"


def _pj_plot(parent: ET.Element, curves: list[str]) -> None:
    area = ET.SubElement(parent, "DockArea", name="...")
    plot = ET.SubElement(area, "plot", style="Lines", mode="TimeSeries", flip_x="false", flip_y="false")
    ET.SubElement(plot, "range", left="0", right="20", top="1", bottom="-1")
    ET.SubElement(plot, "limitY")
    for i, name in enumerate(curves):
        ET.SubElement(plot, "curve", name=name, color=COLOURS[i % len(COLOURS)])


def _pj_tab(widget: ET.Element, title: str, plots: list[list[str]]) -> None:
    tab = ET.SubElement(widget, "Tab", tab_name=title, containers="1")
    container = ET.SubElement(tab, "Container")
    splitter = ET.SubElement(container, "DockSplitter", orientation="|", count=str(len(plots)),
                             sizes=";".join([f"{1.0 / len(plots):.6f}"] * len(plots)))
    for curves in plots:
        _pj_plot(splitter, curves)


def plotjuggler_layout() -> str:
    root = ET.Element("root")
    widget = ET.SubElement(root, "tabbed_widget", name="Main Window", parent="main_window")
    _pj_tab(widget, "Velocity", [[pj_path(c), pj_path(n), pj_path(a)] for _, c, a, n in VELOCITY])
    _pj_tab(widget, "Joints", [[name for leg in TRACED_LEGS for name in (
        pj_joint(leg, joint), pj_path(f"{TARGET}.q_des[{joint_index(leg, joint)}]"))] for joint in LEG_JOINTS])
    _pj_tab(widget, "Timing", [[pj_path(p) for p in TIMING],
                               ["/diagnostics/cyberdog2/diffuseloco_policy/inference_latency_ms",
                                "/diagnostics/cyberdog2/diffuseloco_policy/deadline_misses"]])
    ET.SubElement(widget, "currentTabIndex", index="0")
    ET.SubElement(root, "use_relative_time_offset", enabled="1")
    ET.SubElement(root, "Plugins")
    streamer = ET.SubElement(root, "previouslyLoaded_Streamer", name="ROS2 Topic Subscriber")
    streamer.text = None
    ET.indent(root)
    comment = ("<!-- DiffuseLoco-ROS live view for PlotJuggler (Streaming: ROS2 Topic Subscriber). Written by "
               "scripts/write_layouts.py. Joints in the SDK convention; diagnostics values are numbers. -->\n")
    return "<?xml version='1.0' encoding='UTF-8'?>\n" + comment + ET.tostring(root, encoding="unicode") + "\n"


def rendered() -> dict[Path, str]:
    """What the script writes, by file."""
    return {FOXGLOVE: foxglove_layout().to_json() + "\n", PLOTJUGGLER: plotjuggler_layout()}


def main() -> int:
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
