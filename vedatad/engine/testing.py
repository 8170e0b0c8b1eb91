"""Test a checkpoint (or several epochs of a work dir): detections, mAP table, metrics JSON."""
import os

from ..registry import DATASETS, MODELS
from ..utils.io import atomic_write_json
from . import dist as dist_utils
from .checkpoint import LATEST, epoch_path, find_latest, load_model_weights
from .dataloader import build_dataloader
from .inference import dataset_label_names, predict_dataset, to_submission
from .runtime import configure_cpu, get_logger, seed_everything


def resolve_checkpoints(target, epochs=None):
    """[(name, path)] for a checkpoint file, or for epochs of a work dir (latest if none)."""
    if os.path.isfile(target):
        return [(os.path.basename(target), target)]
    if not os.path.isdir(target):
        raise FileNotFoundError(f'checkpoint or work dir not found: {target}')
    if epochs:
        paths = [(f'epoch {e}', epoch_path(target, e)) for e in epochs]
        missing = [p for _, p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f'missing checkpoints: {", ".join(missing)}')
        return paths
    latest = find_latest(target)
    if latest is None:
        raise FileNotFoundError(f'no checkpoint ({LATEST} or epoch_NNN.pth.tar) in {target}')
    return [(os.path.basename(latest), latest)]


def jsonable(obj):
    """Plain JSON types (metrics may hold numpy scalars / arrays)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, 'tolist'):
        return jsonable(obj.tolist())
    return obj


def _suffixed(path, name, many):
    if not many:
        return path
    root, ext = os.path.splitext(path)
    return f'{root}_{name.replace(" ", "_")}{ext}'


def evaluation_cfg(cfg, dataset):
    ev = dict(cfg.get('eval', {}))
    ev.setdefault('gt_json', getattr(dataset, 'json_file', None))
    ev.setdefault('subset', getattr(dataset, 'split', [None])[0])
    ev.setdefault('tiou_thresholds', list(getattr(dataset, 'tiou_thresholds', (0.3, 0.5, 0.7))))
    return ev


def evaluate(submission, ev):
    from ..evaluation import evaluate_detections
    return evaluate_detections(ev['gt_json'], submission, subset=ev['subset'],
                               tiou_thresholds=tuple(ev['tiou_thresholds']))


def summary_table(rows, tious):
    """One line per checkpoint: mAP (%) per tIoU, average mAP, Recall@1x/5x averaged over
    the tIoUs."""
    header = ['checkpoint'] + [f'mAP@{t:.2f}' for t in tious] + ['avg mAP', 'R@1x', 'R@5x']
    lines = [' | '.join(f'{h:>10}' for h in header)]
    for name, m in rows:
        recall = m.get('recall', {})
        cells = [name] + [f'{100 * v:.2f}' for v in m['mAP']] + [f'{100 * m["average_mAP"]:.2f}']
        cells += [f'{100 * sum(recall[k]) / len(recall[k]):.2f}' if recall.get(k) else '-'
                  for k in ('1x', '5x')]
        lines.append(' | '.join(f'{c:>10}' for c in cells))
    return '\n'.join(lines)


def test(cfg, target, epochs=None, out=None, metrics_out=None, use_ema=True, work_dir=None):
    """Run inference + evaluation; returns [(checkpoint name, metrics)] (rank 0; others [])."""
    from ..evaluation import format_metrics_table
    from ..evaluation.results import save_results
    info = dist_utils.init_distributed(cfg.get('device'))
    configure_cpu(cfg)
    work_dir = work_dir or (target if os.path.isdir(target) else os.path.dirname(target))
    logger = get_logger(work_dir, info.rank, name='test')
    seed_everything(0, deterministic=True)
    dataset = DATASETS.build(cfg.val_dataset)
    loader = build_dataloader(dataset, cfg.get('val_dataloader', dict(batch_size=1)), False, 0,
                              info.rank, info.world_size)
    model = MODELS.build(cfg.model).to(info.device)
    ev = evaluation_cfg(cfg, dataset)
    checkpoints = resolve_checkpoints(target, epochs)
    many = len(checkpoints) > 1
    rows = []
    for name, path in checkpoints:
        load_model_weights(model, path, use_ema=use_ema, logger=logger)
        # dataset-level steps such as ActivityNet's classifier fusion happen in the model
        results = predict_dataset(model, loader, desc=name)
        if not info.is_main:
            continue
        submission = to_submission(results, dataset_label_names(dataset))
        out_path = _suffixed(out or os.path.join(work_dir, 'detections.json'), name, many)
        save_results(out_path, submission)
        metrics = evaluate(submission, ev)
        metrics_path = _suffixed(metrics_out or os.path.join(work_dir, 'metrics.json'), name, many)
        atomic_write_json(metrics_path, jsonable(metrics), indent=1)
        logger.info(f'{name} ({path}):\n{format_metrics_table(metrics)}\n'
                    f'detections: {out_path}\nmetrics: {metrics_path}')
        rows.append((name, metrics))
    if many and info.is_main:
        logger.info('summary:\n' + summary_table(rows, ev['tiou_thresholds']))
    dist_utils.barrier()
    return rows
