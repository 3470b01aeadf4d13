"""Model zoo: `create_model(config.model, num_classes)`, a table of families.

`config.model.name` selects the family; each family file exposes
`build(model_config, num_classes) -> flax.linen.Module` and
`validate(model_config, *, num_frames, crop_size)`, which raises `ConfigError` naming
the field. Every video model maps video: float32[B, T, H, W, C] to logits:
float32[B, num_classes]; the image ViT ('vit') maps images: float32[B, H, W, C]; the
masked-pretraining model ('videomae') maps video to its reconstruction outputs (no
classes; see videomae.py).
"""
from __future__ import annotations

import flax.linen as nn
import ml_collections

from vivit_jax.errors import config_error
from vivit_jax.models import mvit, timesformer, video_swin, videomae, vit, vivit, vtn

FAMILIES = {
    'vit': vit,
    'vivit': vivit,
    'timesformer': timesformer,
    'vtn': vtn,
    'mvit': mvit,
    'video_swin': video_swin,
    'videomae': videomae,   # masked pretraining (config.task='masked_pretraining').
}


def family(model_config: ml_collections.ConfigDict):
  """The family module of `model_config.name` (ConfigError naming it if unknown)."""
  name = model_config.get('name')
  if name not in FAMILIES:
    raise config_error('model.name', name, f'one of {sorted(FAMILIES)}')
  return FAMILIES[name]


def create_model(model_config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """The flax module for `model_config` (see the module docstring for shapes)."""
  return family(model_config).build(model_config, num_classes)


def validate(model_config: ml_collections.ConfigDict, *, num_frames: int,
             crop_size: int) -> None:
  """Raises ConfigError if `model_config` cannot run on [num_frames, crop_size^2] clips."""
  family(model_config).validate(model_config, num_frames=num_frames, crop_size=crop_size)
