"""The TFRecord source: SequenceExample encoding (DMVR/Kinetics layout), random-access
record offsets, bad records, and the VideoDataset contract on shards written in tmp_path.
"""
import json
import os

import numpy as np
import pytest

from vivit_jax import data, errors
from vivit_jax.data import example_proto, tfrecord
from video_helpers import frame_numbers, make_config, make_video
from synthetic_helpers import assert_same_global_batches

JPEG_TOLERANCE = 2.0   # mean |error| in pixel levels of JPEG q90 4:4:4 on these frames.


def test_encode_parse_round_trip():
  video = make_video(num_frames=6, label=2)
  record = tfrecord.encode_example(video, 2, 'eel', filename='a.mp4')
  encoded, label, name = tfrecord.parse_example(record)
  assert len(encoded) == 6 and label == 2 and name == 'eel'
  frames = tfrecord.decode_jpegs(encoded, np.array([[5, 0], [1, 1]]))
  assert frames.shape == (2, 2, 32, 32, 3) and frames.dtype == np.uint8
  np.testing.assert_array_equal(frame_numbers(frames), [[5, 0], [1, 1]])
  assert np.abs(frames[0, 0].astype(int) - video[5]).mean() < JPEG_TOLERANCE


def test_layout_matches_dmvr_parsing():
  """The record parses with the tf.io feature spec a DMVR/Scenic reader uses."""
  import tensorflow as tf
  record = tfrecord.encode_example(make_video(num_frames=3), 1, 'dog')
  context, sequence = tf.io.parse_single_sequence_example(
      record,
      context_features={'clip/label/index': tf.io.FixedLenFeature([], tf.int64),
                        'clip/label/string': tf.io.FixedLenFeature([], tf.string)},
      sequence_features={'image/encoded': tf.io.FixedLenSequenceFeature([], tf.string)})
  assert int(context['clip/label/index']) == 1
  assert context['clip/label/string'].numpy() == b'dog'
  frames = tf.map_fn(tf.io.decode_jpeg, sequence['image/encoded'], dtype=tf.uint8)
  assert frames.shape == (3, 32, 32, 3)


def test_record_offsets_match_tf_data(tmp_path):
  import tensorflow as tf
  path = str(tmp_path / 'x.tfrecord')
  records = [b'a' * 5, b'', os.urandom(1000)]
  tfrecord.write_records(path, records)
  offsets = tfrecord.record_offsets(path)
  assert offsets.shape == (3, 2)
  with open(path, 'rb') as f:
    blob = f.read()
  assert [blob[o:o + n] for o, n in offsets] == records
  assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == records
  # A truncated file keeps its complete records.
  with open(path, 'wb') as f:
    f.write(blob[:-10])
  assert len(tfrecord.record_offsets(path)) == 2


@pytest.fixture(scope='module')
def shard_dir(tmp_path_factory):
  """train: two shards, 9 good records (3 per class) and 3 bad ones (garbage, label 7,
  a corrupt JPEG); validation: one shard of 3 good records and a garbage one."""
  root = tmp_path_factory.mktemp('shards')
  names = ['cat', 'dog', 'eel']
  good = [tfrecord.encode_example(make_video(label=i % 3), i % 3, names[i % 3])
          for i in range(9)]
  ex = example_proto.SequenceExample.FromString(good[0])
  ex.feature_lists.feature_list['image/encoded'].feature[2].bytes_list.value[0] = (
      b'\xff\xd8\xff' + b'\x00' * 50)
  bad = [b'garbage', tfrecord.encode_example(make_video(num_frames=2), 7),
         ex.SerializeToString()]
  tfrecord.write_records(str(root / 'train.tfrecord-00000-of-00002'), good[:5] + bad[:1])
  tfrecord.write_records(str(root / 'train.tfrecord-00001-of-00002'), good[5:] + bad[1:])
  tfrecord.write_records(str(root / 'validation.tfrecord-00000-of-00001'),
                         good[:2] + [b'garbage'] + good[2:3])
  tfrecord.write_label_names(str(root), names)
  return root


def test_tfrecord_dataset(shard_dir):
  c = make_config(shard_dir)
  c.dataset.name = 'tfrecord'
  ds = data.get_dataset(c, process_index=0, process_count=1)
  assert ds.label_names == ['cat', 'dog', 'eel']
  assert ds.num_examples('train') == 12 and ds.num_examples('validation') == 4
  batches = ds.train_batches(0, 12)
  batch = next(batches)
  assert batch['video'].shape == (12, 4, 16, 16, 3)
  pixels = (batch['video'] * 0.5 + 0.5) * 255
  np.testing.assert_allclose(np.diff(pixels[..., 0].mean(axis=(2, 3)), axis=1), 30, atol=3)
  np.testing.assert_allclose(pixels[..., 1].mean(axis=(1, 2, 3)), 80 * batch['label'],
                             atol=3)
  # The three bad records were read (one epoch), replaced and counted.
  assert ds.stats()['data_failures_train'] >= 3
  reasons = ' '.join(ds.failures.bad_keys.values())
  assert 'not a SequenceExample' in reasons and "label '7' is not a class" in reasons
  for _ in range(8):   # the corrupt frame fails once a clip's frames include it.
    if 'bad frame' in reasons:
      break
    next(batches)
    reasons = ' '.join(ds.failures.bad_keys.values())
  assert 'bad frame' in reasons
  # Deterministic with threads, from any step.
  c.dataset.num_workers = 0
  seq = data.get_dataset(c, process_index=0, process_count=1)
  np.testing.assert_array_equal(seq.train_batch(0, 12)['video'], batch['video'])
  evals = list(ds.eval_batches('validation', 3))
  np.testing.assert_array_equal(np.concatenate([b['mask'] for b in evals]),
                                [1, 1, 0, 1, 0, 0])
  np.testing.assert_array_equal(evals[1]['label'][0], 2)


def test_tfrecord_sharding_and_missing_split(shard_dir, tmp_path):
  c = make_config(shard_dir)
  c.dataset.name = 'tfrecord'
  parts = [data.get_dataset(c, process_index=p, process_count=3) for p in range(3)]
  keys = [set(p.readers['validation'].keys) for p in parts]
  assert [len(k) for k in keys] == [2, 1, 1] and len(set.union(*keys)) == 4
  assert all(len(p.readers['train'].keys) == 12 for p in parts)    # all: see pipeline.
  c.dataset.data_dir = str(tmp_path)
  with pytest.raises(errors.DataFailureError, match="'train' split has no data.*splits "
                     r"with shards: \[\]"):
    data.get_dataset(c, process_index=0, process_count=1)


def test_label_names_default_to_indices(tmp_path):
  tfrecord.write_records(str(tmp_path / 'train.tfrecord'),
                         [tfrecord.encode_example(make_video(num_frames=4), 1)])
  c = make_config(tmp_path, num_classes=2)
  c.dataset.name = 'tfrecord'
  ds = data.get_dataset(c, process_index=0, process_count=1)
  assert ds.label_names == ['0', '1']
  assert json.loads(json.dumps(ds.label_names)) == ['0', '1']
  assert next(ds.train_batches(0, 2))['label'].tolist() == [1, 1]


def test_example_protos_are_tensorflows_wire_format():
  """Our SequenceExample/Example bytes are TensorFlow's (same deterministic bytes both
  ways, every feature kind), so shards from TF pipelines read here and vice versa."""
  from tensorflow.core.example import example_pb2
  video = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
  ours = tfrecord.encode_example(video, 2, 'dog')
  theirs = example_pb2.SequenceExample.FromString(ours)
  assert theirs.context.feature[tfrecord.LABEL_KEY].int64_list.value == [2]
  assert len(theirs.feature_lists.feature_list[tfrecord.FRAMES_KEY].feature) == 3
  assert theirs.SerializeToString(deterministic=True) == (
      example_proto.SequenceExample.FromString(ours).SerializeToString(deterministic=True))
  e = example_pb2.Example()
  e.features.feature['f'].float_list.value.extend([0.5, -1.0])
  e.features.feature['b'].bytes_list.value.append(b'\x00\xff')
  e.features.feature['i'].int64_list.value.extend([-3, 2**40])
  back = example_proto.Example.FromString(e.SerializeToString())
  assert back.SerializeToString(deterministic=True) == e.SerializeToString(
      deterministic=True)
  assert back.features.feature['i'].int64_list.value == [-3, 2**40]
  assert back.features.feature['f'].WhichOneof('kind') == 'float_list'


def test_reading_shards_does_not_import_tensorflow(tmp_path):
  """Decoding workers read shards without TensorFlow (8 s and 650 MB per process)."""
  import subprocess
  import sys
  path = str(tmp_path / 'x.tfrecord')
  video = np.full((2, 8, 8, 3), 100, np.uint8)
  tfrecord.write_records(path, [tfrecord.encode_example(video, 1)])
  code = ('import sys, numpy as np\n'
          'from vivit_jax.data import tfrecord\n'
          f'table = tfrecord.record_table([{path!r}])\n'
          f'with open({path!r}, "rb") as f:\n'
          '  f.seek(int(table[0, 1])); record = f.read(int(table[0, 2]))\n'
          'frames, label = tfrecord.decode_record(record, np.arange, ["a", "b"])\n'
          'assert frames.shape == (2, 8, 8, 3) and label == 1, (frames.shape, label)\n'
          'assert "tensorflow" not in sys.modules\n')
  subprocess.run([sys.executable, '-c', code], check=True, timeout=120)


def test_global_batches_do_not_depend_on_the_process_count(shard_dir):
  """Shards with 3 bad records of 12: global batch 8 over 6 steps (4 epochs), the same
  read by 1, 2 or 4 processes (bad records replaced by the same redraws)."""
  c = make_config(shard_dir, num_workers=0)
  c.dataset.name = 'tfrecord'
  assert_same_global_batches(c, 8, 6)
