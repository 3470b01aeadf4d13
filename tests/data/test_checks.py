"""`data.validate` (config.dataset fields) and `data.check_splits` (a split the run will
read has data), before any compute."""
import subprocess
import sys

import ml_collections
import pytest

from vivit_jax import data, errors
from vivit_jax.data import tfrecord, video_files
from video_helpers import make_config, make_video


def _dataset(**fields):
  """The package's default config.dataset (a video_files source) with `fields` set to
  any value (not type-checked, as a hand-written config may hold)."""
  d = make_config('/no/such/dir').dataset.to_dict()
  d.update(fields)
  return ml_collections.ConfigDict(d, type_safe=False)


def test_validate_accepts_the_defaults_of_every_source():
  for name in ('synthetic', 'video_files', 'tfrecord', 'tfds'):
    data.validate(_dataset(name=name))       # no file is looked at: data_dir is missing.


@pytest.mark.parametrize('field,value,message', [
    ('num_frames', 0, 'config.dataset.num_frames=0 is invalid: expected a positive integer.'),
    ('crop_size', None, 'config.dataset.crop_size=None is invalid: expected a positive '
     'integer.'),
    ('num_classes', 2.0, 'config.dataset.num_classes=2.0 is invalid'),
    ('name', 'kinetics9', "config.dataset.name='kinetics9' is invalid: expected one of "
     "['synthetic', 'tfds', 'tfrecord', 'video_files']."),
    ('temporal_sampling', 'tsn', "expected one of 'dense', 'uniform'"),
    ('stride', 0, 'config.dataset.stride=0'),
    ('num_test_crops', 2, 'expected 1 (centre) or 3'),
    ('min_resize', 8, 'expected None or an integer >= dataset.crop_size=16'),
    ('scale_jitter', (1.2, 0.9), 'config.dataset.scale_jitter=(1.2, 0.9)'),
    ('crop_area_range', (0.5, 1.5), 'hi <= 1'),
    ('scale_jitter_prob', 1.5, 'a probability in [0, 1]'),
    ('random_flip', 'yes', 'True or False'),
    ('color_jitter', -0.1, 'a strength >= 0'),
    ('randaugment_layers', True, 'an integer >= 0'),
    ('randaugment_magnitude', 11, 'a magnitude in [0, 10]'),
    ('num_workers', -1, 'an integer >= 0'),
    ('worker_type', 'fork', "config.dataset.worker_type='fork' is invalid: expected one "
     "of ('thread', 'process')."),
    ('prefetch_batches', 0, 'config.dataset.prefetch_batches=0'),
    ('max_failure_fraction', 2, 'a fraction in [0, 1]'),
    ('std_rgb', (0.5, 0.0, 0.5), '3 per-channel values (std > 0)'),
    ('mean_rgb', (0.5, 0.5), 'config.dataset.mean_rgb=(0.5, 0.5)'),
])
def test_validate_names_the_bad_field(field, value, message):
  with pytest.raises(errors.ConfigError) as e:
    data.validate(_dataset(**{field: value}))
  assert message in str(e.value) and '\n' not in str(e.value)


def test_validate_and_check_splits_import_no_tensorflow(tmp_path):
  """Cheap enough to run first: neither imports TensorFlow (nor JAX) for these sources."""
  code = ('import sys, ml_collections\n'
          'from vivit_jax import data, errors\n'
          f'd = ml_collections.ConfigDict({_dataset(data_dir=str(tmp_path)).to_dict()!r})\n'
          'c = ml_collections.ConfigDict({"dataset": d})\n'
          'data.validate(d)\n'
          'for name in ("synthetic", "video_files", "tfrecord"):\n'
          '  d.name = name\n'
          '  try:\n'
          '    data.check_splits(c, ["train", "validation", "test"])\n'
          '  except errors.DataFailureError:\n'
          '    assert name != "synthetic"\n'
          'loaded = [m for m in ("tensorflow", "jax") if m in sys.modules]\n'
          'assert not loaded, loaded\n')
  subprocess.run([sys.executable, '-c', code], check=True, timeout=120)


def test_check_splits_synthetic_has_every_split():
  c = make_config('/no/such/dir', name='synthetic')
  data.check_splits(c, ['train', 'validation', 'test'])
  with pytest.raises(ValueError, match="split='dev'"):
    data.check_splits(c, ['dev'])
  c.dataset.name = 'kinetics9'
  with pytest.raises(errors.ConfigError, match='dataset.name'):
    data.check_splits(c, ['train'])


def test_check_splits_video_files(tmp_path):
  """train/ class folders and a test.csv index, no validation split."""
  (tmp_path / 'train' / 'cat').mkdir(parents=True)
  video_files.write_video(str(tmp_path / 'train' / 'cat' / '0.mp4'), make_video())
  (tmp_path / 'test.csv').write_text('train/cat/0.mp4,cat\n')
  c = make_config(tmp_path)
  data.check_splits(c, ['train', 'test'])
  with pytest.raises(errors.DataFailureError) as e:
    data.check_splits(c, ['train', 'validation', 'test'])
  message = str(e.value)
  assert message.startswith("The 'validation' split has no data "
                            "(config.dataset.name='video_files'): ")
  assert str(tmp_path / 'validation.csv') in message and str(tmp_path / 'validation') in message
  assert message.endswith("splits with data: ['train', 'test'].") and '\n' not in message
  # A renamed split is looked for under its name in the data.
  c.dataset.splits.validation = 'test'
  data.check_splits(c, ['train', 'validation'])
  c.dataset.splits.validation = 'val'
  with pytest.raises(errors.DataFailureError, match=r"splits\.validation='val'"):
    data.check_splits(c, ['validation'])
  # No data_dir at all.
  with pytest.raises(errors.DataFailureError, match="data_dir='/no/such/dir' is not a folder"):
    data.check_splits(make_config('/no/such/dir'), ['train'])
  with pytest.raises(errors.ConfigError, match='data_dir'):
    data.check_splits(make_config(''), ['train'])


def test_check_splits_tfrecord(tmp_path):
  record = tfrecord.encode_example(make_video(num_frames=2), 0, 'cat')
  for name in ('train.tfrecord-00000-of-00002', 'train.tfrecord-00001-of-00002',
               'test.tfrecord-00000-of-00001'):
    tfrecord.write_records(str(tmp_path / name), [record])
  c = make_config(tmp_path, name='tfrecord')
  data.check_splits(c, ['train', 'test'])
  with pytest.raises(errors.DataFailureError) as e:
    data.check_splits(c, ['train', 'validation'])
  message = str(e.value)
  assert message.startswith("The 'validation' split has no data "
                            "(config.dataset.name='tfrecord'): no TFRecord shard matches ")
  assert str(tmp_path / 'validation*.tfrecord*') in message
  assert message.endswith("splits with shards: ['train', 'test'].") and '\n' not in message
  # The dataset itself is built without the missing split, as before.
  ds = data.get_dataset(c, process_index=0, process_count=1)
  assert ds.num_examples('train') == 2 and ds.num_examples('test') == 1
