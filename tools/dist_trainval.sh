#!/usr/bin/env bash
# Distributed training with torchrun: one process per GPU (or per CPU process with gloo).
#   bash tools/dist_trainval.sh CONFIG GPUS [trainval.py arguments]
# GPUS: a count ("4") or a list of device ids ("0,1,2,3"; one id as "2,") which also sets
# CUDA_VISIBLE_DEVICES; it is the number of processes on THIS node. Multi-node: run the same
# command on every node with NNODES, NODE_RANK (0 on the node at MASTER_ADDR) and MASTER_ADDR
# (MASTER_PORT, default 29500) set, or with torchrun's flags in TORCHRUN_ARGS, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=host0 bash tools/dist_trainval.sh CONFIG 8 --work-dir /shared/run
# The work dir (and so the working memory bank) must be on a filesystem every node sees.
set -euo pipefail
exec "$(dirname "$0")/_torchrun.sh" "$(dirname "$0")/trainval.py" "$@"
