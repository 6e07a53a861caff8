"""--mode=predict (at the model size and at native resolution, tiled) and --mode=export."""

import logging
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

from configs import test as test_config
from pix2pix_jax import inference, predict
from pix2pix_jax.data import images as image_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def write_image(path, size, value=0):
  rng = np.random.default_rng(value)
  Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).save(path)


def test_predict_any_size_and_skips_bad_files(trained_workdir, tmp_path, caplog):
  caplog.set_level(logging.INFO)
  inputs = tmp_path / 'in'
  inputs.mkdir()
  write_image(inputs / 'a.png', (32, 32))
  write_image(inputs / 'b.jpg', (50, 20))
  (inputs / 'notes.txt').write_text('not an image')
  (inputs / 'broken.png').write_bytes(b'\x89PNG garbage')
  written = predict.predict(
      test_config.get_config(), str(trained_workdir), str(inputs), str(tmp_path / 'out')
  )
  assert sorted(p.name for p in written) == ['a.png', 'b.png']
  assert Image.open(tmp_path / 'out' / 'b.png').size == (50, 20)  # Back to the input's size.
  # The summary counts what was skipped, not only what was written.
  assert 'Wrote 2 of 3 image(s)' in caplog.text
  assert 'skipped 1 that could not be read: broken.png' in caplog.text
  # Nothing readable at all is an error, not a silent success.
  (inputs / 'a.png').unlink()
  (inputs / 'b.jpg').unlink()
  with pytest.raises(
      ValueError, match=r'none of the 1 input file\(s\) of --input .* could be read'
  ):
    predict.predict(
        test_config.get_config(), str(trained_workdir), str(inputs), str(tmp_path / 'out2')
    )


def test_predict_pairs_side_by_side(trained_workdir, tmp_path):
  pair = np.zeros((32, 64, 3), np.uint8)
  pair[:, 32:] = 255  # B (right half) is white; A (left) black.
  Image.fromarray(pair).save(tmp_path / 'pair.png')
  config = test_config.get_config()
  config.eval.train_mode = False
  (written,) = predict.predict(
      config,
      str(trained_workdir),
      str(tmp_path / 'pair.png'),
      str(tmp_path / 'out'),
      pairs=True,
      side_by_side=True,
  )
  out = np.asarray(Image.open(written))
  assert out.shape == (32, 64, 3)
  np.testing.assert_array_equal(out[:, :32], 255)  # BtoA: the input is B, shown on the left.


def test_predict_restores_only_the_generator(trained_workdir, tmp_path):
  """A config whose discriminator differs from the checkpoint's still predicts."""
  write_image(tmp_path / 'a.png', (32, 32))
  config = test_config.get_config()
  config.model.patch_size, config.model.ndf, config.loss.gan_mode = 1, 4, 'lsgan'
  generator, network, step, _ = inference.restore_trained_generator(config, str(trained_workdir))
  assert set(network) == {'params', 'batch_stats'} and step == 2
  assert 'down0' in network['params']
  assert predict.predict(config, str(trained_workdir), str(tmp_path / 'a.png'), str(tmp_path / 'o'))


def test_predict_errors_name_the_culprit(trained_workdir, tmp_path):
  config = test_config.get_config()
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='no image files in --input .*empty'):
    predict.predict(config, str(trained_workdir), str(tmp_path / 'empty'), str(tmp_path / 'o'))
  with pytest.raises(FileNotFoundError, match='--input .*missing does not exist'):
    predict.predict(config, str(trained_workdir), str(tmp_path / 'missing'), str(tmp_path / 'o'))
  write_image(tmp_path / 'a.png', (32, 32))
  with pytest.raises(FileNotFoundError, match='no checkpoints in'):
    predict.predict(config, str(tmp_path), str(tmp_path / 'a.png'), str(tmp_path / 'o'))


# --resolution=native. configs/test.py's U-Net has 5 levels: sides must be multiples of 32.
MULTIPLE = 32


def identity(images, rng):
  del rng
  return image_lib.to_float(images)


def gradient_image(height, width):
  """A smooth image: three linear ramps, uint8 (height, width, 3)."""
  y, x = np.mgrid[0:height, 0:width]
  ramps = [255 * x / (width - 1), 255 * y / (height - 1), 255 * (x + y) / (height + width - 2)]
  return np.stack(ramps, -1).round().astype(np.uint8)


@pytest.mark.parametrize(
    'max_pixels, shapes',
    [
        (predict.NATIVE_MAX_PIXELS, [(320, 512)]),  # One piece: 300×500 reflect-padded.
        (128 * 128, [(128, 128)] * 15),  # Tiles: rows start at 0, 96, 192; columns 0, 96, ..., 384.
    ],
)
def test_native_pads_tiles_and_crops_back_exactly(max_pixels, shapes):
  """Padding, tiling, blending and cropping compose to the identity for an identity generator."""
  image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), np.uint8)
  seen = []

  def recording_identity(images, rng):
    seen.append(images.shape[1:3])
    return identity(images, rng)

  out = predict.translate_native(
      recording_identity, image, jax.random.PRNGKey(0), MULTIPLE, max_pixels
  )
  assert seen == shapes
  np.testing.assert_array_equal(out, image)
  padded, (top, left) = predict.pad_to_multiple(image, MULTIPLE)
  assert padded.shape == (320, 512, 3) and (top, left) == (10, 6)
  np.testing.assert_array_equal(padded[top : top + 300, left : left + 500], image)
  # Reflected (not zeros, not the edge repeated): the row above the image is its second row.
  np.testing.assert_array_equal(padded[top - 1, left : left + 500], image[1])
  np.testing.assert_array_equal(padded[top : top + 300, left + 500], image[:, 498])


def test_tile_weights_cross_fade_tiles_that_disagree():
  """No seam: tiles normalised by their own mean (as BatchNorm with each tile's statistics is in
  the paper's test mode) disagree by tens of levels, yet the blend of a smooth image has no step
  between neighbouring pixels larger than the image's own; averaging the tiles leaves seams."""
  image = gradient_image(192, 320)

  def per_tile_mean_removed(images, rng):
    return identity(images, rng) - identity(images, rng).mean()

  def largest_step(out):
    return max(np.abs(np.diff(out, axis=axis)).max() for axis in (0, 1))

  def tiled(ramp):
    return predict.translate_tiled(
        per_tile_mean_removed, image, jax.random.PRNGKey(0), (128, 128), ramp, MULTIPLE
    )

  own_step = largest_step(identity(image, None))  # 2 levels: the diagonal ramp, rounded.
  assert largest_step(tiled(ramp=1e-9)) > 5 * own_step  # Weights all 1: seams at tile edges.
  assert largest_step(tiled(ramp=round(128 * predict.TILE_OVERLAP_FRACTION))) < 1.2 * own_step


def test_native_tiles_equal_the_untiled_result_away_from_tile_edges(trained_workdir):
  """Deterministic mode: a 5-level U-Net's output pixel depends on inputs at most 2**6 - 1 = 63
  pixels away, so where every tile covering a pixel has it >= 64 pixels from the tile's inner
  edges, the blend of the tiles is the untiled output."""
  config = test_config.get_config()
  generator, network, _, _ = inference.restore_trained_generator(config, str(trained_workdir))
  translate = jax.jit(lambda x, rng: inference.generate(generator, network, x, rng, False))
  image = np.random.default_rng(0).integers(0, 256, (384, 384, 3), np.uint8)
  rng = jax.random.PRNGKey(0)
  untiled = np.asarray(translate(image[None], rng))[0]
  assert predict.tile_starts(384, 256, 64, MULTIPLE) == [0, 128]  # Inner edges at 128, 256.
  tiled = predict.translate_tiled(translate, image, rng, (256, 256), 64, MULTIPLE)
  difference = np.abs(tiled - untiled).max(-1)
  far = np.r_[0:64, 320:384]
  assert difference[np.ix_(far, far)].max() < 1e-6  # Float rounding only.
  assert difference.max() > 1e-5  # Near the inner edges, the tiles see less context.


def test_main_predicts_at_native_resolution(trained_workdir, tmp_path):
  write_image(tmp_path / 'wide.png', (500, 300))
  result = subprocess.run(
      [
          sys.executable,
          'main.py',
          '--config=configs/test.py',
          f'--workdir={trained_workdir}',
          '--mode=predict',
          '--resolution=native',
          f'--input={tmp_path / "wide.png"}',
          f'--output={tmp_path / "out"}',
      ],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
      env=os.environ,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'resolution: native' in result.stderr
  assert Image.open(tmp_path / 'out' / 'wide.png').size == (500, 300)
