"""Progress lines for long work outside training: a count, a rate, an ETA and where the time went.

Evaluating or scoring the 1098 maps val pairs takes many minutes on a CPU; without a line now
and then a user cannot tell a slow run from a stuck one, nor whether the generator, LPIPS or the
FID network is the slow part. Training has its own line (`plumbing.Progress`); this one is for
evaluate, score and predict, at most one line every `every_seconds`, and always one at the end.
"""

import contextlib
import logging
import time


def format_duration(seconds: float) -> str:
  """'1:02:03', or '2.5d' past a day: as training's ETA."""
  if seconds >= 86400:
    return f'{seconds / 86400:.1f}d'
  return time.strftime('%H:%M:%S', time.gmtime(seconds))


class ProgressLog:
  """Logs 'WHAT: done/total UNIT, rate, ETA; time in each phase' as the work goes.

  Args:
    what: what is being done, e.g. 'Evaluating'.
    total: how many units the work has.
    unit: what is counted.
    rest: the name of the time not spent in a `phase` (e.g. 'generation', 'reading files').
    every_seconds: the least time between two lines.
  """

  def __init__(
      self,
      what: str,
      total: int,
      *,
      unit: str = 'images',
      rest: str = 'other',
      every_seconds: float = 10.0,
  ):
    self._what, self._total, self._unit, self._rest = what, total, unit, rest
    self._every = every_seconds
    self._start = self._last = time.perf_counter()
    self._phases: dict[str, float] = {}
    self.lines: list[str] = []  # What was logged, for tests.

  @contextlib.contextmanager
  def phase(self, name: str):
    """Counts the time of the `with` body towards phase `name`."""
    start = time.perf_counter()
    try:
      yield
    finally:
      self._phases[name] = self._phases.get(name, 0.0) + time.perf_counter() - start

  def update(self, done: int, *, force: bool = False, quiet_end: bool = False) -> None:
    """Logs a line if `every_seconds` have passed since the last one, or at the end.

    Args:
      done: units done so far.
      force: log now.
      quiet_end: no line at the end unless one was logged before: short work stays silent.
    """
    now = time.perf_counter()
    end = done >= self._total and not (quiet_end and not self.lines)
    if not (force or end or now - self._last >= self._every):
      return
    self._last = now
    elapsed = max(now - self._start, 1e-9)
    rate = done / elapsed
    eta = (self._total - done) / rate if rate > 0 else float('inf')
    phases = {self._rest: max(elapsed - sum(self._phases.values()), 0.0)} | self._phases
    spent = ', '.join(f'{name} {seconds:.0f} s' for name, seconds in phases.items())
    line = (
        f'{self._what}: {done}/{self._total} {self._unit}, {rate:.2f} {self._unit}/s, '
        + (
            f'ETA {format_duration(eta)}'
            if done < self._total
            else f'done in {format_duration(elapsed)}'
        )
        + f' ({spent})'
    )
    self.lines.append(line)
    logging.info('%s', line)
