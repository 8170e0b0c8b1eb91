"""Memory-bank reads and writes for bank-backed TALLFormer training windows.

A training window of ``n`` chunks holds ``k`` fresh chunks (decoded, through the backbone)
and ``n - k`` stale ones, whose features come from the working memory bank. The reads run
in the DataLoader workers (``BankWindowReader``, called by ``VideoDataset``), so disk I/O
overlaps with the training step; the fresh chunks' new features go back through
``BankChunkWriter``, which the engine attaches to the model (``attach_bank_writer``).

Every read is checked, so invalid bank data never reaches the model silently:

* the video is in the bank and complete (``complete=True``: extraction finished it),
* its frame count equals the dataset's (another frame rate or another decode of the
  video gives another count, and windows past the bank's end would read zeros),
* the bank's recorded frame rate (``settings.fps``, when the bank has it) equals the
  dataset's,
* every stale chunk holds finite values and is not all zeros (a deleted or never written
  chunk file reads as zarr's fill value 0; features out of the backbone's final norm never
  are exactly zero).

Errors are ``BankDataError`` and name the bank, the video and the chunk, and say what to do.

Ordering: a video goes to at most one rank per epoch (the training sampler drops the
remainder instead of padding with repeats), so a read never races a write of the same chunk
in the same epoch, and all ranks meet between epochs after any pending bank writes
(``vedatad.engine.training_bank``).
"""
import numpy as np

from ..membank import BankError


class BankDataError(BankError):
    """Bank data that training must not use; the message names bank, video and chunk."""


def _fix_hint(bank):
    return (f're-extract that video into the template bank (tools/data/extract_features.py) '
            f'and copy it into the working bank {bank.path}, or start from a fresh copy')


def bank_fps(bank):
    """Frame rate recorded with the bank: ``settings.fps``, else the extraction config's
    ``data.fps`` (older banks); None when neither says."""
    settings = bank.attrs.get('settings') or {}
    fps = settings.get('fps')
    if fps is None:
        fps = ((bank.attrs.get('config') or {}).get('data') or {}).get('fps')
    return None if fps is None else float(fps)


class BankWindowReader:
    """Stale-chunk reads of training windows from one bank (picklable: the bank reopens
    itself by path in each DataLoader worker). Per-video checks run once per process."""

    def __init__(self, bank):
        self.bank = bank
        self._checked = {}  # video id -> number of bank chunks

    def __getstate__(self):
        return dict(bank=self.bank, _checked={})

    def check_video(self, video_id, num_frames, fps=None):
        """Number of bank chunks of a video that training may read; raises BankDataError."""
        known = self._checked.get(video_id)
        if known is not None:
            return known
        bank = self.bank
        if not bank.has_video(video_id):
            raise BankDataError(f'{bank.path}: video {video_id!r} is not in the memory bank; '
                                'extract it first (tools/data/extract_features.py) and copy '
                                'it into the working bank, or leave it out of the training set')
        if not bank.is_complete(video_id):
            raise BankDataError(f'{bank.path}: video {video_id!r} is incomplete in the memory '
                                f'bank (extraction did not finish it); {_fix_hint(bank)}')
        have = bank.num_frames(video_id)
        if have != int(num_frames):
            raise BankDataError(
                f'{bank.path}: video {video_id!r} has {have} frames in the memory bank but '
                f'{int(num_frames)} in the dataset (another frame rate or another copy of the '
                'video?); the bank must be extracted from the same frames as training uses')
        stored_fps = bank_fps(bank)
        if fps is not None and stored_fps is not None and abs(stored_fps - float(fps)) > 1e-3:
            raise BankDataError(f'{bank.path}: the bank was extracted at {stored_fps:g} fps, the '
                                f'dataset reads video {video_id!r} at {float(fps):g} fps')
        self._checked[video_id] = n = bank.num_chunks(video_id)
        return n

    def read(self, video_id, num_frames, first_chunk, num_chunks, fresh_chunks, fps=None):
        """Stale chunks of one window.

        Returns ``feats`` (num_chunks, rows_per_chunk, C) in the bank's dtype (float16 by
        default) with zeros at the fresh chunks and past the video end, and ``steps``
        (num_chunks,) int64: the training step that last wrote each chunk (-1: never, or not
        read).
        """
        bank = self.bank
        video_chunks = self.check_video(video_id, num_frames, fps)
        fresh = set(int(c) for c in fresh_chunks)
        stale = [c for c in range(num_chunks)
                 if c not in fresh and first_chunk + c < video_chunks]
        feats = np.zeros((num_chunks, bank.rows_per_chunk, bank.feat_dim), bank.dtype)
        steps = np.full(num_chunks, -1, np.int64)
        if stale:
            ids = [first_chunk + c for c in stale]
            feats[stale] = self._checked_chunks(video_id, ids, bank.read_chunks(video_id, ids))
            steps[stale] = bank.read_steps(video_id, first_chunk, num_chunks)[stale]
        return feats, steps

    def _checked_chunks(self, video_id, ids, chunks):
        bank = self.bank
        rows = bank.num_rows(video_id)
        finite = np.isfinite(chunks).all(axis=(1, 2))
        for k, cid in enumerate(ids):
            inside = min(bank.rows_per_chunk, rows - cid * bank.rows_per_chunk)
            if not finite[k]:
                raise BankDataError(f'{bank.path}: video {video_id!r}, chunk {cid}: stored '
                                    f'features are not finite (NaN/inf); {_fix_hint(bank)}')
            if not chunks[k, :inside].any():
                raise BankDataError(f'{bank.path}: video {video_id!r}, chunk {cid}: no stored '
                                    'features (the chunk file is missing or all zeros); '
                                    f'{_fix_hint(bank)}')
        return chunks


class BankChunkWriter:
    """Writes recomputed chunks back into the working bank: whole chunks inside the video
    (padding past its end is not stored), with the training step that computed them."""

    def __init__(self, bank):
        self.bank = bank

    def write(self, video_ids, first_chunks, fresh_chunks, feats, step):
        """feats: (K, rows_per_chunk, C) (torch or numpy; K = total fresh chunks of the
        batch in video order), fresh_chunks: per video the window-relative chunk indices."""
        if hasattr(feats, 'detach'):
            feats = feats.detach().float().cpu().numpy()
        start = 0
        for vid, c0, picks in zip(video_ids, first_chunks, fresh_chunks):
            if hasattr(picks, 'cpu'):  # DDP may have moved the batch's tensors to the GPU
                picks = picks.cpu().numpy()
            picks = np.asarray(picks, np.int64)
            part = feats[start:start + len(picks)]
            start += len(picks)
            ids = int(c0) + picks
            inside = ids < self.bank.num_chunks(vid)
            if inside.any():
                self.bank.write_chunks(vid, ids[inside].tolist(), part[inside], step=int(step))

    def flush(self):
        """Wait for pending writes when the bank writes in the background."""
        if hasattr(self.bank, 'flush'):
            self.bank.flush()

