"""Video Swin window attention: torchvision's explicit matmul + softmax vs vedatad's
``WindowAttention3d`` (the same computation through ``scaled_dot_product_attention``).

One stage-1 pair of blocks' attention (a plain window block, then a shifted one) of a
32-frame 224x224 chunk: 16 x 56 x 56 tokens, 8x7x7 windows (N = 392), for the demo, tiny and
base presets' width and heads, ``--chunks`` chunks per batch. Both modules hold the same
weights; their outputs are compared before anything is timed. Per preset and mode:
- inference (no gradients: feature extraction, frozen stages, test time) and training
  (forward + backward, relative position bias trainable as in a trainable stage);
- time: median of ``--repeats`` calls per side, alternated call by call;
- peak memory of the call: on the CPU the most tensor memory live at once (from the
  profiler's allocation records), on a GPU the allocator's peak; both above what was live
  before the call.

    python benchmarks/bench_swin_attention.py [--presets demo,tiny,base] [--chunks 2]
        [--threads 2] [--repeats 5] [--device cuda] [--amp bf16]
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
from torchvision.models.video.swin_transformer import ShiftedWindowAttention3d

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_actionformer import markdown_table, peak_tensor_mb, sync  # noqa: E402

from vedatad.models.backbones.swin_attention import WindowAttention3d  # noqa: E402
from vedatad.models.backbones.video_swin import ARCH_PRESETS  # noqa: E402
from vedatad.utils.allocator import keep_freed_memory  # noqa: E402

TOKENS = (16, 56, 56)  # stage 1 of a 32-frame 224x224 chunk with (2, 4, 4) patches
WINDOW = [8, 7, 7]
SIDES = ('torchvision', 'vedatad')


def stage_pair(cls, dim, heads):
    """The attention of a plain and a shifted window block."""
    return nn.Sequential(cls(dim, WINDOW, [0, 0, 0], heads),
                         cls(dim, WINDOW, [w // 2 for w in WINDOW], heads))


def build(preset, device):
    dim, heads = ARCH_PRESETS[preset]['embed_dim'], ARCH_PRESETS[preset]['num_heads'][0]
    torch.manual_seed(0)
    ref = stage_pair(ShiftedWindowAttention3d, dim, heads)
    ours = stage_pair(WindowAttention3d, dim, heads)
    ours.load_state_dict(ref.state_dict())
    return {'torchvision': ref.to(device), 'vedatad': ours.to(device)}, dim


def call(module, x, mode, amp):
    with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
        if mode == 'inference':
            with torch.no_grad():
                return module(x)
        module.zero_grad(set_to_none=True)
        out = module(x)
        out.float().square().mean().backward()
        return out.detach()


def peak_memory_mb(fn, device):
    if device.type != 'cuda':
        return peak_tensor_mb(fn)
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20


def measure(preset, mode, args, device, amp):
    modules, dim = build(preset, device)
    for module in modules.values():
        module.train(mode == 'training')
    x = torch.randn(args.chunks, *TOKENS, dim, device=device)
    outs = {side: call(m, x, mode, amp) for side, m in modules.items()}  # warm-up
    diff = ((outs['vedatad'].float() - outs['torchvision'].float()).abs().max()
            / outs['torchvision'].float().abs().max()).item()
    times = {side: [] for side in SIDES}
    for i in range(args.repeats):
        for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
            sync(device)
            start = time.perf_counter()
            call(modules[side], x, mode, amp)
            sync(device)
            times[side].append(time.perf_counter() - start)
    memory = {side: peak_memory_mb(lambda: call(modules[side], x, mode, amp), device)
              for side in SIDES}
    return {side: (statistics.median(times[side]), memory[side]) for side in SIDES}, diff


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--presets', default='demo,tiny,base')
    parser.add_argument('--chunks', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', choices=['bf16', 'fp16'], help='autocast (GPU)')
    args = parser.parse_args()
    unknown = set(args.presets.split(',')) - set(ARCH_PRESETS)
    if unknown:
        parser.error(f'--presets: unknown {sorted(unknown)}; choose from {sorted(ARCH_PRESETS)}')
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    device = torch.device(args.device)
    amp = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(args.amp)
    machine = (torch.cuda.get_device_name(device) if device.type == 'cuda'
               else f'CPU ({os.cpu_count()} cores, {args.threads} threads)')
    print(f'Stage-1 attention of a plain + a shifted Video Swin block, {args.chunks} chunks of '
          f'{TOKENS[0]}x{TOKENS[1]}x{TOKENS[2]} tokens, window {WINDOW}; {machine}; '
          f'{args.amp or "float32"}; median of {args.repeats} alternated calls\n')
    rows, worst = [], 0.0
    for preset in args.presets.split(','):
        for mode in ('inference', 'training'):
            r, diff = measure(preset, mode, args, device, amp)
            worst = max(worst, diff)
            (t_ref, m_ref), (t_new, m_new) = r['torchvision'], r['vedatad']
            rows.append([preset, mode, f'{t_ref:.3f}', f'{t_new:.3f}', f'{t_new / t_ref:.2f}',
                         f'{m_ref:.0f}', f'{m_new:.0f}', f'{m_new / m_ref:.2f}', f'{diff:.1e}'])
    markdown_table(['preset', 'mode', 'torchvision (s)', 'vedatad (s)', 'time ratio',
                    'torchvision peak memory (MB)', 'vedatad (MB)', 'memory ratio',
                    'largest output difference (relative)'], rows)
    print(f'\noutputs agree to {worst:.1e} of their largest value')


if __name__ == '__main__':
    sys.exit(main())
