"""Video files as a dataset: a CSV/TSV index or a folder of class folders, decoded with
PyAV (FFmpeg: mp4, webm, avi, ...), seeking to the clip instead of decoding the file.

config.dataset.name = 'video_files'; config.dataset.data_dir holds, for each split s
(named by config.dataset.splits[s], default s itself), one of:
  s.csv / s.tsv / s.txt    rows `path,label` (tab / whitespace for .tsv / .txt; an
                           optional `path,label` header; paths relative to the index);
  s/<class name>/<video>   a folder per class.
An absolute index path or folder may be given in splits[s] instead. Labels are class
names, or integer indices into config.dataset.label_names. Label names:
config.dataset.label_names (a list, or a .txt/.json file) if set, else
data_dir/label_names.json if there, else the training
class folders (sorted, empty ones included), else the sorted names of the training
index. Rows naming a missing file or a label not in label_names are dropped, logged
and counted (`index_skipped_<split>`).

Label groups and multi-label (config.dataset.label_groups / multi_label, labels.py)
need index files. With groups a row has a column per group, `path,verb,noun`: a header
row (first cell `path`) names the groups' columns (any order; other columns are
ignored), without one the columns follow label_groups. Multi-label: one column with a
';'-separated class list, `a.mp4,3;17;42` (an empty one is a clip of no class). Class
names: config.dataset.label_names as a dict {group: list or .txt/.json file}, or the K
names (list or file) in label order, or data_dir/label_names.json (either form); else
labels are integer indices. Every label goes through `LabelSpec.parse`: a row with a
wrong or missing label (not a class, a group's column missing) is dropped, logged with
its path and the bad value, and counted like a missing file.
"""
from __future__ import annotations

import csv
import dataclasses
import fractions
import functools
import json
import os
import threading
from typing import Optional, Sequence

import numpy as np
from absl import logging

from vivit_jax.data import checks
from vivit_jax.data import dataset as dataset_lib
from vivit_jax.data import labels as labels_lib
from vivit_jax.data import pipeline
from vivit_jax.data.labels import LabelSpec
from vivit_jax.errors import ConfigError, DataFailureError, DecodeError, config_error

INDEX_EXTENSIONS = ('.csv', '.tsv', '.txt')
LABEL_NAMES_FILE = 'label_names.json'     # optional, in data_dir: names in label order.


# Decoding.


def _frame_index(frame, stream, rate: fractions.Fraction, start_pts: int) -> Optional[int]:
  """The frame number of a decoded frame from its timestamp (None without one)."""
  if frame.pts is None or not rate or stream.time_base is None:
    return None
  return int(round(float((frame.pts - start_pts) * stream.time_base * rate)))


_THREAD_STATE = threading.local()


def _reformatter():
  """This thread's PyAV colour converter, kept across videos. `frame.to_ndarray(
  format=...)` sets up a new swscale context for every frame (7 ms per 36x36 frame,
  10x its decoding); one per video still cost 0.8 ms a frame, one per thread used
  single-threaded (`_to_rgb`) 0.02 ms."""
  if not hasattr(_THREAD_STATE, 'reformatter'):
    from av.video.reformatter import VideoReformatter
    _THREAD_STATE.reformatter = VideoReformatter()
  return _THREAD_STATE.reformatter


def _to_rgb(reformatter, frame) -> np.ndarray:
  """uint8[H, W, 3]: a decoded frame in RGB. One swscale thread: the pipeline already
  decodes videos in parallel, and swscale's default thread pool cost 7x the conversion
  of a small frame."""
  return reformatter.reformat(frame, format='rgb24', threads=1).to_ndarray()


def _decode_wanted(container, stream, wanted: np.ndarray, rate, start_pts, seek: bool,
                   to_rgb):
  """{frame number: uint8[H, W, 3]} for the frame numbers in `wanted` (a sorted
  unique array), and the number of the last frame decoded. Seeks to the keyframe
  before the first wanted frame when `seek`; returns None if the seek overshot."""
  first, last = int(wanted[0]), int(wanted[-1])
  if seek:
    target = start_pts + int(first / (rate * stream.time_base))
    container.seek(target, stream=stream, backward=True, any_frame=False)
  frames, count, number = {}, 0, -1
  wanted_set = set(int(w) for w in wanted)
  for frame in container.decode(stream):
    index = _frame_index(frame, stream, rate, start_pts)
    number = count if index is None else index
    if seek and count == 0 and number > first:
      return None, number            # landed after the clip: decode from the start.
    count += 1
    if number in wanted_set:
      frames[number] = to_rgb(frame)
    if number >= last:
      break
  return frames, number


def decode_video(path: str, choose: pipeline.Chooser) -> np.ndarray:
  """uint8[*choose(L).shape, H, W, 3]: frames choose(L) of the video file at `path`
  (L = its frame count from the container, corrected by decoding when the container
  is wrong). Raises DecodeError naming the path for missing, unreadable, audio-only
  or empty files."""
  import av   # PyAV: FFmpeg bindings; decoding releases the GIL.
  to_rgb = functools.partial(_to_rgb, _reformatter())
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise DecodeError(f'{path}: no video stream (audio-only or not a video).')
      stream = container.streams.video[0]
      stream.thread_type = 'NONE'   # one thread per video: the pipeline runs videos in
      stream.codec_context.thread_count = 1   # parallel (faster for short clips).
      rate = stream.average_rate or stream.guessed_rate
      start_pts = stream.start_time or 0
      length = stream.frames
      if not length and rate and stream.duration:
        length = int(round(float(stream.duration * stream.time_base * rate)))
      if length:
        indices = np.asarray(choose(length))
        wanted = np.unique(indices)
        can_seek = bool(rate) and stream.time_base is not None and wanted[0] > 0
        frames, last = _decode_wanted(container, stream, wanted, rate, start_pts, can_seek,
                                      to_rgb)
        if frames is None:
          container.seek(0, stream=stream)   # the seek overshot: decode from the start.
          frames, last = _decode_wanted(container, stream, wanted, rate, start_pts, False,
                                        to_rgb)
        if len(frames) == len(wanted):
          return np.stack([frames[int(i)] for i in indices.ravel()]).reshape(
              indices.shape + frames[int(wanted[0])].shape)
        container.seek(0, stream=stream)     # fewer frames than the header says.
      # Unknown or wrong length: decode everything, then choose.
      all_frames = [to_rgb(f) for f in container.decode(stream)]
  except DecodeError:
    raise
  except (OSError, ValueError, av.error.FFmpegError) as e:   # missing, corrupt, ...
    raise DecodeError(f'{path}: {type(e).__name__}: {e}') from e
  if not all_frames:
    raise DecodeError(f'{path}: no frames could be decoded (empty or truncated).')
  indices = np.asarray(choose(len(all_frames)))
  video = np.stack(all_frames)
  return video[indices.ravel()].reshape(indices.shape + video.shape[1:])


def write_video(path: str, video: np.ndarray, fps: int = 25, codec: str = 'libx264',
                crf: int = 12, pix_fmt: str = 'yuv444p', gop: int = 8) -> None:
  """Writes uint8[T, H, W, 3] RGB frames to a video file (container from the path's
  extension; H and W even for 4:2:0 formats). crf 0 with 'libx264rgb'/'rgb24' is
  lossless; the default is visually lossless H.264 4:4:4 with a keyframe every `gop`."""
  import av
  video = np.asarray(video)
  if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
    raise ValueError(f'video {video.dtype}{list(video.shape)} is invalid: expected '
                     'uint8[T, H, W, 3].')
  options = {'crf': str(crf)} if 'x264' in codec else {}
  with av.open(path, 'w') as container:
    stream = container.add_stream(codec, rate=fps, options=options)
    stream.width, stream.height = video.shape[2], video.shape[1]
    stream.pix_fmt = pix_fmt
    stream.codec_context.gop_size = gop
    for frame in video:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


# Indexes.


@dataclasses.dataclass
class Index:
  """One split's rows: paths (absolute) and each row's label columns (raw strings:
  names, integer strings or ';'-separated lists); `columns`: the label columns' names
  from a header row (None without one); `classes`: the class folders of a folder tree
  (sorted, empty ones included)."""
  paths: list[str]
  values: list[tuple[str, ...]]
  classes: Optional[list[str]] = None
  columns: Optional[tuple[str, ...]] = None
  location: str = ''

  @property
  def labels(self) -> list[str]:
    """Each row's first label column (the label of plain classification)."""
    return [v[0] for v in self.values]

  def label_values(self, spec: LabelSpec) -> list[list[str]]:
    """Each row's raw values for `spec.parse`: the first label column, or with label
    groups each group's column (named by the header, else in group order; a row that
    lacks one gives fewer values, which `parse` refuses). DataFailureError if the
    header has no column for a group."""
    if not spec.grouped:
      return [[v[0]] for v in self.values]
    if self.columns is None:
      return [list(v[:len(spec.groups)]) for v in self.values]
    missing = [g for g in spec.group_names if g not in self.columns]
    if missing:
      raise DataFailureError(
          f'{self.location}: the header {["path", *self.columns]} has no column for '
          f'label group(s) {missing}: expected the columns of config.dataset.label_groups '
          f'{spec.group_names} (or no header, with the columns in that order).')
    at = [self.columns.index(g) for g in spec.group_names]
    return [[v[i] for i in at if i < len(v)] for v in self.values]


def read_index(location: str) -> Index:
  """The rows of a CSV/TSV/TXT index or of a folder of class folders (sorted)."""
  if os.path.isdir(location):
    paths, labels = [], []
    classes = sorted(d for d in os.listdir(location)
                     if os.path.isdir(os.path.join(location, d)) and not d.startswith('.'))
    for name in classes:
      folder = os.path.join(location, name)
      for file in sorted(os.listdir(folder)):
        if not file.startswith('.'):
          paths.append(os.path.join(folder, file))
          labels.append((name,))
    return Index(paths, labels, classes, location=location)
  if not os.path.isfile(location):
    raise DataFailureError(f'Video index {location!r} does not exist: expected a '
                           f'{"/".join(INDEX_EXTENSIONS)} file or a folder of class '
                           'folders.')
  root = os.path.dirname(os.path.abspath(location))
  paths, labels, columns = [], [], None
  with open(location, newline='') as f:
    if location.endswith('.txt'):
      rows = [line.split() for line in f]
    else:
      rows = csv.reader(f, delimiter='\t' if location.endswith('.tsv') else ',')
    for number, row in enumerate(rows):
      row = [c.strip() for c in row]
      if not row or not row[0] or row[0].startswith('#'):
        continue
      if number == 0 and row[0].lower() == 'path':
        columns = tuple(row[1:])
        continue
      if len(row) < 2:
        raise DataFailureError(f'{location}:{number + 1}: {row!r} is invalid: expected '
                               '`path,label` (or a column per label group).')
      paths.append(row[0] if os.path.isabs(row[0]) else os.path.join(root, row[0]))
      labels.append(tuple(row[1:]))
  return Index(paths, labels, columns=columns, location=location)


def split_candidates(data_dir: str, name: str) -> list[str]:
  """Where the index file or class folder of split `name` may be, in order."""
  candidates = [name] if os.path.isabs(name) else []
  candidates += [os.path.join(data_dir, name + ext) for ext in INDEX_EXTENSIONS]
  return candidates + [os.path.join(data_dir, name)]


def find_split(data_dir: str, name: str) -> str:
  """The index file or class folder of split `name` under data_dir (or `name` itself
  if it is a path)."""
  candidates = split_candidates(data_dir, name)
  for c in candidates:
    if os.path.isfile(c) or os.path.isdir(c):
      return c
  raise FileNotFoundError(f'No index for split {name!r} in {data_dir!r}: expected one '
                          f'of {candidates}.')


def split_names(dataset_config) -> dict[str, str]:
  """{split: its name in the data} from config.dataset.splits (default: the split)."""
  names = dict(dataset_config.get('splits', None) or {})
  return {split: names.get(split, split) for split in dataset_lib.SPLITS}


def missing_split(dataset_config, split: str) -> Optional[str]:
  """None if `split` has an index or class folder, else what was looked for and
  which splits exist (the split check of sources.py; no file is read)."""
  data_dir = pipeline.required_field(
      dataset_config, 'data_dir', 'a folder with a CSV/TSV index or class folders per split')
  names = split_names(dataset_config)

  def exists(s):
    return any(os.path.isfile(c) or os.path.isdir(c)
               for c in split_candidates(data_dir, names[s]))

  if exists(split):
    return None
  if not os.path.isdir(data_dir):
    return f'data_dir={data_dir!r} is not a folder'
  looked = ', '.join(split_candidates(data_dir, names[split]))
  found = [s for s in dataset_lib.SPLITS if exists(s)]
  return (f'no index file or class folder (looked for {looked}; '
          f'config.dataset.splits.{split}={names[split]!r}); splits with data: {found}')


def load_label_names(value) -> Optional[list[str]]:
  """config.dataset.label_names: None, a list of names, or a .txt (one per line) or
  .json (list) file."""
  if value is None or value == '':
    return None
  if isinstance(value, str):
    with open(value) as f:
      if value.endswith('.json'):
        return [str(n) for n in json.load(f)]
      return [line.strip() for line in f if line.strip()]
  return [str(n) for n in value]


def load_group_names(value, spec: LabelSpec,
                     source: str = 'config.dataset.label_names') -> dict[str, list[str]]:
  """{group: class names in label order} for `spec` from a label_names value: a dict
  {group: list, or .txt/.json file} (or a .json file holding that object), or the K
  names (list, .txt or .json file) split into the groups' blocks; {} for None. Names
  of an unknown group or of the wrong count are a ConfigError naming `source`."""
  if value is None or value == '':
    return {}
  if isinstance(value, str) and value.endswith('.json'):
    with open(value) as f:
      loaded = json.load(f)
    value = loaded if isinstance(loaded, dict) else value
  if hasattr(value, 'items'):
    names = {str(group): load_label_names(v) for group, v in value.items()}
  else:
    flat = load_label_names(value)
    if len(flat) != spec.num_classes:
      raise ConfigError(f'{source} has {len(flat)} names: expected {spec.num_classes} '
                        '(config.dataset.num_classes) in label order, or a dict '
                        '{group: names} for label groups.')
    names = {g: flat[s] for g, s in zip(spec.group_names, spec.slices())}
  sizes = dict(spec.groups)
  for group, group_names in names.items():
    if group not in sizes:
      raise ConfigError(f'{source} names label group {group!r}: expected groups of '
                        f'config.dataset.label_groups {spec.group_names}.')
    if len(group_names) != sizes[group]:
      raise ConfigError(f'{source} has {len(group_names)} names for label group '
                        f'{group!r}: expected {sizes[group]}.')
  return names


def plain_label_names(dataset_config, data_dir: str, indexes: dict) -> list[str]:
  """The K label names of plain classification: config.dataset.label_names, else
  data_dir/label_names.json, else the training class folders, else '0'.. if the
  training index labels are all integers, else its sorted label names."""
  d = dataset_config
  label_names = load_label_names(d.get('label_names', None))
  names_file = os.path.join(data_dir, LABEL_NAMES_FILE)
  if label_names is None and os.path.isfile(names_file):
    label_names = load_label_names(names_file)
  if label_names is None:
    raw = indexes['train'].labels
    if indexes['train'].classes is not None:
      label_names = indexes['train'].classes
    elif raw and all(l.isdigit() for l in raw):
      label_names = [str(i) for i in range(int(d.num_classes))]
    else:
      label_names = sorted(set(raw))
  return label_names


def dataset_labels(dataset_config, data_dir: str, indexes: dict) -> LabelSpec:
  """The LabelSpec (with names) of a video_files dataset. Label groups and multi-label
  need CSV/TSV indexes (ConfigError for class folders); their names come from
  config.dataset.label_names or data_dir/label_names.json (`load_group_names`), else
  labels are integer indices."""
  d = dataset_config
  spec = labels_lib.label_spec(d)
  if not (spec.grouped or spec.multi_label):
    names = plain_label_names(d, data_dir, indexes)
    return LabelSpec((('label', len(names)),)).with_names({'label': names})
  folders = [i.location for i in indexes.values() if i.classes is not None]
  if folders:
    field, value = (('dataset.label_groups', d.label_groups) if spec.grouped else
                    ('dataset.multi_label', True))
    raise config_error(field, value, f'a plain label for class folders ({folders[0]} '
                       'holds one class per video): give a CSV/TSV index per split, '
                       '`path,<group>,...` or `path,labels` with "3;17" lists')
  names_file = os.path.join(data_dir, LABEL_NAMES_FILE)
  value, source = d.get('label_names', None), 'config.dataset.label_names'
  if not value and os.path.isfile(names_file):
    value, source = names_file, names_file
  return spec.with_names(load_group_names(value, spec, source))


class VideoFileReader:
  """`pipeline.Reader` over the rows of a video index this process reads (see
  `dataset.reader_range`); `labels`: each row's label as `LabelSpec.parse` made it."""

  def __init__(self, paths: Sequence[str], labels: Sequence, total: int):
    self.keys = list(paths)
    self.labels = list(labels)
    self.total = total

  def read(self, index: int, choose: pipeline.Chooser):
    return decode_video(self.keys[index], choose), self.labels[index]


def _check_fraction(split, dropped, listed, max_fraction, what):
  if listed and dropped > max_fraction * listed:
    raise DataFailureError(
        f'{dropped} of {listed} rows of the {split!r} index were dropped ({what}), more '
        f'than config.dataset.max_failure_fraction={max_fraction}.')


def build_dataset(config, *, process_index: int, process_count: int):
  """The `video_files` dataset of config.dataset (see the module docstring)."""
  d = config.dataset
  data_dir = pipeline.required_field(
      d, 'data_dir', 'a folder with a CSV/TSV index or class folders per split')
  options = pipeline.clip_options(config)
  names = split_names(d)
  locations = {}
  for split in dataset_lib.SPLITS:
    try:
      locations[split] = find_split(data_dir, names[split])
    except FileNotFoundError:
      if split == 'train':
        raise checks.missing_split_error(d, split, missing_split(d, split))
      logging.info('No %s split in %s.', split, data_dir)
  indexes = {split: read_index(loc) for split, loc in locations.items()}
  spec = dataset_labels(d, data_dir, indexes)
  readers, stats = {}, {}
  for split, index in indexes.items():
    exists = np.array([os.path.isfile(p) for p in index.paths], bool)
    for path, ok in zip(index.paths, exists):
      if not ok:
        logging.warning('Skipping %s row %s: the file does not exist.', split, path)
    labels = []
    for path, raw in zip(index.paths, index.label_values(spec)):
      try:
        labels.append(spec.parse(raw, path))
      except DecodeError as e:       # names the path and the bad value.
        labels.append(None)
        logging.warning('Skipping %s row %s', split, e)
    keep = exists & np.array([label is not None for label in labels], bool)
    dropped = int((~keep).sum())
    stats[f'index_skipped_{split}'] = dropped
    _check_fraction(split, dropped, len(keep), options.max_failure_fraction,
                    'missing files or bad labels')
    paths = [p for p, k in zip(index.paths, keep) if k]
    labels = [label for label, k in zip(labels, keep) if k]
    start, stop = dataset_lib.reader_range(split, len(paths), process_index,
                                           process_count)
    readers[split] = VideoFileReader(paths[start:stop], labels[start:stop], len(paths))
  return pipeline.ClipDataset(
      readers, spec, options, seed=pipeline.trainer_seed(config),
      process_index=process_index, process_count=process_count, index_stats=stats)
