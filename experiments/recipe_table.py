r"""Our paper configs against their reference code's recipes, field by field.

  python -m experiments.recipe_table [--out=experiments/recipe_table.md]

For each config under configs/kinetics400/ with a reference here, every listed field
is read from the config itself (so the table stays true when a config changes) and
compared with the reference's value, cited as repository file: key. A field our config
does not have yet shows as '(no field)'. `tests/experiments/test_recipe_table.py` checks
that the committed table is what this script prints.

The references' values are transcribed from their public config files; where a reference
states a value in its own units, the value here is converted to ours (noted in `why`).
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import sys
from typing import Any, Optional, Sequence

from absl import app, flags

from vivit_jax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs' / 'kinetics400'
_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Ref:
  """One field: `field` (dotted path in our config) should be `value`, per `where`."""
  field: str
  value: Any
  where: str
  why: str = ''


SCENIC_B = 'google-research/scenic projects/vivit/configs/kinetics400/vivit_base_k400.py'
SCENIC_L = ('google-research/scenic projects/vivit/configs/kinetics400/'
            'vivit_large_factorised_encoder.py')
SCENIC_MODEL = 'google-research/scenic projects/vivit/model.py'
TIMESFORMER = 'facebookresearch/TimeSformer configs/Kinetics/TimeSformer_divST_8x32_224.yaml'
MVIT = 'facebookresearch/SlowFast configs/Kinetics/MVIT_B_16x4_CONV.yaml'
VTN = 'facebookresearch/SlowFast configs/Kinetics/VIT_B_VTN.yaml'
SWIN = ('SwinTransformer/Video-Swin-Transformer configs/recognition/swin/'
        'swin_tiny_patch244_window877_kinetics400_1k.py')


def _vivit_k400(source: str) -> list[Ref]:
  """Scenic's Kinetics-400 ViViT recipe (the same in its B and L files)."""
  return [
      Ref('dataset.num_frames', 32, f'{source}: num_frames'),
      Ref('dataset.stride', 2, f'{source}: stride'),
      Ref('dataset.min_resize', 256, f'{source}: min_resize'),
      Ref('dataset.crop_size', 224, f'{source}: crop_size'),
      Ref('dataset.scale_jitter', (0.9, 1.33),
          f'{source}: scale_min_factor, scale_max_factor'),
      Ref('dataset.color_augment_prob', 0.8, f'{source}: prob_color_augment'),
      Ref('dataset.color_drop_prob', 0.1, f'{source}: prob_color_drop'),
      Ref('dataset.num_test_clips', 4, f'{source}: num_test_clips'),
      Ref('dataset.num_test_crops', 3, f'{source}: do_three_spatial_crops'),
      Ref('dataset.mean_rgb', (0.5, 0.5, 0.5), f'{source}: zero_centering',
          'pixels to [-1, 1]'),
      Ref('optimizer.name', 'sgd', f'{source}: optimizer'),
      Ref('optimizer.weight_decay', 0.0, f'{source}: l2_decay_factor'),
      Ref('optimizer.grad_clip_norm', 1.0, f'{source}: max_grad_norm'),
      Ref('schedule.base_lr', 0.1, f'{source}: base_learning_rate'),
      Ref('trainer.batch_size', 64, f'{source}: batch_size'),
      Ref('trainer.label_smoothing', 0.0, f'{source}: label_smoothing', 'None'),
      Ref('trainer.mixup_alpha', 0.0, f'{source}: (no mixup)'),
      Ref('model.stochastic_depth', 0.0, f'{source}: (no stochastic_droplayer_rate)'),
      Ref('model.stochastic_depth_rescale', False,
          f'{SCENIC_MODEL}: EncoderBlock x * (1 - drop_pattern)'),
  ]


REFERENCES: dict[str, list[Ref]] = {
    'vivit_b16x2_spatio_temporal': _vivit_k400(SCENIC_B),
    'vivit_l16x2_factorised_encoder': _vivit_k400(SCENIC_L) + [
        Ref('model.temporal_num_layers', 24, f'{SCENIC_L}: temporal_transformer.num_layers'),
    ],
    'timesformer_divided_space_time': [
        Ref('dataset.num_frames', 8, f'{TIMESFORMER}: NUM_FRAMES'),
        Ref('dataset.stride', 32, f'{TIMESFORMER}: SAMPLING_RATE'),
        Ref('dataset.scale_jitter', (256 / 224, 320 / 224),
            f'{TIMESFORMER}: TRAIN_JITTER_SCALES [256, 320]',
            'short side 256-320 over min_resize 224'),
        Ref('dataset.min_resize', 224, f'{TIMESFORMER}: TEST_CROP_SIZE',
            'test short side 224'),
        Ref('dataset.num_test_clips', 1, f'{TIMESFORMER}: NUM_ENSEMBLE_VIEWS'),
        Ref('dataset.num_test_crops', 3, f'{TIMESFORMER}: NUM_SPATIAL_CROPS'),
        Ref('optimizer.name', 'sgd', f'{TIMESFORMER}: OPTIMIZING_METHOD'),
        Ref('optimizer.momentum', 0.9, f'{TIMESFORMER}: MOMENTUM'),
        Ref('optimizer.weight_decay', 1e-4, f'{TIMESFORMER}: WEIGHT_DECAY'),
        Ref('optimizer.no_decay', (), 'facebookresearch/TimeSformer timesformer/models/'
            'optimizer.py: every non-BN parameter decayed'),
        Ref('optimizer.grad_clip_norm', None, 'facebookresearch/TimeSformer tools/'
            'train_net.py: no clipping'),
        Ref('schedule.base_lr', 0.005, f'{TIMESFORMER}: BASE_LR'),
        Ref('trainer.batch_size', 8, f'{TIMESFORMER}: TRAIN.BATCH_SIZE',
            'global, over 8 GPUs'),
        Ref('trainer.view_aggregation', 'softmax', 'PySlowFast test_net: softmax ensemble'),
    ],
    'mvit_b_16x4': [
        Ref('dataset.num_frames', 16, f'{MVIT}: NUM_FRAMES'),
        Ref('dataset.stride', 4, f'{MVIT}: SAMPLING_RATE'),
        Ref('dataset.crop_area_range', (0.08, 1.0), f'{MVIT}: TRAIN_JITTER_SCALES_RELATIVE'),
        Ref('dataset.crop_aspect_range', (0.75, 1.3333),
            f'{MVIT}: TRAIN_JITTER_ASPECT_RELATIVE'),
        Ref('dataset.randaugment_ops', 'timm_increasing',
            f'{MVIT}: AA_TYPE rand-m7-n4-mstd0.5-inc1', "timm's ops, inc1"),
        Ref('dataset.randaugment_layers', 4, f'{MVIT}: AA_TYPE rand-m7-n4-mstd0.5-inc1'),
        Ref('dataset.randaugment_magnitude', 7.0, f'{MVIT}: AA_TYPE rand-m7-n4-mstd0.5-inc1'),
        Ref('dataset.randaugment_magnitude_std', 0.5,
            f'{MVIT}: AA_TYPE rand-m7-n4-mstd0.5-inc1'),
        Ref('dataset.color_jitter', 0.0, f'{MVIT}: AUG.COLOR_JITTER 0.4',
            'unused: slowfast/datasets/kinetics.py applies only AA_TYPE'),
        Ref('dataset.random_erasing_prob', 0.25, f'{MVIT}: RE_PROB'),
        Ref('dataset.repeated_augmentation', 2, f'{MVIT}: AUG.NUM_SAMPLE'),
        Ref('optimizer.name', 'adamw', f'{MVIT}: OPTIMIZING_METHOD'),
        Ref('optimizer.weight_decay', 0.05, f'{MVIT}: WEIGHT_DECAY'),
        Ref('optimizer.no_decay', (r'(^|/)(bias|scale)$',),
            f'{MVIT}: ZERO_WD_1D_PARAM True, ZERO_DECAY_POS_CLS False',
            '1-D params and biases only'),
        Ref('optimizer.grad_clip_norm', 1.0, f'{MVIT}: CLIP_GRAD_L2NORM'),
        Ref('schedule.base_lr', 1e-4, f'{MVIT}: BASE_LR'),
        Ref('trainer.batch_size', 32, f'{MVIT}: TRAIN.BATCH_SIZE 16 x AUG.NUM_SAMPLE 2',
            'clips per step'),
        Ref('trainer.mixup_alpha', 0.8, f'{MVIT}: MIXUP.ALPHA'),
        Ref('trainer.cutmix_alpha', 1.0, f'{MVIT}: MIXUP.CUTMIX_ALPHA'),
        Ref('trainer.mixup_switch_prob', 0.5, f'{MVIT}: MIXUP.SWITCH_PROB'),
        Ref('trainer.label_smoothing', 0.1, f'{MVIT}: MIXUP.LABEL_SMOOTH_VALUE'),
        Ref('model.stochastic_depth', 0.2, f'{MVIT}: DROPPATH_RATE'),
        Ref('model.head_dropout_rate', 0.5, f'{MVIT}: MODEL.DROPOUT_RATE'),
        Ref('trainer.view_aggregation', 'softmax', 'PySlowFast test_net: softmax ensemble'),
    ],
    'vtn_vit_b': [
        Ref('dataset.num_frames', 16, f'{VTN}: NUM_FRAMES'),
        Ref('dataset.stride', 8, f'{VTN}: SAMPLING_RATE'),
        Ref('optimizer.name', 'sgd', f'{VTN}: OPTIMIZING_METHOD'),
        Ref('optimizer.momentum', 0.9, f'{VTN}: MOMENTUM'),
        Ref('schedule.base_lr', 1e-3, f'{VTN}: BASE_LR'),
        Ref('trainer.batch_size', 16, f'{VTN}: TRAIN.BATCH_SIZE', 'global'),
        Ref('model.temporal_num_layers', 3, f'{VTN}: NUM_HIDDEN_LAYERS'),
        Ref('model.temporal_window', 18, f'{VTN}: ATTENTION_WINDOW'),
        Ref('model.head_dropout_rate', 0.5, f'{VTN}: MODEL.DROPOUT_RATE'),
    ],
    'swin_t': [
        Ref('dataset.num_frames', 32, f'{SWIN}: clip_len'),
        Ref('dataset.stride', 2, f'{SWIN}: frame_interval'),
        Ref('dataset.crop_area_range', (0.08, 1.0), f'{SWIN}: RandomResizedCrop',
            "mmaction2's default area range"),
        Ref('dataset.scale_jitter', None, f'{SWIN}: (RandomResizedCrop, no scale jitter)'),
        Ref('dataset.random_flip', True, f'{SWIN}: Flip flip_ratio=0.5'),
        Ref('dataset.min_resize', 224, f'{SWIN}: test Resize scale=(-1, 224)'),
        Ref('dataset.num_test_clips', 4, f'{SWIN}: test num_clips'),
        Ref('dataset.num_test_crops', 3, f'{SWIN}: ThreeCrop'),
        Ref('dataset.mean_rgb', (0.485, 0.456, 0.406), f'{SWIN}: img_norm_cfg mean',
            '[123.675, 116.28, 103.53] / 255'),
        Ref('dataset.std_rgb', (0.229, 0.224, 0.225), f'{SWIN}: img_norm_cfg std',
            '[58.395, 57.12, 57.375] / 255'),
        Ref('optimizer.name', 'adamw', f'{SWIN}: optimizer type'),
        Ref('optimizer.weight_decay', 0.02, f'{SWIN}: weight_decay'),
        Ref('optimizer.no_decay', ('relative_position_bias_table',),
            f'{SWIN}: paramwise_cfg custom_keys',
            "mmcv: longest key first, so 'backbone' wins over 'norm'"),
        Ref('optimizer.lr_multipliers',
            (('relative_position_bias_table', 1.0), ('^(?!output_projection/)', 0.1)),
            f'{SWIN}: paramwise_cfg backbone lr_mult 0.1'),
        Ref('optimizer.grad_clip_norm', None, f'{SWIN}: grad_clip=None'),
        Ref('schedule.base_lr', 1e-3, f'{SWIN}: lr'),
        Ref('trainer.batch_size', 64, 'Liu et al. 2022 (arXiv 2106.13230) 4.1: batch size 64',
            f'{SWIN} has videos_per_gpu 8 x update_interval 4 x GPUs (not stated)'),
        Ref('model.stochastic_depth', 0.1, f'{SWIN}: drop_path_rate'),
        Ref('trainer.view_aggregation', 'softmax',
            "mmaction2's test_cfg average_clips='prob'"),
    ],
}


def lookup(config, field: str):
  """The value at dotted `field` of a ConfigDict, or _MISSING."""
  node = config
  for part in field.split('.'):
    if part not in node:
      return _MISSING
    node = node[part]
  return node


def same(ours, reference) -> bool:
  """Equal as config values: booleans exactly, None / 0 alike for a switched-off
  option, sequences elementwise, numbers to 3 significant digits."""
  if ours is _MISSING:
    return False
  if isinstance(reference, bool) or isinstance(ours, bool):
    return ours is reference
  off = (None, 0, 0.0)
  if reference in off or ours in off:
    return reference in off and ours in off
  if isinstance(reference, (tuple, list)):
    return (isinstance(ours, (tuple, list)) and len(ours) == len(reference)
            and all(same(o, r) for o, r in zip(ours, reference)))
  if isinstance(reference, (int, float)) and isinstance(ours, (int, float)):
    return math.isclose(ours, reference, rel_tol=1e-3)
  return ours == reference


def show(value) -> str:
  if value is _MISSING:
    return '(no field)'
  if isinstance(value, float):
    return f'{value:g}'
  if isinstance(value, (tuple, list)):
    return '(' + ', '.join(show(v) for v in value) + ')'
  return repr(value)


def rows(names: Optional[Sequence[str]] = None) -> list[dict]:
  """One row per (config, field): config, field, ours, reference, where, same."""
  out = []
  for name in names or sorted(REFERENCES):
    config = config_lib.load_config(CONFIGS / f'{name}.py')
    for ref in REFERENCES[name]:
      ours = lookup(config, ref.field)
      where = ref.where + (f' ({ref.why})' if ref.why else '')
      out.append({'config': name, 'field': ref.field, 'ours': show(ours),
                  'reference': show(ref.value), 'where': where,
                  'same': same(ours, ref.value)})
  return out


def markdown(table: list[dict]) -> str:
  """The table as markdown, with a count of differences per config."""
  lines = ['# Paper configs against their reference recipes', '',
           'Generated by `python -m experiments.recipe_table --out=experiments/'
           'recipe_table.md`; do not edit by hand.', '']
  counts = {}
  for r in table:
    counts.setdefault(r['config'], [0, 0])[r['same']] += 1
  lines += ['| config | fields | same | differ |', '|---|---|---|---|']
  lines += [f'| {c} | {d + s} | {s} | {d} |' for c, (d, s) in counts.items()]
  lines += ['', '| config | field | ours | reference | reference file: key | same? |',
            '|---|---|---|---|---|---|']
  lines += [f"| {r['config']} | `{r['field']}` | {r['ours']} | {r['reference']} | "
            f"{r['where']} | {'yes' if r['same'] else '**no**'} |" for r in table]
  return '\n'.join(lines) + '\n'


_OUT = flags.DEFINE_string('out', None, 'Write the markdown table here (else stdout).')


def main(argv):
  del argv
  text = markdown(rows())
  if _OUT.value:
    pathlib.Path(_OUT.value).write_text(text)
  else:
    sys.stdout.write(text)


if __name__ == '__main__':
  app.run(main)
