"""One traced call of a compiled program, and where its device time goes."""
from __future__ import annotations

import glob
import os
import sys
from typing import Any, Callable

import jax

from experiments import trace_summary
from experiments.benchmark import programs


def profile(run: Callable[[], Any], compiled, log_dir: str) -> dict:
  """Traces one `run()` of `compiled` into `log_dir` (perfetto JSON); prints and returns
  `trace_summary.summarize` of it (custom calls named by their targets, time split by
  model scope), with the trace's path under 'trace'; {} when no trace was written."""
  with jax.profiler.trace(log_dir, create_perfetto_trace=True):
    run()
  traces = sorted(glob.glob(os.path.join(log_dir, '**', 'perfetto_trace.json.gz'),
                            recursive=True), key=os.path.getmtime)
  if not traces:
    print(f'# no perfetto trace under {log_dir}', file=sys.stderr)
    return {}
  summary = trace_summary.summarize(traces[-1], top=15,
                                    hlo_text=programs.hlo_text(compiled))
  print(trace_summary.markdown(summary), flush=True)
  return dict(summary, trace=traces[-1])
