"""Image conventions shared by the data sources, training, evaluation and inference.

Files: which names are images, listing those of a file or folder (`list_images`), their natural
order ('2.jpg' before '10.jpg'), decoding any common mode to upright 8-bit RGB (`load_rgb`: the
TFDS builder) or to a given channel count at the file's own bit depth (`load_image`: folder
datasets, scoring, prediction), the one rule that splits a side-by-side A|B image, and which side
is the input (`sides`). Arrays: uint8 [0, 255] or uint16 [0, 65535] <-> float [-1, 1], the
networks' range; bicubic resizing of any channel count and bit depth; writing outputs.

Channels and bit depth (`load_image`). A file gives the channels it stores, except for these
unambiguous conversions: to 3 channels, everything `to_rgb_uint8` converts today (gray and 1-bit
replicated, palette looked up, alpha dropped, CMYK/YCbCr/LAB converted by PIL), with 16-bit gray
replicated at 16 bits; to 1 channel, 1-bit images, gray with alpha (alpha dropped) and palette
images whose colours are all gray. Anything else, a colour image for a 1-channel side above all,
is a `BadImageError` naming the file: nothing is averaged into gray behind the user's back.
Samples are uint8 or uint16 (16-bit PNG gray through Pillow; TIFF through Pillow where it reads
the file faithfully, else through `tifffile`, the `tiff` extra: multi-band and 16-bit colour TIFFs,
which Pillow truncates to 8 bits or misreads). 16-bit samples stay 16-bit up to the network. A
16-bit colour PNG is refused (a `BadImageError` naming it): Pillow reads only its high 8 bits.
"""

import logging
import os
import pathlib
import re
import threading

import jax
import jax.numpy as jnp
import numpy as np
from PIL import ExifTags, Image, ImageOps

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.ppm')
_SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N')
_DIGITS = re.compile(r'([0-9]+)')


SAMPLE_DTYPES = (
    np.uint8,
    np.uint16,
)  # What sides hold: 8-bit, or 16-bit sources at full precision.
TIFF_INSTALL_HINT = "pip install -e '.[tiff]'"
_TIFF_EXTENSIONS = ('.tif', '.tiff')
DIRECTIONS = ('AtoB', 'BtoA')  # config.data.direction: A -> B, or B -> A.
# config.data.verify: how the TFDS builder checks its source files against the manifest. Here, not
# in pix2pix_tfds.py, so that checking a config does not import TFDS.
VERIFY_MODES = ('full', 'present', 'off')


def sides(direction: str) -> tuple[str, str]:
  """(input side, target side) of a side-by-side A|B pair: 'AtoB' translates A into B."""
  return ('A', 'B') if direction == 'AtoB' else ('B', 'A')


def to_float(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] or uint16 [0, 65535] -> float32 [-1, 1] (on the device).

  Exact at both ends (0 -> -1, 255 or 65535 -> 1). A uint8 value v and its uint16 twin 257·v
  (`promote`) give the same float up to float32 rounding (XLA divides by multiplying with the
  reciprocal: at most 1.2e-7 apart), so an 8-bit file in a 16-bit side is what it would be alone.
  """
  if images.dtype == jnp.uint16:
    return images.astype(jnp.float32) / 32767.5 - 1.0
  return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images: jax.Array) -> jax.Array:
  """float [-1, 1] -> uint8 [0, 255], rounded."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def is_image_name(name: str) -> bool:
  """Whether a file name has an image extension (case-insensitive); hidden files are not images."""
  return not os.path.basename(name).startswith('.') and (
      os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
  )


def natural_key(name: str) -> tuple:
  """Sort key with digit runs compared as numbers: '2.jpg' < '10.jpg'."""
  # re.split with a group alternates text and digits, so positions always compare like with like.
  parts = _DIGITS.split(name)
  return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


def list_images(path: pathlib.Path, flag: str = '--input') -> list[pathlib.Path]:
  """The image files of `path` (a file or a folder), sorted; other files are logged and skipped.

  Errors name `flag`, the command-line flag that gave the path.
  """
  if not path.exists():
    raise FileNotFoundError(f'{flag} {path} does not exist')
  if path.is_file():
    return [path]
  files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith('.'))
  images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
  skipped = [p.name for p in files if p not in images]
  if skipped:
    logging.warning('Skipping %d non-image file(s) in %s: %s', len(skipped), path, skipped[:10])
  if not images:
    raise FileNotFoundError(
        f'no image files in {flag} {path} (extensions: {" ".join(IMAGE_EXTENSIONS)})'
    )
  return images


class BadImageError(ValueError):
  """An image file cannot be used (raised on access); `paths` are the file(s) at fault."""

  def __init__(self, message: str, *paths: str):
    super().__init__(message)
    self.paths = paths


def to_rgb_uint8(image: Image.Image, path) -> np.ndarray:
  """Converts a decoded PIL image of any common mode to 8-bit RGB.

  Gray ('L', '1') is replicated to three channels; palette ('P') images are looked up; alpha
  ('RGBA', 'LA', 'PA') is dropped, leaving transparent pixels their stored colour as the reference's
  `.convert('RGB')` does; 16-bit gray ('I;16*', and 'I', which holds 16-bit PNGs in older Pillow,
  clipped to 0..65535) is scaled by 255/65535 with rounding, so 65535 -> 255 and 32768 -> 128,
  rather than clipped at 255 as PIL's convert would. Other modes (CMYK, YCbCr, LAB, ...) are
  converted by PIL.

  Args:
    image: a loaded PIL image.
    path: the file it came from, for error messages.

  Returns:
    uint8 (H, W, 3), C-contiguous and writable.

  Raises:
    BadImageError: for float ('F') images, whose range is unknown, and modes PIL cannot convert.
  """
  mode = image.mode
  if mode == 'RGB':
    return np.array(image)
  if mode in _SIXTEEN_BIT_MODES or mode == 'I':
    gray = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    gray = ((gray * 255 + 32767) // 65535).astype(np.uint8)  # round(v * 255 / 65535)
    return np.repeat(gray[:, :, None], 3, axis=2)
  if mode == 'F':
    raise BadImageError(
        f'{path}: 32-bit float images (mode F) are not supported, because their '
        'value range is unknown; save it as 8- or 16-bit',
        str(path),
    )
  try:
    return np.array(image.convert('RGB'))
  except ValueError as e:
    raise BadImageError(f'{path}: cannot convert image mode {mode} to RGB: {e}', str(path)) from e


def exif_orientation(path) -> int:
  """The file's EXIF Orientation tag (1: upright, or none; 2-8: flipped or turned), header only."""
  try:
    with Image.open(path) as image:
      return int(image.getexif().get(ExifTags.Base.Orientation, 1))
  except Exception:  # pylint: disable=broad-except
    return 1  # Unreadable metadata is ignored when decoding too (`_exif_upright`).


def _exif_upright(image: Image.Image) -> Image.Image:
  """Applies the EXIF orientation tag, if there is one other than 1 (upright)."""
  try:
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
  except Exception:  # pylint: disable=broad-except
    # Broken metadata in an otherwise fine image: the pixels are still usable, as viewers show.
    return image
  return ImageOps.exif_transpose(image) if orientation in range(2, 9) else image


# config.data.max_image_pixels: the decompression-bomb limit (`set_max_image_pixels`).
PILLOW_MAX_IMAGE_PIXELS = 89_478_485  # Pillow's default: 1024 × 1024 × 1024 // 4 // 3.
_max_image_pixels = None  # None: Pillow's own check, until `set_max_image_pixels`.
_warned_large: set[str] = set()
_warned_large_lock = threading.Lock()  # The folder check decodes in threads.


def set_max_image_pixels(pixels: int | None) -> None:
  """The decompression-bomb limit of the files read here (config.data.max_image_pixels).

  None: Pillow's default, 89,478,485 pixels. Files over the limit decode with one warning naming
  them; files over twice the limit are bad files, refused with a message naming the setting (raise
  it knowingly for large orthophotos). Pillow's own check, whose warning names no file and comes at
  every decode, is turned off: `_open` applies the same rule.
  """
  global _max_image_pixels
  _max_image_pixels = pixels or PILLOW_MAX_IMAGE_PIXELS
  Image.MAX_IMAGE_PIXELS = None


def _open(path) -> Image.Image:
  """`Image.open`, with the decompression-bomb limit naming the file and the setting."""
  image = Image.open(path)
  limit = _max_image_pixels
  width, height = image.size
  if limit is None or width * height <= limit:
    return image
  if width * height > 2 * limit:
    image.close()
    raise BadImageError(
        f'{path} is {width}×{height} = {width * height:,} pixels, over twice the '
        f'decompression-bomb limit of {limit:,} (config.data.max_image_pixels): refused as a bad '
        'file. If it is yours and this large, raise config.data.max_image_pixels.',
        str(path),
    )
  with _warned_large_lock:
    first = str(path) not in _warned_large
    _warned_large.add(str(path))
  if first:
    logging.warning(
        '%s is %d×%d = %s pixels, over the decompression-bomb limit of %s '
        '(config.data.max_image_pixels): decoded anyway, as it is under twice that. Raise the '
        'setting to accept such files without this warning.',
        path,
        width,
        height,
        f'{width * height:,}',
        f'{limit:,}',
    )
  return image


# Pillow decodes these PNG raw modes (16-bit colour, 16-bit gray with alpha) into 8-bit modes by
# keeping each sample's high byte.
_PNG_16BIT_CUT_RAWMODES = ('RGB;16B', 'RGBA;16B', 'LA;16B')


def _refuse_cut_png(image: Image.Image, path) -> None:
  """16-bit colour PNGs are refused: Pillow would silently keep only their high 8 bits.

  Called on the opened, not yet decoded image (its tile still names the raw mode).
  """
  rawmodes = {str(getattr(tile, 'args', tile[-1])) for tile in image.tile or []}
  if image.format == 'PNG' and rawmodes & set(_PNG_16BIT_CUT_RAWMODES):
    raise BadImageError(
        f'{path} is a 16-bit colour PNG, which Pillow can only read cut to 8 bits; rather than '
        'lose the low bits silently it is refused. Save it as a 16-bit TIFF (read at full '
        f'precision, with {TIFF_INSTALL_HINT} for colour) or as an 8-bit PNG. 16-bit gray PNGs '
        'keep their 16 bits.',
        str(path),
    )


def load_rgb(path: str) -> np.ndarray:
  """Decodes an image file to upright 8-bit RGB.

  Args:
    path: image file.

  Returns:
    uint8 (H, W, 3), EXIF orientation applied.

  Raises:
    BadImageError: naming `path` if the file is missing, corrupt, truncated or of an unusable mode.
  """
  try:
    with _open(path) as image:
      _refuse_cut_png(image, path)
      image.load()  # decode fully now: a truncated file raises here instead of later
      return to_rgb_uint8(_exif_upright(image), path)
  except BadImageError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # PIL signals bad data with many types (OSError, SyntaxError, ValueError, EOFError, ...).
    raise BadImageError(f'cannot decode image {path}: {type(e).__name__}: {e}', path) from e


def describe_size(image: np.ndarray) -> str:
  """'W×H' of an (H, W, C) image, for messages."""
  return f'{image.shape[1]}×{image.shape[0]}'


def split_side_by_side(image: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray]:
  """Splits an A | B image into its left (A) and right (B) halves.

  Args:
    image: uint8 (H, W, 3) with W even.
    path: the file it came from, for error messages.

  Returns:
    (A, B), each uint8 (H, W / 2, 3), C-contiguous.

  Raises:
    BadImageError: if W is odd, since the halves would differ in size.
  """
  width = image.shape[1]
  if width % 2:
    raise BadImageError(
        f'{path} is {describe_size(image)}: a side-by-side A|B image needs an even width, so that A'
        ' (left half) and B (right half) are the same size',
        path,
    )
  half = width // 2
  return np.ascontiguousarray(image[:, :half]), np.ascontiguousarray(image[:, half:])


# ----------------------------------------------------------------------------------------------
# Any channel count, 8 or 16 bits


class MissingTiffReader(ImportError):
  """A TIFF that only `tifffile` reads faithfully, without `tifffile` installed (not a bad file:
  every such file would fail alike, so the run stops at the first)."""


def is_tiff(path) -> bool:
  return os.path.splitext(os.fspath(path))[1].lower() in _TIFF_EXTENSIONS


class _Samples:
  """A decoded file held as an array: (H, W, C) uint8/uint16 and what its channels are."""

  def __init__(self, array: np.ndarray, description: str, rgb_with_extra: bool = False):
    self.array, self.description, self.rgb_with_extra = array, description, rgb_with_extra


def _pil_reads_faithfully(image: Image.Image) -> bool:
  """False for TIFFs Pillow misreads: more samples than its mode has bands (a 2-band file opens
  as 'L'), or 16-bit samples in colour (truncated to 8 bits)."""
  tags = getattr(image, 'tag_v2', None)
  if tags is None:
    return True
  samples = int(tags.get(277, 1))  # SamplesPerPixel
  bits = tags.get(258, (8,))  # BitsPerSample
  bits = tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)
  return samples == len(image.getbands()) and (samples == 1 or max(bits) <= 8)


def _read_tiff(path) -> _Samples:
  """A TIFF's first image through tifffile, as (H, W, C)."""
  try:
    import tifffile  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise MissingTiffReader(
        f'{path} is a TIFF that Pillow cannot read faithfully (several bands, or 16-bit colour): '
        f'it is read with tifffile, which is not installed: {TIFF_INSTALL_HINT}'
    ) from error
  try:
    with tifffile.TiffFile(path) as tiff:
      series = tiff.series[0]
      array, axes = series.asarray(), series.axes
      photometric = getattr(tiff.pages[0].photometric, 'name', str(tiff.pages[0].photometric))
  except Exception as e:  # pylint: disable=broad-except
    raise BadImageError(f'cannot decode TIFF {path}: {type(e).__name__}: {e}', str(path)) from e
  if array.ndim == 2:
    array = array[:, :, None]
  elif array.ndim == 3 and not axes.endswith('S'):
    array = np.moveaxis(array, 0, -1)  # Bands as planes (planar 'SYX') or as pages ('QYX').
  elif array.ndim != 3:
    raise BadImageError(
        f'{path}: a TIFF of shape {array.shape} (axes {axes}); expected one image '
        '(H×W, H×W×bands or bands×H×W)',
        str(path),
    )
  if array.dtype not in SAMPLE_DTYPES:
    raise BadImageError(
        f'{path}: {array.dtype} samples; only 8- and 16-bit unsigned integers '
        'have a known range: save it as 8- or 16-bit',
        str(path),
    )
  array = np.ascontiguousarray(array)
  return _Samples(
      array,
      f'{array.shape[2]}-band {array.dtype.itemsize * 8}-bit TIFF',
      rgb_with_extra=photometric == 'RGB' and array.shape[2] == 4,
  )


def _decode(path) -> Image.Image | _Samples:
  """Decodes a file: an upright PIL image, or `_Samples` for TIFFs that Pillow misreads."""
  try:
    with _open(path) as image:
      _refuse_cut_png(image, path)
      if is_tiff(path) and not _pil_reads_faithfully(image):
        return _read_tiff(path)
      image.load()  # decode fully now: a truncated file raises here instead of later
      return _exif_upright(image)
  except (BadImageError, MissingTiffReader):
    raise
  except Exception as e:  # pylint: disable=broad-except
    if is_tiff(path) and isinstance(e, Image.UnidentifiedImageError):
      return _read_tiff(path)  # E.g. 4 or 5 bands: Pillow has no mode for them.
    raise BadImageError(f'cannot decode image {path}: {type(e).__name__}: {e}', str(path)) from e


def _gray_palette(image: Image.Image) -> bool:
  """Whether every colour a palette image uses is gray (R = G = B)."""
  palette = np.asarray(image.getpalette() or [], np.int32).reshape(-1, 3)
  used = np.unique(np.asarray(image))
  used = used[used < len(palette)]
  return bool(np.all(palette[used] == palette[used][:, :1]))


def _mismatch(path, have: int, what: str, channels: int, wanted: str) -> BadImageError:
  hint = (
      ' (a colour image is not made gray behind your back)' if channels == 1 and have >= 3 else ''
  )
  return BadImageError(
      f'{path} has {have} channel{"s" * (have != 1)} ({what}), but {wanted or "the caller"} asks '
      f'for {channels}{hint}: convert the file, or change the channel count in the config',
      str(path),
  )


def _with_channels(decoded: Image.Image | _Samples, channels: int, path, wanted: str) -> np.ndarray:
  """`decoded` as (H, W, channels) uint8 or uint16, by the rules of the module docstring."""
  if isinstance(decoded, _Samples):
    array, have = decoded.array, decoded.array.shape[2]
    if have == channels:
      return array
    if have == 1 and channels == 3:
      return np.repeat(array, 3, axis=2)
    if decoded.rgb_with_extra and channels == 3:
      return np.ascontiguousarray(array[:, :, :3])  # RGBA -> RGB, as for Pillow's images.
    raise _mismatch(path, have, decoded.description, channels, wanted)
  image, mode = decoded, decoded.mode
  if mode in _SIXTEEN_BIT_MODES or mode == 'I':
    gray = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)[:, :, None]
    return _with_channels(_Samples(gray, f'16-bit gray, mode {mode}'), channels, path, wanted)
  if channels == 3 or mode == 'F':
    return to_rgb_uint8(image, path)  # Refuses 'F', naming the file.
  if channels == 1:
    if mode == 'L':
      return np.array(image)[:, :, None]
    if mode in ('1', 'LA', 'La') or (mode in ('P', 'PA') and _gray_palette(image)):
      return np.array(image.convert('L'))[:, :, None]
  elif len(image.getbands()) == channels and mode not in ('P', 'PA'):
    return np.array(image).reshape(image.height, image.width, channels)
  if mode in ('P', 'PA'):  # Palette indices stand for colours: 3 channels (4 with alpha).
    raise _mismatch(path, 3 + (mode == 'PA'), f'mode {mode}, a colour palette', channels, wanted)
  raise _mismatch(path, len(image.getbands()), f'mode {mode}', channels, wanted)


def load_image(path, channels: int = 3, wanted: str = '') -> np.ndarray:
  """Decodes an image file to upright (H, W, channels) at its own bit depth.

  Args:
    path: image file.
    channels: the channel count wanted (conversions: the module docstring).
    wanted: who asks, for the error about a file of another channel count (e.g.
      'config.data.output_channels=1').

  Returns:
    uint8 or uint16 (H, W, channels), C-contiguous. For 3 channels and an 8-bit file, exactly
    `load_rgb`'s array.

  Raises:
    BadImageError: naming `path` if the file is missing, corrupt, of an unusable mode or
      sample type, or has a channel count that does not convert to `channels`.
    MissingTiffReader: a TIFF needs tifffile, which is not installed.
  """
  return _with_channels(_decode(path), channels, path, wanted)


def load_side_by_side(
    path, channels: tuple[int, int], wanted: tuple[str, str] = ('', '')
) -> tuple[np.ndarray, np.ndarray]:
  """Decodes an A | B image once: (A with channels[0], B with channels[1]), like `load_image`.

  One file holds both halves, so a gray half next to a colour one is stored in colour: for a
  1-channel side, a colour file's half is taken if it is gray (R = G = B at every pixel; no
  information is dropped), and is a `BadImageError` otherwise.
  """
  decoded = _decode(path)
  if channels[0] == channels[1]:
    return split_side_by_side(_with_channels(decoded, channels[0], path, wanted[0]), path)
  halves = []
  for index, (count, who) in enumerate(zip(channels, wanted)):
    try:
      halves.append(split_side_by_side(_with_channels(decoded, count, path, who), path)[index])
    except BadImageError as error:
      if count != 1:
        raise
      colour = split_side_by_side(_with_channels(decoded, 3, path, who), path)[index]
      if not np.array_equal(colour, np.repeat(colour[:, :, :1], 3, axis=2)):
        raise BadImageError(f'{error} (its {"AB"[index]} half is not gray)', *error.paths) from None
      halves.append(np.ascontiguousarray(colour[:, :, :1]))
  return halves[0], halves[1]


def promote(image: np.ndarray, dtype) -> np.ndarray:
  """`image` as `dtype`: uint8 -> uint16 multiplies by 257 (255 -> 65535: the same values)."""
  if image.dtype == dtype:
    return image
  if image.dtype == np.uint8 and dtype == np.uint16:
    return image.astype(np.uint16) * np.uint16(257)
  raise ValueError(f'cannot convert {image.dtype} images to {np.dtype(dtype)}')


def common_dtype(dtypes) -> np.dtype:
  """uint16 if any of `dtypes` is, else uint8: what a batch or a whole side is held as."""
  return (
      np.dtype(np.uint16) if any(np.dtype(d) == np.uint16 for d in dtypes) else np.dtype(np.uint8)
  )


def stack(images_list) -> np.ndarray:
  """np.stack of 8- and 16-bit images, the 8-bit ones promoted (np.stack would keep their values)."""
  dtype = common_dtype(image.dtype for image in images_list)
  return np.stack([promote(image, dtype) for image in images_list])


def to_unit(images: np.ndarray) -> np.ndarray:
  """uint8 or uint16 -> float64 [0, 1] (host side)."""
  return images / (65535.0 if images.dtype == np.uint16 else 255.0)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
  """Bicubic resize (PIL's) of (H, W, C) uint8 or uint16 to (height, width, C).

  8-bit 3-channel images go through PIL's RGB path and 8-bit 1-channel ones through its 'L' path,
  as they always have. Other channel counts and 16-bit images are resized channel by channel in
  PIL's float mode ('F': the same bicubic filter without 8-bit intermediate rounding) and rounded
  back to their dtype, so 16-bit precision survives and no channel is read as alpha (PIL resizes
  RGBA premultiplied).
  """
  if image.shape[:2] == (height, width):
    return image
  channels = image.shape[2]
  if image.dtype == np.uint8 and channels == 3:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))
  if image.dtype == np.uint8 and channels == 1:
    return np.asarray(Image.fromarray(image[:, :, 0]).resize((width, height), Image.BICUBIC))[
        :, :, None
    ]
  top = np.iinfo(image.dtype).max
  out = np.empty((height, width, channels), image.dtype)
  for c in range(channels):
    plane = Image.fromarray(image[:, :, c].astype(np.float32), 'F').resize(
        (width, height), Image.BICUBIC
    )
    out[:, :, c] = np.clip(np.rint(np.asarray(plane)), 0, top)
  return out


def to_8_bits(image: np.ndarray) -> np.ndarray:
  """uint16 samples rounded to uint8 (65535 -> 255); uint8 as it is."""
  if image.dtype != np.uint16:
    return image
  return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def to_display(image: np.ndarray) -> np.ndarray:
  """(…, H, W, C) uint8/uint16 -> uint8 RGB for panels and previews.

  1 channel (and 2: its first) is shown gray; 3 as they are; more: the first three as RGB (for
  4-band imagery stored R, G, B, NIR that is the colour picture). 16 bits are rounded to 8.
  """
  image = to_8_bits(image)
  channels = image.shape[-1]
  if channels == 3:
    return image
  if channels < 3:
    return np.repeat(image[..., :1], 3, axis=-1)
  return np.ascontiguousarray(image[..., :3])


def image_suffix(channels: int, dtype=np.uint8) -> str:
  """The file type images of `channels` are written as: PNG for gray and 8-bit RGB, else TIFF."""
  return '.png' if channels == 1 or (channels == 3 and np.dtype(dtype) == np.uint8) else '.tif'


def save_image(image: np.ndarray, stem) -> pathlib.Path:
  """Writes (H, W, C) uint8/uint16 as `stem` + `image_suffix(C, dtype)`.

  1 channel: gray PNG (16-bit for uint16); 3 channels, uint8: RGB PNG; others (and 16-bit
  colour, which PNG via Pillow cannot hold): TIFF through tifffile (the `tiff` extra).

  Returns:
    The path written.
  """
  channels = image.shape[2]
  path = pathlib.Path(f'{stem}{image_suffix(channels, image.dtype)}')
  if channels == 1:
    Image.fromarray(image[:, :, 0]).save(path)
  elif path.suffix == '.png':
    Image.fromarray(image).save(path)
  else:
    import tifffile  # pylint: disable=g-import-not-at-top

    tifffile.imwrite(
        path, image, photometric='rgb' if channels == 3 else 'minisblack', planarconfig='contig'
    )
  return path


def check_tiff_writer(channels: int, what: str, dtype=np.uint8) -> None:
  """Raises ImportError naming `what` and the install command if such images need tifffile."""
  if image_suffix(channels, dtype) == '.tif':
    try:
      import tifffile  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    except ImportError as error:
      raise ImportError(
          f'{what} has {channels} channels: it is written as TIFF with tifffile, '
          f'which is not installed: {TIFF_INSTALL_HINT}'
      ) from error
