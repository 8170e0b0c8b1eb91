"""Readable text tables of evaluation metrics."""


def format_metrics_table(metrics, per_class=False) -> str:
    """mAP and Recall@kx per tIoU threshold (percent), the average, optionally per-class AP."""
    recall_keys = list(metrics.get('recall', {}))
    header = ['tIoU', 'mAP'] + [f'R@{k}' for k in recall_keys]
    rows = []
    for i, tiou in enumerate(metrics['tious']):
        row = [f'{tiou:.2f}', f'{100 * metrics["mAP"][i]:.2f}']
        row += [f'{100 * metrics["recall"][k][i]:.2f}' for k in recall_keys]
        rows.append(row)
    rows.append(['avg', f'{100 * metrics["average_mAP"]:.2f}']
                + [f'{100 * sum(metrics["recall"][k]) / len(metrics["recall"][k]):.2f}'
                   for k in recall_keys])
    lines = _grid(header, rows)
    lines.insert(0, 'Detection results (%)')
    if per_class:
        ap = metrics['per_class_ap']
        cls_header = ['class'] + [f'{t:.2f}' for t in metrics['tious']] + ['avg']
        cls_rows = [[name] + [f'{100 * v:.2f}' for v in values]
                    + [f'{100 * sum(values) / len(values):.2f}'] for name, values in ap.items()]
        lines += ['', 'Per-class AP (%)'] + _grid(cls_header, cls_rows)
    lines.append(f'Average mAP: {100 * metrics["average_mAP"]:.2f} (%)')
    return '\n'.join(lines)


def _grid(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def fmt(cells):
        first = cells[0].ljust(widths[0])
        return '| ' + ' | '.join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]) \
            + ' |'
    rule = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
    return [fmt(header), rule] + [fmt(r) for r in rows]
