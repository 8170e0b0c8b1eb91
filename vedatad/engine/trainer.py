"""The training loop, generic over models that follow the engine's protocol.

Protocol: ``model(batch, mode='loss')`` returns a dict of scalar tensors with the total in
``'final_loss'``. Optional hooks on the (unwrapped) model: ``setup_work_dir(work_dir, resume,
rank)`` once before training, ``on_train_iter_start(global_iter)`` before each step,
``extra_state()`` / ``load_extra_state(d)`` saved in / restored from the checkpoint's meta,
``epoch_stats()`` (scalars logged per epoch), ``run_state_paths(work_dir)`` (what a run writes
besides checkpoints, e.g. a working memory bank: a fresh run refuses to reuse it).
Memory-bank models (a ``membank_cfg``) get the working bank set up by
``training_bank.setup_training_bank`` (dataset ``attach_bank``, model ``attach_bank_writer``);
a dataset with ``set_epoch_seed(seed)`` gets each epoch's seed for its per-item draws.

Per iteration: forward, non-finite guard, backward, optional clipping, optimiser and
scheduler step, EMA update (the release's order). Every epoch starts from a seed derived from
(seed, epoch, rank), so a resumed run repeats the straight run exactly.

Start-up (see ``config_schema``, ``workdir``, ``checkpoint``): strict config sections; a fresh
run refuses a work dir holding an earlier run unless ``overwrite`` (moved aside); stray
temporary checkpoint files are removed; ``load_from`` loads initial weights (fine-tuning;
optimiser, schedule, epoch and EMA start fresh, the EMA from the loaded weights);
``resume`` restores everything and keeps the checkpoint's schedule. Ctrl-C (or SIGTERM) stops
after the current iteration with ``TrainingInterrupted`` naming the last checkpoint (a second
Ctrl-C at once).
"""
import contextlib
import math
import os
import resource
import signal
import threading
import time
from collections import defaultdict

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..registry import DATASETS, MODELS
from ..version import __version__
from . import dist as dist_utils
from .checkpoint import CheckpointMismatchError, find_latest, load_checkpoint, \
    load_model_weights, load_state_strict, remove_stray_temp_files, save_checkpoint, \
    strip_prefix
from .config_schema import (dataloader_section, load_from_section, optimizer_section,
                            scheduler_section, train_cfg_section)
from .dataloader import build_dataloader
from .ema import ModelEMA
from .lr_scheduler import build_scheduler
from .nonfinite import NonFiniteGuard, batch_video_ids
from .optimizer import build_optimizer
from .run_info import class_names, data_info
from .runtime import (configure_cpu, config_text, epoch_seed, get_logger, save_config_copy,
                      seed_everything)
from .scalars import ScalarLog
from .workdir import (WorkDirInUseError, earlier_run, move_aside, move_work_dir_aside,
                      refusal_message)
from .training_bank import setup_training_bank


class ResumeError(ValueError):
    """A checkpoint that cannot be resumed with this config; the message says why."""


class _StopRequested(Exception):
    """Internal: a stop signal arrived; raised between iterations."""


class TrainingInterrupted(Exception):
    """Ctrl-C / SIGTERM during training: ``last_checkpoint`` (or None) can be resumed."""

    def __init__(self, work_dir, last_checkpoint, where):
        self.work_dir, self.last_checkpoint, self.where = work_dir, last_checkpoint, where
        saved = (f'last checkpoint {last_checkpoint}' if last_checkpoint
                 else 'no checkpoint saved yet')
        super().__init__(f'training interrupted at {where}; {saved}')


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


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9,
                                                                abs_tol=1e-15)
    return a == b


class Trainer:
    def __init__(self, cfg, work_dir, resume=None, overwrite=False):
        if resume and overwrite:
            raise ValueError('--resume continues the run in the work dir, --overwrite moves it '
                             'aside: give one of them')
        self.cfg = cfg
        self.work_dir = work_dir
        self.tcfg = train_cfg_section(cfg)
        self.optim_cfg = optimizer_section(cfg)
        self.sched_cfg = scheduler_section(cfg, self.tcfg['epochs'])
        self.loader_cfg = dataloader_section(cfg, 'train_dataloader')
        self.load_cfg = load_from_section(cfg)
        self.overwrite = overwrite
        self.info = dist_utils.init_distributed(cfg.get('device'))
        configure_cpu(cfg)
        self.resume_path = self._resolve_resume(resume)
        moved = self._claim_work_dir()
        self.logger = get_logger(work_dir, self.info.rank)
        if moved:
            self.logger.info(f'--overwrite: moved the earlier run in {work_dir} to {moved}')
        self._prepare_work_dir()
        seed_everything(self.tcfg['seed'], deterministic=True)
        self._build()

    # ------------------------------------------------------------------ set-up
    def _resolve_resume(self, resume):
        if not resume:
            return None
        path = find_latest(self.work_dir) if resume == 'auto' else resume
        if path is None:
            raise FileNotFoundError(f'--resume: no checkpoint in {self.work_dir} (start the run '
                                    'without --resume)')
        return path

    def _claim_work_dir(self):
        """A fresh run may not reuse an earlier run's checkpoints (nor overwrite them)."""
        if self.resume_path:
            return None
        found = self._seen_by_rank0(lambda: earlier_run(self.work_dir))
        if found and not self.overwrite:
            raise WorkDirInUseError(refusal_message(self.work_dir, found))
        moved = None
        if self.overwrite and self.info.is_main:
            moved = move_work_dir_aside(self.work_dir)
        dist_utils.barrier()
        return moved

    def _seen_by_rank0(self, look):
        """What global rank 0 finds, on every rank: ranks that looked at the shared work dir
        themselves could see rank 0's first writes of this run (its bank copy) as an earlier
        run's and refuse while rank 0 goes on."""
        return dist_utils.broadcast_object(look() if self.info.is_main else None)

    def _prepare_work_dir(self):
        self.config_text = config_text(self.cfg)
        if self.info.is_main:
            os.makedirs(self.work_dir, exist_ok=True)
            remove_stray_temp_files(self.work_dir, self.logger)
            save_config_copy(self.cfg, self.work_dir)
        dist_utils.barrier()

    def _build(self):
        info, tcfg = self.info, self.tcfg
        self.train_set = build_train_dataset(self.cfg)
        self.loader = build_dataloader(self.train_set, self.loader_cfg, True, tcfg['seed'],
                                       info.rank, info.world_size)
        self.raw_model = MODELS.build(self.cfg.model).to(info.device)
        self._claim_run_state()
        if self.load_cfg['load_from']:
            self._load_initial_weights()
        optim_cfg = dict(self.optim_cfg)
        if tcfg['lr_scale_with_world_size']:
            # the release scales the rate with the number of devices
            optim_cfg['lr'] = optim_cfg['lr'] * info.world_size
        self.optimizer = build_optimizer(self.raw_model, optim_cfg)
        self.iters_per_epoch = len(self.loader)
        self.scheduler = build_scheduler(self.optimizer, self.sched_cfg, self.iters_per_epoch)
        ema_cfg = tcfg['ema']
        # after load_from: the average starts from the loaded weights
        self.ema = ModelEMA(self.raw_model, ema_cfg['decay']) if ema_cfg else None
        self.scaler = torch.amp.GradScaler('cuda') if (
            tcfg['amp'] == 'fp16' and info.device.type == 'cuda') else None
        self.guard = NonFiniteGuard(tcfg['max_nonfinite_steps'], self.logger)
        self.resume_global_iter = None
        self.start_epoch = self._load_resume() if self.resume_path else 0
        if hasattr(self.raw_model, 'setup_work_dir'):  # models with run state of their own
            self.raw_model.setup_work_dir(self.work_dir, self.resume_path is not None, info.rank)
        # memory-bank models: the working bank goes to the dataset (reads) and the model
        # (write-back); None for models without a bank
        self.training_bank = setup_training_bank(self.raw_model, self.train_set, self.work_dir,
                                                 self.resume_path is not None, info.rank,
                                                 self.logger, self.resume_global_iter)
        self.model = self._wrap(self.raw_model)
        self.writer = self._tensorboard()
        self.scalars = ScalarLog(self.work_dir, self.start_epoch) if info.is_main else None

    def _claim_run_state(self):
        """The model's run state (e.g. a working memory bank) of an earlier run is not reused
        by a fresh run: refused, or moved aside with ``overwrite``."""
        if self.resume_path or not hasattr(self.raw_model, 'run_state_paths'):
            return
        found = self._seen_by_rank0(
            lambda: earlier_run(self.work_dir, self.raw_model.run_state_paths(self.work_dir)))
        if not found:
            return
        if not self.overwrite:
            raise WorkDirInUseError(refusal_message(self.work_dir, found))
        if self.info.is_main:
            for path in found:
                self.logger.info(f'--overwrite: moved {path} of an earlier run to '
                                 f'{move_aside(path)}')
        dist_utils.barrier()

    def _load_initial_weights(self):
        lcfg = self.load_cfg
        if self.resume_path:
            self.logger.info(f'load_from={lcfg["load_from"]} ignored: resuming from '
                             f'{self.resume_path}')
            return
        try:
            load_model_weights(self.raw_model, lcfg['load_from'], use_ema=lcfg['load_from_ema'],
                               logger=self.logger, strict=lcfg['load_from_strict'],
                               prefix=lcfg['load_from_prefix'])
        except CheckpointMismatchError as err:  # strict only: what to do about it
            raise CheckpointMismatchError(
                f'{err}\nTo load what fits and re-initialise the rest (e.g. a '
                'head for another number of classes), set load_from_strict=False.') from None

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

    # ------------------------------------------------------------------ resume
    def _load_resume(self):
        path = self.resume_path
        ckpt = load_checkpoint(path)
        missing = [k for k in ('epoch', 'state_dict', 'optimizer', 'scheduler')
                   if not isinstance(ckpt, dict) or ckpt.get(k) is None]
        if missing or not isinstance(ckpt.get('meta'), dict):
            raise ResumeError(f'{path}: not a vedatad training checkpoint (no '
                              f'{", ".join(missing) or "meta"}): it cannot be resumed; to start '
                              f'a new run from its weights use load_from={path}')
        load_state_strict(self.raw_model, strip_prefix(ckpt['state_dict']), f'{path} [state_dict]')
        if self.ema is not None:
            if ckpt.get('state_dict_ema') is None:
                raise ResumeError(f'{path}: has no EMA weights but train_cfg.ema is set')
            load_state_strict(self.ema.module, strip_prefix(ckpt['state_dict_ema']),
                              f'{path} [state_dict_ema]')
        self.optimizer.load_state_dict(ckpt['optimizer'])
        planned = self.scheduler.plan()
        self.scheduler.load_state_dict(ckpt['scheduler'])
        meta = ckpt['meta']
        # the iteration the checkpoint was saved at: its memory-bank point has this number
        self.resume_global_iter = meta.get('global_iter')
        self._check_resumed_schedule(path, planned, self.scheduler.plan(), meta, ckpt['epoch'])
        if meta.get('extra_state') is not None and hasattr(self.raw_model, 'load_extra_state'):
            self.raw_model.load_extra_state(meta['extra_state'])
        if self.scaler is not None and meta.get('grad_scaler'):
            self.scaler.load_state_dict(meta['grad_scaler'])
        self.logger.info(f'resumed from {path} after epoch {ckpt["epoch"]}')
        return int(ckpt['epoch'])

    def _check_resumed_schedule(self, path, planned, saved, meta, epoch):
        """A resumed run keeps the checkpoint's schedule: the same plan continues exactly;
        more epochs (cosine) run on at the schedule's end value; anything else is refused.
        Another number of processes continues the same schedule in epochs."""
        saved_iters = meta.get('iters_per_epoch') or (
            meta.get('global_iter', 0) // epoch if epoch else None)
        if saved_iters and saved_iters != self.iters_per_epoch:
            saved = self._rescale_schedule(path, saved_iters, meta.get('world_size') or 1, epoch)
        diffs = {k: (saved.get(k), planned.get(k)) for k in sorted(set(saved) | set(planned))
                 if not _same(saved.get(k), planned.get(k))}
        if not diffs:
            return
        per_epoch = self.iters_per_epoch
        if set(diffs) == {'max_steps'} and planned['max_steps'] > saved['max_steps']:
            end = saved['max_steps'] // per_epoch
            self.logger.warning(
                f'train_cfg.epochs={self.tcfg["epochs"]} extends the run past the end of its '
                f'schedule (epoch {end}): a resumed run never restarts its schedule, so epochs '
                f'{max(end, epoch) + 1}..{self.tcfg["epochs"]} run at the final rate '
                f'{saved.get("eta_min")}. To train with a new schedule, start a new run with '
                f'load_from={path}')
            return
        shown = '; '.join(f'{k}: checkpoint {a!r}, config {b!r}' for k, (a, b) in diffs.items())
        hint = ''
        if set(diffs) == {'max_steps'}:
            hint = (f' (the checkpoint\'s schedule spans {saved["max_steps"] // per_epoch} '
                    f'epochs, train_cfg.epochs={self.tcfg["epochs"]} is shorter; to stop early '
                    'keep train_cfg.epochs and set train_cfg.early_stop_epochs)')
        raise ResumeError(
            f'{path}: the config\'s learning-rate schedule differs from the one the checkpoint '
            f'was trained with ({shown}){hint}. A resumed run keeps its schedule: resume with '
            f'the same settings, or start a new run from its weights with load_from={path}')

    def _rescale_schedule(self, path, saved_iters, saved_world, epoch):
        """The checkpoint ran with another number of iterations per epoch (processes, batch
        size or videos changed): its schedule, defined in epochs, is re-expressed in this
        run's iterations; the base rates follow the world size when
        ``lr_scale_with_world_size``. Returns the rescaled plan."""
        new, sched = self.iters_per_epoch, self.scheduler

        def steps(value):
            return value // saved_iters * new if value % saved_iters == 0 \
                else round(value * new / saved_iters)
        sched.warmup_steps = steps(sched.warmup_steps)
        if hasattr(sched, 'max_steps'):
            sched.max_steps = steps(sched.max_steps)
        if hasattr(sched, 'milestones'):
            sched.milestones = [steps(m) for m in sched.milestones]
        sched.last_epoch = epoch * new
        factor = (self.info.world_size / saved_world
                  if self.tcfg['lr_scale_with_world_size'] else 1.0)
        sched.base_lrs = [base * factor for base in sched.base_lrs]
        rates = [sched.rate(base, sched.last_epoch) for base in sched.base_lrs]
        for group, base, rate in zip(self.optimizer.param_groups, sched.base_lrs, rates):
            group['initial_lr'], group['lr'] = base, rate
        sched._last_lr = rates
        self.logger.warning(
            f'{path} ran with {saved_iters} iterations per epoch on {saved_world} process(es); '
            f'this run has {new} on {self.info.world_size}: the schedule continues in epochs '
            f'(rates x{factor:g}), so the run is not an exact continuation')
        return sched.plan()

    # ------------------------------------------------------------------ loop
    @property
    def last_epoch(self):
        """The epoch training stops after (``early_stop_epochs`` or ``epochs``)."""
        return self.tcfg['early_stop_epochs'] or self.tcfg['epochs']

    def run(self):
        stop = self.last_epoch
        self.logger.info(f'training {type(self.raw_model).__name__} for epochs '
                         f'{self.start_epoch + 1}..{stop} (schedule of {self.tcfg["epochs"]}), '
                         f'{self.iters_per_epoch} iterations per epoch, '
                         f'{self.info.world_size} process(es) on {self.info.device}')
        if self.start_epoch >= stop:
            self.logger.info(f'nothing to train: the checkpoint already completed {stop} epochs')
        self._where = f'epoch {self.start_epoch + 1}'
        try:
            with self._stop_on_signals():
                for epoch in range(self.start_epoch, stop):
                    self.train_epoch(epoch)
                    if (epoch + 1) % self.tcfg['ckpt_interval'] == 0 or epoch + 1 == stop:
                        self.save(epoch + 1)
                    if epoch + 1 < stop:
                        self._check_stop()
        except (KeyboardInterrupt, _StopRequested):
            raise TrainingInterrupted(self.work_dir, find_latest(self.work_dir),
                                      self._where) from None
        finally:
            if self.writer is not None:
                self.writer.close()
            if self.scalars is not None:
                self.scalars.close()
        return self.work_dir

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """Ctrl-C / SIGTERM ask the loop to stop after the current iteration (an exception
        raised at an arbitrary point could leave a lock held or a write half done); a second
        Ctrl-C stops at once."""
        self._stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(signum).name

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _check_stop(self):
        """All ranks agree whether to stop (one rank leaving would hang the others)."""
        requested = getattr(self, '_stop_signal', None) is not None
        if self.info.distributed:
            requested = dist_utils.any_true(requested, self.info.device)
        if requested:
            raise _StopRequested

    def train_epoch(self, epoch):
        self.model.train()
        self.loader.sampler.set_epoch(epoch)
        seed = epoch_seed(self.tcfg['seed'], epoch, self.info.rank)
        seed_everything(seed)
        self.loader.generator.manual_seed(seed)
        if hasattr(self.train_set, 'set_epoch_seed'):  # per-item draws: seed, epoch, rank, index
            self.train_set.set_epoch_seed(seed)
        sums, count, start = defaultdict(float), 0, time.time()
        stop = self.last_epoch
        bar = tqdm(self.loader, desc=f'epoch {epoch + 1}/{stop}',
                   disable=not self.info.is_main, dynamic_ncols=True, leave=False)
        try:
            for it, batch in enumerate(bar):
                global_iter = epoch * self.iters_per_epoch + it
                self._where = f'epoch {epoch + 1} iteration {it}'
                losses = self.train_step(batch, global_iter, self._where)
                if losses is None:
                    self._check_stop()
                    continue
                count += 1
                for k, v in losses.items():
                    sums[k] += v
                bar.set_postfix(loss=f'{losses["final_loss"]:.3f}')
                self._log_iter(epoch, it, global_iter, losses)
                self._check_stop()
        finally:
            bar.close()
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
        """One optimisation step; returns the losses as floats, or None when skipped. The
        rates the step used are left in ``self.step_lrs``."""
        if hasattr(self.raw_model, 'on_train_iter_start'):
            self.raw_model.on_train_iter_start(global_iter)
        self.step_lrs = [group['lr'] for group in self.optimizer.param_groups]
        self.optimizer.zero_grad(set_to_none=True)
        with _amp_context(self.tcfg['amp'], self.info.device):
            losses = self.model(batch, mode='loss')
        if self.guard.should_skip(losses, self.info.device, where, batch_video_ids(batch)):
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
        lrs = self.step_lrs
        self.scalars.write(epoch + 1, it, global_iter, lrs, losses)
        if self.writer is not None:
            self.writer.add_scalar('train/lr', lrs[0], global_iter)
            for k, v in losses.items():
                self.writer.add_scalar(f'train/{k}', v, global_iter)
        interval = self.tcfg['log_interval']
        if interval and (it + 1) % interval == 0:
            self.logger.info(f'epoch {epoch + 1} [{it + 1}/{self.iters_per_epoch}] '
                             f'lr {lrs[0]:.3e} '
                             + ' '.join(f'{k} {v:.4f}' for k, v in losses.items()))

    # ------------------------------------------------------------------ checkpoints
    def save(self, epoch):
        if self.info.is_main:
            if self.training_bank is not None:  # first the bank's point, then the checkpoint
                self.training_bank.mark_consistent(epoch * self.iters_per_epoch)
            state = {'epoch': epoch,
                     'state_dict': self.raw_model.state_dict(),
                     'state_dict_ema': self.ema.state_dict() if self.ema else None,
                     'optimizer': self.optimizer.state_dict(),
                     'scheduler': self.scheduler.state_dict(),
                     'meta': self.checkpoint_meta(epoch)}
            path = save_checkpoint(self.work_dir, state)
            self.logger.info(f'saved {path}')
        dist_utils.barrier()

    def checkpoint_meta(self, epoch):
        """The checkpoint's ``meta`` (documented in ``checkpoint``)."""
        model = self.raw_model
        return {'global_iter': epoch * self.iters_per_epoch,
                'iters_per_epoch': self.iters_per_epoch,
                'world_size': self.info.world_size,
                'schedule': {'epochs': self.tcfg['epochs'],
                             'iters_per_epoch': self.iters_per_epoch,
                             **self.scheduler.plan()},
                'nonfinite_skipped': self.guard.total_skipped,
                'extra_state': model.extra_state() if hasattr(model, 'extra_state') else None,
                'grad_scaler': self.scaler.state_dict() if self.scaler else None,
                'classes': class_names(self.train_set, _num_classes(model)),
                'data': data_info(self.train_set, model),
                'config': self.config_text,
                'vedatad_version': __version__}


def _num_classes(model):
    detector = getattr(model, 'detector', model)
    return getattr(model, 'num_classes', None) or getattr(detector, 'num_classes', None)


def peak_rss_mb():
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(cfg, work_dir, resume=None, overwrite=False):
    """Train from a resolved config; ``resume``: None, 'auto' (latest in work_dir) or a path;
    ``overwrite``: move an earlier run in ``work_dir`` aside instead of refusing it."""
    return Trainer(cfg, work_dir, resume, overwrite).run()
