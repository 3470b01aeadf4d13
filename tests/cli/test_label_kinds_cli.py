"""Label groups and multi-label data through the real CLIs: `main` trains and evaluates
the synthetic verb/noun and multi-label variants and writes their metrics; `predict`
prints each group's top classes and the top actions with the workdir's group names."""
import json
import os
import subprocess
import sys

import numpy as np

from vivit_jax.data import synthetic, video_files

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args):
  done = subprocess.run([sys.executable, '-m', *args], cwd=REPO, capture_output=True,
                        text=True, env=dict(os.environ, PYTHONPATH=REPO))
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def test_verb_noun_trains_evaluates_and_predicts(tmp_path):
  workdir = tmp_path / 'vn'
  _run('vivit_jax.main', '--config=configs/synthetic/vivit_verb_noun.py:tiny',
       f'--workdir={workdir}')
  results = json.loads((workdir / 'eval_results.json').read_text())
  for key in ('verb_top1', 'verb_top5', 'noun_top1', 'noun_mean_class_accuracy',
              'action_top1', 'action_top5'):
    assert 0 <= results[key] <= 1, key
  assert results['top1'] == results['action_top1'] and results['num_examples'] == 64
  assert len(results['noun_per_class_accuracy']) == len(synthetic.NOUN_NAMES)
  assert len(results['verb_confusion_matrix']) == synthetic.NUM_CLASSES
  assert results['action_top1'] <= min(results['verb_top1'], results['noun_top1'])
  names = json.loads((workdir / 'label_names.json').read_text())
  assert names == {'verb': synthetic.LABEL_NAMES, 'noun': synthetic.NOUN_NAMES}

  videos, _ = synthetic.generate(1, num_frames=8, size=16, seed=3)
  video_files.write_video(str(tmp_path / 'clip.mp4'), videos[0])
  out = json.loads(_run('vivit_jax.predict', f'--workdir={workdir}', '--json',
                        '--top_k=3', str(tmp_path / 'clip.mp4')))
  result = out['results'][0]
  assert set(result['groups']) == {'verb', 'noun'}
  assert all(r['label'] in synthetic.NOUN_NAMES for r in result['groups']['noun'])
  actions = result['actions']
  assert len(actions) == 3 and actions[0]['prob'] >= actions[1]['prob']
  best = {g: rows[0] for g, rows in result['groups'].items()}
  # The top action is the pair of each group's top class; its probability their product.
  assert actions[0]['labels'] == {g: r['label'] for g, r in best.items()}
  np.testing.assert_allclose(actions[0]['prob'],
                             best['verb']['prob'] * best['noun']['prob'], rtol=1e-5)


def test_multi_label_trains_and_reports_map(tmp_path):
  workdir = tmp_path / 'ml'
  _run('vivit_jax.main', '--config=configs/synthetic/vivit_multi_label.py:tiny',
       f'--workdir={workdir}')
  results = json.loads((workdir / 'eval_results.json').read_text())
  ap = np.array(results['per_class_ap'], np.float64)
  assert ap.shape == (synthetic.NUM_CLASSES,)
  np.testing.assert_allclose(results['mAP'], np.nanmean(ap))
  assert 0 <= results['top1'] <= results['top5'] <= 1
  summary = json.loads((workdir / 'train_summary.json').read_text())
  assert 'mAP' in summary['validation'] and 'per_class_ap' in summary['validation']
