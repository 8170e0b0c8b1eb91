#!/usr/bin/env bash
# The GPU figures in one run, on a machine with one CUDA GPU and the runtime requirements
# installed: each benchmark's table goes to the terminal and to OUT_DIR/<name>.md.
#   bash benchmarks/gpu_figures.sh [OUT_DIR]        (default workdir/gpu_figures)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-workdir/gpu_figures}
mkdir -p "$out"
python - <<'PY' | tee "$out/machine.md"
import torch
assert torch.cuda.is_available(), 'no CUDA GPU visible to torch'
p = torch.cuda.get_device_properties(0)
print(f'{p.name}, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, '
      f'CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}')
PY
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
status=0
run() {  # name, then the command; a failing benchmark does not stop the others
    local name=$1; shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.md"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "== $name FAILED"; status=1; }
}
run swin_attention_bf16 python benchmarks/bench_swin_attention.py --device cuda --amp bf16
run swin_attention_fp32 python benchmarks/bench_swin_attention.py --device cuda
run tallformer_swin_b python benchmarks/bench_tallformer.py --preset thumos_swin_b --steps 5
run actionformer python benchmarks/bench_actionformer.py --device cuda --repeats 11
exit $status
