r"""Run a config sweep and collect its results (big_vision-style sweeps).

  python -m vivit_jax.sweep --sweep=experiments/sweeps/compare_models.py --workdir=DIR
  python -m vivit_jax.sweep --sweep=experiments/sweeps/vivit_ablations.py:tiny --workdir=DIR

A sweep file defines `get_sweep(arg=None) -> list[dict]`; each entry is
  {'name': 'vivit_model1',                          # sub-workdir DIR/<name>
   'config': 'configs/synthetic/vivit_model1.py',   # path[:arg], relative to the repo
   'model.num_layers': 4, ...}                      # dotted config overrides
Every entry's config is loaded, overridden and validated before anything runs, so a bad
entry is refused before any compute. Each entry then trains in its own process
(`python -m vivit_jax.main`, which ends with the multi-view test evaluation) in
DIR/<name>; an entry whose `eval_results.json` is at its final step is skipped, and an
interrupted entry resumes from its last checkpoint, so rerunning the command continues
the sweep. Results go to DIR/results.{csv,md,json} and DIR/accuracy_vs_gflops.png:
name, model family, params (M), GFLOPs per view, train clips/s (median over log
intervals after the first), peak memory (device peak where the backend reports it, else
the training process's peak host RSS), test top-1/top-5, the wall time and the number
of CPU cores the entry ran on.

`--jobs=N` trains N entries at once, each pinned to its own 1/N of this process's CPU
cores; train clips/s then counts one job's cores (on 2 cores, two single-core jobs
together outpace one job on one device using both cores: experiments/README.md).
"""
from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import importlib.util
import json
import os
import pathlib
import queue
import re
import subprocess
import sys
import time
from typing import Any, Optional

from absl import app, flags, logging
import ml_collections

from vivit_jax import cli, models
from vivit_jax import config as config_lib
from vivit_jax.models import cost

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULT_COLUMNS = ('name', 'family', 'variant', 'params_m', 'gflops', 'train_clips_per_sec',
                  'peak_memory_mib', 'memory_kind', 'test_top1', 'test_top5', 'step',
                  'wall_s', 'cpus')
_NAME = re.compile(r'^[A-Za-z0-9_.-]+$')


@dataclasses.dataclass
class Entry:
  """One sweep entry: its name, config file (+ arg), overrides and resolved config."""
  name: str
  config_path: str
  config_arg: Optional[str]
  overrides: dict[str, Any]
  config: ml_collections.ConfigDict


def _split_arg(spec: str) -> tuple[str, Optional[str]]:
  path, _, arg = spec.partition(':')
  return path, (arg or None)


def _resolve(path: str) -> str:
  """`path` made absolute: relative to the working directory if it exists there, else
  to the repository root (sweep files name configs relative to the repo)."""
  if os.path.exists(path):
    return os.path.abspath(path)
  candidate = REPO_ROOT / path
  return str(candidate) if candidate.exists() else path


def load_sweep(spec: str) -> list[dict]:
  """The entries of the sweep file `spec` ('path[:arg]')."""
  path, arg = _split_arg(spec)
  path = _resolve(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--sweep={spec!r}: no sweep file at {path!r}.')
  module_spec = importlib.util.spec_from_file_location('vivit_jax_sweep_file', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise ValueError(f'Sweep file {path!r} has no get_sweep(arg=None) function.')
  entries = module.get_sweep(arg)
  if not isinstance(entries, (list, tuple)) or not entries:
    raise ValueError(f'get_sweep({arg!r}) of {path!r} returned {entries!r}: expected a '
                     'non-empty list of dicts.')
  return list(entries)


def apply_override(config: ml_collections.ConfigDict, key: str, value) -> None:
  """Sets the dotted field `key` of `config` to `value`; the field must exist (as with
  `--config.a.b=...` on the command line), so a typo is an error, not a new field."""
  *groups, field = key.split('.')
  node = config
  for i, group in enumerate(groups):
    if group not in node or not isinstance(node[group], ml_collections.ConfigDict):
      raise config_lib.ConfigError(
          f'Sweep override {key!r}: config.{".".join(groups[:i + 1])} is not a config '
          'group.')
    node = node[group]
  if field not in node:
    raise config_lib.ConfigError(
        f'Sweep override {key!r}: config.{key} does not exist (fields of '
        f'config.{".".join(groups) or "<root>"}: {sorted(node.keys())}).')
  node[field] = value


def resolve_entries(raw: list[dict]) -> list[Entry]:
  """Loads, overrides and validates every entry; raises before anything runs."""
  entries, names = [], set()
  for i, item in enumerate(raw):
    item = dict(item)
    name, spec = item.pop('name', None), item.pop('config', None)
    if not isinstance(name, str) or not _NAME.match(name):
      raise ValueError(f'Sweep entry {i} has name={name!r}: expected a string of '
                       'letters, digits, "_", "-" or "." (it names the sub-workdir).')
    if name in names:
      raise ValueError(f'Sweep entry {i}: name {name!r} is used twice.')
    names.add(name)
    if not isinstance(spec, str):
      raise ValueError(f'Sweep entry {name!r} has config={spec!r}: expected a config '
                       'file path[:arg].')
    path, arg = _split_arg(spec)
    config = config_lib.load_config(_resolve(path), arg)
    try:
      for key, value in item.items():
        apply_override(config, key, value)
      config_lib.validate_config(config)
    except config_lib.ConfigError as e:
      raise config_lib.ConfigError(f'Sweep entry {name!r}: {e}') from None
    entries.append(Entry(name, _resolve(path), arg, item, config))
  return entries


def _flag_value(value) -> str:
  """A Python value as ml_collections' `--config.x=` parser reads it."""
  if isinstance(value, str):
    return value
  if value is None:
    return 'None'
  return repr(tuple(value)) if isinstance(value, list) else repr(value)


def main_command(entry: Entry, workdir: str) -> list[str]:
  """The `python -m vivit_jax.main` command line that trains `entry` in `workdir`."""
  spec = entry.config_path + (f':{entry.config_arg}' if entry.config_arg else '')
  cmd = [sys.executable, '-m', 'vivit_jax.main', f'--config={spec}', f'--workdir={workdir}']
  cmd += [f'--config.{k}={_flag_value(v)}' for k, v in entry.overrides.items()]
  return cmd


def _read_json(path: str) -> Optional[dict]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def is_done(entry: Entry, workdir: str) -> bool:
  """Whether `workdir` holds a test evaluation of the entry's final step."""
  results = _read_json(os.path.join(workdir, 'eval_results.json'))
  return bool(results) and results.get('step') == entry.config.trainer.num_train_steps


def run_entry(entry: Entry, workdir: str, cpus: Optional[set[int]] = None) -> dict:
  """Trains + tests `entry` in a child process (pinned to the CPU cores `cpus`, default
  the calling thread's); returns {'wall_s', 'max_rss_bytes', 'cpus'}. Pinning changes
  the calling thread's own CPU mask: call it from a worker thread."""
  os.makedirs(workdir, exist_ok=True)
  cmd = main_command(entry, workdir)
  if cpus:
    # Pins this (worker) thread; the child inherits the mask. No preexec_fn: running
    # Python between fork and exec is unsafe once JAX's threads exist.
    os.sched_setaffinity(0, cpus)
  cpus = os.sched_getaffinity(0)
  logging.info('Sweep entry %s on CPUs %s: %s', entry.name, sorted(cpus), ' '.join(cmd))
  start = time.time()
  with open(os.path.join(workdir, 'sweep_log.txt'), 'a') as log:
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    _, status, usage = os.wait4(process.pid, 0)
  process.returncode = os.waitstatus_to_exitcode(status)
  if process.returncode != 0:
    raise RuntimeError(f'Sweep entry {entry.name!r} failed with exit code '
                       f'{process.returncode}; see {workdir}/sweep_log.txt. Rerunning the '
                       'sweep resumes it.')
  run = {'wall_s': time.time() - start, 'max_rss_bytes': usage.ru_maxrss * 1024,
         'cpus': len(cpus)}
  with open(os.path.join(workdir, 'sweep_run.json'), 'w') as f:
    json.dump(run, f)
  return run


def model_cost(config: ml_collections.ConfigDict) -> tuple[float, float]:
  """(params in millions, GFLOPs per view) of the entry's model, from abstract shapes."""
  d = config.dataset
  model = models.create_model(config.model, d.num_classes)
  shape = (1, d.num_frames, d.crop_size, d.crop_size, 3)
  params = cost.abstract_params(model, shape)
  return cost.count_params(params) / 1e6, cost.forward_gflops(model, shape, params)


def _variant(config: ml_collections.ConfigDict) -> str:
  m = config.model
  return str(m.get('attention_type') or m.get('variant') or '')


def collect_row(entry: Entry, workdir: str) -> dict:
  """The results row of a finished entry (see RESULT_COLUMNS)."""
  evaluation = _read_json(os.path.join(workdir, 'eval_results.json')) or {}
  summary = _read_json(os.path.join(workdir, 'train_summary.json')) or {}
  run = _read_json(os.path.join(workdir, 'sweep_run.json')) or {}
  params_m, gflops = model_cost(entry.config)
  if summary.get('peak_device_bytes'):
    memory, kind = summary['peak_device_bytes'], 'device'
  else:
    memory, kind = run.get('max_rss_bytes'), 'host_rss'
  return {
      'name': entry.name, 'family': entry.config.model.get('name'),
      'variant': _variant(entry.config), 'params_m': params_m, 'gflops': gflops,
      'train_clips_per_sec': summary.get('train_clips_per_sec'),
      'peak_memory_mib': memory / 2**20 if memory else None, 'memory_kind': kind,
      'test_top1': evaluation.get('top1'), 'test_top5': evaluation.get('top5'),
      'step': evaluation.get('step'), 'wall_s': run.get('wall_s'), 'cpus': run.get('cpus'),
      **{f'test_{k}': v for k, v in evaluation.items() if _label_kind_metric(k)},
  }


def _label_kind_metric(key: str) -> bool:
  """Whether an eval_results.json key is a metric the tables carry besides top1/top5:
  each group's and the action's top1/top5 (label groups), mAP (multi-label), the
  reconstruction loss (masked pretraining)."""
  return key in ('mAP', 'reconstruction_loss') or (
      key.endswith(('_top1', '_top5')) and key not in ('top1', 'top5'))


def result_columns(rows: list[dict]) -> list[str]:
  """RESULT_COLUMNS, then the label-kind metrics (`test_verb_top1`, `test_mAP`, ...) that
  any row has, in order of first appearance."""
  extra = []
  for r in rows:
    extra += [k for k in r if k not in RESULT_COLUMNS and k not in extra]
  return list(RESULT_COLUMNS) + extra


def _fmt(value) -> str:
  if value is None:
    return ''
  if isinstance(value, float):
    return f'{value:.4f}' if abs(value) < 1 else f'{value:.2f}'
  return str(value)


def markdown_table(rows: list[dict]) -> str:
  """`rows` as a markdown table with `result_columns(rows)`."""
  columns = result_columns(rows)
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(_fmt(r.get(c)) for c in columns) + ' |' for r in rows]
  return '\n'.join(lines) + '\n'


def write_results(rows: list[dict], workdir: str, title: str) -> None:
  """DIR/results.csv, results.md, results.json and accuracy_vs_gflops.png."""
  with open(os.path.join(workdir, 'results.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=result_columns(rows), restval='')
    writer.writeheader()
    writer.writerows(rows)
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write(f'# {title}\n\n' + markdown_table(rows))
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(rows, f, indent=2)
  plot_accuracy_vs_gflops(rows, os.path.join(workdir, 'accuracy_vs_gflops.png'), title)


def plot_accuracy_vs_gflops(rows: list[dict], path: str, title: str) -> None:
  """Test top-1 against GFLOPs per view (log x), one labelled point per entry."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  points = [r for r in rows if r.get('gflops') and r.get('test_top1') is not None]
  fig, ax = plt.subplots(figsize=(7, 4.5))
  families = sorted({r['family'] for r in points})
  for family in families:
    mine = [r for r in points if r['family'] == family]
    ax.scatter([r['gflops'] for r in mine], [100 * r['test_top1'] for r in mine],
               label=family, s=40)
  for r in points:
    ax.annotate(r['name'], (r['gflops'], 100 * r['test_top1']), fontsize=7,
                xytext=(3, 3), textcoords='offset points')
  ax.set_xscale('log')
  ax.set_xlabel('GFLOPs per view (multiply-adds)')
  ax.set_ylabel('test top-1 (%)')
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  if families:
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def cpu_slots(jobs: int) -> list[set[int]]:
  """This process's CPU cores split into `jobs` disjoint, equal-as-possible sets."""
  cores = sorted(os.sched_getaffinity(0))
  if not 1 <= jobs <= len(cores):
    raise ValueError(f'--jobs={jobs} is invalid: expected 1 to {len(cores)} (the CPU '
                     'cores this process may use).')
  return [set(cores[i::jobs]) for i in range(jobs)]


def run_sweep(spec: str, workdir: str, *, only: Optional[list[str]] = None,
              jobs: int = 1) -> list[dict]:
  """Runs (or resumes) every entry of the sweep `spec` under `workdir`, `jobs` entries at
  a time on disjoint CPU cores; returns the rows in sweep order."""
  entries = resolve_entries(load_sweep(spec))
  if only:
    unknown = sorted(set(only) - {e.name for e in entries})
    if unknown:
      raise ValueError(f'--only names {unknown} are not in the sweep: expected some of '
                       f'{[e.name for e in entries]}.')
    entries = [e for e in entries if e.name in only]
  slots = queue.Queue()
  for cpus in cpu_slots(jobs):
    slots.put(cpus)
  os.makedirs(workdir, exist_ok=True)
  title = pathlib.Path(_split_arg(spec)[0]).stem
  rows = {}

  def finish(i, entry):
    rows[i] = collect_row(entry, os.path.join(workdir, entry.name))
    write_results([rows[k] for k in sorted(rows)], workdir, title=title)

  def train(i, entry):
    cpus = slots.get()
    try:
      logging.info('Sweep entry %d/%d %s: running.', i + 1, len(entries), entry.name)
      run_entry(entry, os.path.join(workdir, entry.name), cpus if jobs > 1 else None)
    finally:
      slots.put(cpus)
    return i, entry

  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    pending = []
    for i, entry in enumerate(entries):
      if is_done(entry, os.path.join(workdir, entry.name)):
        logging.info('Sweep entry %d/%d %s: done, skipped.', i + 1, len(entries), entry.name)
        finish(i, entry)
      else:
        pending.append(pool.submit(train, i, entry))
    for future in concurrent.futures.as_completed(pending):
      finish(*future.result())
  return [rows[k] for k in sorted(rows)]


def _define_flags():
  """The CLI flags, defined only when run as a program (so importing this module next to
  another entry point, e.g. predict's --workdir, cannot clash)."""
  flags.DEFINE_string('sweep', None, 'Sweep file path[:arg] (get_sweep(arg)).')
  flags.DEFINE_string('workdir', None, 'Sweep directory (one sub-dir per entry).')
  flags.DEFINE_list('only', None, 'Run only these entry names.')
  flags.DEFINE_integer('jobs', 1, 'Entries trained at once, each on its own share of the '
                       'CPU cores.')
  flags.mark_flags_as_required(['sweep', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  FLAGS = flags.FLAGS
  rows = run_sweep(FLAGS.sweep, FLAGS.workdir, only=FLAGS.only, jobs=FLAGS.jobs)
  print(markdown_table(rows))


if __name__ == '__main__':
  _define_flags()
  cli.run(main)
