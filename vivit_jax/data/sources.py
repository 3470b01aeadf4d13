"""The dataset sources by `config.dataset.name`: how each builds its `VideoDataset` and
how it tells whether a split has data.

Entries are callables or 'module:function' strings, imported on first use (so a TFDS
source's TensorFlow is only imported when asked for). A builder is
`build(config, *, process_index, process_count) -> VideoDataset` (a `ClipDataset` whose
readers hold `dataset.reader_range` of each split: all of 'train', so the global batch
of a step is the same on any number of processes); a split check is
`missing_split(dataset_config, split) -> None | str`: None when the split has data, else
one line saying what was looked at and which splits exist. Sources without a split check
(synthetic, registered ones that pass none) have every split.
"""
from __future__ import annotations

import importlib
from typing import Callable, Optional, Union

Function = Union[str, Callable]

DATASETS: dict[str, Function] = {
    'synthetic': 'vivit_jax.data.synthetic:build_dataset',
    'video_files': 'vivit_jax.data.video_files:build_dataset',
    'tfrecord': 'vivit_jax.data.tfrecord:build_dataset',
    'tfds': 'vivit_jax.data.tfds_source:build_dataset',
}

SPLIT_CHECKS: dict[str, Function] = {
    'video_files': 'vivit_jax.data.video_files:missing_split',
    'tfrecord': 'vivit_jax.data.tfrecord:missing_split',
    'tfds': 'vivit_jax.data.tfds_source:missing_split',
}


def register_dataset(name: str, builder: Function,
                     missing_split: Optional[Function] = None) -> None:
  """Makes `config.dataset.name = name` build with `builder` (and check its splits with
  `missing_split`, if given); see the module docstring for their signatures."""
  DATASETS[name] = builder
  if missing_split is None:
    SPLIT_CHECKS.pop(name, None)
  else:
    SPLIT_CHECKS[name] = missing_split


def resolve(function: Function) -> Callable:
  """The callable of a table entry (a 'module:function' string is imported)."""
  if isinstance(function, str):
    module, name = function.split(':')
    return getattr(importlib.import_module(module), name)
  return function
