"""Video datasets: `get_dataset(config)` -> `VideoDataset` (contract in dataset.py).

Every source goes through one dataset class, `pipeline.ClipDataset`: a source only
provides a `Reader` per split (an example's frames and label), so ordering, process
sharding, temporal sampling, augmentation, parallel reads and bad-input handling are
the same code for all of them. `config.dataset.name` picks the source's builder from
`DATASETS` (sources.py; add one with `register_dataset`).

Modules: dataset.py (the contract, process sharding), labels.py (the label kinds:
plain, label groups, multi-label; `LabelSpec.parse` reads every source's labels),
sources.py (the table of sources), checks.py (`validate` of config.dataset,
`check_splits`), pipeline.py (the dataset class), sampling.py (temporal clip indices),
augment.py (crops, resizing, flips, colour jitter, RandAugment, normalisation);
sources: synthetic.py (the embedded
motion dataset, generated in memory), video_files.py (PyAV), tfrecord.py
(SequenceExample shards), tfds_source.py (TFDS); tools: prepare.py (video files ->
shards), export.py (the synthetic set as mp4 files and shards).
"""
from __future__ import annotations

from typing import Optional

from vivit_jax.data import checks
from vivit_jax.data.checks import check_splits, validate
from vivit_jax.data.dataset import SPLITS, VideoDataset, shard_range
from vivit_jax.data.sources import DATASETS, register_dataset, resolve


def get_dataset(config, *, process_index: Optional[int] = None,
                process_count: Optional[int] = None) -> VideoDataset:
  """The dataset of `config.dataset.name`, sharded for this process.

  process_index / process_count default to jax.process_index() / jax.process_count();
  each process reads only its shard of every split. An unknown name is a ConfigError.
  """
  name = checks.source_name(config.dataset)
  if process_index is None or process_count is None:
    import jax   # only here: decode workers import vivit_jax.data without JAX.
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  builder = resolve(DATASETS[name])
  return builder(config, process_index=process_index, process_count=process_count)


__all__ = ['DATASETS', 'SPLITS', 'VideoDataset', 'check_splits', 'get_dataset',
           'register_dataset', 'shard_range', 'validate']
