"""The model table covers every paper config, and each of them builds and validates."""
import pathlib

import pytest

from experiments import model_table
from vivit_jax import config as vc
from vivit_jax.data import labels

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_default_rows_are_every_paper_config():
  paths = model_table.paper_configs()
  dirs = {pathlib.Path(p).parent.name for p in paths}
  assert dirs == {'kinetics400', 'kinetics600', 'epic_kitchens', 'ssv2', 'moments_in_time',
                  'pretrain'}
  on_disk = {str(p) for p in (REPO / 'configs').glob('*/*.py')
             if p.parent.name != 'synthetic'}
  assert set(paths) == on_disk
  names = [model_table.config_name(p) for p in paths]
  assert len(set(names)) == len(names)
  assert 'swin_t' in names and 'ssv2/swin_b' in names


@pytest.mark.parametrize('path', model_table.paper_configs(),
                         ids=model_table.config_name)
def test_paper_config_validates(path):
  config = vc.load_config(path)
  vc.validate_config(config)
  spec = labels.label_spec(config.dataset)
  assert spec.num_classes == config.dataset.num_classes


def test_epic_kitchens_has_scenics_noun_and_verb_heads():
  config = vc.load_config(REPO / 'configs/epic_kitchens/vivit_l16x2_factorised_encoder.py')
  spec = labels.label_spec(config.dataset)
  assert spec.groups == (('noun', 300), ('verb', 97)) and config.dataset.num_classes == 397


def test_row_of_a_paper_config_against_its_paper_numbers():
  r = model_table.row(str(REPO / 'configs/ssv2/mvitv2_s_16x4.py'), time_runs=0)
  assert r['config'] == 'ssv2/mvitv2_s_16x4' and r['input'] == '16x224x224'
  assert r['paper_params_m'] == 34.4 and abs(r['params_m'] - 34.36) < 0.01
  assert abs(r['gflops'] / r['paper_gflops'] - 1) < 0.05


def test_masked_pretraining_rows_count_the_encoder_on_visible_tokens():
  pretrain = model_table.row(str(REPO / 'configs/pretrain/videomae_vit_b_k400.py'), 0)
  finetune = model_table.row(str(REPO / 'configs/pretrain/videomae_vit_b_k400_finetune.py'), 0)
  assert pretrain['config'] == 'pretrain/videomae_vit_b_k400'
  assert abs(pretrain['params_m'] - (finetune['params_m'] - 0.3)) < 0.01   # no 400-way head.
  assert 0.08 < pretrain['gflops'] / finetune['gflops'] < 0.11
