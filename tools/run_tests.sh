#!/usr/bin/env bash
# Run the test suite. Installs what it needs into .venv on first use (see setup_env.sh).
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k nms`.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh tests
python -m pytest -q -p no:cacheprovider tests "$@"
