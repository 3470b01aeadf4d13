"""Spatial ops on one video (numpy): crops, resizing, flips and normalisation.

`video` is [T, H, W, C] (uint8 pixels in [0, 255], or float32 in the same units) unless
a docstring says otherwise. Crop boxes are (y, x, height, width) in pixels. Random ops
take a `np.random.Generator`, so a pipeline is deterministic given its seed.
"""
from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]     # (y, x, height, width), pixels.


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
  """Inception-style scale-jitter box: area a fraction in `area_range` of the frame,
  aspect ratio w/h log-uniform in `aspect_range`, uniform position; after
  `max_attempts` misses, the largest centred square. Resize the crop afterwards."""
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
  side = min(height, width)
  return (height - side) // 2, (width - side) // 2, side, side


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


def normalize(video: np.ndarray, mean_rgb, std_rgb) -> np.ndarray:
  """float32, same shape: (video / 255 - mean_rgb) / std_rgb over the last axis."""
  mean = np.asarray(mean_rgb, np.float32)
  std = np.asarray(std_rgb, np.float32)
  # One row per image line so that the per-channel constants broadcast along a long
  # inner axis (numpy is slow on an inner axis of 3).
  width = video.shape[-2] if video.ndim >= 2 else 1
  scale = np.tile(1.0 / (255.0 * std), width)
  shift = np.tile(mean / std, width)
  out = np.multiply(video.reshape(-1, scale.size), scale, dtype=np.float32)
  out -= shift
  return out.reshape(video.shape)


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
