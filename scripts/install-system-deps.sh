#!/usr/bin/env bash
# System packages the set-up needs on Debian 12: a Python 3.11 with venv, cmake and g++ (to build our rosidl
# message packages), the EGL/GL libraries MuJoCo uses for headless rendering, and Debian's Chromium with its
# WebDriver (the web teleop's page is tested in headless Chromium). Installs only what is missing, and only as
# root; otherwise it says what to install and stops.
set -euo pipefail

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
if ! { command -v python3.11 || command -v python3; } >/dev/null; then missing+=(python3 python3-venv python3-dev); fi
py=$(command -v python3.11 || command -v python3 || true)
if [ -n "$py" ] && ! "$py" -c "import ensurepip, venv" 2>/dev/null; then missing+=(python3-venv); fi
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
for lib in libEGL.so.1 libOpenGL.so.0 libGL.so.1; do
  ldconfig -p | grep -q "$lib" || missing+=(libegl1 libopengl0 libgl1)
done

[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: $pkgs; install them with: sudo apt-get install -y $pkgs" >&2
  exit 1
fi
echo "installing system packages: $pkgs"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs
