"""Command classes as text and as a config change: 'walk=trot+pace,jump=bound+hop'.

Why a text form: the class map is chosen where data is made (the generator's --command-classes) and where a
teleop is started (its command_classes parameter), and both take the same words. The map itself lives in the
StackConfig (config.CommandClassConfig); a dataset records it in its config attrs, training copies it from the
dataset into the model file, and the node runs the model over it (model_file.model_view).
"""

from __future__ import annotations

import dataclasses

from .config import CommandClassConfig, ConfigError, StackConfig

EXAMPLE = "walk=trot+pace,jump=bound+hop"


def parse_command_classes(text: str) -> tuple[CommandClassConfig, ...]:
    """'walk=trot+pace,jump=bound+hop' -> the classes; '' -> none (every skill its own command)."""
    classes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, members = part.partition("=")
        skills = tuple(m.strip() for m in members.split("+"))
        if not sep or not name.strip() or not all(skills):
            raise ConfigError(f"command classes {text!r}: expected NAME=SKILL+SKILL[,...], e.g. {EXAMPLE}")
        classes.append(CommandClassConfig(name.strip(), skills))
    return tuple(classes)


def format_command_classes(classes: tuple[CommandClassConfig, ...]) -> str:
    """The text form parse_command_classes reads back."""
    return ",".join(f"{c.name}={'+'.join(c.skills)}" for c in classes)


def with_command_classes(config: StackConfig, classes: tuple[CommandClassConfig, ...]) -> StackConfig:
    """The config with this class map, its goal's skill one-hot sized to the commands it leaves (a ConfigError
    for a map the config's skills cannot take)."""
    classed = sum(len(c.skills) for c in classes)
    count = len(config.skills) - classed + len(classes)
    goal = tuple(dataclasses.replace(t, size=count) if t.name == "skill" else t for t in config.observation.goal_terms)
    return dataclasses.replace(config, command_classes=tuple(classes),
                               observation=dataclasses.replace(config.observation, goal_terms=goal))


def class_map(config: StackConfig) -> dict[str, list[str]]:
    """Class name -> its skills, as plain data ({} for a labelled config)."""
    return {c.name: list(c.skills) for c in config.command_classes}


def describe_command_classes(config: StackConfig) -> str:
    """'walk = trot + pace, jump = bound + hop', or 'none' for a labelled config (reports, logs)."""
    return describe_classes(config.command_classes)


def describe_classes(classes: tuple[CommandClassConfig, ...]) -> str:
    """describe_command_classes for a class map alone."""
    return ", ".join(f"{c.name} = {' + '.join(c.skills)}" for c in classes) or "none"


def describe_command(config: StackConfig, skill_id: int) -> str:
    """What a command for `skill_id` runs on this config: '' for a skill that is its own command, else e.g.
    'id 2 (pace) commands class walk (trot or pace): the model picks the gait'."""
    command_class = config.command_class(skill_id)
    if command_class is None:
        return ""
    return (f"id {skill_id} ({config.skill(skill_id).name}) commands class {command_class.name} "
            f"({' or '.join(command_class.skills)}): the model picks the gait")
