"""The video-file source: PyAV decoding and seeking, indexes, bad files, and the
VideoDataset contract (determinism, workers, eval masks, process sharding).

Videos are tiny (16 frames of 32x32) and generated in tmp_path; frame t of a video
has red = 15 t, so decoded frame positions can be read back from the pixels.
"""
import concurrent.futures

import numpy as np
import pytest

from vivit_jax import data, errors
from vivit_jax.data import video_files

from synthetic_helpers import assert_same_global_batches
from video_helpers import (CLASSES, SIZE, frame_numbers, make_config, make_video,
                           write_bad_files)


@pytest.fixture(scope='module')
def video_dir(tmp_path_factory):
  """train/ and validation/ class folders: 4 good videos per class in train (plus four
  bad files in 'cat'), 2 per class in validation (plus a corrupt one)."""
  root = tmp_path_factory.mktemp('videos')
  for split, per_class in (('train', 4), ('validation', 2)):
    for label, name in enumerate(CLASSES):
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(per_class):
        video_files.write_video(str(folder / f'{i}.mp4'), make_video(label=label))
  write_bad_files(str(root / 'train' / 'cat'))
  with open(root / 'validation' / 'dog' / 'zz_corrupt.mp4', 'wb') as f:
    f.write(b'not a video')
  return root


# Decoding.

def test_decode_positions_and_seek(tmp_path):
  path = str(tmp_path / 'long.mp4')
  video = make_video(num_frames=64, step=4)
  video_files.write_video(path, video, gop=8)
  wanted = np.array([[40, 42, 44], [3, 60, 63]])
  out = video_files.decode_video(path, lambda n: wanted)
  assert out.shape == (2, 3, SIZE, SIZE, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(frame_numbers(out, step=4), wanted)
  # Values: close to the written frames (H.264 at crf 12, 4:4:4).
  ref = video[[40, 42, 44]]
  assert np.abs(out[0].astype(int) - ref).mean() < 2.0


def test_reused_colour_converter_gives_pyav_frames_for_any_size_and_format(tmp_path):
  """decode_video keeps one swscale converter per thread across videos; alternating
  sizes and pixel formats, in two threads, must still give PyAV's own RGB frames."""
  import av
  paths = []
  for i, (h, w, pix_fmt) in enumerate([(32, 32, 'yuv444p'), (24, 40, 'yuv420p'),
                                       (32, 32, 'yuv420p'), (18, 20, 'yuv444p')]):
    paths.append(str(tmp_path / f'{i}.mp4'))
    video_files.write_video(paths[-1], make_video(8, h, w, label=i % 3), pix_fmt=pix_fmt)
  expected = []
  for path in paths:
    with av.open(path) as container:
      expected.append(np.stack([f.to_ndarray(format='rgb24')
                                for f in container.decode(video=0)]))
  everything = lambda n: np.arange(n)
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    decoded = list(pool.map(lambda p: video_files.decode_video(p, everything), paths * 3))
  for i, frames in enumerate(decoded):
    np.testing.assert_array_equal(frames, expected[i % len(paths)])


def test_decode_reports_length_to_chooser(tmp_path):
  path = str(tmp_path / 'v.mp4')
  video_files.write_video(path, make_video(num_frames=10))
  seen = []
  out = video_files.decode_video(path, lambda n: seen.append(n) or np.arange(n))
  assert seen == [10]
  np.testing.assert_array_equal(frame_numbers(out), np.arange(10))


def test_truncated_streamable_file_uses_the_frames_that_decode(tmp_path):
  """A .mkv cut in the middle claims its full duration but decodes fewer frames: the
  clip is chosen again from the frames that are really there."""
  path = str(tmp_path / 'v.mkv')
  video_files.write_video(path, make_video(num_frames=16), gop=1)
  with open(path, 'rb') as f:
    payload = f.read()
  cut = str(tmp_path / 'cut.mkv')
  with open(cut, 'wb') as f:
    f.write(payload[:len(payload) * 2 // 3])
  lengths = []
  out = video_files.decode_video(cut, lambda n: lengths.append(n) or np.arange(n))
  assert 3 <= lengths[-1] < 16 and out.shape[0] == lengths[-1]
  np.testing.assert_array_equal(frame_numbers(out), np.arange(lengths[-1]))


@pytest.mark.parametrize('name', ['corrupt.mp4', 'empty.mp4', 'truncated.mp4',
                                  'audio_only.m4a', 'missing.mp4'])
def test_bad_files_raise_decode_error_with_path(tmp_path, name):
  write_bad_files(str(tmp_path))
  path = str(tmp_path / name)
  with pytest.raises(errors.DecodeError, match=name):
    video_files.decode_video(path, lambda n: np.arange(4))


# Indexes.

def test_csv_index_relative_paths_missing_files_and_unknown_labels(tmp_path):
  for i in range(4):
    video_files.write_video(str(tmp_path / f'{i}.mp4'), make_video(label=i % 2))
  (tmp_path / 'train.csv').write_text(
      'path,label\n0.mp4,walk\n1.mp4,run\n2.mp4,walk\n3.mp4,run\ngone.mp4,run\n')
  (tmp_path / 'validation.tsv').write_text('0.mp4\twalk\n1.mp4\tswim\n')
  c = make_config(tmp_path, num_classes=2)
  ds = data.get_dataset(c, process_index=0, process_count=1)
  assert ds.label_names == ['run', 'walk']                # sorted training names.
  assert ds.num_examples('train') == 4 and ds.num_examples('validation') == 1
  assert ds.stats()['index_skipped_train'] == 1           # gone.mp4
  assert ds.stats()['index_skipped_validation'] == 1      # unknown label 'swim'
  np.testing.assert_array_equal(ds.readers['train'].labels, [1, 0, 1, 0])
  # Too many dropped rows is a clear error.
  c.dataset.max_failure_fraction = 0.1
  with pytest.raises(errors.DataFailureError, match='index were dropped'):
    data.get_dataset(c, process_index=0, process_count=1)


def test_integer_labels_with_label_names_file(tmp_path):
  video_files.write_video(str(tmp_path / 'a.mp4'), make_video())
  (tmp_path / 'train.txt').write_text('a.mp4 2\na.mp4 0\n')
  (tmp_path / 'names.txt').write_text('x\ny\nz\n')
  ds = data.get_dataset(make_config(tmp_path, label_names=str(tmp_path / 'names.txt')),
                        process_index=0, process_count=1)
  assert ds.label_names == ['x', 'y', 'z']
  np.testing.assert_array_equal(ds.readers['train'].labels, [2, 0])


def test_missing_data_dir_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='data_dir'):
    data.get_dataset(make_config(''), process_index=0, process_count=1)


# The dataset contract.

def test_folder_dataset_train_batches(video_dir):
  ds = data.get_dataset(make_config(video_dir), process_index=0, process_count=1)
  assert ds.label_names == CLASSES and ds.num_classes == 3
  assert ds.num_examples('train') == 16          # 12 videos + 4 bad files listed.
  batch = next(ds.train_batches(0, 8))
  assert batch['video'].shape == (8, 4, 16, 16, 3) and batch['video'].dtype == np.float32
  assert batch['label'].shape == (8,) and batch['label'].dtype == np.int32
  assert -1.0 <= batch['video'].min() and batch['video'].max() <= 1.0
  # Each clip: 4 frames at stride 2 (red steps of 30 per frame), green from its label.
  pixels = (batch['video'] * 0.5 + 0.5) * 255
  red = pixels[..., 0].mean(axis=(2, 3))
  np.testing.assert_allclose(np.diff(red, axis=1), 30, atol=3)
  np.testing.assert_allclose(pixels[..., 1].mean(axis=(1, 2, 3)), 80 * batch['label'],
                             atol=3)


def test_worker_processes_give_the_same_batches_and_failure_counts(video_dir):
  """dataset.worker_type='process': the batches, masks, failure counts and bad paths of
  decoding in the main thread (the workers' failure events are replayed in order)."""
  get = lambda **kw: data.get_dataset(make_config(video_dir, **kw), process_index=0,
                                      process_count=1)
  seq = get(num_workers=0)
  proc = get(num_workers=2, worker_type='process')
  try:
    for ds in (seq, proc):
      train = ds.train_batches(1, 6)
      ds.got = [next(train) for _ in range(4)]
      ds.got += list(ds.eval_batches('validation', 4))
    assert len(seq.got) == 4 + 2
    for ours, theirs in zip(proc.got, seq.got):
      assert ours.keys() == theirs.keys()
      for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key])
    assert seq.stats()['data_failures_validation'] == 1   # the corrupt validation file.
    assert proc.stats() == seq.stats()
    assert proc.failures.bad_keys == seq.failures.bad_keys
    assert isinstance(proc._executor(), concurrent.futures.ProcessPoolExecutor)
  finally:
    proc.close()


def test_worker_type_is_checked(video_dir):
  with pytest.raises(errors.ConfigError, match=r"config\.dataset\.worker_type='fork'"):
    data.validate(make_config(video_dir, worker_type='fork').dataset)


def test_train_batches_deterministic_across_workers_and_resume(video_dir):
  """Same batches with 0 or 3 workers, from step 0 or resumed at step 2; bad files in
  the batches are replaced, counted and never crash the run."""
  seq = data.get_dataset(make_config(video_dir, num_workers=0), process_index=0,
                         process_count=1)
  par = data.get_dataset(make_config(video_dir, num_workers=3, prefetch_batches=3),
                         process_index=0, process_count=1)
  it = seq.train_batches(0, 6)
  first = [next(it) for _ in range(4)]
  resumed = par.train_batches(2, 6)
  for step in (2, 3):
    again = next(resumed)
    np.testing.assert_array_equal(again['video'], first[step]['video'])
    np.testing.assert_array_equal(again['label'], first[step]['label'])
  np.testing.assert_array_equal(par.train_batch(1, 6)['video'], first[1]['video'])
  assert not np.array_equal(first[0]['video'], first[1]['video'])
  # 24 rows from 16 listed files (4 bad) in one epoch and a half: bad reads happened.
  stats = seq.stats()
  assert stats['data_failures_train'] >= 4
  assert set(seq.failures.bad_keys) == {
      str(video_dir / 'train' / 'cat' / n)
      for n in ('corrupt.mp4', 'empty.mp4', 'truncated.mp4', 'audio_only.m4a')}


def test_too_many_failures_stop_with_clear_error(video_dir):
  ds = data.get_dataset(make_config(video_dir, max_failure_fraction=0.0),
                        process_index=0, process_count=1)
  with pytest.raises(errors.DataFailureError, match='max_failure_fraction=0.0'):
    for _ in ds.train_batches(0, 8):
      pass


def test_eval_batches_multi_view_and_masks(video_dir):
  c = make_config(video_dir, num_test_clips=2, num_test_crops=3, min_resize=20)
  ds = data.get_dataset(c, process_index=0, process_count=1)
  batches = list(ds.eval_batches('validation', 4))
  assert len(batches) == 2                              # 7 listed -> 2 batches of 4.
  video = np.concatenate([b['video'] for b in batches])
  mask = np.concatenate([b['mask'] for b in batches])
  label = np.concatenate([b['label'] for b in batches])
  assert video.shape == (8, 6, 4, 16, 16, 3)
  # Sorted folders: cat 0, 1; dog 0, 1, zz_corrupt (mask 0); eel 0, 1; padding.
  np.testing.assert_array_equal(mask, [1, 1, 1, 1, 0, 1, 1, 0])
  np.testing.assert_array_equal(label[:7], [0, 0, 1, 1, 0, 2, 2])   # failed: label 0.
  assert ds.stats()['data_failures_validation'] == 1
  # Clip-major views: clips start at frames 0 and 9 (span 7 of 16), 3 crops each.
  pixels = (video[0] * 0.5 + 0.5) * 255
  np.testing.assert_allclose(pixels[:, 0, ..., 0].mean(axis=(1, 2)),
                             [0, 0, 0, 135, 135, 135], atol=3)
  # The three crops go left to right (blue ramps with x).
  blue = pixels[:3, ..., 2].mean(axis=(1, 2, 3))
  assert blue[0] < blue[1] < blue[2]


def test_process_sharding(video_dir):
  shards = [data.get_dataset(make_config(video_dir), process_index=p, process_count=2)
            for p in range(2)]
  keys = [set(s.readers['validation'].keys) for s in shards]
  assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == 7
  assert all(s.num_examples('validation') == 7 for s in shards)
  b0, b1 = (next(s.train_batches(0, 4)) for s in shards)
  assert not np.array_equal(b0['video'], b1['video'])
  assert [len(list(s.eval_batches('validation', 2))) for s in shards] == [2, 2]


def test_global_batches_do_not_depend_on_the_process_count(video_dir):
  """A class folder with 4 bad files: global batch 8 over 4 steps, the same read by 1,
  2 or 4 processes (bad files replaced by the same redraws)."""
  assert_same_global_batches(make_config(video_dir, num_workers=0), 8, 4)


def test_a_known_bad_file_is_not_decoded_again(video_dir, monkeypatch):
  ds = data.get_dataset(make_config(video_dir, num_workers=0), process_index=0,
                        process_count=1)
  n = ds.num_examples('train')
  first = [ds.train_batch(s, 4) for s in range(-(-n // 4))]      # one epoch.
  bad = set(ds.failures.bad_keys)
  assert len(bad) == 4
  decoded = []
  real = video_files.decode_video
  monkeypatch.setattr(video_files, 'decode_video',
                      lambda path, choose: decoded.append(path) or real(path, choose))
  again = data.get_dataset(make_config(video_dir, num_workers=0), process_index=0,
                           process_count=1)
  again.failures.bad_keys.update(ds.failures.bad_keys)
  second = [again.train_batch(s, 4) for s in range(len(first))]
  assert decoded and not bad & set(decoded)
  for a, b in zip(first, second):      # the slots are filled as when they were decoded.
    np.testing.assert_array_equal(a['video'], b['video'])
