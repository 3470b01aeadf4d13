"""The TFDS source on a tiny video dataset built locally (a GeneratorBasedBuilder
prepared in tmp_path, then read back by name as a user would read 'ucf101')."""
import numpy as np
import pytest

from vivit_jax import data, errors
from synthetic_helpers import assert_same_global_batches
from video_helpers import make_config, make_video

NAMES = ['left', 'right', 'still']


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  """'tiny_test_videos': train 6 videos (lengths 8-13), test 3; frame t of example i
  has red 15 t and green 80 (i % 3); one PNG frame of test example 1 is corrupted."""
  import tensorflow_datasets as tfds

  class TinyTestVideos(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'video': tfds.features.Video(shape=(None, 24, 32, 3)),
          'label': tfds.features.ClassLabel(names=NAMES)}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples(6, 0), 'test': self._generate_examples(3, 100)}

    def _generate_examples(self, n, base):
      for i in range(n):
        yield base + i, {'video': make_video(num_frames=8 + i, height=24, label=i % 3),
                         'label': i % 3}

  root = tmp_path_factory.mktemp('tfds')
  builder = TinyTestVideos(data_dir=str(root))
  builder.download_and_prepare()
  # Corrupt one PNG frame of one test record in place (same length).
  path = builder.info.splits['test'].file_instructions[0].filename
  blob = bytearray(open(path, 'rb').read())
  at = blob.find(b'\x89PNG')
  blob[at + 40:at + 80] = b'\x00' * 40
  open(path, 'wb').write(bytes(blob))
  return root


def tfds_config(root, **overrides):
  c = make_config(root, **overrides)
  c.dataset.name = 'tfds'
  c.dataset.tfds_name = 'tiny_test_videos'
  c.dataset.splits.validation = 'test'
  return c


def test_tfds_train_batches(tfds_dir):
  ds = data.get_dataset(tfds_config(tfds_dir), process_index=0, process_count=1)
  assert ds.label_names == NAMES and ds.num_classes == 3
  assert ds.num_examples('train') == 6 and ds.num_examples('validation') == 3
  batch = next(ds.train_batches(0, 6))
  assert batch['video'].shape == (6, 4, 16, 16, 3)
  assert sorted(batch['label'].tolist()) == [0, 0, 1, 1, 2, 2]     # one epoch.
  pixels = (batch['video'] * 0.5 + 0.5) * 255
  np.testing.assert_allclose(np.diff(pixels[..., 0].mean(axis=(2, 3)), axis=1), 30, atol=1)
  np.testing.assert_allclose(pixels[..., 1].mean(axis=(1, 2, 3)), 80 * batch['label'],
                             atol=1)
  c = tfds_config(tfds_dir, num_workers=0)
  again = data.get_dataset(c, process_index=0, process_count=1).train_batch(0, 6)
  np.testing.assert_array_equal(again['video'], batch['video'])


def test_tfds_eval_with_a_corrupt_frame(tfds_dir):
  ds = data.get_dataset(tfds_config(tfds_dir, num_test_clips=2), process_index=0,
                        process_count=1)
  batches = list(ds.eval_batches('validation', 2))
  mask = np.concatenate([b['mask'] for b in batches])
  assert mask.tolist().count(1.0) == 2 and mask[3] == 0        # 3 examples + padding.
  assert ds.stats()['data_failures_validation'] == 1
  assert 'bad frame' in ' '.join(ds.failures.bad_keys.values())
  assert batches[0]['video'].shape == (2, 2, 4, 16, 16, 3)


def test_tfds_split_strings_and_sharding(tfds_dir):
  c = tfds_config(tfds_dir)
  c.dataset.splits.train = 'train[:50%]'
  ds = data.get_dataset(c, process_index=0, process_count=1)
  assert ds.num_examples('train') == 3
  parts = [data.get_dataset(tfds_config(tfds_dir), process_index=p, process_count=2)
           for p in range(2)]
  keys = [set(p.readers['validation'].keys) for p in parts]
  assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == 3
  assert all(len(p.readers['train'].keys) == 6 for p in parts)    # all: see pipeline.


def test_tfds_errors(tfds_dir):
  c = tfds_config(tfds_dir)
  c.dataset.tfds_name = ''
  with pytest.raises(errors.ConfigError, match='tfds_name'):
    data.get_dataset(c, process_index=0, process_count=1)
  c.dataset.tfds_name = 'no_such_videos'
  with pytest.raises(errors.DataFailureError, match='no_such_videos'):
    data.get_dataset(c, process_index=0, process_count=1)
  c = tfds_config(tfds_dir)
  c.dataset.video_key = 'frames'
  with pytest.raises(errors.ConfigError, match="'frames'"):
    data.get_dataset(c, process_index=0, process_count=1)


def test_tfds_check_splits(tfds_dir):
  """The split check reads the builder's info: validation maps to 'test' here, a split
  the dataset does not have is refused with the ones it has."""
  c = tfds_config(tfds_dir)
  data.check_splits(c, ['train', 'validation', 'test'])
  c.dataset.splits.test = 'holdout'
  with pytest.raises(errors.DataFailureError) as e:
    data.check_splits(c, ['train', 'test'])
  message = str(e.value)
  assert message.startswith("The 'test' split has no data (config.dataset.name='tfds'):")
  assert "no split 'holdout'" in message and "it has ['test', 'train']" in message


def test_global_batches_do_not_depend_on_the_process_count(tfds_dir):
  """6 training videos of 8-13 frames: global batch 4 over 6 steps (4 epochs), the same
  read by 1, 2 or 4 processes."""
  assert_same_global_batches(tfds_config(tfds_dir, num_workers=0), 4, 6)
