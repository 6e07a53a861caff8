"""TensorBoard event files without TensorFlow (tensorboardX).

`clu.metric_writers` imports TensorFlow, which is not a dependency; this is the same small
interface (scalars, images, text) on tensorboardX. Only process 0 writes.

Images go to their own event file in `LOGDIR/panels/` (TensorBoard shows it as a second run,
'panels'), scalars and text to `LOGDIR/`. A panel is a few hundred kB and every record is
CRC-checked when read, by tensorboard's pure-Python reader without TensorFlow: kept apart, the
report reads a long run's curves in a fraction of a second instead of several seconds.
"""

import pathlib

import jax
import numpy as np
from PIL import Image

from pix2pix_jax.data import images as image_lib

# The subfolder of a SummaryWriter's logdir that holds its images' event file (a TensorBoard run).
PANELS_DIR = 'panels'


class SummaryWriter:
  """Scalars and text to `logdir`, images to `logdir/PANELS_DIR`; only process 0 writes."""

  def __init__(self, logdir: pathlib.Path):
    self._logdir = pathlib.Path(logdir)
    self._writer = None
    self._image_writer = None  # Opened by the first image: a scalars-only writer makes no folder.
    if jax.process_index() == 0:
      import tensorboardX  # Imported lazily: only the writing process needs it.

      self._writer = tensorboardX.SummaryWriter(str(logdir), flush_secs=30)

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    if self._writer:
      for name, value in scalars.items():
        self._writer.add_scalar(name, float(value), step)

  def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
    """Images are uint8 (H, W, C)."""
    if self._writer:
      if self._image_writer is None:
        import tensorboardX

        self._image_writer = tensorboardX.SummaryWriter(
            str(self._logdir / PANELS_DIR), flush_secs=30
        )
      for name, image in images.items():
        self._image_writer.add_image(name, image, step, dataformats='HWC')

  def write_text(self, step: int, texts: dict[str, str]) -> None:
    if self._writer:
      for name, text in texts.items():
        self._writer.add_text(name, text, step)

  def flush(self) -> None:
    for writer in (self._writer, self._image_writer):
      if writer:
        writer.flush()

  def close(self) -> None:
    for writer in (self._writer, self._image_writer):
      if writer:
        writer.close()


def image_panel(
    inputs: np.ndarray | None, generated: np.ndarray, targets: np.ndarray
) -> np.ndarray:
  """Rows of [input | generated | target] for a batch of (N, H, W, C) images, as uint8 RGB.

  Without inputs (images scored against plain targets, --mode=score) rows are [generated | target].
  Each column may have its own channel count and bit depth (`images.to_display`: 1 channel gray,
  more than 3 their first three, 16 bits rounded to 8).
  """
  columns = (generated, targets) if inputs is None else (inputs, generated, targets)
  columns = [image_lib.to_display(np.asarray(column)) for column in columns]
  rows = [np.concatenate(row, axis=1) for row in zip(*columns)]
  return np.concatenate(rows, axis=0)


def save_png(image: np.ndarray, path: pathlib.Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image).save(path)
