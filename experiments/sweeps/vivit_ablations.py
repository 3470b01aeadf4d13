"""ViViT ablations of the paper (sections 4.1-4.2) on the synthetic motion task.

  python -m vivit_jax.sweep --sweep=experiments/sweeps/vivit_ablations.py --workdir=DIR
  (arg 'tiny': test-sized models and 10 steps, to check the sweep end to end)

Entries, each with the synthetic recipe's budget (vivit_jax.config.synthetic_recipe):
  embedding   tubelets 8x4x4 on 16 frames vs uniform frame sampling (2D 4x4 patches) of
              2 frames 8 apart: the same 2x8x8 = 128 tokens;
  tubelet t   temporal tubelet size 2 / 4 / 8 (Model 1; 512 / 256 / 128 tokens);
  frames      8 / 16 / 32 input frames (Model 1, tubelets 8x4x4);
  L_t         Model 2 temporal encoder depth 0 (average pool) / 1 / 4.
"""

MODEL1 = 'configs/synthetic/vivit_model1.py'
MODEL2 = 'configs/synthetic/vivit_model2.py'


def get_sweep(arg=None):
  tiny = arg == 'tiny'
  cfg = lambda path: path + (':tiny' if tiny else '')
  # The tiny configs use 4 frames; t = 8 and the frame ablation need longer clips.
  frames = 8 if tiny else 16
  budget = {'trainer.num_train_steps': 10} if tiny else {}
  entries = [
      dict(name='embedding_tubelet', config=cfg(MODEL1)),
      dict(name='embedding_uniform_frame', config=cfg(MODEL1),
           **{'model.embedding': 'uniform_frame', 'model.temporal_patch_size': 1,
              'dataset.num_frames': 2, 'dataset.stride': frames // 2}),
  ]
  entries += [dict(name=f'tubelet_t{t}', config=cfg(MODEL1),
                   **{'model.temporal_patch_size': t, 'dataset.num_frames': frames})
              for t in (2, 4, 8)]
  entries += [dict(name=f'frames_{n}', config=cfg(MODEL1), **{'dataset.num_frames': n})
              for n in ((4, 8, 16) if tiny else (8, 16, 32))]
  entries += [dict(name=f'model2_lt{lt}', config=cfg(MODEL2),
                   **{'model.temporal_num_layers': lt}) for lt in (0, 1, 4)]
  return [dict(e, **budget) for e in entries]
