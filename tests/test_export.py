"""--mode=export: the StableHLO export and the ONNX one, each run in a fresh process without the
training code (`serving.load_generator`; onnxruntime alone)."""

import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import test as test_config
from pix2pix_jax import export, inference
from pix2pix_jax.data import images as image_lib

# Skipped without the `onnx` extra, except on CI, which installs it: there a missing extra fails.
requires_onnx = pytest.mark.skipif(
    os.environ.get('CI') != 'true'
    and not all(importlib.util.find_spec(name) for name in ('jax2onnx', 'onnx', 'onnxruntime')),
    reason="needs the `onnx` extra: pip install -e '.[onnx]'",
)

# Runs generator.onnx `calls` times on images.npy and saves the stacked outputs; numpy and
# onnxruntime only, at onnxruntime's default (full) graph optimisation.
RUN_ONNX = """
import sys
import numpy as np
import onnxruntime
model, inputs, outputs, calls = sys.argv[1:]
session = onnxruntime.InferenceSession(model, providers=['CPUExecutionProvider'])
images = np.load(inputs)
np.save(outputs, np.stack([session.run(None, {'images': images})[0] for _ in range(int(calls))]))
assert not {'jax', 'flax', 'pix2pix_jax'} & {name.split('.')[0] for name in sys.modules}
"""
# Neither 2 (the training batch) nor anything export saw: the batch is symbolic there.
BATCH = 5


def onnx_config(train_mode):
  config = test_config.get_config()
  config.export.format = 'onnx'
  config.eval.train_mode = train_mode
  return config


def make_images():
  """uint8 (BATCH, 32, 32, 3); the first two are the same image."""
  images = np.random.default_rng(0).integers(0, 256, (BATCH, 32, 32, 3), np.uint8)
  images[1] = images[0]
  return images


def run_onnx(model_path, images, tmp_path, calls=1):
  np.save(tmp_path / 'images.npy', images)
  result = subprocess.run(
      [
          sys.executable,
          '-c',
          RUN_ONNX,
          str(model_path),
          str(tmp_path / 'images.npy'),
          str(tmp_path / 'outputs.npy'),
          str(calls),
      ],
      capture_output=True,
      text=True,
      timeout=300,
      cwd=tmp_path,
      env=os.environ,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  outputs = np.load(tmp_path / 'outputs.npy')
  assert outputs.shape == (calls,) + images.shape and outputs.dtype == np.uint8
  return outputs


def jax_outputs(config, workdir, images, seeds):
  """`inference.generate` as predict runs it (the backend's conv forms), uint8, one per seed."""
  generator, network, _, _ = inference.restore_trained_generator(config, str(workdir))
  translate = jax.jit(
      lambda x, key: image_lib.to_uint8(
          inference.generate(generator, network, x, key, config.eval.train_mode)
      )
  )
  return np.stack([np.asarray(translate(images, jax.random.PRNGKey(seed))) for seed in seeds])


def mean_change(samples):
  """Mean absolute difference, in levels, between consecutive samples of the same inputs."""
  return np.abs(np.diff(samples.astype(int), axis=0)).mean()


@requires_onnx
def test_deterministic_onnx_matches_jax_within_one_level(trained_workdir, tmp_path):
  import onnx  # pylint: disable=g-import-not-at-top

  config = onnx_config(train_mode=False)
  out = export.export_generator(config, str(trained_workdir), str(tmp_path / 'export'))
  assert sorted(p.name for p in out.iterdir()) == ['generator.onnx', 'signature.json']
  model = onnx.load(out / 'generator.onnx')
  (model_input,) = model.graph.input
  assert [d.dim_param or d.dim_value for d in model_input.type.tensor_type.shape.dim] == [
      'batch',
      32,
      32,
      3,
  ]
  ops = {node.op_type for node in model.graph.node}
  assert {'Conv', 'ConvTranspose', 'BatchNormalization'} <= ops and 'RandomUniformLike' not in ops
  images = make_images()
  (served,) = run_onnx(out / 'generator.onnx', images, tmp_path)
  (expected,) = jax_outputs(config, trained_workdir, images, seeds=[0])
  difference = np.abs(served.astype(int) - expected)
  assert (
      difference.max() <= 1 and np.mean(difference > 0) < 0.01
  ), f'max {difference.max()}, share differing {np.mean(difference > 0):.2%}'


@requires_onnx
def test_paper_mode_onnx_statistics_are_per_image_as_jax(trained_workdir, tmp_path, monkeypatch):
  """Without dropout the paper's mode is deterministic: each image's own BatchNorm statistics,
  whatever else is in the batch, must be JAX's."""
  load = inference.restore_trained_generator

  def load_without_dropout(*args, **kwargs):  # The checkpoint's rate is 0.5; its weights stay.
    loaded = load(*args, **kwargs)
    return loaded._replace(generator=loaded.generator.clone(dropout_rate=0.0))

  monkeypatch.setattr(inference, 'restore_trained_generator', load_without_dropout)
  config = onnx_config(train_mode=True)
  out = export.export_generator(config, str(trained_workdir), str(tmp_path / 'export'))
  images = make_images()
  (served,) = run_onnx(out / 'generator.onnx', images, tmp_path)
  (expected,) = jax_outputs(config, trained_workdir, images, seeds=[0])
  assert np.abs(served.astype(int) - expected).max() <= 1


@requires_onnx
def test_paper_mode_onnx_dropout_noise_is_drawn_like_jax(trained_workdir, tmp_path):
  """ONNX draws its own dropout noise (onnxruntime's stream, not JAX's threefry): it must vary
  between calls and between copies of an image in a batch, survive onnxruntime's default graph
  optimisation, and change the outputs as much as JAX's noise does."""
  config = onnx_config(train_mode=True)
  out = export.export_generator(config, str(trained_workdir), str(tmp_path / 'export'))
  images = make_images()
  served = run_onnx(out / 'generator.onnx', images, tmp_path, calls=4)
  expected = jax_outputs(config, trained_workdir, images, seeds=range(4))
  assert np.abs(served[0, 0].astype(int) - served[0, 1]).mean() > 1  # Copies differ.
  onnx_change, jax_change = mean_change(served), mean_change(expected)
  assert jax_change > 1 and 0.8 < onnx_change / jax_change < 1.25, (onnx_change, jax_change)


@pytest.mark.parametrize('train_mode', [False, True])
def test_export_reloads_in_a_fresh_process(trained_workdir, tmp_path, train_mode):
  config = test_config.get_config()
  config.eval.train_mode = train_mode
  out = export.export_generator(config, str(trained_workdir), str(tmp_path / 'export'))
  images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), np.uint8)
  np.save(tmp_path / 'images.npy', images)
  generator, network, _, _ = inference.restore_trained_generator(config, str(trained_workdir))
  key = np.array([7, 0], np.uint32)  # What load_generator(seed=7) uses for its first call.
  expected = np.asarray(
      jax.jit(
          lambda x: image_lib.to_uint8(inference.generate(generator, network, x, key, train_mode))
      )(images)
  )
  code = (
      'import sys, numpy as np\nfrom pix2pix_jax.serving import load_generator\ntranslate ='
      f' load_generator({str(out)!r}, seed=7)\nnp.save({str(tmp_path / "served.npy")!r},'
      f' translate(np.load({str(tmp_path / "images.npy")!r})))\nassert "flax" not in sys.modules'
      ' and "pix2pix_jax.models" not in sys.modules\n'
  )
  result = subprocess.run(
      [sys.executable, '-c', code],
      capture_output=True,
      text=True,
      timeout=300,
      cwd=tmp_path,
      env=os.environ,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  served = np.load(tmp_path / 'served.npy')
  assert served.shape == (3, 32, 32, 3) and served.dtype == np.uint8
  assert np.abs(served.astype(int) - expected).max() <= 1
