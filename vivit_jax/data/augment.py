"""Spatial ops on one video (numpy): crops, resizing, flips and normalisation, plus the
training augmentations of the papers (scale jitter, Inception/random-resized crop, colour
jitter, Scenic/DMVR colour augmentation with colour drop, RandAugment with our op set or
Scenic's video op set, random erasing), each applied with the same parameters to every
frame of a clip.

`video` is [T, H, W, C] (uint8 pixels in [0, 255], or float32 in the same units) unless
a docstring says otherwise. Crop boxes are (y, x, height, width) in pixels (floats
allowed where a docstring says so). Random ops take a `np.random.Generator`, so a
pipeline is deterministic given its seed.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]     # (y, x, height, width), pixels.
FloatBox = tuple[float, float, float, float]


def crop(video: np.ndarray, box: Box) -> np.ndarray:
  """[T, h, w, C]: the `box` = (y, x, h, w) of every frame (a view, no copy)."""
  y, x, h, w = box
  return video[:, y:y + h, x:x + w]


def random_crop_box(height: int, width: int, size: int, rng: np.random.Generator) -> Box:
  """A `size` x `size` box at a uniformly random position inside height x width."""
  _check_fits(height, width, size)
  y = int(rng.integers(0, height - size + 1))
  x = int(rng.integers(0, width - size + 1))
  return y, x, size, size


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            area_range=(0.08, 1.0), aspect_range=(3 / 4, 4 / 3),
                            max_attempts: int = 10) -> Box:
  """Inception-style box, as PySlowFast's `random_resized_crop`
  (slowfast/datasets/transform.py `_get_param_spatial_crop`): area a fraction in
  `area_range` of the frame, aspect ratio w/h log-uniform in `aspect_range`, uniform
  position; after `max_attempts` misses, the centred whole frame, narrowed to the
  nearest aspect ratio in `aspect_range` where the frame's own is outside it. Resize the
  crop afterwards (the same box for every frame)."""
  area = height * width
  log_lo, log_hi = np.log(aspect_range[0]), np.log(aspect_range[1])
  for _ in range(max_attempts):
    target = area * rng.uniform(*area_range)
    aspect = np.exp(rng.uniform(log_lo, log_hi))
    w = int(round(np.sqrt(target * aspect)))
    h = int(round(np.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      y = int(rng.integers(0, height - h + 1))
      x = int(rng.integers(0, width - w + 1))
      return y, x, h, w
  h, w = height, width
  if width / height < min(aspect_range):
    h = min(height, int(round(width / min(aspect_range))))
  elif width / height > max(aspect_range):
    w = min(width, int(round(height * max(aspect_range))))
  return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height: int, width: int, size: int) -> Box:
  """The centred `size` x `size` box (offsets rounded down)."""
  _check_fits(height, width, size)
  return (height - size) // 2, (width - size) // 2, size, size


def three_crop_boxes(height: int, width: int, size: int) -> list[Box]:
  """Three `size` x `size` boxes along the longer side: left/centre/right when
  width >= height, else top/centre/bottom (the other side centred)."""
  _check_fits(height, width, size)
  y, x, _, _ = center_crop_box(height, width, size)
  if width >= height:
    return [(y, 0, size, size), (y, x, size, size), (y, width - size, size, size)]
  return [(0, x, size, size), (y, x, size, size), (height - size, x, size, size)]


def center_crop(video: np.ndarray, size: int) -> np.ndarray:
  """[T, size, size, C]: the centred square crop."""
  return crop(video, center_crop_box(video.shape[1], video.shape[2], size))


def three_crops(video: np.ndarray, size: int) -> np.ndarray:
  """[3, T, size, size, C]: the crops of `three_crop_boxes`."""
  boxes = three_crop_boxes(video.shape[1], video.shape[2], size)
  return np.stack([crop(video, b) for b in boxes])


def flip_left_right(video: np.ndarray) -> np.ndarray:
  """[T, H, W, C] mirrored along the width (a view)."""
  return video[:, :, ::-1]


def resize(video: np.ndarray, height: int, width: int) -> np.ndarray:
  """float32[T, height, width, C]: bilinear resize, antialiased when shrinking
  (triangle filter widened by the scale factor, like jax.image.resize 'linear')."""
  rows = _linear_weights(video.shape[1], height)     # [height, H]
  cols = _linear_weights(video.shape[2], width)      # [width, W]
  return np.einsum('oh,thwc,pw->topc', rows, video.astype(np.float32), cols,
                   optimize=True)


def resize_short_side(video: np.ndarray, size: int) -> np.ndarray:
  """float32[T, H', W', C] with min(H', W') = size and the aspect ratio kept."""
  h, w = video.shape[1:3]
  scale = size / min(h, w)
  return resize(video, max(int(round(h * scale)), size), max(int(round(w * scale)), size))


def normalize_affine(mean_rgb, std_rgb) -> tuple[np.ndarray, np.ndarray]:
  """(scale, shift), float32[3] each: `normalize` computes `pixels * scale - shift` in
  float32 (an exported model's preprocessing uses the same constants and order)."""
  mean = np.asarray(mean_rgb, np.float32)
  std = np.asarray(std_rgb, np.float32)
  return (1.0 / (255.0 * std)).astype(np.float32), (mean / std).astype(np.float32)


def normalize(video: np.ndarray, mean_rgb, std_rgb) -> np.ndarray:
  """float32, same shape: (video / 255 - mean_rgb) / std_rgb over the last axis."""
  scale, shift = normalize_affine(mean_rgb, std_rgb)
  # One row per image line so that the per-channel constants broadcast along a long
  # inner axis (numpy is slow on an inner axis of 3).
  width = video.shape[-2] if video.ndim >= 2 else 1
  scale, shift = np.tile(scale, width), np.tile(shift, width)
  out = np.multiply(video.reshape(-1, scale.size), scale, dtype=np.float32)
  out -= shift
  return out.reshape(video.shape)


def denormalize(video, mean_rgb, std_rgb) -> np.ndarray:
  """uint8, same shape: the pixels of a `normalize`d float video (video * std_rgb +
  mean_rgb, times 255, rounded and clipped to [0, 255]), for pictures."""
  pixels = (np.asarray(video, np.float32) * np.asarray(std_rgb, np.float32)
            + np.asarray(mean_rgb, np.float32))
  return np.clip(pixels * 255 + 0.5, 0, 255).astype(np.uint8)


def _linear_weights(in_len: int, out_len: int) -> np.ndarray:
  """float32[out_len, in_len]: rows of a normalised (antialiased) triangle filter."""
  scale = in_len / out_len
  support = max(scale, 1.0)
  centres = (np.arange(out_len) + 0.5) * scale - 0.5          # in input pixels.
  dist = np.abs(np.arange(in_len)[None, :] - centres[:, None]) / support
  weights = np.maximum(0.0, 1.0 - dist)
  return (weights / weights.sum(1, keepdims=True)).astype(np.float32)


def _check_fits(height, width, size):
  if size > height or size > width:
    raise ValueError(f'A {size}x{size} crop does not fit in {height}x{width} frames; '
                     'resize the video first (e.g. resize_short_side).')


# Crops of decoded frames at any resolution (the video-file / TFRecord pipeline).


def resize_box(video: np.ndarray, box: FloatBox, height: int, width: int) -> np.ndarray:
  """uint8[T, height, width, C]: the (float) `box` of every uint8 frame resized to
  height x width (bilinear, antialiased when shrinking; PIL). An integer box of the
  output size is a plain crop, bit-exact."""
  y, x, h, w = box
  if (h, w) == (height, width) and float(y).is_integer() and float(x).is_integer():
    return np.ascontiguousarray(crop(video, (int(y), int(x), height, width)))
  pil_box = (float(x), float(y), float(x + w), float(y + h))
  return np.stack([np.asarray(Image.fromarray(frame).resize(
      (width, height), Image.BILINEAR, box=pil_box)) for frame in video])


def _short_side_scale(height: int, width: int, min_resize: Optional[int]) -> float:
  return 1.0 if not min_resize else min_resize / min(height, width)


def scale_jitter_box(height: int, width: int, crop_size: int, rng: np.random.Generator,
                     *, min_resize: Optional[int] = None,
                     factor_range: Optional[Sequence[float]] = (0.9, 1.33),
                     prob: float = 1.0) -> FloatBox:
  """The training crop of the ViViT/Scenic pipeline as a float box in frame pixels.

  Equivalent to: resize the shorter side to `min_resize` (None: keep the size); with
  probability `prob` scale height and width by independent factors uniform in
  `factor_range` (the paper: [0.9, 1.33]; None: no jitter); take a uniformly placed
  crop_size x crop_size crop. Scales are raised where needed so the crop fits. Resize
  the box to crop_size with `resize_box` (one resampling instead of two).
  """
  base = _short_side_scale(height, width, min_resize)
  sy = sx = base
  if factor_range is not None and rng.random() < prob:
    sy, sx = base * rng.uniform(*factor_range), base * rng.uniform(*factor_range)
  sy, sx = max(sy, crop_size / height), max(sx, crop_size / width)
  y = int(rng.integers(0, max(int(round(height * sy)) - crop_size, 0) + 1)) / sy
  x = int(rng.integers(0, max(int(round(width * sx)) - crop_size, 0) + 1)) / sx
  h, w = crop_size / sy, crop_size / sx
  return min(y, height - h), min(x, width - w), h, w


def eval_view_boxes(height: int, width: int, crop_size: int, num_crops: int,
                    min_resize: Optional[int] = None) -> list[FloatBox]:
  """Float boxes in frame pixels of the test crops after resizing the shorter side to
  `min_resize` (None: keep; raised to crop_size if smaller): 1 = centre, 3 = along the
  longer side (see three_crop_boxes)."""
  if num_crops not in (1, 3):
    raise ValueError(f'num_crops={num_crops} is invalid: expected 1 (centre) or 3.')
  scale = max(_short_side_scale(height, width, min_resize), crop_size / min(height, width))
  h, w = max(int(round(height * scale)), crop_size), max(int(round(width * scale)), crop_size)
  boxes = ([center_crop_box(h, w, crop_size)] if num_crops == 1
           else three_crop_boxes(h, w, crop_size))
  # Back to frame pixels with each axis's own factor (h / height, w / width: the rounded
  # resize), so a box that ends at the resized frame's edge ends at the frame's edge.
  sy, sx = h / height, w / width
  return [(by / sy, bx / sx, bh / sy, bw / sx) for by, bx, bh, bw in boxes]


# Colour jitter (SimCLR-style: random order, multiplicative brightness, YIQ hue; not
# DMVR's `color_default_augm`, which is `dmvr_color_augment` below), one draw per clip.

_GRAY = np.array([0.299, 0.587, 0.114], np.float32)


def _blend(video, other, factor):
  return other + factor * (video - other)


def _gray(video):
  return (video @ _GRAY)[..., None]


def adjust_hue(video: np.ndarray, delta: float) -> np.ndarray:
  """float32, same shape: hue rotated by `delta` turns (YIQ rotation, luma kept)."""
  to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                     [0.211, -0.523, 0.312]], np.float32)
  c, s = np.cos(2 * np.pi * delta), np.sin(2 * np.pi * delta)
  rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)
  m = np.linalg.inv(to_yiq) @ rot @ to_yiq
  return video.astype(np.float32) @ m.T.astype(np.float32)


def color_jitter(video: np.ndarray, rng: np.random.Generator, strength: float = 1.0,
                 prob: float = 0.8) -> np.ndarray:
  """float32[T, H, W, 3] in [0, 255]: with probability `prob`, brightness, contrast and
  saturation factors uniform in [1 - 0.8 s, 1 + 0.8 s] and a hue shift uniform in
  [-0.2 s, 0.2 s] turns (s = strength), in random order, the same for every frame.
  Contrast blends with the clip's mean grey level (not each frame's)."""
  out = video.astype(np.float32)
  if strength <= 0 or rng.random() >= prob:
    return out
  lo, hi = max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength
  factors = rng.uniform(lo, hi, 3)
  hue = rng.uniform(-0.2 * strength, 0.2 * strength)
  for op in rng.permutation(4):
    if op == 0:
      out = out * factors[0]
    elif op == 1:
      out = _blend(out, _gray(out).mean(), factors[1])
    elif op == 2:
      out = _blend(out, _gray(out), factors[2])
    else:
      out = adjust_hue(out, hue)
    out = np.clip(out, 0.0, 255.0)
  return out


# RandAugment (Cubuk et al. 2020), the same ops and parameters on every frame.

RAND_AUGMENT_OPS = ('identity', 'auto_contrast', 'equalize', 'rotate', 'solarize',
                    'color', 'posterize', 'contrast', 'brightness', 'sharpness',
                    'shear_x', 'shear_y', 'translate_x', 'translate_y')
_FILL = 128     # grey for pixels moved in from outside the frame.


def _affine(video: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """uint8, same shape: out(p) = video(matrix @ p) with p = (x, y, 1) about the frame
  centre; nearest neighbour, outside pixels grey."""
  t, h, w, c = video.shape
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  cy, cx = (h - 1) / 2, (w - 1) / 2
  src_x = matrix[0, 0] * (xs - cx) + matrix[0, 1] * (ys - cy) + matrix[0, 2] + cx
  src_y = matrix[1, 0] * (xs - cx) + matrix[1, 1] * (ys - cy) + matrix[1, 2] + cy
  ix, iy = np.round(src_x).astype(np.int64), np.round(src_y).astype(np.int64)
  inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
  out = video[:, np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]
  out[:, ~inside] = _FILL
  return out


def _equalize(video: np.ndarray) -> np.ndarray:
  """PIL's equalize, one histogram per channel over the whole clip."""
  out = np.empty_like(video)
  for ch in range(video.shape[-1]):
    values = video[..., ch]
    hist = np.bincount(values.ravel(), minlength=256)
    nonzero = hist[hist > 0]
    step = (nonzero.sum() - nonzero[-1]) // 255
    if step == 0:
      out[..., ch] = values
      continue
    lut = (np.cumsum(hist) - hist + step // 2) // step
    out[..., ch] = np.clip(lut, 0, 255).astype(np.uint8)[values]
  return out


def _auto_contrast(video: np.ndarray) -> np.ndarray:
  """Each channel stretched to [0, 255] by its min/max over the whole clip."""
  lo = video.min(axis=(0, 1, 2), keepdims=True).astype(np.float32)
  hi = video.max(axis=(0, 1, 2), keepdims=True).astype(np.float32)
  scale = np.where(hi > lo, 255.0 / np.maximum(hi - lo, 1), 1.0)
  offset = np.where(hi > lo, lo, 0.0)
  return np.clip((video - offset) * scale, 0, 255).astype(np.uint8)


def _smooth(video: np.ndarray) -> np.ndarray:
  """PIL's SMOOTH kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (edges kept)."""
  v = video.astype(np.float32)
  pad = np.pad(v, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  acc = sum(pad[:, 1 + dy:pad.shape[1] - 1 + dy, 1 + dx:pad.shape[2] - 1 + dx]
            for dy in (-1, 0, 1) for dx in (-1, 0, 1))
  out = (acc + 4 * v) / 13
  out[:, [0, -1]] = v[:, [0, -1]]
  out[:, :, [0, -1]] = v[:, :, [0, -1]]
  return out


_ENHANCE_OPS = ('color', 'contrast', 'brightness', 'sharpness')


def _enhance(video: np.ndarray, op: str, factor: float) -> np.ndarray:
  """uint8, same shape: PIL's ImageEnhance `op` (one of _ENHANCE_OPS) at `factor`
  (1 = unchanged), blending with grey / the clip's mean grey / black / a smoothed copy."""
  v = video.astype(np.float32)
  other = {'color': lambda: _gray(v), 'contrast': lambda: _gray(v).mean(),
           'brightness': lambda: 0.0, 'sharpness': lambda: _smooth(video)}[op]()
  return np.clip(np.round(_blend(v, other, factor)), 0, 255).astype(np.uint8)


def apply_rand_augment_op(video: np.ndarray, op: str, magnitude: float,
                          sign: float = 1.0) -> np.ndarray:
  """uint8[T, H, W, C]: one RandAugment `op` at `magnitude` in [0, 10] (timm's ranges:
  rotate 30°, shear 0.3, translate 45% of the side, enhance factors 1 ± 0.9, posterize
  to 4 bits, solarize threshold 256 -> 0), `sign` +-1 for the signed ops."""
  m = float(magnitude) / 10.0
  h, w = video.shape[1:3]
  if op == 'identity':
    return video
  if op == 'auto_contrast':
    return _auto_contrast(video)
  if op == 'equalize':
    return _equalize(video)
  if op == 'solarize':
    threshold = 256 - 256 * m
    return np.where(video >= threshold, 255 - video, video).astype(np.uint8)
  if op == 'posterize':
    shift = int(round(4 * m))
    return ((video >> shift) << shift).astype(np.uint8)
  if op in _ENHANCE_OPS:
    return _enhance(video, op, 1.0 + sign * 0.9 * m)
  if op == 'rotate':
    a = np.deg2rad(sign * 30 * m)
    matrix = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0]])
  elif op == 'shear_x':
    matrix = np.array([[1, sign * 0.3 * m, 0], [0, 1, 0]])
  elif op == 'shear_y':
    matrix = np.array([[1, 0, 0], [sign * 0.3 * m, 1, 0]])
  elif op == 'translate_x':
    matrix = np.array([[1, 0, sign * 0.45 * m * w], [0, 1, 0]])
  elif op == 'translate_y':
    matrix = np.array([[1, 0, 0], [0, 1, sign * 0.45 * m * h]])
  else:
    raise ValueError(f'RandAugment op={op!r} is invalid: expected one of '
                     f'{list(RAND_AUGMENT_OPS)}.')
  return _affine(video, matrix)


def rand_augment(video: np.ndarray, rng: np.random.Generator, num_layers: int = 2,
                 magnitude: float = 9.0) -> np.ndarray:
  """uint8[T, H, W, C]: `num_layers` ops drawn uniformly from RAND_AUGMENT_OPS (with
  replacement), each at `magnitude` with a random sign, the same on every frame."""
  for _ in range(num_layers):
    op = RAND_AUGMENT_OPS[int(rng.integers(len(RAND_AUGMENT_OPS)))]
    sign = 1.0 if rng.random() < 0.5 else -1.0
    video = apply_rand_augment_op(video, op, magnitude, sign)
  return video


# timm's RandAugment as PySlowFast applies it to videos (slowfast/datasets/rand_augment.py,
# AA_TYPE `rand-m{M}-n{N}-mstd{S}[-inc1]`): N ops drawn with replacement from 15, each
# applied with probability 0.5 at a magnitude drawn from N(M, S) clipped to [0, 10], the
# same on every frame. `inc1` selects the increasing-severity variants of posterize,
# solarize and the four enhance ops.

TIMM_RAND_AUGMENT_OPS = ('auto_contrast', 'equalize', 'invert', 'rotate', 'posterize',
                         'solarize', 'solarize_add', 'color', 'contrast', 'brightness',
                         'sharpness', 'shear_x', 'shear_y', 'translate_x', 'translate_y')
TIMM_OP_PROB = 0.5        # timm's AugmentOp(prob=0.5) in rand_augment_ops.


def apply_timm_rand_augment_op(video: np.ndarray, op: str, magnitude: float,
                               sign: float = 1.0, increasing: bool = True) -> np.ndarray:
  """uint8[T, H, W, C]: one of TIMM_RAND_AUGMENT_OPS at `magnitude` in [0, 10], with
  timm's level-to-argument rules (`increasing`: the `inc1` variants). Posterize keeps
  int(0.4 m) bits (inc: 4 minus that), solarize inverts pixels >= int(25.6 m) (inc:
  256 minus that), solarize_add adds int(11 m) below 128, enhance factors are
  0.18 m + 0.1 (inc: 1 +- 0.09 m); the geometric ops are RAND_AUGMENT_OPS' ones."""
  m = float(magnitude) / 10.0
  if op == 'invert':
    return (255 - video).astype(np.uint8)
  if op == 'posterize':
    bits = int(m * 4)
    bits = 4 - bits if increasing else bits
    mask = np.uint8((0xFF << (8 - bits)) & 0xFF)
    return (video & mask).astype(np.uint8)
  if op == 'solarize':
    threshold = int(m * 256)
    threshold = 256 - threshold if increasing else threshold
    return np.where(video >= threshold, 255 - video, video).astype(np.uint8)
  if op == 'solarize_add':
    added = np.minimum(video.astype(np.int32) + int(m * 110), 255).astype(np.uint8)
    return np.where(video < 128, added, video)
  if op in _ENHANCE_OPS:
    return _enhance(video, op, 1.0 + sign * 0.9 * m if increasing else 1.8 * m + 0.1)
  if op not in TIMM_RAND_AUGMENT_OPS:
    raise ValueError(f'timm RandAugment op={op!r} is invalid: expected one of '
                     f'{list(TIMM_RAND_AUGMENT_OPS)}.')
  return apply_rand_augment_op(video, op, magnitude, sign)


def timm_rand_augment(video: np.ndarray, rng: np.random.Generator, num_layers: int = 2,
                      magnitude: float = 9.0, magnitude_std: float = 0.0,
                      increasing: bool = True) -> np.ndarray:
  """uint8[T, H, W, C]: `num_layers` draws from TIMM_RAND_AUGMENT_OPS (with replacement),
  each applied with probability TIMM_OP_PROB at N(magnitude, magnitude_std) clipped to
  [0, 10], with a random sign for the signed ops; the same on every frame."""
  video = np.ascontiguousarray(np.clip(video, 0, 255)).astype(np.uint8)
  for _ in range(num_layers):
    op = TIMM_RAND_AUGMENT_OPS[int(rng.integers(len(TIMM_RAND_AUGMENT_OPS)))]
    if rng.random() >= TIMM_OP_PROB:
      continue
    m = rng.normal(magnitude, magnitude_std) if magnitude_std > 0 else magnitude
    sign = 1.0 if rng.random() < 0.5 else -1.0
    video = apply_timm_rand_augment_op(video, op, min(10.0, max(0.0, m)), sign, increasing)
  return video


# Scenic/DMVR colour augmentation with colour drop (DMVR processors.py
# `color_default_augm`, used by Scenic's video_tfrecord_dataset with `do_color_augment`),
# one draw per clip. Pixels are handled in [0, 1] units as DMVR does.

DMVR_BRIGHTNESS_DELTA = 32.0 / 255.0   # tf.image.random_brightness(max_delta=32/255).
DMVR_SATURATION_RANGE = (0.6, 1.4)     # tf.image.random_saturation(lower, upper).
DMVR_CONTRAST_RANGE = (0.6, 1.4)       # tf.image.random_contrast(lower, upper).
DMVR_HUE_DELTA = 0.2                   # tf.image.random_hue(max_delta=0.2), turns.
_TF_GRAY = np.array([0.2989, 0.5870, 0.1140], np.float32)   # tf.image.rgb_to_grayscale.


def _hue_max_min(video: np.ndarray):
  """(hue in turns in [0, 1), max, min) of each pixel, float32[...] each (TensorFlow's
  formulas: hue 0 where max == min)."""
  r, g, b = np.moveaxis(video.astype(np.float32, copy=False), -1, 0)
  v = np.maximum(np.maximum(r, g), b)
  low = np.minimum(np.minimum(r, g), b)
  spread = v - low
  norm = np.float32(1 / 6) / np.where(spread > 0, spread, np.float32(1))
  h = np.where(r == v, norm * (g - b),
               np.where(g == v, norm * (b - r) + np.float32(2 / 6),
                        norm * (r - g) + np.float32(4 / 6)))
  h[spread <= 0] = 0
  h[h < 0] += 1
  return h, v, low


def _hue_chroma_to_rgb(h, chroma, v):
  """float32[..., 3]: channel n = v - chroma clip(min(k, 4 - k), 0, 1) with
  k = (n + 6 h) mod 6 for n = 5, 3, 1 (R, G, B)."""
  out = np.empty(h.shape + (3,), np.float32)
  h6 = np.float32(6) * h
  for channel, n in enumerate((5, 3, 1)):
    k = np.mod(h6 + np.float32(n), np.float32(6))
    np.minimum(k, np.float32(4) - k, out=k)
    np.clip(k, 0, 1, out=k)
    out[..., channel] = v - chroma * k
  return out


def adjust_saturation(video: np.ndarray, factor: float) -> np.ndarray:
  """float32, same shape ([0, 1] units): tf.image.adjust_saturation, saturation scaled
  by `factor` and clipped to [0, 1], hue and value kept (pixels with max <= 0 become
  grey, as TF's kernel does). In closed form: v - (v - x) min(factor, v / (v - min))."""
  channels = np.moveaxis(video.astype(np.float32, copy=False), -1, 0)
  v = np.maximum(np.maximum(channels[0], channels[1]), channels[2])
  spread = v - np.minimum(np.minimum(channels[0], channels[1]), channels[2])
  ratio = np.minimum(np.float32(factor), v / np.where(spread > 0, spread, np.float32(1)))
  ratio[v <= 0] = 0                                    # TF: s = 0 where max <= 0.
  out = np.empty(video.shape, np.float32)
  for c in range(3):
    out[..., c] = v - (v - channels[c]) * ratio
  return out


def adjust_hue_hsv(video: np.ndarray, delta: float) -> np.ndarray:
  """float32, same shape ([0, 1] units): tf.image.adjust_hue, hue moved by `delta`
  turns with each pixel's max and min kept (unlike `adjust_hue`, a YIQ rotation)."""
  h, v, low = _hue_max_min(video)
  h += np.float32(delta)
  h = np.mod(h, np.float32(1))
  return _hue_chroma_to_rgb(h, v - low, v)


def adjust_contrast(video: np.ndarray, factor: float) -> np.ndarray:
  """float32, same shape: tf.image.adjust_contrast on [T, H, W, C], (x - mean) * factor
  + mean with the mean of each channel of each frame."""
  mean = video.mean(axis=(-3, -2), keepdims=True)
  return ((video - mean) * factor + mean).astype(np.float32)


def to_grayscale(video: np.ndarray) -> np.ndarray:
  """float32, same shape: tf.image.rgb_to_grayscale tiled to 3 channels."""
  gray = video.astype(np.float32) @ _TF_GRAY
  return np.repeat(gray[..., None], 3, axis=-1)


def dmvr_color_params(rng: np.random.Generator) -> tuple[float, float, float, float]:
  """(brightness delta, saturation factor, contrast factor, hue delta) of one clip,
  uniform in DMVR's ranges: ±32/255, [0.6, 1.4], [0.6, 1.4], ±0.2 turns."""
  return (float(rng.uniform(-DMVR_BRIGHTNESS_DELTA, DMVR_BRIGHTNESS_DELTA)),
          float(rng.uniform(*DMVR_SATURATION_RANGE)),
          float(rng.uniform(*DMVR_CONTRAST_RANGE)),
          float(rng.uniform(-DMVR_HUE_DELTA, DMVR_HUE_DELTA)))


def apply_dmvr_color(video: np.ndarray, params) -> np.ndarray:
  """float32[T, H, W, 3] in [0, 1]: DMVR's `color_augment` with the given
  `dmvr_color_params` on `video` in [0, 1] units: brightness, saturation, contrast, hue
  in that fixed order (no random order), one clip to [0, 1] at the end."""
  brightness, saturation, contrast, hue = params
  out = video.astype(np.float32) + np.float32(brightness)
  out = adjust_saturation(out, saturation)
  out = adjust_contrast(out, contrast)
  out = adjust_hue_hsv(out, hue)
  return np.clip(out, 0.0, 1.0)


def dmvr_color_augment(video: np.ndarray, rng: np.random.Generator,
                       augment_prob: float = 0.8, drop_prob: float = 0.0) -> np.ndarray:
  """float32[T, H, W, 3] in [0, 255]: DMVR's `color_default_augm` on pixels in [0, 255]
  (uint8 or float): with probability `augment_prob`, `apply_dmvr_color` with one draw
  of `dmvr_color_params`; then, with probability `drop_prob`, colour drop (grayscale,
  3 channels). The same parameters for every frame."""
  out = video.astype(np.float32) / 255.0
  if rng.random() < augment_prob:
    out = apply_dmvr_color(out, dmvr_color_params(rng))
  if rng.random() < drop_prob:
    out = to_grayscale(out)
  return out * np.float32(255.0)


# Scenic's video RandAugment (scenic/dataset_lib/video_ops.py
# `distort_image_with_randaugment` on tensorflow/models' official/vision/
# image_classification/augment.py ops): no geometric op (rotate, shear and translate are
# left out so every frame stays aligned), a cutout box shared by all frames; each layer
# picks one of the 11 ops or identity uniformly (tf.random.uniform maxval=len(ops) + 1).

SCENIC_RAND_AUGMENT_OPS = ('auto_contrast', 'equalize', 'invert', 'posterize',
                           'solarize', 'color', 'contrast', 'brightness', 'sharpness',
                           'cutout', 'solarize_add')
SCENIC_MAX_MAGNITUDE = 20.0   # Scenic's SSv2 ViViT config; posterize needs m < 22.5.
_SCENIC_CUTOUT_CONST = 40     # distort_image_with_randaugment(cutout_const=40).


def _tf_blend(image1: np.ndarray, image2: np.ndarray, factor: float) -> np.ndarray:
  """uint8: augment.py's `blend`, image1 + factor (image2 - image1), truncated to
  uint8 (clipped to [0, 255] when extrapolating)."""
  if factor == 0.0:
    return image1.astype(np.uint8)
  if factor == 1.0:
    return image2.astype(np.uint8)
  i1 = image1.astype(np.float32)
  temp = i1 + np.float32(factor) * (image2.astype(np.float32) - i1)
  return np.clip(temp, 0.0, 255.0).astype(np.uint8)


def _tf_gray_uint8(video: np.ndarray) -> np.ndarray:
  """uint8[..., 1]: tf.image.rgb_to_grayscale of uint8 pixels (float weights, then
  convert_image_dtype back: x * 255.5 truncated)."""
  gray = (video.astype(np.float32) / 255.0) @ _TF_GRAY
  return np.clip(gray * 255.5, 0, 255).astype(np.uint8)[..., None]


def apply_scenic_rand_augment_op(video: np.ndarray, op: str, magnitude: float,
                                 rng: Optional[np.random.Generator] = None) -> np.ndarray:
  """uint8[T, H, W, C]: one op of Scenic's video RandAugment at `magnitude` (its
  `level`; level / 10 scales augment.py's ranges): enhance factors 1.8 m/10 + 0.1,
  posterize to int(4 m/10) bits, solarize threshold int(256 m/10), solarize_add
  int(110 m/10) below 128, a cutout square of side 2 int(40 m/10) pixels filled with 0
  around a uniform centre (`rng`, clipped at the borders); auto_contrast, equalize and
  contrast use the whole clip's statistics (Scenic runs them on the frames stacked into
  one [T * H, W, C] image). Sharpness smooths each frame on its own (Scenic's stacked
  image also smooths across the seam rows between frames)."""
  m = float(magnitude) / 10.0
  if op == 'auto_contrast':
    return _auto_contrast(video)
  if op == 'equalize':
    return _equalize(video)
  if op == 'invert':
    return (255 - video).astype(np.uint8)
  if op == 'posterize':
    shift = 8 - int(m * 4)
    return ((video.astype(np.int32) >> shift) << shift).astype(np.uint8)
  if op == 'solarize':
    threshold = int(m * 256)
    return np.where(video < threshold, video, 255 - video).astype(np.uint8)
  if op == 'solarize_add':
    added = np.clip(video.astype(np.int32) + int(m * 110), 0, 255)
    return np.where(video < 128, added, video).astype(np.uint8)
  factor = m * 1.8 + 0.1
  if op == 'color':
    return _tf_blend(np.repeat(_tf_gray_uint8(video), 3, axis=-1), video, factor)
  if op == 'contrast':
    # augment.py's `contrast` blends with sum(grey histogram) / 256 = pixel count / 256
    # (clipped to 255), not the mean grey level: 255 for any clip of 65280+ pixels.
    # Kept as Scenic trained with it (fixed upstream in 2024: tensorflow/models#11219).
    level = np.uint8(min(255.0, video[..., 0].size / 256.0))
    return _tf_blend(np.full_like(video, level), video, factor)
  if op == 'brightness':
    return _tf_blend(np.zeros_like(video), video, factor)
  if op == 'sharpness':
    smooth = np.clip(_smooth(video), 0.0, 255.0).astype(np.uint8)
    return _tf_blend(smooth, video, factor)
  if op == 'cutout':
    if rng is None:
      raise ValueError("RandAugment op='cutout' needs an rng (its box centre).")
    pad = int(m * _SCENIC_CUTOUT_CONST)
    h, w = video.shape[1:3]
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    out = video.copy()
    out[:, max(0, cy - pad):min(h, cy + pad), max(0, cx - pad):min(w, cx + pad)] = 0
    return out
  raise ValueError(f'Scenic RandAugment op={op!r} is invalid: expected one of '
                   f'{list(SCENIC_RAND_AUGMENT_OPS)}.')


def scenic_rand_augment(video: np.ndarray, rng: np.random.Generator, num_layers: int = 2,
                        magnitude: float = 9.0) -> np.ndarray:
  """uint8[T, H, W, C]: `num_layers` layers of Scenic's video RandAugment, each one of
  SCENIC_RAND_AUGMENT_OPS or identity (1 in 12 each), the same on every frame."""
  video = np.ascontiguousarray(np.clip(video, 0, 255)).astype(np.uint8)
  for _ in range(num_layers):
    k = int(rng.integers(len(SCENIC_RAND_AUGMENT_OPS) + 1))
    if k < len(SCENIC_RAND_AUGMENT_OPS):
      video = apply_scenic_rand_augment_op(video, SCENIC_RAND_AUGMENT_OPS[k], magnitude,
                                           rng)
  return video


def rand_augment_clip(video: np.ndarray, rng: np.random.Generator, op_set: str,
                      num_layers: int, magnitude: float,
                      magnitude_std: float = 0.0) -> np.ndarray:
  """uint8[T, H, W, C]: RandAugment with `dataset.randaugment_ops` = `op_set`: 'default'
  (rand_augment), 'scenic' (scenic_rand_augment), 'timm' or 'timm_increasing'
  (timm_rand_augment; only these use `magnitude_std`)."""
  if op_set == 'scenic':
    return scenic_rand_augment(video, rng, num_layers, magnitude)
  if op_set in ('timm', 'timm_increasing'):
    return timm_rand_augment(video, rng, num_layers, magnitude, magnitude_std,
                             increasing=op_set == 'timm_increasing')
  return rand_augment(np.ascontiguousarray(video), rng, num_layers, magnitude)


# Random erasing (PySlowFast slowfast/datasets/random_erasing.py, from timm) in its
# video ('cube') form: one box for all frames, on normalised pixels.

def random_erasing_box(height: int, width: int, rng: np.random.Generator,
                       area_range=(0.02, 1 / 3), aspect_range=(0.3, 1 / 0.3),
                       max_attempts: int = 100) -> Optional[Box]:
  """The (y, x, h, w) box of `RandomErasing._erase_cube` (count 1): area a fraction in
  `area_range` of the frame, h/w log-uniform in `aspect_range`, h < height and w < width,
  uniform position; None after `max_attempts` misses."""
  area = height * width
  log_lo, log_hi = np.log(aspect_range[0]), np.log(aspect_range[1])
  for _ in range(max_attempts):
    target = area * rng.uniform(*area_range)
    aspect = np.exp(rng.uniform(log_lo, log_hi))
    h = int(round(float(np.sqrt(target * aspect))))
    w = int(round(float(np.sqrt(target / aspect))))
    if w < width and h < height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  return None


def random_erasing(video: np.ndarray, rng: np.random.Generator, prob: float = 0.25,
                   **box_kwargs) -> np.ndarray:
  """float32[T, H, W, C] (normalised pixels): with probability `prob`, the
  `random_erasing_box` of every frame replaced by standard-normal noise drawn per pixel
  and frame (mode 'pixel'); else `video` unchanged."""
  if prob <= 0 or rng.random() >= prob:
    return video
  box = random_erasing_box(video.shape[1], video.shape[2], rng, **box_kwargs)
  if box is None:
    return video
  y, x, h, w = box
  out = np.array(video, np.float32, copy=True)
  out[:, y:y + h, x:x + w] = rng.standard_normal((out.shape[0], h, w, out.shape[3]),
                                                 np.float32)
  return out
