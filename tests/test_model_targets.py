"""Point target assignment on hand-made cases."""
import pytest
import torch

from vedatad.models.point_generator import PointGenerator
from vedatad.models.point_targets import assign_point_targets


def points_of(lengths, strides, ranges):
    return torch.cat(PointGenerator(strides, ranges)(lengths), dim=0)


def test_point_generator_rows():
    pts = PointGenerator([1, 2], [(0, 4), (4, 1e4)])([4, 2])
    assert pts[0].tolist() == [[0, 0, 4, 1], [1, 0, 4, 1], [2, 0, 4, 1], [3, 0, 4, 1]]
    assert pts[1].tolist() == [[0, 4, 1e4, 2], [2, 4, 1e4, 2]]
    with pytest.raises(ValueError, match='regression ranges'):
        PointGenerator([1, 2], [(0, 4)])


def test_center_sampling_radius_and_targets():
    # one level, stride 1, everything in range; action [2, 9] with centre 5.5
    pts = points_of([12], [1], [(0, 100)])
    cls, reg = assign_point_targets(pts, torch.tensor([[2.0, 9.0]]), torch.tensor([1]), 3)
    positive = cls.sum(1) > 0
    # centre region (5.5 - 1.5, 5.5 + 1.5) = (4, 7), strict on both ends
    assert positive.nonzero().flatten().tolist() == [5, 6]
    assert cls[5].tolist() == [0, 1, 0]
    assert reg[6].tolist() == [4.0, 3.0]  # distances to start / end in strides


def test_center_region_is_clipped_to_the_action_and_scaled_by_stride():
    # stride 4: radius 6 steps around centre 5 would reach 11, but the action ends at 7
    pts = points_of([4], [4], [(0, 100)])  # t = 0, 4, 8, 12
    cls, reg = assign_point_targets(pts, torch.tensor([[3.0, 7.0]]), torch.tensor([0]), 1)
    assert (cls[:, 0] > 0).nonzero().flatten().tolist() == [1]
    assert reg[1].tolist() == [pytest.approx(0.25), pytest.approx(0.75)]


def test_no_center_sampling_uses_the_whole_action():
    pts = points_of([12], [1], [(0, 100)])
    cls, _ = assign_point_targets(pts, torch.tensor([[2.0, 9.0]]), torch.tensor([0]), 1,
                                  center_sample='none')
    assert (cls[:, 0] > 0).nonzero().flatten().tolist() == list(range(3, 9))
    with pytest.raises(ValueError, match='center_sample'):
        assign_point_targets(pts, torch.tensor([[2.0, 9.0]]), torch.tensor([0]), 1,
                             center_sample='box')


def test_regression_range_picks_the_level():
    # levels: stride 1 handles reach in [0, 4], stride 2 handles [4, 100]
    pts = points_of([16, 8], [1, 2], [(0, 4), (4, 100)])
    cls, _ = assign_point_targets(pts, torch.tensor([[2.0, 12.0]]), torch.tensor([0]), 1)
    pos = (cls[:, 0] > 0).nonzero().flatten().tolist()
    # centre 7: level 0 point t=7 reaches 5 > 4 (out of range); level 1 points t=6, 8
    assert pos == [16 + 3, 16 + 4]


def test_shortest_action_wins_and_equal_lengths_are_multi_hot():
    pts = points_of([20], [1], [(0, 100)])
    segs = torch.tensor([[0.0, 20.0], [8.0, 12.0], [8.0, 12.0005], [7.0, 13.0]])
    labels = torch.tensor([0, 1, 2, 3])
    cls, reg = assign_point_targets(pts, segs, labels, 4, center_sample='none')
    # t = 10 lies in all four: the two 4-step actions tie (within 1e-3) -> classes 1 and 2
    assert cls[10].tolist() == [0, 1, 1, 0]
    assert reg[10].tolist() == [2.0, 2.0]
    # t = 7.x does not exist; t = 2 is only inside the long action
    assert cls[2].tolist() == [1, 0, 0, 0]


def test_duplicate_actions_do_not_exceed_one_and_empty_video():
    pts = points_of([10], [1], [(0, 100)])
    segs = torch.tensor([[2.0, 8.0], [2.0, 8.0]])
    cls, _ = assign_point_targets(pts, segs, torch.tensor([1, 1]), 2)
    assert cls.max().item() == 1.0
    cls, reg = assign_point_targets(pts, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 2)
    assert cls.shape == (10, 2) and reg.shape == (10, 2)
    assert cls.abs().sum() == 0 and reg.abs().sum() == 0
