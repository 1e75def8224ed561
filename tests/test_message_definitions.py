"""The ros2msg schemas the live view gives each channel, and the tf2_msgs built from ros_wheels/."""

from __future__ import annotations

import json

import pytest
from rclpy.serialization import serialize_message
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from diffuseloco_msgs.msg import PolicyStatus
from diffuseloco_policy.nodes.message_definitions import (SEPARATOR, DefinitionNotFound, definition_text,
                                                          ros2msg_schema, share_dirs, used_types)
from tf2_msgs.msg import TFMessage

# ros2 topic info --verbose /tf on a Jazzy or Kilted install shows this type hash for tf2_msgs/msg/TFMessage
UPSTREAM_TF_MESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def test_fields_name_the_types_they_use_once_each():
    text = "uint8 X=1  # a constant\nstd_msgs/Header header\nPoint[] points\nPoint[<=3] few\nstring<=8 name\n" \
           "geometry_msgs/Vector3[3] v\nfloat64[] data # comment with a/Type\n"
    assert used_types("geometry_msgs", text) == [("std_msgs", "Header"), ("geometry_msgs", "Point"),
                                                 ("geometry_msgs", "Vector3")]


def test_a_schema_decodes_rclpy_bytes_with_an_independent_reader():
    schema = ros2msg_schema("diffuseloco_msgs/msg/PolicyStatus")
    assert schema.count(SEPARATOR) == 2 and "MSG: std_msgs/Header" in schema and "MSG: builtin_interfaces/Time" in schema
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(schema, "diffuseloco_msgs/msg/PolicyStatus"))
    msg = PolicyStatus(state=2, state_name="RUNNING", ticks=7, last_fault="none", command=[0.1, 0.2, 0.3])
    back = store.deserialize_cdr(serialize_message(msg), "diffuseloco_msgs/msg/PolicyStatus")
    assert (back.state, back.state_name, back.ticks, back.last_fault) == (2, "RUNNING", 7, "none")
    assert back.command.tolist() == pytest.approx([0.1, 0.2, 0.3])


def test_a_type_without_an_installed_definition_is_named():
    with pytest.raises(DefinitionNotFound, match="no_such_msgs/msg/Nothing"):
        definition_text("no_such_msgs", "Nothing")


def test_the_tf2_msgs_built_here_is_the_upstream_type():
    """Same name, fields and type hash as a ROS install's tf2_msgs: rviz, Foxglove and `ros2 topic echo /tf` on
    another machine read our /tf."""
    description = next(d / "msg" / "TFMessage.json" for d in share_dirs("tf2_msgs")
                       if (d / "msg" / "TFMessage.json").is_file())
    hashes = json.loads(description.read_text())["type_hashes"]
    assert next(h["hash_string"] for h in hashes if h["type_name"] == "tf2_msgs/msg/TFMessage") == \
        UPSTREAM_TF_MESSAGE_HASH
    assert TFMessage.get_fields_and_field_types() == {"transforms": "sequence<geometry_msgs/TransformStamped>"}
