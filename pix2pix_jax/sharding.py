"""Data parallelism: a 1-D 'data' mesh over every device of every process.

The batch is split along 'data'; the state is replicated. The same code runs on 1 CPU, 8 GPUs
or several hosts (each process passes its own slice of the global batch).
"""

import jax
import numpy as np


def data_parallel_shardings() -> tuple[jax.sharding.Sharding, jax.sharding.Sharding]:
  """(replicated, batch-split) shardings over all devices."""
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))
  return (
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')),
  )


def to_global(batch: dict, sharding: jax.sharding.Sharding) -> dict:
  """This process's slice of a batch (host arrays) -> global device arrays."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
