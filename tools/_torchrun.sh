#!/usr/bin/env bash
# Shared launcher: _torchrun.sh SCRIPT CONFIG GPUS [SCRIPT arguments]
# One node: torchrun --standalone. Several nodes: either NNODES, NODE_RANK, MASTER_ADDR and
# MASTER_PORT (default 29500) in the environment, or torchrun's own flags in TORCHRUN_ARGS
# (which wins when set).
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
launch="--standalone"
if [ -n "${TORCHRUN_ARGS:-}" ]; then
    launch=$TORCHRUN_ARGS
elif [ "${NNODES:-1}" -gt 1 ]; then
    if [ -z "${NODE_RANK:-}" ] || [ -z "${MASTER_ADDR:-}" ]; then
        echo "NNODES=$NNODES needs NODE_RANK and MASTER_ADDR (the address of node 0)" >&2; exit 2
    fi
    launch="--nnodes $NNODES --node_rank $NODE_RANK --master_addr $MASTER_ADDR --master_port ${MASTER_PORT:-29500}"
fi
# one thread per process unless the caller says otherwise: N processes share the cores
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# shellcheck disable=SC2086
exec "${PYTHON:-python}" -m torch.distributed.run $launch \
    --nproc_per_node="$nproc" "$script" "$config" "$@"
