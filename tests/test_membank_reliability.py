"""Memory bank reliability: checksums, garbage collection, copies under concurrency, the
writer lock, settings, the old format, and the storage layer's import graph."""
import ast
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from vedatad.membank import (BankCorruptError, BankError, BankLock, BankLockedError,
                             MemoryBank, settings_differences)

sys.path.insert(0, str(Path(__file__).parent))
import membank_workers as workers  # noqa: E402

C = 32
REPO = Path(__file__).resolve().parents[1]


def feats(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 16, C)).astype(np.float32)


@pytest.fixture
def bank(tmp_path):
    b = MemoryBank.create(tmp_path / 'bank', feat_dim=C, backbone='t')
    b.add_video('v', 32 * 5)
    b.write_chunks('v', range(5), feats(5, 0), step=0)
    return b


def test_damaged_bytes_are_refused_naming_video_and_chunk(bank):
    shard = bank.path / 'feats/v/c/0/0'
    entries = np.fromfile(shard, '<u8', count=10).reshape(5, 2)
    with open(shard, 'r+b') as f:  # flip one byte inside chunk 3's features
        f.seek(int(entries[3, 0]) + 100)
        byte = f.read(1)
        f.seek(int(entries[3, 0]) + 100)
        f.write(bytes([byte[0] ^ 0x40]))
    fresh = MemoryBank.open(bank.path)
    np.testing.assert_array_equal(fresh.read_chunks('v', [0, 1, 2, 4]),
                                  feats(5, 0)[[0, 1, 2, 4]].astype(np.float16))
    with pytest.raises(BankCorruptError) as err:
        fresh.read_chunks('v', [2, 3])
    msg = str(err.value)
    assert 'video v' in msg and 'chunk 3 fails its crc32c checksum' in msg
    assert 'rollback_to' in msg and str(bank.path) in msg
    # an index entry pointing outside the file
    with open(shard, 'r+b') as f:
        f.seek(16)
        f.write(np.array([10**9, entries[1, 1]], '<u8').tobytes())
    with pytest.raises(BankCorruptError, match=r'chunk 1 index entry \(offset 1000000000'):
        MemoryBank.open(bank.path).read_chunks('v', [1])


def test_garbage_collection_bounds_the_disk_space_of_rewrites(bank):
    shard = bank.path / 'feats/v/c/0/0'
    for k in range(100):
        bank.write_chunks('v', [k % 5, (k + 2) % 5], feats(2, k), step=k)
    slot = 16 * C * 2 + 4
    assert shard.stat().st_size >= 200 * slot  # appended every time ...
    assert shard.stat().st_blocks * 512 <= 5 * slot + 16 * slot + 2 * 65536  # ... freed
    last = {}
    for k in range(100):
        last[k % 5], last[(k + 2) % 5] = (k, 0), (k, 1)
    for cid, (k, j) in last.items():
        np.testing.assert_array_equal(bank.read_chunks('v', [cid])[0],
                                      feats(2, k)[j].astype(np.float16))


def test_concurrent_copies_to_one_target_one_wins_the_other_is_told(tmp_path, bank):
    bank.mark_complete('v')
    ctx = mp.get_context('spawn')
    barrier, results = ctx.Barrier(3), ctx.Queue()
    target = tmp_path / 'runs' / 'membank'
    procs = [ctx.Process(target=workers.copy_bank, args=(str(bank.path), str(target), barrier,
                                                         results)) for _ in range(3)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    kinds = sorted(o[0] for o in outcomes)
    assert kinds.count('ok') >= 1 and set(kinds) <= {'ok', 'BankError'}, outcomes
    for kind, text in outcomes:
        if kind == 'BankError':
            assert 'Directory not empty' not in text
            assert 'another process created this bank' in text or 'already exists' in text
    copy = MemoryBank.open(target)
    assert copy.is_complete('v')
    np.testing.assert_array_equal(copy.read_chunks('v', range(5)), bank.read_chunks('v', range(5)))
    assert [p.name for p in target.parent.iterdir()] == ['membank']  # no temporary left


def test_copy_is_compact_and_keeps_never_written_chunks_absent(tmp_path, bank):
    bank.add_video('w', 64)
    bank.write_chunks('w', [1], feats(1, 3), step=4)
    for k in range(20):
        bank.write_chunks('v', [1], feats(1, 10 + k), step=k)
    bank.mark_consistent(20)
    copy = MemoryBank.copy(bank.path, tmp_path / 'copy')
    assert copy.journal_steps() == []  # journals describe the source, not the copy
    slot = 16 * C * 2 + 4
    assert (tmp_path / 'copy/feats/v/c/0/0').stat().st_size == 16 * 5 + 5 * slot
    entries, _ = copy._video('w').files.snapshot()
    assert entries[0].tolist() == [2**64 - 1] * 2  # chunk 0 of 'w' was never written
    for vid in ('v', 'w'):
        n = bank.num_chunks(vid)
        np.testing.assert_array_equal(copy.read_chunks(vid, range(n)),
                                      bank.read_chunks(vid, range(n)))
        assert copy.read_steps(vid, 0, n).tolist() == bank.read_steps(vid, 0, n).tolist()


def test_writer_lock_names_the_holder_and_is_shared_within_a_job(tmp_path):
    first = BankLock(tmp_path / 'bank', job_id='job-1', command='extract A').acquire()
    with pytest.raises(BankLockedError) as err:
        BankLock(tmp_path / 'bank', job_id='job-2').acquire()
    msg = str(err.value)
    assert f'pid {os.getpid()}' in msg and "'extract A'" in msg and 'job-1' in msg
    from vedatad.membank.lock import check_shared
    check_shared(tmp_path / 'bank', 'job-1')  # another rank of the same job: fine
    with pytest.raises(BankLockedError, match='not held by this job'):
        check_shared(tmp_path / 'bank', 'job-2')
    first.release()
    with BankLock(tmp_path / 'bank', job_id='job-2'):  # released cleanly: no warning
        pass


def test_settings_comparison():
    bank = dict(backbone='VideoSwin(arch=base)', fps=15, crop_size=224, mean=[1, 2, 3])
    job = dict(backbone='VideoSwin(arch=base)', fps=15.0, crop_size=(224,), mean=(1, 2, 3),
               weights='x.pth')
    assert settings_differences(bank, job) == [('crop_size', 224, [224])]


def make_v1_bank(path):
    """A bank as format version 1 wrote it (one zarr chunk file per clip chunk)."""
    attrs = dict(format='vedatad.membank', format_version=1, backbone='VideoSwin-old',
                 feat_dim=C, frames_per_row=2, frames_per_chunk=32, rows_per_chunk=16,
                 dtype='float16', config=dict(data=dict(fps=15, crop_size=112)))
    group = zarr.open_group(str(path), mode='w', attributes=attrs)
    group.require_group('feats')
    group.require_group('steps')
    values = feats(3, 5).reshape(48, C)[:40].astype(np.float16)
    arr = group.create_array('feats/old', shape=(40, C), chunks=(16, C), dtype='float16',
                             fill_value=0, compressors=None,
                             attributes=dict(num_frames=80, complete=True))
    arr[:] = values
    steps = group.create_array('steps/old', shape=(3,), chunks=(1,), dtype='int64',
                               fill_value=-1, compressors=None)
    steps[:] = [-1, 7, -1]
    return values


def test_old_format_is_refused_with_the_upgrade_command_and_upgrades(tmp_path):
    values = make_v1_bank(tmp_path / 'old')
    with pytest.raises(BankError) as err:
        MemoryBank.open(tmp_path / 'old')
    msg = str(err.value)
    assert 'format version 1 is not supported' in msg
    assert 'tools/data/upgrade_bank.py' in msg
    tool = subprocess.run([sys.executable, str(REPO / 'tools/data/upgrade_bank.py'),
                           str(tmp_path / 'old'), str(tmp_path / 'new bank')],
                          capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert tool.returncode == 0, tool.stderr
    assert '1 videos' in tool.stdout
    new = MemoryBank.open(tmp_path / 'new bank')
    assert new.attrs['format_version'] == 2 and new.attrs['upgraded_from'] == 1
    assert new.is_complete('old') and new.num_frames('old') == 80
    np.testing.assert_array_equal(new.read_chunks('old', range(3)).reshape(48, C)[:40], values)
    assert new.read_steps('old', 0, 3).tolist() == [-1, 7, -1]
    assert new.settings['crop_size'] == 112  # what the old config tells


def test_storage_layer_imports_no_upper_layer():
    """vedatad.membank is the ground floor: no data / models / engine imports, in the
    source and at run time."""
    upper = ('vedatad.data', 'vedatad.models', 'vedatad.engine')
    for path in sorted((REPO / 'vedatad/membank').glob('*.py')):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                name = node.module or ''
                if node.level:  # relative: resolve against vedatad.membank
                    base = ['vedatad', 'membank'][:max(0, 2 - node.level + 1)]
                    name = '.'.join(base + ([name] if name else []))
                names = [name]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            bad = [n for n in names if n.startswith(upper)]
            assert not bad, f'{path.name} imports {bad}'
    code = ('import sys, vedatad.membank; '
            'print(sorted(m for m in sys.modules if m.startswith(("vedatad.data", '
            '"vedatad.models", "vedatad.engine"))))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), check=True)
    assert out.stdout.strip() == '[]'


def test_reads_without_file_mappings_give_the_same_chunks(bank, monkeypatch):
    """Filesystems that cannot map files are read with pread: same results, same checks."""
    import vedatad.membank.shard as shard
    mapped = MemoryBank.open(bank.path).read_chunks('v', [4, 0, 2], with_steps=True)
    monkeypatch.setattr(shard.VideoFiles, 'can_map', False)
    fresh = MemoryBank.open(bank.path)
    got = fresh.read_chunks('v', [4, 0, 2], with_steps=True)
    np.testing.assert_array_equal(got[0], mapped[0])
    assert got[1].tolist() == mapped[1].tolist() == [0, 0, 0]
    assert fresh._video('v').files._map is None


def test_leftovers_of_an_interrupted_add_video_of_another_length_are_named(bank):
    bank.add_video('w', 64)  # 2 chunks
    (bank.path / 'feats/w/zarr.json').unlink()  # as if interrupted before the last file
    fresh = MemoryBank.open(bank.path, 'r+')
    with pytest.raises(BankError, match=r'video w: files left from an interrupted add_video'):
        fresh.add_video('w', 32 * 5)
    fresh.add_video('w', 64)  # the same length: the leftovers are simply reused
    assert fresh.num_chunks('w') == 2 and not fresh.read_chunks('w', [0, 1]).any()
