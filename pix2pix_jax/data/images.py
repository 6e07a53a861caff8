"""Image conventions shared by the data sources, training, evaluation and inference.

Files: which names are images, their natural order ('2.jpg' before '10.jpg'), decoding any common
mode to upright 8-bit RGB, and the one rule that splits a side-by-side A|B image (the TFDS builder
and folder datasets alike). Arrays: uint8 [0, 255] <-> float [-1, 1], the networks' range.
"""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from PIL import ExifTags, Image, ImageOps

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.ppm')
_SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N')
_DIGITS = re.compile(r'([0-9]+)')


def to_float(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1] (on the device)."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images: jax.Array) -> jax.Array:
  """float [-1, 1] -> uint8 [0, 255], rounded."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def is_image_name(name: str) -> bool:
  """Whether a file name has an image extension (case-insensitive); hidden files are not images."""
  return not os.path.basename(name).startswith('.') and (
      os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)


def natural_key(name: str) -> tuple:
  """Sort key with digit runs compared as numbers: '2.jpg' < '10.jpg'."""
  # re.split with a group alternates text and digits, so positions always compare like with like.
  parts = _DIGITS.split(name)
  return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


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
    raise BadImageError(f'{path}: 32-bit float images (mode F) are not supported, because their '
                        'value range is unknown; save it as 8- or 16-bit', str(path))
  try:
    return np.array(image.convert('RGB'))
  except ValueError as e:
    raise BadImageError(f'{path}: cannot convert image mode {mode} to RGB: {e}', str(path)) from e


def _exif_upright(image: Image.Image) -> Image.Image:
  """Applies the EXIF orientation tag, if there is one other than 1 (upright)."""
  try:
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
  except Exception:  # pylint: disable=broad-except
    # Broken metadata in an otherwise fine image: the pixels are still usable, as viewers show.
    return image
  return ImageOps.exif_transpose(image) if orientation in range(2, 9) else image


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
    with Image.open(path) as image:
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
        f'{path} is {describe_size(image)}: a side-by-side A|B image needs an even width, so that A (left '
        'half) and B (right half) are the same size', path)
  half = width // 2
  return np.ascontiguousarray(image[:, :half]), np.ascontiguousarray(image[:, half:])


