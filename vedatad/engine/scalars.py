"""``WORK_DIR/scalars.jsonl``: one JSON object per training iteration, beside TensorBoard.

Each line: ``epoch`` (1-based), ``iter`` (0-based inside the epoch), ``global_iter``,
``lr`` (list: the rate each optimiser parameter group used for this iteration's update, in
``optimizer.param_groups`` order), then every loss the model returned (``final_loss``,
``cls_loss``, ...) as floats. A skipped (non-finite) step has no line.

A fresh run starts the file anew; a resumed run first drops the lines of the epochs after its
checkpoint (a run killed after its last checkpoint logged iterations that the resumed run
repeats), so the file always describes one straight run.
"""
import json
import os

from ..utils.io import atomic_write_text

SCALARS_FILE = 'scalars.jsonl'


class ScalarLog:
    def __init__(self, work_dir, start_epoch=0):
        self.path = os.path.join(work_dir, SCALARS_FILE)
        kept = self._lines_until(start_epoch) if start_epoch > 0 else []
        atomic_write_text(self.path, ''.join(kept))
        self._file = open(self.path, 'a', encoding='utf-8')

    def _lines_until(self, start_epoch):
        if not os.path.isfile(self.path):
            return []
        kept = []
        with open(self.path, encoding='utf-8') as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line torn by a kill: nothing after it was written
                if record.get('epoch', 0) > start_epoch:
                    break
                kept.append(line if line.endswith('\n') else line + '\n')
        return kept

    def write(self, epoch, it, global_iter, lrs, losses):
        record = {'epoch': epoch, 'iter': it, 'global_iter': global_iter,
                  'lr': [float(lr) for lr in lrs], **{k: float(v) for k, v in losses.items()}}
        self._file.write(json.dumps(record) + '\n')
        self._file.flush()

    def close(self):
        self._file.close()


def read_scalars(work_dir):
    """The records of ``WORK_DIR/scalars.jsonl`` as a list of dicts."""
    with open(os.path.join(work_dir, SCALARS_FILE), encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]
