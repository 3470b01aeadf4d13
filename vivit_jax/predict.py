r"""Classify video files with a trained or imported checkpoint.

  python -m vivit_jax.predict --workdir=/tmp/run video1.mp4 video2.webm
  python -m vivit_jax.predict --checkpoint=/tmp/vivit_k400 --config=/tmp/vivit_k400/config.py \
      video.mp4 --json

Each file is decoded with PyAV (vivit_jax.data.video_files.decode_video, which reads
only the frames it needs) and cut into the config's test views exactly as evaluation
does (data/pipeline.py): `dataset.num_test_clips` clips (`dataset.temporal_sampling`,
`num_frames` every `stride` frames) x `dataset.num_test_crops` crops (1 centre or 3
along the longer side, after resizing the shorter side to `dataset.min_resize`),
normalised with `dataset.mean_rgb` / `std_rgb`. The class probabilities aggregate the
views as evaluation does (`trainer.view_aggregation`: the mean of the views' softmaxes,
or the softmax of their mean logits); the top-5 are printed (`--json`: one JSON object
on stdout). With label groups (e.g. Epic-Kitchens verb/noun) each group's top-5 and the
top-5 actions (combinations ranked by the product of the groups' probabilities) are
printed; multi-label models print the top-5 classes with independent probabilities. Label names: config.dataset.label_names, else label_names.json in the
workdir or the checkpoint directory, else the `label_names` of the workdir's
eval_results.json, else `class_<i>`.

A missing, corrupt or unsupported file prints one `ERROR <path>: <why>` line on stderr
and the other files still run; the exit status is 1 if any file failed.
"""
from __future__ import annotations

import json
import sys

from absl import app, flags

from vivit_jax import cli
from vivit_jax.errors import DecodeError
from vivit_jax.inference import (Predictor, define_checkpoint_flags, describe, label_names,
                                 load_from_flags, report_failure)


def _define_flags():
  """The CLI flags, defined only when run as a program (so importing this module next to
  `vivit_jax.main`, which has its own --workdir/--config, cannot clash)."""
  define_checkpoint_flags(clip_size=True)
  flags.DEFINE_integer('top_k', 5, 'Classes printed per video.')
  flags.DEFINE_bool('json', False, 'Print one JSON object instead of text.')


def _print(result: dict) -> None:
  print(result['path'])
  for r in result.get('top', []):
    print(f'  {r["prob"]:.4f}  {r["label"]}')
  for group, rows in result.get('groups', {}).items():
    print(f'  {group}:')
    for r in rows:
      print(f'    {r["prob"]:.4f}  {r["label"]}')
  if 'actions' in result:
    print('  actions:')
    for r in result['actions']:
      labels = ' '.join(f'{g}={name}' for g, name in r['labels'].items())
      print(f'    {r["prob"]:.4f}  {labels}')


def main(argv):
  FLAGS = flags.FLAGS
  videos = argv[1:]
  if not videos:
    raise app.UsageError('Pass one or more video files.')
  config, model, params, step_dir = load_from_flags(FLAGS)
  names = label_names(config, config.dataset.num_classes,
                      [FLAGS.workdir, FLAGS.checkpoint, step_dir])
  predict = Predictor(config, model, params)
  results, failed = [], 0
  for path in videos:
    try:
      result = {'path': path, **describe(predict(path), names, predict.label_spec,
                                         FLAGS.top_k)}
    except (DecodeError, OSError, ValueError) as e:
      failed += 1
      result = {'path': path, 'error': report_failure(path, e)}
    results.append(result)
    if not FLAGS.json and 'error' not in result:
      _print(result)
  if FLAGS.json:
    print(json.dumps({'checkpoint': step_dir, 'num_views':
                      int(config.dataset.get('num_test_clips', 1)) *
                      int(config.dataset.get('num_test_crops', 1)),
                      'results': results}, indent=2))
  return 1 if failed else 0


if __name__ == '__main__':
  _define_flags()
  cli.run(lambda argv: sys.exit(main(argv)))
