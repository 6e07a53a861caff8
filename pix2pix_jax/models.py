"""pix2pix networks: the U-Net generator and the PatchGAN discriminator (Flax Linen).

Both follow Isola et al. 2017 and the PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix)
layer for layer, so parameter counts match the reference exactly (54,413,955 for the 256² U-Net,
2,768,705 for the 70×70 PatchGAN). Modules take plain typed fields; `create_generator` and
`create_discriminator` turn a config into those fields.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from pix2pix_jax import runtime

# PatchGAN receptive field -> number of stride-2 conv layers (the reference's `n_layers`);
# 0 means the 1×1 "PixelGAN" discriminator.
PATCH_SIZE_TO_STRIDED_LAYERS = {1: 0, 16: 1, 70: 3, 286: 5}
NORMS = ('batch', 'instance')
UPSAMPLE_IMPLS = ('adjoint', 'subpixel', 'conv_transpose', 'matmul')
_NHWC = ('NHWC', 'HWIO', 'NHWC')


def normal_init(std: float):
  """N(0, std) kernel init, as the reference's `init_weights(init_type='normal', gain=0.02)`."""
  return nn.initializers.normal(stddev=std)


def normal_scale_init(std: float):
  """N(1, std) for BatchNorm scales, as the reference."""

  def init(key, shape, dtype=jnp.float32):
    return 1.0 + std * jax.random.normal(key, shape, dtype)

  return init


def num_unet_levels(image_size: int) -> int:
  """Levels of the U-Net for a square image: log2(size), so the bottleneck is 1×1.

  128 -> 7, 256 -> 8 (the paper's U-Net-256), 512 -> 9.

  Raises:
    ValueError: if `image_size` is not a power of two >= 32 (the U-Net needs its four outer
      levels plus at least one 512-channel level).
  """
  if image_size < 32 or image_size & (image_size - 1):
    raise ValueError(
        f'image size {image_size} is not a power of two >= 32: the U-Net halves the image '
        'down to a 1×1 bottleneck, so use 32, 64, 128, 256, 512, ...')
  return image_size.bit_length() - 1


def conv_transpose_4x4_stride2(x: jax.Array, kernel: jax.Array, impl: str = 'adjoint') -> jax.Array:
  """PyTorch's `ConvTranspose2d(kernel_size=4, stride=2, padding=1)`: doubles H and W.

  `kernel[ky, kx, c_in, c_out]` equals the PyTorch weight `W[c_in, c_out, ky, kx]`. All impls
  compute the same linear map with the same kernel; they differ in speed, mostly of the gradients:
  XLA:CPU differentiates its own transposed convolution ('conv_transpose') into kernels 10-18×
  slower than the forward pass, which made the decoder dominate the step (see benchmarks/).

  'adjoint' (fastest on CPU) runs XLA's transposed convolution forward and a custom VJP: the input
  gradient is the forward stride-2 convolution it is the adjoint of, the kernel gradient one
  matrix product per tap. 'subpixel' computes four 2×2 stride-1 convolutions of the *undilated*
  input, one per output phase, interleaved by depth-to-space (output pixel 2i+a only ever sees
  kernel taps of parity a). 'matmul' is one batched matrix product over the 16 taps plus
  overlap-add: the fastest for few pixels and large kernels (the U-Net's deep levels).

  Args:
    x: (N, H, W, C_in).
    kernel: (4, 4, C_in, C_out).
    impl: one of UPSAMPLE_IMPLS.

  Returns:
    (N, 2H, 2W, C_out).
  """
  if impl == 'matmul':
    return _conv_transpose_matmul(x, kernel)
  if impl == 'adjoint':
    return _conv_transpose_adjoint(x, kernel)
  if impl == 'conv_transpose':
    return lax.conv_transpose(x, jnp.swapaxes(kernel, 2, 3), (2, 2), ((2, 2), (2, 2)),
                              dimension_numbers=_NHWC, transpose_kernel=True)
  if impl != 'subpixel':
    raise ValueError(f'unknown transposed-conv impl {impl!r}; expected one of {UPSAMPLE_IMPLS}')
  n, h, w, _ = x.shape
  c_in, c_out = kernel.shape[2:]
  flipped = kernel[::-1, ::-1]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  if c_out < 8:
    # Few output channels (the final RGB layer): four 2×2 convs with 3 outputs each run badly
    # on XLA:CPU; one 3×3 conv giving all 4 phases × C_out channels (zero taps where a phase
    # does not reach) is ~5× faster there, for 2.25× the FLOPs of a tiny layer.
    merged = jnp.zeros((3, 3, c_in, 2, 2, c_out), kernel.dtype)
    for a in (0, 1):
      for b in (0, 1):
        merged = merged.at[a:a + 2, b:b + 2, :, a, b, :].set(flipped[a::2, b::2])
    out = lax.conv_general_dilated(padded, merged.reshape(3, 3, c_in, 4 * c_out), (1, 1), 'VALID',
                                   dimension_numbers=_NHWC)
    out = out.reshape(n, h, w, 2, 2, c_out).transpose(0, 1, 3, 2, 4, 5)
    return out.reshape(n, 2 * h, 2 * w, c_out)
  rows = []
  for a in (0, 1):
    phases = [
        lax.conv_general_dilated(padded[:, a:a + h + 1, b:b + w + 1], flipped[a::2, b::2],
                                 (1, 1), 'VALID', dimension_numbers=_NHWC)
        for b in (0, 1)
    ]
    rows.append(jnp.stack(phases, axis=3))  # (N, H, W, 2[b], C)
  out = jnp.stack(rows, axis=2)  # (N, H, 2[a], W, 2[b], C)
  return out.reshape(n, 2 * h, 2 * w, c_out)


def _conv_4x4(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """XLA's 4×4 convolution with PyTorch's padding 1."""
  return lax.conv_general_dilated(x, kernel, (stride, stride), ((1, 1), (1, 1)),
                                  dimension_numbers=_NHWC)


def _padded_taps(x: jax.Array, stride: int, h_out: int, w_out: int) -> list[jax.Array]:
  """The 16 inputs of a 4×4 convolution with padding 1: tap (ky, kx) of every output pixel.

  Returns:
    16 arrays (N, h_out, w_out, C), in (ky, kx) row-major order: `x` padded by 1, from (ky, kx),
    every `stride`-th row and column.
  """
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return [padded[:, ky:ky + stride * (h_out - 1) + 1:stride, kx:kx + stride * (w_out - 1) + 1:stride]
          for ky in range(4) for kx in range(4)]


def conv_4x4_matmul(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """A 4×4 convolution with padding 1 (PyTorch's), as one matrix product of im2col patches.

  The same linear map as `lax.conv_general_dilated`; its gradients are matrix products that read
  `kernel` in its own (4, 4, C_in, C_out) layout, where XLA:CPU's convolution gradients first
  copy the kernel into a transposed, flipped layout. For small images (the U-Net's deep levels:
  a few pixels and up to 4M weights) those copies dominate, so there this form is faster.

  Args:
    x: (N, H, W, C_in).
    kernel: (4, 4, C_in, C_out).
    stride: 1 or 2.

  Returns:
    (N, H', W', C_out), H' = (H + 2 - 4) // stride + 1.
  """
  n, h, w, c_in = x.shape
  c_out = kernel.shape[-1]
  h_out, w_out = (h - 2) // stride + 1, (w - 2) // stride + 1
  patches = jnp.stack(_padded_taps(x, stride, h_out, w_out), axis=3)
  patches = patches.reshape(n * h_out * w_out, 16 * c_in)
  return (patches @ kernel.reshape(16 * c_in, c_out)).reshape(n, h_out, w_out, c_out)


# Batched products over a leading T axis, as dot_general dimension numbers:
_BATCHED = (((2,), (1,)), ((0,), (0,)))  # (T, M, K) × (T, K, N) -> (T, M, N).
_BATCHED_NT = (((2,), (2,)), ((0,), (0,)))  # (T, M, N) × (T, K, N) -> (T, M, K).
_BATCHED_TN = (((1,), (1,)), ((0,), (0,)))  # (T, M, K) × (T, M, N) -> (T, K, N).


@jax.custom_vjp
def _tap_products(rows: jax.Array, taps_kernel: jax.Array) -> jax.Array:
  """(M, C_in) × (T, C_in, C_out) -> (T, M, C_out): `rows @ taps_kernel[t]` for every tap t.

  A batched product over the taps, so neither it nor its gradients copy the kernel out of its own
  layout.
  """
  t = taps_kernel.shape[0]
  return lax.dot_general(jnp.broadcast_to(rows, (t,) + rows.shape), taps_kernel, _BATCHED)


def _tap_products_fwd(rows, taps_kernel):
  return _tap_products(rows, taps_kernel), (rows, taps_kernel)


def _tap_products_bwd(residuals, grad):
  rows, taps_kernel = residuals
  t = taps_kernel.shape[0]
  # (T, M, C_out) × (T, C_in, C_out) contracting C_out -> (T, M, C_in), then the sum over taps.
  grad_rows = lax.dot_general(grad, taps_kernel, _BATCHED_NT)
  # Summed as T slices: XLA:CPU fuses a reduce into the product, which then runs at ~half speed
  # (28 ms instead of ~8 for the 8×8 level at 256²). Slices work under any compile options: an
  # optimization barrier holds on XLA:CPU only with config.xla_cpu_region_analysis.
  grad_rows = sum(grad_rows[i] for i in range(t))
  # (T, M, C_in) × (T, M, C_out) contracting M -> (T, C_in, C_out): the kernel's own layout.
  grad_kernel = lax.dot_general(jnp.broadcast_to(rows, (t,) + rows.shape), grad, _BATCHED_TN)
  return grad_rows, grad_kernel


_tap_products.defvjp(_tap_products_fwd, _tap_products_bwd)


def _conv_transpose_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_transpose_4x4_stride2` as 16 matrix products (one per tap) plus overlap-add."""
  n, h, w, c_in = x.shape
  c_out = kernel.shape[-1]
  taps = _tap_products(x.reshape(n * h * w, c_in), kernel.reshape(16, c_in, c_out))
  # Output pixel 2i + k - 1 gets tap k of input pixel i. With k = 2q + a that is row i + q, phase a
  # of the padded output (H + 1 rows of 2 phases): sum the four (q, p) shifts, then interleave.
  taps = taps.reshape(2, 2, 2, 2, n, h, w, c_out)  # (q, a, p, b, ...)
  out = sum(jnp.pad(taps[q, :, p], ((0, 0),) * 3 + ((q, 1 - q), (p, 1 - p), (0, 0)))
            for q in (0, 1) for p in (0, 1))  # (a, b, N, H + 1, W + 1, C)
  out = out.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * h + 2, 2 * w + 2, c_out)
  return out[:, 1:-1, 1:-1]


def _adjoint_conv(z: jax.Array, kernel: jax.Array) -> jax.Array:
  """The 4×4 stride-2 convolution whose input adjoint is `conv_transpose_4x4_stride2(·, kernel)`.

  PyTorch's ConvTranspose2d is the input gradient of Conv2d with the same weight, read with the
  in/out roles swapped: `kernel[ky, kx, c_in, c_out]` is this convolution's (4, 4, O, I) kernel.
  """
  return lax.conv_general_dilated(z, kernel, (2, 2), ((1, 1), (1, 1)),
                                  dimension_numbers=('NHWC', 'HWOI', 'NHWC'))


@jax.custom_vjp
def _conv_transpose_adjoint(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_transpose_4x4_stride2` 'adjoint': XLA's transposed convolution with a custom VJP."""
  n, h, w, _ = x.shape
  z = jax.ShapeDtypeStruct((n, 2 * h, 2 * w, kernel.shape[-1]), x.dtype)
  return jax.linear_transpose(lambda z: _adjoint_conv(z, kernel), z)(x)[0]


def _conv_transpose_adjoint_fwd(x, kernel):
  return _conv_transpose_adjoint(x, kernel), (x, kernel)


def _conv_transpose_adjoint_bwd(residuals, grad):
  x, kernel = residuals
  # Kernel tap (ky, kx) joins input pixel i to output pixel 2i + k - 1: one (C_in, C_out) product
  # per tap, stacked in the kernel's own layout. (XLA's kernel gradient of `_adjoint_conv` comes
  # out as (C_out, 4, 4, C_in), and reading it transposed made Adam's update of the 16 MB kernel
  # of the 16×16 -> 32×32 layer take 57 ms instead of ~7.)
  grad_kernel = jnp.stack([jnp.einsum('nhwi,nhwo->io', x, tap)
                           for tap in _padded_taps(grad, 2, *x.shape[1:3])])
  return _adjoint_conv(grad, kernel), grad_kernel.reshape(kernel.shape)


_conv_transpose_adjoint.defvjp(_conv_transpose_adjoint_fwd, _conv_transpose_adjoint_bwd)


class _Conv4x4(nn.Module):
  """A 4×4 convolution layer: `op(x, kernel)` on a (4, 4, C_in, features) kernel, then a bias.

  Subclasses define `op`; the parameters ('kernel' N(0, init_std), optional zero 'bias') are those
  of the `nn.Conv` / `nn.ConvTranspose` they stand for.
  """
  features: int
  use_bias: bool
  init_std: float = 0.02
  dtype: Any = jnp.float32

  def op(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    raise NotImplementedError

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', normal_init(self.init_std), (4, 4, x.shape[-1], self.features))
    y = self.op(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,)).astype(self.dtype)
    return y


class UpConv(_Conv4x4):
  """4×4 stride-2 transposed convolution (PyTorch padding=1), see `conv_transpose_4x4_stride2`."""
  impl: str = 'adjoint'

  def op(self, x, kernel):
    return conv_transpose_4x4_stride2(x, kernel, self.impl)


class DownConv(_Conv4x4):
  """4×4 stride-2 convolution with padding 1, as `nn.Conv` (same parameters) or as a matrix product.

  `matmul` picks `conv_4x4_matmul`, `winograd` `conv_4x4_winograd`: the same values (see there for
  when each is faster).
  """
  matmul: bool = False
  winograd: bool = False

  def op(self, x, kernel):
    if self.matmul:
      return conv_4x4_matmul(x, kernel, 2)
    return conv_4x4_winograd(x, kernel, 2) if self.winograd else _conv_4x4(x, kernel, 2)


class GroupedBatchNorm(nn.Module):
  """BatchNorm whose batch statistics are taken over `groups` equal, consecutive parts of the batch.

  With the batch split over devices in that order, groups = device count gives per-device
  statistics (PyTorch DataParallel/DDP without SyncBatchNorm); XLA then needs no cross-device
  reduction for them. Same parameters and running statistics as `nn.BatchNorm`, which is the
  groups = 1 case (statistics over the global batch); running statistics are updated with the mean
  of the groups' statistics.
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
      raise ValueError(f'a batch of {x.shape[0]} does not split into {groups} BatchNorm groups '
                       '(config.model.batch_norm_stats=per_device: one group per device)')
    grouped = x.reshape((groups, -1) + x.shape[1:]).astype(jnp.float32)
    axes = tuple(range(1, grouped.ndim - 1))
    mean = jnp.mean(grouped, axes, keepdims=True)  # (groups, 1, 1, 1, C)
    var = jnp.maximum(jnp.mean(jnp.square(grouped), axes, keepdims=True) - jnp.square(mean), 0.0)
    if not self.is_initializing():
      for running, batch in ((ra_mean, mean), (ra_var, var)):
        running.value = self.momentum * running.value + (1 - self.momentum) * batch.reshape(-1, features).mean(0)
    y = (grouped - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
    return y.reshape(x.shape).astype(self.dtype)


def _norm_layer(norm: str, train: bool, init_std: float, dtype, name: str,
                batch_norm_groups: int = 1) -> nn.Module:
  if norm == 'batch' and batch_norm_groups > 1:
    return GroupedBatchNorm(batch_norm_groups, use_running_average=not train, momentum=0.9,
                            epsilon=1e-5, scale_init=normal_scale_init(init_std), dtype=dtype, name=name)
  if norm == 'batch':
    # PyTorch momentum 0.1 == Flax momentum 0.9. In train mode the batch's own statistics are used.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        scale_init=normal_scale_init(init_std), dtype=dtype, name=name)
  if norm == 'instance':
    # The reference's InstanceNorm2d has affine=False and no running statistics.
    return nn.InstanceNorm(epsilon=1e-5, use_bias=False, use_scale=False, dtype=dtype, name=name)
  raise ValueError(f'unknown norm {norm!r}; expected one of {NORMS}')


def _conv(features: int, stride: int, use_bias: bool, init_std: float, dtype, name: str,
          kernel_size: int = 4) -> nn.Conv:
  pad = 1 if kernel_size == 4 else 0  # PyTorch padding=1 for every 4×4 conv of the reference.
  return nn.Conv(features, (kernel_size, kernel_size), strides=stride,
                 padding=((pad, pad), (pad, pad)), use_bias=use_bias,
                 kernel_init=normal_init(init_std), dtype=dtype, name=name)


class UNetGenerator(nn.Module):
  """The pix2pix U-Net (paper appendix 6.1.1; the reference's `UnetGenerator`).

  Encoder C64-C128-C256-C512-...-C512, decoder CD512-CD512-CD512-C512-C256-C128-C64 (at 256²,
  8 levels), skip connections between mirrored levels, tanh output in [-1, 1].
  """
  out_channels: int = 3
  num_levels: int = 8
  base_features: int = 64  # ngf
  norm: str = 'batch'
  # Paper: BatchNorm on every encoder layer but the first *and* the 1×1 bottleneck (at batch 1
  # a 1×1 map normalised by its own statistics would be zeroed). TF's tutorial sets it.
  bottleneck_norm: bool = False
  leaky_relu_slope: float = 0.2  # Encoder activation (paper: LeakyReLU 0.2; decoder: ReLU).
  dropout_rate: float = 0.5  # Paper: dropout is the generator's only source of noise.
  num_dropout_layers: int = 3  # Paper: the first three decoder layers.
  # The PyTorch reference puts them on the three decoder layers after the innermost one instead.
  dropout_skip_innermost: bool = False
  init_std: float = 0.02
  upsample_impl: str = 'adjoint'
  # Levels whose small side (encoder output, decoder input) has at most this many pixels per image
  # use the matrix-product forms (`conv_4x4_matmul`, upsample 'matmul'): same values, faster
  # gradients where the weights outweigh the activations.
  matmul_max_pixels: int = 0
  # Other 4×4 convolutions with at least this many input channels use `conv_4x4_winograd` (same
  # values, fewer multiplications); None: none do.
  winograd_min_channels: int | None = None
  batch_norm_groups: int = 1  # See GroupedBatchNorm: 1 = statistics over the global batch.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Translates images (N, H, W, C_in) in [-1, 1] into (N, H, W, out_channels) in [-1, 1]."""
    levels = self.num_levels
    if x.shape[1] != 2**levels or x.shape[2] != 2**levels:
      raise ValueError(f'a {levels}-level U-Net takes {2**levels}×{2**levels} images, '
                       f'got {x.shape[1]}×{x.shape[2]}')
    batch_norm = self.norm == 'batch'
    features = [self.base_features * min(2**i, 8) for i in range(levels)]
    dropout_start = 1 if self.dropout_skip_innermost else 0
    dropout_levels = {levels - 1 - k for k in range(dropout_start, dropout_start + self.num_dropout_layers)}

    h = x.astype(self.dtype)
    skips = []
    for i in range(levels):
      if i > 0:
        h = nn.leaky_relu(h, self.leaky_relu_slope)
      normed = 0 < i < levels - 1 or (i == levels - 1 and self.bottleneck_norm)
      # The reference gives every down conv a bias with InstanceNorm and none with BatchNorm
      # (whose shift replaces it), even where no norm follows (outermost, innermost).
      small = (x.shape[1] >> (i + 1)) * (x.shape[2] >> (i + 1)) <= self.matmul_max_pixels
      h = DownConv(features[i], not batch_norm, self.init_std, self.dtype, matmul=small,
                   winograd=_winograd(h.shape[-1], self.winograd_min_channels), name=f'down{i}')(h)
      if normed:
        h = _norm_layer(self.norm, train, self.init_std, self.dtype, f'down{i}_norm',
                        self.batch_norm_groups)(h)
      skips.append(h)

    for i in reversed(range(levels)):
      small = h.shape[1] * h.shape[2] <= self.matmul_max_pixels
      upsample = 'matmul' if small else self.upsample_impl
      if i < levels - 1:
        h = jnp.concatenate([skips[i], h], axis=-1)  # Reference order: skip first.
      h = nn.relu(h)
      if i == 0:
        h = UpConv(self.out_channels, True, self.init_std, self.dtype, impl=upsample, name='up0')(h)
        return jnp.tanh(h).astype(jnp.float32)
      h = UpConv(features[i - 1], not batch_norm, self.init_std, self.dtype, impl=upsample,
                 name=f'up{i}')(h)
      h = _norm_layer(self.norm, train, self.init_std, self.dtype, f'up{i}_norm', self.batch_norm_groups)(h)
      if i in dropout_levels:
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    raise AssertionError('unreachable')


@jax.custom_vjp
def conv_4x4_few_outputs(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A 4×4 stride-1 convolution (padding 1) to a few output channels (PatchGAN's logits layer).

  The same values as `lax.conv_general_dilated`; its kernel gradient is one matrix product (see
  the VJP). XLA:CPU computes that gradient as a convolution with a 30×30 window over 512 channels:
  13-25 ms each at 256² (two per train step), against 0.35 ms this way.
  """
  return _conv_4x4(x, kernel, 1)


def _conv_4x4_few_outputs_fwd(x, kernel):
  return _conv_4x4(x, kernel, 1), (x, kernel)


def _conv_4x4_few_outputs_bwd(residuals, grad):
  x, kernel = residuals
  (grad_x,) = jax.linear_transpose(lambda x: _conv_4x4(x, kernel, 1), x)(grad)
  # Tap (ky, kx) joins input pixel (i + ky - 1, j + kx - 1) to output pixel (i, j), so its kernel
  # gradient contracts the input with the output gradient shifted by (ky - 1, kx - 1). The 16
  # shifted copies of the few-channel gradient are small, and the input is read in place: slicing
  # the input per tap copied 16 activation-sized arrays (~20 ms per step at 256² on CPU).
  zero = jnp.zeros((), grad.dtype)
  shifted = jnp.stack([lax.pad(grad, zero, ((0, 0, 0), (ky - 1, 2 - ky, 0), (kx - 1, 2 - kx, 0), (0, 0, 0)))
                       for ky in range(4) for kx in range(4)])  # (16, N, H, W, C_out)
  return grad_x, jnp.einsum('tnhwo,nhwc->tco', shifted, x).reshape(kernel.shape)


conv_4x4_few_outputs.defvjp(_conv_4x4_few_outputs_fwd, _conv_4x4_few_outputs_bwd)


# Winograd's minimal filtering (Lavin & Gray 2016) with 2×2 output tiles: an r×r correlation maps
# each (r+1)×(r+1) input tile d to the 2×2 outputs A^T [(G k G^T) ⊙ (B^T d B)] A, i.e. (r+1)²
# products per (C_in, C_out) pair and tile instead of 4r². Interpolation points: 0, 1, -1, 2, ∞ for
# r = 4 (B^T's fractions moved into G, rows scaled by 2, 2, 6, 6, 1, so data transforms are small
# integers) and 0, 1, ∞ for r = 2 (all entries 0 or ±1).
_WINOGRAD_1D = {  # r: (A^T, G, B^T)
    4: (np.array([[1, 1, 1, 1, 0], [0, 1, -1, 2, 1]]),
        np.array([[1, 0, 0, 0], [1, 1, 1, 1], [1, -1, 1, -1], [1, 2, 4, 8], [0, 0, 0, 1]])
        / np.array([2, 2, 6, 6, 1.0])[:, None],
        np.array([[2, -1, -2, 1, 0], [0, 2, 1, -1, 0], [0, -2, 3, -1, 0], [0, -1, 0, 1, 0],
                  [0, 2, -1, -2, 1]])),
    2: (np.array([[1, 1, 0], [0, 1, 1]]), np.array([[1, 0], [1, 1], [0, 1]]),
        np.array([[1, -1, 0], [0, 1, 0], [0, -1, 1]])),
}
# The 2-D transforms as matrices on flattened tiles (row-major): A (4, t²), G (t², r²), B (t², t²).
_WINOGRAD_2D = {r: tuple(np.kron(m, m).astype(np.float32) for m in mats)
                for r, mats in _WINOGRAD_1D.items()}


def _winograd_shapes(x_shape, r):
  n, h, w, c = x_shape
  ho, wo = h - r + 1, w - r + 1
  return n, h, w, c, ho, wo, -(-ho // 2), -(-wo // 2)  # ..., tiles of 2×2 outputs per column, row


def _winograd_correlation(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'VALID' correlation of x (N, H, W, C_in) with kernel (r, r, C_in, C_out), r in {2, 4}."""
  return _winograd_correlation_vjp(x, kernel, x.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _winograd_correlation_vjp(x, kernel, x_shape):
  return _winograd_correlation_fwd(x, kernel, x_shape)[0]


def _winograd_correlation_fwd(x, kernel, x_shape):
  r, t = kernel.shape[0], kernel.shape[0] + 1
  a2, g2, b2 = (jnp.asarray(m, x.dtype) for m in _WINOGRAD_2D[r])
  n, h, w, c_in, ho, wo, th, tw = _winograd_shapes(x_shape, r)
  padded = jnp.pad(x, ((0, 0), (0, 2 * th + r - 1 - h), (0, 2 * tw + r - 1 - w), (0, 0)))
  tiles = jnp.stack([padded[:, u:u + 2 * th - 1:2, v:v + 2 * tw - 1:2]
                     for u in range(t) for v in range(t)])  # (t², N, th, tw, C_in)
  data = (b2 @ tiles.reshape(t * t, -1)).reshape(t * t, n * th * tw, c_in)
  # The kernel is read in its own layout: (t², r²) × (r², C_in · C_out).
  transformed_kernel = (g2 @ kernel.reshape(r * r, -1)).reshape((t * t,) + kernel.shape[2:])
  products = lax.dot_general(data, transformed_kernel, _BATCHED)  # (t², tiles, C_out)
  out = (a2 @ products.reshape(t * t, -1)).reshape(2, 2, n, th, tw, -1)
  out = out.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * th, 2 * tw, -1)[:, :ho, :wo]
  return out, (data, transformed_kernel)


def _winograd_correlation_bwd(x_shape, residuals, grad):
  data, transformed_kernel = residuals
  t = round(data.shape[0] ** 0.5)
  r = t - 1
  a2, g2, b2 = (jnp.asarray(m, grad.dtype) for m in _WINOGRAD_2D[r])
  n, h, w, c_in, _, _, th, tw = _winograd_shapes(x_shape, r)
  c_out = grad.shape[-1]
  grad = jnp.pad(grad, ((0, 0), (0, 2 * th - grad.shape[1]), (0, 2 * tw - grad.shape[2]), (0, 0)))
  grad = grad.reshape(n, th, 2, tw, 2, c_out).transpose(2, 4, 0, 1, 3, 5).reshape(4, -1)
  grad_products = (a2.T @ grad).reshape(t * t, -1, c_out)
  # Kernel: sum over tiles of data ⊗ product gradient, back through G's transform.
  grad_transformed_kernel = lax.dot_general(data, grad_products, _BATCHED_TN)
  grad_kernel = (g2.T @ grad_transformed_kernel.reshape(t * t, -1)).reshape(r, r, c_in, c_out)
  # Input: product gradient × transformed kernel, back through B's transform, then each tile
  # position (u, v) added where it was read: row 2i + u, column 2j + v, grouped by parity.
  grad_data = lax.dot_general(grad_products, transformed_kernel, _BATCHED_NT)
  grad_tiles = (b2.T @ grad_data.reshape(t * t, -1)).reshape(t, t, n, th, tw, c_in)
  q = (t - 1) // 2  # Largest shift u // 2.
  phases = [[sum(jnp.pad(grad_tiles[u, v], ((0, 0), (u // 2, q - u // 2), (v // 2, q - v // 2), (0, 0)))
                 for u in range(a, t, 2) for v in range(b, t, 2)) for b in (0, 1)] for a in (0, 1)]
  grad_x = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # (N, th+q, 2, tw+q, 2, C)
  grad_x = grad_x.reshape(n, 2 * (th + q), 2 * (tw + q), c_in)[:, :h, :w]
  return grad_x, grad_kernel


_winograd_correlation_vjp.defvjp(_winograd_correlation_fwd, _winograd_correlation_bwd)


def conv_4x4_winograd(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """A 4×4 convolution with padding 1, by Winograd's minimal filtering.

  The same linear map as `lax.conv_general_dilated` with fewer multiplications: input and kernel go
  to the Winograd domain, where the convolution is one matrix product per tile position of
  (tiles, C_in) × (C_in, C_out). Stride 1 is F(2×2, 4×4): 25/64 of the multiplications. Stride 2
  is a 2×2 stride-1 convolution of the input's four pixel phases (space-to-depth, C_in -> 4·C_in),
  by F(2×2, 2×2): 9/16. The VJP stays in the Winograd domain (products with the transformed kernel
  and data, then the transposed transforms). Rounding differs from the direct sum: in float32,
  relative errors ~5e-6 for stride 1 and ~1e-6 for stride 2, against ~5e-7 (tests/test_models.py).
  Arguments and result as `conv_4x4_matmul`'s.
  """
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  if stride == 1:
    return _winograd_correlation(padded, kernel)
  n, h, w, c_in = x.shape
  ho, wo = (h - 2) // 2 + 1, (w - 2) // 2 + 1
  # Padded pixel (2i + a, 2j + b) is phase (a, b) of pixel (i, j); kernel tap (2q + a, 2p + b)
  # joins phase (a, b) of input pixel (i + q, j + p) to output pixel (i, j).
  padded = jnp.pad(padded, ((0, 0), (0, (h + 2) % 2), (0, (w + 2) % 2), (0, 0)))
  hp, wp = padded.shape[1] // 2, padded.shape[2] // 2
  phases = padded.reshape(n, hp, 2, wp, 2, c_in).transpose(0, 1, 3, 2, 4, 5).reshape(n, hp, wp, 4 * c_in)
  taps = kernel.reshape(2, 2, 2, 2, c_in, -1).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * c_in, -1)
  return _winograd_correlation(phases, taps)[:, :ho, :wo]


class WinogradConv(_Conv4x4):
  """`nn.Conv(features, (4, 4), stride, padding=1)` (same parameters) by `conv_4x4_winograd`."""
  stride: int = 1

  def op(self, x, kernel):
    return conv_4x4_winograd(x, kernel, self.stride)


class LogitsConv(_Conv4x4):
  """PatchGAN's last layer, `nn.Conv(features, (4, 4), padding=1)` computed by `conv_4x4_few_outputs`."""

  def op(self, x, kernel):
    return conv_4x4_few_outputs(x, kernel)


class PatchDiscriminator(nn.Module):
  """PatchGAN (the reference's `NLayerDiscriminator` and `PixelDiscriminator`).

  Classifies each N×N patch of the (input, output) pair as real or fake and returns one logit per
  patch. `num_strided_layers` = 1, 3, 5 give 16×16, 70×70, 286×286 receptive fields; 0 gives the
  1×1 PixelGAN.
  """
  base_features: int = 64  # ndf
  num_strided_layers: int = 3
  norm: str = 'batch'
  leaky_relu_slope: float = 0.2
  init_std: float = 0.02
  batch_norm_groups: int = 1  # See GroupedBatchNorm: 1 = statistics over the global batch.
  winograd_min_channels: int | None = None  # As UNetGenerator's, for the layers after the first.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Maps pairs (N, H, W, C_in + C_out) to patch logits (N, H', W', 1)."""
    use_bias = self.norm != 'batch'
    ndf, slope = self.base_features, self.leaky_relu_slope
    h = x.astype(self.dtype)
    if self.num_strided_layers == 0:
      h = nn.leaky_relu(_conv(ndf, 1, True, self.init_std, self.dtype, 'conv0', kernel_size=1)(h), slope)
      h = _conv(2 * ndf, 1, use_bias, self.init_std, self.dtype, 'conv1', kernel_size=1)(h)
      h = _norm_layer(self.norm, train, self.init_std, self.dtype, 'conv1_norm', self.batch_norm_groups)(h)
      h = nn.leaky_relu(h, slope)
      h = _conv(1, 1, use_bias, self.init_std, self.dtype, 'logits', kernel_size=1)(h)
      return h.astype(jnp.float32)
    h = nn.leaky_relu(_conv(ndf, 2, True, self.init_std, self.dtype, 'conv0')(h), slope)
    for n in range(1, self.num_strided_layers + 1):
      # The last feature layer has stride 1 (the reference's `n_layers`-th block).
      stride = 2 if n < self.num_strided_layers else 1
      features = ndf * min(2**n, 8)
      if _winograd(h.shape[-1], self.winograd_min_channels):
        h = WinogradConv(features, use_bias, self.init_std, self.dtype, stride=stride, name=f'conv{n}')(h)
      else:
        h = _conv(features, stride, use_bias, self.init_std, self.dtype, f'conv{n}')(h)
      h = _norm_layer(self.norm, train, self.init_std, self.dtype, f'conv{n}_norm',
                      self.batch_norm_groups)(h)
      h = nn.leaky_relu(h, slope)
    h = LogitsConv(1, True, self.init_std, self.dtype, name='logits')(h)
    return h.astype(jnp.float32)


BATCH_NORM_STATS = ('global', 'per_device')


def batch_norm_groups(model_config) -> int:
  """BatchNorm groups for `config.model.batch_norm_stats`: 1 (global) or the device count."""
  return jax.device_count() if model_config.batch_norm_stats == 'per_device' else 1


def _winograd(channels: int, min_channels: int | None) -> bool:
  return min_channels is not None and channels >= min_channels


def create_generator(model_config, image_size: int, channels: int = 3) -> UNetGenerator:
  """The generator a config describes (`config.model`), for `image_size`² images.

  'auto' speed keys take their value for JAX's default backend (`runtime.conv_forms`).
  """
  forms = runtime.conv_forms(model_config)
  return UNetGenerator(
      out_channels=channels,
      num_levels=num_unet_levels(image_size),
      base_features=model_config.ngf,
      norm=model_config.norm,
      bottleneck_norm=model_config.bottleneck_norm,
      leaky_relu_slope=model_config.leaky_relu_slope,
      dropout_rate=model_config.dropout_rate,
      num_dropout_layers=model_config.num_dropout_layers,
      dropout_skip_innermost=model_config.dropout_skip_innermost,
      init_std=model_config.init_std,
      upsample_impl=forms.upsample_impl,
      matmul_max_pixels=forms.matmul_max_pixels,
      winograd_min_channels=forms.winograd_min_channels,
      batch_norm_groups=batch_norm_groups(model_config),
      dtype=jnp.dtype(model_config.compute_dtype),
  )


def create_discriminator(model_config) -> PatchDiscriminator:
  """The PatchGAN a config describes (`config.model.patch_size` in {1, 16, 70, 286})."""
  if model_config.patch_size not in PATCH_SIZE_TO_STRIDED_LAYERS:
    raise ValueError(f'config.model.patch_size={model_config.patch_size} is not one of '
                     f'{sorted(PATCH_SIZE_TO_STRIDED_LAYERS)}')
  return PatchDiscriminator(
      base_features=model_config.ndf,
      num_strided_layers=PATCH_SIZE_TO_STRIDED_LAYERS[model_config.patch_size],
      norm=model_config.norm,
      leaky_relu_slope=model_config.leaky_relu_slope,
      init_std=model_config.init_std,
      batch_norm_groups=batch_norm_groups(model_config),
      winograd_min_channels=runtime.conv_forms(model_config).winograd_min_channels,
      dtype=jnp.dtype(model_config.compute_dtype),
  )
