"""Detection evaluation: hand-checked cases, and equality with a straightforward loop
implementation of the official ActivityNet algorithm on the real THUMOS14 ground truth."""
import json
import random
import warnings
from collections import defaultdict

import numpy as np
import pytest

from vedatad.data.annotations import Segment, VideoAnnotation, load_annotations
from vedatad.evaluation import (detections_to_results, evaluate_detections,
                                format_metrics_table, load_results, parse_tiou_thresholds,
                                save_results)
from vedatad.evaluation.inputs import EvaluationWarning
from vedatad.evaluation.results import ResultsError

THUMOS_TIOUS = parse_tiou_thresholds('0.3:0.7:5')
ANET_TIOUS = parse_tiou_thresholds('0.5:0.95:10')


# ----------------------------------------------------------------- loop reference (official rules)

def _tiou(p, g):
    inter = max(0.0, min(p[1], g[1]) - max(p[0], g[0]))
    union = (g[1] - g[0]) + (p[1] - p[0]) - inter
    return inter / union


def _loop_ap_one_class(gts, preds, thr):
    """gts: list of (video, t0, t1); preds: list of (score, video, t0, t1) of one class."""
    preds = sorted(preds, key=lambda p: (-p[0], p[1], p[2], p[3]))
    gt_by_video = defaultdict(list)
    for i, (vid, t0, t1) in enumerate(gts):
        gt_by_video[vid].append(i)
    taken = set()
    tps = []
    for score, vid, t0, t1 in preds:
        best, best_iou = None, -1.0
        for i in gt_by_video.get(vid, []):
            iou = _tiou((t0, t1), gts[i][1:])
            # ">=" keeps the later annotation among equal tIoU (official reversed argsort)
            if i not in taken and iou >= thr and iou >= best_iou:
                best, best_iou = i, iou
        if best is not None:
            taken.add(best)
        tps.append(best is not None)
    # all-point interpolated AP written as a plain loop
    n_tp = 0
    prec, rec = [], []
    for k, hit in enumerate(tps):
        n_tp += hit
        prec.append(n_tp / (k + 1))
        rec.append(n_tp / len(gts))
    ap, prev_rec = 0.0, 0.0
    for k in range(len(tps)):
        if rec[k] != prev_rec:
            ap += (rec[k] - prev_rec) * max(prec[k:])
            prev_rec = rec[k]
    return ap


def _loop_recall_one_class(gts, preds, thr, k):
    by_video = defaultdict(list)
    for p in preds:
        by_video[p[1]].append(p)
    gt_by_video = defaultdict(list)
    for g in gts:
        gt_by_video[g[0]].append(g)
    hits = 0
    for vid, vgts in gt_by_video.items():
        top = sorted(by_video.get(vid, []), key=lambda p: (-p[0], p[1], p[2], p[3]))
        top = top[:k * len(vgts)]
        for g in vgts:
            hits += any(_tiou(p[2:], g[1:]) >= thr for p in top)
    return hits / len(gts)


def loop_evaluate(gt_videos, results, tious, topk=(1, 5)):
    gts = defaultdict(list)
    for vid, v in gt_videos.items():
        for s in v.segments:
            gts[s.label].append((vid, s.start, s.end))
    preds = defaultdict(list)
    for vid, dets in results.items():
        for d in dets:
            preds[d['label']].append((d['score'], vid, *d['segment']))
    classes = sorted(gts)
    ap = {c: [_loop_ap_one_class(gts[c], preds[c], t) for t in tious] for c in classes}
    mean_ap = [np.mean([ap[c][i] for c in classes]) for i in range(len(tious))]
    recall = {f'{k}x': [np.mean([_loop_recall_one_class(gts[c], preds[c], t, k) for c in classes])
                        for t in tious] for k in topk}
    return {'mAP': mean_ap, 'per_class_ap': ap, 'recall': recall}


# ------------------------------------------------------------------------------ helpers

def _video(vid, segs, subset='test', duration=100.0):
    return VideoAnnotation(vid, subset, duration, None, [Segment(a, b, lab) for a, b, lab in segs])


def _det(label, score, t0, t1):
    return {'label': label, 'score': score, 'segment': [t0, t1]}


def _random_results(gt_videos, extra_videos, seed, tie_levels=None):
    rng = np.random.default_rng(seed)
    labels = sorted({s.label for v in gt_videos.values() for s in v.segments})
    results = {}
    for vid in list(gt_videos) + extra_videos:
        video = gt_videos.get(vid)
        dets = []
        for s in (video.segments if video else []):
            for _ in range(rng.integers(0, 3)):
                c = (s.start + s.end) / 2 + rng.normal(0, 0.3 * (s.end - s.start))
                half = (s.end - s.start) * rng.uniform(0.25, 0.8)
                lab = s.label if rng.uniform() < 0.85 else labels[rng.integers(len(labels))]
                dets.append([lab, c - half, c + half])
            if rng.uniform() < 0.1:
                dets.append([s.label, s.start, s.end])       # exact copy: tIoU 1
        duration = video.duration if video else 60.0
        for _ in range(rng.integers(0, 6)):
            t0 = rng.uniform(0, duration)
            dets.append([labels[rng.integers(len(labels))], t0, t0 + rng.exponential(4)])
        scores = rng.uniform(size=len(dets))
        if tie_levels:
            scores = np.round(scores * tie_levels) / tie_levels
        results[vid] = [_det(lab, float(s), float(a), float(b))
                        for (lab, a, b), s in zip(dets, scores)]
    return results


@pytest.fixture(scope='module')
def thumos_test(thumos_fixture_dir):
    path = thumos_fixture_dir / 'thumos14_gt.json'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        videos = load_annotations(path, subset='test')
    return path, videos


# ------------------------------------------------------------------------------ tests

@pytest.mark.parametrize('tious', [THUMOS_TIOUS, ANET_TIOUS], ids=['thumos', 'anet'])
@pytest.mark.parametrize('tie_levels', [None, 10], ids=['unique', 'ties'])
def test_matches_loop_reference_on_thumos14(thumos_test, tious, tie_levels):
    path, videos = thumos_test
    # a third of the test videos keeps the loop fast; extra videos have no ground truth
    subset = dict(list(videos.items())[::3])
    extra = ['video_validation_0000051', 'not_a_video']
    results = _random_results(subset, extra, seed=7, tie_levels=tie_levels)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        got = evaluate_detections(subset, results, tiou_thresholds=tious)
    want = loop_evaluate(subset, results, tious)
    np.testing.assert_allclose(got['mAP'], want['mAP'], rtol=0, atol=1e-12)
    assert got['per_class_ap'].keys() == want['per_class_ap'].keys()
    for label, values in want['per_class_ap'].items():
        np.testing.assert_allclose(got['per_class_ap'][label], values, rtol=0, atol=1e-12)
    for key in ('1x', '5x'):
        np.testing.assert_allclose(got['recall'][key], want['recall'][key], rtol=0, atol=1e-12)
    assert got['average_mAP'] == pytest.approx(np.mean(want['mAP']), abs=1e-12)
    assert 0.05 < got['average_mAP'] < 0.95      # the random set is neither empty nor perfect


def test_ties_do_not_depend_on_input_order(thumos_test):
    path, videos = thumos_test
    results = _random_results(videos, ['extra'], seed=3, tie_levels=5)
    shuffled = {}
    rng = random.Random(0)
    for vid in rng.sample(list(results), len(results)):
        dets = list(results[vid])
        rng.shuffle(dets)
        shuffled[vid] = dets
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        a = evaluate_detections(path, results, subset='test', tiou_thresholds=ANET_TIOUS)
        b = evaluate_detections(path, shuffled, subset='Test', tiou_thresholds=ANET_TIOUS)
    assert a == b


def test_perfect_predictions_on_real_gt(thumos_test):
    path, videos = thumos_test
    results = {vid: [_det(s.label, 1.0 - 1e-4 * i, s.start, s.end)
                     for i, s in enumerate(v.segments)] for vid, v in videos.items()}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        m = evaluate_detections(path, results, subset='test', tiou_thresholds=ANET_TIOUS)
    assert m['mAP'] == pytest.approx([1.0] * 10)
    assert m['recall']['1x'] == pytest.approx([1.0] * 10)
    assert len(m['per_class_ap']) == 20


def test_greedy_matching_by_hand():
    # g1=[0,10], g2=[5,15]; p1=[4,14] has tIoU 6/14 with g1 and 9/11 with g2 -> takes g2;
    # p2=[5,15] (tIoU 1 with the taken g2) falls back to g1 at tIoU 5/15 = 0.333
    gt = {'v': _video('v', [(0, 10, 'A'), (5, 15, 'A')])}
    preds = {'v': [_det('A', 0.9, 4, 14), _det('A', 0.8, 5, 15)]}
    m = evaluate_detections(gt, preds, tiou_thresholds=[0.3, 0.5])
    assert m['mAP'][0] == pytest.approx(1.0)
    # at 0.5: TP then FP -> precision [1, .5], recall [.5, .5] -> AP 0.5
    assert m['mAP'][1] == pytest.approx(0.5)
    # Recall@1x: top 2 predictions; g2 reached by both, g1 only at 0.333
    assert m['recall']['1x'] == pytest.approx([1.0, 0.5])


def test_false_positives_in_videos_without_gt_and_classes_without_predictions():
    gt = {'v1': _video('v1', [(0, 10, 'A'), (20, 30, 'B')])}
    preds = {'v1': [_det('A', 0.5, 0, 10)], 'v9': [_det('A', 0.9, 0, 10)]}
    with pytest.warns(EvaluationWarning, match='1 prediction.*1 video.*false positives'):
        m = evaluate_detections(gt, preds, tiou_thresholds=[0.5])
    # class A: FP (0.9) then TP -> AP 0.5; class B: no predictions -> 0; mAP = 0.25
    assert m['per_class_ap'] == {'A': [pytest.approx(0.5)], 'B': [0.0]}
    assert m['mAP'] == [pytest.approx(0.25)]


def test_no_predictions_gives_zeros():
    gt = {'v1': _video('v1', [(0, 10, 'A'), (20, 30, 'B')]), 'v2': _video('v2', [])}
    for preds in ({}, {'v1': []}):
        m = evaluate_detections(gt, preds, tiou_thresholds=[0.5, 0.7])
        assert m['mAP'] == [0.0, 0.0] and m['recall']['5x'] == [0.0, 0.0]
        assert m['per_class_ap'] == {'A': [0.0, 0.0], 'B': [0.0, 0.0]}


def test_v_prefix_on_one_side_is_matched():
    gt = {'v_abc': _video('v_abc', [(0, 10, 'A')]), 'xyz': _video('xyz', [(0, 4, 'A')])}
    preds = {'abc': [_det('A', 0.9, 0, 10)], 'v_xyz': [_det('A', 0.8, 0, 4)]}
    with pytest.warns(EvaluationWarning, match='matched 2 prediction video id'):
        m = evaluate_detections(gt, preds, tiou_thresholds=[0.5])
    assert m['mAP'] == [pytest.approx(1.0)]


def test_unknown_labels_error_or_dropped():
    gt = {'v': _video('v', [(0, 10, 'A')])}
    preds = {'v': [_det('A', 0.5, 0, 10), _det('Zebra', 0.9, 0, 10), _det('Yak', 0.9, 1, 2)]}
    with pytest.raises(ValueError, match="'Yak', 'Zebra'"):
        evaluate_detections(gt, preds)
    with pytest.warns(EvaluationWarning, match='dropped 2 prediction'):
        m = evaluate_detections(gt, preds, tiou_thresholds=[0.5], ignore_unknown_labels=True)
    assert m['mAP'] == [pytest.approx(1.0)]


def test_labels_of_other_subsets_are_ignored_not_errors():
    gt = {'v': _video('v', [(0, 10, 'A')]), 'w': _video('w', [(0, 10, 'C')], subset='train')}
    preds = {'v': [_det('A', 0.5, 0, 10), _det('C', 0.9, 0, 10)]}
    with pytest.warns(EvaluationWarning, match='ignored 1 prediction'):
        m = evaluate_detections(gt, preds, subset='TEST', tiou_thresholds=[0.5])
    assert m['per_class_ap'] == {'A': [pytest.approx(1.0)]}


def test_malformed_prediction_names_video_and_field():
    gt = {'v': _video('v', [(0, 10, 'A')])}
    with pytest.raises(ResultsError, match=r"video 'v'.*detection 1.*\"score\" missing"):
        evaluate_detections(gt, {'v': [_det('A', 0.5, 0, 1), {'label': 'A', 'segment': [0, 1]}]})
    with pytest.raises(ResultsError, match=r"video 'v'.*detection 0.*segment"):
        evaluate_detections(gt, {'v': [{'label': 'A', 'score': 1, 'segment': [0, 1, 2]}]})


def test_submission_roundtrip_and_file_inputs(tmp_path, thumos_test):
    path, videos = thumos_test
    results = _random_results(dict(list(videos.items())[:20]), [], seed=1)
    out = tmp_path / 'sub' / 'pred.json'
    save_results(out, {k: [dict(d, score=np.float32(d['score'])) for d in v]
                       for k, v in results.items()}, external_data={'used': False})
    data = json.loads(out.read_text())
    assert data['version'] == 'VERSION 1.3' and data['external_data'] == {'used': False}
    assert [p.name for p in out.parent.iterdir()] == ['pred.json']   # no temp file left
    loaded = load_results(out)
    assert loaded.keys() == results.keys()
    assert loaded['video_test_0000004'][0]['segment'] == results['video_test_0000004'][0]['segment']
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        from_files = evaluate_detections(path, out, subset='test')
        from_dicts = evaluate_detections(videos, loaded, subset='test')
    assert from_files == from_dicts
    bad = tmp_path / 'bad.json'
    bad.write_text('{"database": {}}')
    with pytest.raises(ResultsError, match='bad.json.*"results"'):
        load_results(bad)


def test_detections_to_results():
    import torch
    dets = [{'video_id': 'v', 'segments': torch.tensor([[1.0, 2.0]]),
             'scores': torch.tensor([0.5]), 'labels': torch.tensor([1])}]
    assert detections_to_results(dets, ['A', 'B']) == {
        'v': [{'label': 'B', 'score': 0.5, 'segment': [1.0, 2.0]}]}


def test_parse_tiou_thresholds():
    assert parse_tiou_thresholds('0.5:0.95:10') == np.linspace(0.5, 0.95, 10).tolist()
    assert parse_tiou_thresholds('0.3, 0.4,0.5') == [0.3, 0.4, 0.5]
    assert parse_tiou_thresholds([0.5]) == [0.5]
    for bad in ('0.5:0.9', 'a,b', '0,0.5', '0.5:0.9:0', ''):
        with pytest.raises(ValueError, match='tIoU thresholds'):
            parse_tiou_thresholds(bad)


def test_table_lists_every_threshold():
    gt = {'v': _video('v', [(0, 10, 'A'), (20, 30, 'B')])}
    m = evaluate_detections(gt, {'v': [_det('A', 0.5, 0, 10)]}, tiou_thresholds=[0.3, 0.5])
    table = format_metrics_table(m, per_class=True)
    assert '| 0.30 | 50.00 |' in table and '| 0.50 | 50.00 |' in table
    assert 'R@1x' in table and 'R@5x' in table
    assert '| B     |   0.00 |   0.00 |   0.00 |' in table
    assert table.endswith('Average mAP: 50.00 (%)')


# ------------------------------------------------------------------ protocols

def _ids_video(vid, segs, subset='test'):
    """segs: (t0, t1, label name, label_id)."""
    return VideoAnnotation(vid, subset, 100.0, None,
                           [Segment(a, b, lab, i) for a, b, lab, i in segs])


def release_clean(videos, tol=1e-3):
    """The release's remove_duplicate_annotations, written as a loop."""
    out = {}
    for vid, v in videos.items():
        kept = []
        for s in v.segments:
            if s.end - s.start < tol:
                continue
            if any(abs(s.start - k.start) <= tol and abs(s.end - k.end) <= tol
                   and s.label_id == k.label_id for k in kept):
                continue
            kept.append(s)
        out[vid] = VideoAnnotation(vid, v.subset, v.duration, v.fps, kept)
    return out


def test_actionformer_protocol_counts_a_duplicated_instance_once():
    gt = {'a': _ids_video('a', [(10, 20, 'run', 0), (10, 20, 'run', 0),     # duplicate
                                (10.0005, 20.0005, 'run', 0),               # within 1 ms
                                (30, 40, 'run', 0), (30, 40.002, 'run', 0),  # 2 ms: kept
                                (50, 50.0004, 'run', 0)]),                  # too short
          'b': _ids_video('b', [(5, 9, 'jump', 1)])}
    preds = {'a': [_det('run', 0.9, 10, 20), _det('run', 0.8, 30, 40)],
             'b': [_det('jump', 0.7, 5, 9)]}
    anet = evaluate_detections(gt, preds, tiou_thresholds=[0.5])
    release = evaluate_detections(gt, preds, tiou_thresholds=[0.5], protocol='actionformer')
    # ActivityNet: 6 'run' instances, 2 found -> AP 2/6; the release: 3 instances -> 2/3
    assert anet['per_class_ap']['run'] == pytest.approx([2 / 6])
    assert release['per_class_ap']['run'] == pytest.approx([2 / 3])
    assert release['per_class_ap']['jump'] == pytest.approx([1.0])
    assert release['ground_truth']['removed_instances'] == 3
    # Recall@1x needs no one-to-one match: [30, 40] reaches both 'run' instances near it
    assert release['recall']['1x'] == pytest.approx([1.0])
    assert anet['recall']['1x'] == pytest.approx([(5 / 6 + 1) / 2])  # all but the 0.4 ms one
    reference = loop_evaluate(release_clean(gt), preds, [0.5])
    assert release['mAP'] == pytest.approx(reference['mAP'], abs=1e-12)


def test_actionformer_protocol_counts_classes_without_ground_truth_as_the_release():
    # ids with ground truth in 'test': 0 and 2 (ranks 0 and 1). A detection of id 1 (no
    # ground truth in the subset) is grouped by the release under rank 1, i.e. id 2; one of
    # id 3 (rank 3 does not exist) is never looked at.
    gt = {'a': _ids_video('a', [(0, 10, 'c0', 0), (20, 30, 'c2', 2)]),
          'o': _ids_video('o', [(0, 5, 'c1', 1), (0, 5, 'c3', 3)], subset='train')}
    preds = {'a': [_det('c0', 0.9, 0, 10), _det('c2', 0.5, 20, 30),
                   _det('c1', 0.8, 50, 60), _det('c3', 0.95, 70, 80)]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        release = evaluate_detections(gt, preds, subset='test', tiou_thresholds=[0.5],
                                      protocol='actionformer')
    assert any('1 as false positives' in str(w.message) and '1 ignored' in str(w.message)
               for w in caught)
    assert release['per_class_ap'] == {'c0': pytest.approx([1.0]), 'c2': pytest.approx([0.5])}
    assert release['ground_truth']['relabelled'] == 1 and release['ground_truth']['ignored'] == 1
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        anet = evaluate_detections(gt, preds, subset='test', tiou_thresholds=[0.5])
    assert anet['average_mAP'] == pytest.approx(1.0)
