"""Timeline picture: detections (and ground truth when known) per video, in seconds (PIL only).

Each video gets a block of rows: ground truth (when given), detections above the score
threshold (shaded by score), and a time axis with ticks in seconds. A video without any
detection above the threshold says so in its row, with its best score, so an empty picture
is never ambiguous. Segments are clipped to [0, duration] and drawn at least one pixel wide:
zero-length or reversed segments never break the drawing.
"""
import colorsys
import io
import math
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

from .io import atomic_write_bytes

PALETTE = [(40, 90, 230), (40, 180, 60), (220, 50, 40), (245, 150, 20), (150, 60, 200),
           (20, 180, 190), (230, 80, 170), (130, 100, 40), (110, 110, 110), (170, 200, 30)]
TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
LABEL_WIDTH = 190
ROW = 18
AXIS = 16
GAP = 10


@dataclass
class VideoSummary:
    video_id: str
    duration: float
    drawn: int                     # detections at or above the threshold
    total: int                     # detections of the video
    top_score: float | None        # best score of the video (None: no detections at all)


@dataclass
class TimelineSummary:
    path: str
    score_threshold: float
    videos: list = field(default_factory=list)   # VideoSummary per drawn video
    omitted: int = 0                              # videos beyond max_videos

    def lines(self):
        """Human-readable notes: one per video with nothing above the threshold."""
        out = []
        for v in self.videos:
            if v.drawn:
                continue
            if v.top_score is None:
                out.append(f'{v.video_id}: no detections')
            else:
                out.append(f'{v.video_id}: no detection with score >= {self.score_threshold:g} '
                           f'(top score {v.top_score:.3f})')
        if self.omitted:
            out.append(f'{self.omitted} more video(s) not drawn (max_videos)')
        return out


def class_colours(labels):
    """A distinct, stable colour per label name (sorted names take the palette in order)."""
    colours = {}
    for i, name in enumerate(sorted(labels)):
        if i < len(PALETTE):
            colours[name] = PALETTE[i]
        else:
            r, g, b = colorsys.hsv_to_rgb((i * 0.618) % 1.0, 0.75, 0.9)
            colours[name] = (int(r * 255), int(g * 255), int(b * 255))
    return colours


def tick_step(duration, max_ticks=10):
    """The smallest 'round' step in seconds giving at most ``max_ticks`` intervals."""
    for step in TICK_STEPS:
        if duration / step <= max_ticks:
            return step
    return TICK_STEPS[-1] * math.ceil(duration / (TICK_STEPS[-1] * max_ticks))


def _duration_of(video_id, ground_truth, durations, dets):
    """Known duration (ground truth, then ``durations``), else the latest detection end."""
    for source in (ground_truth, durations):
        value = (source or {}).get(video_id)
        if isinstance(value, dict):
            value = value.get('duration')
        if value is not None and math.isfinite(float(value)) and float(value) > 0:
            return float(value)
    ends = [float(max(d['segment'])) for d in dets if math.isfinite(float(max(d['segment'])))]
    return max(ends + [1.0])


def _span(t0, t1, duration):
    """Segment clipped to [0, duration], start <= end (reversed input is swapped)."""
    lo, hi = sorted((float(t0), float(t1)))
    return min(max(lo, 0.0), duration), min(max(hi, 0.0), duration)


class _Canvas:
    def __init__(self, width, height, title):
        self.img = Image.new('RGB', (width, height), 'white')
        self.draw = ImageDraw.Draw(self.img)
        self.font = ImageFont.load_default()
        self.left, self.span = LABEL_WIDTH, width - LABEL_WIDTH - 14
        if title:
            self.draw.text((8, 8), title, fill='black', font=self.font)

    def x(self, t, duration):
        return self.left + t * self.span / duration

    def bar(self, y, t0, t1, duration, fill, outline=None):
        a, b = _span(t0, t1, duration)
        x0, x1 = self.x(a, duration), self.x(b, duration)
        x1 = max(x1, x0 + 1)  # zero-length segments stay visible (and PIL needs x1 >= x0)
        self.draw.rectangle([x0, y + 3, x1, y + ROW - 3], fill=fill, outline=outline)

    def frame(self, y):
        self.draw.rectangle([self.left, y + 2, self.left + self.span, y + ROW - 2],
                            outline=(200, 200, 200))

    def axis(self, y, duration):
        d = self.draw
        d.line([self.left, y + 2, self.left + self.span, y + 2], fill='black')
        step = tick_step(duration)
        count = int(math.floor(duration / step + 1e-9))
        for k in range(count + 1):
            t = k * step
            x = self.x(t, duration)
            d.line([x, y + 2, x, y + 6], fill='black')
            d.text((x - 6, y + 6), f'{t:g}', fill='black', font=self.font)
        d.text((4, y + 4), 'time (s)', fill='gray', font=self.font)


def draw_timeline(detections, path, ground_truth=None, durations=None, score_threshold=0.3,
                  max_videos=12, width=1100, title=None):
    """Save a PNG of detections per video (with ground truth when given); return a summary.

    Args:
        detections: {video_id: [{'segment': [t0, t1], 'label': name, 'score': s}, ...]}.
        ground_truth: optional {video_id: {'duration': s, 'segments': [(t0, t1, label)]}};
            when given, its videos (in its order) are drawn, else the detections' videos.
        durations: optional {video_id: seconds} for videos without ground truth.
        score_threshold: detections below it are not drawn; drawn boxes are shaded by score.
    """
    order = list(ground_truth) if ground_truth else list(detections)
    vids, omitted = order[:max_videos], max(0, len(order) - max_videos)
    gt = ground_truth or {}
    labels = {s[2] for v in vids for s in gt.get(v, {}).get('segments', [])}
    labels |= {d['label'] for v in vids for d in detections.get(v, [])}
    colours = class_colours(labels)
    block = lambda v: (ROW if v in gt else 0) + ROW + AXIS + GAP  # noqa: E731
    top = 30 if title else 8
    height = top + sum(block(v) for v in vids) + 40
    canvas = _Canvas(width, max(height, 80), title)
    summary = TimelineSummary(str(path), float(score_threshold), omitted=omitted)
    y = top
    for vid in vids:
        dets = detections.get(vid, [])
        duration = _duration_of(vid, gt, durations, dets)
        if vid in gt:
            _draw_gt_row(canvas, y, vid, gt[vid], duration, colours)
            y += ROW
        summary.videos.append(_draw_detection_row(canvas, y, vid, dets, duration, colours,
                                                  score_threshold, first=vid not in gt))
        canvas.axis(y + ROW, duration)
        y += ROW + AXIS + GAP
    _draw_legend(canvas, y, colours, score_threshold, omitted)
    buf = io.BytesIO()
    canvas.img.save(buf, format='PNG')
    atomic_write_bytes(path, buf.getvalue())
    return summary


def _short(text, limit=24):
    return text if len(text) <= limit else text[:limit - 1] + '…'


def _draw_gt_row(canvas, y, vid, entry, duration, colours):
    canvas.draw.text((4, y + 3), f'{_short(vid)}  GT', fill='black', font=canvas.font)
    canvas.frame(y)
    for t0, t1, label in entry.get('segments', []):
        canvas.bar(y, t0, t1, duration, colours[label])


def _draw_detection_row(canvas, y, vid, dets, duration, colours, threshold, first):
    name = f'{_short(vid)}  det' if first else 'detections'
    canvas.draw.text((4, y + 3), name, fill='black' if first else 'gray', font=canvas.font)
    canvas.frame(y)
    scores = [float(d['score']) for d in dets]
    shown = sorted((d for d in dets if float(d['score']) >= threshold),
                   key=lambda d: float(d['score']))  # best drawn last, on top
    for d in shown:
        base = colours[d['label']]
        a = min(1.0, max(0.0, float(d['score'])))
        fill = tuple(int(255 - a * (255 - c)) for c in base)  # faded by score
        canvas.bar(y, d['segment'][0], d['segment'][1], duration, fill, outline=base)
    top_score = max(scores) if scores else None
    if not shown:
        note = ('no detections' if top_score is None else
                f'no detection with score >= {threshold:g} (top score {top_score:.3f})')
        canvas.draw.text((canvas.left + 6, y + 3), note, fill=(160, 40, 40), font=canvas.font)
    return VideoSummary(vid, duration, len(shown), len(dets), top_score)


def _draw_legend(canvas, y, colours, threshold, omitted):
    d, font = canvas.draw, canvas.font
    d.text((8, y + 4), f'score >= {threshold:g}', fill='gray', font=font)
    x = canvas.left
    for name in sorted(colours):
        d.rectangle([x, y + 4, x + 14, y + 16], fill=colours[name])
        d.text((x + 18, y + 4), name, fill='black', font=font)
        x += 30 + 7 * len(name)
    note = 'each video has its own time axis (seconds); detections are shaded by score'
    if omitted:
        note += f'; {omitted} more video(s) not drawn'
    d.text((canvas.left, y + 22), note, fill='gray', font=font)
