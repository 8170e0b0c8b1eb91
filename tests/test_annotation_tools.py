"""Annotation skeletons measured from real video files, split rules, CSV import (every row
validated, problems named by line, atomic output) and the generic video dataset."""
import json

import pytest

import vedatad.data  # noqa: F401
from vedatad.data.annotation_skeleton import (SplitRuleError, make_skeleton, measure_videos,
                                              parse_split_rule, write_annotations)
from vedatad.data.annotations import AnnotationError
from vedatad.data.csv_import import CsvImportError, import_csv, read_csv
from vedatad.registry import DATASETS

# frames and average frame rate of each fixture (MANIFEST.md: ffprobe counts, avg_frame_rate)
FIXTURES = {
    'mmaction2_demo_28fps': (280, 28.0), 'mmaction2_part0_30fps_1s': (32, 30.0),
    'mmaction2_structuralize_2997fps': (300, 30000 / 1001),
    'mmaction2_test_xvid_mp3': (164, 25.0), 'moviepy_chaplin_25fps_mp3': (241, 25.0),
    'moviepy_fire2_phone_vfr_aac': (25, 750000 / 71393), 'moviepy_bbb_1s_vp8': (24, 24.0),
    'moviepy_no_duration_vp9': (74, 14.985), 'decord_video90_portrait': (3, 30.0),
}


def test_every_fixture_video_gets_duration_and_fps(video_fixture_dir):
    facts, refused = measure_videos(video_fixture_dir, workers=2)
    assert refused == {} and set(facts) == set(FIXTURES)
    for vid, (frames, fps) in FIXTURES.items():
        assert facts[vid].num_frames == frames, vid
        assert facts[vid].fps == pytest.approx(fps, rel=2e-3), vid
        assert facts[vid].duration == pytest.approx(frames / fps, rel=2e-3), vid
    # WebM without a duration header: decord refuses it, the ffmpeg probe measures it
    assert facts['moviepy_no_duration_vp9'].reader == 'FFmpegReader'
    assert facts['moviepy_no_duration_vp9'].duration == pytest.approx(4.94, abs=0.01)


def test_unreadable_and_ambiguous_videos_are_refused_by_name(tmp_path, video_fixture_dir):
    (tmp_path / 'broken.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42 not a video')
    (tmp_path / 'twice.mp4').write_bytes((video_fixture_dir / 'moviepy_bbb_1s_vp8.webm')
                                         .read_bytes())
    (tmp_path / 'twice.webm').write_bytes((video_fixture_dir / 'moviepy_bbb_1s_vp8.webm')
                                          .read_bytes())
    (tmp_path / 'good.webm').write_bytes((video_fixture_dir / 'moviepy_bbb_1s_vp8.webm')
                                         .read_bytes())
    (tmp_path / 'notes.txt').write_text('not a video')
    facts, refused = measure_videos(tmp_path)
    assert list(facts) == ['good']
    assert set(refused) == {'broken', 'twice'}
    assert 'broken.mp4' in refused['broken'] and 'ffmpeg' in refused['broken']
    assert 'twice.mp4, twice.webm' in refused['twice']


def test_split_rules():
    ids = [f'vid{i:02d}' for i in range(10)] + ['val_a', 'val_b']
    assert set(parse_split_rule('training')(ids).values()) == {'training'}
    by_fraction = parse_split_rule('training=0.75,validation=0.25')(ids)
    assert sorted(by_fraction.values()).count('validation') == 3
    assert by_fraction == parse_split_rule('training=0.75,validation=0.25')(list(reversed(ids)))
    # adding a video moves at most one other
    more = parse_split_rule('training=0.75,validation=0.25')(ids + ['vid99'])
    assert sum(more[v] != by_fraction[v] for v in ids) <= 1
    by_name = parse_split_rule('validation=val_*,training=*')(ids)
    assert [v for v, s in by_name.items() if s == 'validation'] == ['val_a', 'val_b']
    with pytest.raises(SplitRuleError, match=r'2 video\(s\) match no pattern: val_a, val_b'):
        parse_split_rule('training=vid*')(ids)
    with pytest.raises(SplitRuleError, match='add up to 1'):
        parse_split_rule('training=0.7,validation=0.2')
    with pytest.raises(SplitRuleError, match='mixes'):
        parse_split_rule('training=0.5,validation=val_*')


def _videos():
    return {'clip_a': dict(duration=10.0, fps=10.0, subset='training', num_frames=100),
            'clip_b': dict(duration=5.0, fps=25.0, subset='validation'),
            'clip_c': dict(duration=8.0, fps=10.0, subset='training')}


def test_csv_import_writes_activitynet_json(tmp_path):
    csv_path = tmp_path / 'acts.csv'
    csv_path.write_text('label,video,end,start\n'   # header: any column order
                        'jump,clip_a,3.0,1.0\n'
                        'run,clip_a,6.0,4.0\n'
                        'jump,clip_a,3.0,1.0\n'     # an exact repeat
                        '\n'
                        'run,clip_b,5.03,4.0\n')    # within one frame after the end: clipped
    data, notes = import_csv(csv_path, _videos())
    db = data['database']
    assert db['clip_a']['annotations'] == [
        {'segment': [1.0, 3.0], 'label': 'jump', 'label_id': 0},
        {'segment': [4.0, 6.0], 'label': 'run', 'label_id': 1}]
    assert db['clip_b']['annotations'][0]['segment'] == [4.0, 5.0]
    assert db['clip_a']['num_frames'] == 100 and db['clip_c']['annotations'] == []
    text = '\n'.join(notes)
    assert 'dropped 1 exact repeat' in text and '1 action(s) ending less than one frame' in text
    assert '1 video(s) have no action' in text
    out = tmp_path / 'ann.json'
    write_annotations(out, data)
    from vedatad.data.annotations import load_annotations
    assert set(load_annotations(out, subset='training')) == {'clip_a', 'clip_c'}


def test_csv_problems_are_all_named_by_line_and_nothing_is_written(tmp_path):
    csv_path = tmp_path / 'bad.csv'
    csv_path.write_text('clip_a,1.0,3.0,jump\n'     # no header: video,start,end,label
                        'clip_a,2.0,2.0,jump\n'
                        'clip_a,5.0,4.0,jump\n'
                        'clip_a,-1,4.0,jump\n'
                        'clip_a,nan,4.0,jump\n'
                        'clip_a,1.0,4.0,\n'
                        'clip_a.mp4,1.0,2.0,jump\n'
                        'clip_b,1.0,9.0,jump\n'
                        'clip_a,1.0\n')
    out = tmp_path / 'ann.json'
    out.write_text('{"old": true}')
    with pytest.raises(CsvImportError) as err:
        import_csv(csv_path, _videos())
    lines = str(err.value).splitlines()
    assert lines[0] == '8 problem(s), nothing written:'
    assert [line.split(': ', 1)[0].rsplit(':', 1)[1] for line in lines[1:]] == \
        ['2', '3', '4', '5', '6', '7', '8', '9']
    text = str(err.value)
    assert 'zero-length segment [2.0, 2.0]' in text and 'ends before it starts' in text
    assert 'negative start' in text and 'finite numbers' in text and 'empty label' in text
    assert "unknown video 'clip_a.mp4'; did you mean 'clip_a'?" in text
    assert "the action ends at 9.0 s, after the video's end at 5.000 s" in text
    assert '2 field(s), expected at least 4' in text
    assert out.read_text() == '{"old": true}'


def test_csv_split_column(tmp_path):
    csv_path = tmp_path / 'acts.csv'
    csv_path.write_text('video,start,end,label,split\n'
                        'clip_a,1,2,jump,mine\nclip_a,3,4,jump,theirs\nclip_b,1,2,run,mine\n')
    with pytest.raises(CsvImportError, match=r"video 'clip_a' is in several splits: 'mine' "
                                             r"\(line 2\), 'theirs' \(line 3\)"):
        import_csv(csv_path, _videos(), subset_column='split')
    actions, problems = read_csv(csv_path, subset_column='part')
    assert problems and 'no column' in problems[0]
    csv_path.write_text('video,start,end,label,split\nclip_a,1,2,jump,mine\n')
    data, _ = import_csv(csv_path, _videos(), subset_column='split')
    assert data['database']['clip_a']['subset'] == 'mine'
    assert data['database']['clip_b']['subset'] == 'validation'  # from the skeleton


def test_make_skeleton_and_write_refuses_to_overwrite(tmp_path, video_fixture_dir):
    facts, _ = measure_videos(video_fixture_dir)
    data = make_skeleton(facts, {vid: 'training' for vid in facts})
    out = tmp_path / 'skel.json'
    write_annotations(out, data)
    with pytest.raises(FileExistsError, match='--overwrite'):
        write_annotations(out, data)
    entry = json.loads(out.read_text())['database']['mmaction2_demo_28fps']
    assert entry == {'subset': 'training', 'duration': 10.0, 'fps': 28.0, 'num_frames': 280,
                     'annotations': []}


def test_generic_video_dataset_names_missing_subset(tmp_path):
    frames = tmp_path / 'frames' / 'v0'
    frames.mkdir(parents=True)
    (frames / 'meta.json').write_text(json.dumps(dict(num_frames=64, fps=15.0,
                                                      pattern='%05d.jpg')))
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps({'database': {'v0': {
        'subset': 'mine', 'duration': 64 / 15, 'fps': 15.0,
        'annotations': [{'segment': [1.0, 2.0], 'label': 'x'}]}}}))
    cfg = dict(type='GenericVideoDataset', ann_file=str(ann), data_prefix=str(tmp_path / 'frames'),
               window_size=64)
    with pytest.raises(AnnotationError, match=r"no video has subset 'training' .*\['mine'\]"):
        DATASETS.build(dict(cfg, subset='training'))
    test = DATASETS.build(dict(cfg, subset='mine', mode='test'))
    assert test.lazy_windows and len(test) == 1
    assert not DATASETS.build(dict(cfg, subset='mine', mode='train')).lazy_windows
