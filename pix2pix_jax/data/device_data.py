"""The train set in device memory, with shuffling, jitter and flip done inside the jitted step.

With `config.data.on_device`, the resized train pairs are copied once into one uint8 array
(N, S, S, C_A + C_B), A then B along channels (uint16 for both if either side is 16-bit: 8-bit
values are promoted exactly), replicated on every device (maps at load_size 286: 1096
pairs, 538 MB). The batch of a step is then a pure function of (seed, step) computed on the
device, so a train step needs nothing from the host and `config.steps_per_call` steps can run in
one `lax.scan` without leaving the device.

The semantics are the host pipeline's (`pipeline.train_dataset`): a stream of seeded per-epoch
permutations cut into consecutive global batches (a batch may straddle two epochs), each example
with its own random crop of the load_size image and a random horizontal flip shared by input and
target, then the direction. The random numbers differ from the host pipeline's.
"""

import concurrent.futures
import logging

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax.data import images as image_lib
from pix2pix_jax.data import pipeline


def train_set_bytes(data_config, num_examples: int, sample_bytes: int = 1) -> int:
  """Bytes of the resized train set as `data.on_device` holds it: (N, S, S, C_in + C_out) of
  `sample_bytes` each (1: uint8; 2: uint16, 16-bit data)."""
  size = data_config.image_size if data_config.preprocess == 'resize' else data_config.load_size
  return num_examples * size * size * sum(pipeline.channels(data_config)) * sample_bytes


def load_images(source, data_config) -> np.ndarray:
  """All train pairs of `source` (already resized), as (N, S, S, C_A + C_B): A then B on channels.

  uint8, or uint16 if either side of `source` is 16-bit (`source.dtypes`; for sources without
  them, the first pair's).

  Raises:
    ValueError: naming the example whose A and B do not have the shape of the first one, or the
      config keys the images do not fit.
  """
  dtypes = getattr(source, 'dtypes', None) or {key: source[0][key].dtype for key in ('A', 'B')}
  dtype = image_lib.common_dtype(dtypes.values())

  def read(index):
    example = source[index]
    pair = [image_lib.promote(example[key], dtype) for key in ('A', 'B')]
    return np.concatenate(pair, axis=-1), example.get('file_name', index)

  with concurrent.futures.ThreadPoolExecutor(max(1, data_config.num_threads)) as pool:
    pairs = list(pool.map(read, range(len(source))))
  shape = pairs[0][0].shape
  for pair, name in pairs:
    if pair.shape != shape or pair.dtype != dtype:
      raise ValueError(
          f'train example {name} is {pair.dtype} {pair.shape[:2]} with '
          f'{pair.shape[2]} channels (A and B), the first one {shape}: '
          'config.data.on_device needs pairs of one size'
      )
  sides = pipeline.side_channels(data_config)
  if shape[0] < data_config.image_size or shape[2] != sides['A'] + sides['B']:
    raise ValueError(
        f'the {data_config.name!r} train pairs are {shape[:2]} with {shape[2]} '
        f'channels (A and B), but the model is built for {data_config.image_size}² '
        f'crops with {sides["A"]} + {sides["B"]} (config.data.image_size, '
        'config.data.input_channels / output_channels or config.data.channels)'
    )
  images = np.stack([pair for pair, _ in pairs])
  logging.info(
      'Train set in device memory: %d pairs of %s, %.0f MB per device',
      len(images),
      shape,
      images.nbytes / 1e6,
  )
  return images


def put_replicated(images: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
  """`images` (the same on every process) as one global array with `sharding` (replicated)."""
  return jax.make_array_from_callback(images.shape, sharding, lambda index: images[index])


def batch_for_step(
    images: jax.Array,
    step: jax.Array,
    *,
    seed: int,
    batch_size: int,
    image_size: int,
    flip: bool,
    direction: str,
    channels: tuple[int, int] | None = None,
) -> dict:
  """The global train batch of `step` (1-based), computed on the device from `images`.

  Args:
    images: uint8 or uint16 (N, S, S, C_A + C_B) from `load_images`, S >= image_size.
    step: the step whose batch to make (traced).
    seed: shuffle and augmentation seed.
    batch_size: global batch size.
    image_size: crop side.
    flip: random horizontal flips.
    direction: 'AtoB' (input = A) or 'BtoA'.
    channels: (input, output) channel counts (`pipeline.channels`); None: A and B have half the
      channels each.

  Returns:
    {'input', 'target'}: (batch_size, image_size, image_size, C_input / C_output), `images`' dtype.
  """
  num, size, _, pair_channels = images.shape
  if channels is None:
    a_channels = pair_channels // 2
  else:
    a_channels = dict(zip(image_lib.sides(direction), channels))['A']
  slack = size - image_size
  shuffle_key, augment_key = jax.random.split(jax.random.PRNGKey(seed))
  positions = (step - 1) * batch_size + jnp.arange(batch_size)  # In the endless example stream.

  def example(position):
    epoch, offset = jnp.divmod(position, num)
    index = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), num)[offset]
    crop_key, flip_key = jax.random.split(jax.random.fold_in(augment_key, position))
    top, left = jax.random.randint(crop_key, (2,), 0, slack + 1)
    pair = jax.lax.dynamic_slice(
        images[index], (top, left, 0), (image_size, image_size, pair_channels)
    )
    if flip:
      pair = jnp.where(jax.random.bernoulli(flip_key), pair[:, ::-1], pair)
    return pair

  pairs = jax.vmap(example)(positions)
  a, b = pairs[..., :a_channels], pairs[..., a_channels:]
  input_side, target_side = image_lib.sides(direction)
  pair = {'A': a, 'B': b}
  return {'input': pair[input_side], 'target': pair[target_side]}
