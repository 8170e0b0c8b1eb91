"""Timeline picture: ground truth vs detections, one row pair per video (PIL only)."""
import colorsys

from PIL import Image, ImageDraw, ImageFont


PALETTE = [(40, 90, 230), (40, 180, 60), (220, 50, 40), (245, 150, 20), (150, 60, 200),
           (20, 180, 190), (230, 80, 170), (130, 100, 40), (110, 110, 110), (170, 200, 30)]


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


def draw_timeline(ground_truth, detections, path, score_threshold=0.3, max_videos=12,
                  width=1000, row_height=18, title=None):
    """Save a PNG comparing ground truth and detections per video.

    Args:
        ground_truth: {video_id: {'duration': s, 'segments': [(t0, t1, label), ...]}}.
        detections: {video_id: [{'segment': [t0, t1], 'label': name, 'score': s}, ...]}.
        score_threshold: detections below it are not drawn (the picture stays readable);
            drawn boxes are shaded by score.
    """
    vids = list(ground_truth)[:max_videos]
    labels = {seg[2] for v in vids for seg in ground_truth[v]['segments']}
    labels |= {d['label'] for v in vids for d in detections.get(v, [])}
    colours = class_colours(labels)
    font = ImageFont.load_default()
    left, top, gap = 170, 30 if title else 8, 10
    legend_h = 38
    height = top + len(vids) * (2 * row_height + gap) + legend_h + 8
    img = Image.new('RGB', (width, height), 'white')
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((8, 8), title, fill='black', font=font)
    span = width - left - 10
    y = top
    for vid in vids:
        duration = max(1e-6, float(ground_truth[vid]['duration']))
        scale = span / duration
        draw.text((4, y + 2), f'{vid[:18]} GT', fill='black', font=font)
        draw.text((4, y + row_height + 2), 'detections', fill='gray', font=font)
        for y0 in (y, y + row_height):
            draw.rectangle([left, y0 + 2, left + span, y0 + row_height - 2], outline=(200, 200, 200))
        for t0, t1, label in ground_truth[vid]['segments']:
            draw.rectangle([left + t0 * scale, y + 3, left + max(t0 + 1e-3, t1) * scale,
                            y + row_height - 3], fill=colours[label])
        dets = sorted((d for d in detections.get(vid, []) if d['score'] >= score_threshold),
                      key=lambda d: d['score'])
        for d in dets:
            t0, t1 = d['segment']
            base = colours[d['label']]
            a = min(1.0, float(d['score']))
            fill = tuple(int(255 - a * (255 - c)) for c in base)  # faded by score
            y0 = y + row_height
            draw.rectangle([left + max(0.0, t0) * scale, y0 + 3,
                            left + min(duration, max(t0 + 1e-3, t1)) * scale, y0 + row_height - 3],
                           fill=fill, outline=base)
        y += 2 * row_height + gap
    longest = max(float(ground_truth[v]['duration']) for v in vids) if vids else 0.0
    _draw_seconds_note(draw, font, left, y, longest)
    y += 14
    x = left
    for name in sorted(colours):
        draw.rectangle([x, y + 4, x + 14, y + 16], fill=colours[name])
        draw.text((x + 18, y + 4), name, fill='black', font=font)
        x += 30 + 7 * len(name)
    draw.text((8, y + 4), f'score >= {score_threshold}', fill='gray', font=font)
    img.save(path)
    return path


def _draw_seconds_note(draw, font, left, y, longest):
    draw.text((left, y), f'each row spans its own video: 0 s at the left, its duration at '
              f'the right (longest {longest:.1f} s)', fill='gray', font=font)
