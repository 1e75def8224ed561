"""bag2dataset rebuilds, from a bag with known values, exactly the observation, goal and action the policy saw
and sent, in the simulator dataset's layout, with episodes split at command gaps and non-RUNNING ticks dropped."""

from __future__ import annotations

import numpy as np
import pytest
from bag_writing import write_mcap
from velocity_config import observing_velocity

from diffuseloco_policy.config import load_config
from diffuseloco_learning.data.bag2dataset import BagConversionError, ConvertSettings, convert, main
from diffuseloco_policy.bagtypes import make_typestore
from diffuseloco_learning.data.dataset import dataset_attrs, load_dataset
from diffuseloco_policy.joints import JointConvention
from diffuseloco_policy.observation import projected_gravity
from diffuseloco_policy.pd_targets import ActionDecoder

CONFIG = load_config()
CONV = JointConvention(CONFIG.robot)
DEFAULT = np.asarray(CONFIG.robot.default_pose)
PATTERN = np.linspace(-1.0, 1.0, 12)
T0 = 1_700_000_000 * 10**9
MS = 10**6
COMMAND_TICKS = [k for k in range(145) if not 45 <= k < 60]   # 50 Hz from 0.1 s to 2.98 s, a 0.3 s gap
STANDING_UP = range(10)                                        # status STANDING_UP for the first 10 commands
TS = make_typestore()


def q_model(j):  # joint sample j (500 Hz), model convention
    return DEFAULT + 0.001 * j * PATTERN


def qd_model(j):
    return 0.01 * j * PATTERN[::-1]


def quat(j):
    a = 0.1 + 0.0005 * j
    return np.array([np.cos(a / 2), np.sin(a / 2), 0.0, 0.0])


def q_des_model(k):  # command k (50 Hz), model convention
    return DEFAULT + 0.05 * np.sin(0.1 * k + np.arange(12))


def qd_des_model(k):  # the feed-forward sent with command k, model convention
    return 0.25 * np.cos(0.1 * k + np.arange(12))


def command_time(k):
    return T0 + 100 * MS + k * 20 * MS


def _header(t):
    Header, Time = TS.types["std_msgs/msg/Header"], TS.types["builtin_interfaces/msg/Time"]
    return Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="base")


def _msg(name, **fields):
    return TS.types[name](**fields)


def body_velocity(j):  # the estimator's vBody at 500 Hz sample j
    return np.array([0.001 * j, -0.0005 * j, 0.01])


def write_bag(path, with_imu=True, with_velocity=False):
    f32, z12 = (lambda a: np.asarray(a, dtype=np.float32)), np.zeros(12, dtype=np.float32)
    Vec3, Quat = TS.types["geometry_msgs/msg/Vector3"], TS.types["geometry_msgs/msg/Quaternion"]
    out = []  # (time, topic, type, message)
    for j in range(1500):                       # 3 s of 500 Hz LegState and Imu
        t = T0 + j * 2 * MS
        out.append((t, "/cyberdog/leg_state", "cyberdog_msgs/msg/LegState", _msg(
            "cyberdog_msgs/msg/LegState", header=_header(t), q=f32(CONV.to_sdk(q_model(j))),
            qd=f32(CONV.to_sdk(qd_model(j))), tau_est=z12, p=z12, v=z12, force_est=z12, force_desired=z12,
            q_abad_limit=np.zeros(4, np.int32), q_hip_limit=np.zeros(4, np.int32),
            q_knee_limit=np.zeros(4, np.int32))))
        if with_imu:
            w, x, y, z = quat(j)
            out.append((t, "/cyberdog/imu", "sensor_msgs/msg/Imu", _msg(
                "sensor_msgs/msg/Imu", header=_header(t), orientation=Quat(x=x, y=y, z=z, w=w),
                orientation_covariance=np.zeros(9), angular_velocity=Vec3(x=0.01 * j, y=0.0, z=-0.02),
                angular_velocity_covariance=np.zeros(9), linear_acceleration=Vec3(x=0.0, y=0.0, z=9.81),
                linear_acceleration_covariance=np.zeros(9))))
        if with_velocity:
            out.append((t, "/cyberdog/body_velocity", "geometry_msgs/msg/TwistStamped", _twist(t, body_velocity(j))))
        if j % 10 == 0:   # the simulator's ground truth, same type: it must never pass for the estimate
            out.append((t, "/sim/base_twist", "geometry_msgs/msg/TwistStamped", _twist(t, [9.0, 9.0, 9.0])))
    for t, vx in ((T0 + 1 * MS, 0.5), (T0 + 1500 * MS, 2.0)):   # trot; then vx beyond its range (clamped to 1.0)
        out.append((t, "/diffuseloco/skill_cmd", "diffuseloco_msgs/msg/SkillCommand", _msg(
            "diffuseloco_msgs/msg/SkillCommand", header=_header(t), skill=1, vx=vx, vy=0.1, yaw_rate=0.2,
            source="test")))
    for k in COMMAND_TICKS:
        stamp = command_time(k)
        recv = stamp + 300_000                  # received 0.3 ms after the policy stamped it
        out.append((recv, "/cyberdog/motor_cmd", "cyberdog_msgs/msg/MotorCommand", _msg(
            "cyberdog_msgs/msg/MotorCommand", header=_header(stamp), q_des=f32(CONV.to_sdk(q_des_model(k))),
            qd_des=f32(CONV.to_sdk(qd_des_model(k))), kp_des=np.full(12, 30, np.float32), kd_des=np.full(12, 3, np.float32), tau_des=z12)))
        state = 1 if k in STANDING_UP else 2
        out.append((recv + 50_000, "/diffuseloco/status", "diffuseloco_msgs/msg/PolicyStatus", _msg(
            "diffuseloco_msgs/msg/PolicyStatus", header=_header(stamp), state=state, state_name="",
            active_skill=1, command=np.zeros(3, np.float32), inference_latency_ms=5.0, tick_jitter_ms=0.1,
            ticks=k, deadline_misses=0, model="m.onnx", last_fault="")))
    return write_mcap(path, out, TS)


def _twist(t, linear):
    Vec3 = TS.types["geometry_msgs/msg/Vector3"]
    x, y, z = (float(v) for v in linear)
    twist = TS.types["geometry_msgs/msg/Twist"](linear=Vec3(x=x, y=y, z=z), angular=Vec3(x=0.0, y=0.0, z=0.0))
    return _msg("geometry_msgs/msg/TwistStamped", header=_header(t), twist=twist)


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_bag(tmp_path_factory.mktemp("bags") / "walk")


def test_dataset_matches_the_known_values(bag, tmp_path):
    out = tmp_path / "robot.zarr"
    main([str(bag), "--out", str(out)])
    data = load_dataset(out)
    kept = [k for k in COMMAND_TICKS if k not in STANDING_UP]
    n = len(kept)
    assert n == 120
    assert data["obs"].shape == (n, 42) and data["goal"].shape == (n, CONFIG.observation.goal_dim) and data["action"].shape == (n, 12)
    assert data["skill"].shape == (n,) and data["command"].shape == (n, 3)
    assert data["obs"].dtype == np.float32 and data["skill"].dtype == np.int8
    np.testing.assert_array_equal(data["episode_ends"], [35, 120])   # split at the 0.3 s gap in the commands
    assert dataset_attrs(out)["config"] == CONFIG.to_dict()

    decoder = ActionDecoder(CONFIG)
    sl = CONFIG.observation.slices()
    expected_action = np.array([decoder.action(q_des_model(k)) for k in kept])
    np.testing.assert_allclose(data["action"], expected_action, atol=2e-6)
    expected_feedforward = np.array([decoder.velocity_step(qd_des_model(k)) for k in kept])
    np.testing.assert_allclose(data["action_velocity"], expected_feedforward, atol=2e-6)
    # The joint sample is the newest received at the command's stamp: 500 Hz sample j = 5 * (10 + 2 k).
    samples = [5 * (10 + 2 * k) for k in kept]
    np.testing.assert_allclose(data["obs"][:, sl["joint_position"]], [q_model(j) - DEFAULT for j in samples],
                               atol=1e-6)
    np.testing.assert_allclose(data["obs"][:, sl["joint_velocity"]], [0.05 * qd_model(j) for j in samples],
                               atol=1e-6)
    np.testing.assert_allclose(data["obs"][:, sl["projected_gravity"]], [projected_gravity(quat(j)) for j in samples],
                               atol=1e-6)
    np.testing.assert_allclose(data["obs"][:, sl["base_angular_velocity"]],
                               [0.25 * np.array([0.01 * j, 0.0, -0.02]) for j in samples], atol=1e-6)
    # Last action: the previous tick's command, also a non-RUNNING one; zero after the gap.
    last = data["obs"][:, sl["last_action"]]
    np.testing.assert_allclose(last[0], decoder.action(q_des_model(9)), atol=2e-6)
    np.testing.assert_allclose(last[1:35], expected_action[0:34], atol=2e-6)
    np.testing.assert_array_equal(last[35], np.zeros(12))
    np.testing.assert_allclose(last[36:], expected_action[35:-1], atol=2e-6)
    # Goal: trot, the command clamped to the skill's range as the policy clamps it (vx 2.0 -> the top of the trot
    # range from 1.5 s on).
    assert np.all(data["skill"] == 1)
    late = np.array([command_time(k) >= T0 + 1500 * MS for k in kept])
    np.testing.assert_allclose(data["command"][~late], np.tile([0.5, 0.1, 0.2], (np.sum(~late), 1)), atol=1e-6)
    np.testing.assert_allclose(data["command"][late], np.tile([CONFIG.skill("trot").vx[1], 0.1, 0.2], (np.sum(late), 1)), atol=1e-6)
    trot_one_hot = np.eye(len(CONFIG.skills))[CONFIG.skill("trot").id]
    np.testing.assert_allclose(data["goal"][late][0], [2.0 * CONFIG.skill("trot").vx[1], 0.2, 0.05, *trot_one_hot],
                               atol=1e-6)


def test_status_can_be_ignored_and_short_episodes_dropped(bag, tmp_path):
    stats = convert([bag], tmp_path / "all.zarr", CONFIG, ConvertSettings(use_status=False, min_episode_ticks=50))
    data = load_dataset(tmp_path / "all.zarr")
    np.testing.assert_array_equal(data["episode_ends"], [85])         # 45 ticks before the gap: too short
    assert stats["bags"][0]["short_episodes_dropped"] == 1


def test_missing_topic_is_a_clear_error(tmp_path):
    bag = write_bag(tmp_path / "no_imu", with_imu=False)
    with pytest.raises(BagConversionError, match=r"no sensor_msgs/msg/Imu topic /cyberdog/imu(.|\n)*/cyberdog/leg_state"):
        convert([bag], tmp_path / "x.zarr", CONFIG)
    assert not (tmp_path / "x.zarr").exists()


def test_a_config_that_observes_the_body_velocity_takes_it_from_the_estimator_topic(tmp_path):
    config = observing_velocity(CONFIG)
    bag = write_bag(tmp_path / "with_velocity", with_velocity=True)
    convert([bag], tmp_path / "v.zarr", config)
    data = load_dataset(tmp_path / "v.zarr")
    samples = [5 * (10 + 2 * k) for k in COMMAND_TICKS if k not in STANDING_UP]
    np.testing.assert_allclose(data["obs"][:, config.observation.slices()["base_linear_velocity"]],
                               [body_velocity(j) for j in samples], atol=1e-6)


def test_without_the_estimator_topic_the_ground_truth_twist_does_not_stand_in(bag, tmp_path):
    with pytest.raises(BagConversionError, match="no body velocity topic"):
        convert([bag], tmp_path / "v.zarr", observing_velocity(CONFIG))
    assert not (tmp_path / "v.zarr").exists()
