"""Timed calls: candidates run round-robin, so machine load hits each of them alike."""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable


@dataclasses.dataclass
class Timing:
  """Seconds per call, wall clock and this process's CPU time (all its threads), over
  the timed runs. CPU seconds are what a call costs on a shared machine: other users'
  load stretches wall time but hardly the CPU time a call needs."""
  times: list
  cpu_times: list

  @property
  def median(self):
    return statistics.median(self.times)

  @property
  def cpu_median(self):
    return statistics.median(self.cpu_times)

  def as_dict(self):
    return {'median_s': self.median, 'min_s': min(self.times), 'max_s': max(self.times),
            'cpu_median_s': self.cpu_median, 'runs': len(self.times)}


def interleaved(fns: dict[str, Callable[[], Any]], runs: int, warmup: int) -> dict:
  """Times each `fn()` (which must block until done) `runs` times, round-robin, after
  `warmup` untimed calls each. Returns {name: Timing}."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {name: ([], []) for name in fns}
  for _ in range(runs):
    for name, fn in fns.items():
      start, cpu = time.perf_counter(), time.process_time()
      fn()
      times[name][0].append(time.perf_counter() - start)
      times[name][1].append(time.process_time() - cpu)
  return {name: Timing(*t) for name, t in times.items()}
