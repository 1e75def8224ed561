"""The motor SDK's LCM types: the committed Python is exactly what lcm-gen makes from the committed .lcm files,
and the structs have the firmware's fields (names, types, order: they make the LCM fingerprint)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffuseloco_policy.bridge import lcm_types

TYPES_DIR = Path(lcm_types.__file__).resolve().parent
LCM_FILES = sorted(TYPES_DIR.glob("*.lcm"))
LCM_GEN = Path(sys.executable).parent / "lcm-gen"

EXPECTED = {  # the SDK's structs (shared reference cyberdog.md; state_estimator from cyberdog_locomotion)
    "motor_ctrl_lcmt": [("q_des", "float", 12), ("qd_des", "float", 12), ("kp_des", "float", 12),
                        ("kd_des", "float", 12), ("tau_des", "float", 12)],
    "motor_ctrl_state_lcmt": [("err_flag", "int16_t", None), ("ctrl_topic_interval", "float", None)],
    "leg_control_data_lcmt": [(n, "float", 12) for n in ("q", "qd", "p", "v", "tau_est", "force_est", "force_desired")]
                             + [(n, "int32_t", 4) for n in ("q_abad_limit", "q_hip_limit", "q_knee_limit")],
    "state_estimator_lcmt": [(n, "float", 3) for n in ("p", "vWorld", "vBody", "p_abs", "vWorld_abs", "vBody_abs",
                                                       "vRemoter", "rpy", "omegaBody", "omegaWorld")]
                            + [("quat", "float", 4), ("aBody", "float", 3), ("aWorld", "float", 3),
                               ("contactEstimate", "float", 4), ("timestamp", "int64_t", None)],
    "spi_data_t": [(f"{k}_{j}", "float", 4) for k in ("q", "qd") for j in ("abad", "hip", "knee")]
                  + [("flags", "int32_t", 12), ("spi_driver_status", "int32_t", None)]
                  + [(f"tau_{j}", "float", 4) for j in ("abad", "hip", "knee")]
                  + [(f"tmp_{j}", "int16_t", 4) for j in ("abad", "hip", "knee")] + [("reserve", "int8_t", 40)],
}
# The base hashes lcm-gen computes for the firmware's structs, as the motor SDK's generated C++ headers carry them
# (MiRoboticsLab/cyberdog_motor_sdk branch cyberdog2, include/*.hpp `_computeHash`); the fingerprint on the wire is
# this hash rotated left by one bit.
SDK_BASE_HASHES = {"spi_data_t": 0x4da50a8960be7463}


def test_there_is_one_lcm_file_per_sdk_struct():
    assert {p.stem for p in LCM_FILES} == set(EXPECTED)


@pytest.mark.skipif(not LCM_GEN.exists() and shutil.which("lcm-gen") is None, reason="lcm-gen not installed")
def test_committed_python_is_what_lcm_gen_generates(tmp_path):
    lcm_gen = str(LCM_GEN) if LCM_GEN.exists() else shutil.which("lcm-gen")
    subprocess.run([lcm_gen, "-p", "--ppath", str(tmp_path), *map(str, LCM_FILES)], check=True)
    generated = sorted(p.name for p in tmp_path.glob("*.py"))
    assert generated == sorted(f"{p.stem}.py" for p in LCM_FILES)
    for name in generated:
        assert (tmp_path / name).read_text() == (TYPES_DIR / name).read_text(), (
            f"{name} differs from lcm-gen's output: regenerate (see lcm_types/__init__.py), never edit by hand")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_struct_fields_are_the_firmwares(name):
    cls = getattr(lcm_types, name)
    dims = [d[0] if d else None for d in cls.__dimensions__]
    assert list(zip(cls.__slots__, cls.__typenames__, dims)) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_encode_decode_round_trip(name):
    cls = getattr(lcm_types, name)
    msg = cls()
    for field, typename, n in EXPECTED[name]:
        value = (lambda i: i + 1) if typename.startswith("int") else (lambda i: 0.5 * i - 1.25)
        setattr(msg, field, [value(i) for i in range(n)] if n else value(3))
    data = msg.encode()
    assert data[:8] == cls._get_packed_fingerprint()
    back = cls.decode(data)
    for field, _, n in EXPECTED[name]:
        assert list(getattr(back, field)) == list(getattr(msg, field)) if n else getattr(back, field) == getattr(msg, field)
    with pytest.raises(ValueError):  # another struct's bytes are refused by the fingerprint
        other = next(getattr(lcm_types, o) for o in sorted(EXPECTED) if o != name)
        cls.decode(other().encode())


@pytest.mark.parametrize("name", sorted(SDK_BASE_HASHES))
def test_fingerprint_is_the_sdks(name):
    """The fingerprint our decoder checks is the one the SDK's C++ (and the firmware) put on the wire."""
    base = SDK_BASE_HASHES[name]
    rotated = ((base << 1) & 0xFFFFFFFFFFFFFFFF) + ((base >> 63) & 1)
    cls = getattr(lcm_types, name)
    assert cls._get_packed_fingerprint() == rotated.to_bytes(8, "big")
