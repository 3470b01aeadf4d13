"""Temporal sampling: which frames of a video make a clip (numpy, any video source).

All functions return int32 frame indices into a video of `video_len` frames. Videos
shorter than a clip are looped (index modulo `video_len`), as in DMVR/Scenic.
"""
from __future__ import annotations

import numpy as np


def clip_span(num_frames: int, stride: int) -> int:
  """Frames covered by a dense clip of `num_frames` frames taken every `stride` frames."""
  return (num_frames - 1) * stride + 1


def dense_indices(video_len: int, num_frames: int, stride: int, start: int) -> np.ndarray:
  """int32[num_frames]: start, start + stride, ..., looped modulo `video_len`."""
  _check(video_len, num_frames, stride)
  return ((start + stride * np.arange(num_frames)) % video_len).astype(np.int32)


def dense_clip_indices(video_len: int, num_frames: int, stride: int,
                       rng: np.random.Generator) -> np.ndarray:
  """int32[num_frames]: a training clip at a uniformly random start.

  The start is drawn from [0, video_len - span] (span = (num_frames - 1) * stride + 1);
  a video shorter than the span starts at 0 and loops.
  """
  _check(video_len, num_frames, stride)
  max_start = max(video_len - clip_span(num_frames, stride), 0)
  return dense_indices(video_len, num_frames, stride, int(rng.integers(0, max_start + 1)))


def uniform_indices(video_len: int, num_frames: int) -> np.ndarray:
  """int32[num_frames]: the centre frame of each of `num_frames` equal segments (TSN).

  Covers the whole video whatever its length; a video shorter than `num_frames`
  repeats frames (e.g. 3 frames, 6 segments -> [0, 0, 1, 1, 2, 2]).
  """
  _check(video_len, num_frames, 1)
  centres = (np.arange(num_frames) + 0.5) * video_len / num_frames
  return np.minimum(np.floor(centres), video_len - 1).astype(np.int32)


def uniform_random_indices(video_len: int, num_frames: int,
                           rng: np.random.Generator) -> np.ndarray:
  """int32[num_frames]: a random frame inside each of `num_frames` equal segments (the
  TSN training sampler; `uniform_indices` takes the centres at test time)."""
  _check(video_len, num_frames, 1)
  offsets = rng.uniform(0.0, 1.0, num_frames)
  positions = (np.arange(num_frames) + offsets) * video_len / num_frames
  return np.minimum(np.floor(positions), video_len - 1).astype(np.int32)


def uniform_multi_clip_indices(video_len: int, num_frames: int,
                               num_clips: int) -> np.ndarray:
  """int32[num_clips, num_frames]: clip k takes the point (k + 0.5) / num_clips of the
  way through each of `num_frames` equal segments; one clip = `uniform_indices`."""
  _check(video_len, num_frames, 1)
  if num_clips < 1:
    raise ValueError(f'num_clips={num_clips} is invalid: expected a positive integer.')
  within = (np.arange(num_clips)[:, None] + 0.5) / num_clips          # [clips, 1]
  positions = (np.arange(num_frames)[None, :] + within) * video_len / num_frames
  return np.minimum(np.floor(positions), video_len - 1).astype(np.int32)


TEMPORAL_MODES = ('dense', 'uniform')


def train_clip_indices(mode: str, video_len: int, num_frames: int, stride: int,
                       rng: np.random.Generator) -> np.ndarray:
  """int32[num_frames]: a training clip, 'dense' (random start, `stride`) or 'uniform'
  (a random frame per segment over the whole video; `stride` unused)."""
  if mode == 'dense':
    return dense_clip_indices(video_len, num_frames, stride, rng)
  if mode == 'uniform':
    return uniform_random_indices(video_len, num_frames, rng)
  raise ValueError(f'temporal sampling mode={mode!r} is invalid: expected one of '
                   f'{list(TEMPORAL_MODES)}.')


def eval_clip_indices(mode: str, video_len: int, num_frames: int, stride: int,
                      num_clips: int) -> np.ndarray:
  """int32[num_clips, num_frames]: the test clips of `mode` ('dense' | 'uniform')."""
  if mode == 'dense':
    return multi_clip_indices(video_len, num_frames, stride, num_clips)
  if mode == 'uniform':
    return uniform_multi_clip_indices(video_len, num_frames, num_clips)
  raise ValueError(f'temporal sampling mode={mode!r} is invalid: expected one of '
                   f'{list(TEMPORAL_MODES)}.')


def multi_clip_indices(video_len: int, num_frames: int, stride: int,
                       num_clips: int) -> np.ndarray:
  """int32[num_clips, num_frames]: evenly spaced dense clips for multi-view testing.

  Starts are linspace(0, video_len - span, num_clips) rounded down, so the first clip
  starts the video and the last one ends it; a single clip is the centre clip
  (start (video_len - span) // 2). Videos shorter than the span start every clip at 0
  and loop.
  """
  _check(video_len, num_frames, stride)
  if num_clips < 1:
    raise ValueError(f'num_clips={num_clips} is invalid: expected a positive integer.')
  max_start = max(video_len - clip_span(num_frames, stride), 0)
  if num_clips == 1:
    starts = np.array([max_start // 2])
  else:
    starts = np.floor(np.linspace(0, max_start, num_clips)).astype(np.int64)
  return np.stack([dense_indices(video_len, num_frames, stride, s) for s in starts])


def _check(video_len, num_frames, stride):
  for name, value in (('video_len', video_len), ('num_frames', num_frames),
                      ('stride', stride)):
    if value < 1:
      raise ValueError(f'{name}={value} is invalid: expected a positive integer.')
