"""Every model family and ViViT variant on the synthetic motion task, same budget.

  python -m vivit_jax.sweep --sweep=experiments/sweeps/compare_models.py --workdir=DIR
  (arg 'tiny': test-sized models and 10 steps, to check the sweep end to end)

The shape of the ViViT paper's model comparison (accuracy against GFLOPs) on data anyone
can regenerate: each entry is a CPU-sized config under configs/synthetic/ with the
synthetic recipe's data and optimisation (vivit_jax.recipes.synthetic_recipe: 4000 steps
of batch 32), plus the space-only controls of Model 1 (frames shuffled / one frame
repeated), which stay near chance.
"""

CONFIGS = {   # name: (config file under configs/synthetic/[:arg], overrides)
    'vivit_model1': ('vivit_model1.py', {}),
    'vivit_model2': ('vivit_model2.py', {}),
    'vivit_model3': ('vivit_model3.py', {}),
    'vivit_model4': ('vivit_model4.py', {}),
    'timesformer_divided': ('timesformer.py', {}),
    'timesformer_joint': ('timesformer.py', {'model.attention_type': 'joint_space_time'}),
    'timesformer_space_only': ('timesformer.py', {'model.attention_type': 'space_only'}),
    'vtn': ('vtn.py', {}),
    'mvit': ('mvit.py', {}),
    'mvitv2': ('mvitv2.py', {}),
    'video_swin': ('video_swin.py', {}),
    'control_vivit_model1_shuffle': ('vivit_model1.py:shuffle', {}),
    'control_vivit_model1_single_frame': ('vivit_model1.py:single_frame', {}),
}


def _with_arg(spec, arg):
  """Appends `arg` to the config file's comma-separated args."""
  if not arg:
    return spec
  return spec + (',' if ':' in spec else ':') + arg


def get_sweep(arg=None):
  tiny = arg == 'tiny'
  budget = {'trainer.num_train_steps': 10} if tiny else {}
  return [dict(name=name, config=_with_arg('configs/synthetic/' + spec,
                                           'tiny' if tiny else None),
               **overrides, **budget)
          for name, (spec, overrides) in CONFIGS.items()]
