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
from vivit_jax.data import pipeline
from vivit_jax.errors import DataFailureError, DecodeError

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
  """One split's rows: paths (absolute) and raw labels (names or integer strings);
  `classes`: the class folders of a folder tree (sorted, empty ones included)."""
  paths: list[str]
  labels: list[str]
  classes: Optional[list[str]] = None


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
          labels.append(name)
    return Index(paths, labels, classes)
  if not os.path.isfile(location):
    raise DataFailureError(f'Video index {location!r} does not exist: expected a '
                           f'{"/".join(INDEX_EXTENSIONS)} file or a folder of class '
                           'folders.')
  root = os.path.dirname(os.path.abspath(location))
  paths, labels = [], []
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
        continue
      if len(row) < 2:
        raise DataFailureError(f'{location}:{number + 1}: {row!r} is invalid: expected '
                               '`path,label`.')
      paths.append(row[0] if os.path.isabs(row[0]) else os.path.join(root, row[0]))
      labels.append(row[1])
  return Index(paths, labels)


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


def label_indices(labels: Sequence[str], label_names: Sequence[str]) -> np.ndarray:
  """int32[n]: each label's index in label_names (a name, or an integer index);
  -1 for unknown labels."""
  lookup = {name: i for i, name in enumerate(label_names)}
  out = np.full(len(labels), -1, np.int32)
  for row, label in enumerate(labels):
    if label in lookup:
      out[row] = lookup[label]
    elif label.lstrip('-').isdigit() and 0 <= int(label) < len(label_names):
      out[row] = int(label)
  return out


class VideoFileReader:
  """`pipeline.Reader` over the rows of a video index this process reads (see
  `dataset.reader_range`)."""

  def __init__(self, paths: Sequence[str], labels: np.ndarray, total: int):
    self.keys = list(paths)
    self.labels = np.asarray(labels, np.int32)
    self.total = total

  def read(self, index: int, choose: pipeline.Chooser):
    return decode_video(self.keys[index], choose), int(self.labels[index])


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
  readers, stats = {}, {}
  for split, index in indexes.items():
    labels = label_indices(index.labels, label_names)
    exists = np.array([os.path.isfile(p) for p in index.paths], bool)
    for path, label, ok in zip(index.paths, index.labels, exists):
      if not ok:
        logging.warning('Skipping %s row %s: the file does not exist.', split, path)
    for path, label, code in zip(index.paths, index.labels, labels):
      if code < 0:
        logging.warning('Skipping %s row %s: unknown label %r.', split, path, label)
    keep = exists & (labels >= 0)
    dropped = int((~keep).sum())
    stats[f'index_skipped_{split}'] = dropped
    _check_fraction(split, dropped, len(keep), options.max_failure_fraction,
                    'missing files or unknown labels')
    paths = [p for p, k in zip(index.paths, keep) if k]
    start, stop = dataset_lib.reader_range(split, len(paths), process_index,
                                           process_count)
    readers[split] = VideoFileReader(paths[start:stop], labels[keep][start:stop],
                                     len(paths))
  return pipeline.ClipDataset(
      readers, label_names, options, seed=pipeline.trainer_seed(config),
      process_index=process_index, process_count=process_count, index_stats=stats)
