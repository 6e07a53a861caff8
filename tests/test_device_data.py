"""The device-resident train set (config.data.on_device) and multi-step device calls."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import test as test_config
from pix2pix_jax import train
from pix2pix_jax.data import device_data, pipeline


def coded_images(num, size):
  """Pairs whose pixels encode (example, row, column); B = A + 1 so the two can be told apart."""
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  a = np.stack([np.full((size, size), i) for i in range(num)])
  a = np.stack([a, np.broadcast_to(rows, a.shape), np.broadcast_to(cols, a.shape)], axis=-1)
  return jnp.asarray(np.concatenate([a, a + 1], axis=-1).astype(np.uint8))


def batches(images, steps, **kwargs):
  make = jax.jit(lambda step: device_data.batch_for_step(images, step, **kwargs))
  return [jax.device_get(make(step)) for step in steps]


def test_every_epoch_visits_every_example_once_in_a_new_order():
  images = coded_images(5, 8)
  got = batches(
      images, range(1, 6), seed=0, batch_size=2, image_size=8, flip=False, direction='AtoB'
  )
  order = np.concatenate([b['input'][:, 0, 0, 0] for b in got])  # 10 examples = 2 epochs.
  assert sorted(order[:5]) == sorted(order[5:]) == list(range(5))
  assert list(order[:5]) != list(order[5:])
  # A pure function of (seed, step): resume reads the same batches.
  again = batches(images, [3], seed=0, batch_size=2, image_size=8, flip=False, direction='AtoB')[0]
  np.testing.assert_array_equal(again['input'], got[2]['input'])


@pytest.mark.parametrize('direction', ['AtoB', 'BtoA'])
def test_crops_and_flips_are_shared_by_input_and_target(direction):
  size, crop = 12, 8
  images = coded_images(3, size)
  got = batches(
      images, range(1, 21), seed=1, batch_size=3, image_size=crop, flip=True, direction=direction
  )
  inputs = np.concatenate([b['input'] for b in got]).astype(int)
  targets = np.concatenate([b['target'] for b in got]).astype(int)
  np.testing.assert_array_equal(targets - inputs, 1 if direction == 'AtoB' else -1)
  a = inputs if direction == 'AtoB' else targets
  tops, lefts = a[:, 0, :, 1].min(axis=1), a[:, :, :, 2].min(axis=(1, 2))
  # A crop of the full image: contiguous rows, columns ascending (or descending when flipped).
  np.testing.assert_array_equal(a[:, :, 0, 1], tops[:, None] + np.arange(crop))
  flipped = a[:, 0, 0, 2] > a[:, 0, -1, 2]
  assert 0.2 < flipped.mean() < 0.8
  assert set(tops) == set(range(size - crop + 1)) and set(lefts) == set(range(size - crop + 1))


def test_load_images_names_a_pair_of_another_size():
  config = test_config.get_config().data
  source = [
      {'A': np.zeros((36, 36, 3), np.uint8), 'B': np.zeros((36, 36, 3), np.uint8)},
      {
          'A': np.zeros((40, 40, 3), np.uint8),
          'B': np.zeros((40, 40, 3), np.uint8),
          'file_name': 'odd.png',
      },
  ]
  with pytest.raises(ValueError, match='odd.png'):
    device_data.load_images(source, config)


def test_call_ends_at_log_eval_checkpoint_and_last_steps():
  config = test_config.get_config()
  config.steps_per_call, config.log_every_steps, config.checkpoint_every_steps = 8, 10, 25
  config.eval.every_steps = 0
  ends, step = [], 0
  while step < 33:
    step = train.next_call_end(step, config, 33)
    ends.append(step)
  assert ends == [8, 10, 18, 20, 25, 30, 33]


def final_state(config, workdir):
  return jax.device_get(train.train_and_evaluate(config, str(workdir)))


def test_several_steps_per_call_equal_one_step_per_call(tmp_path):
  config = test_config.get_config()
  config.num_train_steps, config.log_every_steps, config.checkpoint_every_steps = 5, 5, 5
  # Learning rate 0: the state still records every step (Adam's moments average each step's
  # gradients, from its batch and dropout noise; BatchNorm's statistics, the step), but rounding
  # differences between the two compilations are not amplified. With a learning rate they are:
  # Adam scales each update by its gradient's size, so where a gradient is ~0 its rounding
  # decides the update (jax 0.11.2: parameters up to 7e-4 apart after 5 steps).
  config.optim.learning_rate = 0.0
  one = final_state(config, tmp_path / 'one')
  config.steps_per_call = 3  # Calls of 3 and 2 steps.
  several = final_state(config, tmp_path / 'several')
  assert int(several.step) == 5
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), one, several)


def test_on_device_data_trains_and_resumes_exactly(tmp_path):
  config = test_config.get_config()
  config.data.on_device, config.steps_per_call = True, 2
  full = final_state(config, tmp_path / 'full')
  config.num_train_steps = 2
  final_state(config, tmp_path / 'resumed')
  config.num_train_steps = 4
  resumed = final_state(config, tmp_path / 'resumed')
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, full, resumed)))
  # What the device made for step 1 are (input, target) crops of one train pair, possibly flipped.
  source = pipeline.create_source(config.data, 'train', seed=config.seed)
  images = device_data.load_images(source, config.data)
  batch = jax.device_get(
      train.device_batch_fn(config, jax.sharding.SingleDeviceSharding(jax.devices()[0]))(
          jnp.asarray(images), 1
      )
  )
  assert batch['input'].shape == (2, 32, 32, 3) and batch['input'].dtype == np.uint8
  slack = images.shape[1] - 32
  crops = {
      np.concatenate([pair[top : top + 32, left : left + 32][:, ::step]], axis=None).tobytes()
      for pair in images
      for top in range(slack + 1)
      for left in range(slack + 1)
      for step in (1, -1)
  }
  for inputs, targets in zip(batch['input'], batch['target']):  # configs/test.py: BtoA.
    assert np.concatenate([targets, inputs], axis=-1).tobytes() in crops
