"""Training targets of the point-based head (which points learn which action).

A point (t, reg_min, reg_max, stride) is a positive for an action when
  * it lies in the action's centre region: within radius * stride of the action centre
    and inside the action ('radius' sampling; 'none' = anywhere inside the action), and
  * the action's farthest boundary is within its level's regression range
    (reg_min <= max(t - start, end - t) <= reg_max).
Among several such actions the shortest wins; actions whose length ties with the
shortest (within 1e-3) all set their class (multi-hot target).
"""
import torch
import torch.nn.functional as F

LENGTH_TIE_TOL = 1e-3


def _centre_region_mask(points, segs, radius):
    # points: P, 4   segs: P, N, 2  ->  P, N bool
    t, stride = points[:, 0, None], points[:, 3, None]
    centre = 0.5 * (segs[..., 0] + segs[..., 1])
    lo = torch.maximum(centre - stride * radius, segs[..., 0])
    hi = torch.minimum(centre + stride * radius, segs[..., 1])
    return torch.minimum(t - lo, hi - t) > 0


def assign_point_targets(points, gt_segments, gt_labels, num_classes, center_sample='radius',
                         radius=1.5):
    """Targets of one video.

    points: (P, 4) all levels concatenated; gt_segments: (N, 2) in input feature steps;
    gt_labels: (N,) long.
    Returns cls_targets (P, num_classes) in {0, 1} and reg_targets (P, 2): distances from
    the point to the start / end of its assigned action, in units of the point's stride.
    """
    num_pts, num_gts = points.shape[0], gt_segments.shape[0]
    if num_gts == 0:
        return (gt_segments.new_zeros(num_pts, num_classes),
                gt_segments.new_zeros(num_pts, 2))
    t = points[:, 0, None]
    segs = gt_segments[None].expand(num_pts, num_gts, 2)
    dist = torch.stack((t - segs[..., 0], segs[..., 1] - t), dim=-1)  # P, N, 2

    if center_sample == 'radius':
        inside = _centre_region_mask(points, segs, radius)
    elif center_sample == 'none':
        inside = dist.min(dim=-1).values > 0
    else:
        raise ValueError(f"center_sample must be 'radius' or 'none', got {center_sample!r}")
    reach = dist.max(dim=-1).values
    in_range = (reach >= points[:, 1, None]) & (reach <= points[:, 2, None])

    lengths = (gt_segments[:, 1] - gt_segments[:, 0])[None].repeat(num_pts, 1)  # P, N
    lengths = lengths.masked_fill(~(inside & in_range), float('inf'))
    min_len, min_idx = lengths.min(dim=1)
    winners = (lengths <= min_len[:, None] + LENGTH_TIE_TOL) & torch.isfinite(lengths)

    one_hot = F.one_hot(gt_labels.long(), num_classes).to(dist.dtype)  # N, K
    # clamp: two identical actions with the same label still give a target of 1
    cls_targets = (winners.to(dist.dtype) @ one_hot).clamp(0.0, 1.0)
    reg_targets = dist[torch.arange(num_pts, device=dist.device), min_idx]
    return cls_targets, reg_targets / points[:, 3, None]
