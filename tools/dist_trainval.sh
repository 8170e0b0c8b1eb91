#!/usr/bin/env bash
# Distributed training with torchrun: one process per GPU (or per CPU process with gloo).
#   bash tools/dist_trainval.sh CONFIG GPUS [trainval.py arguments]
# GPUS: a count ("4") or a list of device ids ("0,1,2,3"; one id as "2,") which also sets
# CUDA_VISIBLE_DEVICES. Multi-node: pass torchrun's own flags in TORCHRUN_ARGS, e.g.
#   TORCHRUN_ARGS="--nnodes 2 --node_rank 0 --master_addr host0 --master_port 29500" \
#     bash tools/dist_trainval.sh CONFIG 8 --work-dir workdir/run
set -euo pipefail
exec "$(dirname "$0")/_torchrun.sh" "$(dirname "$0")/trainval.py" "$@"
