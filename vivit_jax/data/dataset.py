"""The dataset contract the trainer codes against, and process sharding."""
from __future__ import annotations

from typing import Iterator, Protocol

from vivit_jax.data.labels import LabelSpec

SPLITS = ('train', 'validation', 'test')


class VideoDataset(Protocol):
  """What `get_dataset(config)` returns (contract).

  Attributes:
    num_classes: number of labels K (the model's logits, all label groups together).
    label_names: K names, in label order (with label groups: 'group:name', each
      group's block in group order; `label_spec.flat_names()`).
    label_spec: the label kind (data/labels.py `LabelSpec`, with the class names):
      plain (one class), label groups (one class per group) or multi-label. It fixes
      `label` below: int32[b] plain, int32[b, G] one class per group (group order),
      float32[b, K] multi-hot for multi-label; padded rows hold `label_spec.empty()`.
  """
  num_classes: int
  label_names: list[str]
  label_spec: LabelSpec

  def num_examples(self, split: str) -> int:
    """Examples in `split` ('train' | 'validation' | 'test') over all processes."""

  def train_batches(self, start_step: int, batch_size: int) -> Iterator[dict]:
    """Process-local training batches for steps start_step, start_step + 1, ... forever.

    The global batch of step s (the batch_size * process_count rows of all processes
    together: which examples, their order, their augmentation draws) depends only on
    (config seed, s), never on the process or device count or on how many times the
    run started; process p yields rows [p * batch_size, (p + 1) * batch_size) of it. So
    a run resumed at step s, on any topology, sees the same data.
    Yields {'video': float32[b, T, H, W, 3] normalised ((x / 255 - mean_rgb) / std_rgb),
    'label': int32[b] (or int32[b, G] / float32[b, K], see `label_spec`)}, b = batch_size (process-local), T = config.dataset.num_frames,
    H = W = config.dataset.crop_size.
    """

  def eval_batches(self, split: str, batch_size: int) -> Iterator[dict]:
    """One deterministic pass over this process's shard of `split`, multi-view.

    Yields {'video': float32[b, V, T, H, W, 3], 'label': int32[b] (or int32[b, G] /
    float32[b, K], see `label_spec`), 'mask': float32[b], 'index': int32[b]},
    V = num_test_clips * num_test_crops (clip-major: view = clip * crops + crop);
    'index' is each example's position in the split over all processes (-1 on padding),
    so what is drawn per example (masked pretraining's evaluation masks) does not depend
    on where it lands in a batch or on the process count. The
    last batch is padded to b with mask 0; every process yields the same number of
    batches (a process with a smaller shard pads more).
    """


def shard_range(num_examples: int, process_index: int, process_count: int):
  """(start, stop): the contiguous slice of examples owned by `process_index`; the
  first num_examples % process_count processes get one example more."""
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} is invalid: expected 0 <= index < '
                     f'process_count={process_count}.')
  base, extra = divmod(num_examples, process_count)
  start = process_index * base + min(process_index, extra)
  return start, start + base + (process_index < extra)


def reader_range(split: str, num_examples: int, process_index: int,
                 process_count: int):
  """(start, stop): the examples of `split` a process's reader holds: all of 'train'
  (the global batch of a step may pick any example; each process decodes only its
  rows), its `shard_range` of an evaluation split."""
  if split == 'train':
    return 0, num_examples
  return shard_range(num_examples, process_index, process_count)


def max_shard_size(num_examples: int, process_count: int) -> int:
  """Examples in the largest shard of `shard_range`."""
  return -(-num_examples // process_count)


def check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f'split={split!r} is invalid: expected one of {list(SPLITS)}.')
