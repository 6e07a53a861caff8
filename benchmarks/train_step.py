"""Times the jitted train step on whatever backend JAX sees; prints one JSON line.

  python benchmarks/train_step.py --config=configs/maps.py --steps=5
  python benchmarks/train_step.py --config=configs/maps.py --config.model.upsample_impl=conv_transpose

Measures compile time and steady-state steps/s of `train.train_step` on a fixed device batch
(no input pipeline), with the config's model, batch size and image size.
"""

import json
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from pix2pix_jax import train

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # For configs/.

config_flags.DEFINE_config_file('config', 'configs/maps.py', 'Config to time.', lock_config=True)
flags.DEFINE_integer('steps', 5, 'Timed steps (after one compile+warm-up step).')
FLAGS = flags.FLAGS


def main(_):
  config = FLAGS.config
  size = config.data.image_size
  _, init_fn, step_fn = train.create_train_functions(config, steps_per_epoch=1, num_train_steps=1)
  state = jax.jit(init_fn)(jax.random.PRNGKey(0))
  step = jax.jit(step_fn, donate_argnums=0)
  rng = np.random.default_rng(0)
  shape = (config.batch_size, size, size, config.data.channels)
  batch = jax.device_put({'input': rng.integers(0, 256, shape, np.uint8),
                          'target': rng.integers(0, 256, shape, np.uint8)})
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    state, metrics = compiled(state, batch)
  jax.block_until_ready((state, metrics))
  seconds = (time.perf_counter() - start) / FLAGS.steps
  print(json.dumps({
      'image_size': size, 'batch_size': config.batch_size, 'norm': config.model.norm,
      'patch_size': config.model.patch_size, 'ngf': config.model.ngf,
      'upsample_impl': config.model.upsample_impl, 'compute_dtype': config.model.compute_dtype,
      'compile_s': round(compile_s, 2), 'seconds_per_step': round(seconds, 4),
      'steps_per_s': round(1 / seconds, 3), 'images_per_s': round(config.batch_size / seconds, 2),
      'backend': jax.default_backend(), 'device': str(jax.devices()[0].device_kind),
      'jax': jax.__version__}))


if __name__ == '__main__':
  app.run(main)
