"""ActionFormer speed: inference time vs sequence length, and one training step.

The THUMOS14 I3D model (2048-d input, 512-d transformer, local window 19) runs on random
features. Local attention makes inference linear in T, so 16x the steps should cost
about 16x the time (the issue asks for a ratio <= 20).

    python benchmarks/bench_actionformer.py [--device cuda] [--threads 2] [--repeats 3]
"""
import argparse
import time

import torch

from vedatad.models.detectors.actionformer import ActionFormer
from vedatad.utils.allocator import keep_freed_memory

THUMOS_I3D = dict(
    input_dim=2048, num_classes=20, max_seq_len=2304, n_mha_win_size=19,
    train_cfg=dict(init_loss_norm=100, clip_grad_l2norm=1.0),
    test_cfg=dict(voting_thresh=0.7, pre_nms_topk=2000, max_seg_num=200, min_score=0.001))


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)  # best of: the least disturbed run on a shared machine


def meta(T):
    return dict(video_id='bench', fps=30.0, duration=(T * 4 + 8) / 30.0, feat_stride=4,
                feat_num_frames=16)


def bench_inference(model, T, device, repeats):
    feats = torch.randn(1, 2048, T, device=device)
    masks = torch.ones(1, T, dtype=torch.bool, device=device)
    model.eval()
    with torch.inference_mode():
        padded, padded_masks = model._pad(feats, masks)
        network = timed(lambda: model._forward_net(padded, padded_masks), device, repeats)
        full = timed(lambda: model.forward_feats_predict(feats, masks, [meta(T)]), device,
                     repeats)
    return network, full


def bench_train_step(model, batch_size, device, repeats):
    T = model.max_seq_len
    batch = []
    for i in range(batch_size):
        starts = torch.rand(8) * (T - 200)
        batch.append({'video_id': f'train{i}', 'feats': torch.randn(2048, T),
                      'segments': torch.stack([starts, starts + 20 + torch.rand(8) * 150], 1),
                      'labels': torch.randint(0, 20, (8,))})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        loss = model(batch, mode='loss')['final_loss']
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up (allocations, optimizer state)
    return timed(step, device, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads (0 = torch default)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--long-factor', type=int, default=16)
    parser.add_argument('--train-batch', type=int, default=2)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as tools/test.py does
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = ActionFormer(**THUMOS_I3D).to(device)

    base = model.max_seq_len
    bench_inference(model, base, device, 1)  # warm-up
    rows = []
    for T in (base, base * args.long_factor):
        network, full = bench_inference(model, T, device, args.repeats)
        rows.append((T, network, full))
    train = bench_train_step(model, args.train_batch, device, args.repeats)

    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else \
        f'CPU, {torch.get_num_threads()} threads'
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    print(f'ActionFormer THUMOS14 I3D model ({millions:.1f}M parameters) on {name}, '
          f'best of {args.repeats} runs')
    print('| input steps T | network (s) | predict incl. NMS (s) | ms per 1k steps | '
          'ratio to shortest |')
    print('|---:|---:|---:|---:|---:|')
    for T, network, full in rows:
        print(f'| {T} | {network:.3f} | {full:.3f} | {full / T * 1e3 * 1e3:.0f} | '
              f'{full / rows[0][2]:.1f} |')
    print(f'\ntraining step (batch {args.train_batch} x T={base}, forward + backward + AdamW): '
          f'{train:.3f} s')
    if device.type == 'cuda':
        print(f'peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2 ** 30:.2f} GiB')


if __name__ == '__main__':
    main()
