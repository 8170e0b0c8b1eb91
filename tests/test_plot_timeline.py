"""Timeline plots: never crash on valid detections, seconds axis, with or without ground truth."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from vedatad.evaluation.results import save_results
from vedatad.utils.visualize import ROW, draw_timeline, tick_step

REPO = Path(__file__).resolve().parents[1]


def _det(t0, t1, score, label='jump'):
    return {'segment': [t0, t1], 'score': score, 'label': label}


def test_degenerate_segments_are_drawn_without_error(tmp_path):
    gt = {'v1': dict(duration=10.0, segments=[(9.0, 10.0, 'jump'), (4.0, 4.0, 'run')])}
    dets = {'v1': [_det(10.0, 10.0, 0.9),      # zero length at the video end
                   _det(6.0, 5.0, 0.8),        # reversed
                   _det(9.5, 12.0, 0.7, 'run'),  # past the end
                   _det(-1.0, 0.5, 0.6)]}      # before the start
    summary = draw_timeline(dets, tmp_path / 'a.png', ground_truth=gt, score_threshold=0.5)
    assert Image.open(tmp_path / 'a.png').size[0] == 1100
    assert summary.videos[0].drawn == 4 and summary.lines() == []


def test_without_ground_truth_uses_given_or_detected_durations(tmp_path):
    dets = {'a': [_det(1.0, 2.0, 0.9)], 'b': [_det(3.0, 7.5, 0.4)]}
    summary = draw_timeline(dets, tmp_path / 'b.png', durations={'a': 20.0})
    assert [v.video_id for v in summary.videos] == ['a', 'b']
    assert summary.videos[0].duration == 20.0
    assert summary.videos[1].duration == 7.5  # unknown: the latest detection end


def test_nothing_above_threshold_is_said_with_top_score(tmp_path):
    dets = {'quiet': [_det(1, 2, 0.12), _det(3, 4, 0.05)], 'empty': []}
    summary = draw_timeline(dets, tmp_path / 'c.png', score_threshold=0.3)
    assert summary.lines() == ['quiet: no detection with score >= 0.3 (top score 0.120)',
                               'empty: no detections']


def test_time_axis_is_drawn_in_seconds(tmp_path):
    assert tick_step(10) == 1 and tick_step(95) == 10 and tick_step(3) == 0.5
    assert tick_step(7200) == 900
    draw_timeline({'v': [_det(1, 2, 0.9)]}, tmp_path / 'd.png', durations={'v': 10.0})
    img = np.asarray(Image.open(tmp_path / 'd.png').convert('L'))
    axis_y = 8 + ROW + 2  # top margin, detection row, then the axis line
    line = img[axis_y, 190:1100 - 14]
    assert (line < 50).mean() > 0.99  # a continuous dark axis line under the row
    ticks = img[axis_y + 1:axis_y + 5, 190:1100 - 14].min(axis=0) < 50
    assert 10 <= np.count_nonzero(np.diff(ticks.astype(int)) == 1) + ticks[0] <= 12


def test_cli_from_another_folder_with_spaces(tmp_path):
    folder = tmp_path / 'my plots'
    folder.mkdir()
    gt = {'database': {'v1': {'subset': 'validation', 'duration': 5.0,
                              'annotations': [{'segment': [1.0, 2.0], 'label': 'jump'}]}}}
    (folder / 'gt file.json').write_text(json.dumps(gt))
    save_results(folder / 'dets file.json', {'v1': [_det(5.0, 5.0, 0.2)]})
    cmd = [sys.executable, str(REPO / 'tools' / 'plot_timeline.py'), 'gt file.json',
           'dets file.json', '--out', 'out plot.png']
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'v1: no detection with score >= 0.3 (top score 0.200)' in proc.stdout
    assert (folder / 'out plot.png').is_file()
    # detections only, and files given the wrong way round are named
    proc = subprocess.run(cmd[:2] + ['dets file.json', '--out', 'only.png'], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and (folder / 'only.png').is_file()
    proc = subprocess.run(cmd[:2] + ['dets file.json', 'gt file.json', '--out', 'x.png'],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and 'dets file.json: this is a detections file' in proc.stderr
