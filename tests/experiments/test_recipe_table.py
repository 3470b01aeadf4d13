"""The recipe table: generated from the configs (the committed copy is current), and its
comparison rules."""
import pathlib

from experiments import recipe_table

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_committed_table_is_what_the_script_prints():
  committed = (REPO / 'experiments' / 'recipe_table.md').read_text()
  assert committed == recipe_table.markdown(recipe_table.rows()), (
      'experiments/recipe_table.md is stale: run '
      '`python -m experiments.recipe_table --out=experiments/recipe_table.md`')


def test_values_are_read_from_the_configs():
  rows = {(r['config'], r['field']): r for r in recipe_table.rows(
      ['vivit_b16x2_spatio_temporal', 'swin_t'])}
  assert rows[('vivit_b16x2_spatio_temporal', 'schedule.base_lr')]['ours'] == '0.1'
  assert rows[('vivit_b16x2_spatio_temporal', 'schedule.base_lr')]['same']
  assert rows[('swin_t', 'optimizer.name')] == {
      'config': 'swin_t', 'field': 'optimizer.name', 'ours': "'adamw'",
      'reference': "'adamw'", 'where': recipe_table.SWIN + ': optimizer type',
      'same': True}


def test_comparison_rules():
  same = recipe_table.same
  assert same((0.9, 1.33), [0.9, 1.33]) and not same((0.9, 1.33), (0.9, 1.25))
  assert same(1e-4, 0.0001) and not same(1e-4, 1e-3)
  assert same(None, 0.0) and same(0, None) and not same(1.0, None)
  assert same(False, False) and not same(0, False) and not same(True, 1)
  assert not same(recipe_table._MISSING, 0)   # pylint: disable=protected-access
  assert same('sgd', 'sgd') and not same('sgd', 'adamw')
