"""Test a checkpoint (or several epochs of a work dir): detections, mAP table, metrics JSON."""
import os

from ..registry import DATASETS, MODELS
from ..utils.io import atomic_write_json
from . import dist as dist_utils
from .checkpoint import LATEST, epoch_path, find_latest, load_model_weights
from .config_schema import dataloader_section, eval_section
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
    """The ``eval`` section with defaults from the dataset: ground truth, subset, and the
    thresholds of the release for the dataset family (``protocols.RELEASE_TIOUS``, exactly as
    its numpy.linspace computes them) or the dataset's."""
    from ..evaluation import parse_tiou_thresholds
    from ..evaluation.protocols import release_tiou_thresholds
    ev = eval_section(cfg)
    if ev['gt_json'] is None:
        ev['gt_json'] = getattr(dataset, 'json_file', None) or getattr(dataset, 'ann_file', None)
    if ev['gt_json'] is None:
        raise ValueError('eval.gt_json is not set and the validation dataset names no '
                         'annotation file')
    if ev['subset'] is None:
        split = getattr(dataset, 'split', None) or [getattr(dataset, 'subset', None)]
        ev['subset'] = split[0]
    tious = ev['tiou_thresholds']
    if tious is None:
        tious = (release_tiou_thresholds(type(dataset).__name__)
                 or list(getattr(dataset, 'tiou_thresholds', (0.3, 0.4, 0.5, 0.6, 0.7))))
    ev['tiou_thresholds'] = parse_tiou_thresholds(tious)
    return ev


def evaluate(submission, ev, logger=None):
    from ..evaluation import evaluate_detections
    metrics = evaluate_detections(ev['gt_json'], submission, subset=ev['subset'],
                                  tiou_thresholds=tuple(ev['tiou_thresholds']),
                                  protocol=ev['protocol'])
    report = metrics.get('ground_truth')
    if logger and report and report['removed_instances']:
        logger.info(f'{ev["gt_json"]} [{ev["subset"]}]: {report["removed_instances"]} duplicate '
                    'or shorter than 1 ms ground-truth instance(s) not counted, as the '
                    'ActionFormer release evaluates (eval.protocol=\'activitynet\' counts them)')
    return metrics


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
    eval_section(cfg)  # config errors before any work
    loader_cfg = dataloader_section(cfg, 'val_dataloader')
    checkpoints = resolve_checkpoints(target, epochs)
    info = dist_utils.init_distributed(cfg.get('device'))
    configure_cpu(cfg)
    # a bare file name lives in the current directory (its dirname is '')
    work_dir = work_dir or (target if os.path.isdir(target)
                            else os.path.dirname(os.path.abspath(target)))
    logger = get_logger(work_dir, info.rank, name='test')
    seed_everything(0, deterministic=True)
    dataset = DATASETS.build(cfg.val_dataset)
    loader = build_dataloader(dataset, loader_cfg, False, 0, info.rank, info.world_size)
    model = MODELS.build(cfg.model).to(info.device)
    ev = evaluation_cfg(cfg, dataset)
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
        metrics = evaluate(submission, ev, logger)
        metrics_path = _suffixed(metrics_out or os.path.join(work_dir, 'metrics.json'), name, many)
        atomic_write_json(metrics_path, jsonable(metrics), indent=1)
        logger.info(f'{name} ({path}):\n{format_metrics_table(metrics)}\n'
                    f'detections: {out_path}\nmetrics: {metrics_path}')
        rows.append((name, metrics))
    if many and info.is_main:
        logger.info('summary:\n' + summary_table(rows, ev['tiou_thresholds']))
    dist_utils.barrier()
    return rows
