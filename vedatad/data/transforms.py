"""Video transforms: dict in, dict out, registered in TRANSFORMS.

A pipeline state ``results`` holds (keys added as the pipeline runs):
    reader / num_frames / fps          the opened video (``DecodeFrames`` needs ``reader``)
    gt_segments (N, 2) float32         segments in frames, continuous coordinates: position x
                                       is time x / fps seconds (frame i spans [i, i + 1));
                                       relative to the window start after a temporal crop
    gt_labels (N,) int64
    frame_offset, window_size          first frame of the window (a multiple of chunk_size)
    fresh_chunks (k,) int64            window chunks that go through the backbone
                                       (``SelectFreshChunks``; the others come from the bank)
    frame_inds (T,) int64              the video frames to decode (only those inside the video;
                                       only the fresh chunks' frames after SelectFreshChunks)
    imgs                               uint8 (T, H, W, 3) after decoding, float32 after
                                       photometric distortion / normalisation (uint8 when
                                       they are asked to keep it); a torch tensor
                                       (3, W, H, Wd) after ``FormatWindow``
    fresh_imgs                         uint8 torch (k, 3, chunk_size, H, Wd) after
                                       ``FormatFreshChunks``
    pixel_mean / pixel_std (3,)        set by ``Normalize(on_device=True)``: the model
                                       normalises the uint8 pixels on its device
    masks (W,) bool                    True where the window holds a real frame (not padding)
    rng                                numpy Generator used by every random transform

Every operation works on whole arrays (no per-pixel Python loops). Spatial random choices
are drawn once per window, so all frames of a window get the same crop / flip / colours;
the draws do not depend on how many frames are decoded, so the fresh chunks of a window get
exactly the augmentation its whole window would have had.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from vedatad.registry import TRANSFORMS

from .chunk_sampling import SAMPLING_MODES, select_fresh_chunks


def _rng(results):
    rng = results.get('rng')
    if rng is None:
        rng = results['rng'] = np.random.default_rng()
    return rng


def _pair(size):
    """int or (h, w) -> (h, w)."""
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


def segment_coverage(segments, starts, valid_ends):
    """Fraction of each segment inside each window: (S windows, N segments).

    segments (N, 2) in frames; window k covers [starts[k], valid_ends[k]).
    """
    seg = np.asarray(segments, np.float64).reshape(-1, 2)
    lo = np.maximum(seg[None, :, 0], np.asarray(starts, np.float64)[:, None])  # S, N
    hi = np.minimum(seg[None, :, 1], np.asarray(valid_ends, np.float64)[:, None])
    length = np.maximum(seg[:, 1] - seg[:, 0], 1e-6)
    return np.clip(hi - lo, 0, None) / length[None]


def crop_segments(results, offset, window_size, min_coverage):
    """Keep segments with coverage >= min_coverage, clip them to the window, make them
    window-relative; set frame_offset / frame_inds / window_size."""
    num_frames = int(results['num_frames'])
    valid_end = min(offset + window_size, num_frames)
    segments = np.asarray(results.get('gt_segments', np.zeros((0, 2))), np.float32).reshape(-1, 2)
    labels = np.asarray(results.get('gt_labels', np.zeros(0)), np.int64).reshape(-1)
    coverage = segment_coverage(segments, [offset], [valid_end])[0]
    keep = (coverage >= min_coverage) & (coverage > 0)  # never a segment outside the window
    kept = np.clip(segments[keep], offset, valid_end) - offset
    results.update(gt_segments=kept.astype(np.float32), gt_labels=labels[keep],
                   frame_offset=int(offset), window_size=int(window_size),
                   frame_inds=np.arange(offset, valid_end, dtype=np.int64))
    return results


def chunk_grid_starts(num_frames, window_size, chunk_size):
    """Window starts on the chunk grid such that every frame is covered by some window
    (the last one may run past the end of the video and is then padded)."""
    last = math.ceil(max(num_frames - window_size, 0) / chunk_size) * chunk_size
    return np.arange(0, last + 1, chunk_size, dtype=np.int64)


@TRANSFORMS.register_module()
class TemporalRandomCrop:
    """A window of ``window_size`` frames starting on the ``chunk_size`` grid.

    Segments covered by the window for at least ``min_coverage`` of their own length are
    kept, clipped to the window; the others are dropped. Starts whose window keeps at least
    one segment are preferred (uniformly among them); if none does, any start is drawn.
    """

    def __init__(self, window_size, chunk_size=32, min_coverage=0.75):
        if window_size % chunk_size:
            raise ValueError(f'window_size {window_size} is not a multiple of chunk_size '
                             f'{chunk_size}')
        self.window_size = window_size
        self.chunk_size = chunk_size
        self.min_coverage = min_coverage

    def __call__(self, results):
        num_frames = int(results['num_frames'])
        starts = chunk_grid_starts(num_frames, self.window_size, self.chunk_size)
        segments = results.get('gt_segments')
        candidates = starts
        if segments is not None and len(segments):
            ends = np.minimum(starts + self.window_size, num_frames)
            coverage = segment_coverage(segments, starts, ends)  # S, N
            useful = ((coverage >= self.min_coverage) & (coverage > 0)).any(axis=1)
            if useful.any():
                candidates = starts[useful]
        offset = int(_rng(results).choice(candidates))
        return crop_segments(results, offset, self.window_size, self.min_coverage)


@TRANSFORMS.register_module()
class FixedWindow:
    """The window at ``results['frame_offset']`` (test-time per-window items)."""

    def __init__(self, window_size, chunk_size=32, min_coverage=0.75):
        self.window_size = window_size
        self.chunk_size = chunk_size
        self.min_coverage = min_coverage

    def __call__(self, results):
        offset = int(results.get('frame_offset', 0))
        if offset % self.chunk_size:
            raise ValueError(f"{results.get('video_id')}: frame_offset {offset} is not on the "
                             f'{self.chunk_size}-frame grid')
        return crop_segments(results, offset, self.window_size, self.min_coverage)


def chunk_frame_indices(frame_offset, chunks, chunk_size, num_frames):
    """Video frames of the given window chunks, in chunk order, those past the end dropped."""
    starts = int(frame_offset) + np.asarray(chunks, np.int64) * chunk_size
    frames = (starts[:, None] + np.arange(chunk_size)[None]).reshape(-1)
    return frames[frames < num_frames]


@TRANSFORMS.register_module()
class SelectFreshChunks:
    """Choose the window chunks that go through the backbone with gradients; only their
    frames are decoded from here on (the other chunks' features come from the memory bank).

    After a temporal crop (``frame_offset``, ``window_size``): sets ``fresh_chunks`` (k,)
    sorted window-relative chunk indices among the chunks that hold real frames (see
    ``select_fresh_chunks``), ``num_window_chunks`` and ``frame_inds`` = the fresh chunks'
    frames inside the video.
    """

    def __init__(self, keep_ratio, sampling='random', chunk_size=32):
        if sampling not in SAMPLING_MODES:
            raise ValueError(f'SelectFreshChunks: unknown sampling {sampling!r}; choose one of '
                             f'{SAMPLING_MODES}')
        if not 0.0 <= keep_ratio <= 1.0:
            raise ValueError(f'SelectFreshChunks: keep_ratio must lie in [0, 1], got '
                             f'{keep_ratio}')
        self.keep_ratio, self.sampling, self.chunk_size = keep_ratio, sampling, chunk_size

    def __call__(self, results):
        window, offset = int(results['window_size']), int(results['frame_offset'])
        num_frames = int(results['num_frames'])
        if window % self.chunk_size or offset % self.chunk_size:
            raise ValueError(f"{results.get('video_id')}: window ({offset}, {window} frames) is "
                             f'not on the {self.chunk_size}-frame chunk grid')
        n = window // self.chunk_size
        valid = math.ceil((min(offset + window, num_frames) - offset) / self.chunk_size)
        # a child generator: the spatial draws that follow (crop, flip, colours) stay those
        # the whole window would get without this step, so the fresh chunks look exactly
        # like the same chunks of the whole-window pipeline
        chunk_rng = _rng(results).spawn(1)[0]
        fresh = select_fresh_chunks(n, self.keep_ratio, self.sampling, chunk_rng, valid)
        results.update(fresh_chunks=fresh, num_window_chunks=n, chunk_size=self.chunk_size,
                       frame_inds=chunk_frame_indices(offset, fresh, self.chunk_size,
                                                      num_frames))
        return results


@TRANSFORMS.register_module()
class SlidingWindows:
    """Test time: windows over the whole video with the given overlap, starts on the grid.

    Sets frame_offsets (N_win,), window_size and frame_inds = every frame of the video.
    The stride is window_size * (1 - overlap) rounded down to the chunk grid (>= 1 chunk).
    """

    def __init__(self, window_size, overlap=0.25, chunk_size=32):
        if window_size % chunk_size:
            raise ValueError(f'window_size {window_size} is not a multiple of chunk_size '
                             f'{chunk_size}')
        self.window_size = window_size
        self.chunk_size = chunk_size
        stride = int(window_size * (1 - overlap)) // chunk_size * chunk_size
        self.stride = max(stride, chunk_size)

    def offsets(self, num_frames):
        last = max(num_frames - self.window_size, 0)
        offsets = list(range(0, last + 1, self.stride))
        if offsets[-1] < last:  # one more window so the video's tail is covered
            offsets.append(offsets[-1] + self.stride)
        return np.asarray(offsets, np.int64)

    def __call__(self, results):
        num_frames = int(results['num_frames'])
        results.update(frame_offsets=self.offsets(num_frames), window_size=self.window_size,
                       frame_inds=np.arange(num_frames, dtype=np.int64))
        return results


@TRANSFORMS.register_module()
class DecodeFrames:
    """Decode ``frame_inds`` from ``results['reader']`` into ``imgs`` uint8 (T, H, W, 3)."""

    def __call__(self, results):
        results['imgs'] = results['reader'].read(results['frame_inds'])
        return results


def _to_tchw(imgs):
    return torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2)


@TRANSFORMS.register_module()
class Resize:
    """Resize every frame to ``size`` (h, w), or so the short side equals ``short_side``."""

    def __init__(self, size=None, short_side=None, interpolation='bilinear'):
        if (size is None) == (short_side is None):
            raise ValueError('Resize needs exactly one of size=(h, w) or short_side=int')
        self.size = None if size is None else _pair(size)
        self.short_side = short_side
        self.interpolation = interpolation

    def target(self, h, w):
        if self.size is not None:
            return self.size
        scale = self.short_side / min(h, w)
        return (max(1, round(h * scale)), max(1, round(w * scale)))

    def __call__(self, results):
        imgs = results['imgs']
        h, w = imgs.shape[1:3]
        th, tw = self.target(h, w)
        if (th, tw) != (h, w) and len(imgs):
            x = _to_tchw(imgs).float()  # T, 3, H, W
            antialias = self.interpolation in ('bilinear', 'bicubic')
            x = F.interpolate(x, size=(th, tw), mode=self.interpolation, antialias=antialias,
                              **({} if self.interpolation == 'nearest'
                                 else {'align_corners': False}))
            out = x.permute(0, 2, 3, 1).numpy()
            imgs = out.round().clip(0, 255).astype(np.uint8) if imgs.dtype == np.uint8 else out
        elif not len(imgs):
            imgs = np.zeros((0, th, tw, 3), imgs.dtype)
        results['imgs'] = imgs
        return results


def _check_crop(results, ch, cw):
    h, w = results['imgs'].shape[1:3]
    if h < ch or w < cw:
        raise ValueError(f"{results.get('video_id')}: frames {h}x{w} smaller than the crop "
                         f'{ch}x{cw}; resize first')
    return h, w


@TRANSFORMS.register_module()
class RandomCrop:
    """Crop ``size`` (h, w) at one random position shared by all frames."""

    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, results):
        ch, cw = self.size
        h, w = _check_crop(results, ch, cw)
        rng = _rng(results)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        results['imgs'] = results['imgs'][:, y:y + ch, x:x + cw]
        return results


@TRANSFORMS.register_module()
class CenterCrop:
    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, results):
        ch, cw = self.size
        h, w = _check_crop(results, ch, cw)
        y, x = (h - ch) // 2, (w - cw) // 2
        results['imgs'] = results['imgs'][:, y:y + ch, x:x + cw]
        return results


@TRANSFORMS.register_module()
class RandomFlip:
    """Horizontal flip of the whole window with probability ``p`` (time is untouched)."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, results):
        flip = bool(_rng(results).random() < self.p)
        if flip:
            results['imgs'] = results['imgs'][:, :, ::-1]
        results['flipped'] = flip
        return results


# RGB <-> YIQ: hue is the angle of the (I, Q) chroma vector, so a hue shift is a rotation.
_RGB2YIQ = np.array([[0.299, 0.587, 0.114],
                     [0.596, -0.274, -0.322],
                     [0.211, -0.523, 0.312]], np.float32)
_YIQ2RGB = np.linalg.inv(_RGB2YIQ).astype(np.float32)
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)


@TRANSFORMS.register_module()
class PhotoMetricDistortion:
    """Random brightness, contrast, saturation and hue, each applied with probability p.

    One draw per window (frames stay consistent in time). Output in [0, 255]: float32, or
    rounded to uint8 with ``out_dtype='uint8'`` (pixels that travel as uint8 to the device).
    brightness_delta: added value in [-d, d]; contrast/saturation: factor range;
    hue_delta: rotation of the chroma plane in degrees, in [-d, d].
    """

    def __init__(self, brightness_delta=32, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta=18, p=0.5, out_dtype='float32'):
        if out_dtype not in ('float32', 'uint8'):
            raise ValueError(f"PhotoMetricDistortion: out_dtype must be 'float32' or 'uint8', "
                             f'got {out_dtype!r}')
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta
        self.p = p
        self.out_dtype = out_dtype

    def __call__(self, results):
        rng = _rng(results)
        imgs = np.asarray(results['imgs'], np.float32)  # T, H, W, 3
        if rng.random() < self.p:
            imgs = imgs + rng.uniform(-self.brightness_delta, self.brightness_delta)
        if rng.random() < self.p:
            imgs = imgs * rng.uniform(*self.contrast_range)
        if rng.random() < self.p:
            gray = (imgs @ _GRAY)[..., None]
            imgs = gray + (imgs - gray) * rng.uniform(*self.saturation_range)
        if rng.random() < self.p:
            angle = math.radians(rng.uniform(-self.hue_delta, self.hue_delta))
            c, s = math.cos(angle), math.sin(angle)
            rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)
            imgs = imgs @ (_YIQ2RGB @ rot @ _RGB2YIQ).T
        imgs = np.clip(imgs, 0, 255)
        results['imgs'] = imgs.round().astype(np.uint8) if self.out_dtype == 'uint8' else imgs
        return results


@TRANSFORMS.register_module()
class Normalize:
    """(imgs - mean) / std per RGB channel, float32.

    ``on_device=True`` leaves the pixels uint8 and records ``pixel_mean`` / ``pixel_std``
    instead: the model normalises on its device (4x fewer bytes through the loader than
    float32, and no float copy of the frames in the worker).
    """

    def __init__(self, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                 on_device=False):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.on_device = bool(on_device)

    def __call__(self, results):
        if self.on_device:
            if np.asarray(results['imgs']).dtype != np.uint8:
                raise ValueError(f"{results.get('video_id')}: Normalize(on_device=True) needs "
                                 f"uint8 frames, got {np.asarray(results['imgs']).dtype}; give "
                                 "PhotoMetricDistortion out_dtype='uint8'")
            results.update(pixel_mean=self.mean, pixel_std=self.std)
            return results
        results['imgs'] = (np.asarray(results['imgs'], np.float32) - self.mean) / self.std
        return results


def _to_cthw(imgs):
    """float (T, H, W, 3) numpy -> torch (3, T, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.float32)).permute(3, 0, 1, 2)


@TRANSFORMS.register_module()
class FormatWindow:
    """Pad the decoded frames to ``window_size`` and make torch tensors.

    imgs -> float (3, W, H, Wd), zeros after the last real frame; masks -> bool (W,);
    gt_segments / gt_labels -> torch tensors.
    """

    def __call__(self, results):
        frames = _to_cthw(results['imgs'])  # 3, T, H, W
        window = int(results['window_size'])
        valid = frames.shape[1]
        imgs = frames.new_zeros((3, window) + tuple(frames.shape[2:]))
        imgs[:, :valid] = frames
        masks = torch.zeros(window, dtype=torch.bool)
        masks[:valid] = True
        results.update(imgs=imgs, masks=masks, **_targets_to_torch(results))
        return results


@TRANSFORMS.register_module()
class FormatFreshChunks:
    """Training windows of the bank-backed path: only the fresh chunks' pixels.

    imgs (T_fresh, H, W, 3) uint8 -> ``fresh_imgs`` uint8 torch (k, 3, chunk_size, H, W),
    zeros after the last real frame (the model zeroes those frames again after normalising,
    as ``FormatWindow`` pads normalised windows with zeros); ``fresh_chunks`` int64 (k,);
    masks bool (W,) over the whole window; gt_segments / gt_labels as torch tensors.
    """

    def __call__(self, results):
        imgs = np.asarray(results['imgs'])
        if imgs.dtype != np.uint8:
            raise ValueError(f"{results.get('video_id')}: FormatFreshChunks ships uint8 pixels, "
                             f'got {imgs.dtype}; normalise on the device '
                             '(Normalize(on_device=True))')
        fresh = np.asarray(results['fresh_chunks'], np.int64)
        cs, window = int(results['chunk_size']), int(results['window_size'])
        valid = imgs.shape[0]
        out = torch.zeros((len(fresh) * cs,) + imgs.shape[1:], dtype=torch.uint8)  # T, H, W, 3
        out[:valid] = torch.from_numpy(np.ascontiguousarray(imgs))
        out = out.view(len(fresh), cs, *imgs.shape[1:]).permute(0, 4, 1, 2, 3).contiguous()
        real = min(window, int(results['num_frames']) - int(results['frame_offset']))
        masks = torch.zeros(window, dtype=torch.bool)
        masks[:real] = True
        results.update(fresh_imgs=out, fresh_chunks=torch.from_numpy(fresh), masks=masks,
                       **_targets_to_torch(results))
        return results


@TRANSFORMS.register_module()
class FormatWindows:
    """Test time: stack every sliding window of the whole video.

    imgs -> float (N_win, 3, W, H, Wd), a strided view of one padded copy of the video (no
    copy per overlapping window; call ``.contiguous()`` on a slice if needed);
    masks -> bool (N_win, W); frame_offsets -> int64 (N_win,).
    """

    def __call__(self, results):
        frames = _to_cthw(results['imgs'])  # 3, T, H, W
        offsets = torch.as_tensor(results['frame_offsets'], dtype=torch.long)
        window = int(results['window_size'])
        total = int(offsets[-1]) + window
        num = frames.shape[1]
        padded = frames.new_zeros((3, max(total, num)) + tuple(frames.shape[2:]))
        padded[:, :num] = frames
        stride = int(offsets[1] - offsets[0]) if len(offsets) > 1 else window
        views = padded[:, :total].unfold(1, window, stride)  # 3, N, H, Wd, W
        imgs = views.permute(1, 0, 4, 2, 3)  # N, 3, W, H, Wd
        valid = torch.arange(window)[None] + offsets[:, None] < num  # N, W
        results.update(imgs=imgs, masks=valid, frame_offsets=offsets,
                       **_targets_to_torch(results))
        return results


def _targets_to_torch(results):
    out = {}
    if 'gt_segments' in results:
        out['gt_segments'] = torch.as_tensor(
            np.asarray(results['gt_segments'], np.float32).reshape(-1, 2))
        out['gt_labels'] = torch.as_tensor(np.asarray(results['gt_labels'], np.int64))
    return out


@TRANSFORMS.register_module()
class Compose:
    """Apply transforms (objects or config dicts) in order."""

    def __init__(self, transforms):
        self.transforms = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in transforms]

    def __call__(self, results):
        for transform in self.transforms:
            results = transform(results)
        return results

    def __repr__(self):
        return f'Compose({[type(t).__name__ for t in self.transforms]})'
