"""TFRecord shards of `tf.train.SequenceExample`s in the DMVR/Kinetics layout.

One example per video:
  context       clip/label/index   int64   label in [0, K)
                clip/label/string  bytes   label name (optional)
                video/filename     bytes   source file (optional, for logs)
  feature_list  image/encoded      bytes   one JPEG per frame

Label groups (config.dataset.label_groups, e.g. Epic-Kitchens verb/noun) use one key
per group with MediaSequence's prefix convention (`<prefix>/<key>`, the format Scenic's
and DMVR's readers parse): `verb/clip/label/index` (and `verb/clip/label/string`),
`noun/clip/label/index`, ... Multi-label data (config.dataset.multi_label) has several
int64 values under `clip/label/index` (DMVR's `is_multi_label`; names under
`clip/label/string`). A label is read from its index; an index that is not a class
falls back to the name; a missing or wrong label fails the record (DecodeError), which
the pipeline skips and counts.

config.dataset.name = 'tfrecord'; the shards of split s are the files in
config.dataset.data_dir matching `<splits[s]>*.tfrecord*` or `<splits[s]>-*` (or the
glob splits[s] itself). Records are read with random access (an offset index built by
reading the record headers), so the shared pipeline can fetch any example of any step;
only the JPEGs of the frames a clip needs are decoded (PIL). Label names:
config.dataset.label_names, else data_dir/label_names.json (written by `prepare`),
else '0' ... 'K-1' (with label groups: a dict {group: names}, or integer indices).
`python -m vivit_jax.data.prepare` writes such shards.
"""
from __future__ import annotations

import functools
import glob
import io
import json
import os
import struct
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np
from absl import logging
from PIL import Image

from vivit_jax.data import checks
from vivit_jax.data import dataset as dataset_lib
from vivit_jax.data import example_proto
from vivit_jax.data import labels as labels_lib
from vivit_jax.data import pipeline, video_files
from vivit_jax.data.labels import LabelSpec
from vivit_jax.data.video_files import LABEL_NAMES_FILE, split_names
from vivit_jax.errors import DecodeError

FRAMES_KEY = 'image/encoded'
LABEL_KEY = 'clip/label/index'
LABEL_STRING_KEY = 'clip/label/string'
FILENAME_KEY = 'video/filename'


def group_key(key: str, group: Optional[str] = None) -> str:
  """The context key of label group `group` (MediaSequence prefix: 'verb/' + key);
  `key` itself for plain and multi-label data (group None)."""
  return f'{group}/{key}' if group else key


# Writing.


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
  """JPEG bytes of one uint8[H, W, 3] frame (4:4:4 chroma at quality >= 90)."""
  out = io.BytesIO()
  Image.fromarray(frame).save(out, format='JPEG', quality=quality,
                              subsampling=0 if quality >= 90 else 2)
  return out.getvalue()


LabelValue = Union[int, Sequence[int], Mapping[str, int]]
LabelName = Union[str, Sequence[str], Mapping[str, str]]


def encode_example(video: np.ndarray, label: LabelValue,
                   label_name: Optional[LabelName] = None,
                   filename: Optional[str] = None, quality: int = 90) -> bytes:
  """A serialized SequenceExample of uint8[T, H, W, 3] frames (JPEG) and a label:
  an int (plain), a sequence of ints (multi-label: every value under
  clip/label/index) or a dict {group: int} (label groups: <group>/clip/label/index);
  `label_name` (optional) has the same form with names."""
  ex = example_proto.SequenceExample()
  context = ex.context.feature
  by_group = label.items() if isinstance(label, Mapping) else [(None, label)]
  for group, value in by_group:
    values = np.atleast_1d(np.asarray(value, np.int64)).tolist()
    context[group_key(LABEL_KEY, group)].int64_list.value.extend(values)
  if label_name is not None:
    names = (label_name.items() if isinstance(label_name, Mapping) else
             [(None, label_name)])
    for group, value in names:
      values = [value] if isinstance(value, str) else list(value)
      context[group_key(LABEL_STRING_KEY, group)].bytes_list.value.extend(
          v.encode() for v in values)
  if filename is not None:
    ex.context.feature[FILENAME_KEY].bytes_list.value.append(filename.encode())
  frames = ex.feature_lists.feature_list[FRAMES_KEY]
  for frame in video:
    frames.feature.add().bytes_list.value.append(encode_jpeg(frame, quality))
  return ex.SerializeToString()


def write_records(path: str, records: Sequence[bytes]) -> None:
  """Writes serialized records to the TFRecord file `path` (via a temporary file, so
  a file at `path` is always complete)."""
  import tensorflow as tf
  tmp = path + '.incomplete'
  with tf.io.TFRecordWriter(tmp) as writer:
    for record in records:
      writer.write(record)
  os.replace(tmp, path)


# Reading.


def record_offsets(path: str) -> np.ndarray:
  """int64[n, 2]: (offset of the data, length) of every record in a TFRecord file.

  A record is [uint64 length][uint32 crc][data][uint32 crc]; only the headers are
  read. A truncated last record is dropped with a warning.
  """
  out = []
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    position = 0
    while position < size:
      header = f.read(12)
      if len(header) < 12:
        break
      (length,) = struct.unpack('<Q', header[:8])
      if position + 12 + length + 4 > size:
        break
      out.append((position + 12, length))
      position += 12 + length + 4
      f.seek(position)
  if position < size:
    logging.warning('%s: truncated after %d records (byte %d of %d); the rest is '
                    'skipped.', path, len(out), position, size)
  return np.array(out, np.int64).reshape(-1, 2)


def parse_example(record: bytes) -> tuple[list[bytes], int, Optional[str]]:
  """(JPEG bytes per frame, label index, label string or None) of a record."""
  ex = example_proto.SequenceExample.FromString(record)
  frames = [f.bytes_list.value[0] for f in ex.feature_lists.feature_list[FRAMES_KEY].feature]
  context = ex.context.feature
  label = context[LABEL_KEY].int64_list.value if LABEL_KEY in context else []
  name = context[LABEL_STRING_KEY].bytes_list.value if LABEL_STRING_KEY in context else []
  return frames, int(label[0]) if label else -1, name[0].decode() if name else None


def decode_jpegs(encoded: Sequence[bytes], indices: np.ndarray) -> np.ndarray:
  """uint8[*indices.shape, H, W, 3]: the frames `indices` of JPEG/PNG-encoded frames
  (each distinct frame decoded once)."""
  decoded = {}
  for i in np.unique(indices):
    with Image.open(io.BytesIO(encoded[int(i)])) as image:
      decoded[int(i)] = np.asarray(image.convert('RGB'))
  first = decoded[int(indices.flat[0])]
  return np.stack([decoded[int(i)] for i in indices.ravel()]).reshape(
      indices.shape + first.shape)


def example_label(spec: LabelSpec, label) -> tuple[LabelValue, Optional[LabelName]]:
  """(label, label_name) for `encode_example` from a label as `spec.parse` returns it
  (int, int32[G] or float32[K] multi-hot), names from spec's names (None without)."""
  names = dict(spec.names)
  if spec.multi_label:
    indices = np.flatnonzero(np.asarray(label)).tolist()
    group_names = names.get(spec.group_names[0])
    return indices, [group_names[i] for i in indices] if group_names else None
  if spec.grouped:
    values = dict(zip(spec.group_names, np.asarray(label).tolist()))
    if not names:
      return values, None
    return values, {g: names[g][i] for g, i in values.items() if g in names}
  group_names = names.get(spec.group_names[0])
  return int(label), group_names[int(label)] if group_names else None


def record_label(context, spec: LabelSpec, where: str = ''):
  """A record's label as `spec.parse` makes it, from the context features (see the
  module docstring): indices, or names where an index is missing or not a class.
  Raises DecodeError naming the key or the bad value."""
  groups = spec.group_names if spec.grouped else [None]

  def values(key):
    out = []
    for group in groups:
      k = group_key(key, group)
      feature = context[k] if k in context else None
      if feature is None:
        return None, k
      found = (list(feature.int64_list.value) if key == LABEL_KEY else
               [v.decode() for v in feature.bytes_list.value])
      if not spec.multi_label and not found:
        return None, k
      out.append(found if spec.multi_label else found[0])
    return out, None

  indices, missing = values(LABEL_KEY)
  names, _ = values(LABEL_STRING_KEY)
  if indices is None and names is None:
    raise DecodeError(f"{f'{where}: ' if where else ''}no label under {missing!r}.")
  try:
    return spec.parse(indices if indices is not None else names, where)
  except DecodeError:
    if indices is None or names is None:
      raise
  return spec.parse(names, where)


def plain_spec(label_names: Sequence[str]) -> LabelSpec:
  """The LabelSpec of plain classification over `label_names`."""
  names = [str(n) for n in label_names]
  return LabelSpec((('label', len(names)),)).with_names({'label': names})


def decode_record(record: bytes, choose: pipeline.Chooser,
                  label_names: Union[LabelSpec, Sequence[str]]):
  """(uint8[*choose(L).shape, H, W, 3], label) of a serialized SequenceExample; the
  label as `LabelSpec.parse` makes it (`label_names`: the LabelSpec, or the K names of
  plain classification)."""
  spec = label_names if isinstance(label_names, LabelSpec) else plain_spec(label_names)
  try:
    ex = example_proto.SequenceExample.FromString(record)
  except Exception as e:   # protobuf's DecodeError and friends.
    raise DecodeError(f'not a SequenceExample: {type(e).__name__}: {e}') from e
  label = record_label(ex.context.feature, spec)
  encoded = [f.bytes_list.value[0]
             for f in ex.feature_lists.feature_list[FRAMES_KEY].feature]
  if not encoded:
    raise DecodeError(f'no frames under {FRAMES_KEY!r}.')
  try:
    return decode_jpegs(encoded, np.asarray(choose(len(encoded)))), label
  except (OSError, ValueError) as e:   # PIL: corrupt or truncated JPEG.
    raise DecodeError(f'bad frame: {type(e).__name__}: {e}') from e


def record_table(files: Sequence[str], ranges=None) -> np.ndarray:
  """int64[n, 3]: (file number, offset, length) of the records of `files`, in order;
  `ranges` optionally keeps records [skip, skip + take) of each file."""
  tables = []
  for k, f in enumerate(files):
    offsets = record_offsets(f)
    if ranges is not None:
      skip, take = ranges[k]
      offsets = offsets[skip:skip + take]
    tables.append(np.concatenate([np.full((len(offsets), 1), k, np.int64), offsets], 1))
  return np.concatenate(tables) if tables else np.zeros((0, 3), np.int64)


class TFRecordReader:
  """`pipeline.Reader` over records (file number, offset, length) of TFRecord files;
  `decode(record, choose) -> (frames, label)` parses one record (e.g. decode_record)."""

  def __init__(self, files: Sequence[str], records: np.ndarray, total: int,
               decode: Callable):
    self.files = list(files)
    self.records = records
    self.total = total
    self.decode = decode
    self.keys = [f'{self.files[f]}@{o}' for f, o, _ in records]

  def read(self, index: int, choose: pipeline.Chooser):
    f, offset, length = (int(v) for v in self.records[index])
    try:
      with open(self.files[f], 'rb') as stream:
        stream.seek(offset)
        record = stream.read(length)
    except OSError as e:
      raise DecodeError(f'{self.keys[index]}: {e}') from e
    if len(record) != length:
      raise DecodeError(f'{self.keys[index]}: truncated record.')
    try:
      return self.decode(record, choose)
    except DecodeError as e:
      raise DecodeError(f'{self.keys[index]}: {e}') from e


def shard_patterns(data_dir: str, name: str) -> list[str]:
  """The globs of the shard files of split `name` (see the module docstring)."""
  if any(c in name for c in '*?['):
    return [name if os.path.isabs(name) else os.path.join(data_dir, name)]
  return [os.path.join(data_dir, f'{name}*.tfrecord*'),
          os.path.join(data_dir, f'{name}.tfrecord*'),
          os.path.join(data_dir, f'{name}-*')]


def find_shards(data_dir: str, name: str) -> list[str]:
  """Sorted shard files of split `name` in data_dir (see the module docstring)."""
  return sorted({f for p in shard_patterns(data_dir, name) for f in glob.glob(p)
                 if os.path.isfile(f) and not f.endswith(('.incomplete', '.json'))})


def missing_split(dataset_config, split: str) -> Optional[str]:
  """None if `split` has shards, else the globs looked at and which splits have shards
  (the split check of sources.py; no shard is read)."""
  data_dir = pipeline.required_field(dataset_config, 'data_dir',
                                     'the folder of the TFRecord shards')
  names = split_names(dataset_config)
  if find_shards(data_dir, names[split]):
    return None
  if not os.path.isdir(data_dir):
    return f'data_dir={data_dir!r} is not a folder'
  found = [s for s in dataset_lib.SPLITS if find_shards(data_dir, names[s])]
  return (f'no TFRecord shard matches {", ".join(shard_patterns(data_dir, names[split]))} '
          f'(config.dataset.splits.{split}={names[split]!r}); splits with shards: {found}')


def load_label_names(d, data_dir: str) -> list[str]:
  """config.dataset.label_names, else data_dir/label_names.json, else '0'..'K-1'."""
  names = video_files.load_label_names(d.get('label_names', None))
  path = os.path.join(data_dir, LABEL_NAMES_FILE)
  if names is None and os.path.isfile(path):
    names = video_files.load_label_names(path)
  return names if names is not None else [str(i) for i in range(int(d.num_classes))]


def dataset_labels(d, data_dir: str) -> LabelSpec:
  """The LabelSpec (with names) of config.dataset `d`: plain over `load_label_names`;
  label groups and multi-label with names from config.dataset.label_names or
  data_dir/label_names.json (video_files.load_group_names), else integer indices."""
  spec = labels_lib.label_spec(d)
  if not (spec.grouped or spec.multi_label):
    return plain_spec(load_label_names(d, data_dir))
  value, source = d.get('label_names', None), 'config.dataset.label_names'
  path = os.path.join(data_dir, LABEL_NAMES_FILE)
  if not value and os.path.isfile(path):
    value, source = path, path
  return spec.with_names(video_files.load_group_names(value, spec, source))


def build_dataset(config, *, process_index: int, process_count: int):
  """The `tfrecord` dataset of config.dataset (see the module docstring)."""
  d = config.dataset
  data_dir = pipeline.required_field(d, 'data_dir', 'the folder of the TFRecord shards')
  options = pipeline.clip_options(config)
  spec = dataset_labels(d, data_dir)
  names = split_names(d)
  readers = {}
  for split in dataset_lib.SPLITS:
    files = find_shards(data_dir, names[split])
    if not files:
      if split == 'train':
        raise checks.missing_split_error(d, split, missing_split(d, split))
      continue
    records = record_table(files)
    start, stop = dataset_lib.reader_range(split, len(records), process_index,
                                           process_count)
    readers[split] = TFRecordReader(
        files, records[start:stop], len(records),
        functools.partial(decode_record, label_names=spec))
  return pipeline.ClipDataset(
      readers, spec, options, seed=pipeline.trainer_seed(config),
      process_index=process_index, process_count=process_count)


def write_label_names(out_dir: str,
                      label_names: Union[Sequence[str], Mapping[str, Sequence[str]]]) -> str:
  """Writes out_dir/label_names.json (the file the tfrecord and video_files sources
  read): a list of the K names, or with label groups {group: names} in group order."""
  path = os.path.join(out_dir, LABEL_NAMES_FILE)
  value = ({g: list(v) for g, v in label_names.items()}
           if isinstance(label_names, Mapping) else list(label_names))
  with open(path, 'w') as f:
    json.dump(value, f, indent=1)
  return path
