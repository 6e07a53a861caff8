"""The generator's exponential moving average (config.model.ema_decay): update, training, restore.

decay 0.5 keeps the arithmetic exact (halving is exact in float32), so the EMA is compared with
its hand-computed value bit for bit.
"""

import json
import logging
import shutil

import jax
import numpy as np
from PIL import Image
import pytest

from configs import test as test_config
from pix2pix_jax import checkpointing, evaluation, export, inference, predict, train, train_state
from pix2pix_jax.data import pipeline

DECAY = 0.5


def ema_config(num_train_steps=3, ema_decay=DECAY, use_ema=True):
  config = test_config.get_config()
  config.num_train_steps = num_train_steps
  config.model.ema_decay, config.eval.use_ema = ema_decay, use_ema
  config.eval.perceptual = False
  return config


def assert_trees_equal(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def assert_trees_differ(first, second):
  pairs = zip(jax.tree.leaves(first), jax.tree.leaves(second))
  assert any(not np.array_equal(a, b) for a, b in pairs)


def test_update_is_decay_times_ema_plus_one_minus_decay_times_new():
  ema = {
      'params': {'w': np.array([1.0, 2.0], np.float32)},
      'batch_stats': {'mean': np.array([4.0], np.float32)},
  }
  network = train_state.NetworkState(
      params={'w': np.array([3.0, -2.0], np.float32)},
      batch_stats={'mean': np.array([0.0], np.float32)},
      opt_state=(),
  )
  updated = jax.device_get(train_state.update_ema(ema, network, 0.75))
  np.testing.assert_array_equal(updated['params']['w'], [1.5, 1.0])  # 0.75·1 + 0.25·3, ...
  np.testing.assert_array_equal(updated['batch_stats']['mean'], [3.0])
  step_fn = lambda state, batch: (state, {})
  assert train_state.with_ema_update(step_fn, 0.0) is step_fn  # Off: the step is untouched.


def test_ema_off_leaves_the_state_as_before():
  _, init_fn, _ = train.create_train_functions(ema_config(ema_decay=0.0), 8, 100)
  state = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  assert state.ema == {}
  paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(state)]
  assert paths and not [path for path in paths if 'ema' in path]


def test_ema_is_the_average_of_the_generators_after_each_step():
  config = ema_config()
  _, init_fn, step_fn = train.create_train_functions(config, steps_per_epoch=8, num_train_steps=100)
  state = jax.jit(init_fn)(jax.random.PRNGKey(0))
  step = jax.jit(step_fn, donate_argnums=0)
  source = pipeline.create_source(config.data, 'eval', seed=0)
  batch = next(pipeline.eval_batches(source, config.data, batch_size=2))
  batch = {'input': batch['input'], 'target': batch['target']}
  seen = [jax.device_get(train_state.generator_variables(state.generator))]
  assert_trees_equal(state.ema, seen[0])  # The EMA starts as a copy of G.
  for _ in range(2):
    state, _ = step(state, batch)  # Donates the old state: `seen` holds host copies.
    seen.append(jax.device_get(train_state.generator_variables(state.generator)))
  expected = seen[0]
  for new in seen[1:]:
    expected = jax.tree.map(
        lambda average, value: DECAY * average + (1 - DECAY) * value, expected, new
    )
  assert_trees_equal(jax.device_get(state.ema), expected)
  assert_trees_differ(expected, seen[-1])  # The EMA is not G itself.


class LogMessages(logging.Handler):
  """The root logger's INFO messages while installed (a module fixture cannot use caplog)."""

  def __init__(self):
    super().__init__(logging.INFO)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@pytest.fixture(scope='module')
def ema_run(tmp_path_factory):
  """(workdir, final state, log) of 3 steps of configs/test.py with model.ema_decay=0.5."""
  workdir = tmp_path_factory.mktemp('ema')
  root, log = logging.getLogger(), LogMessages()
  level = root.level
  root.setLevel(logging.INFO)
  root.addHandler(log)
  try:
    state = jax.device_get(train.train_and_evaluate(ema_config(), str(workdir)))
  finally:
    root.removeHandler(log)
    root.setLevel(level)
  return workdir, state, log.messages


def test_checkpoint_holds_the_ema_and_a_resumed_run_gives_the_same_ema(ema_run, tmp_path, caplog):
  workdir, full, log = ema_run
  # Training's eval (at the last step) scored the EMA, as --mode=evaluate would.
  assert any(message.startswith('step 3 eval, ema weights') for message in log)
  manager = checkpointing.create_checkpoint_manager(workdir / 'checkpoints', 3)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), full)
  restored, step = checkpointing.restore(manager, abstract, ema_config())
  assert step == 3 and jax.tree.leaves(restored.ema)
  assert_trees_equal(jax.device_get(restored), full)
  train.train_and_evaluate(ema_config(num_train_steps=2), str(tmp_path))
  with caplog.at_level(logging.INFO):  # eval.use_ema only changes what training's eval scores.
    resumed = train.train_and_evaluate(ema_config(num_train_steps=3, use_ema=False), str(tmp_path))
  assert_trees_equal(jax.device_get(resumed.ema), full.ema)
  assert_trees_equal(jax.device_get(resumed), full)
  assert 'step 3 eval, raw weights' in caplog.text


def test_evaluate_scores_the_ema_or_the_raw_generator(ema_run):
  workdir, state, _ = ema_run
  reports = {}
  for use_ema, weights in ((True, 'ema'), (False, 'raw')):
    config = ema_config(use_ema=use_ema)
    config.eval.train_mode = False  # Deterministic: the outputs differ only by the weights.
    network = inference.restore_trained_generator(config, str(workdir)).network
    assert_trees_equal(
        jax.device_get(network),
        train_state.generator_variables(state.generator) if weights == 'raw' else state.ema,
    )
    reports[weights] = evaluation.evaluate(config, str(workdir))
    assert reports[weights]['weights'] == weights
    assert json.loads((workdir / 'eval' / 'metrics.json').read_text())['weights'] == weights
  assert reports['ema']['metrics']['l1'] != reports['raw']['metrics']['l1']


def test_predict_and_export_use_the_ema(ema_run, tmp_path):
  workdir, state, _ = ema_run
  image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
  Image.fromarray(image).save(tmp_path / 'a.png')
  outputs = {}
  for name, config in (
      ('ema', ema_config()),
      ('raw', ema_config(use_ema=False)),
      ('off', ema_config(ema_decay=0.0)),
  ):
    config.eval.train_mode = False
    (written,) = predict.predict(
        config, str(workdir), str(tmp_path / 'a.png'), str(tmp_path / name)
    )
    outputs[name] = np.asarray(Image.open(written))
  assert not np.array_equal(outputs['ema'], outputs['raw'])
  np.testing.assert_array_equal(outputs['raw'], outputs['off'])  # No EMA asked: G itself.
  out = export.export_generator(ema_config(), str(workdir), str(tmp_path / 'export'))
  assert json.loads((out / 'signature.json').read_text())['weights'] == 'ema'
  with np.load(out / 'weights.npz') as saved:
    exported = [saved[f'w{i}'] for i in range(len(saved.files))]
  assert_trees_equal(exported, jax.tree.leaves(state.ema))


def test_ema_on_or_off_against_the_checkpoint_names_model_ema_decay(
    ema_run, trained_workdir, tmp_path
):
  no_ema = tmp_path / 'no_ema'
  shutil.copytree(trained_workdir, no_ema)  # 2 steps without EMA (tests/conftest.py).
  with pytest.raises(
      checkpointing.CheckpointMismatchError, match="model.ema_decay: checkpoint 'off', config 'on'"
  ):
    train.train_and_evaluate(ema_config(), str(no_ema))
  with pytest.raises(
      checkpointing.CheckpointMismatchError, match="model.ema_decay: checkpoint 'on', config 'off'"
  ):
    train.train_and_evaluate(ema_config(num_train_steps=4, ema_decay=0.0), str(ema_run[0]))
  # Its EMA weights for evaluation: an error naming the checkpoint and the key ...
  with pytest.raises(checkpointing.CheckpointMismatchError) as error:
    inference.restore_trained_generator(ema_config(), str(no_ema))
  assert str(no_ema / 'checkpoints' / '2') in str(error.value)
  assert 'model.ema_decay=0' in str(error.value) and 'eval.use_ema=False' in str(error.value)
  # ... and its raw generator, whatever the decay, is fine.
  step = inference.restore_trained_generator(ema_config(use_ema=False), str(no_ema)).step
  assert step == 2


def test_a_short_run_lowers_the_l1_of_the_ema_generator():
  config = ema_config(ema_decay=0.8)
  config.optim.learning_rate, config.model.dropout_rate = 1e-3, 0.0  # Fit one batch, no noise.
  generator, init_fn, step_fn = train.create_train_functions(
      config, steps_per_epoch=8, num_train_steps=100
  )
  state, step = jax.jit(init_fn)(jax.random.PRNGKey(0)), jax.jit(step_fn, donate_argnums=0)
  source = pipeline.create_source(config.data, 'eval', seed=0)
  batch = next(pipeline.eval_batches(source, config.data, batch_size=2))
  inputs, targets = (
      jax.numpy.asarray(batch[key], jax.numpy.float32) / 127.5 - 1 for key in ('input', 'target')
  )

  def ema_l1(state):
    out, _ = train_state.apply_train_mode(
        generator, state.ema['params'], state.ema['batch_stats'], inputs
    )
    return float(jax.numpy.mean(jax.numpy.abs(out - targets)))

  before = ema_l1(state)
  for _ in range(30):
    state, _ = step(state, {'input': batch['input'], 'target': batch['target']})
  assert ema_l1(state) < 0.6 * before
