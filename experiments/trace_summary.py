r"""Where a traced step's time goes: device time per op and per kind of op.

  python -m experiments.trace_summary TRACE.json.gz [--top=25] [--hlo=PROGRAM.txt]

TRACE is the `perfetto_trace.json.gz` (or `*.trace.json.gz`) that `jax.profiler.trace`
writes; `python -m experiments.benchmark --profile_dir=DIR` makes one per config and
mode and prints this summary. Device events are read from the GPU/TPU process (its 'XLA
Ops' line where the trace has one, else its stream lines), or on CPU from XLA's executor
threads of the host process. Each op name is put in a kind by its name (attention,
matmul, convolution, fusion, copy, other), so a step's time splits into the parts an
optimisation would change.
On CPU the C++ kernels appear in the trace as `ffi_call.N`: given the compiled program's
text (`--hlo`, `compiled.as_text()`; the benchmark passes it), each custom call is named
by its target instead (`ffi_call vivit_jax_matmul_f32_mkl`: matmul, `ffi_call
vivit_jax_flash_attention_f32`: attention), and the time is also split by the model
module each op comes from (the `op_name` metadata JAX writes into the program: e.g.
`block_*/MultiHeadDotProductAttention_0/layout/layout.relative_position_bias`, forward or
backward, the repeated blocks summed), which names the layer an optimisation would touch.
"""
from __future__ import annotations

import collections
import gzip
import json
import re
import sys

KINDS = (   # first match wins; names of XLA HLO ops, cuBLAS/cuDNN/YNNPACK kernels.
    ('attention', r'fmha|sdpa|flash|attention|fprop.*softmax|bprop.*softmax'),
    ('matmul', r'gemm|xmma|nvjet|cutlass|matmul|\bdot|dot[._]|cublas|ynn|xnn|onednn'),
    ('convolution', r'conv(?!ert)'),   # not 'convert'.
    ('copy', r'copy|memcpy|memset|transpose|dynamic-update-slice|dynamic_update_slice'),
    ('fusion', r'fusion|reduce|loop_|input_|kernel'),
)
# Runtime bookkeeping and control-flow containers (a while loop's event spans the ops
# of its body, which have their own events).
NOT_OPS = re.compile(r'^(ThreadpoolListener|ThunkExecutor|SlinkyThreadPool|end: |\$|'
                     r'(while|call|conditional)(\.\d+)?$)')


# An HLO instruction that is a custom call: its name and target.
CUSTOM_CALL = re.compile(
    r'%([\w.\-]+) = [^\n]*?custom-call\([^\n]*?custom_call_target="([^"]+)"')


# An HLO instruction's name and its op_name metadata (the JAX name stack of its source).
OP_NAME = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = [^\n]*?metadata=\{[^\n]*?op_name="([^"]*)"',
                     re.M)
# A repeated block's scope (`block_3`, `encoderblock_11`, `layers_2`): its index summed over.
# (Lower case: flax's own module names, `MlpBlock_0`, stay as they are.)
REPEATED = re.compile(r'^([a-z_]*(?:block|layer)s?)_\d+(\.\w+)?$')


def op_names(hlo_text: str) -> dict[str, str]:
  """{instruction name: op_name metadata} of a compiled program's text."""
  return dict(OP_NAME.findall(hlo_text))


def module_of(op_name: str, depth: int = 4) -> str:
  """The model scope of an op: `jit(f)/transpose(jvp(MViT))/block_3/Mlp/Dense_0/dot`
  -> 'block_*/Mlp/Dense_0 (backward)'. Transform wrappers and the primitive are dropped,
  repeated blocks' indices become '*', at most `depth` scopes are kept; backward = under
  autodiff's transpose."""
  parts = op_name.split('/')
  scopes = [REPEATED.sub(r'\1_*\2', p) for p in parts[:-1] if '(' not in p]
  direction = 'backward' if 'transpose(' in op_name else 'forward'
  return f"{'/'.join(scopes[:depth]) or '(top level)'} ({direction})"


def custom_call_targets(hlo_text: str) -> dict[str, str]:
  """{instruction name: custom-call target} of a compiled program's text."""
  return dict(CUSTOM_CALL.findall(hlo_text))


def base_name(name: str) -> str:
  """`fusion.12` -> `fusion`: the same op of every layer under one name."""
  return re.sub(r'(\.\d+)+$', '', name)


def kind_of(name: str) -> str:
  lowered = name.lower()
  for kind, pattern in KINDS:
    if re.search(pattern, lowered):
      return kind
  return 'other'


def load_events(path: str) -> list[dict]:
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt') as f:
    data = json.load(f)
  return data['traceEvents'] if isinstance(data, dict) else data


def device_events(events: list[dict]) -> list[dict]:
  """The complete ('X') events of the device's op line(s)."""
  processes = {e['pid']: e['args']['name'] for e in events
               if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  threads = {(e['pid'], e['tid']): e['args']['name'] for e in events
             if e.get('ph') == 'M' and e.get('name') == 'thread_name'}
  devices = [pid for pid, name in processes.items()
             if re.search(r'/device:(GPU|TPU)', name)]
  if devices:
    lines = [k for k in threads if k[0] in devices and threads[k] == 'XLA Ops']
    if not lines:
      lines = [k for k in threads if k[0] in devices and threads[k].startswith('Stream')]
  else:   # CPU: XLA runs ops on its own threads (tf_XLA...), not the Python thread.
    lines = [k for k, name in threads.items() if name.startswith('tf_XLA')]
  lines = set(lines)
  return [e for e in events if e.get('ph') == 'X' and (e.get('pid'), e.get('tid')) in lines
          and not NOT_OPS.match(e['name'])]


def summarize(path: str, top: int = 25, hlo_text: str = '') -> dict:
  """{'total_ms', 'kinds': {kind: ms}, 'ops': [(name, kind, ms, count)] (top by ms),
  'modules': [(module, ms)] (top by ms; empty without `hlo_text`)}.

  Ops are summed over calls and over the layers (`base_name`); on CPU two threads' ops
  overlap, so total_ms is op time summed over threads, not wall time. Custom calls of
  `hlo_text` (the traced program's) are named `<base name> <target>`, and its metadata
  splits the time by `module_of` (ops it does not name: '(no metadata)').
  """
  targets = custom_call_targets(hlo_text)
  sources = op_names(hlo_text)
  per_op = collections.defaultdict(lambda: [0.0, 0])
  per_module = collections.Counter()
  for e in device_events(load_events(path)):
    name = base_name(e['name'])
    if e['name'] in targets:
      name = f"{name} {targets[e['name']]}"
    op = per_op[name]
    ms = float(e.get('dur', 0.0)) / 1e3
    op[0] += ms
    op[1] += 1
    if hlo_text:
      source = sources.get(e['name'])
      per_module[module_of(source) if source else '(no metadata)'] += ms
  kinds = collections.Counter()
  for name, (ms, _) in per_op.items():
    kinds[kind_of(name)] += ms
  ops = sorted(((n, kind_of(n), ms, c) for n, (ms, c) in per_op.items()),
               key=lambda r: -r[2])
  return {'total_ms': sum(kinds.values()), 'kinds': dict(kinds.most_common()),
          'ops': ops[:top], 'modules': per_module.most_common(top)}


def markdown(summary: dict) -> str:
  total = summary['total_ms'] or 1.0
  lines = [f"device op time {summary['total_ms']:.2f} ms: " + ', '.join(
      f'{kind} {100 * ms / total:.0f}%' for kind, ms in summary['kinds'].items()),
           '| op | kind | ms | calls | share |', '|---|---|---|---|---|']
  lines += [f'| {name[:90]} | {kind} | {ms:.3f} | {count} | {100 * ms / total:.1f}% |'
            for name, kind, ms, count in summary['ops']]
  if summary.get('modules'):
    lines += ['', '| module | ms | share |', '|---|---|---|']
    lines += [f'| {module[:110]} | {ms:.3f} | {100 * ms / total:.1f}% |'
              for module, ms in summary['modules']]
  return '\n'.join(lines)


def main(argv):
  if len(argv) < 2:
    sys.exit(__doc__)
  options = dict(a[2:].split('=', 1) for a in argv[2:] if a.startswith('--') and '=' in a)
  hlo_text = ''
  if 'hlo' in options:
    with open(options['hlo']) as f:
      hlo_text = f.read()
  print(markdown(summarize(argv[1], int(options.get('top', 25)), hlo_text)))


if __name__ == '__main__':
  main(sys.argv)
