r"""Our paper configs against their reference code's recipes, field by field.

  python -m experiments.recipe_table [--out=experiments/recipe_table.md]

For each paper config with a reference here (configs/kinetics400/<name> by its name,
the other datasets' as '<dataset>/<name>'), every listed field
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
  return _scenic(source)


def _scenic(source: str, *changes: Ref) -> list[Ref]:
  """Scenic's Kinetics-400 ViViT recipe with the fields `changes` name replaced (and
  appended where the Kinetics recipe does not list them)."""
  changed = {r.field: r for r in changes}
  base = [changed.pop(r.field, r) for r in _scenic_k400(source)]
  return base + [r for r in changes if r.field in changed]


def _scenic_k400(source: str) -> list[Ref]:
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


SCENIC_CONFIGS = 'google-research/scenic projects/vivit/configs/'
SCENIC_K600 = SCENIC_CONFIGS + 'kinetics600/vivit_large_factorised_encoder.py'
SCENIC_EK = SCENIC_CONFIGS + 'epic_kitchens/vivit_large_factorised_encoder.py'
SCENIC_SSV2 = SCENIC_CONFIGS + 'something_something_v2/vivit_large_factorised_encoder.py'
TIMESFORMER_SSV2 = 'facebookresearch/TimeSformer configs/SSv2/TimeSformer_divST_8_224.yaml'
MVIT_SSV2 = 'facebookresearch/SlowFast configs/SSv2/MVITv2_S_16x4.yaml'
SWIN_SSV2 = ('SwinTransformer/Video-Swin-Transformer configs/recognition/swin/'
             'swin_base_patch244_window1677_sthv2.py')


def _scenic_rand_augment(source: str, magnitude: float) -> list[Ref]:
  """Scenic's RandAugment configs: rand_augment wins over colour augmentation."""
  why = 'do_color_augment False; video_ops.py: rand_augment has priority'
  return [
      Ref('dataset.color_augment_prob', 0.0, f'{source}: do_color_augment', why),
      Ref('dataset.color_drop_prob', 0.0, f'{source}: do_color_augment', why),
      Ref('dataset.randaugment_ops', 'scenic', f'{source}: do_rand_augment',
          'scenic/dataset_lib/video_ops.py distort_image_with_randaugment'),
      Ref('dataset.randaugment_layers', 2, f'{source}: rand_augment_num_layers'),
      Ref('dataset.randaugment_magnitude', magnitude, f'{source}: rand_augment_magnitude'),
  ]


REFERENCES: dict[str, list[Ref]] = {
    'vivit_b16x2_spatio_temporal': _vivit_k400(SCENIC_B),
    'vivit_l16x2_factorised_encoder': _vivit_k400(SCENIC_L) + [
        Ref('model.temporal_num_layers', 24, f'{SCENIC_L}: temporal_transformer.num_layers'),
    ],
    'kinetics600/vivit_l16x2_factorised_encoder': _scenic(
        SCENIC_K600,
        Ref('dataset.num_classes', 600, f'{SCENIC_K600}: num_classes'),
        Ref('schedule.base_lr', 0.05, f'{SCENIC_K600}: base_learning_rate'),
        Ref('model.temporal_num_layers', 24, f'{SCENIC_K600}: temporal_transformer.num_layers'),
    ),
    'epic_kitchens/vivit_l16x2_factorised_encoder': _scenic(
        SCENIC_EK,
        Ref('dataset.label_groups', (('noun', 300), ('verb', 97)),
            f'{SCENIC_EK}: class_splits [300, 97], split_names [noun, verb]'),
        Ref('dataset.stride', 1, f'{SCENIC_EK}: stride'),
        *_scenic_rand_augment(SCENIC_EK, 15.0),
        Ref('trainer.mixup_alpha', 0.1, f'{SCENIC_EK}: mixup.alpha'),
        Ref('trainer.label_smoothing', 0.2, f'{SCENIC_EK}: label_smoothing'),
        Ref('model.stochastic_depth', 0.2, f'{SCENIC_EK}: stochastic_droplayer_rate'),
        Ref('schedule.base_lr', 0.5, f'{SCENIC_EK}: base_learning_rate'),
        Ref('model.temporal_num_layers', 4, f'{SCENIC_EK}: temporal_transformer.num_layers'),
    ),
    'ssv2/vivit_l16x2_factorised_encoder': _scenic(
        SCENIC_SSV2,
        Ref('dataset.num_classes', 174, f'{SCENIC_SSV2}: num_classes'),
        Ref('dataset.stride', 1, f'{SCENIC_SSV2}: stride'),
        Ref('dataset.min_resize', 288, f'{SCENIC_SSV2}: min_resize'),
        Ref('dataset.crop_size', 256, f'{SCENIC_SSV2}: crop_size'),
        Ref('dataset.random_flip', False, 'google-research/scenic scenic/dataset_lib/'
            "video_ops.py: SSv2 doesn't have a random_flip"),
        *_scenic_rand_augment(SCENIC_SSV2, 20.0),
        Ref('trainer.mixup_alpha', 0.3, f'{SCENIC_SSV2}: mixup.alpha'),
        Ref('trainer.label_smoothing', 0.3, f'{SCENIC_SSV2}: label_smoothing'),
        Ref('model.stochastic_depth', 0.3, f'{SCENIC_SSV2}: stochastic_droplayer_rate'),
        Ref('schedule.base_lr', 0.4, f'{SCENIC_SSV2}: base_learning_rate'),
        Ref('model.temporal_num_layers', 4, f'{SCENIC_SSV2}: temporal_transformer.num_layers'),
    ),
    'ssv2/timesformer_divided_space_time': [
        Ref('dataset.num_classes', 174, f'{TIMESFORMER_SSV2}: NUM_CLASSES'),
        Ref('dataset.num_frames', 8, f'{TIMESFORMER_SSV2}: NUM_FRAMES'),
        Ref('dataset.temporal_sampling', 'uniform', f'{TIMESFORMER_SSV2}: INV_UNIFORM_SAMPLE'),
        Ref('dataset.random_flip', False, f'{TIMESFORMER_SSV2}: RANDOM_FLIP'),
        Ref('dataset.scale_jitter', (256 / 224, 320 / 224),
            f'{TIMESFORMER_SSV2}: TRAIN_JITTER_SCALES [256, 320]',
            'short side 256-320 over min_resize 224'),
        Ref('dataset.num_test_clips', 1, f'{TIMESFORMER_SSV2}: NUM_ENSEMBLE_VIEWS'),
        Ref('dataset.num_test_crops', 3, f'{TIMESFORMER_SSV2}: NUM_SPATIAL_CROPS'),
        Ref('optimizer.name', 'sgd', f'{TIMESFORMER_SSV2}: OPTIMIZING_METHOD'),
        Ref('optimizer.weight_decay', 1e-4, f'{TIMESFORMER_SSV2}: WEIGHT_DECAY'),
        Ref('schedule.base_lr', 0.005, f'{TIMESFORMER_SSV2}: BASE_LR'),
        Ref('trainer.batch_size', 8, f'{TIMESFORMER_SSV2}: TRAIN.BATCH_SIZE'),
        Ref('model.dropout_rate', 0.0, 'facebookresearch/TimeSformer timesformer/models/'
            'vit.py: vit_base_patch16_224 drop_rate=0.',
            'MODEL.DROPOUT_RATE 0.5 is not passed to the model'),
    ],
    'ssv2/mvitv2_s_16x4': [
        Ref('dataset.num_classes', 174, f'{MVIT_SSV2}: NUM_CLASSES'),
        Ref('dataset.num_frames', 16, f'{MVIT_SSV2}: NUM_FRAMES'),
        Ref('dataset.temporal_sampling', 'uniform', f'{MVIT_SSV2}: INV_UNIFORM_SAMPLE'),
        Ref('dataset.random_flip', False, f'{MVIT_SSV2}: RANDOM_FLIP'),
        Ref('dataset.scale_jitter', (256 / 224, 320 / 224),
            f'{MVIT_SSV2}: TRAIN_JITTER_SCALES [256, 320]', 'no relative jitter scales'),
        Ref('dataset.crop_area_range', None, f'{MVIT_SSV2}: (no TRAIN_JITTER_SCALES_RELATIVE)'),
        Ref('dataset.randaugment_ops', 'timm_increasing',
            f'{MVIT_SSV2}: AA_TYPE rand-m7-n4-mstd0.5-inc1'),
        Ref('dataset.randaugment_layers', 4, f'{MVIT_SSV2}: AA_TYPE rand-m7-n4-mstd0.5-inc1'),
        Ref('dataset.randaugment_magnitude', 7.0,
            f'{MVIT_SSV2}: AA_TYPE rand-m7-n4-mstd0.5-inc1'),
        Ref('dataset.randaugment_magnitude_std', 0.5,
            f'{MVIT_SSV2}: AA_TYPE rand-m7-n4-mstd0.5-inc1'),
        Ref('dataset.random_erasing_prob', 0.25, f'{MVIT_SSV2}: RE_PROB'),
        Ref('dataset.repeated_augmentation', 1, f'{MVIT_SSV2}: AUG.NUM_SAMPLE'),
        Ref('dataset.num_test_clips', 1, f'{MVIT_SSV2}: NUM_ENSEMBLE_VIEWS'),
        Ref('dataset.num_test_crops', 3, f'{MVIT_SSV2}: NUM_SPATIAL_CROPS'),
        Ref('optimizer.name', 'sgd', f'{MVIT_SSV2}: OPTIMIZING_METHOD'),
        Ref('optimizer.momentum', 0.9, f'{MVIT_SSV2}: MOMENTUM'),
        Ref('optimizer.weight_decay', 1e-4, f'{MVIT_SSV2}: WEIGHT_DECAY'),
        Ref('optimizer.no_decay', (r'(^|/)(bias|scale)$',), f'{MVIT_SSV2}: ZERO_WD_1D_PARAM'),
        Ref('optimizer.grad_clip_norm', None, f'{MVIT_SSV2}: (no CLIP_GRAD_L2NORM)'),
        Ref('schedule.base_lr', 0.0025, f'{MVIT_SSV2}: BASE_LR', 'NUM_SHARDS 1'),
        Ref('trainer.batch_size', 16, f'{MVIT_SSV2}: TRAIN.BATCH_SIZE'),
        Ref('trainer.mixup_alpha', 0.8, f'{MVIT_SSV2}: MIXUP.ALPHA'),
        Ref('trainer.cutmix_alpha', 1.0, f'{MVIT_SSV2}: MIXUP.CUTMIX_ALPHA'),
        Ref('trainer.mixup_switch_prob', 0.5, f'{MVIT_SSV2}: MIXUP.SWITCH_PROB'),
        Ref('trainer.label_smoothing', 0.1, f'{MVIT_SSV2}: MIXUP.LABEL_SMOOTH_VALUE'),
        Ref('model.stochastic_depth', 0.4, f'{MVIT_SSV2}: DROPPATH_RATE'),
        Ref('model.head_dropout_rate', 0.5, f'{MVIT_SSV2}: MODEL.DROPOUT_RATE'),
    ],
    'ssv2/swin_b': [
        Ref('dataset.num_classes', 174, f'{SWIN_SSV2}: cls_head num_classes'),
        Ref('dataset.num_frames', 32, f'{SWIN_SSV2}: clip_len'),
        Ref('dataset.temporal_sampling', 'uniform', f'{SWIN_SSV2}: frame_uniform=True'),
        Ref('dataset.random_flip', False, f'{SWIN_SSV2}: Flip flip_ratio=0'),
        Ref('dataset.crop_area_range', (0.08, 1.0), f'{SWIN_SSV2}: RandomResizedCrop',
            "mmaction2's default area range"),
        Ref('dataset.randaugment_layers', 4, f'{SWIN_SSV2}: Imgaug RandAugment n=4'),
        Ref('dataset.randaugment_magnitude', 7 / 3, f'{SWIN_SSV2}: Imgaug RandAugment m=7',
            "imgaug's 0-30 scale in our 0-10"),
        Ref('dataset.random_erasing_prob', 0.25, f'{SWIN_SSV2}: RandomErasing'),
        Ref('dataset.min_resize', 224, f'{SWIN_SSV2}: test Resize scale=(-1, 224)'),
        Ref('dataset.num_test_clips', 1, f'{SWIN_SSV2}: test num_clips'),
        Ref('dataset.num_test_crops', 3, f'{SWIN_SSV2}: ThreeCrop'),
        Ref('optimizer.name', 'adamw', f'{SWIN_SSV2}: optimizer type'),
        Ref('optimizer.weight_decay', 0.05, f'{SWIN_SSV2}: weight_decay'),
        Ref('optimizer.grad_clip_norm', None, f'{SWIN_SSV2}: grad_clip=None'),
        Ref('schedule.base_lr', 3e-4, f'{SWIN_SSV2}: lr'),
        Ref('trainer.label_smoothing', 0.1, f'{SWIN_SSV2}: LabelSmoothing smoothing'),
        Ref('model.window_size', (16, 7, 7), f'{SWIN_SSV2}: window_size'),
        Ref('model.stochastic_depth', 0.4, f'{SWIN_SSV2}: drop_path_rate'),
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


def config_path(name: str) -> pathlib.Path:
  """configs/kinetics400/<name>.py, or configs/<dataset>/<file>.py for '<dataset>/<file>'."""
  return CONFIGS.parent / ((name if '/' in name else f'kinetics400/{name}') + '.py')


def rows(names: Optional[Sequence[str]] = None) -> list[dict]:
  """One row per (config, field): config, field, ours, reference, where, same."""
  out = []
  for name in names or sorted(REFERENCES):
    config = config_lib.load_config(config_path(name))
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
