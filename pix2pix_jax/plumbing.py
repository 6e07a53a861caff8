"""Process plumbing of the training loop: stop requests, progress, input prefetch, write probe,
the workdir lock.

Nothing here is pix2pix: `train.py` holds the step and the loop, and uses these to run as a
well-behaved process (a clean stop with a checkpoint on SIGTERM/SIGINT, an honest progress line,
batches in flight to the devices, a workdir checked before anything is computed, and one training
per workdir).
"""

import collections
import datetime
import fcntl
import itertools
import json
import logging
import os
import pathlib
import signal
import socket
import sys
import threading
import time

import jax
from jax.experimental import multihost_utils
import numpy as np

from pix2pix_jax import progress
from pix2pix_jax import sharding as sharding_lib


def prefetch_to_device(iterator, sharding: jax.sharding.Sharding, size: int = 2):
  """Keeps `size` batches in flight to the devices (as global arrays) ahead of the step."""
  queue = collections.deque()

  def enqueue(n):
    for batch in itertools.islice(iterator, n):
      queue.append(sharding_lib.to_global(batch, sharding))

  enqueue(size)
  while queue:
    yield queue.popleft()
    enqueue(1)


class StopRequest:
  """SIGTERM / SIGINT (preemption, Ctrl-C): finish the step, checkpoint it, exit cleanly.

  A second SIGINT interrupts at once. With several processes, SIGTERM is left to JAX's
  preemption notifier and the stop step comes from Orbax's preemption sync point, so every
  process checkpoints the same step; a Ctrl-C on any process is agreed at the next log step.
  """

  def __init__(self):
    self.signal_name, self._previous = None, {}

  def __enter__(self):
    signals = [signal.SIGINT] + ([signal.SIGTERM] if jax.process_count() == 1 else [])
    if threading.current_thread() is threading.main_thread():  # Python only allows it there.
      for signum in signals:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _handle(self, signum, frame):
    if self.signal_name and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_name = signal.Signals(signum).name
    logging.warning(
        '%s received: stopping after this step with a checkpoint (again with SIGINT '
        'to stop at once)',
        self.signal_name,
    )

  def requested(self, manager, step: int, agree_now: bool = True) -> bool:
    """Whether to stop after `step`; `agree_now` allows a cross-process check (a host sync)."""
    if jax.process_count() == 1:
      return self.signal_name is not None
    if manager.reached_preemption(step):
      self.signal_name = self.signal_name or 'SIGTERM'
      return True
    if agree_now and np.any(
        multihost_utils.process_allgather(np.int32(self.signal_name is not None))
    ):
      self.signal_name = self.signal_name or 'SIGINT'
      return True
    return False


def check_writable(workdir: pathlib.Path) -> None:
  """Fails at start, naming the workdir, if it cannot be created or written."""
  probe = workdir / f'.write_test.{jax.process_index()}'  # One per process: no race.
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(b'pix2pix_jax')
    probe.unlink()
  except OSError as error:
    raise OSError(f'cannot write to --workdir {workdir}: {error}') from error


LOCK_FILE = '.lock'


class WorkdirBusyError(RuntimeError):
  """Another live training holds the workdir."""


class WorkdirLock:
  """One live training per workdir: an exclusive lock on WORKDIR/.lock, taken before anything is
  written and held to the end.

  A second training in the same workdir (a second terminal, a re-submitted cluster job) is refused
  at once with the holder's host, PID, start time and command, instead of both writing the same
  checkpoints. The lock is `fcntl.flock` on the file, which the kernel drops when its process
  ends however it ends: a holder killed with -9, crashed or rebooted leaves no lock, only its
  note in the file, so the next start takes the workdir over with a warning naming it. A clean end
  empties the note. The file itself is never deleted (a deleted lock file could be locked twice).
  Reading modes (evaluate, score, predict and export) take no lock and may run beside a training.
  With several processes, process 0 holds it for the run.
  """

  def __init__(self, workdir: pathlib.Path):
    self.path = pathlib.Path(workdir) / LOCK_FILE
    self._fd = None

  def __enter__(self) -> 'WorkdirLock':
    if jax.process_index() != 0:
      return self
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
      holder = _read_note(fd)
      os.close(fd)
      raise WorkdirBusyError(
          f'--workdir {self.path.parent} is in use by another training ({_describe(holder)}; lock '
          f"{self.path}). Two trainings in one workdir would overwrite each other's checkpoints: "
          'wait for it to finish, stop it (SIGTERM or Ctrl-C saves a checkpoint, and the same '
          'command resumes), or give this run another --workdir. Evaluate, score, predict and '
          'export may run beside it.'
      ) from error
    previous = _read_note(fd)
    if previous:
      logging.warning(
          'Taking over %s from a training that ended without releasing it (%s): it was killed, '
          'crashed or its machine restarted. Its complete checkpoints are kept; this run resumes '
          'from the latest.',
          self.path.parent,
          _describe(previous),
      )
    note = {
        'host': socket.gethostname(),
        'pid': os.getpid(),
        'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        'command': ' '.join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(note).encode(), 0)
    os.fsync(fd)
    self._fd = fd
    return self

  def __exit__(self, *exc_info) -> None:
    if self._fd is not None:
      os.ftruncate(self._fd, 0)  # Released cleanly: nothing for the next start to warn about.
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def _read_note(fd: int) -> dict | None:
  """The holder's note in an open lock file: None if empty (released cleanly)."""
  data = os.pread(fd, 65536, 0)
  if not data.strip():
    return None
  try:
    return json.loads(data)
  except ValueError:
    return {'note': data.decode(errors='replace').strip()[:200]}


def _describe(note: dict | None) -> str:
  if not note:
    return 'holder unknown'
  if 'pid' not in note:
    return note.get('note', 'holder unknown')
  return (
      f"PID {note['pid']} on {note.get('host', '?')}, started {note.get('started', '?')}: "
      f"{note.get('command', '?')}"
  )


class Progress:
  """Steps/s, the share of time spent waiting for input batches, and an ETA for the log line.

  The loop never waits for the device except when metrics are fetched, so time blocked in
  `next(batches)` is time the input pipeline (not the device) held training up.
  """

  def __init__(self, start_step: int, num_train_steps: int):
    self.num_train_steps = num_train_steps
    self.last_step, self.last_time, self.data_wait = start_step, time.perf_counter(), 0.0

  def next_batch(self, batches):
    start = time.perf_counter()
    batch = next(batches)
    self.data_wait += time.perf_counter() - start
    return batch

  def update(self, step: int) -> tuple[float, float, str]:
    """Returns (steps/s, data-wait fraction, ETA) since the last call."""
    now = time.perf_counter()
    elapsed = max(now - self.last_time, 1e-9)
    rate, wait = (step - self.last_step) / elapsed, self.data_wait / elapsed
    self.last_step, self.last_time, self.data_wait = step, now, 0.0
    eta = (self.num_train_steps - step) / max(rate, 1e-9)
    return rate, wait, progress.format_duration(eta)
