"""TimeSformer (divided space-time attention), Something-Something v2: 8 frames, 224^2.

facebookresearch/TimeSformer configs/SSv2/TimeSformer_divST_8_224.yaml: the Kinetics-400
recipe (../kinetics400/timesformer_divided_space_time.py) with 174 classes, one clip of 8
uniformly sampled segments (INV_UNIFORM_SAMPLE) and no horizontal flip (RANDOM_FLIP
False); 15 epochs over SSv2's 168,913 clips at batch 8. The paper initialises it from its
Kinetics-400 model: `--config.init_from.path=...`.
"""
from vivit_jax import config as vc


def get_config(arg=None):
  del arg
  config = vc.sibling_config(__file__, '../kinetics400/timesformer_divided_space_time.py')
  config.experiment_name = 'ssv2_timesformer_divided_space_time'
  d = config.dataset
  d.num_classes, d.num_train_examples = 174, 168_913
  d.temporal_sampling, d.random_flip = 'uniform', False
  t = config.trainer
  t.num_train_steps = 15 * (d.num_train_examples // t.batch_size)
  return config
