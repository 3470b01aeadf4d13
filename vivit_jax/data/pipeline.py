"""The input pipeline of every source (synthetic, video files, TFRecord, TFDS).

A source provides a `Reader` per split: a key per example (its path, for logs)
and `read(i, choose)`, which returns only the frames `choose(video_len)` asks for
(decoded from a file, or indexed from arrays in memory). `ClipDataset` turns readers
into the `VideoDataset` contract (dataset.py), with one code path for all sources:

- Training order and augmentation depend only on (trainer seed, step, row of the
  global batch): every process holds the whole training split, the examples of an epoch
  are one permutation of all of them, and process p of P decodes rows [p*b, (p+1)*b) of
  the global batch of P*b rows (`global_rows`). So 1 process or N, any device count, and
  resumed runs (on any topology) see the same global batches; examples are read by
  `dataset.num_workers` threads (`dataset.worker_type='thread'`: PyAV, PIL and numpy
  release the GIL) or worker processes (`'process'`: protobuf parsing and the per-frame
  Python work of TFRecord/TFDS hold it), with `dataset.prefetch_batches` batches in
  flight while the trainer runs a step. Both give the same batches.
- A training clip: temporal sampling (`temporal_sampling`: dense with `stride`, or
  uniform), a scale-jitter or Inception crop resized to `crop_size`, flip, RandAugment
  (`randaugment_ops`: ours or Scenic's), colour jitter, Scenic/DMVR colour augmentation
  and colour drop, normalisation, random erasing (`train_clip`); with
  `repeated_augmentation` = k each example fills k consecutive rows of a batch, each
  with its own draws (`train_order`); test views: `eval_views`.
- Bad examples (corrupt, truncated, empty, audio-only, missing) raise `DecodeError`;
  they are logged once with their path, counted (`stats()`), and replaced in training
  by a deterministic redraw, masked out in evaluation; a training example known to be
  bad is not decoded again (its redraw is the same, so batches do not change). More than
  `dataset.max_failure_fraction` failed reads of a split stops with `DataFailureError`.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import multiprocessing
import pickle
import threading
from typing import Callable, Iterator, Optional, Protocol, Sequence

import numpy as np
from absl import logging

from vivit_jax.data import augment
from vivit_jax.data import dataset as dataset_lib
from vivit_jax.data import sampling
from vivit_jax.data.labels import LabelSpec
from vivit_jax.data.checks import RANDAUGMENT_OP_SETS, WORKER_TYPES
from vivit_jax.errors import ConfigError, DataFailureError, DecodeError, config_error

_ORDER, _AUGMENT, _REPLACE = 0, 1, 2    # seed-sequence tags of the random streams.
_MAX_REDRAWS = 16                       # replacement attempts for one training row.
_MIN_READS = 16                         # reads of a split before the failure check.

Chooser = Callable[[int], np.ndarray]   # video_len -> int frame indices (any shape).


class Reader(Protocol):
  """The n examples of one split this process can read: all of them for 'train', its
  shard (`dataset.reader_range`) for evaluation splits.

  keys: n strings naming the examples in logs (paths, shard:offset);
  total: examples in the split over all processes.
  """
  keys: Sequence[str]
  total: int

  def read(self, index: int, choose: Chooser) -> tuple[np.ndarray, object]:
    """(uint8[*choose(L).shape, H, W, 3], label): frames choose(L) of example `index`,
    a video of L frames (frame indices < L), and its label as the dataset's
    `LabelSpec.parse` returns it (int in [0, K), int32[G] or float32[K] multi-hot).
    Raises DecodeError for a bad example (unreadable, or a label outside the label
    names)."""


@dataclasses.dataclass(frozen=True)
class ClipOptions:
  """Sampling, augmentation and pipeline settings (config.dataset fields, see
  `clip_options`)."""
  num_frames: int
  crop_size: int
  stride: int = 1
  temporal_sampling: str = 'dense'
  min_resize: Optional[int] = None
  scale_jitter: Optional[tuple[float, float]] = None
  scale_jitter_prob: float = 1.0
  crop_area_range: Optional[tuple[float, float]] = None
  crop_aspect_range: Optional[tuple[float, float]] = None
  random_flip: bool = False
  color_jitter: float = 0.0
  randaugment_layers: int = 0
  randaugment_magnitude: float = 9.0
  randaugment_ops: str = 'default'
  randaugment_magnitude_std: float = 0.0
  color_augment_prob: float = 0.0
  color_drop_prob: float = 0.0
  random_erasing_prob: float = 0.0
  repeated_augmentation: int = 1
  num_test_clips: int = 1
  num_test_crops: int = 1
  mean_rgb: Sequence[float] = (0.5, 0.5, 0.5)
  std_rgb: Sequence[float] = (0.5, 0.5, 0.5)
  num_workers: int = 2
  worker_type: str = 'thread'
  prefetch_batches: int = 2
  max_failure_fraction: float = 0.1


def clip_options(config) -> ClipOptions:
  """ClipOptions from config.dataset (missing fields take the defaults above)."""
  d = config.dataset
  defaults = ClipOptions(num_frames=int(d.num_frames), crop_size=int(d.crop_size))
  values = {}
  for field in dataclasses.fields(ClipOptions):
    value = d.get(field.name, None)
    if value is None:
      continue
    if field.name in ('scale_jitter', 'crop_area_range', 'crop_aspect_range', 'mean_rgb',
                      'std_rgb'):
      value = tuple(float(v) for v in value)
    values[field.name] = value
  return dataclasses.replace(defaults, **values)


@functools.lru_cache(maxsize=8)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, _ORDER, epoch]).permutation(n)


def train_order(seed: int, step: int, batch_size: int, n: int,
                repeats: int = 1) -> np.ndarray:
  """int64[batch_size]: example indices of the global batch of training step `step`;
  the examples of epoch e are a permutation (seeded by seed, e) of all n training
  examples, so the order does not depend on the process count. With `repeats` = k > 1
  (repeated augmentation) a step takes the next ceil(batch_size / k) examples of that
  sequence and puts each in k consecutive rows (the last one fewer times if k does not
  divide batch_size)."""
  if n == 0:
    raise ValueError('The training split has no examples.')
  if repeats > 1:
    distinct = -(-batch_size // repeats)
    order = train_order(seed, step, distinct, n)
    return np.repeat(order, repeats)[:batch_size]
  position = step * batch_size + np.arange(batch_size)
  epoch, within = position // n, position % n
  index = np.empty(batch_size, np.int64)
  for e in np.unique(epoch):
    here = epoch == e
    index[here] = _permutation(seed, int(e), n)[within[here]]
  return index


def global_rows(batch_size: int, process_index: int) -> range:
  """Rows of the global batch that process `process_index` reads when each process
  reads `batch_size` rows: [p * batch_size, (p + 1) * batch_size) (the rows a 1-D
  data mesh of the devices in process order gives it, see train/parallel.py)."""
  return range(process_index * batch_size, (process_index + 1) * batch_size)


def augment_rng(seed: int, step: int, row: int) -> np.random.Generator:
  """The random stream of the augmentation draws of global row `row` of step `step`."""
  return np.random.default_rng([seed, _AUGMENT, step, row])


class _Failures:
  """Thread-safe counts of reads and failures per split, with the stopping rule.

  In a decoding worker process (`record=True`) it only records the events, which the
  parent replays (`replay`) in order, so counts, logs and the rule live in one place."""

  def __init__(self, max_fraction: float, record: bool = False):
    self.max_fraction = max_fraction
    self.reads = collections.Counter()
    self.failed = collections.Counter()
    self.bad_keys: dict[str, str] = {}
    self._lock = threading.Lock()
    self.events: Optional[list] = [] if record else None

  def ok(self, split: str):
    if self.events is not None:
      self.events.append((split, None, None, 0))
      return
    with self._lock:
      self.reads[split] += 1

  def fail(self, split: str, key: str, error, split_size: int):
    if self.events is not None:
      self.events.append((split, key, str(error), split_size))
      self.bad_keys[key] = str(error)    # this worker skips it from now on.
      return
    with self._lock:
      self.reads[split] += 1
      self.failed[split] += 1
      first = key not in self.bad_keys
      self.bad_keys[key] = str(error)
      reads, failed = self.reads[split], self.failed[split]
    if first:
      logging.warning('Skipping bad %s example %s: %s', split, key, error)
    if reads >= min(_MIN_READS, split_size) and failed > self.max_fraction * reads:
      raise DataFailureError(
          f'{failed} of {reads} reads of the {split!r} split failed, more than '
          f'config.dataset.max_failure_fraction={self.max_fraction}. Last: {key}: '
          f'{error}. Check the data (or raise max_failure_fraction).')

  def replay(self, events: list) -> None:
    """Applies the events a worker process recorded (see the class docstring)."""
    for split, key, error, split_size in events:
      if key is None:
        self.ok(split)
      else:
        self.fail(split, key, error, split_size)


# The ClipDataset copy of a decoding worker process (set by _init_worker).
_WORKER_DATASET = None


def _init_worker(dataset_bytes: bytes) -> None:
  global _WORKER_DATASET
  _WORKER_DATASET = pickle.loads(dataset_bytes)
  options = _WORKER_DATASET.options
  _WORKER_DATASET.failures = _Failures(options.max_failure_fraction, record=True)


def _call_in_worker(method: str, args: tuple):
  """(ClipDataset.<method>(*args), the failure events it recorded), in a worker."""
  dataset = _WORKER_DATASET
  result = getattr(dataset, method)(*args)
  events, dataset.failures.events = dataset.failures.events, []
  return result, events


def required_field(dataset_config, field: str, expected: str) -> str:
  """`config.dataset.<field>`, which the source `config.dataset.name` cannot do without;
  raises ConfigError naming the field, the source and `expected` when it is empty."""
  value = dataset_config.get(field, '') or ''
  if not value:
    raise ConfigError(f'config.dataset.{field}={value!r} is invalid for '
                      f'name={dataset_config.name!r}: expected {expected}.')
  return value


def trainer_seed(config) -> int:
  """config.trainer.seed (0 without a trainer group): the seed of the training order
  and augmentation draws."""
  trainer = config.get('trainer', None)
  return int(trainer.get('seed', 0)) if trainer is not None else 0


class ClipDataset:
  """`VideoDataset` (see dataset.py) over per-split `Reader`s.

  `labels`: the dataset's LabelSpec (labels.py; `label_spec` attribute), or for plain
  classification just its K label names. Batches stack the readers' labels with it
  (`LabelSpec.stack`); `label_names` is its flat list of K names."""

  def __init__(self, readers: dict[str, Reader], labels: LabelSpec | Sequence[str],
               options: ClipOptions, *, seed: int, process_index: int,
               process_count: int, index_stats: Optional[dict] = None):
    if options.num_test_crops not in (1, 3):
      raise config_error('dataset.num_test_crops', options.num_test_crops,
                         '1 (centre) or 3')
    if options.worker_type not in WORKER_TYPES:
      raise config_error('dataset.worker_type', options.worker_type,
                         f'one of {WORKER_TYPES}')
    if options.randaugment_ops not in RANDAUGMENT_OP_SETS:
      raise config_error('dataset.randaugment_ops', options.randaugment_ops,
                         f'one of {RANDAUGMENT_OP_SETS}')
    self.readers = readers
    if not isinstance(labels, LabelSpec):
      names = [str(n) for n in labels]
      labels = LabelSpec((('label', len(names)),)).with_names({'label': names})
    self.label_spec = labels
    self.label_names = labels.flat_names()
    self.num_classes = labels.num_classes
    self.options = options
    self.seed = seed
    self.process_index = process_index
    self.process_count = process_count
    self.failures = _Failures(options.max_failure_fraction)
    self.index_stats = dict(index_stats or {})
    self._pool: Optional[concurrent.futures.Executor] = None
    self._pool_lock = threading.Lock()

  def __getstate__(self):
    """What a worker process gets: no pool, lock or failure counts (it records its own)."""
    state = dict(self.__dict__)
    state.update(_pool=None, _pool_lock=None, failures=None)
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._pool_lock = threading.Lock()

  def num_examples(self, split: str) -> int:
    """Examples in `split` over all processes (after dropping unusable index rows)."""
    return self._reader(split).total

  def stats(self) -> dict:
    """Counts for the metrics: data_failures_<split> (failed reads so far),
    data_reads_<split>, and the index rows dropped when the dataset was built."""
    out = {f'data_reads_{s}': float(n) for s, n in self.failures.reads.items()}
    out.update({f'data_failures_{s}': float(self.failures.failed[s])
                for s in self.failures.reads})
    out.update({k: float(v) for k, v in self.index_stats.items()})
    return out

  def _reader(self, split: str) -> Reader:
    dataset_lib.check_split(split)
    if split not in self.readers:
      raise ValueError(f'split={split!r} is not available: this dataset has '
                       f'{sorted(self.readers)}.')
    return self.readers[split]

  # Training.

  def train_batches(self, start_step: int, batch_size: int) -> Iterator[dict]:
    """Process-local batches of `batch_size` rows of steps start_step, start_step + 1,
    ... forever: rows `global_rows(batch_size, process_index)` of the global batch of
    batch_size * process_count rows (see dataset.py)."""
    for results in self._run(functools.partial(self._train_tasks, batch_size),
                             _count_from(start_step)):
      clips, labels = zip(*results)
      yield {'video': np.stack(clips), 'label': self.label_spec.stack(labels)}

  def train_batch(self, step: int, batch_size: int) -> dict:
    """The process-local batch of training step `step`, decoded in this thread (the
    same arrays `train_batches` yields for that step)."""
    results = [getattr(self, method)(*args)
               for method, args in self._train_tasks(batch_size, step)]
    clips, labels = zip(*results)
    return {'video': np.stack(clips), 'label': self.label_spec.stack(labels)}

  def _train_tasks(self, batch_size: int, step: int) -> list:
    """('_train_example', (step, global row, example)) of this process's rows."""
    reader = self._reader('train')
    if len(reader.keys) != reader.total:
      raise ValueError(f'The train reader holds {len(reader.keys)} of {reader.total} '
                       'examples: a source must give every process the whole train split.')
    order = train_order(self.seed, step, batch_size * self.process_count, reader.total,
                        self.options.repeated_augmentation)
    rows = global_rows(batch_size, self.process_index)
    return [('_train_example', (step, row, int(order[row]))) for row in rows]

  def _train_example(self, step: int, row: int, index: int):
    """(float32[T, S, S, 3] normalised clip, label) of global row `row` of step `step`;
    a bad example is replaced by a redraw seeded by (seed, step, row, attempt). An
    example that failed before is not decoded again (it would fail the same way; a
    worker process remembers the failures it saw)."""
    reader = self._reader('train')
    n = len(reader.keys)
    for attempt in range(_MAX_REDRAWS):
      if attempt:
        redraw = np.random.default_rng([self.seed, _REPLACE, step, row, attempt])
        index = int(redraw.integers(n))
      known = self.failures.bad_keys.get(reader.keys[index])
      if known is not None:   # counted as a failed read, as if decoded again.
        self.failures.fail('train', reader.keys[index], known, reader.total)
        continue
      rng = augment_rng(self.seed, step, row)
      try:
        clip, label = self.train_clip(reader, index, rng)
      except DecodeError as e:
        self.failures.fail('train', reader.keys[index], e, reader.total)
        continue
      self.failures.ok('train')
      return clip, label
    raise DataFailureError(f'Training step {step}, row {row}: {_MAX_REDRAWS} examples '
                           'in a row failed to decode; see the warnings above.')

  def train_clip(self, reader: Reader, index: int, rng: np.random.Generator):
    """(float32[T, S, S, 3], label): a random clip of example `index`, augmented and
    normalised."""
    o = self.options
    frames, label = reader.read(index, lambda length: sampling.train_clip_indices(
        o.temporal_sampling, length, o.num_frames, o.stride, rng))
    height, width = frames.shape[1:3]
    if o.crop_area_range is not None:
      box = augment.random_resized_crop_box(height, width, rng, o.crop_area_range,
                                            o.crop_aspect_range or (3 / 4, 4 / 3))
    else:
      box = augment.scale_jitter_box(height, width, o.crop_size, rng,
                                     min_resize=o.min_resize,
                                     factor_range=o.scale_jitter,
                                     prob=o.scale_jitter_prob)
    clip = augment.resize_box(frames, box, o.crop_size, o.crop_size)
    if o.random_flip and rng.random() < 0.5:
      clip = augment.flip_left_right(clip)
    if o.randaugment_layers:
      clip = augment.rand_augment_clip(clip, rng, o.randaugment_ops, o.randaugment_layers,
                                       o.randaugment_magnitude, o.randaugment_magnitude_std)
    if o.color_jitter:
      clip = augment.color_jitter(clip, rng, o.color_jitter)
    if o.color_augment_prob or o.color_drop_prob:
      clip = augment.dmvr_color_augment(clip, rng, o.color_augment_prob, o.color_drop_prob)
    clip = augment.normalize(np.ascontiguousarray(clip), o.mean_rgb, o.std_rgb)
    if o.random_erasing_prob:
      clip = augment.random_erasing(clip, rng, o.random_erasing_prob)
    return clip, label

  # Evaluation.

  def num_views(self) -> int:
    """V = num_test_clips * num_test_crops."""
    return self.options.num_test_clips * self.options.num_test_crops

  def eval_views(self, reader: Reader, index: int):
    """(float32[V, T, S, S, 3] normalised test views, clip-major; label) of example
    `index`."""
    o = self.options
    frames, label = reader.read(index, lambda length: sampling.eval_clip_indices(
        o.temporal_sampling, length, o.num_frames, o.stride, o.num_test_clips))
    height, width = frames.shape[2:4]
    boxes = augment.eval_view_boxes(height, width, o.crop_size, o.num_test_crops,
                                    o.min_resize)
    views = np.stack([augment.resize_box(clip, box, o.crop_size, o.crop_size)
                      for clip in frames for box in boxes])
    return augment.normalize(views, o.mean_rgb, o.std_rgb), label

  def _eval_example(self, split: str, index: int):
    reader = self._reader(split)
    try:
      result = self.eval_views(reader, index)
    except DecodeError as e:
      self.failures.fail(split, reader.keys[index], e, reader.total)
      return None
    self.failures.ok(split)
    return result

  def eval_batches(self, split: str, batch_size: int) -> Iterator[dict]:
    """One pass over this process's shard of `split` (see dataset.py); examples that
    fail to decode get mask 0 and the empty label (`LabelSpec.empty`: 0, zeros[G] or
    zeros[K]; counted in `stats()`)."""
    reader = self._reader(split)
    n = len(reader.keys)
    first, _ = dataset_lib.shard_range(reader.total, self.process_index, self.process_count)
    num_batches = -(-dataset_lib.max_shard_size(reader.total, self.process_count)
                    // batch_size)
    o = self.options
    shape = (batch_size, self.num_views(), o.num_frames, o.crop_size, o.crop_size, 3)

    def tasks(b):
      rows = range(b * batch_size, min((b + 1) * batch_size, n))
      return [('_eval_example', (split, i)) for i in rows]

    for b, results in enumerate(self._run(tasks, range(num_batches))):
      video = np.zeros(shape, np.float32)
      label = self.label_spec.empty_batch(batch_size)
      mask = np.zeros(batch_size, np.float32)
      index = np.full(batch_size, -1, np.int32)
      index[:len(results)] = first + b * batch_size + np.arange(len(results))
      for row, result in enumerate(results):
        if result is not None:
          video[row], label[row] = result
          mask[row] = 1.0
      yield {'video': video, 'label': label, 'mask': mask, 'index': index}

  # Parallel decoding with prefetch.

  def _executor(self) -> concurrent.futures.Executor:
    """The decoding pool, made on first use and kept: `num_workers` threads, or worker
    processes (spawned, so no JAX state is forked) that each hold a copy of this
    dataset."""
    with self._pool_lock:
      if self._pool is None:
        workers = self.options.num_workers
        if self.options.worker_type == 'process':
          self._pool = concurrent.futures.ProcessPoolExecutor(
              workers, mp_context=multiprocessing.get_context('spawn'),
              initializer=_init_worker, initargs=(pickle.dumps(self),))
        else:
          self._pool = concurrent.futures.ThreadPoolExecutor(
              workers, thread_name_prefix='decode')
      return self._pool

  def close(self) -> None:
    """Stops the decoding workers (a later read starts new ones)."""
    with self._pool_lock:
      pool, self._pool = self._pool, None
    if pool is not None:
      pool.shutdown(wait=True, cancel_futures=True)

  def _submit(self, pool, method: str, args: tuple) -> concurrent.futures.Future:
    """Starts `self.<method>(*args)` in the pool."""
    if self.options.worker_type == 'process':
      return pool.submit(_call_in_worker, method, args)
    return pool.submit(getattr(self, method), *args)

  def _result(self, future: concurrent.futures.Future):
    """A task's result; a worker process's failure events are replayed first."""
    if self.options.worker_type == 'process':
      value, events = future.result()
      self.failures.replay(events)
      return value
    return future.result()

  def _run(self, tasks: Callable[[int], list], keys) -> Iterator[list]:
    """Results of the tasks (method name, args) of each k of `keys`, in order. With
    num_workers > 0 the pool runs the tasks of `prefetch_batches` keys ahead of the
    consumer."""
    ahead = max(1, self.options.prefetch_batches)
    if self.options.num_workers <= 0:
      for k in keys:
        yield [getattr(self, method)(*args) for method, args in tasks(k)]
      return
    pool = self._executor()
    pending = collections.deque()
    try:
      for k in keys:
        pending.append([self._submit(pool, method, args) for method, args in tasks(k)])
        if len(pending) > ahead:
          yield [self._result(f) for f in pending.popleft()]
      while pending:
        yield [self._result(f) for f in pending.popleft()]
    finally:
      for futures in pending:
        for f in futures:
          f.cancel()


def _count_from(start: int):
  step = start
  while True:
    yield step
    step += 1
