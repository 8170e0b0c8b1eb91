"""Per-iteration learning-rate schedules of the ActionFormer release, in closed form.

``warmup_cosine``: linear warm-up from ``warmup_start_lr`` reaching the base rate at the end
of warm-up (the ramp divides by ``warmup_steps - 1``, as the release does), then cosine
annealing to ``eta_min`` at ``max_steps``. ``warmup_multistep``: the same warm-up, then the
rate is multiplied by ``gamma`` at each milestone (counted after warm-up). Without warm-up
the release uses PyTorch's CosineAnnealingLR / MultiStepLR, reproduced here.

Being closed-form, the rate depends only on the step counter, so a resumed run continues
the exact schedule. Past ``max_steps`` the rate stays at the schedule's end value (the
release's chained cosine would rise again): a run extended beyond its plan never restarts
the schedule.
"""
import math
from bisect import bisect_right

from torch.optim.lr_scheduler import LRScheduler


class WarmupScheduleLR(LRScheduler):
    """Base: ``rate(base, step)`` gives each group's rate from its base rate."""

    def __init__(self, optimizer, warmup_steps, warmup_start_lr=0.0, last_epoch=-1):
        self.warmup_steps = warmup_steps
        self.warmup_start_lr = warmup_start_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [self.rate(base, self.last_epoch) for base in self.base_lrs]

    def _warmup(self, base, step):
        ramp = max(self.warmup_steps - 1, 1)
        return self.warmup_start_lr + step * (base - self.warmup_start_lr) / ramp

    def rate(self, base, step):
        raise NotImplementedError

    def plan(self):
        """What defines the schedule (compared when a run is resumed)."""
        return {'type': type(self).__name__, 'warmup_steps': self.warmup_steps,
                'warmup_start_lr': self.warmup_start_lr,
                'base_lrs': [float(b) for b in self.base_lrs]}


class WarmupCosineLR(WarmupScheduleLR):
    def __init__(self, optimizer, warmup_steps, max_steps, warmup_start_lr=0.0, eta_min=1e-8,
                 last_epoch=-1):
        self.max_steps = max_steps
        self.eta_min = eta_min
        super().__init__(optimizer, warmup_steps, warmup_start_lr, last_epoch)

    def rate(self, base, step):
        if step < self.warmup_steps:
            return self._warmup(base, step)
        span = max(self.max_steps - self.warmup_steps, 1)
        progress = min(step - self.warmup_steps, span) / span  # held at the end value
        return self.eta_min + 0.5 * (base - self.eta_min) * (1 + math.cos(math.pi * progress))

    def plan(self):
        return {**super().plan(), 'max_steps': self.max_steps, 'eta_min': self.eta_min}


class WarmupMultiStepLR(WarmupScheduleLR):
    def __init__(self, optimizer, warmup_steps, milestones, gamma=0.1, warmup_start_lr=0.0,
                 last_epoch=-1):
        self.milestones = sorted(milestones)
        self.gamma = gamma
        super().__init__(optimizer, warmup_steps, warmup_start_lr, last_epoch)

    def rate(self, base, step):
        if step < self.warmup_steps:
            return self._warmup(base, step)
        return base * self.gamma ** bisect_right(self.milestones, step - self.warmup_steps)

    def plan(self):
        return {**super().plan(), 'milestones': list(self.milestones), 'gamma': self.gamma}


def build_scheduler(optimizer, cfg, iters_per_epoch):
    """Scheduler stepped once per iteration. ``cfg`` keys (release names in brackets):
    type 'cosine' | 'multistep' (schedule_type), warmup (bool), warmup_epochs,
    total_epochs (epochs + warmup_epochs: the whole schedule, ``train_cfg.epochs``),
    steps (schedule_steps, epochs after warm-up), gamma (schedule_gamma), eta_min,
    warmup_start_lr. See ``config_schema.scheduler_section``."""
    kind = cfg.get('type', 'cosine')
    warmup = cfg.get('warmup', True)
    warmup_epochs = cfg.get('warmup_epochs', 5) if warmup else 0
    warmup_steps = warmup_epochs * iters_per_epoch
    max_steps = cfg['total_epochs'] * iters_per_epoch
    milestones = [e * iters_per_epoch for e in cfg.get('steps') or []]
    gamma = cfg.get('gamma', 0.1)
    eta_min = cfg.get('eta_min')
    if kind == 'cosine':
        # release: 1e-8 after warm-up, PyTorch's CosineAnnealingLR (down to 0) without
        if eta_min is None:
            eta_min = 1e-8 if warmup else 0.0
        return WarmupCosineLR(optimizer, warmup_steps, max_steps,
                              cfg.get('warmup_start_lr', 0.0) if warmup else 0.0, eta_min)
    if kind == 'multistep':
        return WarmupMultiStepLR(optimizer, warmup_steps, milestones, gamma,
                                 cfg.get('warmup_start_lr', 0.0) if warmup else 0.0)
    raise ValueError(f'scheduler.type: unsupported schedule {kind!r} (cosine or multistep)')
