#!/usr/bin/env bash
# Distributed testing with torchrun (see dist_trainval.sh for GPUS and TORCHRUN_ARGS).
#   bash tools/dist_test.sh CONFIG CHECKPOINT|WORK_DIR GPUS [test.py arguments]
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT|WORK_DIR GPUS [test.py arguments]" >&2; exit 2
fi
config=$1; target=$2; gpus=$3; shift 3
exec "$(dirname "$0")/_torchrun.sh" "$(dirname "$0")/test.py" "$config" "$gpus" "$target" "$@"
