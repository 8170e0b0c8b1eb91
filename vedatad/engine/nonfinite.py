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

    def should_skip(self, losses, device, where, videos=None):
        """True when any rank's losses are non-finite; raises after ``max_consecutive``.
        ``videos``: the batch's video ids, named in the warning and the error."""
        bad = {k: float(v.detach()) for k, v in losses.items()
               if torch.is_tensor(v) and not torch.isfinite(v.detach()).all()}
        if not any_true(bool(bad), device):
            self.consecutive = 0
            return False
        self.consecutive += 1
        self.total_skipped += 1
        detail = ', '.join(f'{k}={v}' for k, v in bad.items()) or 'on another rank'
        if bad and videos:
            shown = ', '.join(map(str, videos[:8])) + (', ...' if len(videos) > 8 else '')
            detail += f'; videos {shown}'
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


def batch_video_ids(batch):
    """Video ids of a training batch: a list of item dicts (``video_id``) or a dict batch
    with ``metas`` (list of dicts with ``video_id``) or ``video_ids``; [] when it has none."""
    if isinstance(batch, dict):
        if batch.get('video_ids') is not None:
            return [str(v) for v in batch['video_ids']]
        batch = batch.get('metas') or []
    if isinstance(batch, (list, tuple)):
        return [str(item['video_id']) for item in batch
                if isinstance(item, dict) and 'video_id' in item]
    return []
