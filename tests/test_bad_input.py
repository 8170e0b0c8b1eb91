"""Bad prediction / ground-truth files are named, never silently accepted."""
import json

import pytest

from vedatad.data.annotations import AnnotationError
from vedatad.evaluation import evaluate_detections, save_results
from vedatad.evaluation.results import ResultsError, load_results


def _gt(tmp_path):
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps({'database': {
        'v1': {'subset': 'test', 'duration': 30.0,
               'annotations': [{'segment': [1.0, 5.0], 'label': 'A'}]},
        'v2': {'subset': 'test', 'duration': 30.0,
               'annotations': [{'segment': [2.0, 4.0], 'label': 'A'}]}}}))
    return path


def _det(t0, t1, score=0.5):
    return {'label': 'A', 'score': score, 'segment': [t0, t1]}


def test_reversed_prediction_is_an_error_naming_video_and_entry(tmp_path):
    gt = _gt(tmp_path)
    preds = {'v1': [_det(1, 5)], 'v2': [_det(2, 4), _det(9, 3), _det(8, 7)]}
    with pytest.raises(ResultsError, match=r"video 'v2': detection 1: segment \[9.0, 3.0\] ends "
                                           r"before it starts \(2 such detection"):
        evaluate_detections(gt, preds, subset='test')
    with pytest.raises(ResultsError, match=r"video 'v2': detection 1.segment: \[9.0, 3.0\] ends"):
        save_results(tmp_path / 'out.json', preds)
    assert not (tmp_path / 'out.json').exists()


def test_duplicate_video_in_a_prediction_file_is_an_error(tmp_path):
    path = tmp_path / 'pred.json'
    dets = json.dumps([_det(1, 5)])
    path.write_text('{"version": "VERSION 1.3", "results": {"v1": %s, "v2": %s, "v1": %s}}'
                    % (dets, dets, dets))
    with pytest.raises(ResultsError, match=r"pred.json: the key 'v1' appears twice"):
        load_results(path)
    with pytest.raises(ResultsError, match='pred.json'):
        evaluate_detections(_gt(tmp_path), path, subset='test')


def test_broken_files_name_themselves(tmp_path):
    pred = tmp_path / 'pred.json'
    pred.write_bytes(b'{"results": {"caf\xe9": []}}')
    with pytest.raises(ResultsError, match=r'pred.json: not UTF-8 text'):
        load_results(pred)
    pred.write_text('{"results": {"v1": [{"label": "A", "score"')
    with pytest.raises(ResultsError, match=r'pred.json: not valid JSON .*truncated'):
        load_results(pred)
    gt = tmp_path / 'gt.json'
    gt.write_text('{"database": {"v1": {"subset": "test", "duration": 3')
    with pytest.raises(AnnotationError, match=r'gt.json: not valid JSON'):
        evaluate_detections(gt, {'v1': [_det(1, 2)]})
