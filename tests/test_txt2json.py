"""THUMOS14 txt -> ActivityNet JSON on the official per-class files."""
import importlib.util
import json
import os

import pytest

from vedatad.data.annotations import load_annotations
from vedatad.data.thumos_txt import read_instances, thumos_to_activitynet


def run_tool(repo_root, args):
    spec = importlib.util.spec_from_file_location('txt2json',
                                                  repo_root / 'tools/data/thumos14/txt2json.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([str(a) for a in args])


@pytest.mark.parametrize('mode,subset,videos,instances,amb_segments,amb_videos', [
    ('val', 'validation', 200, 3007, 89, 35), ('test', 'test', 212, 3358, 99, 37)])
def test_matches_reference_json(repo_root, thumos_fixture_dir, tmp_path, mode, subset, videos,
                                instances, amb_segments, amb_videos):
    gt_path = thumos_fixture_dir / 'thumos14_gt.json'
    out = tmp_path / f'{mode}.json'
    run_tool(repo_root, ['--anno_root', thumos_fixture_dir / 'annotations', '--mode', mode,
                         '--durations', gt_path, '--out', out])
    ours = json.loads(out.read_text())
    reference = {k: v for k, v in json.loads(gt_path.read_text())['database'].items()
                 if v['subset'] == subset}
    assert len(ours['database']) == videos
    assert sum(len(v['annotations']) for v in ours['database'].values()) == instances
    assert ours['database'] == reference  # segments, labels, order, subset and durations
    amb = ours['ambiguous']
    assert (sum(map(len, amb.values())), len(amb)) == (amb_segments, amb_videos)
    labels = {a['label'] for v in ours['database'].values() for a in v['annotations']}
    assert 'Ambiguous' not in labels and len(labels) == 20
    with pytest.warns(UserWarning, match='end after the video duration'):  # real THUMOS quirk
        loaded = load_annotations(out, subset=subset)
    assert len(loaded) == videos


def test_ambiguous_only_video_is_not_ground_truth(thumos_fixture_dir):
    with pytest.warns(UserWarning, match='no known duration'):
        data = thumos_to_activitynet(thumos_fixture_dir / 'annotations', 'test')
    assert 'video_test_0001292' in data['ambiguous']
    assert 'video_test_0001292' not in data['database']
    assert all(v['duration'] is None for v in data['database'].values())
    # the same segment under two classes is kept twice (CliffDiving is also Diving)
    classes = [t['label'] for t in data['taxonomy']]
    assert classes[:2] == ['BaseballPitch', 'BasketballDunk'] and len(classes) == 20


def test_durations_measured_from_videos(repo_root, video_fixture_dir, tmp_path):
    anno = tmp_path / 'anno'
    anno.mkdir()
    (anno / 'Jump_val.txt').write_text('clip_a  0.2 0.8\nclip_b  1.0 2.5\nclip_a  0.1 0.3\n')
    (anno / 'Ambiguous_val.txt').write_text('clip_b  0.0 0.5\n')
    videos = tmp_path / 'videos'
    videos.mkdir()
    os.symlink(video_fixture_dir / 'mmaction2_part0_30fps_1s.mp4', videos / 'clip_a.mp4')
    out = tmp_path / 'val.json'
    with pytest.warns(UserWarning):
        run_tool(repo_root, ['--anno_root', anno, '--video_root', videos, '--mode', 'val',
                             '--out', out])
    db = json.loads(out.read_text())['database']
    assert db['clip_a']['duration'] == pytest.approx(32 / 30)
    assert db['clip_b']['duration'] is None  # no video, no --durations: unknown, reported
    assert [a['segment'] for a in db['clip_a']['annotations']] == [[0.1, 0.3], [0.2, 0.8]]
    assert db['clip_a']['subset'] == 'validation'
    assert json.loads(out.read_text())['ambiguous'] == {'clip_b': [[0.0, 0.5]]}


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / 'Jump_test.txt'
    path.write_text('vid_1  1.0 2.0\nvid_2  3.0\n')
    with pytest.raises(ValueError, match=r'Jump_test.txt:2'):
        read_instances(path)
    path.write_text('vid_1  5.0 2.0\n')
    with pytest.raises(ValueError, match=r'Jump_test.txt:1: bad segment'):
        read_instances(path)
    with pytest.raises(FileNotFoundError, match='no \\*_val.txt'):
        thumos_to_activitynet(tmp_path, 'val')
