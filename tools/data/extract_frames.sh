#!/usr/bin/env bash
# Frame extraction with raw ffmpeg options, for users of hand-written ffmpeg scripts:
#   tools/data/extract_frames.sh IN_DIR OUT_DIR "<ffmpeg options>" "<pattern>"
#   tools/data/extract_frames.sh videos frames "-vf fps=15,scale=256:256 -q:v 2" "%05d.jpg"
# Same resumable, parallel runner as extract_frames.py (set WORKERS=N for parallelism).
set -euo pipefail
if [ "$#" -ne 4 ]; then
    echo "usage: $0 IN_DIR OUT_DIR \"<ffmpeg options>\" \"<pattern>\"" >&2
    exit 2
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python}"
exec "$PYTHON" "$HERE/extract_frames.py" "$1" "$2" --ffmpeg-args="$3" --pattern="$4" \
    --workers "${WORKERS:-1}"
