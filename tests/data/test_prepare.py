"""`python -m vivit_jax.data.prepare`: video files -> TFRecord shards -> the same frames
(up to JPEG loss), bad files skipped with reasons, resumable, parallel."""
import json
import os

import numpy as np
import pytest

from vivit_jax import data
from vivit_jax.data import example_proto, prepare, tfrecord, video_files
from video_helpers import CLASSES, make_config, make_video, write_bad_files

# JPEG q90 with 4:4:4 chroma on top of H.264 decoding: per-frame mean |error| and the
# largest error over all pixels, in pixel levels (0-255).
MEAN_TOLERANCE, MAX_TOLERANCE = 1.5, 24
SYNTHETIC_TOLERANCE = 6.0   # mean |error| on the noisy synthetic frames (see below).


def parsed_records(path):
  """[(frames' JPEG bytes, label, label name)] of a shard (protobuf map fields may
  serialize in any order, so records are compared parsed)."""
  blob = open(path, 'rb').read()
  return [tfrecord.parse_example(blob[o:o + n]) for o, n in tfrecord.record_offsets(path)]


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  """6 good videos of 16 frames (2 per class, lengths 12-16) and the 4 bad files in
  class folders, plus an index with a missing file and an unknown label."""
  root = tmp_path_factory.mktemp('prepare_videos')
  for label, name in enumerate(CLASSES):
    (root / name).mkdir()
    for i in range(2):
      video_files.write_video(str(root / name / f'{i}.mp4'),
                              make_video(num_frames=12 + 2 * i + label, label=label))
  write_bad_files(str(root / 'cat'))
  rows = [f'{n}/{i}.mp4,{n}' for n in CLASSES for i in range(2)]
  rows += ['cat/corrupt.mp4,cat', 'gone.mp4,dog', 'dog/0.mp4,fox']
  (root / 'train.csv').write_text('\n'.join(rows) + '\n')
  return root


def test_round_trip_same_frames(videos, tmp_path):
  summary = prepare.prepare(str(videos / 'train.csv'), str(tmp_path), 'train',
                            num_shards=2, workers=1, label_names=CLASSES)
  assert summary['listed'] == 9 and summary['written'] == 6
  assert summary['num_skipped'] == 3 and summary['shards_written'] == 2
  reasons = dict(summary['skipped'])
  assert 'InvalidDataError' in reasons[str(videos / 'cat' / 'corrupt.mp4')]
  assert reasons[str(videos / 'gone.mp4')] == 'file does not exist'
  assert reasons[str(videos / 'dog' / '0.mp4')].startswith("label 'fox' is not a class")
  on_disk = json.load(open(tmp_path / 'train.summary.json'))
  assert on_disk['written'] == 6 and len(on_disk['skipped']) == 3
  assert json.load(open(tmp_path / 'label_names.json')) == CLASSES
  # Every record holds all frames of its video, in order, with its label.
  files = tfrecord.find_shards(str(tmp_path), 'train')
  assert [os.path.basename(f) for f in files] == [
      'train.tfrecord-00000-of-00002', 'train.tfrecord-00001-of-00002']
  seen = []
  for f in files:
    blob = open(f, 'rb').read()
    for offset, length in tfrecord.record_offsets(f):
      encoded, label, name = tfrecord.parse_example(blob[offset:offset + length])
      ex = example_proto.SequenceExample.FromString(blob[offset:offset + length])
      source = ex.context.feature['video/filename'].bytes_list.value[0].decode()
      original = video_files.decode_video(source, lambda n: np.arange(n))
      stored = tfrecord.decode_jpegs(encoded, np.arange(len(encoded)))
      assert stored.shape == original.shape and name == CLASSES[label]
      error = np.abs(stored.astype(int) - original)
      assert error.mean(axis=(1, 2, 3)).max() < MEAN_TOLERANCE
      assert error.max() <= MAX_TOLERANCE
      seen.append((os.path.relpath(source, videos), label))
  assert sorted(seen) == sorted((f'{n}/{i}.mp4', k) for k, n in enumerate(CLASSES)
                                for i in range(2))


def test_resumable_and_parallel(videos, tmp_path):
  first = prepare.prepare(str(videos), str(tmp_path / 'a'), 'train', num_shards=3,
                          workers=1)
  assert first['written'] == 6 and first['num_skipped'] == 4      # the four bad files.
  shards = [prepare.shard_path(str(tmp_path / 'a'), 'train', k, 3) for k in range(3)]
  records = [parsed_records(s) for s in shards]
  assert sum(len(r) for r in records) == 6
  os.remove(shards[1])
  again = prepare.prepare(str(videos), str(tmp_path / 'a'), 'train', num_shards=3,
                          workers=1)
  assert again['shards_written'] == 1 and again['shards_reused'] == 2
  assert again['written'] == 6 and again['num_skipped'] == 4
  assert [parsed_records(s) for s in shards] == records
  # Two worker processes write the same shards.
  par = prepare.prepare(str(videos), str(tmp_path / 'b'), 'train', num_shards=3,
                        workers=2)
  assert par['shards_written'] == 3
  assert [parsed_records(prepare.shard_path(str(tmp_path / 'b'), 'train', k, 3))
          for k in range(3)] == records


def test_shards_train_like_the_files(videos, tmp_path):
  """The tfrecord dataset over prepared shards gives the clips of the video-file
  dataset (same examples in the same order), within the JPEG tolerance."""
  prepare.prepare(str(videos), str(tmp_path), 'train', num_shards=1, workers=1)
  c_files = make_config(videos.parent, max_failure_fraction=0.5)
  c_files.dataset.splits.train = str(videos)
  c_shards = make_config(tmp_path)
  c_shards.dataset.name = 'tfrecord'
  from_files = data.get_dataset(c_files, process_index=0, process_count=1)
  from_shards = data.get_dataset(c_shards, process_index=0, process_count=1)
  assert from_shards.label_names == from_files.label_names == CLASSES
  # Evaluate both on 'train' (files: 10 listed incl. 4 bad; shards: the 6 good).
  def good_views(ds):
    batches = list(ds.eval_batches('train', 4))
    video = np.concatenate([b['video'] for b in batches])
    mask = np.concatenate([b['mask'] for b in batches]) > 0
    label = np.concatenate([b['label'] for b in batches])
    return video[mask], label[mask]
  files_video, files_label = good_views(from_files)
  shards_video, shards_label = good_views(from_shards)
  np.testing.assert_array_equal(files_label, shards_label)
  diff = np.abs(files_video - shards_video) * 0.5 * 255       # back to pixel levels.
  assert diff.mean() < MEAN_TOLERANCE


def test_export_synthetic_same_views_from_every_source(tmp_path):
  """The synthetic set written as mp4 files and as shards gives the synthetic
  dataset's test views back (shards: same order; files: by class folder)."""
  from vivit_jax.data import export
  c = make_config(tmp_path)
  d = c.dataset
  d.name, d.num_frames, d.crop_size, d.stride, d.num_classes = 'synthetic', 4, 8, 1, 10
  d.num_train_examples, d.num_eval_examples = 12, 6
  counts = export.export(c, str(tmp_path), workers=2)
  assert counts == {'train': 12, 'validation': 6, 'test': 6}
  def views(name, data_dir):
    c.dataset.name, c.dataset.data_dir = name, data_dir
    ds = data.get_dataset(c, process_index=0, process_count=1)
    batch = next(ds.eval_batches('validation', 6))
    return ds, (batch['video'] * 0.5 + 0.5) * 255, batch['label']
  synth, ref, ref_label = views('synthetic', '')
  shards, from_shards, shard_label = views('tfrecord', str(tmp_path / 'shards'))
  files, from_files, file_label = views('video_files', str(tmp_path / 'videos'))
  assert shards.label_names == files.label_names == synth.label_names
  np.testing.assert_array_equal(shard_label, ref_label)
  # The synthetic frames carry per-pixel noise, which JPEG q95 and H.264 crf 12 lose
  # in part: about 2-4 levels of mean error on these 10x10 frames.
  assert np.abs(from_shards - ref).mean() < SYNTHETIC_TOLERANCE
  folder = np.array(synth.label_names)[ref_label]
  order = np.argsort(folder, kind='stable')           # class folders A-Z, then index.
  np.testing.assert_array_equal(file_label, ref_label[order])
  assert np.abs(from_files - ref[order]).mean() < SYNTHETIC_TOLERANCE
  assert np.abs(from_files - ref[order[::-1]]).mean() > 3 * SYNTHETIC_TOLERANCE


def test_export_cli_takes_config_overrides(tmp_path):
  """`python -m vivit_jax.data.export` reads --config=FILE:arg and --config.x=y like main."""
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = subprocess.run(
      [sys.executable, '-m', 'vivit_jax.data.export',
       '--config=configs/synthetic/vivit_model1.py:tiny',
       '--config.dataset.num_train_examples=5', '--config.dataset.num_eval_examples=3',
       '--formats=tfrecord', f'--out_dir={tmp_path}'],
      cwd=repo, capture_output=True, text=True, timeout=300, check=True)
  assert "{'train': 5, 'validation': 3, 'test': 3}" in result.stdout
  shards = tmp_path / 'shards'
  assert sum(len(tfrecord.record_offsets(str(path)))
             for path in shards.glob('train.tfrecord-*')) == 5
  assert not (tmp_path / 'videos').exists()


def test_prepare_cli_bad_index_is_one_error_line(tmp_path):
  """A missing --index ends `python -m vivit_jax.data.prepare` with one line on stderr
  naming it, exit status 2 and no traceback; nothing is written."""
  import subprocess
  import sys
  missing = str(tmp_path / 'no_such' / 'train.csv')
  result = subprocess.run(
      [sys.executable, '-m', 'vivit_jax.data.prepare', f'--index={missing}',
       f'--out_dir={tmp_path / "out"}', '--workers=1'],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('error: Video index ') and missing in lines[0]
  assert 'Traceback' not in result.stderr and result.stdout == ''
  assert not (tmp_path / 'out').exists()
