"""Model zoo: `create_model(config.model, num_classes)` and config validation.

`config.model.name` selects the family; each family registers a builder
`(model_config, num_classes) -> flax.linen.Module` and a validator
`(model_config, num_frames, crop_size) -> None` that raises `ConfigError` naming the field.
Every video model maps video: float32[B, T, H, W, C] to logits: float32[B, num_classes];
the image ViT ('vit') maps images: float32[B, H, W, C].
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import flax.linen as nn
import ml_collections

from vivit_jax.config import config_error
from vivit_jax.models import embeddings, layers, vit, vivit
from vivit_jax.models.layers import TransformerConfig


class Family(NamedTuple):
  build: Callable[[ml_collections.ConfigDict, int], nn.Module]
  validate: Callable[..., None]


_FAMILIES: dict[str, Family] = {}


def register(name: str, build, validate) -> None:
  """Adds a model family under `config.model.name == name`."""
  _FAMILIES[name] = Family(build, validate)


def create_model(model_config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """The flax module for `model_config` (see the module docstring for shapes)."""
  name = model_config.get('name')
  if name not in _FAMILIES:
    raise config_error('model.name', name, f'one of {sorted(_FAMILIES)}')
  return _FAMILIES[name].build(model_config, num_classes)


def validate_model_config(model_config: ml_collections.ConfigDict, *, num_frames: int,
                          crop_size: int) -> None:
  """Raises ConfigError if `model_config` cannot run on [num_frames, crop_size^2] clips."""
  name = model_config.get('name')
  if name not in _FAMILIES:
    raise config_error('model.name', name, f'one of {sorted(_FAMILIES)}')
  _FAMILIES[name].validate(model_config, num_frames=num_frames, crop_size=crop_size)


# ---------------------------------------------------------------------------------
# Checks shared by the transformer families.

def _check_choice(field, value, choices):
  if value not in choices:
    raise config_error(field, value, f'one of {list(choices)}')


def _check_positive_int(field, value):
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise config_error(field, value, 'a positive integer')


def _check_rate(field, value):
  if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise config_error(field, value, 'a rate in [0, 1)')


def check_transformer(m: ml_collections.ConfigDict) -> None:
  """Width/depth/heads/rates/dtypes of `config.model` for any TransformerConfig user."""
  for field in ('hidden_size', 'num_layers', 'num_heads', 'mlp_dim'):
    _check_positive_int(f'model.{field}', m.get(field))
  if m.hidden_size % m.num_heads:
    raise config_error('model.num_heads', m.num_heads,
                       f'a divisor of model.hidden_size={m.hidden_size}')
  for field in ('dropout_rate', 'attention_dropout_rate', 'stochastic_depth'):
    _check_rate(f'model.{field}', m.get(field, 0.0))
  for field in ('dtype', 'param_dtype'):
    _check_choice(f'model.{field}', m.get(field, 'float32'), ('float32', 'bfloat16'))
  _check_choice('model.attention_impl', m.get('attention_impl', 'xla'),
                layers.ATTENTION_IMPLS)
  if m.get('representation_size') is not None:
    _check_positive_int('model.representation_size', m.representation_size)


def check_patches(m: ml_collections.ConfigDict, *, crop_size: int,
                  num_frames: int | None = None, temporal_size: int = 1) -> None:
  """The spatial patch must tile the crop; the temporal one the clip."""
  patch = tuple(m.get('patch_size') or ())
  if len(patch) != 2 or not all(isinstance(p, int) and p > 0 for p in patch):
    raise config_error('model.patch_size', m.get('patch_size'),
                       'two positive integers (height, width)')
  if crop_size % patch[0] or crop_size % patch[1]:
    multiple = math.lcm(*patch)
    raise config_error(
        'model.patch_size', patch,
        f'patch sides that divide config.dataset.crop_size={crop_size} (or a crop size '
        f'that is a multiple of {multiple}, e.g. {max(1, crop_size // multiple) * multiple})')
  if num_frames is not None and num_frames % temporal_size:
    raise config_error(
        'model.temporal_patch_size', temporal_size,
        f'a divisor of config.dataset.num_frames={num_frames} (or num_frames a multiple '
        f'of {temporal_size}, e.g. {max(1, num_frames // temporal_size) * temporal_size})')


# ---------------------------------------------------------------------------------
# ViT and ViViT.

def _validate_vit(m, *, num_frames, crop_size):
  del num_frames
  check_transformer(m)
  check_patches(m, crop_size=crop_size)
  _check_choice('model.classifier', m.get('classifier', 'token'), embeddings.CLASSIFIERS)


def _build_vit(m, num_classes):
  return vit.ViT(num_classes=num_classes, cfg=TransformerConfig.from_model_config(m),
                 patch_size=tuple(m.patch_size), classifier=m.get('classifier', 'token'),
                 representation_size=m.get('representation_size'),
                 head_bias_init=m.get('head_bias_init', 0.0))


def _validate_vivit(m, *, num_frames, crop_size):
  check_transformer(m)
  attention = m.get('attention_type')
  _check_choice('model.attention_type', attention, vivit.ATTENTION_TYPES)
  _check_choice('model.embedding', m.get('embedding'), embeddings.EMBEDDINGS)
  t = m.get('temporal_patch_size', 1)
  _check_positive_int('model.temporal_patch_size', t)
  if m.embedding == 'uniform_frame' and t != 1:
    raise config_error('model.temporal_patch_size', t,
                       "1 with model.embedding='uniform_frame' (2D patches per frame)")
  check_patches(m, crop_size=crop_size, num_frames=num_frames, temporal_size=t)
  _check_choice('model.classifier', m.get('classifier'), embeddings.CLASSIFIERS)
  if attention in ('factorised_self_attention', 'factorised_dot_product'):
    if m.classifier not in embeddings.POOLED_CLASSIFIERS:
      raise config_error('model.classifier', m.classifier,
                         f'one of {embeddings.POOLED_CLASSIFIERS} for model.attention_type='
                         f'{attention!r} (it has no CLS token)')
  order = m.get('attention_order', 'space_time')
  _check_choice('model.attention_order', order, vivit.ATTENTION_ORDERS)
  if order != 'space_time' and attention != 'factorised_self_attention':
    raise config_error('model.attention_order', order,
                       "'space_time' (the default) for model.attention_type="
                       f"{attention!r}: only 'factorised_self_attention' (Model 3) has "
                       'ordered spatial/temporal sub-layers')
  if attention == 'factorised_dot_product' and m.num_heads % 2:
    raise config_error('model.num_heads', m.num_heads,
                       "an even number for 'factorised_dot_product' (half the heads attend "
                       'over space, half over time)')
  if attention == 'factorised_encoder':
    _check_choice('model.spatial_classifier', m.get('spatial_classifier', 'token'),
                  embeddings.CLASSIFIERS)
    lt = m.get('temporal_num_layers')
    if not isinstance(lt, int) or isinstance(lt, bool) or lt < 0:
      raise config_error('model.temporal_num_layers', lt,
                         'an integer >= 0 (0 = the average-pool baseline)')


def _build_vivit(m, num_classes):
  common = dict(num_classes=num_classes, cfg=TransformerConfig.from_model_config(m),
                embedding=m.embedding, patch_size=tuple(m.patch_size),
                temporal_patch_size=m.get('temporal_patch_size', 1),
                classifier=m.classifier, representation_size=m.get('representation_size'),
                head_bias_init=m.get('head_bias_init', 0.0))
  if m.attention_type == 'factorised_encoder':
    return vivit.FactorisedEncoderViViT(
        temporal_num_layers=m.temporal_num_layers,
        spatial_classifier=m.get('spatial_classifier', 'token'), **common)
  return vivit.ViViT(attention_type=m.attention_type,
                     attention_order=m.get('attention_order', 'space_time'), **common)


register('vit', _build_vit, _validate_vit)
register('vivit', _build_vivit, _validate_vivit)

from vivit_jax.models import timesformer  # noqa: E402  (registers after the shared checks)
register('timesformer', timesformer.build, timesformer.validate)


# ---------------------------------------------------------------------------------
# Peers: VTN, MViT (v1/v2), Video Swin. Their modules hold build/validate; the checks and
# the TransformerConfig of the shared options are here.

check_positive_int = _check_positive_int
check_rate = _check_rate


def check_int_tuple(field, value, length: int, meaning: str, minimum: int = 1):
  """`value` must be `length` integers >= `minimum`; `meaning` names the entries."""
  items = tuple(value) if isinstance(value, (tuple, list)) else ()
  if len(items) != length or not all(
      isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items):
    raise config_error(field, value, f'{length} integers >= {minimum} {meaning}')


def check_options(m: ml_collections.ConfigDict) -> None:
  """The options every TransformerConfig user shares: rates, dtypes, attention impl,
  plus `mlp_ratio` and `head_dropout_rate` where the family has them."""
  for field in ('dropout_rate', 'attention_dropout_rate', 'stochastic_depth',
                'head_dropout_rate'):
    _check_rate(f'model.{field}', m.get(field, 0.0))
  for field in ('dtype', 'param_dtype'):
    _check_choice(f'model.{field}', m.get(field, 'float32'), ('float32', 'bfloat16'))
  _check_choice('model.attention_impl', m.get('attention_impl', 'xla'),
                layers.ATTENTION_IMPLS)
  ratio = m.get('mlp_ratio', 4.0)
  if not isinstance(ratio, (int, float)) or ratio <= 0:
    raise config_error('model.mlp_ratio', ratio, 'a positive number')


def transformer_options(m: ml_collections.ConfigDict, **sizes) -> TransformerConfig:
  """TransformerConfig with the shared options of `config.model` (dropout, stochastic
  depth, LayerNorm epsilon, GELU, dtypes, attention impl, remat) for families whose
  sizes vary per stage: `sizes` (hidden_size, num_layers, num_heads, mlp_dim) default to
  placeholders that the family replaces per stage/block."""
  sizes = {'hidden_size': 1, 'num_layers': 1, 'num_heads': 1, 'mlp_dim': 1, **sizes}
  return TransformerConfig.from_model_config(
      ml_collections.ConfigDict({**m.to_dict(), **sizes}))


from vivit_jax.models import mvit, video_swin, vtn  # noqa: E402  (use the checks above)
register('vtn', vtn.build, vtn.validate)
register('mvit', mvit.build, mvit.validate)
register('video_swin', video_swin.build, video_swin.validate)
