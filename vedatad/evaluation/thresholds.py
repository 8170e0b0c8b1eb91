"""tIoU threshold lists from the command line or configs."""
import numpy as np


def parse_tiou_thresholds(spec) -> list[float]:
    """``"0.5:0.95:10"`` -> ``np.linspace(0.5, 0.95, 10)`` (what the official ActivityNet and
    ActionFormer evaluators use); ``"0.3,0.4,0.5"`` -> those literal values; a list/tuple of
    numbers is taken as is. Note ``"0.3:0.7:5"`` gives 0.39999999999999997, not 0.4, exactly
    like ``np.linspace``."""
    if isinstance(spec, (list, tuple, np.ndarray)):
        values = [float(x) for x in spec]
    elif isinstance(spec, str) and ':' in spec:
        parts = spec.split(':')
        if len(parts) != 3:
            raise ValueError(f'tIoU thresholds {spec!r}: expected START:STOP:NUM')
        try:
            start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise ValueError(f'tIoU thresholds {spec!r}: expected START:STOP:NUM') from None
        if num < 1:
            raise ValueError(f'tIoU thresholds {spec!r}: NUM must be >= 1')
        values = np.linspace(start, stop, num).tolist()
    elif isinstance(spec, str):
        try:
            values = [float(x) for x in spec.split(',') if x.strip()]
        except ValueError:
            raise ValueError(f'tIoU thresholds {spec!r}: expected comma-separated numbers') \
                from None
    else:
        raise TypeError(f'tIoU thresholds: expected a string or a list, got {spec!r}')
    if not values:
        raise ValueError(f'tIoU thresholds {spec!r}: empty')
    bad = [v for v in values if not 0.0 < v <= 1.0]
    if bad:
        raise ValueError(f'tIoU thresholds {spec!r}: values must be in (0, 1], got {bad}')
    return values
