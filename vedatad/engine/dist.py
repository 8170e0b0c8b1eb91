"""torch.distributed set-up from the variables torchrun exports (RANK, WORLD_SIZE, ...).

NCCL on GPUs, gloo on CPU. Without those variables everything runs in one process and the
helpers below degrade to no-ops, so the same code path serves both.
"""
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def init_distributed(device=None, timeout_minutes=30):
    """Join the process group torchrun describes (if any) and pick this process's device.

    ``device``: 'cpu' forces CPU (and gloo) even when GPUs exist; None picks CUDA if present.
    """
    use_cuda = torch.cuda.is_available() and device != 'cpu'
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device('cuda', local_rank)
    else:
        dev = torch.device('cpu')
    if 'WORLD_SIZE' in os.environ and not dist.is_initialized():
        dist.init_process_group(backend='nccl' if use_cuda else 'gloo', init_method='env://',
                                timeout=timedelta(minutes=timeout_minutes))
    return DistInfo(get_rank(), get_world_size(), local_rank, dev)


def is_dist():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_dist() else 0


def get_world_size():
    return dist.get_world_size() if is_dist() else 1


def barrier():
    if is_dist():
        dist.barrier()


def all_gather_objects(obj):
    """List of ``obj`` from every rank (rank order); [obj] without a process group."""
    if not is_dist():
        return [obj]
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj, src=0):
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def any_true(flag, device):
    """True on every rank if ``flag`` is true on any rank (so all ranks take the same branch)."""
    if not is_dist():
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def cleanup():
    if is_dist():
        dist.destroy_process_group()
