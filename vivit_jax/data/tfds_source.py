"""TFDS video datasets by name (e.g. 'ucf101'), read from a prepared local data_dir.

config.dataset.name = 'tfds'; config.dataset.tfds_name names the dataset (with an
optional ':version'), config.dataset.data_dir is the TFDS data_dir (nothing is
downloaded: prepare the dataset there first), config.dataset.splits maps our splits
to TFDS split strings (e.g. validation -> 'test' or 'train[90%:]'), and
config.dataset.video_key / label_key name the `Video` and `ClassLabel` features.
Label names come from the ClassLabel feature. With label groups
(config.dataset.label_groups) label_key maps each group to its ClassLabel feature:
'verb:verb_label,noun:noun_label' (or a dict where the config allows one); without a
mapping the features are named as the groups (e.g. 'verb', 'noun'); multi-label data
(config.dataset.multi_label) reads a `Sequence(ClassLabel)` feature (every class of the
clip). Each ClassLabel must have its group's number of classes.

The records are read with random access like our own shards (tfrecord.py: the split's
file instructions give the files and record ranges); each `tf.train.Example` holds the
encoded frames (PNG or JPEG) under video_key and the label under label_key, and only
the frames a clip needs are decoded. Datasets stored as array_record are not supported.
"""
from __future__ import annotations

import functools
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from vivit_jax.data import checks
from vivit_jax.data import dataset as dataset_lib
from vivit_jax.data import example_proto, pipeline, tfrecord
from vivit_jax.data import labels as labels_lib
from vivit_jax.data.labels import LabelSpec
from vivit_jax.data.video_files import split_names
from vivit_jax.errors import ConfigError, DataFailureError, DecodeError


def decode_example(record: bytes, choose: pipeline.Chooser, *, video_key: str,
                   label_key: Union[str, Mapping[str, str]],
                   label_names: Union[LabelSpec, Sequence[str]]):
  """(uint8[*choose(L).shape, H, W, 3], label) of a serialized TFDS tf.train.Example;
  the label as `LabelSpec.parse` makes it. `label_key`: the label feature, or with
  label groups {group: feature}; `label_names`: the LabelSpec, or the K names of
  plain classification."""
  spec = (label_names if isinstance(label_names, LabelSpec) else
          tfrecord.plain_spec(label_names))
  keys = (dict(label_key) if isinstance(label_key, Mapping) else
          {spec.group_names[0]: label_key})
  try:
    example = example_proto.Example.FromString(record)
  except Exception as e:   # protobuf's DecodeError and friends.
    raise DecodeError(f'not a tf.train.Example: {type(e).__name__}: {e}') from e
  features = example.features.feature
  wanted = [video_key] + [keys[g] for g in spec.group_names]
  if any(key not in features for key in wanted):
    raise DecodeError(f'features {sorted(features)} lack one of {wanted} '
                      '(config.dataset.video_key / label_key).')
  frames = list(features[video_key].bytes_list.value)
  values = [list(features[keys[g]].int64_list.value) for g in spec.group_names]
  if spec.multi_label:
    label = spec.parse(values)
  elif not all(values):
    raise DecodeError(f'no label value under {[keys[g] for g in spec.group_names]}.')
  else:
    label = spec.parse([v[0] for v in values])
  if not frames:
    raise DecodeError(f'no frames under {video_key!r}.')
  try:
    return tfrecord.decode_jpegs(frames, np.asarray(choose(len(frames)))), label
  except (OSError, ValueError) as e:
    raise DecodeError(f'bad frame: {type(e).__name__}: {e}') from e


def class_names(feature) -> list[str]:
  """The class names of a ClassLabel feature or of a Sequence of one."""
  names = getattr(feature, 'names', None)
  if names is None:
    names = getattr(getattr(feature, 'feature', None), 'names', None)
  if names is None:
    raise ConfigError(f'TFDS feature {feature!r} is not a ClassLabel (or a Sequence of '
                      'one): expected config.dataset.label_key to name one.')
  return list(names)


def dataset_labels(dataset_config, info) -> tuple[LabelSpec, dict[str, str]]:
  """(LabelSpec without names, {group: TFDS feature}) of config.dataset; plain
  classification has one group of the label feature's size."""
  d = dataset_config
  key = d.get('label_key', 'label') or 'label'
  spec = labels_lib.label_spec(d)
  if spec.grouped:
    if hasattr(key, 'items'):
      keys = {str(g): str(k) for g, k in key.items()}
    elif ':' in key:
      keys = dict(pair.split(':', 1) for pair in key.split(','))
    else:
      keys = {g: g for g in spec.group_names}
    if sorted(keys) != sorted(spec.group_names):
      raise ConfigError(f'config.dataset.label_key={dict(keys)!r} is invalid: expected '
                        f'a TFDS feature for each label group {spec.group_names}.')
    return spec, {g: keys[g] for g in spec.group_names}
  if hasattr(key, 'items'):
    raise ConfigError(f'config.dataset.label_key={dict(key)!r} is invalid: expected one '
                      'feature name (a mapping needs config.dataset.label_groups).')
  if not spec.multi_label and key in info.features:   # plain: K = the feature's classes.
    spec = LabelSpec((('label', len(class_names(info.features[key]))),))
  return spec, {spec.group_names[0]: key}


def prepared_builder(dataset_config):
  """The TFDS builder of config.dataset.tfds_name in data_dir; DataFailureError if it
  is not prepared there (nothing is downloaded)."""
  name = pipeline.required_field(dataset_config, 'tfds_name',
                                 "a TFDS dataset name, e.g. 'ucf101'")
  import tensorflow_datasets as tfds
  data_dir = dataset_config.get('data_dir', '') or None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:   # DatasetNotFoundError lists every TFDS name: keep it short.
    raise DataFailureError(f'TFDS dataset {name!r} is not prepared in data_dir '
                           f'{data_dir!r}: {type(e).__name__}') from e
  if not builder.is_prepared():
    raise DataFailureError(f'TFDS dataset {name!r} is not prepared in {data_dir!r}: '
                           'prepare it there first (this reader downloads nothing).')
  return builder


def _split_name(tfds_split: str) -> str:
  return tfds_split.split('[')[0]     # 'train[90%:]' -> 'train'.


def missing_split(dataset_config, split: str) -> Optional[str]:
  """None if the TFDS split that `split` maps to exists, else which splits the
  dataset has (the split check of sources.py; reads the builder's info only)."""
  info = prepared_builder(dataset_config).info
  tfds_split = split_names(dataset_config)[split]
  if _split_name(tfds_split) in info.splits:
    return None
  return (f'TFDS dataset {dataset_config.tfds_name!r} in data_dir='
          f"{dataset_config.get('data_dir', '')!r} has no split {tfds_split!r} "
          f'(config.dataset.splits.{split}); it has {sorted(info.splits.keys())}')


def build_dataset(config, *, process_index: int, process_count: int):
  """The `tfds` dataset of config.dataset (see the module docstring)."""
  d = config.dataset
  builder = prepared_builder(d)
  name, info = d.tfds_name, builder.info
  if str(getattr(info, 'file_format', 'tfrecord')).lower().split('.')[-1] != 'tfrecord':
    raise ConfigError(f'config.dataset.tfds_name={name!r} is stored as '
                      f'{info.file_format}: expected tfrecord.')
  video_key = d.get('video_key', 'video')
  spec, label_key = dataset_labels(d, info)
  for key in [video_key] + list(label_key.values()):
    if key not in info.features:
      raise ConfigError(f'config.dataset feature {key!r} is invalid for {name!r}: '
                        f'expected one of {sorted(info.features.keys())}.')
  spec = spec.with_names({g: class_names(info.features[k]) for g, k in label_key.items()})
  if spec.groups != tuple((g, len(n)) for g, n in spec.names):
    raise ConfigError(f'config.dataset.tfds_name={name!r} has {[len(n) for _, n in spec.names]} '
                      f'classes in features {list(label_key.values())}: expected '
                      f'{[size for _, size in spec.groups]} (config.dataset.label_groups '
                      '/ num_classes).')
  decode = functools.partial(decode_example, video_key=video_key, label_key=label_key,
                             label_names=spec)
  names = split_names(d)
  readers = {}
  for split in dataset_lib.SPLITS:
    tfds_split = names[split]
    if _split_name(tfds_split) not in info.splits:
      if split == 'train':
        raise checks.missing_split_error(d, split, missing_split(d, split))
      continue
    instructions = info.splits[tfds_split].file_instructions
    files = [i.filename for i in instructions]
    records = tfrecord.record_table(
        files, [(i.skip, i.take if i.take >= 0 else i.examples_in_shard - i.skip)
                for i in instructions])
    start, stop = dataset_lib.reader_range(split, len(records), process_index,
                                           process_count)
    readers[split] = tfrecord.TFRecordReader(files, records[start:stop], len(records),
                                             decode)
  return pipeline.ClipDataset(
      readers, spec, pipeline.clip_options(config),
      seed=pipeline.trainer_seed(config),
      process_index=process_index, process_count=process_count)
