"""ActivityNet-style annotation loading on the real THUMOS14 ground truth and on broken files."""
import json
import warnings

import pytest

from vedatad.data.annotations import (AnnotationError, AnnotationWarning, Segment,
                                      VideoAnnotation, build_label_map, load_annotations)


def _load_quiet(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return load_annotations(path, **kwargs)


@pytest.fixture(scope='module')
def thumos_gt(thumos_fixture_dir):
    return thumos_fixture_dir / 'thumos14_gt.json'


def test_thumos14_counts_and_subsets(thumos_gt):
    test = _load_quiet(thumos_gt, subset='test')
    val = _load_quiet(thumos_gt, subset='VALIDATION')          # case-insensitive
    both = _load_quiet(thumos_gt)
    assert (len(test), sum(len(v.segments) for v in test.values())) == (212, 3358)
    assert (len(val), sum(len(v.segments) for v in val.values())) == (200, 3007)
    assert len(both) == 412
    assert list(both) == list(json.loads(thumos_gt.read_text())['database'])  # file order kept
    video = test['video_test_0000004']
    assert isinstance(video, VideoAnnotation) and video.subset == 'test' and video.fps is None
    assert all(isinstance(s, Segment) and s.label_id is None for s in video.segments)


def test_thumos14_segments_past_duration_are_warned_and_kept(thumos_gt):
    with pytest.warns(AnnotationWarning,
                      match=r'26 segment\(s\) in 3 video\(s\) end after .*537\.57 s past.*'
                            r'video_test_0000270.*kept'):
        test = load_annotations(thumos_gt, subset='test')
    hammer = test['video_test_0000270']
    assert hammer.duration == pytest.approx(176.13, abs=0.01)
    assert max(s.end for s in hammer.segments) == 713.7
    assert sum(s.end > hammer.duration for s in hammer.segments) == 22
    with pytest.warns(AnnotationWarning, match=r'4 segment\(s\) in 2 video\(s\)'):
        load_annotations(thumos_gt, subset='validation')


def test_thumos14_duplicate_segments_under_two_labels_are_kept(thumos_gt):
    test = _load_quiet(thumos_gt, subset='test')
    cliff = {(vid, s.start, s.end) for vid, v in test.items() for s in v.segments
             if s.label == 'CliffDiving'}
    diving = {(vid, s.start, s.end) for vid, v in test.items() for s in v.segments
              if s.label == 'Diving'}
    assert len(cliff) == 217 and cliff <= diving


def test_thumos14_label_map(thumos_gt):
    label_map = build_label_map(_load_quiet(thumos_gt).values())
    classes = (thumos_gt.parent / 'annotations' / 'detclasslist.txt').read_text().split()[1::2]
    assert list(label_map) == sorted(classes)
    assert list(label_map.values()) == list(range(20))


def _write(tmp_path, database, name='gt.json'):
    path = tmp_path / name
    path.write_text(json.dumps({'database': database}))
    return path


def _entry(annotations, duration=50.0, subset='training', **extra):
    return dict(subset=subset, duration=duration, annotations=annotations, **extra)


GOOD = {'segment': [1.0, 2.0], 'label': 'Jump'}


@pytest.mark.parametrize('annotation, field', [
    ({'label': 'Jump'}, 'annotations[1].segment'),
    ({'segment': [3, 2], 'label': 'Jump'}, 'annotations[1].segment'),
    ({'segment': [-1, 2], 'label': 'Jump'}, 'annotations[1].segment'),
    ({'segment': ['1', 2], 'label': 'Jump'}, 'annotations[1].segment'),
    ({'segment': [1, True], 'label': 'Jump'}, 'annotations[1].segment'),
    ({'segment': [1, 2, 3], 'label': 'Jump'}, 'annotations[1].segment'),
    ({'segment': [1, 2]}, 'annotations[1].label'),
    ({'segment': [1, 2], 'label': 7}, 'annotations[1].label'),
    ({'segment': [1, 2], 'label': 'Jump', 'label_id': 'x'}, 'annotations[1].label_id'),
])
def test_strict_errors_name_file_video_and_field(tmp_path, annotation, field):
    path = _write(tmp_path, {'vid_ok': _entry([GOOD]), 'vid_bad': _entry([GOOD, annotation])})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path)
    message = str(err.value)
    assert 'gt.json' in message and "'vid_bad'" in message and f'"{field}"' in message


@pytest.mark.parametrize('entry, field', [
    ({'subset': 'training', 'annotations': []}, 'duration'),
    ({'subset': 'training', 'duration': 'long', 'annotations': []}, 'duration'),
    ({'subset': 'training', 'duration': 5.0}, 'annotations'),
    ({'duration': 5.0, 'annotations': []}, 'subset'),
    ({'subset': 'training', 'duration': 5.0, 'fps': 0, 'annotations': []}, 'fps'),
])
def test_strict_video_level_errors(tmp_path, entry, field):
    path = _write(tmp_path, {'vid_bad': entry})
    with pytest.raises(AnnotationError, match=rf"gt.json: video 'vid_bad': field \"{field}\""):
        load_annotations(path)


def test_non_strict_drops_bad_segments_with_one_warning(tmp_path):
    database = {
        'a': _entry([GOOD, {'segment': [5, 4], 'label': 'Jump'}, {'segment': [1, 2]}]),
        'b': _entry([{'segment': [-2, 4], 'label': 'Run'}, {'segment': [0, 60], 'label': 'Run'}]),
        'c': {'subset': 'training', 'annotations': []},       # no duration: video dropped
        'd': _entry([GOOD], subset='testing', duration='x'),  # other subset: not validated
    }
    path = _write(tmp_path, database)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        videos = load_annotations(path, subset='Training', strict=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, AnnotationWarning)]
    assert len(messages) == 2
    assert 'dropped 3 malformed segment(s) in 2 video(s)' in messages[0]
    assert 'label: 1' in messages[0] and 'segment: 2' in messages[0]
    assert "1 malformed video(s) (e.g. 'c')" in messages[0]
    assert '1 segment(s) in 1 video(s) end after the video duration' in messages[1]
    assert list(videos) == ['a', 'b']
    assert videos['a'].segments == [Segment(1.0, 2.0, 'Jump')]
    assert videos['b'].segments == [Segment(0.0, 60.0, 'Run')]   # past the end: kept


def test_not_a_database(tmp_path):
    path = tmp_path / 'x.json'
    path.write_text('{"results": {}}')
    with pytest.raises(AnnotationError, match='x.json.*"database"'):
        load_annotations(path)
    path.write_text('{not json')
    with pytest.raises(AnnotationError, match='x.json: not valid JSON'):
        load_annotations(path)


def test_label_map_uses_consistent_label_ids_else_sorted_names(tmp_path):
    def video(*segs):
        return VideoAnnotation('v', 'training', 10.0, 30.0,
                               [Segment(0, 1, lab, i) for lab, i in segs])

    assert build_label_map([video(('Run', 1), ('Jump', 0)), video(('Run', 1))]) == \
        {'Jump': 0, 'Run': 1}
    assert build_label_map([video(('Run', 5), ('Jump', 2))]) == {'Jump': 2, 'Run': 5}
    # two labels sharing one id would merge two classes in training: an error naming both
    with pytest.raises(AnnotationError, match=r"label_id 0 is given to labels \['Jump', 'Run'\]"):
        build_label_map([video(('Run', 0), ('Jump', 0))])
    with pytest.raises(AnnotationError, match=r"label 'Run' has label_ids \[1, 2\]"):
        build_label_map([video(('Run', 1), ('Jump', 0)), video(('Run', 2))], source='x.json')
    with pytest.warns(AnnotationWarning, match=r'given for 1 segment\(s\) and missing for 1'):
        assert build_label_map([video(('Run', 3), ('Jump', None))]) == {'Jump': 0, 'Run': 1}
    assert build_label_map([video(('b', None), ('a', None))]) == {'a': 0, 'b': 1}


def test_label_id_and_fps_are_read(tmp_path):
    path = _write(tmp_path, {'v': _entry([dict(GOOD, label_id=3)], fps=25)})
    video = load_annotations(path)['v']
    assert video.fps == 25.0 and video.segments[0].label_id == 3


def test_duplicate_video_id_is_an_error_naming_file_and_id(tmp_path):
    path = tmp_path / 'dup.json'
    entry = json.dumps(_entry([GOOD]))
    path.write_text('{"database": {"vid_a": %s, "vid_b": %s, "vid_a": %s}}' % (entry, entry, entry))
    with pytest.raises(AnnotationError, match=r"dup.json: the key 'vid_a' appears twice"):
        load_annotations(path)


def test_non_utf8_and_truncated_json_name_the_file(tmp_path):
    path = tmp_path / 'latin1.json'
    path.write_bytes(json.dumps({'database': {'v': _entry([dict(GOOD, label='Caf\u00e9')])}},
                                ensure_ascii=False).encode('latin-1'))
    with pytest.raises(AnnotationError, match=r'latin1.json: not UTF-8 text \(byte \d+'):
        load_annotations(path)
    full = json.dumps({'database': {'v': _entry([GOOD])}})
    path = tmp_path / 'cut.json'
    path.write_text(full[:len(full) // 2])
    with pytest.raises(AnnotationError, match=r'cut.json: not valid JSON .*truncated\?'):
        load_annotations(path)
    # a byte-order mark (some editors write one) is fine
    path = tmp_path / 'bom.json'
    path.write_bytes(b'\xef\xbb\xbf' + full.encode())
    assert list(load_annotations(path)) == ['v']


def test_zero_length_segments_are_counted_and_kept_for_evaluation(tmp_path):
    zero = {'segment': [3.0, 3.0], 'label': 'Jump'}
    path = _write(tmp_path, {'a': _entry([GOOD, zero, zero]), 'b': _entry([zero])})
    with pytest.warns(AnnotationWarning,
                      match=r"3 zero-length segment\(s\) .* in 2 video\(s\) \(e.g. 'a'\)"):
        videos = load_annotations(path)
    assert len(videos['a'].segments) == 3


def test_check_annotation_file_reports_every_problem_at_once(tmp_path):
    from vedatad.data.annotations import check_annotation_file
    path = _write(tmp_path, {
        'ok': _entry([GOOD]),
        'bad1': _entry([{'segment': [5, 4], 'label': 'Jump'}, {'segment': [1, 2]}]),
        'bad2': {'subset': 'training', 'annotations': []},
        'other': _entry([{'segment': [1, 2], 'label': 'Jump', 'label_id': 0},
                         {'segment': [1, 2], 'label': 'Run', 'label_id': 0}], subset='test'),
        'late': _entry([{'segment': [1, 80], 'label': 'Run'}]),
    })
    videos, problems, notes = check_annotation_file(path)
    text = '\n'.join(problems)
    assert len(problems) == 4, text
    assert "video 'bad1': field \"annotations[0].segment\": start after end" in text
    assert "video 'bad1': field \"annotations[1].label\": missing" in text
    assert "video 'bad2': field \"duration\": missing" in text
    assert "label_id 0 is given to labels ['Jump', 'Run']" in text
    assert all(line.startswith(str(path)) for line in problems)
    assert set(videos) == {'ok', 'bad1', 'other', 'late'}
    assert len(notes) == 1 and "end after the video duration" in notes[0] and "'late'" in notes[0]
    assert check_annotation_file(tmp_path / 'absent.json')[1][0].endswith('absent.json\'')
