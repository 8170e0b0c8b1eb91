"""A full disk never tears a chunk: writes store everything or raise, old data stays intact.

Runs on a small tmpfs mounted for the test (needs root; skipped with the reason otherwise).
Chunks are C = 1024 float16 (32 kB, several pages), so a write can be cut short mid-chunk.
"""
import errno
import os
import subprocess

import numpy as np
import pytest

from vedatad.membank import BankFullError, MemoryBank
from vedatad.utils.io import AtomicWriteError, atomic_write_bytes, publish_new_file

C = 1024
CHUNK = 16 * C * 2


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / 'small disk'  # a space in the path on purpose
    mnt.mkdir()
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f'cannot mount a tmpfs (needs root): {proc.stderr.strip()}')
    try:
        yield mnt
    finally:
        subprocess.run(['umount', '-l', str(mnt)], check=False)


def fill(folder, leave=0):
    """Fill the filesystem of ``folder``, then free ``leave`` bytes (rounded to pages)."""
    path = folder / 'filler'
    block = b'\xab' * 65536
    with open(path, 'wb', buffering=0) as f:
        while True:
            try:
                if f.write(block) < len(block):
                    break
            except OSError as err:
                assert err.errno == errno.ENOSPC
                break
    size = path.stat().st_size
    os.truncate(path, max(0, size - leave))
    return path


def chunks(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 16, C)).astype(np.float32)


def test_full_disk_write_raises_and_keeps_the_old_chunks(small_disk):
    bank = MemoryBank.create(small_disk / 'bank', feat_dim=C, backbone='t')
    bank.add_video('vid', 32 * 8)  # 8 chunks of 32 kB
    bank.write_chunks('vid', list(range(8)), chunks(8, 0), step=1)
    before = bank.read_chunks('vid', range(8))
    shard = small_disk / 'bank/feats/vid/c/0/0'
    size_before = shard.stat().st_size
    filler = fill(small_disk, leave=CHUNK // 3)  # room for a third of one chunk
    with pytest.raises(BankFullError) as err:
        bank.write_chunks('vid', [2, 5], chunks(2, 1), step=7)
    msg = str(err.value)
    assert str(small_disk / 'bank') in msg and 'video vid' in msg and 'chunks [2, 5]' in msg
    assert 'disk is full' in msg and 'previous contents are intact' in msg
    assert shard.stat().st_size == size_before  # the partial append was cut off again
    # the same handle and a fresh one read the old chunks bit for bit, steps unchanged
    np.testing.assert_array_equal(bank.read_chunks('vid', range(8)), before)
    fresh = MemoryBank.open(small_disk / 'bank')
    np.testing.assert_array_equal(fresh.read_chunks('vid', range(8)), before)
    assert fresh.read_steps('vid', 0, 8).tolist() == [1] * 8
    # once there is room again, the same write goes through
    filler.unlink()
    bank.write_chunks('vid', [2, 5], chunks(2, 1), step=7)
    got = MemoryBank.open(small_disk / 'bank').read_chunks('vid', [2, 5, 0])
    np.testing.assert_array_equal(got[:2], chunks(2, 1).astype(np.float16))
    np.testing.assert_array_equal(got[2], before[0])


def test_full_disk_while_adding_videos_and_marking(small_disk):
    bank = MemoryBank.create(small_disk / 'bank', feat_dim=C, backbone='t')
    bank.add_video('a', 64)
    bank.write_chunks('a', [0, 1], chunks(2, 3), step=-1)
    filler = fill(small_disk)
    with pytest.raises(BankFullError, match=r'video b: not added.*disk full'):
        bank.add_video('b', 64)
    assert not bank.has_video('b') and bank.video_ids() == ['a']
    with pytest.raises(BankFullError, match='video a: complete flag not written'):
        bank.mark_complete('a')
    assert not MemoryBank.open(small_disk / 'bank').is_complete('a')
    with pytest.raises(BankFullError, match='journal of step 3 not written'):
        bank.mark_consistent(3)
    assert bank.journal_steps() == []
    filler.unlink()
    bank.add_video('b', 64)  # leftovers of the failed attempt are reused
    bank.mark_complete('a')
    reopened = MemoryBank.open(small_disk / 'bank')
    assert reopened.video_ids() == ['a', 'b'] and reopened.is_complete('a')
    np.testing.assert_array_equal(reopened.read_chunks('a', [0, 1]),
                                  chunks(2, 3).astype(np.float16))
    assert not reopened.read_chunks('b', [0, 1]).any()


def test_atomic_writes_on_a_full_disk_leave_the_old_file(small_disk):
    target = small_disk / 'checkpoint.pth'
    target.write_bytes(b'old contents')
    fill(small_disk, leave=4096)
    with pytest.raises(AtomicWriteError, match='checkpoint.pth.*disk full') as err:
        atomic_write_bytes(target, os.urandom(256 * 1024))
    assert err.value.errno == errno.ENOSPC
    assert target.read_bytes() == b'old contents'
    assert sorted(p.name for p in small_disk.iterdir()) == ['checkpoint.pth', 'filler']
    with pytest.raises(AtomicWriteError, match='new.json'):
        publish_new_file(small_disk / 'new.json', os.urandom(256 * 1024))
    assert not (small_disk / 'new.json').exists()


def test_extraction_on_a_full_disk_fails_by_video_and_resumes(small_disk, tmp_path):
    """Videos that cannot be stored are reported, and a rerun with room completes them."""
    pytest.importorskip('decord')
    from mmengine.config import Config

    from test_extract_features import BACKBONE, video_ids
    from vedatad.data.synthetic_videos import make_synthetic_videos
    from vedatad.engine.extract import extract_features
    videos = tmp_path / 'videos'
    make_synthetic_videos(videos, num_videos=3, seconds=3, size=64, num_classes=2, seed=1)
    cfg = Config(dict(
        data=dict(root=str(videos / 'videos'), ann_file=str(videos / 'annotations.json'),
                  fps=15, crop_size=32),
        backbone=dict(BACKBONE, pretrained=None),
        bank=dict(path=str(small_disk / 'bank')),
        extract=dict(chunk_size=32, chunks_per_item=1, num_workers=0)))
    filler = fill(small_disk, leave=40 * 1024)
    summary = extract_features(cfg, progress=False)
    assert summary.failed, 'the disk had room for everything?'
    assert all('disk is full' in msg or 'disk full' in msg for msg in summary.failed.values()), \
        summary.failed
    filler.unlink()
    again = extract_features(cfg, progress=False)
    assert not again.failed, again.failed
    bank = MemoryBank.open(small_disk / 'bank')
    assert all(bank.is_complete(v) for v in video_ids(videos))
    reference = extract_features(Config(dict(cfg.to_dict(), bank=dict(
        path=str(tmp_path / 'reference')))), progress=False)
    assert not reference.failed
    ref = MemoryBank.open(tmp_path / 'reference')
    for vid in video_ids(videos):
        np.testing.assert_array_equal(bank.read_chunks(vid, range(bank.num_chunks(vid))),
                                      ref.read_chunks(vid, range(ref.num_chunks(vid))))
