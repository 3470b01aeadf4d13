"""Video datasets: `get_dataset(config)` -> `VideoDataset` (contract in dataset.py).

`config.dataset.name` picks a builder from `DATASETS` ('module:function' strings,
imported on first use so that, e.g., a TFDS builder's TensorFlow is only imported when
asked for). A builder is `build(config, *, process_index, process_count) ->
VideoDataset`; add one with `register_dataset` or a line in `DATASETS`.

Modules: synthetic.py (the embedded motion dataset), in_memory.py (a dataset over
uint8 arrays), sampling.py (temporal clip indices), augment.py (crops, resizing,
flips, colour jitter, RandAugment, normalisation), dataset.py (the contract, process
sharding); decoded sources: pipeline.py (their shared dataset: parallel decoding,
prefetch, bad-input handling), video_files.py (PyAV), tfrecord.py (SequenceExample
shards), tfds_source.py (TFDS), prepare.py (video files -> shards), export.py (the
synthetic set as mp4 files and shards).
"""
from __future__ import annotations

import importlib
from typing import Callable, Optional, Union

from vivit_jax.data.dataset import SPLITS, VideoDataset, shard_range

DATASETS: dict[str, Union[str, Callable]] = {
    'synthetic': 'vivit_jax.data.synthetic:build_dataset',
    'video_files': 'vivit_jax.data.video_files:build_dataset',
    'tfrecord': 'vivit_jax.data.tfrecord:build_dataset',
    'tfds': 'vivit_jax.data.tfds_source:build_dataset',
}


def register_dataset(name: str, builder: Union[str, Callable]) -> None:
  """Makes `config.dataset.name = name` build with `builder` ('module:function' or a
  callable `build(config, *, process_index, process_count) -> VideoDataset`)."""
  DATASETS[name] = builder


def get_dataset(config, *, process_index: Optional[int] = None,
                process_count: Optional[int] = None) -> VideoDataset:
  """The dataset of `config.dataset.name`, sharded for this process.

  process_index / process_count default to jax.process_index() / jax.process_count();
  each process reads only its shard of every split.
  """
  name = config.dataset.get('name', 'synthetic')
  if name not in DATASETS:
    raise ValueError(f'config.dataset.name={name!r} is invalid: expected one of '
                     f'{sorted(DATASETS)}.')
  if process_index is None or process_count is None:
    import jax
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  builder = DATASETS[name]
  if isinstance(builder, str):
    module, function = builder.split(':')
    builder = getattr(importlib.import_module(module), function)
  return builder(config, process_index=process_index, process_count=process_count)


__all__ = ['DATASETS', 'SPLITS', 'VideoDataset', 'get_dataset', 'register_dataset',
           'shard_range']
