"""`--mode=export`: the trained generator as a serialised JAX function plus its weights.

WORKDIR/export/ (or --output) gets:
  generator.jaxexport  StableHLO of translate(weights, images uint8 (N, S, S, C), key) -> uint8,
                       batch size symbolic, lowered for CPU and CUDA;
  weights.npz          the generator's params and batch statistics, flattened (w0, w1, ...);
  signature.json       image size, channels, direction, checkpoint step, test mode.
`pix2pix_jax/serving.py` loads it with jax and numpy alone.
"""

import json
import logging
import pathlib

import jax
from jax import export
import ml_collections
import numpy as np

from pix2pix_jax import inference
from pix2pix_jax.data import images

PLATFORMS = ('cpu', 'cuda')


def export_generator(config: ml_collections.ConfigDict, workdir: str, output_dir: str | None = None,
                     step: int | None = None) -> pathlib.Path:
  """Serialises the generator of `workdir`'s checkpoint (latest, or `step`).

  Args:
    config: the run's config; `config.eval.train_mode` picks the exported test-time behaviour.
    workdir: the training workdir.
    output_dir: where to write (default WORKDIR/export).
    step: checkpoint step, or None for the latest.

  Returns:
    The export folder.
  """
  generator, network, step = inference.restore_trained_generator(config, workdir, step)
  leaves, treedef = jax.tree.flatten(network)
  train_mode = config.eval.train_mode

  def translate(weights, inputs, key):
    variables = jax.tree.unflatten(treedef, weights)
    # `key` is a raw threefry key (uint32[2]), as jax.random.PRNGKey makes.
    return images.to_uint8(inference.generate(generator, variables, inputs, key, train_mode))

  size, channels = config.data.image_size, config.data.channels
  (batch,) = export.symbolic_shape('n')
  specs = (
      [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves],
      jax.ShapeDtypeStruct((batch, size, size, channels), np.uint8),
      jax.ShapeDtypeStruct((2,), np.uint32),
  )
  serialized = export.export(jax.jit(translate), platforms=PLATFORMS)(*specs).serialize()
  output = pathlib.Path(output_dir or pathlib.Path(workdir) / 'export').expanduser()
  output.mkdir(parents=True, exist_ok=True)
  (output / 'generator.jaxexport').write_bytes(serialized)
  np.savez(output / 'weights.npz', **{f'w{i}': np.asarray(x) for i, x in enumerate(leaves)})
  signature = {'image_size': size, 'channels': channels, 'direction': config.data.direction,
               'step': step, 'test_mode': inference.test_mode_description(train_mode),
               'platforms': list(PLATFORMS), 'jax_version': jax.__version__}
  (output / 'signature.json').write_text(json.dumps(signature, indent=2))
  logging.info('Exported the generator of step %d to %s', step, output)
  return output
