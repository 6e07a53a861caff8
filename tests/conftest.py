"""Test-wide JAX settings; they must be in place before JAX is imported anywhere."""

import os
import pathlib
import tempfile

# Non-partitionable threefry compiles CPU init ~6× faster. It changes random streams, so every
# test (and every subprocess they start, through the environment) uses it.
os.environ.setdefault('JAX_THREEFRY_PARTITIONABLE', '0')
# A persistent compilation cache shared by the tests and their subprocesses.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      str(pathlib.Path(tempfile.gettempdir()) / 'pix2pix_jax_test_jax_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
