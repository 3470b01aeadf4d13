"""Masked pretraining through the trainer (train/pretraining.py), in process: metrics,
jit == pmap == gradient accumulation, exact resume, and what it refuses."""
import os

import jax
import numpy as np
import pytest

from train_helpers import REPO, final_params
from vivit_jax import config as vc
from vivit_jax.train import setup as setup_lib
from vivit_jax.train import trainer


def pretrain_config(**trainer_overrides):
  config = vc.load_config(os.path.join(REPO, 'configs/synthetic/videomae.py'), 'tiny,tube')
  config.trainer.async_checkpointing = False
  config.trainer.update({**dict(num_train_steps=6, checkpoint_every=3, eval_every=6,
                                log_every=3), **trainer_overrides})
  return config


def test_summary_clips_write_reconstruction_pictures(tmp_path):
  """Per validation clip and evaluation: rows input / masked / reconstruction, frames
  left to right, upscaled 8x; the masked row is the input with the masked tubelets
  black (here 3 of the 4 positions of tubelets 2x4x4 of a 4x8x8 clip at both temporal
  indices), the reconstruction the input on the visible tubelets."""
  from test_attention_summaries import images_in_events
  workdir = str(tmp_path / 'run')
  trainer.train_and_evaluate(pretrain_config(summary_clips=2, eval_every=3), workdir)
  images = images_in_events(workdir)
  assert sorted(s for tag, s in images if tag == 'validation_reconstruction') == [3, 6]
  pictures = images[('validation_reconstruction', 6)][..., :3].astype(int)
  assert pictures.shape == (2, 3 * 8 * 8, 4 * 8 * 8, 3)
  frames, masked, recon = np.split(pictures[:, ::8, ::8], 3, axis=1)   # [2, 8, 32, 3].
  black = (masked == 0).all(-1)                # [clip, y, frame * 8 + x].
  assert (frames > 0).any(-1).all()            # the synthetic frames have no black pixel.
  cells = black.reshape(2, 2, 4, 4, 2, 4)      # [clip, y cell, y, frame, x cell, x].
  per_frame = cells.all(axis=(2, 5))           # [clip, y cell, frame, x cell].
  assert (per_frame == cells.any(axis=(2, 5))).all()          # whole tubelets.
  assert (per_frame == per_frame[:, :, :1]).all()             # one mask for all frames.
  assert (per_frame[:, :, 0].sum(axis=(1, 2)) == 3).all()    # 3 of 4 positions (0.9).
  np.testing.assert_array_equal(masked[~black], frames[~black])
  np.testing.assert_array_equal(recon[~black], frames[~black])
  assert np.abs(recon[black] - frames[black]).mean() > 1


def assert_close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6), a, b)


def test_pretraining_writes_reconstruction_metrics_and_no_best_checkpoint(tmp_path):
  out = trainer.train_and_evaluate(pretrain_config(), str(tmp_path / 'jit'))
  assert out['step'] == 6 and np.isfinite(out['train']['train_loss'])
  assert {'train_loss', 'train_grad_norm', 'train_lr'} <= set(out['train'])
  assert 'train_accuracy' not in out['train']
  val = out['validation']
  assert val['num_examples'] == 64 and 0 < val['reconstruction_loss'] < 10
  assert 'top1' not in val
  ckpts = os.listdir(tmp_path / 'jit' / 'checkpoints')
  assert '6' in ckpts and not os.listdir(tmp_path / 'jit' / 'checkpoints' / 'best')
  _, params = final_params(str(tmp_path / 'jit'))
  assert set(params) == {'embedding', 'Transformer', 'decoder_embed', 'mask_token',
                         'Decoder', 'decoder_pred'}


def sgd(config):
  # SGD, not AdamW: Adam turns the float noise of a zero gradient (the attention key
  # bias: softmax ignores it) into full-size steps of either sign.
  config.optimizer.name, config.schedule.base_lr = 'sgd', 0.05
  return config


def test_pmap_and_gradient_accumulation_match_jit(tmp_path):
  """The same masks (keyed by global row) on 8 pmap devices and in 2 micro-batches."""
  trainer.train_and_evaluate(sgd(pretrain_config()), str(tmp_path / 'jit'))
  _, params = final_params(str(tmp_path / 'jit'))
  trainer.train_and_evaluate(sgd(pretrain_config(parallelism='pmap')), str(tmp_path / 'pmap'))
  assert_close(final_params(str(tmp_path / 'pmap'))[1], params)
  trainer.train_and_evaluate(sgd(pretrain_config(grad_accum_steps=2)), str(tmp_path / 'accum'))
  assert_close(final_params(str(tmp_path / 'accum'))[1], params)


def test_resumed_pretraining_equals_an_uninterrupted_run(tmp_path):
  def config(steps):
    c = pretrain_config(num_train_steps=steps, eval_every=100)
    c.schedule.name = 'constant'        # the same lr whatever num_train_steps is.
    return c
  trainer.train_and_evaluate(config(6), str(tmp_path / 'straight'))
  trainer.train_and_evaluate(config(3), str(tmp_path / 'resumed'))
  out = trainer.train_and_evaluate(config(6), str(tmp_path / 'resumed'))
  assert out['step'] == 6 and out['history'][0][0] == 6    # it trained steps 4-6 only.
  jax.tree.map(np.testing.assert_array_equal, final_params(str(tmp_path / 'resumed'))[1],
               final_params(str(tmp_path / 'straight'))[1])


@pytest.mark.parametrize('field, value', [('mixup_alpha', 0.2), ('cutmix_alpha', 1.0),
                                          ('label_smoothing', 0.1),
                                          ('temporal_control', 'shuffle')])
def test_classification_options_are_refused(field, value):
  config = pretrain_config()
  config.trainer[field] = value
  with pytest.raises(vc.ConfigError, match=rf'config\.trainer\.{field}=.*masked_pretraining'):
    setup_lib.validate(config)


def test_layer_decay_is_refused_in_pretraining():
  config = pretrain_config()
  config.optimizer.layer_decay = 0.75
  with pytest.raises(vc.ConfigError, match=r'config\.optimizer\.layer_decay=0\.75'):
    setup_lib.validate(config)


def test_reconstruction_image_rows_are_input_masked_and_output():
  from vivit_jax import models
  from vivit_jax.train import pretraining
  config = pretrain_config()
  model = models.create_model(config.model, 10)
  pixels = np.random.default_rng(0).uniform(size=(2, 4, 8, 8, 3)).astype(np.float32)
  video = (pixels - 0.5) / 0.5                      # the synthetic mean/std.
  params = model.init(jax.random.key(0), video)['params']
  image = pretraining.reconstruction_image(model, params, video, (0.5,) * 3, (0.5,) * 3)
  assert image.shape == (1, 3 * 8, 4 * 8, 3) and image.dtype == np.uint8
  # Row 1 is the first clip's frames side by side, back in [0, 255].
  np.testing.assert_array_equal(image[0, :8, 8:16], np.round(pixels[0, 1] * 255))
  masked = image[0, 8:16].reshape(8, 4, 8, 3)
  assert (masked == 0).all(axis=-1).mean() == 0.75   # masked tubelets: black.


def test_fixed_sinusoid_position_embedding_stays_fixed_and_exports(tmp_path):
  """posemb_init='sinusoid' with an lr multiplier of 0 (the VideoMAE paper configs): the
  table survives training, so Hugging Face VideoMAE can hold the result."""
  from vivit_jax import convert
  from vivit_jax.models import videomae
  config = pretrain_config(num_train_steps=3, eval_every=100)
  config.model.posemb_init = 'sinusoid'
  config.optimizer.lr_multipliers = ((r'posembed_input', 0.0),)
  trainer.train_and_evaluate(config, str(tmp_path / 'run'))
  _, params = final_params(str(tmp_path / 'run'))
  np.testing.assert_array_equal(params['Transformer']['posembed_input']['pos_embedding'],
                                videomae.sinusoid_table(8, 16)[None])
  out = convert.save_huggingface(config, params, str(tmp_path / 'hf'))
  config2, params2 = convert.load_huggingface(out)
  assert config2.model.decoder_hidden_size == 16
  np.testing.assert_allclose(params2['Decoder']['decoder_norm']['scale'],
                             params['Decoder']['decoder_norm']['scale'])
