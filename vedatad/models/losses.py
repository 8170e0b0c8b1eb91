"""Losses of the ActionFormer head: sigmoid focal loss and center-DIoU loss.

Both compute in float32 (also under autocast) and support reduction 'none' | 'mean' | 'sum'.
"""
import torch
import torch.nn.functional as F


def _reduce(loss, reduction):
    if reduction == 'none':
        return loss
    if reduction == 'sum':
        return loss.sum()
    if reduction == 'mean':
        return loss.mean() if loss.numel() > 0 else loss.sum() * 0.0
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction='none'):
    """Focal loss (Lin et al., 2017) on independent sigmoid outputs.

    logits, targets: same shape; targets in [0, 1] (soft targets allowed).
    loss = alpha_t * (1 - p_t)^gamma * BCE, with p_t the probability of the target;
    alpha < 0 disables the class-balance weight.
    """
    logits, targets = logits.float(), targets.float()
    prob = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)


def ctr_diou_loss_1d(pred_offsets, target_offsets, reduction='none', eps=1e-8):
    """Distance-IoU loss (Zheng et al., 2020) for 1-D segments around a shared point.

    pred_offsets, target_offsets: (N, 2) non-negative distances (left, right) from the same
    anchor point, i.e. a segment (c - left, c + right).
    loss = 1 - IoU + (centre distance / enclosing length)^2
    """
    pred, target = pred_offsets.float(), target_offsets.float()
    if (pred < 0).any() or (target < 0).any():
        raise ValueError('center-DIoU loss needs non-negative offsets')
    lp, rp = pred[:, 0], pred[:, 1]
    lg, rg = target[:, 0], target[:, 1]
    # both segments contain the anchor point, so the overlap is min-left + min-right
    inter = torch.min(lp, lg) + torch.min(rp, rg)
    union = (lp + rp) + (lg + rg) - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.max(lp, lg) + torch.max(rp, rg)
    centre_dist = 0.5 * ((rp - lp) - (rg - lg))
    loss = 1.0 - iou + (centre_dist / enclosing.clamp(min=eps)) ** 2
    return _reduce(loss, reduction)
