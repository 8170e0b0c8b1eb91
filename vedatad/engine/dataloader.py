"""Data loaders over a distributed sampler (also with one process, so the order only depends
on seed and epoch), list-of-dicts batches by default."""
import functools

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..registry import COLLATE_FUNCTIONS
from ..utils.workers import check_worker_tempdir
from .runtime import seed_worker


def build_collate(spec):
    """``'list_collate'``, ``dict(type='list_collate', **kwargs)`` or None (list of dicts)."""
    if spec is None:
        spec = 'list_collate'
    if isinstance(spec, str):
        spec = {'type': spec}
    spec = dict(spec)
    name = spec.pop('type')
    fn = COLLATE_FUNCTIONS.get(name)
    if fn is None:
        raise KeyError(f'collate_fn: {name!r} is not registered in COLLATE_FUNCTIONS')
    return functools.partial(fn, **spec) if spec else fn


def build_dataloader(dataset, loader_cfg, training, seed, rank, world_size):
    """Training: shuffled per epoch (call ``loader.sampler.set_epoch``), incomplete last batch
    dropped, and every sample goes to at most one rank per epoch: the sampler drops the
    remainder of ``len(dataset) / world_size`` (a different few samples each epoch) instead
    of padding with repeats. Memory-bank training relies on it: two ranks never write the
    same video's chunks in one epoch, so no read races a write and a resumed run repeats
    the straight one exactly. Testing: in order, each rank a strided share (padded with
    repeats, which the inference loop removes)."""
    loader_cfg = dict(loader_cfg or {})
    batch_size = loader_cfg.get('batch_size', 1)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=training,
                                 seed=seed, drop_last=training)
    num_workers = loader_cfg.get('num_workers', 0)
    check_worker_tempdir('num_workers', num_workers)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                        num_workers=num_workers,
                        collate_fn=build_collate(loader_cfg.get('collate_fn')),
                        drop_last=training, worker_init_fn=seed_worker,
                        generator=torch.Generator(), pin_memory=False,
                        persistent_workers=False)
    if training and len(loader) == 0:
        raise ValueError(f'train_dataloader: {len(dataset)} training videos give no full batch '
                         f'of {batch_size} per process on {world_size} process(es)')
    return loader
