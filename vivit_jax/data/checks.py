"""Checks of `config.dataset` that run before any compute.

`validate(dataset_config)` checks the fields themselves (no file I/O, no TensorFlow);
`check_splits(config, splits)` asks the configured source whether each split the run
will read has data (file-system look-ups; TFDS reads its builder's info), so a missing
validation or test split is refused at the start instead of after training.
"""
from __future__ import annotations

from typing import Sequence

from vivit_jax import errors
from vivit_jax.data import dataset as dataset_lib
from vivit_jax.data import labels
from vivit_jax.data import sources

TEMPORAL_SAMPLING = ('dense', 'uniform')
WORKER_TYPES = ('thread', 'process')
# RandAugment op sets and the largest magnitude each accepts: ours (augment.py
# RAND_AUGMENT_OPS, timm's ranges end at 10), Scenic's video set, whose levels are
# level / 10 of augment.py's ranges with no upper check in Scenic (its configs use up to
# 20: SSv2; Epic-Kitchens 15; posterize's int(4 m / 10) bits must stay <= 8), and timm's
# as PySlowFast uses it (plain or `inc1`; timm clips magnitudes to [0, 10]).
RANDAUGMENT_OP_SETS = ('default', 'scenic', 'timm', 'timm_increasing')
RANDAUGMENT_MAX_MAGNITUDE = {'default': 10.0, 'scenic': 20.0, 'timm': 10.0,
                             'timm_increasing': 10.0}


def _is_int(v, lo: int) -> bool:
  """Whether `v` is an int (not a bool) >= lo."""
  return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _is_number(v) -> bool:
  """Whether `v` is an int or float (not a bool)."""
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def source_name(dataset_config) -> str:
  """config.dataset.name (default 'synthetic'); a ConfigError if no source has it."""
  name = dataset_config.get('name', 'synthetic')
  if name not in sources.DATASETS:
    raise errors.config_error('dataset.name', name, f'one of {sorted(sources.DATASETS)}')
  return name


def validate(dataset_config) -> None:
  """Raises ConfigError naming the first `config.dataset` field that cannot work: the
  model-facing sizes (num_frames, crop_size, num_classes), the sampling, augmentation
  and pipeline fields (absent fields are fine) and the source name."""
  d = dataset_config
  for field in ('num_frames', 'crop_size', 'num_classes'):
    value = d.get(field)
    if not isinstance(value, int) or value < 1:
      raise errors.config_error(f'dataset.{field}', value, 'a positive integer')

  def check(field, ok, expected):
    if field in d and d[field] is not None and not ok(d[field]):
      raise errors.config_error(f'dataset.{field}', d[field], expected)

  def is_range(v):
    return (isinstance(v, (tuple, list)) and len(v) == 2
            and all(isinstance(x, (int, float)) for x in v) and 0 < v[0] <= v[1])

  check('temporal_sampling', lambda v: v in TEMPORAL_SAMPLING,
        "one of 'dense', 'uniform'")
  check('stride', lambda v: _is_int(v, 1), 'a positive integer')
  check('num_test_clips', lambda v: _is_int(v, 1), 'a positive integer')
  check('num_test_crops', lambda v: v in (1, 3), '1 (centre) or 3')
  check('min_resize', lambda v: _is_int(v, d.crop_size),
        f'None or an integer >= dataset.crop_size={d.crop_size}')
  check('scale_jitter', is_range, 'None or (lo, hi) with 0 < lo <= hi, e.g. (0.9, 1.33)')
  check('crop_area_range', lambda v: is_range(v) and v[1] <= 1,
        'None or (lo, hi) with 0 < lo <= hi <= 1')
  check('crop_aspect_range', is_range,
        'None or (lo, hi) width/height ratios with 0 < lo <= hi, e.g. (3/4, 4/3)')
  check('scale_jitter_prob', lambda v: 0 <= v <= 1, 'a probability in [0, 1]')
  check('random_flip', lambda v: isinstance(v, bool), 'True or False')
  check('color_jitter', lambda v: isinstance(v, (int, float)) and v >= 0,
        'a strength >= 0 (0 = off)')
  check('randaugment_layers', lambda v: _is_int(v, 0), 'an integer >= 0 (0 = off)')
  check('randaugment_ops', lambda v: v in RANDAUGMENT_OP_SETS,
        f'one of {RANDAUGMENT_OP_SETS}')
  ops = d.get('randaugment_ops', None) or 'default'
  top = RANDAUGMENT_MAX_MAGNITUDE[ops]
  check('randaugment_magnitude', lambda v: _is_number(v) and 0 <= v <= top,
        f'a magnitude in [0, {top:g}] for randaugment_ops={ops!r}')
  std_ops = ('timm', 'timm_increasing')
  check('randaugment_magnitude_std', lambda v: _is_number(v) and v >= 0 and (
      v == 0 or ops in std_ops), f'a standard deviation >= 0, and 0 unless '
        f'randaugment_ops is one of {std_ops} (randaugment_ops={ops!r})')
  for field in ('color_augment_prob', 'color_drop_prob', 'random_erasing_prob'):
    check(field, lambda v: _is_number(v) and 0 <= v <= 1,
          'a probability in [0, 1] (0 = off)')
  check('repeated_augmentation', lambda v: _is_int(v, 1),
        'an integer >= 1 (copies of each example in a batch; 1 = off)')
  check('num_workers', lambda v: _is_int(v, 0), 'an integer >= 0 (0 = no workers)')
  check('worker_type', lambda v: v in WORKER_TYPES, f'one of {WORKER_TYPES}')
  check('prefetch_batches', lambda v: _is_int(v, 1), 'a positive integer')
  check('max_failure_fraction', lambda v: 0 <= v <= 1, 'a fraction in [0, 1]')
  for field in ('mean_rgb', 'std_rgb'):
    check(field, lambda v: len(v) == 3 and (field == 'mean_rgb' or min(v) > 0),
          '3 per-channel values (std > 0)')
  labels.label_spec(d)
  source_name(d)


def missing_split_error(dataset_config, split: str, reason: str) -> errors.DataFailureError:
  """The error for a split of the configured source that has no data; `reason` says
  what was looked at and which splits exist (a source's `missing_split`)."""
  return errors.DataFailureError(
      f'The {split!r} split has no data (config.dataset.name='
      f"{dataset_config.get('name', 'synthetic')!r}): {reason}.")


def check_splits(config, splits: Sequence[str]) -> None:
  """Raises DataFailureError for the first of `splits` ('train' | 'validation' | 'test')
  that the source of `config.dataset` has no data for (see sources.py); ConfigError for
  an unknown source or a missing field the look-up needs (e.g. data_dir)."""
  d = config.dataset
  name = source_name(d)
  for split in splits:
    dataset_lib.check_split(split)
  if name not in sources.SPLIT_CHECKS:
    return
  missing_split = sources.resolve(sources.SPLIT_CHECKS[name])
  for split in splits:
    reason = missing_split(d, split)
    if reason:
      raise missing_split_error(d, split, reason)
