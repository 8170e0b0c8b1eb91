#!/usr/bin/env bash
# The end-to-end demo (the README's main job), on a CPU in a few minutes:
#   synthetic videos -> memory bank (extract_features) -> TALLFormer trained end to end with the
#   bank -> test -> mAP table, workdir/demo/{detections.json, metrics.json, timeline.png}.
# Installs what it needs into .venv on first use. Extra arguments go to tools/trainval.py,
# e.g. `bash tools/demo.sh --cfg-options train_cfg.epochs=20`.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh runtime
start=$(date +%s)
data=data/synthetic
work=workdir/demo
config=configs/tallformer/demo_tiny.py

echo "== 1/6 synthetic videos ($data)"
if [ ! -f "$data/annotations.json" ]; then  # written last, so its presence means complete
    python tools/data/make_synthetic_videos.py "$data" --num-videos 96 --seconds 10 \
        --size 64 --seed 0 --workers 2
fi
echo "== 2/6 memory bank template (resumable: finished videos are skipped)"
python tools/data/extract_features.py --config configs/extract/demo_tiny.py
echo "== 3/6 end-to-end training ($work)"
rm -rf "$work"  # every run trains from scratch
python tools/trainval.py "$config" --work-dir "$work" "$@"
echo "== 4/6 test"
python tools/test.py "$config" "$work/latest.pth.tar" --out "$work/detections.json" \
    --metrics "$work/metrics.json"
echo "== 5/6 timeline"
python tools/plot_timeline.py "$data/annotations.json" "$work/detections.json" \
    --subset validation --out "$work/timeline.png"
echo "== 6/6 detect on video files, as on new videos (only config, checkpoint and files)"
python tools/infer.py "$config" "$work/latest.pth.tar" "$data/videos/synthetic_0000.mp4" \
    "$data/videos/synthetic_0001.mp4" --out "$work/infer.json" --score-threshold 0.3 --no-progress
echo "demo finished in $(( $(date +%s) - start )) s: $work/detections.json, $work/metrics.json, $work/timeline.png, $work/infer.json"
