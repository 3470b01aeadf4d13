r"""ViViT Model 1 on the synthetic task as multi-label classification.

Two shapes change at once (changes of two kinds, in one time direction); the label is
the set of both motions (`dataset.synthetic_labels='multi_label'`, data/synthetic.py),
10 classes.
  python -m vivit_jax.main --config=configs/synthetic/vivit_multi_label.py --workdir=/tmp/ml
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.recipes.synthetic_recipe.
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.data import synthetic


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_vivit_multi_label'
  m = recipes.synthetic_transformer(c.model)
  m.attention_type, m.classifier = 'spatio_temporal', 'token'
  c = recipes.synthetic_recipe(c, arg)
  c.dataset.synthetic_labels = 'multi_label'
  c.dataset.multi_label = True
  c.dataset.num_classes = synthetic.NUM_CLASSES
  return c
