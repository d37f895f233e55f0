#!/usr/bin/env bash
# Sets up .venv/ and runs every test (firmware tests inside MicroPython, host tests in CPython).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
exec .venv/bin/python -m pytest -q "$@"
