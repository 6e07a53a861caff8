"""`--mode=export`: the trained generator as a serialised function, for serving without this code.

`config.export.format` picks the format; WORKDIR/export/ (or --output) gets:
  'jax' (default):
    generator.jaxexport  StableHLO of translate(weights, images uint8 (N, S, S, C_in), key) -> uint8
                         (N, S, S, C_out) (8-bit inputs: 16-bit data is scaled to 8 bits first),
                         batch size symbolic, lowered for CPU and CUDA;
    weights.npz          the generator's params and batch statistics, flattened (w0, w1, ...);
    `pix2pix_jax/serving.py` loads it with jax and numpy alone.
  'onnx' (the `onnx` extra: jax2onnx converts):
    generator.onnx       'images' uint8 (batch, S, S, C_in) -> 'translated' uint8 (.., C_out),
                         weights inside, opset ONNX_OPSET; any ONNX runtime runs it, e.g.
                           session = onnxruntime.InferenceSession('generator.onnx')
                           (outputs,) = session.run(None, {'images': images})
  'pytorch' (needs PyTorch: the `metrics` extra):
    latest_net_G.pth     the generator as the PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix)
                         saves it, which its test.py loads (`load_state_dict`, strict);
    latest_net_D.pth     the discriminator of the same checkpoint (where the reference has one like
                         it: not pix2pixHD's multi-scale D nor SPADE's spectral norm);
    reference_options.txt  the reference's options that build them (--netG unet_256 --norm batch
                         ...) and test as `config.eval.train_mode` does (pix2pix_jax/torch_weights.py);
and, for all, signature.json: format, image size, input_channels and output_channels ('channels':
the input's, as before), direction, checkpoint step, test mode,
weights ('ema': the generator's moving average, with model.ema_decay > 0 and eval.use_ema; 'raw'),
and with --step=best the best checkpoint's record ('best': {'metric', 'value', 'step',
'num_images'}).

Test time (`config.eval.train_mode`), as `inference.generate`:
  False (deterministic): both formats; ONNX matches JAX within one level (float rounding).
  True (the paper's): 'jax' exactly, with JAX's dropout stream (serving.py's `seed`); 'onnx' with
    each image's own BatchNorm statistics as in JAX, and dropout noise the runtime draws itself
    (same distribution, different numbers; unseeded, so it differs between calls).
Both export the generator with XLA's own convolutions (`kernels.ConvImpl()`): the same parameters
and function as the backend's faster forms, which are no part of a served model.
"""

import contextlib
import importlib.metadata
import json
import logging
import pathlib

import flax.linen as nn
import jax
from jax import export
import jax.numpy as jnp
import ml_collections
import numpy as np

from pix2pix_jax import checkpointing, inference, kernels, torch_weights, train_state
from pix2pix_jax.data import images, pipeline

PLATFORMS = ('cpu', 'cuda')
# The oldest opset jax2onnx 0.17 writes correctly for this graph (at 17 its ReduceMean takes the
# axes as an input, 18's form), for older runtimes than its default 23 (onnxruntime >= 1.14).
ONNX_OPSET = 18


def export_generator(
    config: ml_collections.ConfigDict,
    workdir: str,
    output_dir: str | None = None,
    step: int | str | None = None,
) -> pathlib.Path:
  """Serialises the generator of `workdir`'s checkpoint (latest, or `step`).

  Args:
    config: the run's config; `config.export.format` picks the format, `config.eval.train_mode`
      the exported test-time behaviour.
    workdir: the training workdir.
    output_dir: where to write (default WORKDIR/export).
    step: checkpoint step, 'best' (the best checkpoint training kept), or None for the latest.

  Returns:
    The export folder.
  """
  export_format = config.export.format
  if export_format == 'onnx':
    _check_onnx_installed()  # Before the restore: a missing extra is the first thing to know.
  if export_format == 'pytorch':
    torch_weights.check_torch_installed()
  generator, network, step, best = inference.restore_trained_generator(config, workdir, step)
  generator = generator.clone(conv_impl=kernels.ConvImpl())
  output = pathlib.Path(output_dir or pathlib.Path(workdir) / 'export').expanduser()
  output.mkdir(parents=True, exist_ok=True)
  train_mode = config.eval.train_mode
  size, channels = config.data.image_size, pipeline.channels(config.data)  # (input, output)
  if export_format == 'jax':
    details = _write_jax(generator, network, train_mode, size, channels, output)
  elif export_format == 'pytorch':
    details = _write_pytorch(config, workdir, network, step, best, output)
  else:
    details = _write_onnx(generator, network, train_mode, size, channels, output)
  signature = {
      'format': export_format,
      'image_size': size,
      'channels': channels[0],
      'input_channels': channels[0],
      'output_channels': channels[1],
      'direction': config.data.direction,
      'step': step,
      'test_mode': inference.test_mode_description(train_mode),
      'weights': checkpointing.generator_weights(config),
      **details,
  }
  if best:
    signature['best'] = best
  (output / 'signature.json').write_text(json.dumps(signature, indent=2))
  logging.info(
      'Exported the generator of step %d to %s (format %r, test mode: %s)',
      step,
      output,
      export_format,
      signature['test_mode'],
  )
  return output


def _write_jax(
    generator: nn.Module,
    network,
    train_mode: bool,
    size: int,
    channels: tuple,
    output: pathlib.Path,
) -> dict:
  """Writes generator.jaxexport and weights.npz; returns signature.json's format-specific keys."""
  leaves, treedef = jax.tree.flatten(network)

  def translate(weights, inputs, key):
    variables = jax.tree.unflatten(treedef, weights)
    # `key` is a raw threefry key (uint32[2]), as jax.random.PRNGKey makes.
    return images.to_uint8(inference.generate(generator, variables, inputs, key, train_mode))

  (batch,) = export.symbolic_shape('n')
  specs = (
      [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves],
      jax.ShapeDtypeStruct((batch, size, size, channels[0]), np.uint8),
      jax.ShapeDtypeStruct((2,), np.uint32),
  )
  serialized = export.export(jax.jit(translate), platforms=PLATFORMS)(*specs).serialize()
  (output / 'generator.jaxexport').write_bytes(serialized)
  np.savez(output / 'weights.npz', **{f'w{i}': np.asarray(x) for i, x in enumerate(leaves)})
  return {'platforms': list(PLATFORMS), 'jax_version': jax.__version__}


def _write_pytorch(
    config: ml_collections.ConfigDict,
    workdir: str,
    network: dict,
    step: int,
    best: dict | None,
    output: pathlib.Path,
) -> dict:
  """Writes the reference's .pth files and options; returns signature.json's specific keys."""
  d_variables = None
  if torch_weights.discriminator_architecture(config) is not None:
    d_variables = jax.device_get(
        inference.restore_trained_discriminator(config, workdir, step, best)
    )
  return torch_weights.write_reference_files(
      config, jax.device_get(network), d_variables, step, workdir, output
  )


def _check_onnx_installed() -> None:
  try:
    import jax2onnx, onnx  # noqa: F401  pylint: disable=g-import-not-at-top,multiple-imports,unused-import
  except ImportError as error:
    raise ImportError(
        f"config.export.format='onnx' needs the `onnx` extra ({error}): pip install -e '.[onnx]'"
    ) from error


def _write_onnx(
    generator: nn.Module,
    network,
    train_mode: bool,
    size: int,
    channels: tuple,
    output: pathlib.Path,
) -> dict:
  """Writes generator.onnx (weights inside); returns signature.json's format-specific keys.

  The graph computes in float32 whatever `config.model.compute_dtype` (ONNX runtimes' CPU kernels
  have no bfloat16 convolutions); its ops are ordinary Conv, ConvTranspose and BatchNormalization
  (deterministic) or mean/variance reductions and random draws (the paper's mode).
  """
  import jax2onnx  # pylint: disable=g-import-not-at-top
  import onnx  # pylint: disable=g-import-not-at-top
  # One group: flax's BatchNorm, exported as BatchNormalization (the same map with running
  # averages, whatever `config.model.batch_norm_stats`).
  generator = generator.clone(dtype=jnp.float32, batch_norm_groups=1)
  if train_mode:
    translate = _paper_mode_translate(generator, network)
  else:
    translate = lambda x: images.to_uint8(inference.generate(generator, network, x, None, False))
  # onnx_ir warns for each shape constant jax2onnx leaves untyped in the paper's mode (dozens; only
  # their optional annotations are dropped).
  with _quiet_logger('onnx_ir.serde'):
    model = jax2onnx.to_onnx(
        translate,
        [jax.ShapeDtypeStruct(('batch', size, size, channels[0]), np.uint8)],
        model_name='pix2pix_generator',
        opset=ONNX_OPSET,
        input_names=['images'],
        output_names=['translated'],
    )
  # jax2onnx 0.17 annotates some tensors it transposes to NCHW with their NHWC shapes; these
  # optional annotations only make runtimes warn ("Error merging shape info"), which re-infer them.
  del model.graph.value_info[:]
  _draw_dropout_noise(model)
  onnx.checker.check_model(model)
  # One self-contained file: protobuf's 2 GB limit is far (the 256² U-Net's weights: 218 MB).
  onnx.save_model(model, output / 'generator.onnx')
  return {
      'inputs': f'images uint8 (batch, {size}, {size}, {channels[0]})',
      'outputs': f'translated uint8 (batch, {size}, {size}, {channels[1]})',
      'opset': ONNX_OPSET,
      'jax2onnx_version': importlib.metadata.version('jax2onnx'),
  }


@contextlib.contextmanager
def _quiet_logger(name: str):
  """Lets only errors through the logger `name` inside the block."""
  logger = logging.getLogger(name)
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def _paper_mode_translate(generator: nn.Module, network):
  """uint8 -> uint8 in the paper's test mode, as jax2onnx can convert it.

  As `inference.generate`, but the noise is left to the ONNX graph: no JAX keys (jax2onnx converts
  flax's Dropout to ONNX's and has no conversion for threefry). BatchNorm statistics are each
  image's (a vmap over single images) through `layers.GroupedBatchNorm`, which computes them with
  plain reductions (jax2onnx 0.17 exports flax's own BatchNorm in train mode with its running
  averages instead). Under the vmap each call holds one image, so its statistics are that image's
  whatever the group count.
  InstanceNorm's statistics are each image's already: no vmap (jax2onnx cannot vmap it either).
  """
  params, batch_stats = network['params'], network.get('batch_stats', {})
  if generator.norm == 'batch':
    _allow_vmapped_linen_dropout()
    per_image = generator.clone(batch_norm_groups=2)
    forward = jax.vmap(
        lambda image: train_state.apply_train_mode(per_image, params, batch_stats, image[None])[0][
            0
        ]
    )
  else:
    forward = lambda x: train_state.apply_train_mode(generator, params, batch_stats, x)[0]
  return lambda x: images.to_uint8(forward(images.to_float(x)))


def _allow_vmapped_linen_dropout() -> None:
  """Gives jax2onnx's stand-in for flax.linen.Dropout the batching rule it lacks (0.17).

  The stand-in is elementwise (ONNX Dropout), so a batched input maps to a batched output.
  """
  from jax.interpreters import batching  # pylint: disable=g-import-not-at-top
  from jax2onnx.plugins.flax.linen import dropout  # pylint: disable=g-import-not-at-top

  primitive = dropout.DropoutPlugin._PRIM  # pylint: disable=protected-access

  def rule(args, dims, **params):
    x, deterministic = args
    if dims[1] is not batching.not_mapped:
      raise NotImplementedError('a batched `deterministic` flag for flax.linen.Dropout')
    return primitive.bind(x, deterministic, **params), dims[0]

  batching.primitive_batchers[primitive] = rule


def _draw_dropout_noise(model) -> None:
  """Replaces the graph's training-mode Dropout nodes by explicit noise, in place.

  Inference runtimes remove Dropout nodes whatever their training_mode (onnxruntime does at its
  default optimisation level), which would silently make the paper's mode deterministic but for
  its statistics. A RandomUniformLike draw is an ordinary op they keep: x / (1 - rate) where the
  draw is >= rate, else 0, which is Dropout's (and flax's) definition.
  """
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import helper, numpy_helper  # pylint: disable=g-import-not-at-top

  graph = model.graph
  constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
  nodes = []
  for node in graph.node:
    x, ratio, training = (list(node.input) + ['', ''])[:3]
    if node.op_type == 'Dropout' and training and training not in constants:
      raise NotImplementedError(f'Dropout node {node.name}: training_mode computed in the graph')
    if node.op_type != 'Dropout' or not training or not constants[training]:
      nodes.append(node)  # Not Dropout, or in inference mode: the identity, as it should be.
      continue
    if len(node.output) > 1 and node.output[1]:
      raise NotImplementedError(f'Dropout node {node.name} exports its mask')
    rate = float(constants[ratio]) if ratio else 0.5  # ONNX's default ratio.
    name = node.name or node.output[0]
    graph.initializer.extend([
        numpy_helper.from_array(np.array(rate, np.float32), f'{name}_rate'),
        numpy_helper.from_array(np.array(1 / (1 - rate), np.float32), f'{name}_scale'),
        numpy_helper.from_array(np.array(0, np.float32), f'{name}_zero'),
    ])
    nodes += [
        helper.make_node(
            'RandomUniformLike', [x], [f'{name}_uniform'], dtype=onnx.TensorProto.FLOAT
        ),
        helper.make_node('GreaterOrEqual', [f'{name}_uniform', f'{name}_rate'], [f'{name}_keep']),
        helper.make_node('Mul', [x, f'{name}_scale'], [f'{name}_scaled']),
        helper.make_node(
            'Where', [f'{name}_keep', f'{name}_scaled', f'{name}_zero'], [node.output[0]]
        ),
    ]
  del graph.node[:]
  graph.node.extend(nodes)
