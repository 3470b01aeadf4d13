"""`python -m vivit_jax.main` pretrains without labels (config.task='masked_pretraining'),
then fine-tunes a ViViT Model 1 from that workdir with `init_from`."""
import json
import os
import subprocess
import sys

import jax
import numpy as np

from train_helpers import REPO, final_params
from vivit_jax.data import synthetic, video_files

STEPS = ['--config.trainer.num_train_steps=4', '--config.trainer.checkpoint_every=2',
         '--config.trainer.eval_every=2', '--config.trainer.log_every=2']


def main(workdir, config, *flags):
  proc = subprocess.run(
      [sys.executable, '-m', 'vivit_jax.main', f'--workdir={workdir}', f'--config={config}',
       *STEPS, *flags], cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:]
  return proc.stdout


def test_pretrain_then_fine_tune_from_its_workdir(tmp_path):
  pre = str(tmp_path / 'pretrain')
  main(pre, 'configs/synthetic/videomae.py:tiny,tube')
  with open(os.path.join(pre, 'train_summary.json')) as f:
    summary = json.load(f)
  assert summary['step'] == 4 and 0 < summary['validation']['reconstruction_loss'] < 10
  with open(os.path.join(pre, 'eval_results.json')) as f:   # test_at_end: the test split.
    results = json.load(f)
  assert results['num_examples'] == 64 and np.isfinite(results['reconstruction_loss'])
  assert 'top1' not in results
  events = b''.join(open(os.path.join(pre, f), 'rb').read() for f in os.listdir(pre)
                    if f.startswith('events.out.tfevents'))
  assert b'test_reconstruction' in events and b'validation_reconstruction_loss' in events

  # visualize reconstructs a video file through the checkpoint: the visible tubelets are
  # the input's, the masked ones black in the masked row, the loss the model's own.
  video = str(tmp_path / 'clip.mp4')
  video_files.write_video(video, synthetic.generate(1, num_frames=8, size=16, seed=3)[0][0])
  out = tmp_path / 'recon'
  proc = subprocess.run([sys.executable, '-m', 'vivit_jax.visualize', f'--workdir={pre}',
                         f'--out={out}', video, str(tmp_path / 'missing.mp4')],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1 and 'ERROR' in proc.stderr and 'missing.mp4' in proc.stderr
  assert 'clip.mp4: reconstruction loss ' in proc.stdout and '(6 of 8 tubelets masked)' in proc.stdout
  assert (out / 'clip_reconstruction.png').stat().st_size > 1000
  r = np.load(out / 'clip_reconstruction.npz')
  assert r['input'].shape == r['masked'].shape == r['reconstruction'].shape == (4, 8, 8, 3)
  # Tube masking at 0.9: 3 of the 2 x 2 positions, at both temporal indices.
  mask = r['mask'].reshape(2, 2, 2)
  assert mask.sum() == 6 and (mask[0] == mask[1]).all()
  pixels = np.repeat(np.repeat(np.repeat(mask, 2, 0), 4, 1), 4, 2)    # tubelets 2x4x4.
  np.testing.assert_array_equal(r['reconstruction'][~pixels], r['input'][~pixels])
  np.testing.assert_array_equal(r['masked'][~pixels], r['input'][~pixels])
  assert not r['masked'][pixels].any()
  assert np.abs(r['reconstruction'][pixels] - r['input'][pixels]).mean() > 0
  assert 0 < float(r['loss']) < 10

  # predict refuses it by name (no classifier) before reading any video.
  proc = subprocess.run([sys.executable, '-m', 'vivit_jax.predict', f'--workdir={pre}',
                         'clip.mp4'], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "config.task='masked_pretraining'" in proc.stderr

  ft = str(tmp_path / 'finetune')
  out = main(ft, 'configs/synthetic/videomae_finetune.py:tiny', f'--config.init_from.path={pre}',
             '--config.schedule.base_lr=0.0')     # lr 0: the checkpoints hold the init.
  assert 'init_from: ' in out and 'unused: Decoder/' in out    # the decoder is left unused.
  with open(os.path.join(ft, 'eval_results.json')) as f:
    results = json.load(f)
  assert results['step'] == 4 and 0 <= results['top1'] <= 1
  # The fine-tuning run starts from the pretrained encoder and a zero head.
  _, pre_params = final_params(pre)
  _, ft_params = final_params(ft)
  assert set(ft_params) == {'embedding', 'Transformer', 'fc_norm', 'output_projection'}
  assert 'encoder_norm' not in ft_params['Transformer']   # VideoMAE's head: no token norm.
  np.testing.assert_array_equal(ft_params['fc_norm']['scale'], 1.0)
  pre_encoder = dict(pre_params['Transformer'])
  del pre_encoder['encoder_norm']
  jax.tree.map(np.testing.assert_array_equal, ft_params['Transformer'], pre_encoder)
  np.testing.assert_array_equal(ft_params['embedding']['kernel'],
                                pre_params['embedding']['kernel'])
  assert not np.asarray(ft_params['output_projection']['kernel']).any()
