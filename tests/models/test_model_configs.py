"""Paper-sized configs reproduce ViViT Table 2, and bad configs fail before any compute."""
import pathlib

import pytest

from vivit_jax import config as vc
from vivit_jax import models
from vivit_jax.models import cost

CONFIGS = pathlib.Path(__file__).parents[2] / 'configs'

TABLE_2 = {name: numbers for name, numbers in cost.PAPER_NUMBERS.items()
           if name.startswith('vivit_b16x2')}
assert len(TABLE_2) == 5


def model_and_shape(name):
  config = vc.load_config(CONFIGS / 'kinetics400' / f'{name}.py')
  vc.validate_config(config)
  d = config.dataset
  return (models.create_model(config.model, d.num_classes),
          (1, d.num_frames, d.crop_size, d.crop_size, 3))


@pytest.mark.parametrize('name', sorted(TABLE_2))
def test_table2_params_and_gflops(name):
  gflops, params_m = TABLE_2[name]
  model, shape = model_and_shape(name)
  params = cost.abstract_params(model, shape)
  assert abs(cost.count_params(params) / 1e6 - params_m) <= 0.1
  measured = cost.forward_gflops(model, shape, params)
  assert abs(measured - gflops) / gflops <= 0.02, measured


@pytest.mark.parametrize('path', sorted((CONFIGS / 'kinetics400').glob('*.py')),
                         ids=lambda p: p.stem)
def test_every_paper_config_is_valid(path):
  vc.validate_config(vc.load_config(path))


def base():
  config = vc.default_config()
  config.dataset.num_frames, config.dataset.crop_size = 32, 224
  return config


@pytest.mark.parametrize('change, message', [
    (lambda c: setattr(c.dataset, 'num_frames', 30) or setattr(c.model, 'temporal_patch_size', 4),
     r'config\.model\.temporal_patch_size=4 .*num_frames=30'),
    (lambda c: setattr(c.dataset, 'crop_size', 225),
     r'config\.model\.patch_size=\(16, 16\) .*crop_size=225'),
    (lambda c: setattr(c.model, 'attention_type', 'divided'),
     r"config\.model\.attention_type='divided' .*'spatio_temporal'"),
    (lambda c: setattr(c.model, 'name', 'vivid'), r"config\.model\.name='vivid' .*'vivit'"),
    (lambda c: setattr(c.model, 'embedding', 'tubelets'), r"config\.model\.embedding='tubelets'"),
    (lambda c: setattr(c.model, 'num_heads', 7), r'config\.model\.num_heads=7 .*hidden_size=768'),
    (lambda c: (setattr(c.model, 'attention_type', 'factorised_self_attention')),
     r"config\.model\.classifier='token' .*'gap'"),
    (lambda c: setattr(c.model, 'classifier', 'max'), r"config\.model\.classifier='max' .*'gmp'"),
    (lambda c: (setattr(c.model, 'attention_type', 'factorised_dot_product'),
                setattr(c.model, 'classifier', 'gap'), setattr(c.model, 'num_heads', 3),
                setattr(c.model, 'hidden_size', 96)),
     r'config\.model\.num_heads=3 .*even'),
    (lambda c: setattr(c.model, 'embedding', 'uniform_frame'),
     r"config\.model\.temporal_patch_size=2 .*uniform_frame"),
    (lambda c: (setattr(c.model, 'attention_type', 'factorised_encoder'),
                setattr(c.model, 'temporal_num_layers', -1)),
     r'config\.model\.temporal_num_layers=-1'),
    (lambda c: setattr(c.model, 'dropout_rate', 1.5), r'config\.model\.dropout_rate=1\.5'),
    (lambda c: setattr(c.model, 'dtype', 'float16'), r"config\.model\.dtype='float16'"),
    (lambda c: setattr(c.dataset, 'num_classes', 0), r'config\.dataset\.num_classes=0'),
    (lambda c: setattr(c.trainer, 'parallelism', 'pjit'), r"config\.trainer\.parallelism='pjit'"),
])
def test_bad_config_is_refused_with_the_field_named(change, message):
  config = base()
  vc.validate_config(config)  # The base is fine; the change alone breaks it.
  change(config)
  with pytest.raises(vc.ConfigError, match=message):
    vc.validate_config(config)


def test_create_model_refuses_unknown_family():
  config = base()
  config.model.name = 'resnet'
  with pytest.raises(vc.ConfigError, match="config.model.name='resnet'"):
    models.create_model(config.model, 10)
