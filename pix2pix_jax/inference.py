"""Using a trained generator: test-time generation, restoring it alone, translating image files.

`generate` is shared by training (eval panels), evaluation and prediction, so all three use the
same test-time behaviour (`config.eval.train_mode`).
"""

import logging
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from pix2pix_jax import checkpointing, models, train_state
from pix2pix_jax.data import pipeline
from pix2pix_jax.data import images as image_lib


def generate(generator: nn.Module, network, inputs: jax.Array, rng: jax.Array,
             train_mode: bool) -> jax.Array:
  """Translates uint8 inputs to float images in [-1, 1].

  Args:
    generator: the U-Net.
    network: its variables: a NetworkState or a dict with 'params' and 'batch_stats'.
    inputs: uint8 (B, H, W, C).
    rng: dropout key (used in train mode).
    train_mode: the paper's test-time behaviour: dropout on and BatchNorm with each image's own
      statistics (the paper tests at batch 1; vmapping over single images keeps that whatever
      the batch size). False: running averages, no dropout (deterministic).
  """
  if isinstance(network, train_state.NetworkState):
    network = {'params': network.params, 'batch_stats': network.batch_stats}
  images = image_lib.to_float(inputs)
  if not train_mode:
    return generator.apply(network, images, train=False)

  def one(image, key):
    return train_state.apply_train_mode(generator, network['params'], network['batch_stats'],
                                        image[None], key)[0][0]

  return jax.vmap(one)(images, jax.random.split(rng, images.shape[0]))


def test_mode_description(train_mode: bool) -> str:
  return ('paper (dropout on, BatchNorm with each image\'s own statistics)' if train_mode
          else 'deterministic (running BatchNorm averages, no dropout)')


def restore_trained_generator(config: ml_collections.ConfigDict, workdir: str,
                              step: int | None = None, sharding=None):
  """The generator of `workdir`'s checkpoint `step` (default: latest), without D or optimizers.

  Args:
    config: the run's config (only the generator's architecture keys must match the checkpoint).
    workdir: the training workdir.
    step: checkpoint step, or None for the latest.
    sharding: where to put the variables (default: replicated on the first device).

  Returns:
    (generator module, {'params', 'batch_stats'}, step).
  """
  checkpoint_dir = pathlib.Path(workdir) / 'checkpoints'
  if not checkpoint_dir.is_dir():
    raise FileNotFoundError(f'no checkpoints in {checkpoint_dir}: train first (--mode=train), or '
                            'check --workdir')
  generator = models.create_generator(config.model, config.data.image_size, config.data.channels)
  shape = (1, config.data.image_size, config.data.image_size, config.data.channels)
  variables = jax.eval_shape(
      lambda: generator.init({'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(0)},
                             jnp.zeros(shape), train=True))
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = {key: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                              variables.get(key, {})) for key in ('params', 'batch_stats')}
  manager = checkpointing.create_checkpoint_manager(checkpoint_dir, config.keep_checkpoints)
  network, step = checkpointing.restore_generator(manager, target, config, step)
  logging.info('Restored the generator of %s (step %d)', checkpoint_dir / str(step), step)
  return generator, network, step


def list_images(path: pathlib.Path) -> list[pathlib.Path]:
  """The image files of `path` (a file or a folder), sorted; other files are logged and skipped."""
  if not path.exists():
    raise FileNotFoundError(f'--input {path} does not exist')
  if path.is_file():
    return [path]
  files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith('.'))
  images = [p for p in files if p.suffix.lower() in image_lib.IMAGE_EXTENSIONS]
  skipped = [p.name for p in files if p not in images]
  if skipped:
    logging.warning('Skipping %d non-image file(s) in %s: %s', len(skipped), path, skipped[:10])
  if not images:
    raise FileNotFoundError(f'no image files in --input {path} (extensions: '
                            f'{" ".join(image_lib.IMAGE_EXTENSIONS)})')
  return images


def predict(config: ml_collections.ConfigDict, workdir: str, input_path: str, output_dir: str, *,
            step: int | None = None, pairs: bool = False, side_by_side: bool = False) -> list[pathlib.Path]:
  """Translates one image or every image of a folder with the trained generator.

  Each image is resized (bicubic) to the model's size, translated, and the output resized back
  to the image's own size, then written as OUTPUT_DIR/<name>.png. Files that cannot be decoded
  are logged with their path and skipped; a folder without any image is an error.

  Args:
    config: the run's config.
    workdir: the training workdir (its latest checkpoint, or `step`).
    input_path: an image file or a folder of images.
    output_dir: where the PNGs go (created).
    step: checkpoint step, or None for the latest.
    pairs: inputs are side-by-side A|B pairs; the input half is chosen by config.data.direction.
    side_by_side: write [input | output] instead of the output alone.

  Returns:
    The written files.
  """
  files = list_images(pathlib.Path(input_path).expanduser())
  generator, network, step = restore_trained_generator(config, workdir, step)
  size = config.data.image_size
  translate = jax.jit(lambda x, rng: image_lib.to_uint8(generate(generator, network, x, rng,
                                                       config.eval.train_mode)))
  rng = jax.random.PRNGKey(config.seed)
  output = pathlib.Path(output_dir).expanduser()
  output.mkdir(parents=True, exist_ok=True)
  written = []
  for index, path in enumerate(files):
    try:
      image = image_lib.load_rgb(path)
      if pairs:
        a, b = image_lib.split_side_by_side(image, path)
        image = a if config.data.direction == 'AtoB' else b
    except image_lib.BadImageError as error:
      logging.warning('Skipping %s: %s', path, error)
      continue
    height, width = image.shape[:2]
    out = translate(pipeline.resize(image, size)[None], jax.random.fold_in(rng, index))
    out = np.asarray(Image.fromarray(np.asarray(out[0])).resize((width, height), Image.BICUBIC))
    if side_by_side:
      out = np.concatenate([image, out], axis=1)
    target = output / f'{path.stem}.png'
    Image.fromarray(out).save(target)
    written.append(target)
  logging.info('Wrote %d image(s) to %s (checkpoint step %d, test mode: %s)', len(written), output,
               step, test_mode_description(config.eval.train_mode))
  return written
