"""A `VideoDataset` over videos held in memory as uint8 arrays (e.g. the synthetic set).

Training: each step draws its examples from per-epoch permutations of this process's
shard and its clips/crops from a generator seeded with (seed, step, process_index), so
any step's batch can be rebuilt on its own. Evaluation: fixed multi-view clips.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Sequence

import numpy as np

from vivit_jax.data import augment
from vivit_jax.data import dataset as dataset_lib
from vivit_jax.data import sampling

_ORDER, _AUGMENT = 0, 1    # seed-sequence tags of the two random streams.


@dataclasses.dataclass(frozen=True)
class Split:
  """This process's shard of one split.

  videos: uint8[n, L, H, W, 3] (all of length L); labels: int32[n];
  total: examples in the split over all processes.
  """
  videos: np.ndarray
  labels: np.ndarray
  total: int


@dataclasses.dataclass(frozen=True)
class Sampling:
  """How clips are cut (the model-facing sizes and the augmentation).

  num_frames, stride: dense clip of num_frames frames every `stride` frames.
  crop_size: side in pixels of the square crops fed to the model.
  area_range: None = translation-only random crops of crop_size; else Inception-style
    scale jitter (fractions of the frame area) and a resize to crop_size.
  random_flip: horizontal flips in training (leave off when left/right is a label).
  num_test_clips, num_test_crops (1 centre or 3 along the longer side): eval views.
  """
  num_frames: int
  crop_size: int
  stride: int = 1
  area_range: Optional[tuple[float, float]] = None
  random_flip: bool = False
  num_test_clips: int = 1
  num_test_crops: int = 1
  mean_rgb: Sequence[float] = (0.5, 0.5, 0.5)
  std_rgb: Sequence[float] = (0.5, 0.5, 0.5)


class ArrayVideoDataset:
  """`VideoDataset` (see dataset.py) over in-memory `Split`s."""

  def __init__(self, splits: dict[str, Split], label_names: Sequence[str],
               sampling_config: Sampling, *, seed: int, process_index: int,
               process_count: int):
    if sampling_config.num_test_crops not in (1, 3):
      raise ValueError(f'config.dataset.num_test_crops={sampling_config.num_test_crops}'
                       ' is invalid: expected 1 (centre) or 3.')
    self.splits = splits
    self.label_names = list(label_names)
    self.num_classes = len(self.label_names)
    self.sampling = sampling_config
    self.seed = seed
    self.process_index = process_index
    self.process_count = process_count
    self._permutations = {}     # epoch -> permutation of the local training shard.

  def num_examples(self, split: str) -> int:
    """Examples in `split` over all processes."""
    return self._split(split).total

  # Training.

  def train_batches(self, start_step: int, batch_size: int) -> Iterator[dict]:
    """Batches of steps start_step, start_step + 1, ... forever (see dataset.py)."""
    step = start_step
    while True:
      yield self.train_batch(step, batch_size)
      step += 1

  def train_batch(self, step: int, batch_size: int) -> dict:
    """The process-local batch of training step `step`:
    {'video': float32[b, T, S, S, 3], 'label': int32[b]}."""
    split = self._split('train')
    index = self._train_order(step, batch_size)
    rng = np.random.default_rng([self.seed, _AUGMENT, self.process_index, step])
    clips = [self._train_clip(split.videos[i], rng) for i in index]
    s = self.sampling
    return {'video': augment.normalize(np.stack(clips), s.mean_rgb, s.std_rgb),
            'label': split.labels[index].astype(np.int32)}

  def _train_order(self, step: int, batch_size: int) -> np.ndarray:
    """int[b]: local example indices of a step; epoch e is a permutation of the shard."""
    n = len(self._split('train').labels)
    if n == 0:
      raise ValueError(f'Process {self.process_index} has no training examples.')
    position = step * batch_size + np.arange(batch_size)
    epoch, within = position // n, position % n
    index = np.empty(batch_size, np.int64)
    for e in np.unique(epoch):
      here = epoch == e
      index[here] = self._epoch_permutation(int(e), n)[within[here]]
    return index

  def _epoch_permutation(self, epoch: int, n: int) -> np.ndarray:
    if epoch not in self._permutations:
      if len(self._permutations) >= 4:
        self._permutations.pop(next(iter(self._permutations)))
      rng = np.random.default_rng([self.seed, _ORDER, self.process_index, epoch])
      self._permutations[epoch] = rng.permutation(n)
    return self._permutations[epoch]

  def _train_clip(self, video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 or float32[T, S, S, 3]: random clip, crop (and flip) of one video."""
    s = self.sampling
    frames = sampling.dense_clip_indices(video.shape[0], s.num_frames, s.stride, rng)
    height, width = video.shape[1:3]
    if s.area_range is None:
      box = augment.random_crop_box(height, width, s.crop_size, rng)
      clip = augment.crop(video, box)[frames]
    else:
      box = augment.random_resized_crop_box(height, width, rng, s.area_range)
      clip = augment.resize(augment.crop(video, box)[frames], s.crop_size, s.crop_size)
    if s.random_flip and rng.random() < 0.5:
      clip = augment.flip_left_right(clip)
    return clip

  # Evaluation.

  def num_views(self) -> int:
    """V = num_test_clips * num_test_crops."""
    return self.sampling.num_test_clips * self.sampling.num_test_crops

  def eval_batches(self, split: str, batch_size: int) -> Iterator[dict]:
    """One pass over this process's shard of `split` (see dataset.py)."""
    data = self._split(split)
    n = len(data.labels)
    num_batches = -(-dataset_lib.max_shard_size(data.total, self.process_count)
                    // batch_size)
    for b in range(num_batches):
      index = np.arange(b * batch_size, min((b + 1) * batch_size, n))
      views = np.zeros((batch_size, self.num_views()) + self._view_shape(), np.float32)
      label = np.zeros(batch_size, np.int32)
      mask = np.zeros(batch_size, np.float32)
      for row, i in enumerate(index):
        views[row] = self.eval_views(data.videos[i])
        label[row] = data.labels[i]
        mask[row] = 1.0
      s = self.sampling
      yield {'video': augment.normalize(views, s.mean_rgb, s.std_rgb),
             'label': label, 'mask': mask}

  def eval_views(self, video: np.ndarray) -> np.ndarray:
    """[V, T, S, S, 3] pixels (uint8, float32 after a resize): the test views of one
    video, clip-major. With scale jitter in training (area_range), the short side is
    first resized to crop_size, the scale of a whole-frame training crop."""
    s = self.sampling
    clips = sampling.multi_clip_indices(video.shape[0], s.num_frames, s.stride,
                                        s.num_test_clips)
    views = []
    for frames in clips:
      clip = video[frames]
      if s.area_range is not None:
        clip = augment.resize_short_side(clip, s.crop_size)
      height, width = clip.shape[1:3]
      if s.num_test_crops == 1:
        boxes = [augment.center_crop_box(height, width, s.crop_size)]
      else:
        boxes = augment.three_crop_boxes(height, width, s.crop_size)
      views.extend(augment.crop(clip, box) for box in boxes)
    return np.stack(views)

  def _view_shape(self):
    s = self.sampling
    return (s.num_frames, s.crop_size, s.crop_size, 3)

  def _split(self, split: str) -> Split:
    dataset_lib.check_split(split)
    return self.splits[split]
