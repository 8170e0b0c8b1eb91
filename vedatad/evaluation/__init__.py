"""Detection evaluation: official ActivityNet mAP, Recall@k×N, submission JSON I/O."""
from .evaluate import evaluate_detections
from .results import detections_to_results, load_results, save_results
from .table import format_metrics_table
from .thresholds import parse_tiou_thresholds

__all__ = ['evaluate_detections', 'format_metrics_table', 'parse_tiou_thresholds',
           'save_results', 'load_results', 'detections_to_results']
