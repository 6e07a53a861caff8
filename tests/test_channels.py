"""Channels and bit depth: gray, colour and multi-band sides, 16-bit data kept at 16 bits.

Folder datasets of gray→colour, colour→gray and 4-band 16-bit TIFF→RGB train, evaluate and
predict (configs/test.py, tiny); files of the wrong channel count are named before anything is
written; the 8-bit RGB path is what it was (the other test files).
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import test as test_config
from pix2pix_jax import evaluation, perceptual, predict, scoring, summary, train
from pix2pix_jax import report as report_lib
from pix2pix_jax.data import device_data, images, pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZE = 40  # Files are 40×40: the pipeline resizes them to load_size 36 and image_size 32.


def gray(seed: int, size: int = SIZE) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def colour(seed: int, size: int = SIZE) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def bands16(seed: int, size: int = SIZE, count: int = 4) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 65536, (size, size, count), dtype=np.uint16)


def write(path: pathlib.Path, image: np.ndarray) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  if images.is_tiff(path):
    import tifffile  # pylint: disable=g-import-not-at-top

    tifffile.imwrite(path, image, photometric='minisblack', planarconfig='contig')
  else:
    Image.fromarray(image).save(path)
  return path


def write_pairs(root: pathlib.Path, make_a, make_b, *, ext_a='.png', ext_b='.png', count=4):
  """ROOT/{train,val}/{A,B}/i.ext: `count` train pairs, 2 val pairs."""
  for split, number in (('train', count), ('val', 2)):
    for i in range(number):
      seed = i + 100 * (split == 'val')
      write(root / split / 'A' / f'{i}{ext_a}', make_a(seed))
      write(root / split / 'B' / f'{i}{ext_b}', make_b(seed + 50))
  return root


def folder_config(root, **data):
  config = test_config.get_config()
  config.data.update(dict(name='folder', folder_dir=str(root), direction='AtoB') | data)
  config.num_train_steps = 2
  config.eval.perceptual = False
  return config


# ----------------------------------------------------------------------------------------------
# Samples and files


def test_to_float_is_exact_for_sixteen_bits_and_agrees_with_eight():
  values = np.arange(256, dtype=np.uint8)
  eight = np.asarray(images.to_float(jnp.asarray(values)))
  sixteen = np.asarray(images.to_float(jnp.asarray(values.astype(np.uint16) * 257)))
  # Promotion changes what the network sees by float32 rounding at most.
  np.testing.assert_allclose(eight, sixteen, rtol=0, atol=1.2e-7)

  def today(x):  # The uint8 path, unchanged (its rounding depends on XLA's fusion: compare like
    return x.astype(jnp.float32) / 127.5 - 1.0  # with like).

  np.testing.assert_array_equal(eight, np.asarray(today(jnp.asarray(values))))
  np.testing.assert_array_equal(
      np.asarray(jax.jit(images.to_float)(values)), np.asarray(jax.jit(today)(values))
  )
  ends = np.asarray(images.to_float(jnp.asarray([0, 65535], jnp.uint16)))
  np.testing.assert_array_equal(ends, [-1.0, 1.0])


def test_channel_conversions_of_pil_modes(tmp_path):
  g = gray(0, 4)
  write(tmp_path / 'g.png', g)
  np.testing.assert_array_equal(images.load_image(tmp_path / 'g.png', 1)[..., 0], g)
  np.testing.assert_array_equal(
      images.load_image(tmp_path / 'g.png', 3), np.repeat(g[..., None], 3, 2)
  )
  rgba = np.dstack([colour(1, 4), gray(2, 4)])
  write(tmp_path / 'rgba.png', rgba)
  np.testing.assert_array_equal(images.load_image(tmp_path / 'rgba.png', 3), rgba[..., :3])
  np.testing.assert_array_equal(images.load_image(tmp_path / 'rgba.png', 4), rgba)
  la = Image.fromarray(np.dstack([g, g[::-1]]), 'LA')
  la.save(tmp_path / 'la.png')
  np.testing.assert_array_equal(images.load_image(tmp_path / 'la.png', 1)[..., 0], g)
  palette = Image.fromarray(np.array([[0, 1]], np.uint8), 'P')
  palette.putpalette([7, 7, 7, 200, 200, 200] + [0] * 762)
  palette.save(tmp_path / 'gray_palette.png')
  np.testing.assert_array_equal(
      images.load_image(tmp_path / 'gray_palette.png', 1)[0, :, 0], [7, 200]
  )
  palette.putpalette([7, 7, 7, 200, 100, 50] + [0] * 762)
  palette.save(tmp_path / 'colour_palette.png')
  for name in ('rgba.png', 'colour_palette.png'):
    with pytest.raises(
        images.BadImageError,
        match=(
            f'{name} has .* but config.data.output_channels=1 '
            'asks for 1 \\(a colour image is not made gray'
        ),
    ):
      images.load_image(tmp_path / name, 1, 'config.data.output_channels=1')
  with pytest.raises(images.BadImageError, match='g.png has 1 channel .*asks for 4'):
    images.load_image(tmp_path / 'g.png', 4)


def test_sixteen_bit_gray_png_keeps_its_precision(tmp_path):
  values = np.array([[0, 1, 256, 32769, 65535]], np.uint16)
  write(tmp_path / 'deep.png', values)
  one = images.load_image(tmp_path / 'deep.png', 1)
  assert one.dtype == np.uint16 and one.shape == (1, 5, 1)
  np.testing.assert_array_equal(one[..., 0], values)
  np.testing.assert_array_equal(images.load_image(tmp_path / 'deep.png', 3)[..., 2], values)
  # The TFDS builder's 8-bit RGB rule is unchanged.
  np.testing.assert_array_equal(
      images.load_rgb(tmp_path / 'deep.png')[0, :, 0], [0, 0, 1, 128, 255]
  )


def test_multi_band_and_sixteen_bit_colour_tiffs_read_exactly(tmp_path):
  tifffile = pytest.importorskip('tifffile')
  four = bands16(0, 6)
  write(tmp_path / 'four.tif', four)
  np.testing.assert_array_equal(images.load_image(tmp_path / 'four.tif', 4), four)
  tifffile.imwrite(
      tmp_path / 'planar.tif',
      np.moveaxis(four, -1, 0),
      photometric='minisblack',
      planarconfig='separate',
  )
  np.testing.assert_array_equal(images.load_image(tmp_path / 'planar.tif', 4), four)
  tifffile.imwrite(tmp_path / 'rgb16.tif', four[..., :3], photometric='rgb')  # Pillow: 8 bits.
  np.testing.assert_array_equal(images.load_image(tmp_path / 'rgb16.tif', 3), four[..., :3])
  two = colour(1, 6)[..., :2]
  write(tmp_path / 'two.tif', two)  # Pillow opens it as 'L', dropping a band.
  np.testing.assert_array_equal(images.load_image(tmp_path / 'two.tif', 2), two)
  rgb8 = colour(2, 6)
  tifffile.imwrite(tmp_path / 'rgb8.tif', rgb8, photometric='rgb')  # Pillow's, as before.
  np.testing.assert_array_equal(
      images.load_image(tmp_path / 'rgb8.tif', 3), images.load_rgb(tmp_path / 'rgb8.tif')
  )
  with pytest.raises(images.BadImageError, match='four.tif has 4 channels .*asks for 3'):
    images.load_image(tmp_path / 'four.tif', 3)
  write(tmp_path / 'float.tif', four.astype(np.float32))
  with pytest.raises(images.BadImageError, match='float.tif: float32 samples'):
    images.load_image(tmp_path / 'float.tif', 4)


def test_tiff_without_tifffile_names_the_file_and_the_install(tmp_path, monkeypatch):
  pytest.importorskip('tifffile')
  write(tmp_path / 'four.tif', bands16(0, 6))
  write(tmp_path / 'gray.tif', gray(0, 6))
  monkeypatch.setitem(sys.modules, 'tifffile', None)  # `import tifffile` raises ImportError.
  with pytest.raises(
      images.MissingTiffReader, match=f"{tmp_path}/four.tif .* pip install -e '.\\[tiff\\]'"
  ):
    images.load_image(tmp_path / 'four.tif', 4)
  assert images.load_image(tmp_path / 'gray.tif', 1).shape == (6, 6, 1)


def test_resize_keeps_sixteen_bits_and_any_channel_count():
  rgb = colour(0)
  np.testing.assert_array_equal(  # The 8-bit RGB path is PIL's, as before.
      pipeline.resize(rgb, 32), np.asarray(Image.fromarray(rgb).resize((32, 32), Image.BICUBIC))
  )
  g = gray(1)
  np.testing.assert_array_equal(
      pipeline.resize(g[..., None], 32)[..., 0],
      np.asarray(Image.fromarray(g).resize((32, 32), Image.BICUBIC)),
  )
  deep = bands16(2)
  out = pipeline.resize(deep, 32)
  assert out.shape == (32, 32, 4) and out.dtype == np.uint16
  # Bands are resized alone (not as premultiplied RGBA); a 16-bit image is not cut to 8 bits.
  np.testing.assert_array_equal(out[..., 3:], pipeline.resize(deep[..., 3:], 32))
  assert len(np.unique(out % 257)) > 200
  flat = np.full((SIZE, SIZE, 1), 1000, np.uint16)
  np.testing.assert_array_equal(pipeline.resize(flat, 32), 1000)


def test_side_by_side_gray_half_of_a_colour_file(tmp_path):
  a, b = gray(0, 8), colour(1, 8)
  write(tmp_path / 'ok.png', np.concatenate([np.repeat(a[..., None], 3, 2), b], axis=1))
  got_a, got_b = images.load_side_by_side(tmp_path / 'ok.png', (1, 3))
  np.testing.assert_array_equal(got_a[..., 0], a)
  np.testing.assert_array_equal(got_b, b)
  write(tmp_path / 'bad.png', np.concatenate([colour(2, 8), b], axis=1))
  with pytest.raises(images.BadImageError, match='bad.png has 3 channels.*its A half is not gray'):
    images.load_side_by_side(tmp_path / 'bad.png', (1, 3))


def test_outputs_written_as_png_or_tiff(tmp_path, monkeypatch):
  assert Image.open(images.save_image(gray(0, 4)[..., None], tmp_path / 'g')).mode == 'L'
  assert Image.open(images.save_image(colour(0, 4), tmp_path / 'c.v2')).mode == 'RGB'
  assert (tmp_path / 'c.v2.png').exists()
  tifffile = pytest.importorskip('tifffile')
  four = bands16(0, 4)
  path = images.save_image(four, tmp_path / 'four')
  assert path.name == 'four.tif'
  np.testing.assert_array_equal(tifffile.imread(path), four)
  np.testing.assert_array_equal(images.load_image(path, 4), four)
  monkeypatch.setitem(sys.modules, 'tifffile', None)  # Predict says so before it writes anything.
  images.check_tiff_writer(3, 'the output')
  with pytest.raises(ImportError, match=r"the output has 4 channels: .*pip install -e '.\[tiff\]'"):
    images.check_tiff_writer(4, 'the output')


def test_panels_show_any_channels_as_rgb():
  panel = summary.image_panel(
      np.full((1, 4, 4, 4), 65535, np.uint16),
      np.zeros((1, 4, 4, 1), np.uint8),
      np.full((1, 4, 4, 3), 7, np.uint8),
  )
  assert panel.shape == (4, 12, 3) and panel.dtype == np.uint8
  np.testing.assert_array_equal(panel[0, [0, 4, 8], 0], [255, 0, 7])


# ----------------------------------------------------------------------------------------------
# Pipeline


def test_sixteen_bit_inputs_keep_their_precision_into_the_network(tmp_path):
  # 1000 and 1100 are both 4 in 8 bits (round(v / 257)); the network must see them apart.
  for split in ('train', 'val'):
    for i, value in enumerate((1000, 1100)):
      write(tmp_path / split / 'A' / f'{i}.png', np.full((SIZE, SIZE), value, np.uint16))
      write(tmp_path / split / 'B' / f'{i}.png', colour(i))
  config = folder_config(tmp_path, input_channels=1)
  source = pipeline.create_source(config.data, 'eval', seed=0)
  assert source.dtypes == {'A': np.uint16, 'B': np.uint8}
  (batch,) = pipeline.eval_batches(source, config.data, batch_size=2)
  assert batch['input'].dtype == np.uint16 and batch['input'].shape == (2, 32, 32, 1)
  inputs = np.asarray(images.to_float(jnp.asarray(batch['input'])))
  np.testing.assert_allclose(inputs[:, 0, 0, 0], np.array([1000, 1100]) / 32767.5 - 1, rtol=1e-6)
  assert inputs[1].min() - inputs[0].max() > 0.003  # 100 / 32767.5; 8 bits: 0.
  train_source = pipeline.create_source(config.data, 'train', seed=0)
  dataset = pipeline.train_dataset(train_source, config.data, batch_size=2, seed=0)
  pipeline.check_batch(dataset[0], config)
  assert sorted(np.unique(dataset[0]['input']).tolist()) == [1000, 1100]


@pytest.mark.parametrize('size', [SIZE, 36])  # 36: load_size, kept as the check decoded it.
def test_a_side_with_one_sixteen_bit_file_is_held_at_sixteen_bits(tmp_path, size):
  for split in ('train', 'val'):
    write(tmp_path / split / 'A' / '0.png', np.full((size, size), 3, np.uint8))
    write(tmp_path / split / 'A' / '1.png', np.full((size, size), 1000, np.uint16))
    for i in range(2):
      write(tmp_path / split / 'B' / f'{i}.png', colour(i, size))
  config = folder_config(tmp_path, input_channels=1)
  source = pipeline.create_source(config.data, 'train', seed=0)
  for _ in range(2):  # Read, then from the cache.
    first = source[0]['A']
    assert first.dtype == np.uint16 and np.all(first == 3 * 257)
    assert source[0]['B'].dtype == np.uint8


def test_device_data_with_sides_of_different_channels_and_depths():
  a = np.arange(2 * 32 * 32, dtype=np.uint16).reshape(2, 32, 32, 1) * 30
  b = colour(0, 32)[None].repeat(2, axis=0)
  source = [{'A': a[i], 'B': b[i]} for i in range(2)]
  config = folder_config('/nowhere', input_channels=1).data
  loaded = device_data.load_images(source, config)
  assert loaded.dtype == np.uint16 and loaded.shape == (2, 32, 32, 4)
  batch = jax.jit(
      lambda x: device_data.batch_for_step(
          x, 1, seed=0, batch_size=2, image_size=32, flip=False, direction='AtoB', channels=(1, 3)
      )
  )(loaded)
  assert batch['input'].shape == (2, 32, 32, 1) and batch['target'].shape == (2, 32, 32, 3)
  np.testing.assert_array_equal(
      np.sort(np.asarray(batch['input']).reshape(2, -1).sum(1)), np.sort(a.reshape(2, -1).sum(1))
  )
  np.testing.assert_array_equal(np.asarray(batch['target'][0]), b[0].astype(np.uint16) * 257)


def test_wrong_channel_count_is_named_before_anything_is_written(tmp_path):
  root = write_pairs(tmp_path / 'data', lambda s: colour(s), lambda s: gray(s))
  write(root / 'train' / 'B' / '2.png', colour(7))  # A colour target for a 1-channel side.
  config = folder_config(root, output_channels=1)
  workdir = tmp_path / 'run'
  with pytest.raises(images.BadImageError) as error:
    train.train_and_evaluate(config, str(workdir))
  message = str(error.value)
  assert '1 of 4 pairs' in message and f'{root}/train/B/2.png has 3 channels' in message
  assert 'config.data.output_channels=1 (side B: the target' in message
  assert not workdir.exists()
  config.data.on_bad_file = 'skip'
  assert len(pipeline.create_source(config.data, 'train', seed=0)) == 3


def test_perceptual_metrics_skipped_for_other_channel_counts(tmp_path):
  config = folder_config(tmp_path, output_channels=4)
  config.eval.perceptual = True
  scores = evaluation.ImageScores(config)
  target = bands16(0, 32)[None]
  scores.add(['x'], np.full((1, 32, 32, 4), 128, np.uint8), target)
  report = scores.finish(str(tmp_path), {'step': None}, 'Scores')
  assert set(report['metrics']) == {'l1', 'psnr', 'ssim', 'hp_l1'}
  assert 'outputs have 4 channels' in report['perceptual_skipped']
  written = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
  assert written['perceptual_skipped'] == report['perceptual_skipped']
  page = pathlib.Path(report_lib.write_report(str(tmp_path))).read_text()
  assert 'FID, KID and LPIPS skipped: the outputs have 4 channels' in page
  expected = np.abs(128 / 255 - target / 65535).mean()
  assert report['metrics']['l1']['mean'] == pytest.approx(expected, rel=1e-5)


def test_pixel_metrics_of_equal_eight_and_sixteen_bit_images_are_exact():
  values = colour(0, 16)[None]
  out = evaluation.pixel_metrics(jnp.asarray(values), jnp.asarray(values.astype(np.uint16) * 257))
  assert float(out['l1'][0]) == 0 and float(out['psnr'][0]) == np.inf
  assert float(out['ssim'][0]) == 1


# ----------------------------------------------------------------------------------------------
# Train, evaluate, predict


def run_main(workdir, *overrides):
  command = [
      sys.executable,
      'main.py',
      '--config=configs/test.py',
      f'--workdir={workdir}',
      *overrides,
  ]
  return subprocess.run(
      command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ)
  )


def test_gray_to_colour_from_the_command_line(tmp_path):
  root = write_pairs(tmp_path / 'data', gray, colour)
  data = [
      f'--config.data.{key}={value}'
      for key, value in (
          ('name', 'folder'),
          ('folder_dir', root),
          ('direction', 'AtoB'),
          ('input_channels', 1),
      )
  ]
  workdir = tmp_path / 'run'
  for mode in ('train', 'evaluate'):
    result = run_main(
        workdir,
        f'--mode={mode}',
        '--config.num_train_steps=2',
        '--config.eval.perceptual=false',
        *data,
    )
    assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((workdir / 'eval' / 'metrics.json').read_text())
  assert report['num_images'] == 2 and report['metrics']['l1']['mean'] > 0
  result = run_main(
      workdir, '--mode=predict', f'--input={root}/val/A', f'--output={tmp_path}/out', *data
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with Image.open(tmp_path / 'out' / '0.png') as out:
    assert out.mode == 'RGB' and out.size == (SIZE, SIZE)


def test_colour_to_gray_trains_evaluates_scores_and_predicts(tmp_path):
  root = write_pairs(tmp_path / 'data', colour, gray)
  config = folder_config(root, output_channels=1)
  workdir = tmp_path / 'run'
  train.train_and_evaluate(config, str(workdir))
  config.eval.perceptual = perceptual.available()[0]  # 1 channel: replicated to 3 for them.
  report = evaluation.evaluate(config, str(workdir))
  assert report['num_images'] == 2 and 'perceptual_skipped' not in report
  if config.eval.perceptual:
    assert {'fid', 'kid', 'lpips'} <= set(report['metrics'])
  written = predict.predict(config, str(workdir), f'{root}/val/A', str(tmp_path / 'out'))
  assert [p.name for p in written] == ['0.png', '1.png']
  with Image.open(written[0]) as out:
    assert out.mode == 'L' and out.size == (SIZE, SIZE)
  native = predict.predict(
      config,
      str(workdir),
      f'{root}/val/A/0.png',
      str(tmp_path / 'native'),
      resolution='native',
      side_by_side=True,
  )
  with Image.open(native[0]) as out:
    assert out.mode == 'RGB' and out.size == (2 * SIZE, SIZE)  # [input | output] shown in RGB.
  config.eval.perceptual = False
  scored = scoring.score(config, str(tmp_path / 'scored'), str(tmp_path / 'out'), f'{root}/val/B')
  assert scored['num_images'] == 2 and scored['metrics']['l1']['mean'] > 0


def test_four_band_sixteen_bit_tiff_to_colour_trains_and_predicts(tmp_path, caplog):
  pytest.importorskip('tifffile')
  root = write_pairs(tmp_path / 'data', bands16, colour, ext_a='.tif')
  config = folder_config(root, input_channels=4)
  workdir = tmp_path / 'run'
  state = train.train_and_evaluate(config, str(workdir))
  assert state.generator.params is not None
  assert (workdir / 'images' / 'step_00000002.png').exists()  # The panel shows bands 1-3.
  for resolution, max_pixels in (('model', None), ('native', None), ('native', 1024)):
    kwargs = {'max_pixels': max_pixels} if max_pixels else {}  # 1024: blended tiles (4 -> 3).
    (out,) = predict.predict(
        config,
        str(workdir),
        f'{root}/val/A/1.tif',
        str(tmp_path / f'{resolution}{max_pixels}'),
        resolution=resolution,
        **kwargs,
    )
    with Image.open(out) as image:
      assert out.suffix == '.png' and image.mode == 'RGB' and image.size == (SIZE, SIZE)
  # An input of another channel count is named and skipped.
  write(tmp_path / 'mixed' / 'rgb.png', colour(0))
  write(tmp_path / 'mixed' / 'four.tif', bands16(0))
  written = predict.predict(config, str(workdir), str(tmp_path / 'mixed'), str(tmp_path / 'out'))
  assert [p.name for p in written] == ['four.png']
  assert 'rgb.png has 3 channels (mode RGB), but config.data.input_channels=4' in caplog.text
