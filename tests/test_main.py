"""End to end: `python main.py` on configs/test.py, as a user runs it."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from configs import test as test_config
from pix2pix_jax import checkpointing, models, train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_main(workdir, *overrides, env=None):
  command = [
      sys.executable,
      'main.py',
      '--config=configs/test.py',
      f'--workdir={workdir}',
      *overrides,
  ]
  return subprocess.run(
      command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=os.environ | (env or {})
  )


def read_events(workdir):
  events = event_accumulator.EventAccumulator(
      str(workdir), size_guidance={'images': 0, 'scalars': 0}
  )
  events.Reload()
  return events


def checkpoint_steps(workdir):
  return sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())


def test_train_then_resume(tmp_path):
  first = run_main(tmp_path)
  assert first.returncode == 0, first.stderr[-3000:]
  assert checkpoint_steps(tmp_path) == [2, 4]
  # Complete as Orbax defines it (its finalised steps), whatever its version writes inside.
  assert 4 in checkpointing.open_checkpoints(tmp_path / 'checkpoints').all_steps()
  assert (tmp_path / 'config.json').exists()
  assert (tmp_path / 'images' / 'step_00000004.png').exists()
  events = read_events(tmp_path)
  for name in [f'train_{loss}' for loss in train.LOSS_NAMES] + [
      'train_learning_rate',
      'steps_per_second',
      'data_wait_fraction',
      'eval_l1',
  ]:
    assert name in events.Tags()['scalars'], name
  assert [e.step for e in events.Scalars('train_g_l1')] == [2, 4]
  assert events.Tags()['images'] == []  # Panels have their own event file: scalars read fast.
  assert read_events(tmp_path / 'panels').Tags()['images'] == ['eval_panel']
  assert 'Generator parameters' in first.stderr and 'step 4/4' in first.stderr

  second = run_main(tmp_path, '--config.num_train_steps=6')
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'Resuming from checkpoint at step 4 of 6' in second.stderr
  assert 'step 2/6' not in second.stderr and 'step 6/6' in second.stderr
  assert checkpoint_steps(tmp_path) == [2, 4, 6]
  assert [e.step for e in read_events(tmp_path).Scalars('train_g_l1')] == [2, 4, 6]


def test_config_typo_is_rejected(tmp_path):
  result = run_main(tmp_path, '--config.model.patch_sise=16')
  assert result.returncode != 0
  assert 'patch_sise' in result.stderr and 'patch_size' in result.stderr  # "Did you mean".
  assert not (tmp_path / 'checkpoints').exists()


def test_patch_size_override_changes_the_discriminator(tmp_path):
  result = run_main(tmp_path, '--config.model.patch_size=16', '--config.num_train_steps=1')
  assert result.returncode == 0, result.stderr[-3000:]
  config = test_config.get_config()
  config.num_train_steps = 1
  config.model.patch_size = 16
  state = train.train_and_evaluate(config, str(tmp_path))  # Resumes: architecture matches.
  # 16×16 PatchGAN: one strided conv, then a stride-1 conv of 2·ndf features.
  assert state.discriminator.params['conv1']['kernel'].shape == (4, 4, 8, 16)
  assert 'conv2' not in state.discriminator.params


def test_eight_devices_match_one_device(tmp_path):
  # XLA's convolutions throughout: the Winograd layer (CPU default, tested in test_models) rounds
  # ~10× coarser, and Adam's first steps turn that into more entries a few lr apart.
  overrides = {
      'batch_size': 8,
      'num_train_steps': 2,
      'model.norm': 'instance',
      'eval.batch_size': 8,
      'model.conv_impl': 'xla',
  }
  result = run_main(
      tmp_path / 'eight',
      *[f'--config.{k}={v}' for k, v in overrides.items()],
      env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert '8 device(s)' in result.stderr
  config = test_config.get_config()
  config.batch_size, config.num_train_steps, config.eval.batch_size = 8, 2, 8
  config.model.norm, config.model.conv_impl = 'instance', 'xla'
  assert jax.device_count() == 1
  one = train.train_and_evaluate(config, str(tmp_path / 'one'))
  # The same losses: the global batch is split over 8 devices, reductions are across devices.
  for name in ('train_g_l1', 'train_g_gan', 'train_d_total'):
    (ours,), (theirs,) = (read_events(tmp_path / d).Scalars(name) for d in ('one', 'eight'))
    assert theirs.value == pytest.approx(ours.value, rel=1e-5), name
  manager = checkpointing.create_checkpoint_manager(tmp_path / 'eight' / 'checkpoints', 1)
  eight, _ = checkpointing.restore(manager, one, config)
  for network in ('generator', 'discriminator'):
    params = [getattr(s, network).params for s in jax.device_get((one, eight))]
    for (path, ours), theirs in zip(
        jax.tree_util.tree_leaves_with_path(params[0]), jax.tree.leaves(params[1])
    ):
      if path[-1].key == 'bias':
        # A bias right before a (non-affine) InstanceNorm has a true gradient of 0: what it gets
        # is rounding noise, which Adam's first steps scale to ±lr whatever the reduction order.
        continue
      diff = np.abs(ours - theirs)
      # The gradients agree to ~3e-6 of each tensor's largest entry (8 one-example convolutions
      # and 8-way sums round differently from one 8-example convolution), but Adam's first steps
      # move an entry by ~±lr whatever its gradient's size: entries whose gradient is within
      # rounding of 0 (here up to 2 % of the 2×2 level's kernel, under InstanceNorm) can end up
      # to 2·lr per step apart. A wrong gradient moves most entries by a good part of lr.
      lr, steps = config.optim.learning_rate, config.num_train_steps
      apart = np.mean(diff > lr / 10)
      assert apart < 0.05 and diff.max() <= 2 * lr * steps, (
          network,
          jax.tree_util.keystr(path),
          apart,
          diff.max(),
      )


def test_maps_from_a_manual_dir(tmp_path):
  """The real job's path: TFDS builder from an offline maps-layout copy, then training."""
  from PIL import Image

  for split, count in (('train', 4), ('val', 2)):
    (tmp_path / 'maps' / split).mkdir(parents=True)
    for i in range(1, count + 1):
      pair = np.zeros((40, 80, 3), np.uint8)
      pair[:, :40] = (40 * i, 120, 60)  # Aerial (A) on the left, map (B) on the right.
      pair[:, 40:] = (230, 230, 200)
      Image.fromarray(pair).save(tmp_path / 'maps' / split / f'{i}.jpg')
  overrides = [
      '--config.data.name=maps',
      f'--config.data.manual_dir={tmp_path / "maps"}',
      f'--config.data.data_dir={tmp_path / "tfds"}',
      '--config.data.verify=off',
      '--config.num_train_steps=2',
  ]
  result = run_main(tmp_path / 'run', *overrides)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "'train': 4" in result.stderr and "'val': 2" in result.stderr
  assert checkpoint_steps(tmp_path / 'run') == [2]
  # Resized copies cannot match the manifest: the default verify='full' names the culprits.
  result = run_main(tmp_path / 'strict', *overrides[:3])
  assert result.returncode != 0
  assert 'verify' in result.stderr and not (tmp_path / 'strict' / 'checkpoints').exists()


def test_ablation_mode(tmp_path):
  bad = run_main(tmp_path, '--mode=ablation', '--patch_sizes=70,286')
  assert bad.returncode != 0
  assert 'config.model.patch_size=286 needs config.data.image_size >= 96' in bad.stderr
  assert not (tmp_path / 'patch_70').exists()  # Checked before anything trains.
  result = run_main(
      tmp_path,
      '--mode=ablation',
      '--patch_sizes=1,16,70',
      '--config.num_train_steps=2',
      '--config.eval.perceptual=false',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  table = (tmp_path / 'ablation.md').read_text()
  for size in (1, 16, 70):
    assert f'| {size}×{size} | 4 |' in table
    assert (tmp_path / f'patch_{size}' / 'eval' / 'metrics.json').exists()
  assert 'PatchGAN receptive field' in (tmp_path / 'report' / 'index.html').read_text()


def test_evaluate_predict_export_modes(trained_workdir, tmp_path):
  workdir = tmp_path / 'run'
  import shutil

  shutil.copytree(trained_workdir, workdir)
  result = run_main(workdir, '--mode=evaluate', '--config.eval.perceptual=false')
  assert result.returncode == 0, result.stderr[-3000:]
  assert '| L1 |' in result.stderr and 'test mode: paper' in result.stderr
  assert (workdir / 'eval' / 'metrics.json').exists() and (
      workdir / 'report' / 'index.html'
  ).exists()
  usage = run_main(workdir, '--mode=predict')
  assert usage.returncode != 0 and '--mode=predict needs --input' in usage.stderr
  missing = run_main(tmp_path / 'nothing', '--mode=evaluate')
  assert missing.returncode != 0 and 'no checkpoints in' in missing.stderr
  wrong_step = run_main(workdir, '--mode=export', '--step=3')
  assert wrong_step.returncode != 0 and 'available steps: [2]' in wrong_step.stderr
  exported = run_main(workdir, '--mode=export')
  assert exported.returncode == 0 and (workdir / 'export' / 'generator.jaxexport').exists()


def test_per_device_batch_norm_on_two_devices_is_two_groups(tmp_path, monkeypatch):
  overrides = {
      'batch_size': 4,
      'num_train_steps': 1,
      'eval.batch_size': 4,
      'model.batch_norm_stats': 'per_device',
  }
  result = run_main(
      tmp_path / 'two',
      *[f'--config.{k}={v}' for k, v in overrides.items()],
      env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert '2 device(s)' in result.stderr
  # On one device, the same BatchNorm groups (each device's half of the batch) give the same run.
  monkeypatch.setattr(models, 'batch_norm_groups', lambda model_config: 2)
  config = test_config.get_config()
  config.batch_size, config.num_train_steps, config.eval.batch_size = 4, 1, 4
  config.model.batch_norm_stats = 'per_device'
  train.train_and_evaluate(config, str(tmp_path / 'one'))
  for name in ('train_g_l1', 'train_g_gan', 'train_d_total'):
    (ours,), (theirs,) = (read_events(tmp_path / d).Scalars(name) for d in ('one', 'two'))
    assert theirs.value == pytest.approx(ours.value, rel=1e-5), name
