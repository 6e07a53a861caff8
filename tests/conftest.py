"""Test-wide JAX settings; they must be in place before JAX is imported anywhere."""

import os
import pathlib
import tempfile

# Non-partitionable threefry compiles CPU init ~6× faster. It changes random streams, so every
# test (and every subprocess they start, through the environment) uses it.
os.environ.setdefault('JAX_THREEFRY_PARTITIONABLE', '0')
# A persistent compilation cache shared by the tests and their subprocesses.
os.environ.setdefault(
    'JAX_COMPILATION_CACHE_DIR',
    str(pathlib.Path(tempfile.gettempdir()) / 'pix2pix_jax_test_jax_cache'),
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # pylint: disable=g-import-not-at-top,g-bad-import-order


@pytest.fixture(scope='session')
def trained_workdir(tmp_path_factory):
  """A workdir with a 2-step checkpoint of configs/test.py (shared: treat it as read-only)."""
  from configs import test as test_config  # pylint: disable=g-import-not-at-top
  from pix2pix_jax import train  # pylint: disable=g-import-not-at-top

  workdir = tmp_path_factory.mktemp('trained')
  config = test_config.get_config()
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(workdir))
  return workdir
