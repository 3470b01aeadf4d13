r"""Fine-tuning ViViT Model 1 on 512 labelled synthetic clips, from the masked
pretraining of configs/synthetic/videomae.py or from scratch (the same run without
`init_from`): the synthetic proof that pretraining without labels helps.

  python -m vivit_jax.main --config=configs/synthetic/videomae_finetune.py \
      --workdir=/tmp/mae_ft --config.init_from.path=/tmp/mae
  python -m vivit_jax.main --config=configs/synthetic/videomae_finetune.py \
      --workdir=/tmp/mae_scratch

The model is the pretraining's encoder (the synthetic transformer, tubelets 8x4x4) with
VideoMAE's head ('gap_fc_norm'); the first 512 training videos carry labels, the test
split is the usual 512 clips x 9 views. Args: 'tiny' (see recipes.synthetic_recipe).
"""
from vivit_jax import config as vc
from vivit_jax import recipes

LABELLED_CLIPS = 512


def get_config(arg=None):
  c = vc.default_config()
  c.experiment_name = 'synthetic_videomae_finetune'
  m = recipes.synthetic_transformer(c.model)
  m.attention_type, m.classifier = 'spatio_temporal', 'gap_fc_norm'
  c = recipes.synthetic_recipe(c, arg)
  if 'tiny' not in (arg or ''):
    c.dataset.num_train_examples = LABELLED_CLIPS
    c.trainer.num_train_steps = 2000
    c.trainer.eval_every = c.trainer.checkpoint_every = 500
  c.optimizer.weight_decay = 0.05
  c.optimizer.layer_decay = 0.75
  return c
