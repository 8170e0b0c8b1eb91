"""Guard against non-finite losses: skip the step, warn, and stop after too many in a row.

All ranks agree on the verdict (one all-reduce), so they skip the same step and DDP's
gradient all-reduce never waits for a rank that bailed out.
"""
import math

import torch

from .dist import any_true


class NonFiniteLossError(RuntimeError):
    pass


class NonFiniteGuard:
    def __init__(self, max_consecutive=10, logger=None):
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total_skipped = 0
        self.logger = logger

    def should_skip(self, losses, device, where):
        """True when any rank's losses are non-finite; raises after ``max_consecutive``."""
        bad = {k: float(v.detach()) for k, v in losses.items()
               if torch.is_tensor(v) and not torch.isfinite(v.detach()).all()}
        if not any_true(bool(bad), device):
            self.consecutive = 0
            return False
        self.consecutive += 1
        self.total_skipped += 1
        detail = ', '.join(f'{k}={v}' for k, v in bad.items()) or 'on another rank'
        message = (f'non-finite loss at {where} ({detail}); step skipped '
                   f'({self.consecutive} in a row, {self.total_skipped} in total)')
        if self.logger:
            self.logger.warning(message)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f'training stopped: {self.consecutive} consecutive steps had non-finite losses '
                f'(last at {where}: {detail}). Lower the learning rate, enable gradient clipping '
                '(train_cfg.clip_grad_l2norm) or check the input features for NaN/inf.')
        return True

    def grad_is_finite(self, grad_norm, device):
        ok = grad_norm is None or math.isfinite(float(grad_norm))
        return not any_true(not ok, device)
