"""Faster forms of the networks' 4×4 convolutions, and `ConvImpl`, the one value that picks them.

Every form computes the same linear map with the same parameters as XLA's own convolutions
(xla.py), so a `ConvImpl` changes speed and float rounding, never the model: one module per form,
each saying on which backend it is faster and why, each checked against XLA's form in
tests/test_kernels.py. The networks take a `ConvImpl` as a field (default: XLA's own forms) and
never name a form; `runtime.conv_impl` builds the one a config asks for on a backend.
"""

import dataclasses

import jax

from pix2pix_jax.kernels import conv_transpose, matmul, xla
from pix2pix_jax.kernels.logits import conv_4x4_few_outputs
from pix2pix_jax.kernels.winograd import conv_4x4_winograd

# Forms of the transposed convolution, by `config.model.upsample_impl` value.
_TRANSPOSED = {
    'adjoint': conv_transpose.conv_transpose_adjoint,
    'subpixel': conv_transpose.conv_transpose_subpixel,
    'conv_transpose': xla.conv_transpose_4x4,
    'matmul': matmul.conv_transpose_4x4_matmul,
}
UPSAMPLE_IMPLS = tuple(_TRANSPOSED)


@dataclasses.dataclass(frozen=True)
class ConvImpl:
  """How the networks compute their 4×4 convolutions (frozen and hashable: a module field).

  Attributes:
    upsample: the transposed convolutions' form, one of UPSAMPLE_IMPLS: 'conv_transpose' (XLA's
      own), 'adjoint', 'subpixel' (conv_transpose.py) or 'matmul' (matmul.py).
    matmul_max_pixels: convolutions whose small side (a conv's output, a transposed conv's input)
      has at most this many pixels per image are matrix products (matmul.py); 0: none.
    winograd_min_channels: other convolutions with at least this many input channels use Winograd
      (winograd.py); None: none.
    few_outputs_grad: the logits layer's custom kernel gradient (logits.py).
  """

  upsample: str = 'conv_transpose'
  matmul_max_pixels: int = 0
  winograd_min_channels: int | None = None
  few_outputs_grad: bool = False

  def __post_init__(self):
    if self.upsample not in _TRANSPOSED:
      raise ValueError(
          f'unknown transposed-conv impl {self.upsample!r}; expected one of {UPSAMPLE_IMPLS}'
      )

  def conv(self, x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """`xla.conv_4x4(x, kernel, stride)` (arguments and result) by matmul, Winograd or XLA."""
    _, h, w, c_in = x.shape
    if ((h - 2) // stride + 1) * ((w - 2) // stride + 1) <= self.matmul_max_pixels:
      return matmul.conv_4x4_matmul(x, kernel, stride)
    if self.winograd_min_channels is not None and c_in >= self.winograd_min_channels:
      return conv_4x4_winograd(x, kernel, stride)
    return xla.conv_4x4(x, kernel, stride)

  def conv_transpose(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """PyTorch's `ConvTranspose2d(kernel_size=4, stride=2, padding=1)`: doubles H and W.

    Args:
      x: (N, H, W, C_in).
      kernel: (4, 4, C_in, C_out); `kernel[ky, kx, c_in, c_out]` is the PyTorch weight
        `W[c_in, c_out, ky, kx]`.

    Returns:
      (N, 2H, 2W, C_out).
    """
    small = x.shape[1] * x.shape[2] <= self.matmul_max_pixels
    return _TRANSPOSED['matmul' if small else self.upsample](x, kernel)

  def conv_transpose_3x3(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """PyTorch's `ConvTranspose2d(3, stride=2, padding=1, output_padding=1)` (the ResNet's).

    'adjoint' has a 3×3 form (conv_transpose.py); the other `upsample` forms are 4×4 only, so
    they compute this by XLA's transposed convolution.

    Args:
      x: (N, H, W, C_in).
      kernel: (3, 3, C_in, C_out), the PyTorch weight's `W[c_in, c_out, ky, kx]`.

    Returns:
      (N, 2H, 2W, C_out).
    """
    if self.upsample == 'adjoint':
      return conv_transpose.conv_transpose_adjoint(x, kernel)
    return xla.conv_transpose_3x3(x, kernel)

  def logits(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 4×4 stride-1 convolution (padding 1) to few output channels: the PatchGAN's last layer.

    Args:
      x: (N, H, W, C_in).
      kernel: (4, 4, C_in, C_out).

    Returns:
      (N, H - 1, W - 1, C_out).
    """
    if self.few_outputs_grad:
      return conv_4x4_few_outputs(x, kernel)
    return xla.conv_4x4(x, kernel, 1)
