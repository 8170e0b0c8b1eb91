"""Focal loss and center-DIoU loss against plain formulas and hand-worked cases."""
import math

import pytest
import torch

from vedatad.models.losses import ctr_diou_loss_1d, sigmoid_focal_loss


def plain_focal(logit, target, alpha=0.25, gamma=2.0):
    p = 1 / (1 + math.exp(-logit))
    pos = -alpha * (1 - p) ** gamma * math.log(p)
    neg = -(1 - alpha) * p ** gamma * math.log(1 - p)
    return target * pos + (1 - target) * neg if target in (0.0, 1.0) else None


def test_focal_loss_matches_plain_formula_for_hard_targets():
    logits = torch.tensor([-3.0, -0.5, 0.0, 0.7, 2.5, 4.0])
    targets = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    loss = sigmoid_focal_loss(logits, targets)
    expected = [plain_focal(x, t) for x, t in zip(logits.tolist(), targets.tolist())]
    assert loss.tolist() == pytest.approx(expected, rel=1e-5)
    assert sigmoid_focal_loss(logits, targets, reduction='sum').item() == \
        pytest.approx(sum(expected), rel=1e-5)
    assert sigmoid_focal_loss(logits, targets, reduction='mean').item() == \
        pytest.approx(sum(expected) / 6, rel=1e-5)


def test_focal_loss_soft_targets_and_no_alpha():
    logit, target = torch.tensor([0.3]), torch.tensor([0.9])
    p = torch.sigmoid(logit)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    expected = (0.25 * target + 0.75 * (1 - target)) * (1 - p_t) ** 2 * bce
    torch.testing.assert_close(sigmoid_focal_loss(logit, target), expected)
    torch.testing.assert_close(sigmoid_focal_loss(logit, target, alpha=-1), (1 - p_t) ** 2 * bce)


def test_focal_loss_easy_examples_cost_less_than_bce():
    # a confident correct prediction is down-weighted by (1 - p_t)^gamma
    easy = sigmoid_focal_loss(torch.tensor([5.0]), torch.tensor([1.0]), alpha=-1)
    bce = torch.nn.functional.softplus(torch.tensor([-5.0]))
    assert easy.item() < 1e-3 * bce.item()


def test_focal_loss_rejects_unknown_reduction():
    with pytest.raises(ValueError, match='reduction'):
        sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), reduction='avg')


def test_diou_perfect_prediction_is_zero():
    offsets = torch.tensor([[1.0, 3.0], [2.5, 0.5]])
    assert ctr_diou_loss_1d(offsets, offsets).abs().max().item() < 1e-6


def test_diou_hand_worked_cases():
    # target [-1, 3] around the point; prediction [-2, 2]: overlap 3, union 5,
    # enclosing 5, centres 0 vs 1 -> 1 - 3/5 + (1/5)^2
    pred, target = torch.tensor([[2.0, 2.0]]), torch.tensor([[1.0, 3.0]])
    assert ctr_diou_loss_1d(pred, target).item() == pytest.approx(1 - 0.6 + 0.04, rel=1e-6)
    # nested, same centre: prediction [-1, 1] in target [-2, 2] -> 1 - 2/4
    pred, target = torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 2.0]])
    assert ctr_diou_loss_1d(pred, target).item() == pytest.approx(0.5, rel=1e-6)
    # degenerate prediction at the point vs target [0, 4]: IoU 0, centre distance 2,
    # enclosing 4 -> 1 + 0.25
    pred, target = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    assert ctr_diou_loss_1d(pred, target).item() == pytest.approx(1.25, rel=1e-6)


def test_diou_reductions_and_validation():
    pred = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    target = torch.tensor([[2.0, 2.0], [2.0, 2.0]])
    assert ctr_diou_loss_1d(pred, target, reduction='sum').item() == pytest.approx(0.5)
    assert ctr_diou_loss_1d(pred, target, reduction='mean').item() == pytest.approx(0.25)
    empty = torch.zeros(0, 2, requires_grad=True)
    assert ctr_diou_loss_1d(empty, torch.zeros(0, 2), reduction='mean').item() == 0.0
    with pytest.raises(ValueError, match='non-negative'):
        ctr_diou_loss_1d(torch.tensor([[-1.0, 1.0]]), target[:1])


def test_diou_gradient_pulls_prediction_towards_target():
    pred = torch.tensor([[1.5, 1.0]], requires_grad=True)
    ctr_diou_loss_1d(pred, torch.tensor([[1.0, 3.0]])).sum().backward()
    # the too-short right offset must grow, the too-long left one must shrink
    assert pred.grad[0, 1] < 0
    assert pred.grad[0, 0] > 0
