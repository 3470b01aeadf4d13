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
  config = vc.load_config(os.path.join(REPO, 'configs/synthetic/videomae.py'), 'tiny')
  config.trainer.async_checkpointing = False
  config.trainer.update({**dict(num_train_steps=6, checkpoint_every=3, eval_every=6,
                                log_every=3), **trainer_overrides})
  return config


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
  assert (masked == 128).all(axis=-1).mean() == 0.75   # masked tubelets: 0 -> grey.


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
