"""Label groups (verb/noun) and multi-label data from every decoded source: video-file
indexes, TFRecord shards (and `prepare`), TFDS. Videos are tiny; each one's green
channel is 80 * its verb (or first class), so batches can be checked against pixels."""
import json
import logging
import re

import numpy as np
import pytest

from vivit_jax import data, errors
from vivit_jax.data import example_proto, prepare, tfrecord, video_files

from video_helpers import make_config, make_video

VERBS, NOUNS = ['open', 'close', 'cut'], ['door', 'knife']
GROUPS = dict(label_groups=(('verb', 3), ('noun', 2)), num_classes=5)
MULTI = dict(multi_label=True, num_classes=3)
NAMES = ['cat', 'dog', 'eel']


def _get(config):
  return data.get_dataset(config, process_index=0, process_count=1)


def _labels_in_order(ds, split):
  """The labels of one pass over `split` (padding dropped) and the padding rows'."""
  batches = list(ds.eval_batches(split, 3))
  labels = np.concatenate([b['label'] for b in batches])
  mask = np.concatenate([b['mask'] for b in batches]).astype(bool)
  return labels[mask], labels[~mask]


def _index(folder, name, text, clips):
  """Writes folder/name with `text`, 'v<i>.mp4' rows pointing at the shared clips."""
  (folder / name).write_text(re.sub(r'\bv(\d)\.mp4', lambda m: str(clips / m.group(0)),
                                    text))


def _green(batch):
  return np.round((batch['video'][..., 1] * 0.5 + 0.5) * 255 / 80).mean(axis=(1, 2, 3))


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
  """v0..v5.mp4 (8 frames of 32x32), the green of v<i> = 80 * (i % 3)."""
  root = tmp_path_factory.mktemp('label_videos')
  for i in range(6):
    video_files.write_video(str(root / f'v{i}.mp4'), make_video(num_frames=8, label=i % 3))
  return root


# Video-file indexes.

def test_group_columns_by_header_names_and_bad_rows(clips, tmp_path, caplog):
  """A header names the groups' columns (here noun first); names per group (a list
  and a .txt file) or indices; rows with a wrong or missing label are skipped, logged
  with the path and the value, and counted."""
  (tmp_path / 'verbs.txt').write_text('\n'.join(VERBS) + '\n')
  _index(tmp_path, 'train.csv',
         'path,noun,verb\n'
         'v0.mp4,door,open\nv1.mp4,knife,1\nv2.mp4,1,cut\nv3.mp4,door,open\n'
         'v4.mp4,fork,close\nv5.mp4,knife,\n', clips)
  c = make_config(tmp_path, **GROUPS, label_names={'verb': str(tmp_path / 'verbs.txt'),
                                                   'noun': NOUNS})
  c.dataset.splits.validation = 'train'
  with caplog.at_level(logging.WARNING):
    ds = _get(c)
  assert ds.label_names == ['verb:open', 'verb:close', 'verb:cut', 'noun:door',
                            'noun:knife']
  assert ds.num_classes == 5 and ds.stats()['index_skipped_train'] == 2
  log = caplog.text
  assert "v4.mp4: noun label 'fork' is not a class" in log
  assert "v5.mp4: verb label '' is not a class" in log
  labels, padding = _labels_in_order(ds, 'validation')
  assert labels.dtype == np.int32
  np.testing.assert_array_equal(labels, [[0, 0], [1, 1], [2, 1], [0, 0]])
  np.testing.assert_array_equal(padding, [[0, 0]] * 2)        # 4 rows in batches of 3.
  batch = ds.train_batch(0, 4)
  np.testing.assert_allclose(_green(batch), batch['label'][:, 0], atol=0.05)
  ds.close()


def test_group_columns_without_header_follow_label_groups(clips, tmp_path):
  _index(tmp_path, 'train.txt', 'v0.mp4 0 1\nv1.mp4 1 0\nv2.mp4 2\nv3.mp4 3 0\n', clips)
  ds = _get(make_config(tmp_path, **GROUPS))
  assert ds.label_names[:4] == ['verb:0', 'verb:1', 'verb:2', 'noun:0']
  np.testing.assert_array_equal(ds.readers['train'].labels, [[0, 1], [1, 0]])
  assert ds.stats()['index_skipped_train'] == 2        # a missing noun; verb 3 of 3.


def test_multi_label_lists(clips, tmp_path, caplog):
  _index(tmp_path, 'train.tsv',
         'path\tlabels\nv0.mp4\tcat;eel\nv1.mp4\t1\nv2.mp4\t\nv3.mp4\tdog;2;cat\n'
         'v4.mp4\tcat;fox\n', clips)
  with caplog.at_level(logging.WARNING):
    ds = _get(make_config(tmp_path, **MULTI, label_names=NAMES))
  assert ds.label_names == NAMES and ds.stats()['index_skipped_train'] == 1
  assert "v4.mp4: label 'fox' is not a class" in caplog.text
  batch = ds.train_batch(0, 4)
  assert batch['label'].dtype == np.float32 and batch['label'].shape == (4, 3)
  got = {tuple(row) for row in batch['label'].tolist()}
  assert got == {(1, 0, 1), (0, 1, 0), (0, 0, 0), (1, 1, 1)}    # one epoch of 4.


def test_video_file_label_errors(clips, tmp_path):
  (tmp_path / 'folders' / 'train' / 'open').mkdir(parents=True)
  with pytest.raises(errors.ConfigError, match=r"config.dataset.label_groups=.*class "
                     'folders'):
    _get(make_config(tmp_path / 'folders', **GROUPS))
  with pytest.raises(errors.ConfigError, match='config.dataset.multi_label=True'):
    _get(make_config(tmp_path / 'folders', **MULTI))
  _index(tmp_path, 'train.csv', 'path,verb,object\nv0.mp4,0,1\n', clips)
  with pytest.raises(errors.DataFailureError, match=r"no column for label group\(s\) "
                     r"\['noun'\]"):
    _get(make_config(tmp_path, **GROUPS))
  _index(tmp_path, 'train.csv', 'v0.mp4,0,1\n', clips)
  with pytest.raises(errors.ConfigError, match="3 names for label group 'noun'"):
    _get(make_config(tmp_path, **GROUPS, label_names={'noun': ['a', 'b', 'c']}))
  with pytest.raises(errors.ConfigError, match="label group 'object'"):
    _get(make_config(tmp_path, **GROUPS, label_names={'object': ['a', 'b']}))
  with pytest.raises(errors.ConfigError, match='has 4 names: expected 5'):
    _get(make_config(tmp_path, **GROUPS, label_names=['a', 'b', 'c', 'd']))
  # The K names in label order are split into the groups.
  ds = _get(make_config(tmp_path, **GROUPS, label_names=VERBS + NOUNS))
  assert ds.label_names == ['verb:open', 'verb:close', 'verb:cut', 'noun:door',
                            'noun:knife']


# TFRecord shards.

def test_group_and_multi_label_keys_parse_as_dmvr_reads_them():
  """One key per group with MediaSequence's prefix, several values for multi-label:
  what tf.io (DMVR's VarLenFeature parsing) reads back."""
  import tensorflow as tf
  video = make_video(num_frames=2)
  grouped = tfrecord.encode_example(video, {'verb': 2, 'noun': 1},
                                    {'verb': 'cut', 'noun': 'knife'})
  multi = tfrecord.encode_example(video, [0, 2], ['cat', 'eel'])
  spec = {k: tf.io.VarLenFeature(tf.int64) for k in
          ('verb/clip/label/index', 'noun/clip/label/index', 'clip/label/index')}
  spec['verb/clip/label/string'] = tf.io.VarLenFeature(tf.string)
  spec['clip/label/string'] = tf.io.VarLenFeature(tf.string)
  context, _ = tf.io.parse_single_sequence_example(grouped, context_features=spec)
  values = {k: tf.sparse.to_dense(v).numpy().tolist() for k, v in context.items()}
  assert values['verb/clip/label/index'] == [2] and values['noun/clip/label/index'] == [1]
  assert values['verb/clip/label/string'] == [b'cut'] and values['clip/label/index'] == []
  context, _ = tf.io.parse_single_sequence_example(multi, context_features=spec)
  assert tf.sparse.to_dense(context['clip/label/index']).numpy().tolist() == [0, 2]
  assert tf.sparse.to_dense(context['clip/label/string']).numpy().tolist() == [b'cat',
                                                                               b'eel']


def _record(label, name=None, frames=8, green=0):
  return tfrecord.encode_example(make_video(num_frames=frames, label=green), label, name)


def test_tfrecord_groups_names_and_bad_records(tmp_path):
  good = [_record({'verb': 0, 'noun': 1}), _record({'verb': 2, 'noun': 0}, green=2),
          # An index that is not a class falls back to the name.
          _record({'verb': 7, 'noun': 0}, {'verb': 'close', 'noun': 'door'}, green=1)]
  bad = [_record({'verb': 1}),                               # no noun.
         _record({'verb': 1, 'noun': 5}),                     # not a class.
         _record(1, 'close')]                                 # plain keys only.
  tfrecord.write_records(str(tmp_path / 'train.tfrecord'), good + bad)
  tfrecord.write_label_names(str(tmp_path), {'verb': VERBS, 'noun': NOUNS})
  c = make_config(tmp_path, **GROUPS, max_failure_fraction=0.6)
  c.dataset.name = 'tfrecord'
  c.dataset.splits.validation = 'train'
  ds = _get(c)
  assert ds.label_names[2:4] == ['verb:cut', 'noun:door']
  labels, padding = _labels_in_order(ds, 'validation')
  np.testing.assert_array_equal(labels, [[0, 1], [2, 0], [1, 0]])
  assert ds.stats()['data_failures_validation'] == 3
  reasons = ' '.join(ds.failures.bad_keys.values())
  assert "no label under 'noun/clip/label/index'" in reasons
  assert "noun label '5' is not a class" in reasons
  assert "no label under 'verb/clip/label/index'" in reasons
  batch = ds.train_batch(0, 3)
  assert batch['label'].shape == (3, 2) and batch['label'].dtype == np.int32
  ds.close()


def test_tfrecord_multi_label(tmp_path):
  records = [_record([0, 2]), _record([1]), _record([], green=0), _record([0, 5]),
             _record([1, 1, 2])]
  tfrecord.write_records(str(tmp_path / 'train.tfrecord'), records)
  c = make_config(tmp_path, **MULTI, max_failure_fraction=0.5)
  c.dataset.name = 'tfrecord'
  c.dataset.splits.validation = 'train'
  ds = _get(c)
  assert ds.label_names == ['0', '1', '2']
  labels, padding = _labels_in_order(ds, 'validation')
  assert labels.dtype == np.float32
  np.testing.assert_array_equal(labels, [[1, 0, 1], [0, 1, 0], [0, 0, 0], [0, 1, 1]])
  np.testing.assert_array_equal(padding, np.zeros((2, 3)))
  assert "label '5' is not a class" in ' '.join(ds.failures.bad_keys.values())
  ds.close()


def test_prepare_writes_groups_like_the_index_reads(clips, tmp_path):
  """An index with group columns -> shards (prepare, names as a dict): the tfrecord
  source gives the labels the video_files source gives."""
  _index(tmp_path, 'train.csv', 'path,verb,noun\nv0.mp4,open,door\nv1.mp4,close,knife\n'
         'v2.mp4,cut,door\nv4.mp4,open,fork\n', clips)
  names = tmp_path / 'names.json'
  names.write_text(json.dumps({'verb': VERBS, 'noun': NOUNS}))
  spec = prepare.cli_labels(['verb:3', 'noun:2'], False, None, str(names))
  summary = prepare.prepare(str(tmp_path / 'train.csv'), str(tmp_path / 'shards'),
                            'train', labels=spec)
  assert summary['written'] == 3 and "noun label 'fork'" in summary['skipped'][0][1]
  assert json.load(open(tmp_path / 'shards' / 'label_names.json')) == {
      'verb': VERBS, 'noun': NOUNS}
  shard = tfrecord.find_shards(str(tmp_path / 'shards'), 'train')[0]
  offset, length = tfrecord.record_offsets(shard)[0]
  first = example_proto.SequenceExample.FromString(
      open(shard, 'rb').read()[offset:offset + length])
  assert first.context.feature['noun/clip/label/string'].bytes_list.value == [b'door']
  loaded = {}
  for name, data_dir in (('video_files', tmp_path), ('tfrecord', tmp_path / 'shards')):
    c = make_config(data_dir, **GROUPS)
    c.dataset.name = name
    c.dataset.splits.validation = 'train'
    if name == 'video_files':
      c.dataset.label_names = {'verb': VERBS, 'noun': NOUNS}
    ds = _get(c)
    loaded[name] = (_labels_in_order(ds, 'validation')[0], ds.label_names)
    ds.close()
  np.testing.assert_array_equal(loaded['tfrecord'][0], [[0, 0], [1, 1], [2, 0]])
  np.testing.assert_array_equal(loaded['video_files'][0], loaded['tfrecord'][0])
  assert loaded['video_files'][1] == loaded['tfrecord'][1]


def test_prepare_label_flags():
  spec = prepare.cli_labels(None, True, 4, None)
  assert spec.multi_label and spec.num_classes == 4
  assert prepare.cli_labels(None, False, None, None) is None
  with pytest.raises(errors.ConfigError, match="--label_groups='verb,noun:2'"):
    prepare.cli_labels(['verb', 'noun:2'], False, None, None)
  with pytest.raises(errors.ConfigError, match='--multi_label needs'):
    prepare.cli_labels(None, True, None, None)


# TFDS.

@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  """'tiny_grouped_videos': 6 train videos with verb and noun ClassLabels and a
  Sequence(ClassLabel) of tags; example i: verb i % 3 (green 80 verb), noun i % 2 (red
  step 10 + 10 noun per frame), tags {i % 3, 2}. TFDS stores them shuffled."""
  import tensorflow_datasets as tfds

  class TinyGroupedVideos(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'video': tfds.features.Video(shape=(None, 16, 16, 3)),
          'verb': tfds.features.ClassLabel(names=VERBS),
          'noun': tfds.features.ClassLabel(names=NOUNS),
          'tags': tfds.features.Sequence(tfds.features.ClassLabel(names=NAMES))}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples()}

    def _generate_examples(self):
      for i in range(6):
        video = make_video(num_frames=8, height=16, width=16, label=i % 3,
                           step=10 + 10 * (i % 2))
        yield i, {'video': video,
                  'verb': i % 3, 'noun': i % 2, 'tags': sorted({i % 3, 2})}

  root = tmp_path_factory.mktemp('tfds_groups')
  TinyGroupedVideos(data_dir=str(root)).download_and_prepare()
  return root


def _tfds_config(root, **dataset):
  c = make_config(root, **dataset)
  c.dataset.name, c.dataset.tfds_name = 'tfds', 'tiny_grouped_videos'
  c.dataset.splits.validation = 'train'
  return c


def _verb_noun_from_pixels(batch):
  """int[b, 2]: (verb, noun) that tiny_grouped_videos drew into a batch's pixels (clips
  of frames 2 apart)."""
  pixels = (batch['video'] * 0.5 + 0.5) * 255
  red = pixels[..., 0].mean(axis=(-1, -2))                     # [b, T]
  noun = np.round((np.diff(red, axis=1).mean(1) / 2 - 10) / 10)
  return np.stack([np.round(pixels[..., 1].mean(axis=(1, 2, 3)) / 80), noun], 1)


def test_tfds_label_groups_and_multi_label(tfds_dir):
  ds = _get(_tfds_config(tfds_dir, **GROUPS))          # features named as the groups.
  assert ds.label_names == ['verb:open', 'verb:close', 'verb:cut', 'noun:door',
                            'noun:knife']
  batch = ds.train_batch(0, 6)
  assert sorted(map(tuple, batch['label'].tolist())) == sorted(
      (i % 3, i % 2) for i in range(6))
  np.testing.assert_array_equal(_verb_noun_from_pixels(batch), batch['label'])
  ds.close()
  ds = _get(_tfds_config(tfds_dir, **MULTI, label_key='tags'))
  assert ds.label_names == NAMES
  batch = ds.train_batch(0, 6)
  expected = np.zeros((6, 3), np.float32)
  expected[np.arange(6), _verb_noun_from_pixels(batch)[:, 0].astype(int)] = 1
  expected[:, 2] = 1
  np.testing.assert_array_equal(batch['label'], expected)
  ds.close()
  with pytest.raises(errors.ConfigError, match=r"has \[3, 2\] classes.*expected \[3, 4\]"):
    _get(_tfds_config(tfds_dir, label_groups=(('verb', 3), ('noun', 4)), num_classes=7,
                      label_key='noun:noun,verb:verb'))
  with pytest.raises(errors.ConfigError, match='a TFDS feature for each label group'):
    _get(_tfds_config(tfds_dir, **GROUPS, label_key='verb:verb'))
  # A group mapped to another feature: its ClassLabel's names and values.
  ds = _get(_tfds_config(tfds_dir, label_groups=(('verb', 3), ('tool', 2)),
                         num_classes=5, label_key='verb:verb,tool:noun'))
  assert ds.label_names[3:] == ['tool:door', 'tool:knife']
  batch = ds.train_batch(0, 6)
  np.testing.assert_array_equal(_verb_noun_from_pixels(batch), batch['label'])
  ds.close()


# The synthetic label kinds written out (export) and read back from each source.

@pytest.mark.parametrize('kind', ['verb_noun', 'multi_label'])
def test_export_synthetic_label_kinds(tmp_path, kind):
  from vivit_jax.data import export
  c = make_config(tmp_path)
  d = c.dataset
  d.name, d.num_frames, d.crop_size, d.stride, d.num_classes = 'synthetic', 4, 8, 1, 10
  d.num_train_examples, d.num_eval_examples = 6, 5
  d.synthetic_labels = kind
  if kind == 'verb_noun':
    d.label_groups, d.num_classes = (('verb', 10), ('noun', 4)), 14
  else:
    d.multi_label = True
  export.export(c, str(tmp_path), workers=2, splits=('train', 'validation'))
  header = (tmp_path / 'videos' / 'validation.csv').read_text().splitlines()[0]
  assert header == ('path,verb,noun' if kind == 'verb_noun' else 'path,labels')
  loaded = {}
  for name, data_dir in (('synthetic', ''), ('video_files', tmp_path / 'videos'),
                         ('tfrecord', tmp_path / 'shards')):
    d.name, d.data_dir = name, str(data_dir)
    ds = _get(c)
    loaded[name] = (_labels_in_order(ds, 'validation')[0], ds.label_names)
    ds.close()
  labels, names = loaded['synthetic']
  assert labels.shape == ((5, 2) if kind == 'verb_noun' else (5, 10))
  for name in ('video_files', 'tfrecord'):
    np.testing.assert_array_equal(loaded[name][0], labels)
    assert loaded[name][1] == names
