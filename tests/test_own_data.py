"""The README's "Use your own data" examples, run through the real tools as subprocesses, from
a working directory that is not the repository, on data under a path with a space.

(a) features you already have -> check_dataset -> trainval -> test (tiny model, few epochs);
(b) a folder of your own videos (real fixture files, one WebM without a duration header, and
    synthetic videos) -> make_annotations -> import_csv -> extract_frames -> check_dataset
    (the bank is missing: named) -> extract_features -> check_dataset (bank agrees) ->
    one epoch of TALLFormer training with the example config -> test.

The jobs (training, testing, extraction, measuring) run as subprocesses; the quick steps run
the same tools' main() in this process, with its working directory and OWN_DATA set the
same way (each extra process costs seconds of imports on a small machine).
"""
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import unittest.mock
from pathlib import Path

import pytest

from vedatad.data.synthetic_features import SyntheticFeatureSpec, generate_synthetic_features

REPO = Path(__file__).resolve().parents[1]
README = (REPO / 'README.md').read_text()

# sizes that keep the examples fast on a 2-core CPU (the configs' own sizes are for real data)
SMALL_ACTIONFORMER = ['model.n_mha_win_size=9', 'model.embd_dim=64', 'model.fpn_dim=64',
                      'model.head_dim=64', 'train_dataset.max_seq_len=256', 'device=cpu',
                      'cpu_threads=1', 'train_dataloader.num_workers=0',
                      'val_dataloader.num_workers=0']
DEMO_BACKBONE = ['model.backbone.arch=demo', 'model.backbone.pretrained=None']
SMALL_TALLFORMER = ['model.backbone.with_cp=False', 'model.tcm.out_channels=64',
                    'model.tcm.num_heads=4', 'model.tcm.depth=1', 'model.detector.embd_dim=64',
                    'model.detector.fpn_dim=64', 'model.detector.head_dim=64']


def run(args, cwd, env, ok=True):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def tool(name):
    return REPO / 'tools' / name


def run_here(name, args, capsys):
    """A tool's main() in this process (each subprocess pays seconds of imports): for the
    refusals, which must come before any work. Returns (exit status, stdout + stderr)."""
    spec = importlib.util.spec_from_file_location(name.replace('/', '_')[:-3], tool(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = [str(a) for a in args]
    try:
        if inspect.signature(module.main).parameters:
            status = module.main(argv)
        else:  # a tool whose main() reads sys.argv
            with unittest.mock.patch.object(sys, 'argv', [str(tool(name)), *argv]):
                status = module.main()
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
        if not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)
    out = capsys.readouterr()
    return status, out.out + out.err


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')


def test_readme_lists_the_commands_these_examples_run():
    section = README.split('## Use your own data', 1)[1].split('\n## ', 1)[0]
    for command in ('tools/data/check_dataset.py configs/own_data/features.py',
                    'tools/trainval.py configs/own_data/features.py',
                    'tools/test.py configs/own_data/features.py',
                    'tools/data/make_annotations.py', 'tools/data/import_csv.py',
                    'tools/data/extract_frames.py', '--fps 15 --short-side 128',
                    'tools/data/extract_features.py --config configs/own_data/videos_extract.py',
                    'tools/data/check_dataset.py configs/own_data/videos_tallformer.py',
                    'tools/trainval.py configs/own_data/videos_tallformer.py'):
        assert command in section, command
    assert 'OWN_DATA' in section


def test_example_a_own_features_check_train_test(tmp_path, env, monkeypatch, capsys):
    data = tmp_path / 'my data'
    generate_synthetic_features(str(data), SyntheticFeatureSpec(num_train=8, num_val=4,
                                                                seed=3))
    env = dict(env, OWN_DATA=str(data))
    elsewhere = tmp_path / 'somewhere else'
    elsewhere.mkdir()
    config = REPO / 'configs' / 'own_data' / 'features.py'
    work = tmp_path / 'work dir'

    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv('OWN_DATA', str(data))
    status, printed = run_here('data/check_dataset.py', [config, '--no-progress'], capsys)
    assert status == 0 and 'no problem found' in printed and 'feature size 32' in printed

    # a wrong length is named with the values that would work, before any work is done
    status, printed = run_here('trainval.py', [
        config, '--work-dir', work, '--cfg-options', *SMALL_ACTIONFORMER,
        'train_dataset.max_seq_len=250'], capsys)
    assert status == 1 and not work.exists()
    assert 'train_dataset.max_seq_len=250 does not suit the model' in printed
    assert 'nearest valid values: 256' in printed

    run([tool('trainval.py'), config, '--work-dir', work, '--cfg-options', *SMALL_ACTIONFORMER,
         'train_cfg.epochs=2', 'train_cfg.ckpt_interval=2', 'scheduler.warmup_epochs=1',
         'scheduler.epochs=1', 'optimizer.lr=1e-3'], elsewhere, env)
    saved = (work / 'config.py').read_text()
    assert str(work) in saved  # the path with its space, as given
    run([tool('test.py'), config, work, '--out', work / 'my detections.json', '--cfg-options',
         *SMALL_ACTIONFORMER], elsewhere, env)
    detections = json.loads((work / 'my detections.json').read_text())['results']
    assert len(detections) == 4
    metrics = json.loads((work / 'metrics.json').read_text())
    assert 0.0 <= metrics['average_mAP'] <= 1.0

    # infer.py on feature files: only CONFIG, CHECKPOINT and .npy files; == test.py
    val_ids = sorted(detections)[:2]
    status, printed = run_here('infer.py', [
        config, work / 'latest.pth.tar', *[data / 'features' / f'{v}.npy' for v in val_ids],
        data / 'annotations.json', '--out', work / 'inferred.json', '--no-progress'], capsys)
    assert status == 1 and re.search(
        r'refused .*annotations\.json: not one of the \.npy feature files or videos', printed)
    inferred = json.loads((work / 'inferred.json').read_text())['results']
    assert sorted(inferred) == val_ids
    for vid in val_ids:
        a, b = detections[vid], inferred[vid]
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            assert x['label'] == y['label'] and x['score'] == pytest.approx(y['score'], abs=1e-6)
            assert x['segment'] == pytest.approx(y['segment'], abs=1e-4)

    # the guide's fine-tuning: that model's weights on a dataset with other classes; the
    # classification head does not fit, is re-initialised, and the log says so
    other = tmp_path / 'other classes'
    generate_synthetic_features(str(other), SyntheticFeatureSpec(num_train=4, num_val=2,
                                                                 num_classes=3, seed=4))
    monkeypatch.setenv('OWN_DATA', str(other))
    finetuned = tmp_path / 'fine tuned'
    status, printed = run_here('trainval.py', [
        config, '--work-dir', finetuned, '--cfg-options', *SMALL_ACTIONFORMER,
        'train_cfg.epochs=1', 'scheduler.warmup_epochs=0', 'scheduler.epochs=1',
        f'load_from={work / "latest.pth.tar"}'], capsys)
    assert status == 1 and 'cls_head' in printed and 'load_from_strict' in printed
    assert not (finetuned / 'latest.pth.tar').exists()
    status, printed = run_here('trainval.py', [
        config, '--work-dir', finetuned, '--overwrite', '--cfg-options', *SMALL_ACTIONFORMER,
        'train_cfg.epochs=1', 'scheduler.warmup_epochs=0', 'scheduler.epochs=1',
        f'load_from={work / "latest.pth.tar"}', 'load_from_strict=False'], capsys)
    assert status == 0, printed
    assert re.search(r'other shape, re-initialised: \S*cls_head', printed)
    assert (finetuned / 'latest.pth.tar').is_file()


def _make_videos(video_dir, fixtures):
    from vedatad.data.synthetic_videos import make_synthetic_videos
    video_dir.mkdir(parents=True)
    for name in ('mmaction2_part0_30fps_1s.mp4', 'moviepy_no_duration_vp9.webm'):
        shutil.copy(fixtures / name, video_dir / name)
    synth = video_dir.parent / 'synthetic'
    make_synthetic_videos(synth, num_videos=3, seconds=3, size=64, num_classes=2, seed=0)
    for path in (synth / 'videos').iterdir():
        shutil.copy(path, video_dir / path.name)


CSV = """video,start,end,label
synthetic_0000,0.5,2.5,red
synthetic_0001,1.0,2.9,green
synthetic_0002,0.2,1.8,red
moviepy_no_duration_vp9,1.0,3.0,green
mmaction2_part0_30fps_1s,0.1,0.9,red
"""


@pytest.mark.timeout(900)
def test_example_b_own_videos_data_preparation(tmp_path, env, video_fixture_dir, monkeypatch,
                                               capsys):
    root = tmp_path / 'my videos'
    _make_videos(root / 'videos', video_fixture_dir)
    env = dict(env, OWN_DATA=str(root))
    elsewhere = tmp_path / 'another dir'
    elsewhere.mkdir()

    # skeleton: durations and fps measured, the WebM without a duration header included
    proc = run([tool('data/make_annotations.py'), root / 'videos', '--out',
                root / 'skeleton.json', '--subset', 'validation=mmaction2_*,training=*',
                '--no-progress'], elsewhere, env)
    assert '5 videos' in proc.stdout
    skeleton = json.loads((root / 'skeleton.json').read_text())['database']
    assert skeleton['moviepy_no_duration_vp9']['num_frames'] == 74
    assert skeleton['moviepy_no_duration_vp9']['duration'] == pytest.approx(4.94, abs=0.01)
    assert skeleton['mmaction2_part0_30fps_1s']['subset'] == 'validation'

    # a bad CSV row is named by line, and nothing is written
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv('OWN_DATA', str(root))
    (root / 'bad.csv').write_text(CSV + 'synthetic_0000,3.0,2.0,red\nsynthetic_9,1,2,red\n')
    status, printed = run_here('data/import_csv.py', [
        root / 'bad.csv', '--skeleton', root / 'skeleton.json', '--out',
        root / 'annotations.json'], capsys)
    assert status == 1 and not (root / 'annotations.json').exists()
    assert re.search(r'bad.csv:7: segment \[3.0, 2.0\] ends before it starts', printed)
    assert "bad.csv:8: unknown video 'synthetic_9'" in printed
    (root / 'actions.csv').write_text(CSV)
    status, printed = run_here('data/import_csv.py', [
        root / 'actions.csv', '--skeleton', root / 'skeleton.json', '--out',
        root / 'annotations.json'], capsys)
    assert status == 0 and '5 action(s), 2 label(s)' in printed

    run([tool('data/extract_frames.py'), root / 'videos', root / 'frames', '--fps', '15',
         '--short-side', '128', '--workers', '2', '--no-progress'], elsewhere, env)
    config = REPO / 'configs' / 'own_data' / 'videos_tallformer.py'
    check = [config, '--no-progress', '--cfg-options', *DEMO_BACKBONE]
    status, printed = run_here('data/check_dataset.py', check, capsys)
    assert status == 1 and 'no memory bank at' in printed

    run([tool('data/extract_features.py'), '--config',
         REPO / 'configs' / 'own_data' / 'videos_extract.py', '--no-progress', '--cfg-options',
         'backbone.arch=demo', 'backbone.pretrained=None', 'extract.num_workers=0',
         'extract.device=cpu'], elsewhere, env)
    status, printed = run_here('data/check_dataset.py', check, capsys)
    assert status == 0 and 'no problem found' in printed
    assert '4 of 4 training videos present' in printed

    work = tmp_path / 'work dir'
    run([tool('trainval.py'), config, '--work-dir', work, '--cfg-options', *DEMO_BACKBONE,
         *SMALL_TALLFORMER, 'train_cfg.epochs=1', 'train_cfg.amp=None',
         'scheduler.warmup_epochs=0', 'scheduler.epochs=1', 'train_dataloader.batch_size=3',
         'train_dataloader.num_workers=0', 'device=cpu', 'cpu_threads=1'], elsewhere, env)
    assert (work / 'latest.pth.tar').is_file() and (work / 'membank' / 'zarr.json').is_file()
    run([tool('test.py'), config, work, '--out', work / 'detections.json', '--cfg-options',
         *DEMO_BACKBONE, *SMALL_TALLFORMER, 'val_dataloader.num_workers=0', 'device=cpu'],
        elsewhere, env)
    detections = json.loads((work / 'detections.json').read_text())['results']
    assert list(detections) == ['mmaction2_part0_30fps_1s']

    # infer.py: only CONFIG, CHECKPOINT and video files, from another folder, paths with
    # spaces; three real containers and a broken file, which is refused by name
    clips = tmp_path / 'new clips'
    clips.mkdir()
    for name in ('mmaction2_test_xvid_mp3.avi', 'moviepy_bbb_1s_vp8.webm',
                 'decord_video90_portrait.mov'):
        shutil.copy(video_fixture_dir / name, clips / name)
    (clips / 'broken.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' + bytes(200))
    ckpt = work / 'latest.pth.tar'
    status, printed = run_here('infer.py', [
        config, ckpt, clips, '--out', tmp_path / 'new dets.json', '--plot', tmp_path / 'plots',
        '--no-progress', '--cfg-options', 'device=cpu'], capsys)
    assert status == 1  # one input refused, the others written
    assert re.search(r'refused .*new clips/broken\.mp4: ', printed)
    dets = json.loads((tmp_path / 'new dets.json').read_text())['results']
    assert sorted(dets) == ['decord_video90_portrait', 'mmaction2_test_xvid_mp3',
                            'moviepy_bbb_1s_vp8']
    classes = {'red', 'green'}
    for vid, rows in dets.items():
        duration = float(re.search(rf'{vid}: ([0-9.]+) s', printed).group(1))
        assert rows and {r['label'] for r in rows} <= classes
        for r in rows:
            t0, t1 = r['segment']
            assert 0.0 <= t0 < t1 <= duration + 0.05, (vid, r)
    assert sorted(p.name for p in (tmp_path / 'plots').iterdir()) == [
        f'{v}.png' for v in sorted(dets)]

    # the same validation video through test.py and infer.py: the same detections
    status, _ = run_here('test.py', [
        config, ckpt, '--out', work / 'from video.json', '--cfg-options',
        f'val_dataset.data_prefix={root / "videos"}', 'val_dataset.sample_fps=15',
        *DEMO_BACKBONE, *SMALL_TALLFORMER, 'val_dataloader.num_workers=0', 'device=cpu'], capsys)
    assert status == 0
    status, _ = run_here('infer.py', [
        config, ckpt, root / 'videos' / 'mmaction2_part0_30fps_1s.mp4', '--out',
        work / 'inferred.json', '--no-progress'], capsys)
    assert status == 0
    tested = json.loads((work / 'from video.json').read_text())['results']
    inferred = json.loads((work / 'inferred.json').read_text())['results']
    assert list(inferred) == ['mmaction2_part0_30fps_1s']
    a, b = tested['mmaction2_part0_30fps_1s'], inferred['mmaction2_part0_30fps_1s']
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x['label'] == y['label']
        assert x['score'] == pytest.approx(y['score'], abs=1e-5)
        assert x['segment'] == pytest.approx(y['segment'], abs=1e-4)
