#!/usr/bin/env bash
# Feature-based demo on CPU: synthetic features -> train ActionFormer -> test -> mAP table.
#   bash tools/demo_features.sh [trainval.py arguments, e.g. --cfg-options train_cfg.epochs=8]
# Writes data/synthetic_features/ and workdir/demo_features/ (checkpoints, log, TensorBoard,
# detections.json, metrics.json).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
config=configs/actionformer/synthetic_demo.py
work_dir=${WORK_DIR:-workdir/demo_features}
start=$(date +%s)
"$PYTHON" tools/data/make_synthetic_features.py data/synthetic_features
rm -rf "$work_dir"
"$PYTHON" tools/trainval.py "$config" --work-dir "$work_dir" "$@"
"$PYTHON" tools/test.py "$config" "$work_dir" --out "$work_dir/detections.json" \
    --metrics "$work_dir/metrics.json"
echo "feature demo finished in $(( $(date +%s) - start )) s; results in $work_dir"
