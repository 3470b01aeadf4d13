"""Hugging Face transformers checkpoints, both ways: ViViT, TimeSformer and VideoMAE.

A `save_pretrained` directory holds `config.json` and `model.safetensors` (or shards
listed in `model.safetensors.index.json`); weights are read with safetensors (never
pickle: a directory with only `pytorch_model.bin` is refused).

  load_huggingface(path) -> (config, params)   VivitForVideoClassification / VivitModel /
                                               TimesformerForVideoClassification /
                                               TimesformerModel -> this project's
                                               'vivit' (Model 1) / 'timesformer' model.
  save_huggingface(config, params, out_dir)    the inverse (config.json,
                                               model.safetensors, preprocessor_config.json).
  VideoMAEForPreTraining <-> 'videomae' (task 'masked_pretraining', models/videomae.py);
  VideoMAEForVideoClassification <-> ViViT Model 1 with classifier 'gap_fc_norm'. HF's
  fixed sinusoid encoder position table becomes our learned embedding's value (export
  refuses any other value); HF has no key bias (softmax ignores it: dropped on export,
  zero on import); use_mean_pooling must be False for pretraining (the encoder's final
  LayerNorm) and True for classification (no CLS token to read).

What conversion handles (HF name -> ours; `weight` [out, in] -> `kernel` [in, out]):
  patch embedding  Conv3d [D, C, t, ph, pw] -> embedding/kernel [t, ph, pw, C, D]
                   (ViViT; tubelet t = 1 becomes `uniform_frame` [ph, pw, C, D]),
                   Conv2d [D, C, ph, pw] -> [ph, pw, C, D] (TimeSformer).
  attention        ViViT's separate query/key/value [H*Dh, D] -> kernel [D, H, Dh];
                   TimeSformer's fused `qkv` [3*H*Dh, D] (rows ordered (3, H, Dh)) split
                   into query/key/value; output `dense` [D, H*Dh] -> out/kernel [H, Dh, D].
                   Newer transformers names (`layers.i.attention.q_proj`, `mlp.fc1`, ...)
                   are read too; files are written with the names of save_pretrained.
  token order      ViViT: time-major (t, h, w) in both. TimeSformer: HF/original order
                   tokens space-major (s, t), ours time-major (t, s); the parameters do
                   not depend on it (spatial `pos_embed`, temporal `time_embed`), only the
                   hidden states differ by that permutation.
  numerics         `layer_norm_eps` <-> model.layer_norm_epsilon; `hidden_act` 'gelu' (exact
                   erf) or 'gelu_fast' / 'gelu_new' / 'gelu_pytorch_tanh' (tanh
                   approximation) <-> model.gelu_approximate.
  heads            `classifier` <-> output_projection; VivitModel's `pooler` (Dense + tanh
                   on CLS) <-> pre_logits (model.representation_size). A base model
                   without a classifier gets a zero head of `num_labels` classes.
  preprocessing    HF pixel values are ((x * rescale_factor + offset) - image_mean) /
                   image_std for x in [0, 255]; ours (x / 255 - mean_rgb) / std_rgb, so
                   mean_rgb = (image_mean - offset) / (255 rescale_factor) and
                   std_rgb = image_std / (255 rescale_factor). Read from
                   preprocessor_config.json / video_preprocessor_config.json when present,
                   else the processor defaults of the family: ViViT x / 127.5 - 1 then
                   (. - 0.5) / 0.5 (pixels in [-3, 1]: mean_rgb 0.75, std_rgb 0.25);
                   TimeSformer x / 255 then ImageNet mean/std. Export writes a
                   preprocessor_config.json that reproduces dataset.mean_rgb/std_rgb.

Differences: HF's `space_only` TimeSformer classifies every frame ([B*T, K] logits); ours
(and the original facebookresearch code) average the frames' tokens before the final
LayerNorm and give [B, K]. Export -> import is the identity on config and params.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping, Optional

import ml_collections
import numpy as np
from absl import logging

from vivit_jax.convert.common import (ConversionError, Flat, base_config, flatten,
                                      unflatten)
from vivit_jax.models import videomae, vivit

ARCHITECTURES = {
    'VivitForVideoClassification': 'vivit', 'VivitModel': 'vivit',
    'TimesformerForVideoClassification': 'timesformer', 'TimesformerModel': 'timesformer',
    'VideoMAEForPreTraining': 'videomae', 'VideoMAEForVideoClassification': 'videomae',
}
_PREFIX = {'vivit': 'vivit.', 'timesformer': 'timesformer.', 'videomae': 'videomae.'}
_TANH_GELUS = ('gelu_fast', 'gelu_new', 'gelu_pytorch_tanh')
_EXACT_GELUS = ('gelu', 'gelu_python')

# Processor defaults: (rescale_factor, offset, image_mean, image_std).
_DEFAULT_PREPROCESSING = {
    'vivit': (1 / 127.5, -1.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    'timesformer': (1 / 255, 0.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    'videomae': (1 / 255, 0.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_PROCESSOR_CLASS = {'vivit': 'VivitImageProcessor', 'timesformer': 'VideoMAEImageProcessor',
                    'videomae': 'VideoMAEImageProcessor'}

# transformers >= 5 module names -> the save_pretrained (legacy) names.
_NEW_NAMES = ((r'\blayers\.(\d+)\.', r'encoder.layer.\1.'),
              (r'attention\.([qkv])_proj\.', lambda m: 'attention.attention.' +
               {'q': 'query', 'k': 'key', 'v': 'value'}[m.group(1)] + '.'),
              (r'attention\.o_proj\.', 'attention.output.dense.'),
              (r'mlp\.fc1\.', 'intermediate.dense.'), (r'mlp\.fc2\.', 'output.dense.'),
              # VideoMAE's separate query / value biases (older files): q_bias, v_bias.
              (r'attention\.attention\.([qv])_bias$', lambda m: 'attention.attention.' +
               {'q': 'query', 'v': 'value'}[m.group(1)] + '.bias'))


# ---------------------------------------------------------------------------------
# Weight layouts. Each converter maps {hf suffix: array} <-> {our suffix: array}.

def _linear_in(t, **_):
  out = {'kernel': t['weight'].T}
  if 'bias' in t:
    out['bias'] = t['bias']
  return out


def _linear_out(p, **_):
  return {'weight': p['kernel'].T, **({'bias': p['bias']} if 'bias' in p else {})}


def _norm_in(t, **_):
  return {'scale': t['weight'], 'bias': t['bias']}


def _norm_out(p, **_):
  return {'weight': p['scale'], 'bias': p['bias']}


def _heads_in(t, heads, **_):
  """query/key/value Linear [H*Dh, D] -> kernel [D, H, Dh], bias [H, Dh]."""
  w = t['weight']
  kernel = w.T.reshape(w.shape[1], heads, -1)
  bias = t.get('bias', np.zeros(w.shape[0], w.dtype))
  return {'kernel': kernel, 'bias': bias.reshape(heads, -1)}


def _heads_out(p, **_):
  d = p['kernel'].shape[0]
  return {'weight': p['kernel'].reshape(d, -1).T, 'bias': p['bias'].reshape(-1)}


def _proj_in(t, heads, **_):
  """Attention output Linear [D, H*Dh] -> kernel [H, Dh, D]."""
  w = t['weight']
  return {'kernel': w.T.reshape(heads, -1, w.shape[0]), 'bias': t['bias']}


def _proj_out(p, **_):
  k = p['kernel']
  return {'weight': k.reshape(-1, k.shape[-1]).T, 'bias': p['bias']}


def _qkv_in(t, heads, **_):
  """Fused qkv Linear [3*H*Dh, D] (rows (3, H, Dh)) -> query/key/value kernels."""
  w = t['weight']
  d = w.shape[1]
  w = w.reshape(3, heads, -1, d)
  b = t.get('bias', np.zeros(w.shape[:3], w.dtype)).reshape(3, heads, -1)
  out = {}
  for i, name in enumerate(('query', 'key', 'value')):
    out[f'{name}/kernel'] = np.transpose(w[i], (2, 0, 1))
    out[f'{name}/bias'] = b[i]
  return out


def _qkv_out(p, **_):
  ws = [_heads_out({'kernel': p[f'{n}/kernel'], 'bias': p[f'{n}/bias']})
        for n in ('query', 'key', 'value')]
  return {'weight': np.concatenate([w['weight'] for w in ws]),
          'bias': np.concatenate([w['bias'] for w in ws])}


def _conv_in(t, **_):
  """Conv weight [D, C, *k] -> kernel [*k, C, D]."""
  w = t['weight']
  order = tuple(range(2, w.ndim)) + (1, 0)
  return {'kernel': np.transpose(w, order), 'bias': t['bias']}


def _conv_out(p, **_):
  k = p['kernel']
  order = (k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2))
  return {'weight': np.transpose(k, order), 'bias': p['bias']}


def _param_in(t, **_):
  return {'': t['']}


def _param_out(p, **_):
  return {'': p['']}


_KINDS = {'linear': (_linear_in, _linear_out), 'norm': (_norm_in, _norm_out),
          'heads': (_heads_in, _heads_out), 'proj': (_proj_in, _proj_out),
          'qkv': (_qkv_in, _qkv_out), 'conv': (_conv_in, _conv_out),
          'param': (_param_in, _param_out)}


def _blocks(hf_prefix: str, ours_prefix: str, num_layers: int):
  """[(hf name, our path, kind)] of `num_layers` ViT-style blocks with separate
  query/key/value projections (ViViT, VideoMAE encoder and decoder)."""
  rows = []
  for i in range(num_layers):
    hf, ours = f'{hf_prefix}{i}.', f'{ours_prefix}encoderblock_{i}/'
    attn = ours + 'MultiHeadDotProductAttention_0'
    rows += [(hf + f'attention.attention.{n}', f'{attn}/{n}', 'heads')
             for n in ('query', 'key', 'value')]
    rows += [(hf + 'attention.output.dense', f'{attn}/out', 'proj'),
             (hf + 'layernorm_before', ours + 'LayerNorm_0', 'norm'),
             (hf + 'layernorm_after', ours + 'LayerNorm_1', 'norm'),
             (hf + 'intermediate.dense', ours + 'MlpBlock_0/Dense_0', 'linear'),
             (hf + 'output.dense', ours + 'MlpBlock_0/Dense_1', 'linear')]
  return rows


def _videomae_table(m: ml_collections.ConfigDict):
  """VideoMAEForPreTraining -> models/videomae.py, or VideoMAEForVideoClassification ->
  ViViT Model 1 with the 'gap_fc_norm' head (names without the 'videomae.' prefix). The
  encoder's fixed sinusoid position table is not a weight (see load_huggingface)."""
  rows = ([('embeddings.patch_embeddings.projection', 'embedding', 'conv')]
          + _blocks('encoder.layer.', 'Transformer/', m.num_layers))
  if m.name == 'vivit':
    return rows + [('fc_norm', 'fc_norm', 'norm'),
                   ('classifier', 'output_projection', 'linear')]
  return (rows
          + [('layernorm', 'Transformer/encoder_norm', 'norm'),
             ('encoder_to_decoder', 'decoder_embed', 'linear'),
             ('mask_token', 'mask_token', 'param')]
          + _blocks('decoder.decoder_layers.', 'Decoder/', m.decoder_num_layers)
          + [('decoder.norm', 'Decoder/decoder_norm', 'norm'),
             ('decoder.head', 'decoder_pred', 'linear')])


def _table(family: str, m: ml_collections.ConfigDict, *, pooler: bool, head: bool):
  """[(hf name, our path, kind)] of one model; names without the family prefix."""
  if family == 'videomae':
    return _videomae_table(m)
  rows = [('embeddings.patch_embeddings.projection', 'embedding', 'conv'),
          ('embeddings.cls_token', 'cls', 'param')]
  if family == 'vivit':
    rows.append(('embeddings.position_embeddings', 'Transformer/posembed_input/'
                 'pos_embedding', 'param'))
  else:
    rows.append(('embeddings.position_embeddings', 'pos_embed', 'param'))
    if m.attention_type != 'space_only':
      rows.append(('embeddings.time_embeddings', 'time_embed', 'param'))
  enc = 'Transformer/' if family == 'vivit' else ''
  for i in range(m.num_layers):
    hf, ours = f'encoder.layer.{i}.', f'{enc}encoderblock_{i}/'
    attn = ours + 'MultiHeadDotProductAttention_0'
    if family == 'vivit':
      rows += [(hf + f'attention.attention.{n}', f'{attn}/{n}', 'heads')
               for n in ('query', 'key', 'value')]
    else:
      rows.append((hf + 'attention.attention.qkv', attn, 'qkv'))
    rows += [(hf + 'attention.output.dense', f'{attn}/out', 'proj'),
             (hf + 'layernorm_before', ours + 'LayerNorm_0', 'norm'),
             (hf + 'layernorm_after', ours + 'LayerNorm_1', 'norm'),
             (hf + 'intermediate.dense', ours + 'MlpBlock_0/Dense_0', 'linear'),
             (hf + 'output.dense', ours + 'MlpBlock_0/Dense_1', 'linear')]
    if family == 'timesformer' and m.attention_type == 'divided_space_time':
      tattn = ours + 'MultiHeadDotProductAttention_time'
      rows += [(hf + 'temporal_layernorm', ours + 'LayerNorm_time', 'norm'),
               (hf + 'temporal_attention.attention.qkv', tattn, 'qkv'),
               (hf + 'temporal_attention.output.dense', f'{tattn}/out', 'proj'),
               (hf + 'temporal_dense', ours + 'temporal_fc', 'linear')]
  rows.append(('layernorm', f'{enc}encoder_norm' if enc else 'encoder_norm', 'norm'))
  if pooler:
    rows.append(('pooler.dense', 'pre_logits', 'linear'))
  if head:
    rows.append(('classifier', 'output_projection', 'linear'))
  return rows


# ---------------------------------------------------------------------------------
# Reading.

def read_safetensors(path: str) -> Flat:
  """{name: np.ndarray} of a save_pretrained directory's safetensors file(s)."""
  from safetensors.numpy import load_file
  single = os.path.join(path, 'model.safetensors')
  index = os.path.join(path, 'model.safetensors.index.json')
  if os.path.isfile(single):
    return dict(load_file(single))
  if os.path.isfile(index):
    with open(index) as f:
      shards = sorted(set(json.load(f)['weight_map'].values()))
    out = {}
    for shard in shards:
      out.update(load_file(os.path.join(path, shard)))
    return out
  if os.path.exists(os.path.join(path, 'pytorch_model.bin')):
    raise ConversionError(
        f'{path} holds only pytorch_model.bin, a pickle file, which this project does not '
        'load (pickle can run code). Re-save it as safetensors with transformers: '
        'Model.from_pretrained(path).save_pretrained(out, safe_serialization=True).')
  raise ConversionError(f'{path} has no model.safetensors (or model.safetensors.index.json): '
                        'expected a Hugging Face save_pretrained directory.')


def _read_json(path: str) -> Optional[dict]:
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _canonical_names(weights: Flat, family: str) -> tuple[Flat, bool]:
  """Strips the family prefix and maps newer module names to save_pretrained ones.

  Returns (weights, had_prefix)."""
  prefix = _PREFIX[family]
  had_prefix = any(k.startswith(prefix) for k in weights)
  out = {}
  for key, value in weights.items():
    key = key[len(prefix):] if key.startswith(prefix) else key
    for pattern, repl in _NEW_NAMES:
      key = re.sub(pattern, repl, key)
    out[key] = value
  return out, had_prefix


def _square(value, what: str) -> int:
  if isinstance(value, (list, tuple)):
    if len(set(value)) != 1:
      raise ConversionError(f'{what}={value}: only square sizes are supported.')
    value = value[0]
  return int(value)


def _gelu_approximate(act: str) -> bool:
  if act in _TANH_GELUS:
    return True
  if act in _EXACT_GELUS:
    return False
  raise ConversionError(f"hidden_act={act!r} is not supported: expected one of "
                        f'{list(_EXACT_GELUS + _TANH_GELUS)}.')


def preprocessing(path: str, family: str) -> dict:
  """The normalisation (mean_rgb, std_rgb for pixels in [0, 1]) and resize a checkpoint
  expects, from its processor config or the family's processor defaults (module doc)."""
  rescale, offset, mean, std = _DEFAULT_PREPROCESSING[family]
  out = {}
  for name in ('preprocessor_config.json', 'video_preprocessor_config.json'):
    proc = _read_json(os.path.join(path, name))
    if proc is None:
      continue
    kind = proc.get('image_processor_type') or proc.get('video_processor_type') or ''
    do_rescale = proc.get('do_rescale', True)
    rescale = proc.get('rescale_factor', rescale) if do_rescale else 1.0
    if family == 'vivit':   # VivitImageProcessor's `offset` (x * r - 1); the video
      # processor always offsets.
      offset = -1.0 if do_rescale and (kind == 'VivitVideoProcessor' or
                                       proc.get('offset', True)) else 0.0
    if proc.get('do_normalize', True):
      mean, std = proc.get('image_mean', mean), proc.get('image_std', std)
    else:
      mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    size = proc.get('size') or {}
    if isinstance(size, dict) and 'shortest_edge' in size:
      out['min_resize'] = int(size['shortest_edge'])
    break
  scale = 255.0 * float(rescale)
  out['mean_rgb'] = tuple(round(float((m - offset) / scale), 10) for m in mean)
  out['std_rgb'] = tuple(round(float(s / scale), 10) for s in std)
  return out


def config_from_hf(hf: Mapping[str, Any], family: str, *, pooler: bool
                   ) -> ml_collections.ConfigDict:
  """This project's full config for a Hugging Face config.json dict."""
  config = base_config()
  m, d = config.model, config.dataset
  m.name = family
  m.hidden_size = int(hf.get('hidden_size', 768))
  m.num_layers = int(hf.get('num_hidden_layers', 12))
  m.num_heads = int(hf.get('num_attention_heads', 12))
  m.mlp_dim = int(hf.get('intermediate_size', 3072))
  m.layer_norm_epsilon = float(hf.get('layer_norm_eps', 1e-6))
  m.dropout_rate = float(hf.get('hidden_dropout_prob', 0.0))
  m.attention_dropout_rate = float(hf.get('attention_probs_dropout_prob', 0.0))
  m.classifier = 'token'
  m.representation_size = None
  d.crop_size = _square(hf.get('image_size', 224), 'image_size')
  if family == 'vivit':
    m.gelu_approximate = _gelu_approximate(hf.get('hidden_act', 'gelu_fast'))
    t, ph, pw = (int(v) for v in hf.get('tubelet_size', (2, 16, 16)))
    m.attention_type = 'spatio_temporal'
    m.patch_size = (ph, pw)
    m.embedding, m.temporal_patch_size = ('uniform_frame', 1) if t == 1 else ('tubelet', t)
    d.num_frames = int(hf.get('num_frames', 32))
    if pooler:
      m.representation_size = int(hf.get('pooler_output_size') or m.hidden_size)
      if hf.get('pooler_act', 'tanh') != 'tanh':
        raise ConversionError(f"pooler_act={hf['pooler_act']!r}: only 'tanh' is supported.")
  elif family == 'videomae':
    m.gelu_approximate = _gelu_approximate(hf.get('hidden_act', 'gelu'))
  else:
    m.gelu_approximate = _gelu_approximate(hf.get('hidden_act', 'gelu'))
    p = _square(hf.get('patch_size', 16), 'patch_size')
    m.attention_type = hf.get('attention_type', 'divided_space_time')
    m.patch_size = (p, p)
    m.stochastic_depth = float(hf.get('drop_path_rate', 0.0))
    d.num_frames = int(hf.get('num_frames', 8))
  if family == 'videomae' and _videomae_config(config, hf) == 'masked_pretraining':
    return config
  id2label = hf.get('id2label') or {}
  d.num_classes = len(id2label) if id2label else int(hf.get('num_labels', 2))
  names = [id2label.get(str(i), id2label.get(i, '')) for i in range(d.num_classes)]
  if id2label and names != [f'LABEL_{i}' for i in range(d.num_classes)]:
    d.label_names = tuple(names)
  return config


def _videomae_config(config: ml_collections.ConfigDict, hf: Mapping[str, Any]) -> str:
  """A VideoMAE config.json into `config`; returns its task. VideoMAEForPreTraining:
  'masked_pretraining', model 'videomae' (the mask ratio is not in the file: the model's
  default 0.9 tube masking); VideoMAEForVideoClassification: 'classification', ViViT
  Model 1 with VideoMAE's head (classifier 'gap_fc_norm')."""
  classification = 'VideoMAEForVideoClassification' in (hf.get('architectures') or [])
  mean_pooling = hf.get('use_mean_pooling', True)
  if mean_pooling != classification:
    raise ConversionError(
        f'VideoMAE{"ForVideoClassification" if classification else "ForPreTraining"} with '
        f'use_mean_pooling={mean_pooling} is not supported: classifiers here pool the '
        'tokens (no CLS to read), pretraining encoders end with their LayerNorm '
        "(transformers' converted checkpoints are so).")
  if not hf.get('qkv_bias', True):
    raise ConversionError('VideoMAE with qkv_bias=False is not supported.')
  if int(hf.get('num_channels', 3)) != 3:
    raise ConversionError(f"num_channels={hf['num_channels']}: only RGB (3) is supported.")
  m, d = config.model, config.dataset
  p = _square(hf.get('patch_size', 16), 'patch_size')
  m.patch_size, m.temporal_patch_size = (p, p), int(hf.get('tubelet_size', 2))
  m.embedding, m.attention_type = 'tubelet', 'spatio_temporal'
  d.num_frames = int(hf.get('num_frames', 16))
  if classification:
    m.name, m.classifier = 'vivit', vivit.FC_NORM
    return 'classification'
  config.task = 'masked_pretraining'
  videomae.pretraining_model_config(
      m, norm_pix_loss=bool(hf.get('norm_pix_loss', True)),
      decoder_hidden_size=int(hf.get('decoder_hidden_size', 384)),
      decoder_num_layers=int(hf.get('decoder_num_hidden_layers', 4)),
      decoder_num_heads=int(hf.get('decoder_num_attention_heads', 6)),
      decoder_mlp_dim=int(hf.get('decoder_intermediate_size', 1536)))
  return 'masked_pretraining'


def load_huggingface(path: str) -> tuple[ml_collections.ConfigDict, dict]:
  """(config, params) of a Hugging Face ViViT / TimeSformer save_pretrained directory.

  `params` is the tree of `create_model(config.model, config.dataset.num_classes)` for
  video float32[B, config.dataset.num_frames, crop_size, crop_size, 3] normalised with
  config.dataset.mean_rgb/std_rgb. Raises ConversionError naming any weight it cannot map.
  """
  hf = _read_json(os.path.join(path, 'config.json'))
  if hf is None:
    raise ConversionError(f'{path} has no config.json: expected a Hugging Face '
                          'save_pretrained directory.')
  arch = (hf.get('architectures') or [None])[0]
  model_type = hf.get('model_type')
  family = ARCHITECTURES.get(arch) or (model_type if model_type in _PREFIX else None)
  if family is None:
    raise ConversionError(f'{path}: architecture {arch!r} (model_type {model_type!r}) is '
                          f'not supported: expected one of {sorted(ARCHITECTURES)}.')
  weights, _ = _canonical_names(read_safetensors(path), family)
  head = 'classifier.weight' in weights
  pooler = 'pooler.dense.weight' in weights
  config = config_from_hf(hf, family, pooler=pooler)
  prep = preprocessing(path, family)
  if 'min_resize' not in prep:   # the processors' defaults: 256 -> 224 / 224 -> 224.
    ratio = 256 / 224 if family == 'vivit' else 1.0
    prep['min_resize'] = int(round(config.dataset.crop_size * ratio))
  config.dataset.update(prep)
  config.experiment_name = f'hf_{family}'

  m = config.model
  used, flat = set(), {}
  for hf_name, ours, kind in _table(family, m, pooler=pooler, head=head):
    names = [k for k in weights if k == hf_name or k.startswith(hf_name + '.')]
    if not names:
      raise ConversionError(f'{path}: missing weight {hf_name!r} for {ours}.')
    tensors = {k[len(hf_name) + 1:]: np.asarray(weights[k], np.float32) for k in names}
    used.update(names)
    for suffix, value in _KINDS[kind][0](tensors, heads=m.num_heads).items():
      flat[f'{ours}/{suffix}' if suffix else ours] = value
  unused = sorted(set(weights) - used)
  if unused:
    raise ConversionError(f'{path}: {len(unused)} weights have no counterpart in the '
                          f"{family} model built from its config.json: {unused[:8]}.")
  if family == 'vivit' and m.embedding == 'uniform_frame':
    flat['embedding/kernel'] = flat['embedding/kernel'][0]
  if family == 'videomae':   # the fixed sinusoid table as the learned embedding's value.
    grid = videomae.token_grid(m, num_frames=config.dataset.num_frames,
                               crop_size=config.dataset.crop_size)
    flat['Transformer/posembed_input/pos_embedding'] = videomae.sinusoid_table(
        int(np.prod(grid)), m.hidden_size)[None]
    head = True                # (pretraining: no classifier, and none to add.)
  if not head:
    width = m.representation_size or m.hidden_size
    flat['output_projection/kernel'] = np.zeros((width, config.dataset.num_classes),
                                                np.float32)
    flat['output_projection/bias'] = np.zeros((config.dataset.num_classes,), np.float32)
  logging.info('huggingface: %s: %s -> %s %s, %d layers, width %d, %d classes.', path,
               arch, family, m.attention_type, m.num_layers, m.hidden_size,
               config.dataset.num_classes)
  return config, unflatten(flat)


# ---------------------------------------------------------------------------------
# Writing.

def config_to_hf(config: ml_collections.ConfigDict, *, pooler: bool, head: bool) -> dict:
  """The Hugging Face config.json dict of this project's config (ViViT Model 1 or
  TimeSformer); raises ConversionError for models Hugging Face cannot represent."""
  m, d = config.model, config.dataset
  family = m.name
  if family not in _PREFIX:
    raise ConversionError(f"config.model.name={family!r}: Hugging Face export supports "
                          "'vivit' and 'timesformer'.")
  if m.get('classifier', 'token') != 'token':
    raise ConversionError(f"config.model.classifier={m.classifier!r}: Hugging Face "
                          "models classify the CLS token ('token').")
  ph, pw = tuple(m.patch_size)
  hf = {
      'model_type': family, 'image_size': int(d.crop_size), 'num_channels': 3,
      'num_frames': int(d.num_frames), 'hidden_size': int(m.hidden_size),
      'num_hidden_layers': int(m.num_layers), 'num_attention_heads': int(m.num_heads),
      'intermediate_size': int(m.mlp_dim),
      'hidden_dropout_prob': float(m.get('dropout_rate', 0.0)),
      'attention_probs_dropout_prob': float(m.get('attention_dropout_rate', 0.0)),
      'layer_norm_eps': float(m.get('layer_norm_epsilon', 1e-6)),
      'initializer_range': 0.02, 'qkv_bias': True, 'dtype': 'float32',
  }
  approx = bool(m.get('gelu_approximate', False))
  if family == 'vivit':
    if m.attention_type != 'spatio_temporal':
      raise ConversionError(
          f'config.model.attention_type={m.attention_type!r}: Hugging Face ViViT is '
          "Model 1 ('spatio_temporal') only.")
    t = m.temporal_patch_size if m.embedding == 'tubelet' else 1
    hf.update(tubelet_size=[int(t), int(ph), int(pw)],
              hidden_act='gelu_fast' if approx else 'gelu', pooler_act='tanh',
              pooler_output_size=int(m.representation_size or m.hidden_size))
    arch = 'VivitForVideoClassification' if head else 'VivitModel'
  else:
    if ph != pw:
      raise ConversionError(f'config.model.patch_size={m.patch_size}: Hugging Face '
                            'TimeSformer needs square patches.')
    hf.update(patch_size=int(ph), attention_type=m.attention_type,
              hidden_act='gelu_new' if approx else 'gelu',
              # transformers 5 types this field `int`: write 0 as an int.
              drop_path_rate=float(m.get('stochastic_depth', 0.0)) or 0)
    arch = 'TimesformerForVideoClassification'
  if m.get('representation_size') and not pooler:
    raise ConversionError('config.model.representation_size is set: only VivitModel '
                          '(its pooler) has a pre-logits layer.')
  names = list(d.get('label_names') or [f'LABEL_{i}' for i in range(d.num_classes)])
  hf['architectures'] = [arch]
  hf['id2label'] = {str(i): n for i, n in enumerate(names)}
  hf['label2id'] = {n: i for i, n in enumerate(names)}
  return hf


def _write_hf_dir(out_dir: str, flat: dict, used: set, tensors: dict, hf: dict,
                  processor: dict) -> str:
  """Writes a save_pretrained directory (model.safetensors, config.json,
  preprocessor_config.json) after checking that every param of `flat` was `used`."""
  from safetensors.numpy import save_file
  unused = sorted(set(flat) - used)
  if unused:
    raise ConversionError(f'export: params {unused[:8]} have no Hugging Face counterpart.')
  os.makedirs(out_dir, exist_ok=True)
  save_file(tensors, os.path.join(out_dir, 'model.safetensors'), metadata={'format': 'pt'})
  with open(os.path.join(out_dir, 'config.json'), 'w') as f:
    json.dump(hf, f, indent=2, sort_keys=True)
  with open(os.path.join(out_dir, 'preprocessor_config.json'), 'w') as f:
    json.dump(processor, f, indent=2, sort_keys=True)
  logging.info('huggingface: wrote %s (%s, %d tensors).', out_dir, hf['architectures'][0],
               len(tensors))
  return os.path.abspath(out_dir)


def _processor_config(config: ml_collections.ConfigDict) -> dict:
  """An image processor config reproducing dataset.mean_rgb/std_rgb (pixels / 255)."""
  d = config.dataset
  return {
      'image_processor_type': _PROCESSOR_CLASS[config.model.name],
      'do_resize': True, 'size': {'shortest_edge': int(d.get('min_resize') or d.crop_size)},
      'do_center_crop': True, 'crop_size': {'height': int(d.crop_size),
                                            'width': int(d.crop_size)},
      'do_rescale': True, 'rescale_factor': 1 / 255, 'offset': False,
      'do_normalize': True, 'image_mean': [float(v) for v in d.mean_rgb],
      'image_std': [float(v) for v in d.std_rgb], 'resample': 2,
  }


def save_huggingface(config: ml_collections.ConfigDict, params: Mapping[str, Any],
                     out_dir: str) -> str:
  """Writes `params` of `config`'s model as a Hugging Face save_pretrained directory
  (config.json, model.safetensors, preprocessor_config.json); returns the directory.

  ViViT (Model 1, token classifier) becomes VivitForVideoClassification, or VivitModel
  when the model has pre-logits (the pooler); TimeSformer becomes
  TimesformerForVideoClassification.
  """

  m = config.model
  if m.name == 'videomae' or m.get('classifier') == vivit.FC_NORM:
    return _save_videomae(config, params, out_dir)
  flat = flatten(params)
  pooler = 'pre_logits/kernel' in flat
  head = not (pooler and m.name == 'vivit')
  hf = config_to_hf(config, pooler=pooler, head=head)
  if m.name == 'vivit' and m.embedding == 'uniform_frame':
    flat['embedding/kernel'] = flat['embedding/kernel'][None]
  prefix = _PREFIX[m.name] if head else ''
  tensors, used = {}, set()
  for hf_name, ours, kind in _table(m.name, m, pooler=pooler, head=head):
    group = {k[len(ours) + 1:] if k != ours else '': v for k, v in flat.items()
             if k == ours or k.startswith(ours + '/')}
    if not group:
      raise ConversionError(f'export: the params have no {ours} (for {hf_name}).')
    used.update(f'{ours}/{k}' if k else ours for k in group)
    for suffix, value in _KINDS[kind][1](group).items():
      name = hf_name if hf_name in ('classifier',) or not prefix else prefix + hf_name
      name = f'{name}.{suffix}' if suffix else name
      tensors[name] = np.ascontiguousarray(np.asarray(value, np.float32))
  if not head:   # VivitModel: the zero head load_huggingface added is not written.
    for k in ('output_projection/kernel', 'output_projection/bias'):
      if np.any(flat.get(k, 0.0)):
        raise ConversionError(
            'export: the model has both pre-logits (representation_size) and a trained '
            'output_projection; Hugging Face ViViT has either the pooler (VivitModel) or '
            'a classifier on the CLS token (VivitForVideoClassification), not both.')
      used.add(k)
  return _write_hf_dir(out_dir, flat, used, tensors, hf, _processor_config(config))


def _videomae_hf_config(config: ml_collections.ConfigDict) -> dict:
  """The config.json of VideoMAEForPreTraining (model 'videomae') or
  VideoMAEForVideoClassification (ViViT Model 1, 'gap_fc_norm')."""
  m, d = config.model, config.dataset
  classification = m.name == 'vivit'
  if classification and (m.attention_type != 'spatio_temporal' or m.embedding != 'tubelet'):
    raise ConversionError('export: VideoMAEForVideoClassification is a tubelet ViViT Model 1.')
  ph, pw = tuple(m.patch_size)
  if ph != pw:
    raise ConversionError(f'config.model.patch_size={m.patch_size}: Hugging Face VideoMAE '
                          'needs square patches.')
  hf = {
      'model_type': 'videomae', 'image_size': int(d.crop_size), 'patch_size': int(ph),
      'num_channels': 3, 'num_frames': int(d.num_frames),
      'tubelet_size': int(m.temporal_patch_size), 'hidden_size': int(m.hidden_size),
      'num_hidden_layers': int(m.num_layers), 'num_attention_heads': int(m.num_heads),
      'intermediate_size': int(m.mlp_dim),
      'hidden_act': 'gelu_new' if m.get('gelu_approximate', False) else 'gelu',
      'hidden_dropout_prob': float(m.get('dropout_rate', 0.0)),
      'attention_probs_dropout_prob': float(m.get('attention_dropout_rate', 0.0)),
      'layer_norm_eps': float(m.get('layer_norm_epsilon', 1e-6)), 'qkv_bias': True,
      'initializer_range': 0.02, 'use_mean_pooling': classification, 'dtype': 'float32',
  }
  if classification:
    names = list(d.get('label_names') or [f'LABEL_{i}' for i in range(d.num_classes)])
    hf.update(architectures=['VideoMAEForVideoClassification'],
              id2label={str(i): n for i, n in enumerate(names)},
              label2id={n: i for i, n in enumerate(names)})
  else:
    hf.update(architectures=['VideoMAEForPreTraining'],
              norm_pix_loss=bool(m.get('norm_pix_loss', True)),
              decoder_hidden_size=int(m.decoder_hidden_size),
              decoder_num_hidden_layers=int(m.decoder_num_layers),
              decoder_num_attention_heads=int(m.decoder_num_heads),
              decoder_intermediate_size=int(m.decoder_mlp_dim))
  return hf


def _save_videomae(config, params, out_dir: str) -> str:
  """save_huggingface for VideoMAE (see `_videomae_table`). The encoder's position
  embedding must be VideoMAE's fixed sinusoid table (HF has no learned one); the key
  projection's bias is dropped (HF VideoMAE has none; softmax ignores it: exact)."""

  m, d = config.model, config.dataset
  hf = _videomae_hf_config(config)
  flat = flatten(params)
  pos_path = 'Transformer/posembed_input/pos_embedding'
  grid = videomae.token_grid(m, num_frames=d.num_frames, crop_size=d.crop_size)
  table = videomae.sinusoid_table(int(np.prod(grid)), m.hidden_size)[None]
  if pos_path not in flat or not np.allclose(flat[pos_path], table, atol=1e-6):
    raise ConversionError(
        f'export: {pos_path} is not the fixed sinusoid table Hugging Face VideoMAE uses '
        '(it was trained or resized); it has no learned position embedding to hold it.')
  used = {pos_path}
  tensors = {}
  for hf_name, ours, kind in _videomae_table(m):
    group = {k[len(ours) + 1:] if k != ours else '': v for k, v in flat.items()
             if k == ours or k.startswith(ours + '/')}
    if not group:
      raise ConversionError(f'export: the params have no {ours} (for {hf_name}).')
    used.update(f'{ours}/{k}' if k else ours for k in group)
    unprefixed = hf_name.split('.')[0] in ('decoder', 'encoder_to_decoder', 'mask_token',
                                           'fc_norm', 'classifier')
    for suffix, value in _KINDS[kind][1](group).items():
      if hf_name.endswith('attention.attention.key') and suffix == 'bias':
        continue
      name = hf_name if unprefixed else _PREFIX['videomae'] + hf_name
      tensors[f'{name}.{suffix}' if suffix else name] = np.ascontiguousarray(
          np.asarray(value, np.float32))
  processor = _processor_config(config)
  processor['image_processor_type'] = 'VideoMAEImageProcessor'
  return _write_hf_dir(out_dir, flat, used, tensors, hf, processor)
