"""TF-free input pipeline: random-access paired sources -> grain -> uint8 batches.

A source is anything with `len()` and `[i] -> {'A': (H, W, C_A), 'B': (H, W, C_B), ...}` of
uint8 (or uint16 for 16-bit folder data): the TFDS `pix2pix` builder's data sources,
`PairedFolder` (the user's own pairs) or the built-in `SyntheticMaps`. Direction is applied here,
so one prepared copy of a dataset serves both directions. Batches stay integers on the host
({'input', 'target'}, each side with its own channel count and dtype); the train step scales them
to [-1, 1] on the device, which moves 4× fewer bytes than float32.

The train order is a pure function of (seed, step): the epoch-wise shuffle, the per-example
augmentation and the batching are all random-access, so a run resumed at step S reads exactly
the batches an uninterrupted run would have read from step S on.
"""

import functools
from typing import Iterator

import grain
import jax
from jax.experimental import multihost_utils
import numpy as np

from pix2pix_jax.data import images, synthetic

PREPROCESS_MODES = ('resize_and_crop', 'resize', 'patches')
# The paired datasets of the pix2pix authors, prepared by the TFDS builder `pix2pix`.
PIX2PIX_DATASETS = ('maps', 'facades', 'cityscapes', 'edges2shoes', 'edges2handbags', 'night2day')
DATASETS = PIX2PIX_DATASETS + ('folder', 'synthetic')


def channels(data_config) -> tuple[int, int]:
  """(input, output) channels of the generator: `data.input_channels` / `data.output_channels`,
  each `data.channels` when None."""
  return tuple(
      data_config.channels if value is None else value
      for value in (data_config.input_channels, data_config.output_channels)
  )


def side_channels(data_config) -> dict[str, int]:
  """{'A': channels, 'B': channels} of the stored sides, given `data.direction`."""
  counts = dict(zip(images.sides(data_config.direction), channels(data_config)))
  return {'A': counts['A'], 'B': counts['B']}


def channel_keys(data_config) -> dict[str, str]:
  """For messages: the config key that sets each side's channel count, with its value and role."""
  out = {}
  for side, role in zip(images.sides(data_config.direction), ('input', 'output')):
    key = f'{role}_channels'
    value = data_config[key]
    setting = (
        f'config.data.{key}={value}'
        if value is not None
        else f'config.data.channels={data_config.channels}'
    )
    out[side] = (
        f'{setting} (side {side}: the {"input" if role == "input" else "target"}, '
        f'config.data.direction={data_config.direction})'
    )
  return out


def _split_name(data_config, split: str) -> str:
  return data_config.train_split if split == 'train' else data_config.eval_split


def _raw_source(data_config, split: str, seed: int):
  if data_config.name == 'synthetic':
    jitter = split == 'train' and data_config.preprocess != 'resize'
    size = data_config.load_size if jitter else data_config.image_size
    num = (
        data_config.synthetic_train_examples
        if split == 'train'
        else data_config.synthetic_eval_examples
    )
    return synthetic.SyntheticMaps(split, num, size, seed=seed)
  if data_config.name == 'folder':
    from pix2pix_jax.data import folder  # pylint: disable=g-import-not-at-top

    sides, keys = side_channels(data_config), channel_keys(data_config)
    return folder.PairedFolder(
        data_config.folder_dir,
        _split_name(data_config, split),
        channels=(sides['A'], sides['B']),
        wanted=(keys['A'], keys['B']),
    )
  # One of PIX2PIX_DATASETS (config_checks.py admits no other name). Imported here: TFDS is only
  # needed (and only imported) for its datasets.
  from pix2pix_jax.data import pix2pix_tfds  # pylint: disable=g-import-not-at-top

  return pix2pix_tfds.load_pix2pix(
      data_config.name,
      _split_name(data_config, split),
      data_dir=data_config.data_dir,
      manual_dir=data_config.manual_dir,
      verify=data_config.verify,
  )


def create_source(data_config, split: str, seed: int):
  """The random-access source of `config.data` for `split` ('train' or 'eval'), resized.

  Train pairs come at `load_size` (random-cropped later) or, with preprocess='resize', at
  `image_size`; eval pairs at `image_size`. With preprocess='patches' each image first becomes
  four native-resolution `image_size` crops.
  """
  images.set_max_image_pixels(data_config.max_image_pixels)
  source = _raw_source(data_config, split, seed)
  jitter = split == 'train' and data_config.preprocess != 'resize'
  size = data_config.load_size if jitter else data_config.image_size
  # With data.on_device the train pairs are read once into device memory: no host copy to keep.
  cache = data_config.cache and not (split == 'train' and data_config.on_device is True)
  patches = data_config.preprocess == 'patches'
  cached = dtypes = None
  if data_config.name == 'folder':
    # Every file is read now, so that bad data stops the run before it starts. Pairs already at
    # the cached size (maps prepared at 286×286) go into the cache as the check decoded them;
    # others are decoded again on first use, since resizing them here would slow the check more
    # than a second decode costs the pipeline.
    cached = source.check(
        num_threads=data_config.num_threads,
        on_bad_file=data_config.on_bad_file,
        image_size=data_config.image_size,
        required_size=data_config.image_size if patches else 0,
        transform=functools.partial(_if_sized, size=size) if cache and not patches else None,
    )
    dtypes = source.dtypes  # A side with any 16-bit file is held at 16 bits throughout.
  if patches:
    source = NativePatches(source, data_config.image_size)
  return ResizedPairs(source, size, cache=cache, cached=cached, dtypes=dtypes)


def create_sources(data_config, seed: int):
  """The train and eval sources; with several processes, process 0 prepares the dataset (a TFDS
  download and build) while the others wait."""

  def create():
    return tuple(create_source(data_config, split, seed) for split in ('train', 'eval'))

  if jax.process_count() == 1:
    return create()
  sources = create() if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices('pix2pix_jax: dataset prepared')
  return sources or create()


def resize(image: np.ndarray, size: int) -> np.ndarray:
  """Bicubic resize to size×size (the reference's `transforms.Resize(..., BICUBIC)`).

  8-bit RGB and gray through PIL as always; other channel counts and 16 bits per channel in
  float (`images.resize`), so 16-bit precision is kept.
  """
  return images.resize(image, size, size)


def _if_sized(example: dict, size: int) -> dict | None:
  """`example` if its A and B are already size×size (what `ResizedPairs` would cache), else None."""
  return example if all(example[key].shape[:2] == (size, size) for key in ('A', 'B')) else None


class ResizedPairs:
  """A source whose A and B are resized to size×size, optionally kept in host memory.

  Decoding and resizing are the expensive part of the input pipeline; both are deterministic, so
  with `cache` each pair is done once and later epochs only crop and flip (maps at load_size 286:
  1096 pairs, 538 MB).
  """

  def __init__(
      self,
      source,
      size: int,
      cache: bool = False,
      cached: list | None = None,
      dtypes: dict | None = None,
  ):
    """Wraps `source`.

    Args:
      source: random-access paired source.
      size: output side.
      cache: keep each resized pair after its first read.
      cached: with `cache`, what the cache starts with: per pair, the pair already at `size`
        (as the folder check read it) or None.
      dtypes: {'A': dtype, 'B': dtype} every pair is given (8-bit files of a 16-bit side are
        promoted, `images.promote`); None: uint8 sides, as the source gives them.
    """
    self._source, self._size = source, size
    self.dtypes = {key: np.dtype((dtypes or {}).get(key, np.uint8)) for key in ('A', 'B')}
    self._promote = dtypes is not None and any(d != np.uint8 for d in self.dtypes.values())
    if cached is not None and len(cached) != len(source):
      raise ValueError(f'{len(cached)} cached pairs for a source of {len(source)}')
    if cached is not None and self._promote:
      cached = [None if example is None else self._promoted(example) for example in cached]
    self._cache = (list(cached) if cached is not None else [None] * len(source)) if cache else None

  def _promoted(self, example: dict) -> dict:
    return example | {key: images.promote(example[key], self.dtypes[key]) for key in ('A', 'B')}

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if self._cache is not None and self._cache[index] is not None:
      return self._cache[index]
    example = dict(self._source[index])
    example['A'], example['B'] = resize(example['A'], self._size), resize(example['B'], self._size)
    if self._promote:
      example = self._promoted(example)
    if self._cache is not None:
      self._cache[index] = example
    return example

  def uncached(self) -> 'ResizedPairs':
    """The same pairs without a host cache (read once into device memory, say); not re-checked."""
    return ResizedPairs(self._source, self._size, dtypes=self.dtypes)


class NativePatches:
  """Each pair becomes 4 crops of size×size at native resolution, at the corners of a 2×2 grid.

  Seed 001's `patches` preprocessing: a 600×600 maps half gives crops at offsets 0 and 344, which
  together cover the whole image, without the down-scaling to 256.
  """

  def __init__(self, source, size: int):
    self._source, self._size = source, size

  def __len__(self) -> int:
    return 4 * len(self._source)

  def __getitem__(self, index: int) -> dict:
    example = dict(self._source[int(index) // 4])
    height, width = example['A'].shape[:2]
    if min(height, width) < self._size:
      raise ValueError(
          f"config.data.preprocess='patches' needs images of at least {self._size} "
          f"pixels, but {example.get('file_name', index // 4)} is {width}×{height}"
      )
    row, col = divmod(int(index) % 4, 2)
    top, left = row * (height - self._size), col * (width - self._size)
    for key in ('A', 'B'):
      example[key] = example[key][top : top + self._size, left : left + self._size]
    return example


def preprocess_pair(
    example: dict, rng: np.random.Generator | None, *, image_size: int, flip: bool, direction: str
) -> dict:
  """Jitter and orient one resized pair; input and target always get the same crop and flip.

  Args:
    example: {'A': uint8 (S, S, C), 'B': uint8 (S, S, C), ...} with S >= image_size.
    rng: augmentation randomness; None for deterministic (eval) preprocessing: a centre crop.
    image_size: output side.
    flip: random horizontal flip (ignored when `rng` is None).
    direction: 'AtoB' (input = A) or 'BtoA' (input = B).

  Returns:
    {'input': uint8 (image_size, image_size, C), 'target': same}.
  """
  a, b = example['A'], example['B']
  slack = a.shape[0] - image_size
  top, left = rng.integers(0, slack + 1, size=2) if rng is not None else (slack // 2, slack // 2)
  a = a[top : top + image_size, left : left + image_size]
  b = b[top : top + image_size, left : left + image_size]
  if rng is not None and flip and rng.random() < 0.5:
    a, b = a[:, ::-1], b[:, ::-1]
  input_side, target_side = images.sides(direction)
  pair = {'A': a, 'B': b}
  return {
      'input': np.ascontiguousarray(pair[input_side]),
      'target': np.ascontiguousarray(pair[target_side]),
  }


def _preprocess_kwargs(data_config) -> dict:
  return dict(
      image_size=data_config.image_size, flip=data_config.flip, direction=data_config.direction
  )


def train_dataset(
    source,
    data_config,
    *,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.MapDataset:
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
  ds = ds.random_map(
      functools.partial(preprocess_pair, **_preprocess_kwargs(data_config)), seed=seed
  )
  # Sliced after the augmentation, whose randomness follows the *global* example index: every
  # process count sees the same crops and flips.
  ds = ds[process_index::process_count]
  return ds.batch(batch_size // process_count, drop_remainder=True)


def train_iterator(dataset: grain.MapDataset, start_step: int, data_config) -> Iterator[dict]:
  """Iterates `dataset` from the batch of step `start_step + 1`.

  Batches are prepared ahead by `data_config.num_threads` threads (PIL decodes and resizes with
  the GIL released) and, if `data_config.num_workers` > 0, in that many worker processes, each
  with its own threads and cache; the order is the same either way.
  """
  options = grain.ReadOptions(
      num_threads=data_config.num_threads, prefetch_buffer_size=data_config.prefetch
  )
  iterable = dataset[start_step:].to_iter_dataset(options)
  if data_config.num_workers > 0:
    iterable = iterable.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=data_config.num_workers)
    )
  return iter(iterable)


def check_batch(batch: dict, config) -> None:
  """Raises ValueError if a host batch does not have the shape the model is built for."""
  counts = dict(zip(('input', 'target'), channels(config.data)))
  for key in ('input', 'target'):
    expected = (
        config.batch_size // jax.process_count(),
        config.data.image_size,
        config.data.image_size,
        counts[key],
    )
    if batch[key].shape != expected or batch[key].dtype not in images.SAMPLE_DTYPES:
      raise ValueError(
          f'the {config.data.name!r} data gives {key} batches of {batch[key].dtype}'
          f' {batch[key].shape}, but the model is built for uint8 or uint16 {expected}'
          ' (config.batch_size, config.data.image_size,'
          f' config.data.{key.replace("target", "output")}_channels or config.data.channels)'
      )


def sample_bytes(source) -> int:
  """Bytes per value of `source`'s pairs: 2 if a side is 16-bit (`dtypes`), else 1."""
  return images.common_dtype((getattr(source, 'dtypes', None) or {'A': np.uint8}).values()).itemsize


def _sides(data_config, source) -> dict:
  """{'input': (channels, dtype), 'target': ...} of the batches made from `source`."""
  dtypes = getattr(source, 'dtypes', None) or {'A': np.uint8, 'B': np.uint8}
  input_side, target_side = images.sides(data_config.direction)
  counts = channels(data_config)
  return {'input': (counts[0], dtypes[input_side]), 'target': (counts[1], dtypes[target_side])}


def _eval_example(index: int, *, source, total: int, data_config) -> dict:
  if index >= total:  # Padding of the last batch.
    size = data_config.image_size
    return {
        key: np.zeros((size, size, count), dtype)
        for key, (count, dtype) in _sides(data_config, source).items()
    } | {'mask': np.float32(0), 'index': np.int32(-1), 'file_name': ''}
  example = source[index]
  out = preprocess_pair(example, None, **_preprocess_kwargs(data_config))
  return out | {
      'mask': np.float32(1),
      'index': np.int32(index),
      'file_name': str(example.get('file_name', index)),
  }


def eval_batches(
    source,
    data_config,
    *,
    batch_size: int,
    num_examples: int = -1,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict]:
  """Every eval example once, resized (no jitter), in fixed-size padded batches.

  Batches hold {'input', 'target', 'mask', 'index', 'file_name'}; `mask` is 0 (and `index` -1)
  for the padding of the last batch, so metrics count only real examples while every batch keeps
  a shape that compiles once and shards over devices. `file_name` (strings) stays on the host.
  Examples are read by `data_config.num_threads` threads.
  """
  total = len(source) if num_examples < 0 else min(num_examples, len(source))
  num_batches = -(-total // batch_size)
  ds = grain.MapDataset.range(num_batches * batch_size)[process_index::process_count]
  ds = ds.map(functools.partial(_eval_example, source=source, total=total, data_config=data_config))
  ds = ds.batch(batch_size // process_count)
  options = grain.ReadOptions(
      num_threads=data_config.num_threads, prefetch_buffer_size=data_config.prefetch
  )
  return iter(ds.to_iter_dataset(options))
