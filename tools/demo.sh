#!/usr/bin/env bash
# Sets up .venv/ and runs the main job on the virtual watch (see `wears demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
exec .venv/bin/wears demo "$@"
