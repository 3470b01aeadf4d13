r"""ViViT Model 1 on the synthetic task with two label groups (Epic-Kitchens style).

verb = the motion (10), noun = the colour of the shape that moves (red, green, blue,
yellow): `dataset.synthetic_labels='verb_noun'` (data/synthetic.py); 40 actions.
  python -m vivit_jax.main --config=configs/synthetic/vivit_verb_noun.py --workdir=/tmp/vn
Args ('tiny', 'shuffle', 'single_frame'): see vivit_jax.recipes.synthetic_recipe.
"""
from vivit_jax import config as vc
from vivit_jax import recipes
from vivit_jax.data import synthetic


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_vivit_verb_noun'
  m = recipes.synthetic_transformer(c.model)
  m.attention_type, m.classifier = 'spatio_temporal', 'token'
  c = recipes.synthetic_recipe(c, arg)
  d = c.dataset
  d.synthetic_labels = 'verb_noun'
  d.label_groups = (('verb', synthetic.NUM_CLASSES), ('noun', len(synthetic.NOUN_NAMES)))
  d.num_classes = sum(size for _, size in d.label_groups)
  return c
