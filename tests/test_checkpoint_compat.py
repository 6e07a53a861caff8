"""Checkpoints written before the redesign (issue 14) restore unchanged, and training resumes.

tests/data/checkpoint_before_redesign/ was written by the code of commit 76213f0 (configs/test.py
with model.ngf = model.ndf = 4, 2 steps), with a summary of its state: every leaf's shape and sum.
"""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from configs import test as test_config
from pix2pix_jax import checkpointing, inference, train

DATA = pathlib.Path(__file__).resolve().parent / 'data' / 'checkpoint_before_redesign'


def old_config(num_train_steps):
  config = test_config.get_config()
  config.model.ngf, config.model.ndf, config.num_train_steps = 4, 4, num_train_steps
  return config


def summary(tree) -> dict:
  return {
      jax.tree_util.keystr(path): [list(np.shape(x)), float(np.sum(np.asarray(x, np.float64)))]
      for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(tree))
  }


def test_a_checkpoint_from_before_the_redesign_restores_unchanged_and_resumes(tmp_path):
  shutil.copytree(DATA / 'checkpoints', tmp_path / 'checkpoints')
  expected = json.loads((DATA / 'state_summary.json').read_text())
  restored = train.train_and_evaluate(old_config(2), str(tmp_path))  # Nothing left to train.
  assert summary(restored) == expected
  # The generator alone, as evaluate / predict / export restore it.
  _, network, step, _ = inference.restore_trained_generator(old_config(2), str(tmp_path))
  assert step == 2
  assert summary(network['params']) == {
      key.replace('.generator.params', '', 1): value
      for key, value in expected.items()
      if key.startswith('.generator.params')
  }
  resumed = jax.device_get(train.train_and_evaluate(old_config(3), str(tmp_path)))
  assert int(resumed.step) == 3
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(resumed.generator.params))


def test_keys_added_since_take_the_value_older_checkpoints_had():
  config = old_config(2)
  saved = json.loads(json.dumps(config.to_dict()))  # As checkpoints store it.
  for section, key in (
      ('data', 'input_channels'),
      ('data', 'output_channels'),
      ('model', 'generator'),
      ('model', 'num_discriminators'),
      ('model', 'd_spectral_norm'),
      ('model', 'ema_decay'),
  ):
    del saved[section][key]  # What a checkpoint from before these keys holds.
  checkpointing.check_architecture(saved, config, 'old')  # Nothing differs.
  config.data.input_channels, config.model.ema_decay = 3, 0.999  # = data.channels; EMA on.
  with pytest.raises(checkpointing.CheckpointMismatchError) as error:
    checkpointing.check_architecture(saved, config, 'old')
  assert "model.ema_decay: checkpoint 'off', config 'on'" in str(error.value)
  assert 'channels' not in str(error.value)
  config.model.ema_decay, config.data.output_channels = 0.0, 1
  with pytest.raises(
      checkpointing.CheckpointMismatchError, match='data.output_channels: checkpoint 3, config 1'
  ):
    checkpointing.check_architecture(saved, config, 'old')
