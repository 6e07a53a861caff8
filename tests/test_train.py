"""The train step and the driver, in process, on tiny configs."""

import jax
import numpy as np
import pytest

from configs import test as test_config
from pix2pix_jax import checkpointing, train, train_state
from pix2pix_jax.data import pipeline


def make_step(config):
  _, init_fn, step_fn = train.create_train_functions(config, steps_per_epoch=8, num_train_steps=100)
  return jax.jit(init_fn)(jax.random.PRNGKey(0)), jax.jit(step_fn, donate_argnums=0)


def fixed_batch(config):
  source = pipeline.create_source(config.data, 'eval', seed=0)
  return next(pipeline.eval_batches(source, config.data, batch_size=2))


def test_one_step_is_finite_and_updates_both_networks():
  config = test_config.get_config()
  state, step = make_step(config)
  before = jax.device_get(state)
  batch = fixed_batch(config)
  state, metrics = step(state, {'input': batch['input'], 'target': batch['target']})
  assert set(metrics) == set(train.LOSS_NAMES) | {'d_real_output', 'd_fake_output', 'learning_rate'}
  assert all(np.isfinite(v) for v in jax.device_get(metrics).values())
  assert int(state.step) == 1
  for network in ('generator', 'discriminator'):
    for part in ('params', 'batch_stats'):
      old, new = getattr(getattr(before, network), part), getattr(getattr(state, network), part)
      changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), old, new)
      assert all(jax.tree.leaves(changed)), f'{network}.{part} has leaves the step left unchanged'


def test_xla_cpu_region_analysis_drops_copies_and_keeps_results_bitwise():
  config = test_config.get_config()
  options = train.compiler_options(config)
  assert options == {'xla_cpu_copy_insertion_use_region_analysis': True}  # Tests run on CPU.
  config.xla_cpu_region_analysis = False
  assert train.compiler_options(config) == {}
  _, init_fn, step_fn = train.create_train_functions(config, steps_per_epoch=8, num_train_steps=100)
  batch = fixed_batch(config)
  batch = {'input': batch['input'], 'target': batch['target']}
  copies, results = [], []
  for compiler_options in ({}, options):
    state = jax.jit(init_fn)(jax.random.PRNGKey(0))
    step = (
        jax.jit(step_fn, donate_argnums=0)
        .lower(state, batch)
        .compile(compiler_options=compiler_options)
    )
    copies.append(step.as_text().count(' copy('))
    for _ in range(3):
      state, metrics = step(state, batch)
    results.append(jax.device_get((state, metrics)))
  assert copies[1] < copies[0], copies  # The option reached XLA: fewer buffer copies ...
  same = jax.tree.map(np.array_equal, *results)
  assert all(jax.tree.leaves(same)), same  # ... and not a bit of the results changed.


@pytest.mark.parametrize('gan_mode', ['vanilla', 'lsgan'])
def test_training_on_a_fixed_batch_lowers_l1(gan_mode):
  config = test_config.get_config()
  config.loss.gan_mode = gan_mode
  config.optim.learning_rate = 1e-3
  state, step = make_step(config)
  batch = fixed_batch(config)
  batch = {'input': batch['input'], 'target': batch['target']}
  l1 = []
  for _ in range(40):
    state, metrics = step(state, batch)
    l1.append(float(metrics['g_l1']))
  assert np.mean(l1[-5:]) < 0.6 * np.mean(l1[:3]), l1


def test_linear_schedule_decays_to_zero_over_the_last_epochs():
  config = test_config.get_config().optim
  config.schedule = 'linear'
  config.decay_epochs = 2
  schedule = train_state.create_learning_rate_schedule(
      config, steps_per_epoch=10, num_train_steps=40
  )
  assert float(schedule(0)) == float(schedule(20)) == pytest.approx(2e-4)
  assert float(schedule(30)) == pytest.approx(1e-4)
  assert float(schedule(40)) == pytest.approx(0.0)


def test_check_finite_names_step_and_loss():
  good = {name: 1.0 for name in train.LOSS_NAMES}
  with pytest.raises(FloatingPointError, match=r'step 12: g_total=nan'):
    train.check_finite([good, good | {'g_total': float('nan')}], first_step=11)


def read_checkpoint_steps(workdir):
  return sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  config = test_config.get_config()
  full = train.train_and_evaluate(config, str(tmp_path / 'full'))
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  config.num_train_steps = 4
  resumed = train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  assert int(resumed.step) == 4
  equal = jax.tree.map(np.array_equal, jax.device_get(full), jax.device_get(resumed))
  assert all(jax.tree.leaves(equal))
  assert read_checkpoint_steps(tmp_path / 'resumed') == [2, 4]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = test_config.get_config()
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(tmp_path))
  config.num_train_steps = 4
  config.loss.lambda_l1 = float('nan')
  with pytest.raises(FloatingPointError, match=r'non-finite loss at step 3: g_total=nan'):
    train.train_and_evaluate(config, str(tmp_path))
  assert read_checkpoint_steps(tmp_path) == [2]


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
  config = test_config.get_config()
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(tmp_path))
  saved_config = (tmp_path / 'config.json').read_text()
  config.model.patch_size = 16
  config.model.ngf = 4
  with pytest.raises(checkpointing.CheckpointMismatchError) as error:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(error.value)
  assert str(tmp_path / 'checkpoints' / '2') in message
  assert 'model.patch_size: checkpoint 70, config 16' in message
  assert 'model.ngf: checkpoint 8, config 4' in message
  assert 'model.ndf' not in message
  # Nothing in the workdir was touched.
  assert (tmp_path / 'config.json').read_text() == saved_config
  assert read_checkpoint_steps(tmp_path) == [2]


@pytest.mark.parametrize('norm', ['batch', 'instance'])
def test_bfloat16_compute_keeps_float32_params_and_trains(norm):
  config = test_config.get_config()
  config.model.compute_dtype, config.model.norm = 'bfloat16', norm
  state, step = make_step(config)
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(state.generator.params))
  batch = fixed_batch(config)
  state, metrics = step(state, {'input': batch['input'], 'target': batch['target']})
  assert all(np.isfinite(v) for v in jax.device_get(metrics).values())
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(state.generator.params))
