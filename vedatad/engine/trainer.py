"""The training loop, generic over models that follow the engine's protocol.

Protocol: ``model(batch, mode='loss')`` returns a dict of scalar tensors with the total in
``'final_loss'``. Optional hooks on the (unwrapped) model: ``setup_work_dir(work_dir, resume,
rank)`` once before training, ``on_train_iter_start(global_iter)`` before each step,
``extra_state()`` / ``load_extra_state(d)`` saved in / restored from the checkpoint's meta.
Memory-bank models (a ``membank_cfg``) get the working bank set up by
``training_bank.setup_training_bank`` (dataset ``attach_bank``, model ``attach_bank_writer``);
a dataset with ``set_epoch_seed(seed)`` gets each epoch's seed for its per-item draws.

Per iteration: forward, non-finite guard, backward, optional clipping, optimiser and
scheduler step, EMA update. Every epoch starts from a seed derived from (seed, epoch, rank),
so a resumed run repeats the straight run exactly.
"""
import contextlib
import os
import resource
import time
from collections import defaultdict

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..registry import DATASETS, MODELS
from . import dist as dist_utils
from .checkpoint import find_latest, load_checkpoint, save_checkpoint, strip_prefix
from .dataloader import build_dataloader
from .ema import ModelEMA
from .lr_scheduler import build_scheduler
from .nonfinite import NonFiniteGuard
from .optimizer import build_optimizer
from .runtime import (configure_cpu, epoch_seed, get_logger, save_config_copy,
                      seed_everything)
from .training_bank import setup_training_bank

DEFAULT_TRAIN_CFG = dict(epochs=35, ckpt_interval=5, clip_grad_l2norm=-1, ema=dict(decay=0.999),
                         log_interval=10, seed=1234567891, amp=None, max_nonfinite_steps=10,
                         lr_scale_with_world_size=True, find_unused_parameters=False)


def _unwrap(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


def _amp_context(amp, device):
    if not amp or device.type != 'cuda':
        return contextlib.nullcontext()
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}[amp]
    return torch.autocast('cuda', dtype=dtype)


def build_train_dataset(cfg):
    """The training dataset; like the release, classes without any example are passed to the
    model (``train_cfg.head_empty_cls``) so it can silence them."""
    dataset = DATASETS.build(cfg.train_dataset)
    empty = getattr(dataset, 'empty_label_ids', None)
    model_train_cfg = cfg.model.get('train_cfg')
    if empty is not None and model_train_cfg is not None:
        model_train_cfg['head_empty_cls'] = list(empty)
    return dataset


class Trainer:
    def __init__(self, cfg, work_dir, resume=None):
        self.cfg = cfg
        self.work_dir = work_dir
        self.tcfg = {**DEFAULT_TRAIN_CFG, **cfg.get('train_cfg', {})}
        self.info = dist_utils.init_distributed(cfg.get('device'))
        configure_cpu(cfg)
        self.logger = get_logger(work_dir, self.info.rank)
        self.resume_path = self._resolve_resume(resume)
        self._prepare_work_dir()
        seed_everything(self.tcfg['seed'], deterministic=True)
        self._build()

    # ------------------------------------------------------------------ set-up
    def _resolve_resume(self, resume):
        if not resume:
            return None
        path = find_latest(self.work_dir) if resume == 'auto' else resume
        if path is None:
            raise FileNotFoundError(f'--resume: no checkpoint in {self.work_dir}')
        return path

    def _prepare_work_dir(self):
        if self.info.is_main:
            os.makedirs(self.work_dir, exist_ok=True)
            save_config_copy(self.cfg, self.work_dir)
        dist_utils.barrier()

    def _build(self):
        info, tcfg = self.info, self.tcfg
        self.train_set = build_train_dataset(self.cfg)
        self.loader = build_dataloader(self.train_set, self.cfg.get('train_dataloader'), True,
                                       tcfg['seed'], info.rank, info.world_size)
        self.raw_model = MODELS.build(self.cfg.model).to(info.device)
        optim_cfg = dict(self.cfg.optimizer)
        if tcfg['lr_scale_with_world_size']:
            # the release scales the rate with the number of devices
            optim_cfg['lr'] = optim_cfg['lr'] * info.world_size
        self.optimizer = build_optimizer(self.raw_model, optim_cfg)
        self.iters_per_epoch = len(self.loader)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.scheduler, self.iters_per_epoch)
        ema_cfg = tcfg['ema']
        self.ema = ModelEMA(self.raw_model, ema_cfg.get('decay', 0.999)) if ema_cfg else None
        self.scaler = torch.amp.GradScaler('cuda') if (
            tcfg['amp'] == 'fp16' and info.device.type == 'cuda') else None
        self.guard = NonFiniteGuard(tcfg['max_nonfinite_steps'], self.logger)
        self.start_epoch = self._load_resume() if self.resume_path else 0
        if hasattr(self.raw_model, 'setup_work_dir'):
            self.raw_model.setup_work_dir(self.work_dir, self.resume_path is not None, info.rank)
        # memory-bank models: the working bank goes to the dataset (reads) and the model
        # (write-back); None for models without a bank
        self.training_bank = setup_training_bank(self.raw_model, self.train_set, self.work_dir,
                                                 self.resume_path is not None, info.rank,
                                                 self.logger)
        self.model = self._wrap(self.raw_model)
        self.writer = self._tensorboard()

    def _wrap(self, model):
        if not self.info.distributed:
            return model
        device_ids = [self.info.local_rank] if self.info.device.type == 'cuda' else None
        return DistributedDataParallel(
            model, device_ids=device_ids,
            find_unused_parameters=self.tcfg['find_unused_parameters'])

    def _tensorboard(self):
        if not self.info.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(os.path.join(self.work_dir, 'tensorboard'))

    def _load_resume(self):
        ckpt = load_checkpoint(self.resume_path)
        self.raw_model.load_state_dict(strip_prefix(ckpt['state_dict']))
        if self.ema is not None:
            self.ema.load_state_dict(strip_prefix(ckpt['state_dict_ema']))
        self.optimizer.load_state_dict(ckpt['optimizer'])
        self.scheduler.load_state_dict(ckpt['scheduler'])
        meta = ckpt.get('meta') or {}
        if meta.get('extra_state') is not None and hasattr(self.raw_model, 'load_extra_state'):
            self.raw_model.load_extra_state(meta['extra_state'])
        if self.scaler is not None and meta.get('grad_scaler'):
            self.scaler.load_state_dict(meta['grad_scaler'])
        self.logger.info(f'resumed from {self.resume_path} after epoch {ckpt["epoch"]}')
        return int(ckpt['epoch'])

    # ------------------------------------------------------------------ loop
    def run(self):
        epochs = self.tcfg['epochs']
        self.logger.info(f'training {type(self.raw_model).__name__} for epochs '
                         f'{self.start_epoch + 1}..{epochs}, {self.iters_per_epoch} iterations '
                         f'per epoch, {self.info.world_size} process(es) on {self.info.device}')
        try:
            for epoch in range(self.start_epoch, epochs):
                self.train_epoch(epoch)
                if (epoch + 1) % self.tcfg['ckpt_interval'] == 0 or epoch + 1 == epochs:
                    self.save(epoch + 1)
        finally:
            if self.writer is not None:
                self.writer.close()
        return self.work_dir

    def train_epoch(self, epoch):
        self.model.train()
        self.loader.sampler.set_epoch(epoch)
        seed = epoch_seed(self.tcfg['seed'], epoch, self.info.rank)
        seed_everything(seed)
        self.loader.generator.manual_seed(seed)
        if hasattr(self.train_set, 'set_epoch_seed'):  # per-item draws: seed, epoch, rank, index
            self.train_set.set_epoch_seed(seed)
        sums, count, start = defaultdict(float), 0, time.time()
        bar = tqdm(self.loader, desc=f'epoch {epoch + 1}/{self.tcfg["epochs"]}',
                   disable=not self.info.is_main, dynamic_ncols=True, leave=False)
        for it, batch in enumerate(bar):
            global_iter = epoch * self.iters_per_epoch + it
            where = f'epoch {epoch + 1} iteration {it}{describe_batch_videos(batch)}'
            losses = self.train_step(batch, global_iter, where)
            if losses is None:
                continue
            count += 1
            for k, v in losses.items():
                sums[k] += v
            bar.set_postfix(loss=f'{losses["final_loss"]:.3f}')
            self._log_iter(epoch, it, global_iter, losses)
        if self.training_bank is not None:  # this epoch's bank writes land before the next reads
            self.training_bank.epoch_end()
        averages = {k: v / max(count, 1) for k, v in sums.items()}
        stats = self._epoch_stats()
        self.logger.info(f'epoch {epoch + 1} done in {time.time() - start:.1f}s, lr '
                         f'{self.scheduler.get_last_lr()[0]:.3e}, '
                         + ', '.join(f'{k} {v:.4f}' for k, v in averages.items())
                         + ''.join(f', {k} {v:.4g}' for k, v in stats.items()))
        if self.writer is not None:
            for k, v in stats.items():
                self.writer.add_scalar(k, v, (epoch + 1) * self.iters_per_epoch)
        return averages

    def _epoch_stats(self):
        """Scalars logged once per epoch: peak memory and whatever the model reports
        (``epoch_stats()``, e.g. memory-bank staleness)."""
        stats = {'memory/max_rss_mb': peak_rss_mb()}
        if self.info.device.type == 'cuda':
            stats['memory/cuda_max_allocated_mb'] = \
                torch.cuda.max_memory_allocated(self.info.device) / 2**20
        if hasattr(self.raw_model, 'epoch_stats'):
            stats.update(self.raw_model.epoch_stats())
        return stats

    def train_step(self, batch, global_iter, where):
        """One optimisation step; returns the losses as floats, or None when skipped."""
        if hasattr(self.raw_model, 'on_train_iter_start'):
            self.raw_model.on_train_iter_start(global_iter)
        self.optimizer.zero_grad(set_to_none=True)
        with _amp_context(self.tcfg['amp'], self.info.device):
            losses = self.model(batch, mode='loss')
        if self.guard.should_skip(losses, self.info.device, where):
            self.scheduler.step()  # the schedule follows iterations, skipped or not
            return None
        loss = losses['final_loss']
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if not self._clip_and_step(where):
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.raw_model)
        return {k: float(v.detach()) for k, v in losses.items() if torch.is_tensor(v)}

    def _clip_and_step(self, where):
        clip = self.tcfg['clip_grad_l2norm']
        grad_norm = None
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if clip and clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), clip)
        if not self.guard.grad_is_finite(grad_norm, self.info.device):
            self.logger.warning(f'non-finite gradient norm at {where}; update skipped')
            if self.scaler is not None:
                self.scaler.update()
            return False
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return True

    def _log_iter(self, epoch, it, global_iter, losses):
        if not self.info.is_main:
            return
        lr = self.scheduler.get_last_lr()[0]
        if self.writer is not None:
            self.writer.add_scalar('train/lr', lr, global_iter)
            for k, v in losses.items():
                self.writer.add_scalar(f'train/{k}', v, global_iter)
        interval = self.tcfg['log_interval']
        if interval and (it + 1) % interval == 0:
            self.logger.info(f'epoch {epoch + 1} [{it + 1}/{self.iters_per_epoch}] lr {lr:.3e} '
                             + ' '.join(f'{k} {v:.4f}' for k, v in losses.items()))

    def save(self, epoch):
        if self.info.is_main:
            meta = {'global_iter': epoch * self.iters_per_epoch,
                    'world_size': self.info.world_size,
                    'nonfinite_skipped': self.guard.total_skipped,
                    'extra_state': (self.raw_model.extra_state()
                                    if hasattr(self.raw_model, 'extra_state') else None),
                    'grad_scaler': self.scaler.state_dict() if self.scaler else None}
            state = {'epoch': epoch,
                     'state_dict': self.raw_model.state_dict(),
                     'state_dict_ema': self.ema.state_dict() if self.ema else None,
                     'optimizer': self.optimizer.state_dict(),
                     'scheduler': self.scheduler.state_dict(),
                     'meta': meta}
            path = save_checkpoint(self.work_dir, state)
            self.logger.info(f'saved {path}')
        dist_utils.barrier()


def describe_batch_videos(batch, limit=8):
    """' (videos a, b, ...)' naming the batch's videos, for warnings; '' when unknown."""
    items = batch.get('metas') if isinstance(batch, dict) else batch
    ids = [item.get('video_id') for item in items or [] if isinstance(item, dict)]
    ids = [str(v) for v in ids if v is not None]
    if not ids:
        return ''
    more = f', ... ({len(ids)} in all)' if len(ids) > limit else ''
    return f' (videos {", ".join(ids[:limit])}{more})'


def peak_rss_mb():
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(cfg, work_dir, resume=None):
    """Train from a resolved config; ``resume``: None, 'auto' (latest in work_dir) or a path."""
    return Trainer(cfg, work_dir, resume).run()
