"""TF-free input pipeline: random-access paired sources -> grain -> uint8 batches.

A source is anything with `len()` and `[i] -> {'A': uint8 (H, W, C), 'B': uint8 (H, W, C), ...}`
(a TFDS data source or `SyntheticMaps`). Direction is applied here, so one prepared copy of a
dataset serves both directions. Batches stay uint8 on the host ({'input', 'target'}); the train
step scales them to [-1, 1] on the device, which moves 4× fewer bytes.

The train order is a pure function of (seed, step): the epoch-wise shuffle, the per-example
augmentation and the batching are all random-access, so a run resumed at step S reads exactly
the batches an uninterrupted run would have read from step S on.
"""

import functools
from typing import Iterator

import grain
import jax
import numpy as np
from PIL import Image

from pix2pix_jax.data import synthetic

DIRECTIONS = ('AtoB', 'BtoA')
PREPROCESS_MODES = ('resize_and_crop', 'resize')
DATASETS = ('synthetic', 'maps')


def create_source(data_config, split: str, seed: int):
  """The random-access source of `config.data.name` for `split` ('train' or 'eval')."""
  if data_config.name == 'synthetic':
    # Rendered at the size the preprocessing resizes to, so that resize is a no-op.
    size = data_config.load_size if data_config.preprocess == 'resize_and_crop' and split == 'train' \
        else data_config.image_size
    num = data_config.synthetic_train_examples if split == 'train' else data_config.synthetic_eval_examples
    return synthetic.SyntheticMaps(split, num, size, seed=seed)
  if data_config.name == 'maps':
    raise NotImplementedError(
        "config.data.name='maps' needs the TFDS maps builder, which is not in this version yet. "
        "Train on the built-in data with --config.data.name=synthetic (or configs/demo.py).")
  raise ValueError(f'config.data.name={data_config.name!r} is not one of {DATASETS}')


def resize(image: np.ndarray, size: int) -> np.ndarray:
  """Bicubic resize to size×size (the reference's `transforms.Resize(..., BICUBIC)`)."""
  if image.shape[0] == size and image.shape[1] == size:
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


def preprocess_pair(example: dict, rng: np.random.Generator | None, *, image_size: int,
                    load_size: int, preprocess: str, flip: bool, direction: str) -> dict:
  """Jitter and orient one pair; input and target always get the same crop and flip.

  Args:
    example: {'A': uint8 (H, W, C), 'B': uint8 (H, W, C), ...}.
    rng: augmentation randomness; None for deterministic eval preprocessing (resize only).
    image_size: output side.
    load_size: side to resize to before the random crop ('resize_and_crop').
    preprocess: 'resize_and_crop' (paper: resize to load_size, random crop) or 'resize'.
    flip: random horizontal flip (ignored when `rng` is None).
    direction: 'AtoB' (input = A) or 'BtoA' (input = B).

  Returns:
    {'input': uint8 (image_size, image_size, C), 'target': same}.
  """
  a, b = example['A'], example['B']
  if rng is not None and preprocess == 'resize_and_crop':
    a, b = resize(a, load_size), resize(b, load_size)
    top, left = rng.integers(0, load_size - image_size + 1, size=2)
    a = a[top:top + image_size, left:left + image_size]
    b = b[top:top + image_size, left:left + image_size]
  else:
    a, b = resize(a, image_size), resize(b, image_size)
  if rng is not None and flip and rng.random() < 0.5:
    a, b = a[:, ::-1], b[:, ::-1]
  inputs, targets = (a, b) if direction == 'AtoB' else (b, a)
  return {'input': np.ascontiguousarray(inputs), 'target': np.ascontiguousarray(targets)}


def _preprocess_kwargs(data_config) -> dict:
  return dict(image_size=data_config.image_size, load_size=data_config.load_size,
              preprocess=data_config.preprocess, flip=data_config.flip,
              direction=data_config.direction)


def train_dataset(source, data_config, *, batch_size: int, seed: int, process_index: int = 0,
                  process_count: int = 1) -> grain.MapDataset:
  """Endless train batches for this process: element `s` is the batch of step `s + 1`.

  Each epoch is a fresh seeded permutation of the source; each process reads every
  `process_count`-th example of that order, so processes see disjoint data.

  Args:
    source: random-access paired source.
    data_config: `config.data`.
    batch_size: the *global* batch size (split evenly over processes).
    seed: shuffle and augmentation seed.
    process_index: this JAX process.
    process_count: number of JAX processes.
  """
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat(None)
  ds = ds[process_index::process_count]
  ds = ds.random_map(functools.partial(preprocess_pair, **_preprocess_kwargs(data_config)), seed=seed)
  return ds.batch(batch_size // process_count, drop_remainder=True)


def train_iterator(dataset: grain.MapDataset, start_step: int, data_config) -> Iterator[dict]:
  """Iterates `dataset` from the batch of step `start_step + 1`, prepared by host threads."""
  options = grain.ReadOptions(num_threads=data_config.num_threads,
                              prefetch_buffer_size=data_config.prefetch)
  return iter(dataset[start_step:].to_iter_dataset(options))


def check_batch(batch: dict, config) -> None:
  """Raises ValueError if a host batch does not have the shape the model is built for."""
  expected = (config.batch_size // jax.process_count(), config.data.image_size,
              config.data.image_size, config.data.channels)
  for key in ('input', 'target'):
    if batch[key].shape != expected or batch[key].dtype != np.uint8:
      raise ValueError(
          f'the {config.data.name!r} data gives {key} batches of {batch[key].dtype} '
          f'{batch[key].shape}, but the model is built for uint8 {expected} '
          '(config.batch_size, config.data.image_size, config.data.channels)')


def eval_batches(source, data_config, *, batch_size: int, num_examples: int = -1,
                 process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
  """Every eval example once, in order, resized (no jitter), in fixed-size padded batches.

  Batches hold {'input', 'target', 'mask'}; `mask` is 0 for padding, so metrics can count only
  real examples while every batch keeps a shape that compiles once and shards over devices.
  """
  total = len(source) if num_examples < 0 else min(num_examples, len(source))
  local_batch = batch_size // process_count
  for start in range(0, total, batch_size):
    indices = range(start + process_index, min(start + batch_size, total), process_count)
    examples = [preprocess_pair(source[i], None, **_preprocess_kwargs(data_config)) for i in indices]
    mask = np.zeros(local_batch, np.float32)
    mask[:len(examples)] = 1.0
    pad = local_batch - len(examples)
    batch = {k: np.stack([e[k] for e in examples] + [np.zeros_like(examples[0][k])] * pad)
             for k in ('input', 'target')} if examples else None
    if batch is None:  # This process has nothing left in a final partial batch.
      shape = (local_batch, data_config.image_size, data_config.image_size, data_config.channels)
      batch = {'input': np.zeros(shape, np.uint8), 'target': np.zeros(shape, np.uint8)}
    batch['mask'] = mask
    yield batch
