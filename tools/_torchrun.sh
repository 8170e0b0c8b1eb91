#!/usr/bin/env bash
# Shared launcher: _torchrun.sh SCRIPT CONFIG GPUS [SCRIPT arguments]
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $(basename "$1" .py) CONFIG GPUS [arguments]" >&2; exit 2
fi
script=$1; config=$2; gpus=$3; shift 3
if [[ "$gpus" == *,* ]]; then
    export CUDA_VISIBLE_DEVICES="${gpus%,}"
    IFS=',' read -r -a ids <<< "${gpus%,}"
    nproc=${#ids[@]}
elif [[ "$gpus" =~ ^[0-9]+$ ]] && [ "$gpus" -gt 0 ]; then
    nproc=$gpus
else
    echo "GPUS must be a positive count or a comma-separated id list, got '$gpus'" >&2; exit 2
fi
# one thread per process unless the caller says otherwise: N processes share the cores
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# shellcheck disable=SC2086
exec "${PYTHON:-python}" -m torch.distributed.run ${TORCHRUN_ARGS:---standalone} \
    --nproc_per_node="$nproc" "$script" "$config" "$@"
