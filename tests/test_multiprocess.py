"""Two JAX processes on one machine (gloo collectives on loopback) train as one process does.

`python main.py ... --coordinator_address=127.0.0.1:PORT --num_processes=2 --process_id=I`, one CPU
device each, sharing a workdir, against one process with two virtual devices: the same sharded
program, so the same losses and parameters, and one copy of every output.
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from configs import test as test_config
from pix2pix_jax import checkpointing, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = {'model.norm': 'instance', 'batch_size': 2, 'eval.batch_size': 2, 'num_train_steps': 2}
# Cold (empty compilation cache) the three runs take ~55 s of CPU, ~30 s warm; a hang (a process
# that never joins the others) is cut off before jax's own 300 s initialisation timeout.
TIMEOUT_S = 240
# Compiling is most of the time (process 1 compiles every time: jax writes the persistent cache
# from process 0 only); LLVM at -O0 compiles ~40% faster. Every run here uses the same flags, so
# the comparison is between the same programs.
XLA_FLAGS = '--xla_backend_optimization_level=0 --xla_force_host_platform_device_count='

# `python main.py ARGS`, except that pipeline.train_dataset is wrapped to log a digest of each
# example of the first train batch: the processes themselves say which shard they read.
LAUNCHER = """
import hashlib, runpy, sys
from absl import logging
from pix2pix_jax.data import pipeline

train_dataset = pipeline.train_dataset

def logged_train_dataset(*args, **kwargs):
  dataset = train_dataset(*args, **kwargs)
  batch = dataset[0]
  digests = [hashlib.sha256(i.tobytes() + t.tobytes()).hexdigest()[:16]
             for i, t in zip(batch['input'], batch['target'])]
  logging.info('first train batch of process %d: %s', kwargs.get('process_index', 0),
               ' '.join(digests))
  return dataset

pipeline.train_dataset = logged_train_dataset
sys.argv[0] = 'main.py'
runpy.run_path('main.py', run_name='__main__')
"""


def free_port() -> int:
  """A loopback port nobody listens on now (the coordinator binds it a moment later)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def start(workdir, log_path, *flags, env):
  command = [
      sys.executable,
      '-c',
      LAUNCHER,
      '--config=configs/test.py',
      f'--workdir={workdir}',
      *[f'--config.{k}={v}' for k, v in OVERRIDES.items()],
      *flags,
  ]
  with open(log_path, 'w') as log:  # A file, not a pipe: neither process can block on its output.
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ | {'JAX_PLATFORMS': 'cpu'} | env,
    )


def wait_all(processes: dict, logs: dict) -> dict:
  """Each run's log, once all exited; kills them all if any runs past the deadline."""
  deadline = time.monotonic() + TIMEOUT_S
  try:
    for name, process in processes.items():
      process.wait(timeout=max(deadline - time.monotonic(), 1))
  except subprocess.TimeoutExpired:
    for process in processes.values():
      process.kill()
      process.wait()
    pytest.fail(
        f'timed out after {TIMEOUT_S} s; logs:\n'
        + '\n'.join(f'--- {name}\n{logs[name].read_text()[-3000:]}' for name in logs)
    )
  texts = {name: logs[name].read_text() for name in logs}
  for name, process in processes.items():
    assert process.returncode == 0, f'{name} exited {process.returncode}:\n{texts[name][-3000:]}'
  return texts


def first_batch_digests(log: str) -> list[str]:
  (digests,) = re.findall(r'first train batch of process \d+: ([0-9a-f ]+)', log)
  return digests.split()


def read_events(workdir):
  events = event_accumulator.EventAccumulator(str(workdir), size_guidance={'scalars': 0})
  events.Reload()
  return events


def restore_state(workdir, config):
  """The checkpoint of `workdir` at its last step, on this process's single device."""
  _, init_fn, _ = train.create_train_functions(
      config, steps_per_epoch=8, num_train_steps=config.num_train_steps
  )
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      jax.eval_shape(init_fn, jax.random.PRNGKey(config.seed)),
  )
  manager = checkpointing.create_checkpoint_manager(workdir / 'checkpoints', 1)
  state, step = checkpointing.restore(manager, target, config)
  assert step == config.num_train_steps
  return jax.device_get(state)


@pytest.mark.parametrize('on_device', [False, True])
def test_two_processes_match_one_process_with_two_devices(tmp_path, on_device):
  # on_device: each process holds the whole train set and cuts its shard of the batch on device.
  data_flags = ['--config.data.on_device=True'] if on_device else []
  pair, single = tmp_path / 'pair', tmp_path / 'single'
  port = free_port()
  address = f'127.0.0.1:{port}'
  # Loopback only: jax's coordinator otherwise listens on all interfaces ([::]:PORT).
  pair_env = {'XLA_FLAGS': XLA_FLAGS + '1', 'JAX_COORDINATOR_BIND_ADDRESS': address}
  logs = {name: tmp_path / f'{name}.log' for name in ('process_0', 'process_1', 'single')}
  # All three at once: the single-process run compiles while the pair waits for each other.
  processes = {
      f'process_{i}': start(
          pair,
          logs[f'process_{i}'],
          f'--coordinator_address={address}',
          '--num_processes=2',
          f'--process_id={i}',
          *data_flags,
          env=pair_env,
      )
      for i in range(2)
  }
  processes['single'] = start(
      single, logs['single'], *data_flags, env={'XLA_FLAGS': XLA_FLAGS + '2'}
  )
  texts = wait_all(processes, logs)
  for i in range(2):
    assert f'process {i}/2' in texts[f'process_{i}'] and '2 device(s)' in texts[f'process_{i}']
  assert 'process 0/1' in texts['single'] and '2 device(s)' in texts['single']

  if on_device:
    assert all('Train set in device memory' in text for text in texts.values())
  else:
    # Each process read its own half of the global batch the single process read.
    single_digests = first_batch_digests(texts['single'])
    assert len(set(single_digests)) == 2
    assert [first_batch_digests(texts[f'process_{i}']) for i in range(2)] == [
        [single_digests[0]],
        [single_digests[1]],
    ]

  # One complete checkpoint, written together; events and config.json written once (process 0).
  assert sorted(p.name for p in (pair / 'checkpoints').iterdir()) == ['2']
  assert list(checkpointing.open_checkpoints(pair / 'checkpoints').all_steps()) == [2]  # Complete.
  assert len(list(pair.glob('events.out.tfevents.*'))) == 1
  assert json.loads((pair / 'config.json').read_text()) == json.loads(
      (single / 'config.json').read_text()
  )
  events = {name: read_events(workdir) for name, workdir in (('pair', pair), ('single', single))}
  for name in [f'train_{loss}' for loss in train.LOSS_NAMES] + ['eval_l1']:
    (ours,), (theirs,) = (events[run].Scalars(name) for run in ('single', 'pair'))  # Once each.
    assert theirs.step == ours.step == 2
    assert theirs.value == pytest.approx(ours.value, rel=1e-5), name

  config = test_config.get_config()
  config.model.norm, config.batch_size, config.eval.batch_size, config.num_train_steps = (
      OVERRIDES['model.norm'],
      OVERRIDES['batch_size'],
      OVERRIDES['eval.batch_size'],
      OVERRIDES['num_train_steps'],
  )
  # (With the same partitioned program and 2-way sums, which no order changes, they come out
  # bit-identical on jax 0.10.2; the tolerance is the multi-device test's.)
  states = [restore_state(workdir, config) for workdir in (single, pair)]
  for network in ('generator', 'discriminator'):
    ours, theirs = (getattr(s, network).params for s in states)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(theirs)):
      if path[-1].key == 'bias':
        # A bias right before a (non-affine) InstanceNorm has a true gradient of 0: what it gets
        # is rounding noise, which Adam's first steps scale to ±lr whatever the reduction order.
        continue
      diff = np.abs(a - b)
      # Adam does the same with the few kernel entries whose gradient is ~0: tiny on average and
      # never more than one learning rate (2e-4) apart.
      assert diff.mean() < 1e-6 and diff.max() < 2e-4, (
          network,
          jax.tree_util.keystr(path),
          diff.max(),
      )


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
  """Preemption usually reaches one host: JAX's notifier and Orbax's sync point agree the step."""
  address = f'127.0.0.1:{free_port()}'
  env = {'XLA_FLAGS': XLA_FLAGS + '1', 'JAX_COORDINATOR_BIND_ADDRESS': address}
  logs = {f'process_{i}': tmp_path / f'process_{i}.log' for i in range(2)}
  long_run = [
      '--config.num_train_steps=100000',
      '--config.log_every_steps=5',
      '--config.checkpoint_every_steps=100000',
  ]
  processes = {
      f'process_{i}': start(
          tmp_path / 'run',
          logs[f'process_{i}'],
          *long_run,
          f'--coordinator_address={address}',
          '--num_processes=2',
          f'--process_id={i}',
          env=env,
      )
      for i in range(2)
  }
  deadline = time.monotonic() + TIMEOUT_S
  while 'step 10/' not in logs['process_0'].read_text() and time.monotonic() < deadline:
    time.sleep(0.2)
  processes['process_1'].send_signal(signal.SIGTERM)
  texts = wait_all(processes, logs)
  stops = [re.findall(r'Stopped by SIGTERM at step (\d+)', texts[name]) for name in logs]
  assert stops[0] and stops[0] == stops[1], texts
  steps = checkpointing.open_checkpoints(tmp_path / 'run' / 'checkpoints').all_steps()
  assert int(stops[0][0]) in steps  # Complete.
