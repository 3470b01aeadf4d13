"""Hugging Face VideoMAEForPreTraining import against the PyTorch original: a small random
local model (nothing downloaded, every weight re-randomised), the same masks on both
sides; decoder predictions and the loss agree to 1e-4."""
import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from vivit_jax import convert, models  # noqa: E402
from vivit_jax.convert import ConversionError  # noqa: E402
from vivit_jax.models import videomae  # noqa: E402

from test_huggingface import randomise  # noqa: E402

TOL = 1e-4


def hf_config(**overrides):
  kw = dict(image_size=8, patch_size=4, num_channels=3, num_frames=4, tubelet_size=2,
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, decoder_num_attention_heads=2, decoder_hidden_size=12,
            decoder_num_hidden_layers=2, decoder_intermediate_size=24,
            use_mean_pooling=False, norm_pix_loss=True, layer_norm_eps=1e-6)
  kw.update(overrides)
  return transformers.VideoMAEConfig(**kw)


def saved(tmp_path, **overrides):
  model = randomise(transformers.VideoMAEForPreTraining(hf_config(**overrides)))
  model.save_pretrained(str(tmp_path / 'hf'))
  return model, str(tmp_path / 'hf')


@pytest.mark.parametrize('masking', ['tube', 'random'])
def test_pretraining_predictions_and_loss_match_pytorch(tmp_path, masking):
  hf_model, path = saved(tmp_path)
  config, params = convert.load_huggingface(path)
  assert config.task == 'masked_pretraining' and config.model.name == 'videomae'
  assert config.model.decoder_hidden_size == 12 and config.model.decoder_num_layers == 2
  config.model.masking = masking
  config.model.mask_ratio = 0.75
  model = models.create_model(config.model, config.dataset.num_classes)
  x = np.random.default_rng(0).standard_normal((2, 4, 8, 8, 3)).astype(np.float32)
  out = model.apply({'params': params}, x, rngs={'masking': jax.random.key(1)})
  bool_masked_pos = torch.from_numpy(np.array(out['mask']))
  pixels = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))
  with torch.no_grad():
    ref = hf_model(pixel_values=pixels, bool_masked_pos=bool_masked_pos)
  np.testing.assert_allclose(out['pred'], ref.logits.numpy(), atol=TOL, rtol=TOL)
  # HF un-normalises the pixels with ImageNet's mean/std first: a per-channel affine map
  # that the per-tubelet normalisation removes (up to its 1e-6).
  np.testing.assert_allclose(videomae.reconstruction_loss(out), ref.loss.item(), rtol=TOL)


def test_mean_pooling_pretraining_models_are_refused(tmp_path):
  _, path = saved(tmp_path, use_mean_pooling=True)
  with pytest.raises(ConversionError, match='use_mean_pooling=True'):
    convert.load_huggingface(path)


def test_video_classification_logits_match_pytorch(tmp_path):
  hf_model = randomise(transformers.VideoMAEForVideoClassification(
      hf_config(use_mean_pooling=True, num_labels=5)))
  hf_model.save_pretrained(str(tmp_path / 'hf'))
  config, params = convert.load_huggingface(str(tmp_path / 'hf'))
  assert config.task == 'classification' and config.model.name == 'vivit'
  assert config.model.classifier == 'gap_fc_norm' and config.dataset.num_classes == 5
  model = models.create_model(config.model, 5)
  x = np.random.default_rng(0).standard_normal((2, 4, 8, 8, 3)).astype(np.float32)
  logits = model.apply({'params': params}, x)
  pixels = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))
  with torch.no_grad():
    ref = hf_model(pixel_values=pixels).logits.numpy()
  np.testing.assert_allclose(logits, ref, atol=TOL, rtol=TOL)
  assert np.abs(ref).max() > 0.1          # a real comparison, not of zeros.


def test_pretraining_import_fine_tunes_into_the_classification_model(tmp_path):
  """init_from a converted VideoMAEForPreTraining: its encoder, fresh fc_norm and head."""
  _, path = saved(tmp_path)
  pre_config, pre_params = convert.load_huggingface(path)
  out = convert.save_converted(pre_config, pre_params, str(tmp_path / 'converted'))
  config = pre_config.copy_and_resolve_references()
  config.task, config.model.name, config.model.classifier = ('classification', 'vivit',
                                                             'gap_fc_norm')
  config.init_from.path = out
  model = models.create_model(config.model, 10)
  fresh = model.init(jax.random.key(0), np.zeros((1, 4, 8, 8, 3), np.float32))['params']
  params = convert.init_from(config, fresh)
  np.testing.assert_array_equal(params['Transformer']['encoderblock_1']['MlpBlock_0']
                                ['Dense_0']['kernel'],
                                pre_params['Transformer']['encoderblock_1']['MlpBlock_0']
                                ['Dense_0']['kernel'])
  np.testing.assert_array_equal(params['fc_norm']['scale'], np.ones(16))
  assert 'encoder_norm' not in params['Transformer']


@pytest.mark.parametrize('kind', ['pretraining', 'classification'])
def test_export_round_trip_gives_the_pytorch_model_back(tmp_path, kind):
  if kind == 'pretraining':
    hf_model, path = saved(tmp_path)
    cls = transformers.VideoMAEForPreTraining
  else:
    cls = transformers.VideoMAEForVideoClassification
    hf_model = randomise(cls(hf_config(use_mean_pooling=True, num_labels=5)))
    path = str(tmp_path / 'hf')
    hf_model.save_pretrained(path)
  config, params = convert.load_huggingface(path)
  out = convert.save_huggingface(config, params, str(tmp_path / 'exported'))
  config2, params2 = convert.load_huggingface(out)
  jax.tree.map(np.testing.assert_array_equal, params2, params)
  assert config2.model.to_dict() == config.model.to_dict()
  reloaded = cls.from_pretrained(out).eval()
  pixels = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 4, 3, 8, 8))
                            .astype(np.float32))
  kwargs = {}
  if kind == 'pretraining':
    kwargs['bool_masked_pos'] = torch.from_numpy(np.tile([True, False] * 4, (2, 1)))
  with torch.no_grad():
    np.testing.assert_allclose(reloaded(pixel_values=pixels, **kwargs).logits.numpy(),
                               hf_model(pixel_values=pixels, **kwargs).logits.numpy(),
                               atol=1e-6)


def test_export_refuses_a_learned_position_embedding(tmp_path):
  _, path = saved(tmp_path)
  config, params = convert.load_huggingface(path)
  params['Transformer']['posembed_input']['pos_embedding'] = (
      params['Transformer']['posembed_input']['pos_embedding'] + 0.01)
  with pytest.raises(ConversionError, match='sinusoid'):
    convert.save_huggingface(config, params, str(tmp_path / 'exported'))
