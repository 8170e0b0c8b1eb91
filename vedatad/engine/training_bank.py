"""The working memory bank of a TALLFormer training run.

The engine opens it once per process, before the first step:

* the working bank is ``model.membank.path`` (default ``WORK_DIR/membank``); at the first
  start it is copied from ``model.membank.template`` by global rank 0 only, while every
  other rank (on this node or any other) waits, so the copy happens once even when nodes
  start at different times; multi-node runs need the work dir on a filesystem that every
  node sees (the bank's chunk writes rename files into place, atomic there too),
* ``--resume`` reuses the working bank, rolled back to the consistent point recorded when
  the resumed checkpoint was saved (``MemoryBank.mark_consistent``): writes made after that
  checkpoint (a crash, a stop between checkpoints) are undone, so the resumed run sees the
  bank exactly as the straight run did and staleness never goes negative. The bank keeps
  the points of its last two checkpoints; resuming from an older checkpoint is refused (start
  afresh with ``--overwrite``). A fresh start refuses a working bank left by an earlier run
  (it holds that run's writes: training on it would not repeat),
* ``frozen=True`` without a ``path`` reads the template itself, read-only, and never writes,
* bank and model must agree on feature size, frames per chunk and frames per row, and
  every training video must be in the bank and complete.

The bank then goes to the training dataset (``attach_bank``: stale chunks read in the
DataLoader workers, where the bank reopens itself by path) and, wrapped in a
``BankChunkWriter``, to the model (``attach_bank_writer``: the write-back of the fresh
chunks). At the end of every epoch pending writes are flushed (when the bank writes in the
background) and all ranks meet, so the next epoch's reads see every write of this one.
"""
from pathlib import Path

from ..data.bank_windows import BankChunkWriter
from ..membank import BankError, MemoryBank
from . import dist as dist_utils


def working_bank_path(membank_cfg, work_dir):
    return Path(membank_cfg.get('path') or Path(work_dir) / 'membank')


def _rollback(path, step, logger):
    """The working bank as it was when the checkpoint of global iteration ``step`` was
    saved; an error message when that point is not recorded."""
    bank = MemoryBank.open(path, 'r+')
    if bank.frozen or step is None:
        return None
    points = bank.journal_steps()
    if step not in points:
        return (f'{path}: the working memory bank has no consistent point for iteration {step} '
                f'of the checkpoint being resumed (it keeps {points or "none"}: the last '
                'checkpoints it saw); resume from the latest checkpoint, or start afresh with '
                '--overwrite')
    bank.rollback_to(step)
    if logger:
        logger.info(f'working memory bank {path} rolled back to its state at iteration {step} '
                    '(the resumed checkpoint): later writes are undone')
    return None


def _prepare_on_rank0(membank_cfg, path, resume, logger, resume_step=None):
    """Copy the template if needed, roll back to the resumed checkpoint; returns an error
    message or None (never raises, so the verdict can be shared with the other ranks)."""
    template = membank_cfg.get('template')
    exists = (path / 'zarr.json').is_file()
    try:
        if exists and resume:
            return _rollback(path, resume_step, logger)
        if exists and template:
            return (f'{path}: a working memory bank from an earlier run exists; it holds that '
                    'run\'s writes. Pass --resume to continue that run, or remove it to start '
                    f'over from the template {template}')
        if exists:  # a bank named by model.membank.path without a template: used as it is
            return None
        if resume:
            return (f'resuming, but the working memory bank {path} is missing (it holds the '
                    'features written so far; the checkpoint alone cannot continue exactly)')
        if not template:
            return (f'model.membank.template is not set and no working bank exists at {path}; '
                    'set model.membank.template to the bank filled by '
                    'tools/data/extract_features.py')
        MemoryBank.copy(template, path)
        if logger:
            logger.info(f'copied the template memory bank {template} to the working bank {path}')
    except (BankError, OSError) as err:
        return f'{type(err).__name__}: {err}'
    return None


def open_working_bank(membank_cfg, work_dir, resume=False, rank=0, logger=None,
                      resume_step=None):
    """The run's working bank, opened on every rank (see the module doc); ``resume_step``:
    the resumed checkpoint's global iteration."""
    if membank_cfg.get('frozen') and not membank_cfg.get('path'):
        template = membank_cfg.get('template')
        if not template:
            raise BankError('model.membank.frozen=True reads model.membank.template (or '
                            'model.membank.path), and neither is set')
        return MemoryBank.open(template, 'r')
    path = working_bank_path(membank_cfg, work_dir)
    error = _prepare_on_rank0(membank_cfg, path, resume, logger, resume_step) \
        if rank == 0 else None
    error = dist_utils.broadcast_object(error)  # the other ranks waited here for the copy
    if error:
        raise BankError(error)
    return MemoryBank.open(path, 'r+', frozen=bool(membank_cfg.get('frozen')))


def check_bank_fits(bank, model, dataset):
    """Bank vs model vs training videos, before the first step; raises BankError."""
    wrong = []
    if bank.feat_dim != model.feat_dim:
        wrong.append(f'feature size: bank {bank.feat_dim}, backbone {model.feat_dim} (the bank '
                     'was extracted with another backbone)')
    if bank.frames_per_chunk != model.chunk_size:
        wrong.append(f'frames per chunk: bank {bank.frames_per_chunk}, model.chunk_size '
                     f'{model.chunk_size}')
    if bank.frames_per_row != model.frames_per_row:
        wrong.append(f'frames per row: bank {bank.frames_per_row}, model.frames_per_row '
                     f'{model.frames_per_row}')
    if wrong:
        raise BankError(f'{bank.path} does not fit the model ({bank.backbone}):\n  '
                        + '\n  '.join(wrong))
    videos = [v.video_id for v in getattr(dataset, 'videos', [])]
    absent = [v for v in videos if not bank.has_video(v)]
    incomplete = [v for v in videos if v not in absent and not bank.is_complete(v)]
    for what, ids in (('not in the bank', absent), ('incomplete in the bank', incomplete)):
        if ids:
            raise BankError(f'{bank.path}: {len(ids)} training video(s) {what} (e.g. '
                            f'{ids[:5]}); run tools/data/extract_features.py on the template '
                            'bank and start from a fresh copy, or leave them out')


class TrainingBank:
    """The opened working bank and its writer; ``epoch_end()`` after every epoch."""

    def __init__(self, bank, writer):
        self.bank, self.writer = bank, writer

    def epoch_end(self):
        if self.writer is not None:
            self.writer.flush()
        dist_utils.barrier()

    def mark_consistent(self, global_iter):
        """Record the bank's state as the one of the checkpoint about to be saved (one rank,
        after ``epoch_end``: every rank's writes are flushed and no rank writes meanwhile)."""
        if self.writer is not None:
            self.bank.mark_consistent(global_iter)


def setup_training_bank(model, dataset, work_dir, resume=False, rank=0, logger=None,
                        resume_step=None):
    """Open the working bank and attach it to ``dataset`` and ``model``; None when the model
    trains without a bank (no ``membank_cfg``). ``resume_step``: global iteration of the
    resumed checkpoint (the bank is rolled back to it)."""
    membank_cfg = getattr(model, 'membank_cfg', None)
    if membank_cfg is None:
        return None
    if not getattr(dataset, 'needs_bank', False):
        raise BankError(f'{type(model).__name__} trains with a memory bank, but the training '
                        'dataset does not read one: set train_dataset.pipeline_cfg.keep_ratio '
                        '(the fraction of chunks decoded and recomputed per window)')
    bank = open_working_bank(membank_cfg, work_dir, resume, rank, logger, resume_step)
    check_bank_fits(bank, model, dataset)
    dataset.attach_bank(bank)
    writer = None if (membank_cfg.get('frozen') or bank.mode == 'r') else BankChunkWriter(bank)
    model.attach_bank_writer(writer)
    if logger:
        logger.info(f'memory bank {bank.path} ({bank.backbone}, C={bank.feat_dim}, '
                    f'{"frozen: read only" if writer is None else "read + write-back"})')
    return TrainingBank(bank, writer)
