"""`--mode=predict`: translating image files with the trained generator, at any size.

The generator runs at the model size (each image resized to it and back) or at the image's own
size (`translate_native`: the U-Net is convolutional, so it takes any multiple of its size; large
images go in blended tiles).
"""

import itertools
import logging
import math
import pathlib
from typing import Callable

import jax
import ml_collections
import numpy as np

from pix2pix_jax import inference, models, progress
from pix2pix_jax.data import pipeline
from pix2pix_jax.data import images as image_lib

RESOLUTIONS = ('model', 'native')
# --resolution=native: images with more pixels than this after padding are translated in tiles of
# at most this many pixels (a square side that is a multiple of the model size), so memory stays
# bounded whatever the image (the U-Net-256 at ngf 64 compiles, on CPU, to 0.5 GiB of temporaries
# at 1024², 1.6 GiB at 2048²).
NATIVE_MAX_PIXELS = 1024 * 1024
# Neighbouring tiles overlap by at least this fraction of the tile side; each tile's weight ramps
# up over that many pixels from its edges (a raised cosine), so there is no seam.
TILE_OVERLAP_FRACTION = 0.25

# uint8/uint16 (1, h, w, C_in), key -> float (1, h, w, C_out) in [-1, 1]: the generator at one size.
TranslateFn = Callable[[np.ndarray, jax.Array], jax.Array]


def pad_to_multiple(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
  """Reflect-pads an (H, W, C) image, evenly on both sides, to multiples of `multiple`.

  Reflection continues the image's own content; zeros would be a frame the generator translates
  as content (and, in train mode, counts in its BatchNorm statistics).

  Args:
    image: (H, W, C).
    multiple: what the sides must be multiples of (`models.side_multiple`: 2**levels for the
      U-Net, 4 for the ResNet).

  Returns:
    (the padded image, (top, left): where `image` starts in it).
  """
  pads = [-side % multiple for side in image.shape[:2]]
  (top, bottom), (left, right) = [(pad // 2, pad - pad // 2) for pad in pads]
  return np.pad(image, ((top, bottom), (left, right), (0, 0)), mode='reflect'), (top, left)


def tile_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
  """Where the tiles of one axis start: evenly spread, overlapping by at least `overlap`.

  Starts are multiples of `multiple` (`models.side_multiple`): the generator's stride-2 grids then
  line up with the whole image's, so away from its borders a tile computes what the whole image
  would.

  Args:
    length: the axis's length, a multiple of `multiple`.
    tile: the tile's length on it, a multiple of `multiple`, >= 2 * multiple if < `length`.
    overlap: the least overlap of neighbouring tiles, in pixels (rounded up to a multiple).
    multiple: see above.

  Returns:
    The starts, from 0 to length - tile.
  """
  if length <= tile:
    return [0]
  units, tile_units = length // multiple, tile // multiple
  overlap_units = min(math.ceil(overlap / multiple), tile_units - 1)
  count = math.ceil((units - overlap_units) / (tile_units - overlap_units))
  return [multiple * round(i * (units - tile_units) / (count - 1)) for i in range(count)]


def tile_weights(tile: int, ramp: int, start: int, length: int) -> np.ndarray:
  """One axis of a tile's blend weights: a raised cosine rising over `ramp` pixels, then 1.

  The weight rises from about 0 at an edge the tile shares with the image's interior; at the
  image's own border it is 1. It is positive everywhere, so the normalised sum of the tiles
  covers every pixel and is a smooth cross-fade wherever tiles overlap.

  Args:
    tile: the tile's length on this axis.
    ramp: the rise's length in pixels.
    start: where the tile starts on the axis.
    length: the axis's length.

  Returns:
    float32 (tile,) weights in (0, 1].
  """
  distance = np.arange(tile) + 0.5  # From the tile's first pixel; reversed: from its last.
  rise = distance if start > 0 else np.full(tile, np.inf)
  fall = distance[::-1] if start + tile < length else np.full(tile, np.inf)
  return (np.sin(0.5 * np.pi * np.minimum(np.minimum(rise, fall) / ramp, 1.0)) ** 2).astype(
      np.float32
  )


def translate_tiled(
    translate: TranslateFn,
    image: np.ndarray,
    rng: jax.Array,
    tile: tuple[int, int],
    ramp: int,
    multiple: int,
) -> np.ndarray:
  """Translates an (H, W, C) image tile by tile and blends the tiles without seams.

  Each output pixel is the weighted mean of the tiles that cover it (weights: `tile_weights`
  along both axes, normalised by their sum). Tile k uses the key fold_in(rng, k).

  Args:
    translate: the generator at the tile's size (see TranslateFn).
    image: uint8 or uint16 (H, W, C_in), H and W multiples of `multiple`.
    rng: the image's key.
    tile: (height, width) of the tiles, multiples of `multiple`, at most (H, W).
    ramp: the blend's length in pixels from a tile's inner edges (and the tiles' least overlap).
    multiple: 2**levels, see `tile_starts`.

  Returns:
    float32 (H, W, C_out) in [-1, 1].
  """

  def axis_tiles(length, size):  # (start, weights) of each tile along one axis.
    return [
        (start, tile_weights(size, ramp, start, length))
        for start in tile_starts(length, size, ramp, multiple)
    ]

  height, width = image.shape[:2]
  rows, columns = axis_tiles(height, tile[0]), axis_tiles(width, tile[1])
  blended = None  # (H, W, C_out): the output's channels may not be the input's.
  total_weight = np.zeros((height, width, 1), np.float32)
  for index, ((top, row_weights), (left, column_weights)) in enumerate(
      itertools.product(rows, columns)
  ):
    window = (slice(top, top + tile[0]), slice(left, left + tile[1]))
    piece = np.asarray(translate(image[window][None], jax.random.fold_in(rng, index)))[0]
    weights = row_weights[:, None, None] * column_weights[None, :, None]
    if blended is None:
      blended = np.zeros((height, width, piece.shape[-1]), np.float32)
    blended[window] += weights * piece
    total_weight[window] += weights
  return blended / total_weight


def translate_native(
    translate: TranslateFn,
    image: np.ndarray,
    rng: jax.Array,
    multiple: int,
    max_pixels: int = NATIVE_MAX_PIXELS,
) -> np.ndarray:
  """Translates a uint8 or uint16 (H, W, C_in) image at its own size (--resolution=native).

  The image is reflect-padded to multiples of `multiple` (`pad_to_multiple`), translated in one
  piece if that has at most `max_pixels` pixels, else in square tiles of the largest multiple
  of `multiple` within `max_pixels` (at least 2 * multiple) that overlap by a quarter of their
  side (`translate_tiled`); the output is cropped back to H×W.

  Args:
    translate: the generator (see TranslateFn); it is called at the padded or the tile size.
    image: uint8 or uint16 (H, W, C_in).
    rng: the image's key.
    multiple: `models.side_multiple(generator)`.
    max_pixels: the budget of pixels translated at once.

  Returns:
    uint8 (H, W, C_out).
  """
  padded, (top, left) = pad_to_multiple(image, multiple)
  height, width = padded.shape[:2]
  if height * width <= max_pixels:
    out = np.asarray(translate(padded[None], rng))[0]
  else:
    side = max(2 * multiple, math.isqrt(max_pixels) // multiple * multiple)
    tile = (min(side, height), min(side, width))
    logging.info('Translating %d×%d (padded) in overlapping %d×%d tiles', height, width, *tile)
    out = translate_tiled(
        translate, padded, rng, tile, round(side * TILE_OVERLAP_FRACTION), multiple
    )
  return np.asarray(
      image_lib.to_uint8(out[top : top + image.shape[0], left : left + image.shape[1]])
  )


def image_key(seed: int, index: int) -> jax.Array:
  """The dropout key of the `index`-th input (0-based) of a run seeded `seed` (config.seed)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), index)


def translate_at_model_size(
    translate: Callable[[np.ndarray], np.ndarray], image: np.ndarray, size: int
) -> np.ndarray:
  """--resolution=model: `image` resized (bicubic) to size×size, translated, resized back.

  Args:
    translate: uint8/uint16 (1, size, size, C_in) -> uint8 (1, size, size, C_out): the generator,
      or an export (`serving.load_generator`).
    image: uint8 or uint16 (H, W, C_in).
    size: the model's image size.

  Returns:
    uint8 (H, W, C_out).
  """
  out = np.asarray(translate(pipeline.resize(image, size)[None]))[0]
  return image_lib.resize(out, image.shape[1], image.shape[0])


# (image uint8/uint16 (H, W, C_in), key, resolution, max_pixels) -> uint8 (H, W, C_out).
ImageTranslator = Callable[[np.ndarray, jax.Array, str, int], np.ndarray]


def create_image_translator(
    generator, network, *, train_mode: bool, image_size: int
) -> ImageTranslator:
  """What --mode=predict does to one image, as a function (shared with the browser demo).

  Args:
    generator: the generator module.
    network: its variables {'params', 'batch_stats'}.
    train_mode: the test-time behaviour (`inference.generate`).
    image_size: the model's image size.

  Returns:
    translate_image(image, key, resolution, max_pixels): `resolution` is one of RESOLUTIONS
    ('model': `translate_at_model_size`; 'native': `translate_native`, tiled above `max_pixels`).
    Each resolution and input size compiles once, at its first call.
  """

  def generate_images(x, rng):
    return inference.generate(generator, network, x, rng, train_mode)

  translate = jax.jit(lambda x, rng: image_lib.to_uint8(generate_images(x, rng)))
  generate_float = jax.jit(generate_images)  # Native: tiles are blended before rounding.
  multiple = models.side_multiple(generator)

  def translate_image(image, rng, resolution='model', max_pixels=NATIVE_MAX_PIXELS):
    if resolution not in RESOLUTIONS:
      raise ValueError(f'resolution {resolution!r} is not one of {RESOLUTIONS}')
    if resolution == 'native':
      return translate_native(generate_float, image, rng, multiple, max_pixels)
    return translate_at_model_size(lambda x: translate(x, rng), image, image_size)

  return translate_image


def predict(
    config: ml_collections.ConfigDict,
    workdir: str,
    input_path: str,
    output_dir: str,
    *,
    step: int | str | None = None,
    pairs: bool = False,
    side_by_side: bool = False,
    resolution: str = 'model',
    max_pixels: int = NATIVE_MAX_PIXELS,
) -> list[pathlib.Path]:
  """Translates one image or every image of a folder with the trained generator.

  `resolution='model'`: each image is resized (bicubic) to the model's size, translated, and the
  output resized back to the image's own size. 'native': the generator runs at the image's own
  size (`translate_native`: reflect-padded to a multiple of the model size, tiled above
  `max_pixels`). Inputs are read with `config.data.input_channels` by the folder datasets' rules
  (`images.load_image`; 16-bit inputs at full precision). Outputs are 8-bit: OUTPUT_DIR/<name>.png
  for 1 channel (gray) and 3 (RGB), OUTPUT_DIR/<name>.tif (tifffile, the `tiff` extra) for other
  counts; `side_by_side` panels of an input and output that differ in channels or bit depth are
  shown as `images.to_display` does (RGB PNG). Files that cannot be decoded, or have a channel
  count that does not convert, are logged with their path and skipped; a folder without any
  image is an error.

  Args:
    config: the run's config.
    workdir: the training workdir (its latest checkpoint, or `step`).
    input_path: an image file or a folder of images.
    output_dir: where the PNGs go (created).
    step: checkpoint step, 'best', or None for the latest.
    pairs: inputs are side-by-side A|B pairs; the input half is chosen by config.data.direction.
    side_by_side: write [input | output] instead of the output alone.
    resolution: one of RESOLUTIONS, see above.
    max_pixels: 'native': images with more pixels than this (after padding) are tiled.

  Returns:
    The written files.
  """
  if resolution not in RESOLUTIONS:
    raise ValueError(f'--resolution={resolution} is not one of {RESOLUTIONS}')
  image_lib.set_max_image_pixels(config.data.max_image_pixels)
  files = image_lib.list_images(pathlib.Path(input_path).expanduser(), '--input')
  input_channels, output_channels = pipeline.channels(config.data)
  image_lib.check_tiff_writer(output_channels, 'config.data.output_channels: the output')
  generator, network, step, _ = inference.restore_trained_generator(config, workdir, step)
  translate_image = create_image_translator(
      generator, network, train_mode=config.eval.train_mode, image_size=config.data.image_size
  )
  output = pathlib.Path(output_dir).expanduser()
  output.mkdir(parents=True, exist_ok=True)
  written, skipped, keys = [], [], pipeline.channel_keys(config.data)
  log = progress.ProgressLog('Translating', len(files), rest='reading, translating, writing')
  input_side = image_lib.sides(config.data.direction)[0]
  for index, path in enumerate(files):
    try:
      if pairs:
        sides = pipeline.side_channels(config.data)
        a, b = image_lib.load_side_by_side(path, (sides['A'], sides['B']), (keys['A'], keys['B']))
        image = {'A': a, 'B': b}[input_side]
      else:
        image = image_lib.load_image(path, input_channels, keys[input_side])
    except image_lib.BadImageError as error:
      logging.warning('Skipping %s: %s', path, error)
      skipped.append(path.name)
      continue
    out = translate_image(image, image_key(config.seed, index), resolution, max_pixels)
    if side_by_side:
      same = image.shape[2] == out.shape[2] and image.dtype == out.dtype
      out = np.concatenate(
          [image, out] if same else [image_lib.to_display(image), image_lib.to_display(out)], axis=1
      )
    written.append(image_lib.save_image(out, output / path.stem))
    log.update(index + 1, quiet_end=True)
  if not written:
    raise ValueError(
        f'none of the {len(files)} input file(s) of --input {input_path} could be read (each is '
        'named above); nothing was written'
    )
  logging.info(
      'Wrote %d of %d image(s) to %s (checkpoint step %d, test mode: %s, resolution: %s)%s',
      len(written),
      len(files),
      output,
      step,
      inference.test_mode_description(config.eval.train_mode),
      resolution,
      f'; skipped {len(skipped)} that could not be read: {", ".join(skipped[:10])}'
      + (', ...' if len(skipped) > 10 else '')
      if skipped
      else '',
  )
  return written
