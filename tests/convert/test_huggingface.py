"""Hugging Face ViViT / TimeSformer import and export against the PyTorch originals.

Small random HF models are built locally (nothing is downloaded) with EVERY weight
re-randomised (HF initialises LayerNorms, CLS and position embeddings to trivial values
that would hide conversion bugs); logits and every layer's hidden states must agree to
1e-4 in float32, and export -> import must be the identity.
"""
import json
import os

import einops
import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from vivit_jax import convert, models  # noqa: E402
from vivit_jax.convert import huggingface  # noqa: E402
from vivit_jax.convert.common import flatten  # noqa: E402

TOL = 1e-4
B, T, S = 2, 4, 8          # batch, frames, crop size (patches 4x4 -> 2x2 grid).


def randomise(model, seed=0):
  """Every parameter of a torch model ~ N(0, 0.5^2) (LayerNorm scales around 1)."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen) * 0.5
      p.copy_(noise + 1.0 if name.endswith('norm.weight') or 'layernorm' in name and
              name.endswith('weight') else noise)
  return model.eval()


def video(seed=0):
  return np.random.default_rng(seed).standard_normal((B, T, S, S, 3)).astype(np.float32)


def run_hf(model, x):
  pixels = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))
  with torch.no_grad():
    out = model(pixel_values=pixels, output_hidden_states=True)
  return out


def run_ours(config, params, x):
  model = models.create_model(config.model, config.dataset.num_classes)
  fn = jax.jit(lambda p, v: model.apply({'params': p}, v, capture_intermediates=True))
  logits, state = fn(params, x)
  return np.asarray(logits), jax.tree.map(np.asarray, state['intermediates'])


def block_outputs(inter, scope=None):
  tree = inter[scope] if scope else inter
  n = len([k for k in tree if k.startswith('encoderblock_')])
  return [tree[f'encoderblock_{i}']['__call__'][0] for i in range(n)]


def vivit_hf(tubelet=(2, 4, 4), act='gelu_fast', eps=1e-6, base=False, labels=3):
  cfg = transformers.VivitConfig(
      image_size=S, num_frames=T, tubelet_size=list(tubelet), hidden_size=16,
      num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, hidden_act=act,
      layer_norm_eps=eps, num_labels=labels)
  cls = transformers.VivitModel if base else transformers.VivitForVideoClassification
  return randomise(cls(cfg))


def timesformer_hf(attention_type, act='gelu', labels=3):
  cfg = transformers.TimesformerConfig(
      image_size=S, num_frames=T, patch_size=4, hidden_size=16, num_hidden_layers=2,
      num_attention_heads=2, intermediate_size=32, hidden_act=act, layer_norm_eps=1e-5,
      attention_type=attention_type, num_labels=labels)
  return randomise(transformers.TimesformerForVideoClassification(cfg))


def assert_close(a, b, what):
  a, b = np.asarray(a), np.asarray(b)
  assert a.shape == b.shape, (what, a.shape, b.shape)
  diff = float(np.max(np.abs(a - b)))
  assert diff <= TOL, f'{what}: max abs diff {diff}'


def assert_export_import_identity(config, params, out_dir):
  """Exports to `out_dir` and imports back: the same config and bit-equal params."""
  convert.save_huggingface(config, params, str(out_dir))
  config2, params2 = convert.load_huggingface(str(out_dir))
  assert config2.to_dict() == config.to_dict()
  a, b = flatten(params), flatten(params2)
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize('tubelet, act, eps', [((2, 4, 4), 'gelu_fast', 1e-6),
                                               ((1, 4, 4), 'gelu', 1e-5)])
def test_vivit_import_matches_pytorch(tmp_path, tubelet, act, eps):
  hf_model = vivit_hf(tubelet, act, eps)
  hf_model.save_pretrained(tmp_path / 'hf')
  config, params = convert.load_huggingface(str(tmp_path / 'hf'))
  m = config.model
  assert (m.name, m.attention_type, m.hidden_size, m.num_layers, m.num_heads) == (
      'vivit', 'spatio_temporal', 16, 2, 2)
  assert m.gelu_approximate == (act == 'gelu_fast') and m.layer_norm_epsilon == eps
  assert m.embedding == ('uniform_frame' if tubelet[0] == 1 else 'tubelet')
  assert (config.dataset.num_frames, config.dataset.crop_size,
          config.dataset.num_classes) == (T, S, 3)
  x = video()
  ref = run_hf(hf_model, x)
  logits, inter = run_ours(config, params, x)
  assert_close(logits, ref.logits.numpy(), 'logits')
  ours = block_outputs(inter, 'Transformer')
  hf_states = [h.numpy() for h in ref.hidden_states]
  assert len(hf_states) >= len(ours)
  for i, h in enumerate(ours):   # HF's tuple may start with the embedding output.
    assert_close(h, hf_states[len(hf_states) - len(ours) + i], f'block {i} output')
  last = inter['Transformer']['encoder_norm']['__call__'][0]
  hf_last = hf_model.vivit(torch.from_numpy(x.transpose(0, 1, 4, 2, 3).copy()))
  assert_close(last, hf_last.last_hidden_state.detach().numpy(), 'last hidden state')


def test_vivit_base_model_pooler_and_export_roundtrip(tmp_path):
  hf_model = vivit_hf(base=True)
  hf_model.save_pretrained(tmp_path / 'hf')
  config, params = convert.load_huggingface(str(tmp_path / 'hf'))
  assert config.model.representation_size == 16
  x = video(1)
  ref = run_hf(hf_model, x)
  _, inter = run_ours(config, params, x)
  pooled = np.tanh(inter['pre_logits']['__call__'][0])
  assert_close(pooled, ref.pooler_output.numpy(), 'pooler output')
  # Export: a model with pre-logits is written back as VivitModel.
  convert.save_huggingface(config, params, str(tmp_path / 'out'))
  with open(tmp_path / 'out' / 'config.json') as f:
    assert json.load(f)['architectures'] == ['VivitModel']
  again = transformers.VivitModel.from_pretrained(tmp_path / 'out').eval()
  assert_close(run_hf(again, x).pooler_output.numpy(), ref.pooler_output.numpy(), 'again')


def test_vivit_preprocessing_defaults_and_processor_config(tmp_path):
  hf_model = vivit_hf()
  hf_model.save_pretrained(tmp_path / 'hf')
  config, _ = convert.load_huggingface(str(tmp_path / 'hf'))
  # VivitImageProcessor default: x / 127.5 - 1, then (. - 0.5) / 0.5 -> [-3, 1].
  np.testing.assert_allclose(config.dataset.mean_rgb, (0.75,) * 3)
  np.testing.assert_allclose(config.dataset.std_rgb, (0.25,) * 3)
  proc = {'image_processor_type': 'VivitImageProcessor', 'do_rescale': True,
          'rescale_factor': 1 / 255, 'offset': False, 'do_normalize': True,
          'image_mean': [0.4, 0.5, 0.6], 'image_std': [0.2, 0.25, 0.3],
          'size': {'shortest_edge': 10}}
  with open(tmp_path / 'hf' / 'preprocessor_config.json', 'w') as f:
    json.dump(proc, f)
  config, _ = convert.load_huggingface(str(tmp_path / 'hf'))
  np.testing.assert_allclose(config.dataset.mean_rgb, (0.4, 0.5, 0.6))
  np.testing.assert_allclose(config.dataset.std_rgb, (0.2, 0.25, 0.3))
  assert config.dataset.min_resize == 10
  # Our normalisation of uint8 pixels equals the HF processor arithmetic.
  pixels = np.arange(256, dtype=np.float32)
  ours = (pixels / 255 - 0.75) / 0.25
  hf = ((pixels / 127.5 - 1) - 0.5) / 0.5
  np.testing.assert_allclose(ours, hf, atol=1e-5)


def test_vivit_export_import_identity_and_loads_in_transformers(tmp_path):
  hf_model = vivit_hf()
  hf_model.save_pretrained(tmp_path / 'hf')
  config, params = convert.load_huggingface(str(tmp_path / 'hf'))
  config.dataset.label_names = ('run', 'jump', 'swim')
  assert_export_import_identity(config, params, tmp_path / 'out')
  again = transformers.VivitForVideoClassification.from_pretrained(tmp_path / 'out').eval()
  assert again.config.id2label[1] == 'jump'
  x = video(2)
  assert_close(run_hf(again, x).logits.numpy(), run_hf(hf_model, x).logits.numpy(), 'logits')


@pytest.mark.parametrize('attention_type', ['divided_space_time', 'joint_space_time',
                                            'space_only'])
def test_timesformer_import_matches_pytorch(tmp_path, attention_type):
  hf_model = timesformer_hf(attention_type)
  hf_model.save_pretrained(tmp_path / 'hf')
  config, params = convert.load_huggingface(str(tmp_path / 'hf'))
  assert (config.model.name, config.model.attention_type) == ('timesformer', attention_type)
  assert config.model.layer_norm_epsilon == 1e-5 and not config.model.gelu_approximate
  x = video(3)
  ref = run_hf(hf_model, x)
  logits, inter = run_ours(config, params, x)
  hf_states = [h.numpy() for h in ref.hidden_states]   # embeddings, then each layer.
  ours = block_outputs(inter)
  for i, h in enumerate(ours):
    if attention_type != 'space_only':   # ours time-major (t, s), HF space-major (s, t).
      h = np.concatenate([h[:, :1], einops.rearrange(h[:, 1:], 'b (t s) d -> b (s t) d',
                                                     t=T)], axis=1)
    assert_close(h, hf_states[i + 1], f'block {i} output')
  if attention_type == 'space_only':
    # HF classifies every frame; the original (and ours) averages the frames first.
    tf = hf_model.timesformer
    last = torch.from_numpy(hf_states[-1]).reshape(B, T, *hf_states[-1].shape[1:]).mean(1)
    with torch.no_grad():
      expected = hf_model.classifier(tf.layernorm(last)[:, 0]).numpy()
  else:
    expected = ref.logits.numpy()
  assert_close(logits, expected, 'logits')


def test_timesformer_export_import_identity(tmp_path):
  hf_model = timesformer_hf('divided_space_time', act='gelu_new')
  hf_model.save_pretrained(tmp_path / 'hf')
  config, params = convert.load_huggingface(str(tmp_path / 'hf'))
  assert config.model.gelu_approximate
  assert_export_import_identity(config, params, tmp_path / 'out')
  again = transformers.TimesformerForVideoClassification.from_pretrained(
      tmp_path / 'out').eval()
  x = video(4)
  assert_close(run_hf(again, x).logits.numpy(), run_hf(hf_model, x).logits.numpy(), 'logits')


def test_bad_inputs_give_clear_errors(tmp_path):
  hf_model = vivit_hf()
  hf_model.save_pretrained(tmp_path / 'hf')
  config, params = convert.load_huggingface(str(tmp_path / 'hf'))
  config.model.attention_type = 'factorised_encoder'
  with pytest.raises(convert.ConversionError, match='Model 1'):
    convert.save_huggingface(config, params, str(tmp_path / 'out'))
  os.remove(tmp_path / 'hf' / 'model.safetensors')
  (tmp_path / 'hf' / 'pytorch_model.bin').write_bytes(b'not read')
  with pytest.raises(convert.ConversionError, match='pickle'):
    convert.load_huggingface(str(tmp_path / 'hf'))
  with pytest.raises(convert.ConversionError, match='config.json'):
    convert.load_huggingface(str(tmp_path))
