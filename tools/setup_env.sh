#!/usr/bin/env bash
# Create (once) and refresh (when requirements change) the project's virtual environment.
# Usage: source tools/setup_env.sh [runtime|tests]
# Idempotent: a second run with unchanged requirements only activates the environment.
set -euo pipefail
_vt_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_vt_kind="${1:-runtime}"
_vt_venv="${VEDATAD_VENV:-$_vt_root/.venv}"
_vt_py="${PYTHON:-python3}"

if ! "$_vt_py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    echo "vedatad needs Python >= 3.10 (found $("$_vt_py" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x "$_vt_venv/bin/python" ]; then
    echo "[setup_env] creating virtual environment in $_vt_venv"
    "$_vt_py" -m venv "$_vt_venv"
fi
_vt_req="$_vt_root/requirements/$_vt_kind.txt"
_vt_stamp="$_vt_venv/.vedatad-$_vt_kind.stamp"
_vt_hash="$(cat "$_vt_root/requirements/"*.txt "$_vt_root/setup.py" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$_vt_stamp" ] || [ "$(cat "$_vt_stamp")" != "$_vt_hash" ]; then
    echo "[setup_env] installing $_vt_kind requirements (first run downloads torch: a few minutes)"
    "$_vt_venv/bin/python" -m pip install -q --disable-pip-version-check -r "$_vt_req"
    "$_vt_venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$_vt_root"
    # Fail here, not later in a test, if the torch/torchvision pair does not match.
    "$_vt_venv/bin/python" -c "import torch, torchvision, timm; torchvision.ops.nms(torch.rand(2, 4), torch.rand(2), 0.5)"
    echo "$_vt_hash" > "$_vt_stamp"
fi
# shellcheck disable=SC1091
source "$_vt_venv/bin/activate"
set +euo pipefail
