"""The synthetic motion dataset and the VideoDataset built on it.

The baseline tests prove that the task needs time: a single frame classifier is at
chance, while a classifier on simple motion features does well.
"""
import pickle

import numpy as np
import pytest

from vivit_jax import data, errors
from vivit_jax.data import augment, pipeline, sampling, synthetic

from synthetic_helpers import (assert_same_global_batches, expected_train_clip,
                               synthetic_config)

NUM_FRAMES, SIZE = 16, 32


@pytest.fixture(scope='module')
def train_val():
  """800 training and 400 validation videos of 16 frames at 32x32."""
  train = synthetic.generate(800, num_frames=NUM_FRAMES, size=SIZE,
                             seed=synthetic.split_seed(0, 'train'))
  val = synthetic.generate(400, num_frames=NUM_FRAMES, size=SIZE,
                           seed=synthetic.split_seed(0, 'validation'))
  return train, val


# Generation.

def test_label_names():
  assert synthetic.NUM_CLASSES == len(synthetic.LABEL_NAMES) == 10
  assert synthetic.LABEL_NAMES[:2] == ['move_left', 'move_right']
  assert len(set(synthetic.LABEL_NAMES)) == 10


def test_shapes_dtypes_ranges(train_val):
  (videos, labels), _ = train_val
  assert videos.shape == (800, NUM_FRAMES, SIZE, SIZE, 3) and videos.dtype == np.uint8
  assert labels.shape == (800,) and labels.dtype == np.int32
  assert labels.min() == 0 and labels.max() == 9
  assert np.bincount(labels).min() > 50                 # every class well represented.
  assert videos.min() < 20 and videos.max() > 235       # full pixel range is used.


def test_deterministic_and_splits_differ():
  a = synthetic.generate(10, num_frames=4, size=12, seed=3)
  b = synthetic.generate(10, num_frames=4, size=12, seed=3)
  c = synthetic.generate(10, num_frames=4, size=12, seed=4)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])
  seeds = {synthetic.split_seed(0, s) for s in ('train', 'validation', 'test')}
  assert len(seeds) == 3


def test_offset_gives_the_same_examples():
  full_videos, full_labels = synthetic.generate(80, num_frames=4, size=12, seed=1)
  videos, labels = synthetic.generate(10, num_frames=4, size=12, seed=1, offset=60)
  np.testing.assert_array_equal(videos, full_videos[60:70])   # crosses a chunk edge.
  np.testing.assert_array_equal(labels, full_labels[60:70])


def test_tiny_sizes_work():
  videos, labels = synthetic.generate(20, num_frames=4, size=8, seed=0, clip_frames=4)
  assert videos.shape == (20, 4, 8, 8, 3)


# Baselines: does the task need time?

def foreground(videos):
  """float32[N, T, H, W]: 1 where a pixel is far from its video's background colour
  (the median colour of the first frame). videos: uint8[N, T, H, W, 3]."""
  n = videos.shape[0]
  background = np.median(videos[:, 0].reshape(n, -1, 3), axis=1).astype(np.int16)
  diff = np.abs(videos.astype(np.int16) - background[:, None, None, None, :]).sum(-1)
  return (diff > 60).astype(np.float32)


def frame_features(frames):
  """float32[N, F] appearance features of single frames uint8[N, H, W, 3]: foreground
  area, centroid, second moments and edges, a 4x4 colour thumbnail, colour spread."""
  n, h, w, _ = frames.shape
  fg = foreground(frames[:, None])[:, 0]
  ys, xs = np.mgrid[0:h, 0:w] / np.float32(h)
  mass = fg.sum((1, 2)) + 1e-3
  moments = [(fg * m).sum((1, 2)) / mass for m in (ys, xs, ys * ys, xs * xs, xs * ys)]
  edges = [np.abs(np.diff(fg, axis=a)).mean((1, 2)) for a in (1, 2)]
  thumb = frames.reshape(n, 4, h // 4, 4, w // 4, 3).mean((2, 4)).reshape(n, -1) / 255
  spread = frames.reshape(n, -1, 3).std(1) / 255
  shape_stats = np.stack([fg.mean((1, 2))] + moments + edges, -1)
  return np.concatenate([shape_stats, thumb, spread], -1)


def motion_features(videos):
  """float32[N, 6] motion features of uint8[N, T, H, W, 3] videos, in order:
  horizontal and vertical displacement (> 0: right / down; shift matching of the
  foreground's column and row profiles two frames apart), trend of the foreground
  area, its largest jump up and down, and the net trend of the pixels' contrast against
  the background colour, as a fraction of their total trend (> 0: contrast rises, as
  when a shape fades in; a moving shape's gains and losses cancel)."""
  t, h = videos.shape[1:3]
  fg = foreground(videos)
  feats = []
  for profile in (fg.sum(2), fg.sum(3)):       # [N, T, W] columns, [N, T, H] rows.
    a, b = profile[:, :-2], profile[:, 2:]
    err = [np.abs(b - np.roll(a, s, axis=-1)).mean((1, 2)) for s in (-2, -1, 1, 2)]
    feats.append((err[0] + err[1] - err[2] - err[3]) / (err[0] + err[3] + 1e-3))
  tt = np.arange(t) - (t - 1) / 2

  def trend(x):                                # [N, T] -> relative slope per frame.
    return (x * tt).sum(1) / (tt * tt).sum() / (x.mean(1) + 1e-3)

  area = fg.mean((2, 3))
  jumps = np.diff(area, axis=1)
  feats += [trend(area), jumps.max(1) / (area.mean(1) + 1e-3),
            -jumps.min(1) / (area.mean(1) + 1e-3)]
  n = videos.shape[0]
  background = np.median(videos[:, 0].reshape(n, -1, 3), axis=1)
  contrast = np.abs(videos - background[:, None, None, None, :]).sum(-1)   # [N, T, H, W]
  slope = np.einsum('nthw,t->nhw', contrast, tt)          # per-pixel contrast trend,
  slope *= contrast.max(1) > 100                          # on pixels a shape covers.
  feats.append(slope.sum((1, 2)) / (np.abs(slope).sum((1, 2)) + 1e-3))
  return np.stack(feats, -1).astype(np.float32)


def softmax_regression(x_train, y_train, x_test, num_classes, steps=300, lr=0.5):
  """Predicted labels int[N_test] of a multinomial logistic regression (numpy GD)."""
  mu, sd = x_train.mean(0), x_train.std(0) + 1e-6

  def design(x):
    return np.concatenate([(x - mu) / sd, np.ones((len(x), 1))], 1)

  x_train, x_test = design(x_train), design(x_test)
  weights = np.zeros((x_train.shape[1], num_classes))
  onehot = np.eye(num_classes)[y_train]
  for _ in range(steps):
    logits = x_train @ weights
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    weights -= lr * (x_train.T @ (p - onehot) / len(x_train) + 1e-3 * weights)
  return (x_test @ weights).argmax(1)


def _random_frames(videos, seed):
  rng = np.random.default_rng(seed)
  return videos[np.arange(len(videos)), rng.integers(0, videos.shape[1], len(videos))]


def test_single_frame_classifier_is_at_chance(train_val):
  (train_v, train_l), (val_v, val_l) = train_val
  x_train = frame_features(_random_frames(train_v, 0))
  x_val = frame_features(_random_frames(val_v, 1))
  accuracy = (softmax_regression(x_train, train_l, x_val, 10) == val_l).mean()
  # Nor can one frame tell which of the five pairs (what changes) a video is.
  pair_accuracy = (softmax_regression(x_train, train_l // 2, x_val, 5) == val_l // 2).mean()
  print(f'single-frame accuracy {accuracy:.3f}, pair accuracy {pair_accuracy:.3f}')
  assert accuracy < 0.16           # chance 0.10; 400 examples: std 0.015.
  assert pair_accuracy < 0.28      # chance 0.20.


def test_motion_classifier_is_well_above_chance(train_val):
  (train_v, train_l), (val_v, val_l) = train_val
  x_train, x_val = motion_features(train_v), motion_features(val_v)
  accuracy = (softmax_regression(x_train, train_l, x_val, 10) == val_l).mean()
  # Each video's frames in its own random order (one shared permutation would keep a
  # net time direction in the frame-pair features).
  order = np.random.default_rng(0).permuted(
      np.tile(np.arange(NUM_FRAMES), (len(val_v), 1)), axis=1)
  shuffled = val_v[np.arange(len(val_v))[:, None], order]
  predicted = softmax_regression(x_train, train_l, motion_features(shuffled), 10)
  # Shuffled frames still show *what* changes (the pair) but not its direction.
  right_pair = predicted // 2 == val_l // 2
  direction_accuracy = (predicted == val_l)[right_pair].mean()
  print(f'motion accuracy {accuracy:.3f}; on shuffled frames {(predicted == val_l).mean():.3f}'
        f', direction within the right pair {direction_accuracy:.3f}')
  assert accuracy > 0.85
  assert direction_accuracy < 0.65   # chance 0.5: the direction needs the frame order.
  assert (predicted == val_l).mean() < 0.5


def test_labels_mean_what_they_say(train_val):
  """The median motion feature of each class has the sign its name says."""
  (videos, labels), _ = train_val
  feats = motion_features(videos)
  median = {name: np.median(feats[labels == c], axis=0)
            for c, name in enumerate(synthetic.LABEL_NAMES)}
  dx, dy, trend, jump_up, jump_down, contrast = range(6)
  assert median['move_left'][dx] < -0.3 < 0.3 < median['move_right'][dx]
  assert median['move_up'][dy] < -0.3 < 0.3 < median['move_down'][dy]   # y is down.
  assert median['fade_out'][contrast] < 0 < median['fade_in'][contrast]
  assert median['shrink'][trend] < 0 < median['grow'][trend]
  assert median['appear'][jump_up] > 0.2 and median['appear'][jump_down] < 0.05
  assert median['disappear'][jump_down] > 0.2 and median['disappear'][jump_up] < 0.05


# The VideoDataset: the synthetic arrays are one more source of pipeline.ClipDataset.

def _get(config, index=0, count=1):
  return data.get_dataset(config, process_index=index, process_count=count)


def _pixels(video):
  """Normalised clips back to pixel levels (mean = std = 0.5)."""
  return (video * 0.5 + 0.5) * 255


def test_unknown_dataset_name():
  with pytest.raises(errors.ConfigError, match=r"config.dataset.name='kinetics9'.*'synthetic'"):
    _get(synthetic_config(name='kinetics9'))


def test_dataset_attributes():
  ds = _get(synthetic_config())
  assert isinstance(ds, pipeline.ClipDataset)
  assert all(isinstance(r, synthetic.SyntheticReader) for r in ds.readers.values())
  assert ds.num_classes == 10 and ds.label_names == synthetic.LABEL_NAMES
  assert [ds.num_examples(s) for s in ('train', 'validation', 'test')] == [96, 40, 40]
  with pytest.raises(ValueError, match='split'):
    ds.num_examples('dev')


def test_train_batches_shapes_and_normalisation():
  batch = next(_get(synthetic_config()).train_batches(0, 12))
  assert batch['video'].shape == (12, 8, 16, 16, 3) and batch['video'].dtype == np.float32
  assert batch['label'].shape == (12,) and batch['label'].dtype == np.int32
  assert -1.0 <= batch['video'].min() < -0.7 and 0.7 < batch['video'].max() <= 1.0


def test_train_clips_are_translated_crops_of_their_videos():
  """Without jitter options a training clip is a dense 8-frame, 16x16 crop of its
  video, exactly (the default recipe's translation-only crops), with the video's label."""
  ds = _get(synthetic_config())
  reader = ds.readers['train']
  assert reader.videos.shape == (96, 12, 18, 18, 3)   # 8 + 4 frames, 16 + 2 pixels.
  step, batch = 3, next(ds.train_batches(3, 12))
  order = pipeline.train_order(0, step, 12, 96)
  np.testing.assert_array_equal(batch['label'], reader.labels[order])
  for row, i in enumerate(order):
    video = augment.normalize(reader.videos[i], (0.5,) * 3, (0.5,) * 3)
    matches = [(t, y, x) for t in range(5) for y in range(3) for x in range(3)
               if np.array_equal(batch['video'][row], video[t:t + 8, y:y + 16, x:x + 16])]
    assert len(matches) == 1, (row, matches)


def test_train_batches_resume_at_any_step():
  config = synthetic_config()
  from_zero = _get(config).train_batches(0, 12)
  batches = [next(from_zero) for _ in range(10)]     # 120 > 96: crosses an epoch.
  for step in (0, 3, 9):
    resumed = next(_get(config).train_batches(step, 12))
    np.testing.assert_array_equal(resumed['video'], batches[step]['video'])
    np.testing.assert_array_equal(resumed['label'], batches[step]['label'])
  assert not np.array_equal(batches[1]['video'], batches[2]['video'])
  other_seed = synthetic_config()
  other_seed.trainer.seed = 1
  assert not np.array_equal(next(_get(other_seed).train_batches(0, 12))['video'],
                            batches[0]['video'])


def test_batches_do_not_depend_on_workers():
  """0 workers, 2 threads, or a worker process: the same batches."""
  seq = _get(synthetic_config(num_workers=0))
  threads = _get(synthetic_config(num_workers=2, prefetch_batches=3))
  try:
    it = threads.train_batches(2, 12)
    for step in (2, 3, 4):
      np.testing.assert_array_equal(next(it)['video'], seq.train_batch(step, 12)['video'])
    for a, b in zip(threads.eval_batches('test', 16), seq.eval_batches('test', 16)):
      np.testing.assert_array_equal(a['video'], b['video'])
  finally:
    threads.close()


def test_reader_pickles_as_generation_arguments():
  """A worker process receives the generation arguments, not the arrays, and
  generates the same examples."""
  reader = _get(synthetic_config(num_train_examples=600)).readers['train']
  blob = pickle.dumps(reader)
  assert reader.videos.nbytes > 5_000_000 and len(blob) < 50_000
  clone = pickle.loads(blob)
  np.testing.assert_array_equal(clone.videos, reader.videos)
  np.testing.assert_array_equal(clone.labels, reader.labels)
  frames, label = clone.read(7, lambda n: np.array([[0, 2], [5, 1]]))
  assert frames.shape == (2, 2, 18, 18, 3) and label == reader.labels[7]
  np.testing.assert_array_equal(frames[1, 0], reader.videos[7, 5])


def test_an_epoch_sees_every_example_once():
  ds = _get(synthetic_config())
  seen = np.concatenate([pipeline.train_order(0, step, 12, 96) for step in range(8)])
  np.testing.assert_array_equal(np.sort(seen), np.arange(96))
  labels = np.concatenate([ds.train_batch(step, 12)['label'] for step in range(8)])
  np.testing.assert_array_equal(np.sort(labels), np.sort(ds.readers['train'].labels))


def test_processes_get_disjoint_eval_shards_and_the_whole_train_split():
  config = synthetic_config()
  shards = [_get(config, i, 3) for i in range(3)]
  assert [len(s.readers['validation'].keys) for s in shards] == [14, 13, 13]
  full = _get(config).readers
  np.testing.assert_array_equal(
      np.concatenate([s.readers['validation'].videos for s in shards]),
      full['validation'].videos)
  assert all(s.readers['train'].keys == full['train'].keys for s in shards)
  a, b = (next(s.train_batches(0, 4))['video'] for s in shards[:2])
  assert not np.array_equal(a, b)


def test_global_batches_do_not_depend_on_the_process_count():
  """Steps 0-7 of global batch 24 (each example in 2 rows, so 8 steps are one epoch of
  96): the same on 1, 2 and 4 processes, augmentation draws included; the epoch sees
  every example once."""
  config = synthetic_config(scale_jitter=(0.9, 1.1), color_jitter=0.2,
                            repeated_augmentation=2)
  labels = assert_same_global_batches(config, 24, 8)
  train_labels = _get(config).readers['train'].labels
  np.testing.assert_array_equal(np.sort(labels[:, ::2].ravel()), np.sort(train_labels))


@pytest.mark.parametrize('clips,crops', [(1, 1), (2, 3)])
def test_eval_batches_pad_and_mask(clips, crops):
  config = synthetic_config(num_test_clips=clips, num_test_crops=crops)
  ds = _get(config)
  batches = list(ds.eval_batches('validation', 16))
  assert len(batches) == 3                                   # 40 = 16 + 16 + 8.
  for b in batches:
    assert b['video'].shape == (16, clips * crops, 8, 16, 16, 3)
    assert b['video'].dtype == np.float32 and b['mask'].dtype == np.float32
    assert b['label'].dtype == np.int32
  np.testing.assert_array_equal(batches[-1]['mask'], [1] * 8 + [0] * 8)
  index = np.concatenate([b['index'] for b in batches])     # position in the split.
  assert batches[0]['index'].dtype == np.int32
  np.testing.assert_array_equal(index, list(range(40)) + [-1] * 8)
  labels = np.concatenate([b['label'][b['mask'] > 0] for b in batches])
  np.testing.assert_array_equal(labels, ds.readers['validation'].labels)
  again = list(ds.eval_batches('validation', 16))
  np.testing.assert_array_equal(again[0]['video'], batches[0]['video'])


def test_eval_views_are_clips_then_crops():
  ds = _get(synthetic_config(num_test_clips=2, num_test_crops=3))
  reader = ds.readers['test']
  video = reader.videos[0]                                  # [12, 18, 18, 3]
  views, label = ds.eval_views(reader, 0)
  assert views.shape == (6, 8, 16, 16, 3) and label == reader.labels[0]
  # Clip 1 starts at frame 4 (linspace(0, 12 - 8, 2)); crop 1 is the centre one.
  expected = augment.normalize(video[4:12, 1:17, 1:17], (0.5,) * 3, (0.5,) * 3)
  np.testing.assert_array_equal(views[1 * 3 + 1], expected)
  expected = augment.normalize(video[0:8, 1:17, 0:16], (0.5,) * 3, (0.5,) * 3)
  np.testing.assert_array_equal(views[0 * 3 + 0], expected)
  batch = next(ds.eval_batches('test', 4))
  np.testing.assert_array_equal(batch['video'][0], views)


def test_eval_shards_cover_the_split_once_with_equal_batch_counts():
  config = synthetic_config()
  per_process = [list(_get(config, i, 3).eval_batches('test', 8)) for i in range(3)]
  assert len({len(b) for b in per_process}) == 1           # 14, 13, 13 -> 2 batches each.
  labels = np.concatenate([b['label'][b['mask'] > 0] for bs in per_process for b in bs])
  np.testing.assert_array_equal(labels, _get(config).readers['test'].labels)
  # Each example keeps its position in the whole split, whichever process reads it.
  index = np.concatenate([b['index'][b['mask'] > 0] for bs in per_process for b in bs])
  np.testing.assert_array_equal(index, np.arange(40))
  assert all((b['index'][b['mask'] == 0] == -1).all() for bs in per_process for b in bs)


# The shared augmentation applies to the synthetic source.

@pytest.mark.parametrize('options', [
    dict(scale_jitter=(0.9, 1.33), color_jitter=0.6),
    dict(randaugment_layers=2, randaugment_magnitude=9.0),
    dict(temporal_sampling='uniform'),
    dict(color_augment_prob=0.8, color_drop_prob=0.1),
    dict(color_drop_prob=1.0),
    dict(randaugment_layers=2, randaugment_magnitude=15.0, randaugment_ops='scenic'),
    dict(randaugment_layers=4, randaugment_magnitude=7.0, randaugment_ops='timm_increasing',
         randaugment_magnitude_std=0.5),
    dict(random_erasing_prob=1.0),
    dict(crop_area_range=(0.08, 1.0), crop_aspect_range=(0.5, 2.0)),
    dict(crop_area_range=(0.08, 1.0), color_augment_prob=0.8, random_erasing_prob=0.25,
         randaugment_layers=1, randaugment_magnitude=20.0, randaugment_ops='scenic'),
])
def test_shared_augmentation_reaches_the_synthetic_source(options):
  """Every augmentation option (scale/colour jitter, both RandAugment op sets, uniform
  temporal sampling, DMVR colour augmentation and drop, random erasing, random-resized
  crop) configured on the synthetic set changes its batches, exactly as the shared
  functions compute them in the pipeline's order."""
  step, batch_size = 5, 8
  config = synthetic_config(num_workers=0, **options)
  data.validate(config.dataset)
  plain = _get(synthetic_config(num_workers=0)).train_batch(step, batch_size)
  ds = _get(config)
  assert all(getattr(ds.options, k) == (tuple(v) if isinstance(v, tuple) else v)
             for k, v in options.items())
  augmented = ds.train_batch(step, batch_size)
  np.testing.assert_array_equal(augmented['label'], plain['label'])   # same examples.
  assert augmented['video'].shape == plain['video'].shape
  changed = [not np.array_equal(a, p) for a, p in zip(augmented['video'], plain['video'])]
  assert sum(changed) >= batch_size // 2
  order = pipeline.train_order(0, step, batch_size, 96)
  for row, i in enumerate(order):
    np.testing.assert_allclose(augmented['video'][row],
                               expected_train_clip(ds, step, row, i), atol=1e-6)
  if 'color_jitter' in options:   # colour statistics move, not just positions.
    means = lambda v: _pixels(v).mean(axis=(1, 2, 3))
    assert np.abs(means(augmented['video']) - means(plain['video'])).max() > 10
  if options.get('color_drop_prob') == 1.0:   # every clip grey.
    v = augmented['video']
    np.testing.assert_allclose(v[..., 0], v[..., 1], atol=1e-5)


def test_uniform_sampling_spans_the_synthetic_video():
  """'uniform' takes one frame per segment of the whole 12-frame video, so a clip's
  first and last frames are further apart than a dense clip's 8."""
  ds = _get(synthetic_config(temporal_sampling='uniform'))
  rng = pipeline.augment_rng(0, 0, 0)
  frames = sampling.train_clip_indices('uniform', 12, 8, 1, rng)
  assert frames[-1] - frames[0] > 7
  video = ds.readers['train'].videos[pipeline.train_order(0, 0, 1, 96)[0]]
  clip = ds.train_batch(0, 1)['video'][0]
  expected = augment.normalize(video[frames], (0.5,) * 3, (0.5,) * 3)
  assert any(np.array_equal(clip, expected[:, y:y + 16, x:x + 16])
             for y in range(3) for x in range(3))


def test_synthetic_config_errors():
  with pytest.raises(errors.ConfigError, match='random_flip=True.*expected False'):
    _get(synthetic_config(random_flip=True))
  with pytest.raises(errors.ConfigError, match='video_size=12.*crop_size=16'):
    _get(synthetic_config(video_size=12))
  with pytest.raises(errors.ConfigError, match='num_test_crops=2'):
    _get(synthetic_config(num_test_crops=2))
  with pytest.raises(errors.ConfigError, match='num_classes=5'):
    _get(synthetic_config(num_classes=5))
