"""tools/eval_detections.py: table on stdout, metrics JSON, errors on stderr."""
import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from vedatad.data.annotations import load_annotations
from vedatad.evaluation import evaluate_detections, save_results


@pytest.fixture(scope='module')
def thumos_case(thumos_fixture_dir, tmp_path_factory):
    gt = thumos_fixture_dir / 'thumos14_gt.json'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        videos = load_annotations(gt, subset='test')
    rng = np.random.default_rng(0)
    results = {}
    for vid, v in list(videos.items())[:40]:
        results[vid] = [{'label': s.label, 'score': float(rng.uniform()),
                         'segment': sorted([s.start + rng.normal(0, 1), s.end + rng.normal(0, 1)])}
                        for s in v.segments]
    pred = tmp_path_factory.mktemp('cli') / 'pred.json'
    save_results(pred, results)
    return gt, pred, results


TOOL = Path(__file__).resolve().parents[1] / 'tools' / 'eval_detections.py'


def _run(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def _main(*args):
    """The tool's main() in this process (a subprocess per case costs seconds of imports)."""
    spec = importlib.util.spec_from_file_location('eval_detections_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with warnings.catch_warnings():
        return module.main([str(a) for a in args])


def test_cli_prints_table_and_writes_metrics(thumos_case, tmp_path):
    gt, pred, _ = thumos_case
    out = tmp_path / 'metrics.json'
    proc = _run(gt, pred, '--subset', 'test', '--tiou-thresholds', '0.5:0.95:10',
                '--json', out, '--per-class')
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())
    assert set(metrics) == {'tious', 'mAP', 'average_mAP', 'per_class_ap', 'recall'}
    assert set(metrics['recall']) == {'1x', '5x'}
    assert metrics['tious'] == np.linspace(0.5, 0.95, 10).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        expected = evaluate_detections(gt, pred, subset='test',
                                       tiou_thresholds=np.linspace(0.5, 0.95, 10).tolist())
    assert metrics == expected
    assert f'Average mAP: {100 * expected["average_mAP"]:.2f} (%)' in proc.stdout
    assert '| 0.95 |' in proc.stdout and '| VolleyballSpiking |' in proc.stdout
    # 172 test videos have no predictions; the 40 others' mistakes are not all TPs
    assert 0.0 < expected['average_mAP'] < 1.0
    assert 'warning:' in proc.stderr and 'end after the video duration' in proc.stderr


def test_cli_unknown_labels(thumos_case, tmp_path, capsys):
    gt, _, results = thumos_case
    bad = dict(results)
    first = next(iter(bad))
    bad[first] = bad[first] + [{'label': 'Juggling', 'score': 0.99, 'segment': [1.0, 2.0]}]
    pred = tmp_path / 'bad.json'
    save_results(pred, bad)
    assert _main(gt, pred, '--subset', 'test', '--tiou-thresholds', '0.3,0.5') == 1
    err = capsys.readouterr().err
    assert 'error:' in err and "'Juggling'" in err
    out = tmp_path / 'm.json'
    assert _main(gt, pred, '--subset', 'test', '--tiou-thresholds', '0.3,0.5',
                 '--ignore-unknown-labels', '--json', out) == 0
    assert 'dropped 1 prediction' in capsys.readouterr().err
    assert json.loads(out.read_text())['tious'] == [0.3, 0.5]


def test_cli_bad_thresholds_and_missing_file(thumos_case, tmp_path, capsys):
    gt, pred, _ = thumos_case
    assert _main(gt, pred, '--tiou-thresholds', '0.5:0.9') == 1
    assert 'START:STOP:NUM' in capsys.readouterr().err
    assert _main(gt, tmp_path / 'missing.json') == 1
    assert 'missing.json' in capsys.readouterr().err


def test_cli_counts_duplicates_as_activitynet_unless_asked(tmp_path):
    gt = {'database': {'v': {'subset': 'validation', 'duration': 60.0, 'annotations': [
        {'segment': [1.0, 5.0], 'label': 'a', 'label_id': 0},
        {'segment': [1.0, 5.0], 'label': 'a', 'label_id': 0},      # the same instance twice
        {'segment': [10.0, 20.0], 'label': 'a', 'label_id': 0}]}}}
    gt_path = tmp_path / 'gt.json'
    gt_path.write_text(json.dumps(gt))
    pred = tmp_path / 'pred.json'
    save_results(pred, {'v': [{'label': 'a', 'score': 0.9, 'segment': [1.0, 5.0]},
                              {'label': 'a', 'score': 0.8, 'segment': [10.0, 20.0]}]})
    for extra, expected in (((), 2 / 3), (('--protocol', 'actionformer'), 1.0)):
        out = tmp_path / f'm{len(extra)}.json'
        assert _main(gt_path, pred, '--tiou-thresholds', '0.5', '--json', out, *extra) == 0
        assert json.loads(out.read_text())['average_mAP'] == pytest.approx(expected), extra
