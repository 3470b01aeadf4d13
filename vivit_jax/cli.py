"""How every command-line tool of the package ends on a user error.

`run(main)` is `absl.app.run(main)`, except that the project's own error types
(`errors.VivitJaxError`: a bad config field, data that cannot be read, a checkpoint that
cannot be converted, a non-finite loss) print as one line `error: <message>` on stderr
with exit status 2 and no traceback. `--traceback` (or `-v 1` and above) shows the
traceback as well. Other exceptions (bugs) keep their traceback.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app, flags, logging

from vivit_jax import errors

USER_ERROR_EXIT_CODE = 2

_TRACEBACK = flags.DEFINE_bool(
    'traceback', False, 'Show the traceback of configuration/data/conversion errors too.')


def report(error: BaseException) -> None:
  """Prints `error` as the one line a user reads."""
  message = ' '.join(str(error).split()) or type(error).__name__
  print(f'error: {message}', file=sys.stderr, flush=True)


def run(main: Callable[[Sequence[str]], object]) -> None:
  """Runs `main(argv)` under absl; a `VivitJaxError` exits 2 with one line (see above)."""
  def guarded(argv):
    try:
      return main(argv)
    except errors.VivitJaxError as e:
      if _TRACEBACK.value or logging.get_verbosity() >= logging.DEBUG:
        raise
      report(e)
      sys.exit(USER_ERROR_EXIT_CODE)
  app.run(guarded)
