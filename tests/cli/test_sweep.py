"""The sweep runner: entries validated before compute, run in sub-workdirs, resumable,
results table + plot; the shipped sweep files resolve to valid configs."""
import csv
import json
import os
import textwrap

import pytest

from vivit_jax import config as config_lib
from vivit_jax import sweep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_sweep(tmp_path, body):
  path = tmp_path / 'my_sweep.py'
  path.write_text(textwrap.dedent(body))
  return str(path)


def test_overrides_apply_and_typos_are_refused():
  config = config_lib.load_config(os.path.join(REPO, 'configs/synthetic/vivit_model1.py'))
  sweep.apply_override(config, 'model.num_layers', 3)
  assert config.model.num_layers == 3
  with pytest.raises(config_lib.ConfigError, match='num_layerz'):
    sweep.apply_override(config, 'model.num_layerz', 3)
  with pytest.raises(config_lib.ConfigError, match='config.modle'):
    sweep.apply_override(config, 'modle.num_layers', 3)


def test_bad_entry_is_refused_before_any_compute(tmp_path):
  spec = _write_sweep(tmp_path, """
      def get_sweep(arg=None):
        return [dict(name='ok', config='configs/synthetic/vivit_model1.py:tiny'),
                dict(name='bad', config='configs/synthetic/vivit_model1.py:tiny',
                     **{'dataset.num_frames': 5})]
      """)
  workdir = tmp_path / 'sweep'
  with pytest.raises(config_lib.ConfigError, match=r"'bad'.*temporal_patch_size"):
    sweep.run_sweep(spec, str(workdir))
  assert not (workdir / 'ok').exists()   # nothing ran, not even the valid entry.


def _flatten(tree, prefix=''):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}', value


@pytest.mark.parametrize('sweep_file', ['vivit_ablations.py', 'compare_models.py'])
@pytest.mark.parametrize('arg', [None, 'tiny'])
def test_shipped_sweeps_resolve_to_valid_configs(sweep_file, arg):
  spec = os.path.join(REPO, 'experiments/sweeps', sweep_file) + (f':{arg}' if arg else '')
  entries = sweep.resolve_entries(sweep.load_sweep(spec))
  assert len({e.name for e in entries}) == len(entries) >= 9
  if arg == 'tiny':
    assert all(e.config.trainer.num_train_steps == 10 for e in entries)
  if sweep_file == 'vivit_ablations.py':
    by_name = {e.name: e.config for e in entries}
    flat = lambda c: dict(_flatten(c.to_dict()))
    base = flat(by_name['baseline'])

    def changed(name):
      return {k for k, v in flat(by_name[name]).items() if base.get(k) != v} - {
          'experiment_name'}

    # Each Model 1 entry changes only what its group ablates.
    for name in by_name:
      if name.startswith('tubelet_t'):
        assert changed(name) == {'model.temporal_patch_size'}, name
      elif name.startswith('frames_'):
        assert changed(name) == {'dataset.num_frames'}, name
    assert changed('embedding_uniform_frame') <= {
        'model.embedding', 'model.temporal_patch_size', 'dataset.num_frames',
        'dataset.stride'}
    ts = sorted(by_name[n].model.temporal_patch_size for n in by_name
                if n.startswith('tubelet_t') or n == 'baseline')
    frames = sorted(by_name[n].dataset.num_frames for n in by_name
                    if n.startswith('frames_') or n == 'baseline')
    if arg is None:
      assert (ts, frames) == ([2, 4, 8], [8, 16, 32])
      assert {e.config.trainer.num_train_steps for e in entries} == {1000}
    assert [by_name[f'model2_lt{n}'].model.temporal_num_layers for n in (0, 1, 4)] == [0, 1, 4]
    assert by_name['embedding_uniform_frame'].model.embedding == 'uniform_frame'
    # The embedding ablation compares the two at the same number of tokens.
    time_slots = [c.dataset.num_frames // c.model.temporal_patch_size for c in (
        by_name['embedding_uniform_frame'], by_name['baseline'])]
    assert time_slots[0] == time_slots[1]
  else:
    families = {e.config.model.name for e in entries}
    assert families == {'vivit', 'timesformer', 'vtn', 'mvit', 'video_swin'}


def test_sweep_runs_resumes_and_writes_results(tmp_path, monkeypatch):
  spec = _write_sweep(tmp_path, """
      def get_sweep(arg=None):
        steps = {'trainer.num_train_steps': 4, 'trainer.eval_every': 4,
                 'trainer.checkpoint_every': 4, 'trainer.log_every': 2}
        return [dict(name='m1', config='configs/synthetic/vivit_model1.py:tiny', **steps),
                dict(name='m1_wide', config='configs/synthetic/vivit_model1.py:tiny',
                     **{'model.hidden_size': 32, 'model.mlp_dim': 64}, **steps)]
      """)
  workdir = tmp_path / 'sweep'
  jobs = min(2, len(os.sched_getaffinity(0)))
  rows = sweep.run_sweep(spec, str(workdir), jobs=jobs)
  assert [r['name'] for r in rows] == ['m1', 'm1_wide']   # sweep order, whichever ends first.
  for r in rows:
    assert r['cpus'] == len(os.sched_getaffinity(0)) // jobs
    assert r['family'] == 'vivit' and r['step'] == 4
    assert 0.0 <= r['test_top1'] <= r['test_top5'] <= 1.0
    assert r['train_clips_per_sec'] > 0 and r['peak_memory_mib'] > 50
  # The override reached the child process: the wide model has more params and FLOPs.
  assert rows[1]['params_m'] > rows[0]['params_m']
  assert rows[1]['gflops'] > rows[0]['gflops']
  saved = json.loads((workdir / 'm1_wide' / 'config.json').read_text())
  assert saved['model']['hidden_size'] == 32
  with open(workdir / 'results.csv') as f:
    assert [r['name'] for r in csv.DictReader(f)] == ['m1', 'm1_wide']
  assert '| m1_wide | vivit |' in (workdir / 'results.md').read_text()
  assert (workdir / 'accuracy_vs_gflops.png').read_bytes()[:4] == b'\x89PNG'

  # Rerunning skips finished entries and gives the same table.
  def fail(*args, **kwargs):
    raise AssertionError('a finished entry ran again')
  monkeypatch.setattr(sweep, 'run_entry', fail)
  again = sweep.run_sweep(spec, str(workdir))
  assert [r['test_top1'] for r in again] == [r['test_top1'] for r in rows]


def test_cpu_slots_split_the_cores_and_refuse_too_many_jobs():
  cores = os.sched_getaffinity(0)
  slots = sweep.cpu_slots(len(cores))
  assert sorted(c for s in slots for c in s) == sorted(cores)
  assert all(len(s) == 1 for s in slots)
  with pytest.raises(ValueError, match=f'--jobs={len(cores) + 1} is invalid'):
    sweep.cpu_slots(len(cores) + 1)


def test_tables_carry_group_action_and_map_metrics(tmp_path):
  """A label-groups entry's eval_results.json adds its groups' and the action's top-1/5
  columns; a multi-label entry adds mAP; plain rows leave them empty."""
  rows = [dict(name='plain', test_top1=0.5),
          dict(name='ek', test_top1=0.2, test_verb_top1=0.6, test_noun_top1=0.4,
               test_action_top1=0.2),
          dict(name='charades', test_top1=0.7, test_mAP=0.31)]
  assert sweep.result_columns(rows)[len(sweep.RESULT_COLUMNS):] == [
      'test_verb_top1', 'test_noun_top1', 'test_action_top1', 'test_mAP']
  assert sweep._label_kind_metric('verb_top5') and sweep._label_kind_metric('mAP')
  assert not sweep._label_kind_metric('top1') and not sweep._label_kind_metric('loss')
  sweep.write_results(rows, str(tmp_path), 'label kinds')
  table = (tmp_path / 'results.md').read_text()
  assert '| test_verb_top1 | test_noun_top1 | test_action_top1 | test_mAP |' in table
  with open(tmp_path / 'results.csv') as f:
    got = list(csv.DictReader(f))
  assert got[1]['test_action_top1'] == '0.2' and got[0]['test_mAP'] == ''
  assert got[2]['test_mAP'] == '0.31'


def test_a_pretraining_entry_reports_its_reconstruction_loss(tmp_path):
  """A masked-pretraining entry has no top-1; its row carries the test reconstruction
  loss from eval_results.json, and the model's cost (the autoencoder's)."""
  path = os.path.join(REPO, 'configs/synthetic/videomae.py')
  entry = sweep.Entry('mae', path, 'tiny', {}, config_lib.load_config(path, 'tiny'))
  with open(tmp_path / 'eval_results.json', 'w') as f:
    json.dump({'reconstruction_loss': 0.0231, 'num_examples': 64, 'step': 20}, f)
  row = sweep.collect_row(entry, str(tmp_path))
  assert row['test_reconstruction_loss'] == 0.0231 and row['test_top1'] is None
  assert row['family'] == 'videomae' and row['params_m'] > 0 and row['step'] == 20
  assert sweep.result_columns([row])[-1] == 'test_reconstruction_loss'
