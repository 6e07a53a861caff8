"""Faults: signals, kill -9 at random moments, partial checkpoints, NaN batches, disk failures."""

import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import test as test_config
from pix2pix_jax import plumbing, train
from pix2pix_jax.data import pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]


def start_main(workdir, *overrides, prefix=()):
  command = [
      *prefix,
      sys.executable,
      'main.py',
      '--config=configs/test.py',
      f'--workdir={workdir}',
      *overrides,
  ]
  return subprocess.Popen(
      command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ
  )


def steps(workdir):
  directory = pathlib.Path(workdir) / 'checkpoints'
  return (
      sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
      if directory.exists()
      else []
  )


def final_state(config, workdir):
  """The TrainState a completed run left in `workdir` (resuming restores it; nothing trains)."""
  return train.train_and_evaluate(config, str(workdir))


def assert_same_state(a, b):
  equal = jax.tree.map(np.array_equal, jax.device_get(a), jax.device_get(b))
  assert all(jax.tree.leaves(equal))


def wait_for_line(process, text, timeout=120):
  """Reads the child's output until a line contains `text`; returns what was read."""
  deadline, lines = time.monotonic() + timeout, []
  while time.monotonic() < deadline:
    line = process.stdout.readline()
    if not line:
      break
    lines.append(line)
    if text in line:
      return ''.join(lines)
  raise AssertionError(f'{text!r} never appeared:\n' + ''.join(lines)[-3000:])


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_exits_zero_and_resumes_exactly(tmp_path, signum):
  long_run = [
      '--config.num_train_steps=100000',
      '--config.checkpoint_every_steps=100000',
      '--config.log_every_steps=1',
  ]
  process = start_main(tmp_path / 'run', *long_run)
  wait_for_line(process, 'step 3/100000')
  sent = time.monotonic()
  process.send_signal(signum)
  output = process.communicate(timeout=60)[0]
  assert process.returncode == 0, output[-3000:]
  assert time.monotonic() - sent < 10
  stopped = [line for line in output.splitlines() if 'Stopped by' in line]
  assert stopped and signal.Signals(signum).name in stopped[0], output[-3000:]
  (stop_step,) = steps(tmp_path / 'run')
  assert f'step {stop_step} of 100000' in stopped[0]
  # Resuming to a fixed step equals an uninterrupted run to that step, bit for bit.
  config = test_config.get_config()
  config.num_train_steps = stop_step + 3
  resumed = train.train_and_evaluate(config, str(tmp_path / 'run'))
  uninterrupted = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  assert_same_state(resumed, uninterrupted)


def test_kill_9_at_random_moments(tmp_path):
  """10 SIGKILLs: half at a random moment after start (start-up, compilation, steps), half just
  after a checkpoint write began. Every restart resumes from the last complete checkpoint, and
  the run ends bit-identical to an uninterrupted one."""
  overrides = [
      '--config.num_train_steps=200',
      '--config.checkpoint_every_steps=2',
      '--config.log_every_steps=2',
      '--config.keep_checkpoints=2',
  ]
  rng, mid_save = random.Random(0), 0
  for kill in range(10):
    before = steps(tmp_path)
    process = start_main(tmp_path, *overrides)
    if kill % 2:
      output = wait_for_line(process, 'Saving checkpoint')
      time.sleep(rng.uniform(0.0, 0.05))  # The asynchronous write is under way.
    else:
      output = ''
      time.sleep(rng.uniform(0.5, 5.0))
    assert process.poll() is None, 'the run ended before it could be killed'
    process.kill()
    output += process.communicate(timeout=60)[0]
    checkpoint_dir = tmp_path / 'checkpoints'
    mid_save += checkpoint_dir.exists() and any('tmp' in p.name for p in checkpoint_dir.iterdir())
    assert 'Traceback' not in output, output[-3000:]  # Each restart got going cleanly...
    if before and 'Resuming' in output:  # ... from the last complete checkpoint.
      assert f'Resuming from checkpoint at step {before[-1]} ' in output, output[-3000:]
  assert mid_save >= 3, f'only {mid_save} kills interrupted a checkpoint write'
  finish = start_main(tmp_path, *overrides)
  output = finish.communicate(timeout=300)[0]
  assert finish.returncode == 0, output[-3000:]
  assert not any('tmp' in p.name for p in (tmp_path / 'checkpoints').iterdir())
  config = test_config.get_config()
  config.num_train_steps, config.checkpoint_every_steps, config.log_every_steps = 200, 2, 2
  resumed = final_state(config, tmp_path)
  config.checkpoint_every_steps = 200  # Checkpoint frequency does not change the maths.
  assert_same_state(resumed, train.train_and_evaluate(config, str(tmp_path / 'straight')))


def test_unfinished_checkpoint_write_is_never_restored(tmp_path):
  config = test_config.get_config()
  train.train_and_evaluate(config, str(tmp_path))  # Checkpoints 2 and 4.
  # What a kill -9 during the save of step 6 leaves: a temporary folder, never committed.
  partial = tmp_path / 'checkpoints' / '6.orbax-checkpoint-tmp-1234567'
  shutil.copytree(tmp_path / 'checkpoints' / '4', partial)
  (partial / 'commit_success.txt').unlink(missing_ok=True)
  config.num_train_steps = 6
  resumed = train.train_and_evaluate(config, str(tmp_path))
  assert int(resumed.step) == 6 and steps(tmp_path) == [2, 4, 6]
  assert not partial.exists()  # Cleaned up when the manager started.
  assert_same_state(resumed, train.train_and_evaluate(config, str(tmp_path / 'straight')))


def test_nan_batch_is_skipped_when_configured():
  config = test_config.get_config()
  config.on_nonfinite = 'skip'
  _, init_fn, step_fn = train.create_train_functions(config, steps_per_epoch=8, num_train_steps=10)
  state = jax.jit(init_fn)(jax.random.PRNGKey(0))
  step = jax.jit(step_fn)
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
  poisoned = images.copy()
  poisoned[0, 0, 0, 0] = np.nan  # A NaN batch: the input scaling keeps the NaN.
  after, metrics = step(state, {'input': poisoned, 'target': images})
  assert float(metrics['skipped']) == 1.0 and not np.isfinite(float(metrics['g_total']))
  assert int(after.step) == 1
  assert_same_state((after.generator, after.discriminator), (state.generator, state.discriminator))
  after, metrics = step(after, {'input': images, 'target': images})
  assert float(metrics['skipped']) == 0.0
  changed = jax.tree.map(
      lambda a, b: not np.array_equal(a, b), after.generator.params, state.generator.params
  )
  assert any(jax.tree.leaves(changed))
  with pytest.raises(FloatingPointError, match='step 7'):
    train.check_finite([{name: float('nan') for name in train.LOSS_NAMES}], first_step=7)
  train.check_finite([{name: float('nan') for name in train.LOSS_NAMES} | {'skipped': 1.0}], 7)


def test_unwritable_workdir_fails_at_start(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('a file where a folder should be')
  with pytest.raises(OSError, match=f'cannot write to --workdir {blocker}/run'):
    train.train_and_evaluate(test_config.get_config(), str(blocker / 'run'))
  assert blocker.read_text() == 'a file where a folder should be'


# A 'full disk' for the child: no file can grow past 256 kB, and writes fail with EFBIG (SIGXFSZ
# is ignored rather than killing the process). Set in a tiny launcher that then execs main.py.
SMALL_DISK = (
    sys.executable,
    '-c',
    (
        'import os, resource, signal, sys; '
        'signal.signal(signal.SIGXFSZ, signal.SIG_IGN); '
        'resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024)); '
        'os.execv(sys.argv[1], sys.argv[1:])'
    ),
)


def test_full_disk_at_save_keeps_the_previous_checkpoint(tmp_path):
  config = test_config.get_config()
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(tmp_path))
  process = start_main(
      tmp_path, '--config.num_train_steps=4', '--config.checkpoint_every_steps=4', prefix=SMALL_DISK
  )
  output = process.communicate(timeout=300)[0]
  assert process.returncode != 0
  assert 'CheckpointSaveError' in output and 'steps [2]' in output, output[-3000:]
  # The message is the last thing printed: no shutdown tracebacks of Orbax's async writes after it.
  last = output.strip().splitlines()[-1]
  assert 'CheckpointSaveError: writing a checkpoint in' in last and 'steps [2]' in last, last
  assert 'Exception ignored' not in output and 'never retrieved' not in output
  assert steps(tmp_path) == [2]
  config.num_train_steps = 4  # With room again, the run resumes from the intact checkpoint.
  assert int(train.train_and_evaluate(config, str(tmp_path)).step) == 4


def folder_config(root, splits=('train', 'val'), count=4):
  """configs/test.py on a folder of `count` 64×32 side-by-side JPEG pairs per split."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  for split in splits:
    (root / split).mkdir(parents=True)
    for i in range(count):
      pair = np.random.default_rng(i).integers(0, 256, (32, 64, 3), np.uint8)
      Image.fromarray(pair).save(root / split / f'{i}.jpg')
  config = test_config.get_config()
  config.data.name, config.data.folder_dir = 'folder', str(root)
  config.num_train_steps = 2
  return config


def truncate(path):
  path.write_bytes(path.read_bytes()[:200])


def add_bad_files(split_dir) -> list[str]:
  """A truncated JPEG, a '.png' that is text, an odd-width image; returns their paths."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  truncated = split_dir / '2.jpg'
  truncate(truncated)
  (split_dir / 'notes.png').write_bytes(b'these are notes, not an image')
  Image.fromarray(np.zeros((32, 63, 3), np.uint8)).save(split_dir / 'odd.png')
  return [str(split_dir / name) for name in ('2.jpg', 'notes.png', 'odd.png')]


def files(directory):
  return {p.relative_to(directory): p.read_bytes() for p in directory.rglob('*') if p.is_file()}


def test_bad_train_files_all_named_before_anything_is_written(tmp_path):
  config = folder_config(tmp_path / 'data')
  bad = add_bad_files(tmp_path / 'data' / 'train')
  with pytest.raises(ValueError) as error:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert all(path in str(error.value) for path in bad), str(error.value)
  assert '3 of 6 pairs' in str(error.value)
  assert not (tmp_path / 'run').exists()  # Not even created.


def test_eval_split_is_checked_too(tmp_path):
  config = folder_config(tmp_path / 'data')
  truncate(tmp_path / 'data' / 'val' / '1.jpg')
  with pytest.raises(ValueError, match=str(tmp_path / 'data' / 'val' / '1.jpg')):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_skip_trains_on_the_good_files_and_lists_the_bad_ones(tmp_path, caplog):
  config = folder_config(tmp_path / 'data')
  bad = add_bad_files(tmp_path / 'data' / 'train')
  config.data.on_bad_file = 'skip'
  config.batch_size = 3  # Two steps of 3 read every pair: a bad one left in would raise.
  with caplog.at_level('WARNING'):
    state = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert int(state.step) == 2 and steps(tmp_path / 'run') == [2]
  (warning,) = [r.getMessage() for r in caplog.records if 'left out' in r.getMessage()]
  assert '3 of 6 pairs' in warning and all(path in warning for path in bad), warning


def test_resumed_run_on_data_gone_bad_loses_nothing(tmp_path):
  config = folder_config(tmp_path / 'data')
  config.eval.every_steps = 1  # Event files with eval scalars and panels too.
  config.checkpoint_every_steps = 1
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert steps(tmp_path / 'run') == [1, 2]
  before = files(tmp_path / 'run')
  assert any('events' in str(p) for p in before) and pathlib.Path('config.json') in before
  broken = tmp_path / 'data' / 'train' / '9.jpg'
  broken.write_bytes((tmp_path / 'data' / 'train' / '0.jpg').read_bytes()[:300])
  config.num_train_steps = 4
  with pytest.raises(ValueError, match=str(broken)):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert files(tmp_path / 'run') == before


def test_workdir_lock_refuses_a_second_holder_and_takes_over_a_dead_ones(tmp_path, caplog):
  """In one process: each WorkdirLock opens the file anew, so flock treats them as rivals."""
  with plumbing.WorkdirLock(tmp_path) as first:
    note = json.loads(first.path.read_text())
    assert note['pid'] == os.getpid() and note['host'] and note['started']
    with pytest.raises(plumbing.WorkdirBusyError) as error:
      plumbing.WorkdirLock(tmp_path).__enter__()
    message = str(error.value)
    assert f"PID {os.getpid()} on {note['host']}" in message and str(tmp_path) in message
    assert 'another --workdir' in message and 'Evaluate, score, predict and export' in message
  assert first.path.read_text() == ''  # Released cleanly: the next start has nothing to report.
  with plumbing.WorkdirLock(tmp_path):
    pass
  assert 'Taking over' not in caplog.text
  # A holder killed outright leaves its note but no lock: the next start takes over, and says so.
  first.path.write_text(
      json.dumps(
          {'pid': 4242, 'host': 'elsewhere', 'started': 'then', 'command': 'main.py --workdir=W'}
      )
  )
  with plumbing.WorkdirLock(tmp_path):
    pass
  assert 'Taking over' in caplog.text and 'PID 4242 on elsewhere' in caplog.text


def test_second_training_in_a_workdir_is_refused_until_the_first_is_killed(tmp_path):
  """Two real trainings: the second is refused at once, naming the first; after kill -9 of the
  first, a third start takes the workdir over and resumes from the first's checkpoints."""
  workdir = tmp_path / 'run'
  first = start_main(
      workdir,
      '--config.num_train_steps=100000',
      '--config.log_every_steps=1',
      '--config.checkpoint_every_steps=2',
  )
  wait_for_line(first, 'step 3/100000')
  second = start_main(workdir, '--config.num_train_steps=20', '--config.seed=1')
  output = second.communicate(timeout=120)[0]
  assert second.returncode != 0
  assert f'is in use by another training (PID {first.pid} on ' in output, output[-3000:]
  assert first.poll() is None  # The first trains on, untouched.
  first.send_signal(signal.SIGKILL)
  first.communicate(timeout=60)
  reached = steps(workdir)[-1]
  third = start_main(workdir, f'--config.num_train_steps={reached + 2}')
  output = third.communicate(timeout=180)[0]
  assert third.returncode == 0, output[-3000:]
  assert f'PID {first.pid} on ' in output and 'Taking over' in output
  assert f'Resuming from checkpoint at step {reached}' in output
  assert (workdir / plumbing.LOCK_FILE).read_text() == ''


def test_symlink_loops_in_a_split_are_named_not_raised(tmp_path, caplog):
  """A link to itself, inside a split and beside it: skipped as a non-image entry, or a bad file
  named by path when its name is an image's; never a raw 'Too many levels of symbolic links'."""
  root = tmp_path / 'data'
  config = folder_config(root)
  for link in (root / 'train' / 'loop', root / 'train' / 'looped.png', root / 'elsewhere'):
    link.symlink_to(link.name)  # Relative to its own folder: itself.
  with pytest.raises(ValueError) as error:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert 'looped.png' in str(error.value) and 'symbolic links' in str(error.value)
  assert not (tmp_path / 'run').exists()
  config.data.on_bad_file = 'skip'  # The 4 good pairs stay, the looped one is left out.
  assert len(pipeline.create_source(config.data, 'train', seed=0)) == 4
  assert 'train/loop' in caplog.text  # Listed with the other non-image entries.


def test_a_run_already_past_its_last_step_says_so_and_writes_nothing(
    trained_workdir, tmp_path, caplog
):
  shutil.copytree(trained_workdir, tmp_path, dirs_exist_ok=True)  # A checkpoint at step 2.
  before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*')}
  config = test_config.get_config()
  config.num_train_steps = 1
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 2  # The checkpoint as it was, not trained back or forth.
  assert 'Nothing to train: the latest checkpoint' in caplog.text
  assert 'config.num_train_steps=1' in caplog.text and 'Finished at step' not in caplog.text
  after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*')}
  assert {p: t for p, t in after.items() if p.name != plumbing.LOCK_FILE} == {
      p: t for p, t in before.items() if p.name != plumbing.LOCK_FILE
  }
