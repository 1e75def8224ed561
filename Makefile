# DiffuseLoco-ROS: the two commands users need are `make demo` and `make test`; each sets the project up first.
# Set-up is incremental: every step is a stamp file in .venv that is redone only when its inputs change,
# so a second run with nothing changed is a no-op.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMPS := $(VENV)/.stamps
# The robot image's Python side, for the install tests: only docker/requirements-robot.txt, numpy and pyyaml
# (rosdep's python3-numpy / python3-yaml) and the ROS wheels, plus our message packages; no torch, MuJoCo, zarr.
ROBOT_VENV := .venv-robot
ROBOT_ROS_WHEELS := ros-rclpy ros-ament-index-python ros-builtin-interfaces ros-rcl-interfaces ros-std-msgs \
                    ros-sensor-msgs ros-geometry-msgs ros-diagnostic-msgs ros-nav-msgs ros-rmw-fastrtps-cpp
# Tests and the demo never leave this machine and never meet other ROS graphs.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export MUJOCO_GL ?= egl

# Message packages built into the venv: ours in src/, and upstream ones PyPI has no wheel of in ros_wheels/
# (ros_wheels/README.md: a ROS install provides those, so colcon never builds them).
MSG_PACKAGES := diffuseloco_msgs cyberdog_msgs tf2_msgs
UPSTREAM_MSG_PACKAGES := tf2_msgs
PY_PACKAGES := diffuseloco_policy diffuseloco_sim diffuseloco_learning diffuseloco_bringup
msg_dir = $(if $(filter $(1),$(UPSTREAM_MSG_PACKAGES)),ros_wheels/$(1),src/$(1))
msg_inputs = $(wildcard $(call msg_dir,$(1))/msg/*.msg $(call msg_dir,$(1))/srv/*.srv) \
             $(addprefix $(call msg_dir,$(1))/,CMakeLists.txt package.xml pyproject.toml) cmake/ros_wheels_prefix.cmake

.PHONY: setup demo test bench model lock clean
.SECONDEXPANSION:
setup: $(STAMPS)/python-packages

$(STAMPS)/system: scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv: $(STAMPS)/system
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/requirements: requirements.lock $(STAMPS)/venv
	$(PIP) install -q -r requirements.lock
	@touch $@

$(STAMPS)/msg-%: $(STAMPS)/requirements $$(call msg_inputs,$$*)
	$(PIP) install -q --no-build-isolation ./$(call msg_dir,$*)
	@touch $@

$(STAMPS)/python-packages: $(foreach p,$(MSG_PACKAGES),$(STAMPS)/msg-$(p)) \
                           $(foreach p,$(PY_PACKAGES),src/$(p)/setup.py src/$(p)/package.xml)
	$(PIP) install -q --no-build-isolation --no-deps $(foreach p,$(PY_PACKAGES),-e ./src/$(p))
	@touch $@

$(STAMPS)/robot-venv: docker/requirements-robot.txt requirements.lock $(foreach p,$(MSG_PACKAGES),$(STAMPS)/msg-$(p))
	rm -rf $(ROBOT_VENV) $(VENV)/msg-wheels
	$(PIP) wheel -q --no-build-isolation --no-deps $(foreach p,$(MSG_PACKAGES),./$(call msg_dir,$(p))) -w $(VENV)/msg-wheels
	$(PYTHON) -m venv $(ROBOT_VENV) || python3 -m venv $(ROBOT_VENV)
	$(ROBOT_VENV)/bin/python -m pip --disable-pip-version-check install -q -c requirements.lock \
		-r docker/requirements-robot.txt numpy pyyaml $(ROBOT_ROS_WHEELS)
	$(ROBOT_VENV)/bin/python -m pip --disable-pip-version-check install -q --no-deps $(VENV)/msg-wheels/*.whl
	@touch $@

demo: setup
	$(PY) -m diffuseloco_bringup.demo

test: setup $(STAMPS)/robot-venv
	$(PY) -m pytest tests

bench: setup
	$(PY) bench/bench_sampler.py
	$(PY) bench/bench_expert_rollout.py

# The shipped default from nothing (configs/pipeline_default.yaml): the experts checked, data, three training
# stages, export, evaluation, card, then the paper's comparisons; hours on a CPU. Run again, it skips what is done
# and resumes an interrupted training. PIPELINE_ARGS, e.g. --dry-run, --device cuda --workers 16, --no-comparisons.
PIPELINE_ARGS ?=
model: setup
	$(PY) -m diffuseloco_learning.pipeline pipeline_default $(PIPELINE_ARGS)

# Re-pin every dependency after editing requirements.in (needs the package index). pip's resolver report lists
# exactly the distributions it would install; `pip freeze` would also list the egg-info names inside ROS wheels.
lock: $(STAMPS)/venv
	$(PIP) install -q --dry-run --ignore-installed --report .venv/lock-report.json -r requirements.in
	$(PY) scripts/write_lock.py .venv/lock-report.json requirements.lock

clean:
	rm -rf $(VENV) $(ROBOT_VENV) src/*/build ros_wheels/*/build build
