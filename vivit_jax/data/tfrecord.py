"""TFRecord shards of `tf.train.SequenceExample`s in the DMVR/Kinetics layout.

One example per video:
  context       clip/label/index   int64   label in [0, K)
                clip/label/string  bytes   label name (optional)
                video/filename     bytes   source file (optional, for logs)
  feature_list  image/encoded      bytes   one JPEG per frame

config.dataset.name = 'tfrecord'; the shards of split s are the files in
config.dataset.data_dir matching `<splits[s]>*.tfrecord*` or `<splits[s]>-*` (or the
glob splits[s] itself). Records are read with random access (an offset index built by
reading the record headers), so the shared pipeline can fetch any example of any step;
only the JPEGs of the frames a clip needs are decoded (PIL). Label names:
config.dataset.label_names, else data_dir/label_names.json (written by `prepare`),
else '0' ... 'K-1'. `python -m vivit_jax.data.prepare` writes such shards.
"""
from __future__ import annotations

import functools
import glob
import io
import json
import os
import struct
from typing import Callable, Optional, Sequence

import numpy as np
from absl import logging
from PIL import Image

from vivit_jax.data import checks
from vivit_jax.data import dataset as dataset_lib
from vivit_jax.data import example_proto
from vivit_jax.data import pipeline, video_files
from vivit_jax.data.video_files import LABEL_NAMES_FILE, split_names
from vivit_jax.errors import DecodeError

FRAMES_KEY = 'image/encoded'
LABEL_KEY = 'clip/label/index'
LABEL_STRING_KEY = 'clip/label/string'
FILENAME_KEY = 'video/filename'


# Writing.


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
  """JPEG bytes of one uint8[H, W, 3] frame (4:4:4 chroma at quality >= 90)."""
  out = io.BytesIO()
  Image.fromarray(frame).save(out, format='JPEG', quality=quality,
                              subsampling=0 if quality >= 90 else 2)
  return out.getvalue()


def encode_example(video: np.ndarray, label: int, label_name: Optional[str] = None,
                   filename: Optional[str] = None, quality: int = 90) -> bytes:
  """A serialized SequenceExample of uint8[T, H, W, 3] frames (JPEG) and a label."""
  ex = example_proto.SequenceExample()
  ex.context.feature[LABEL_KEY].int64_list.value.append(int(label))
  if label_name is not None:
    ex.context.feature[LABEL_STRING_KEY].bytes_list.value.append(label_name.encode())
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


def label_index(label: int, name: Optional[str], label_names: Sequence[str]) -> int:
  """The label in [0, K): the index if valid, else the name's position; raises
  DecodeError for a label outside label_names."""
  if 0 <= label < len(label_names):
    return label
  if name is not None and name in label_names:
    return list(label_names).index(name)
  raise DecodeError(f'label {label} ({name!r}) is not one of the '
                    f'{len(label_names)} label names.')


def decode_record(record: bytes, choose: pipeline.Chooser,
                  label_names: Sequence[str]) -> tuple[np.ndarray, int]:
  """(uint8[*choose(L).shape, H, W, 3], label) of a serialized SequenceExample."""
  try:
    encoded, label, name = parse_example(record)
  except Exception as e:   # protobuf's DecodeError and friends.
    raise DecodeError(f'not a SequenceExample: {type(e).__name__}: {e}') from e
  label = label_index(label, name, label_names)
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


def build_dataset(config, *, process_index: int, process_count: int):
  """The `tfrecord` dataset of config.dataset (see the module docstring)."""
  d = config.dataset
  data_dir = pipeline.required_field(d, 'data_dir', 'the folder of the TFRecord shards')
  options = pipeline.clip_options(config)
  label_names = load_label_names(d, data_dir)
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
        functools.partial(decode_record, label_names=label_names))
  return pipeline.ClipDataset(
      readers, label_names, options, seed=pipeline.trainer_seed(config),
      process_index=process_index, process_count=process_count)


def write_label_names(out_dir: str, label_names: Sequence[str]) -> str:
  """Writes out_dir/label_names.json (the file the tfrecord source reads)."""
  path = os.path.join(out_dir, LABEL_NAMES_FILE)
  with open(path, 'w') as f:
    json.dump(list(label_names), f, indent=1)
  return path
