"""config.trainer.summary_clips: validation clips with labels and attention rollout as
TensorBoard images at each evaluation."""
import glob
import os

import numpy as np
import pytest

from train_helpers import synthetic_config
from vivit_jax.errors import ConfigError
from vivit_jax.train import trainer


def images_in_events(workdir):
  """{(tag, step): uint8[N, H, W, 3]} of the image summaries in the event files."""
  import tensorflow as tf
  out = {}
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == 'images':
          encoded = tf.make_ndarray(value.tensor)[2:]   # width, height, then PNGs.
          out[(value.tag, event.step)] = np.stack(
              [tf.io.decode_png(png).numpy() for png in encoded])
  return out


def test_evaluation_writes_attention_pictures(tmp_path):
  config = synthetic_config(1, 'tiny', summary_clips=2)
  workdir = str(tmp_path / 'run')
  trainer.train_and_evaluate(config, workdir)
  images = images_in_events(workdir)
  steps = sorted(step for tag, step in images if tag == 'validation_attention')
  assert steps == [10, 20]
  pictures = images[('validation_attention', 20)]
  t, s = config.dataset.num_frames, config.dataset.crop_size
  scale = -(-64 // s)
  # Per clip: a 14-pixel text band, the frames, the rollout overlays.
  assert pictures.shape == (2, 14 + 2 * s * scale, t * s * scale, 3)
  band, frames, overlays = np.split(pictures[:, :, :, :3].astype(int),
                                    [14, 14 + s * scale], axis=1)
  assert (band < 128).any()           # the label text.
  assert np.abs(frames - overlays).max() > 20   # the heatmap shows.


def test_summary_clips_must_be_a_count(tmp_path):
  config = synthetic_config(1, 'tiny', summary_clips=-1)
  with pytest.raises(ConfigError, match='summary_clips=-1'):
    trainer.train_and_evaluate(config, str(tmp_path / 'run'))
