"""--mode=predict and --mode=export on a short training of configs/test.py."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

from configs import test as test_config
from pix2pix_jax import export, inference
from pix2pix_jax.data import images as image_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def write_image(path, size, value=0):
  rng = np.random.default_rng(value)
  Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).save(path)


def test_predict_any_size_and_skips_bad_files(trained_workdir, tmp_path):
  inputs = tmp_path / 'in'
  inputs.mkdir()
  write_image(inputs / 'a.png', (32, 32))
  write_image(inputs / 'b.jpg', (50, 20))
  (inputs / 'notes.txt').write_text('not an image')
  (inputs / 'broken.png').write_bytes(b'\x89PNG garbage')
  written = inference.predict(test_config.get_config(), str(trained_workdir), str(inputs),
                              str(tmp_path / 'out'))
  assert sorted(p.name for p in written) == ['a.png', 'b.png']
  assert Image.open(tmp_path / 'out' / 'b.png').size == (50, 20)  # Back to the input's size.


def test_predict_pairs_side_by_side(trained_workdir, tmp_path):
  pair = np.zeros((32, 64, 3), np.uint8)
  pair[:, 32:] = 255  # B (right half) is white; A (left) black.
  Image.fromarray(pair).save(tmp_path / 'pair.png')
  config = test_config.get_config()
  config.eval.train_mode = False
  (written,) = inference.predict(config, str(trained_workdir), str(tmp_path / 'pair.png'),
                                 str(tmp_path / 'out'), pairs=True, side_by_side=True)
  out = np.asarray(Image.open(written))
  assert out.shape == (32, 64, 3)
  np.testing.assert_array_equal(out[:, :32], 255)  # BtoA: the input is B, shown on the left.


def test_predict_restores_only_the_generator(trained_workdir, tmp_path):
  """A config whose discriminator differs from the checkpoint's still predicts."""
  write_image(tmp_path / 'a.png', (32, 32))
  config = test_config.get_config()
  config.model.patch_size, config.model.ndf, config.loss.gan_mode = 1, 4, 'lsgan'
  generator, network, step = inference.restore_trained_generator(config, str(trained_workdir))
  assert set(network) == {'params', 'batch_stats'} and step == 2
  assert 'down0' in network['params']
  assert inference.predict(config, str(trained_workdir), str(tmp_path / 'a.png'), str(tmp_path / 'o'))


def test_predict_errors_name_the_culprit(trained_workdir, tmp_path):
  config = test_config.get_config()
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='no image files in --input .*empty'):
    inference.predict(config, str(trained_workdir), str(tmp_path / 'empty'), str(tmp_path / 'o'))
  with pytest.raises(FileNotFoundError, match='--input .*missing does not exist'):
    inference.predict(config, str(trained_workdir), str(tmp_path / 'missing'), str(tmp_path / 'o'))
  write_image(tmp_path / 'a.png', (32, 32))
  with pytest.raises(FileNotFoundError, match='no checkpoints in'):
    inference.predict(config, str(tmp_path), str(tmp_path / 'a.png'), str(tmp_path / 'o'))


@pytest.mark.parametrize('train_mode', [False, True])
def test_export_reloads_in_a_fresh_process(trained_workdir, tmp_path, train_mode):
  config = test_config.get_config()
  config.eval.train_mode = train_mode
  out = export.export_generator(config, str(trained_workdir), str(tmp_path / 'export'))
  images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), np.uint8)
  np.save(tmp_path / 'images.npy', images)
  generator, network, _ = inference.restore_trained_generator(config, str(trained_workdir))
  key = np.array([7, 0], np.uint32)  # What load_generator(seed=7) uses for its first call.
  expected = np.asarray(jax.jit(lambda x: image_lib.to_uint8(
      inference.generate(generator, network, x, key, train_mode)))(images))
  code = ('import sys, numpy as np\n'
          'from pix2pix_jax.serving import load_generator\n'
          f'translate = load_generator({str(out)!r}, seed=7)\n'
          f'np.save({str(tmp_path / "served.npy")!r}, translate(np.load({str(tmp_path / "images.npy")!r})))\n'
          'assert "flax" not in sys.modules and "pix2pix_jax.models" not in sys.modules\n')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=os.environ)
  assert result.returncode == 0, result.stderr[-3000:]
  served = np.load(tmp_path / 'served.npy')
  assert served.shape == (3, 32, 32, 3) and served.dtype == np.uint8
  assert np.abs(served.astype(int) - expected).max() <= 1
