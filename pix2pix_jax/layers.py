"""The layers the pix2pix networks are built of: 4×4 convolutions, the ResNet's 3×3 transposed
convolution, and the norms.

Parameters and initialisation are the PyTorch reference's (junyanz/pytorch-CycleGAN-and-pix2pix):
weights N(0, init_std), BatchNorm scales N(1, init_std). The 4×4 convolutions hold the parameters
of `nn.Conv` / `nn.ConvTranspose` and compute with the `kernels.ConvImpl` they are given.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax import kernels

NORMS = ('batch', 'instance')
ModuleDef = Any  # A module class with some fields bound (functools.partial), as flax's examples.


def normal_init(std: float):
  """N(0, std) kernel init, as the reference's `init_weights(init_type='normal', gain=0.02)`."""
  return nn.initializers.normal(stddev=std)


def normal_scale_init(std: float):
  """N(1, std) for BatchNorm scales, as the reference."""

  def init(key, shape, dtype=jnp.float32):
    return 1.0 + std * jax.random.normal(key, shape, dtype)

  return init


class _Kernel4x4(nn.Module):
  """A 4×4 convolution layer: `op(x, kernel)` on a (4, 4, C_in, features) kernel, then a bias.

  Subclasses define `op`; the parameters ('kernel' N(0, init_std), optional zero 'bias') are those
  of the `nn.Conv` / `nn.ConvTranspose` they stand for.
  """

  features: int
  use_bias: bool = True
  init_std: float = 0.02
  conv_impl: kernels.ConvImpl = kernels.ConvImpl()
  dtype: Any = jnp.float32

  def op(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    raise NotImplementedError

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', normal_init(self.init_std), (4, 4, x.shape[-1], self.features))
    y = self.op(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,)).astype(self.dtype)
    return y


class Conv4x4(_Kernel4x4):
  """PyTorch's `Conv2d(C_in, features, 4, stride, padding=1)`, by `conv_impl.conv`."""

  stride: int = 2

  def op(self, x, kernel):
    return self.conv_impl.conv(x, kernel, self.stride)


class ConvTranspose4x4(_Kernel4x4):
  """PyTorch's `ConvTranspose2d(C_in, features, 4, stride=2, padding=1)`, by `conv_impl`."""

  def op(self, x, kernel):
    return self.conv_impl.conv_transpose(x, kernel)


class Logits4x4(_Kernel4x4):
  """PatchGAN's last layer, `Conv2d(C_in, features, 4, padding=1)`, by `conv_impl.logits`."""

  def op(self, x, kernel):
    return self.conv_impl.logits(x, kernel)


class ConvTranspose3x3(nn.Module):
  """PyTorch's `ConvTranspose2d(C_in, features, 3, stride=2, padding=1, output_padding=1)`.

  The ResNet generator's upsampling (its `u128`, `u64`): output (N, 2H, 2W, features), computed
  by `conv_impl.conv_transpose_3x3`.

  Parameters are `nn.ConvTranspose`'s: 'kernel' (3, 3, C_in, features), N(0, init_std), and an
  optional zero 'bias'. The kernel has the 4×4 layers' layout: `kernel[ky, kx, c_in, c_out]` is
  the PyTorch weight `W[c_in, c_out, ky, kx]`, *not* flipped, i.e. a PyTorch weight of shape
  (C_in, C_out, 3, 3) maps onto it as `W.permute(2, 3, 0, 1)` (NumPy: `W.transpose(2, 3, 0, 1)`);
  the bias is PyTorch's as is.
  """

  features: int
  use_bias: bool = True
  init_std: float = 0.02
  conv_impl: kernels.ConvImpl = kernels.ConvImpl()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', normal_init(self.init_std), (3, 3, x.shape[-1], self.features))
    y = self.conv_impl.conv_transpose_3x3(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,)).astype(self.dtype)
    return y


class GroupedBatchNorm(nn.Module):
  """PyTorch's BatchNorm2d, with batch statistics over `groups` equal, consecutive parts of the batch.

  groups = 1: statistics over the global batch. With the batch split over devices in that order,
  groups = device count gives per-device statistics (PyTorch DataParallel/DDP without
  SyncBatchNorm); XLA then needs no cross-device reduction for them. Same parameters and running
  statistics as `nn.BatchNorm` (checkpoints hold either), the same normalisation, but the running
  variance is updated, as PyTorch's, with the *unbiased* batch variance (× n/(n − 1), n values per
  channel and group); flax's uses the biased one, which the running statistics of the deep U-Net
  levels (n = 4 at 2×2, batch 1) would take 25 % too small, so a deterministic test time
  (`eval.train_mode=False`, export) would not be the reference's. Groups' statistics are averaged
  into the running ones.
  """

  groups: int
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  scale_init: Any = nn.initializers.ones
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((features,), jnp.float32))
    scale = self.param('scale', self.scale_init, (features,))
    bias = self.param('bias', nn.initializers.zeros, (features,))
    if self.use_running_average:
      y = (x - ra_mean.value) * (jax.lax.rsqrt(ra_var.value + self.epsilon) * scale) + bias
      return y.astype(self.dtype)
    groups = 1 if x.shape[0] == 1 else self.groups  # One example (init, per-image inference).
    if x.shape[0] % groups:
      raise ValueError(
          f'a batch of {x.shape[0]} does not split into {groups} BatchNorm groups '
          '(config.model.batch_norm_stats=per_device: one group per device)'
      )
    grouped = x.reshape((groups, -1) + x.shape[1:]).astype(jnp.float32)
    axes = tuple(range(1, grouped.ndim - 1))
    mean = jnp.mean(grouped, axes, keepdims=True)  # (groups, 1, 1, 1, C)
    var = jnp.maximum(jnp.mean(jnp.square(grouped), axes, keepdims=True) - jnp.square(mean), 0.0)
    if not self.is_initializing():
      n = grouped[0].size // features
      unbiased = var * (n / (n - 1)) if n > 1 else var  # n = 1: PyTorch refuses to train; var = 0.
      for running, batch in ((ra_mean, mean), (ra_var, unbiased)):
        batch_mean = batch.reshape(-1, features).mean(0)
        running.value = self.momentum * running.value + (1 - self.momentum) * batch_mean
    y = (grouped - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
    return y.reshape(x.shape).astype(self.dtype)


def norm_layer(
    norm: str, *, train: bool, init_std: float, dtype: Any, name: str, batch_norm_groups: int = 1
) -> nn.Module:
  """The reference's norm layer: BatchNorm (per `batch_norm_groups`) or InstanceNorm.

  Args:
    norm: one of NORMS.
    train: BatchNorm normalises by the batch's statistics (and updates the running ones) if True,
      by the running statistics if False.
    init_std: BatchNorm scales are N(1, init_std).
    dtype: the output's dtype.
    name: the layer's name in the parameter tree.
    batch_norm_groups: see `GroupedBatchNorm`; 1 = statistics over the global batch.

  Returns:
    The unbound layer.
  """
  if norm == 'batch' and not train:
    # Normalising by the running statistics: flax's layer computes the same function (and
    # exporters such as jax2onnx turn it into one BatchNormalization op).
    return nn.BatchNorm(
        use_running_average=True,
        epsilon=1e-5,
        scale_init=normal_scale_init(init_std),
        dtype=dtype,
        name=name,
    )
  if norm == 'batch':
    # PyTorch momentum 0.1 == Flax momentum 0.9. In train mode the batch's own statistics are used.
    return GroupedBatchNorm(
        batch_norm_groups,
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        scale_init=normal_scale_init(init_std),
        dtype=dtype,
        name=name,
    )
  if norm == 'instance':
    # The reference's InstanceNorm2d has affine=False and no running statistics.
    return nn.InstanceNorm(epsilon=1e-5, use_bias=False, use_scale=False, dtype=dtype, name=name)
  raise ValueError(f'unknown norm {norm!r}; expected one of {NORMS}')


class Network(nn.Module):
  """What every pix2pix network shares: the reference's norm and initialisation, the compute
  dtype and how convolutions are computed, and the layers bound from them once per call."""

  norm: str = 'batch'  # One of NORMS.
  init_std: float = 0.02  # Paper 6.2: weights N(0, 0.02); BatchNorm scales N(1, 0.02).
  batch_norm_groups: int = 1  # See GroupedBatchNorm: 1 = statistics over the global batch.
  # How the convolutions are computed (the same maps, pix2pix_jax/kernels); default: XLA's own.
  conv_impl: kernels.ConvImpl = kernels.ConvImpl()
  dtype: Any = jnp.float32

  @property
  def conv_bias(self) -> bool:
    """The reference's `use_bias`: convolutions get a bias with InstanceNorm and none with
    BatchNorm (whose shift replaces it), even where no norm follows them."""
    return self.norm != 'batch'

  def bound_norm(self, train: bool) -> ModuleDef:
    """`norm_layer` with this network's fields: called with the layer's `name`."""
    return functools.partial(
        norm_layer,
        self.norm,
        train=train,
        init_std=self.init_std,
        dtype=self.dtype,
        batch_norm_groups=self.batch_norm_groups,
    )
