"""ViViT ablations of the paper (sections 4.1-4.2) on the synthetic motion task.

  python -m vivit_jax.sweep --sweep=experiments/sweeps/vivit_ablations.py --workdir=DIR
  (arg 'tiny': test-sized models and 10 steps, to check the sweep end to end)

Every entry trains with the synthetic recipe (vivit_jax.recipes.synthetic_recipe) for a
quarter of its steps, 1000 (the recipe's Model 1 has 83% validation top-1 by then), so the
nine entries fit in about half an hour on 2 cores with `--jobs=2`; the comparison is of
how far each variant gets in a fixed, short budget. `baseline` is Model 1 as
configured (tubelets 8x4x4 on 16 frames, 2x8x8 = 128 tokens) and the reference row of
every group; each other entry changes one thing:
  embedding   uniform frame sampling (2D 4x4 patches) of 2 frames 8 apart: the same
              2x8x8 = 128 tokens as the baseline's tubelets;
  tubelet t   temporal tubelet size 2 / 4 (512 / 256 tokens; the baseline has t = 8);
  frames      8 / 32 input frames (the baseline has 16);
  L_t         Model 2 temporal encoder depth 0 (average pool) / 1 / 4.
"""

MODEL1 = 'configs/synthetic/vivit_model1.py'
MODEL2 = 'configs/synthetic/vivit_model2.py'
STEPS = 1000


def get_sweep(arg=None):
  tiny = arg == 'tiny'
  cfg = lambda path: path + (':tiny' if tiny else '')
  # The tiny configs use 4 frames and t = 2; the t = 8 baseline needs longer clips.
  frames = 8 if tiny else 16
  baseline = {'model.temporal_patch_size': 8 if not tiny else 2,
              'dataset.num_frames': frames}
  entries = [
      dict(name='baseline', config=cfg(MODEL1), **baseline),
      dict(name='embedding_uniform_frame', config=cfg(MODEL1),
           **{'model.embedding': 'uniform_frame', 'model.temporal_patch_size': 1,
              'dataset.num_frames': frames // baseline['model.temporal_patch_size'],
              'dataset.stride': baseline['model.temporal_patch_size']}),
  ]
  entries += [dict(name=f'tubelet_t{t}', config=cfg(MODEL1),
                   **{'model.temporal_patch_size': t, 'dataset.num_frames': frames})
              for t in ((1, 4) if tiny else (2, 4))]
  entries += [dict(name=f'frames_{n}', config=cfg(MODEL1), **{'dataset.num_frames': n})
              for n in ((4, 16) if tiny else (8, 32))]
  entries += [dict(name=f'model2_lt{lt}', config=cfg(MODEL2),
                   **{'model.temporal_num_layers': lt}) for lt in (0, 1, 4)]
  budget = {'trainer.num_train_steps': 10 if tiny else STEPS}
  return [dict(e, **budget) for e in entries]
