"""Each convolution form of pix2pix_jax/kernels is the linear map it stands for, gradients too."""

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

from pix2pix_jax import kernels, models
from pix2pix_jax.kernels import logits, matmul, winograd


def torch_conv(x, kernel, stride):
  """PyTorch's Conv2d(4, stride, padding=1) by definition."""
  return lax.conv_general_dilated(
      x, kernel, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


def torch_conv_transpose(x, kernel):
  """PyTorch ConvTranspose2d(4, stride=2, padding=1) by definition: the adjoint of Conv2d."""
  n, h, w, _ = x.shape
  _, vjp = jax.vjp(
      lambda y: torch_conv(y, jnp.swapaxes(kernel, 2, 3), 2),
      jnp.zeros((n, 2 * h, 2 * w, kernel.shape[3])),
  )
  return vjp(x)[0]


def assert_same_map_and_vjp(
    form, definition, x_shape, kernel_shape, seed, *, rtol, atol, vjp_rtol=1e-4, vjp_atol=1e-4
):
  """`form` and `definition` agree on random (x, kernel), and so do their VJPs."""
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  x, kernel = jax.random.normal(keys[0], x_shape), jax.random.normal(keys[1], kernel_shape)
  expected, expected_vjp = jax.vjp(definition, x, kernel)
  out, vjp = jax.vjp(form, x, kernel)
  assert out.shape == expected.shape
  np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol)
  cotangent = jax.random.normal(keys[2], out.shape)
  for got, want in zip(vjp(cotangent), expected_vjp(cotangent)):
    np.testing.assert_allclose(got, want, rtol=vjp_rtol, atol=vjp_atol)


@pytest.mark.parametrize('impl', kernels.UPSAMPLE_IMPLS)
@pytest.mark.parametrize('c_out', [3, 8])  # The subpixel form has a variant for C_out < 8.
def test_transposed_conv_is_the_pytorch_linear_map(impl, c_out):
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  x = jax.random.normal(keys[0], (2, 5, 7, 3))
  kernel = jax.random.normal(keys[1], (4, 4, 3, c_out))
  out = kernels.ConvImpl(upsample=impl).conv_transpose(x, kernel)
  assert out.shape == (2, 10, 14, c_out)
  np.testing.assert_allclose(out, torch_conv_transpose(x, kernel), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('impl', ['matmul', 'adjoint'])
def test_hand_written_transposed_conv_vjps_are_the_pytorch_gradients(impl):
  # These impls have hand-written VJPs: check them against autodiff of the definition.
  assert_same_map_and_vjp(
      kernels.ConvImpl(upsample=impl).conv_transpose,
      torch_conv_transpose,
      (2, 3, 4, 6),
      (4, 4, 6, 5),
      seed=1,
      rtol=1e-5,
      atol=1e-5,
  )


def torch_conv_transpose_3x3(x, kernel):
  """PyTorch ConvTranspose2d(3, stride=2, padding=1, output_padding=1) by definition: the adjoint
  of Conv2d(3, stride=2, padding=1) from 2H×2W."""
  n, h, w, _ = x.shape
  conv = lambda y: lax.conv_general_dilated(
      y,
      jnp.swapaxes(kernel, 2, 3),
      (2, 2),
      ((1, 1), (1, 1)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )
  _, vjp = jax.vjp(conv, jnp.zeros((n, 2 * h, 2 * w, kernel.shape[3])))
  return vjp(x)[0]


@pytest.mark.parametrize('impl', kernels.UPSAMPLE_IMPLS)  # 'adjoint' has a 3×3 form, others XLA's.
def test_resnet_transposed_conv_is_the_pytorch_map_with_its_gradients(impl):
  assert_same_map_and_vjp(
      kernels.ConvImpl(upsample=impl).conv_transpose_3x3,
      lambda x, k: torch_conv_transpose_3x3(x, k),
      (2, 3, 5, 6),
      (3, 3, 6, 4),
      seed=2,
      rtol=1e-5,
      atol=1e-5,
  )


def test_unknown_transposed_conv_impl_is_named():
  with pytest.raises(ValueError, match="unknown transposed-conv impl 'fft'"):
    kernels.ConvImpl(upsample='fft')


@pytest.mark.parametrize('stride', [1, 2])
def test_matmul_conv_is_the_convolution_with_the_same_gradients(stride):
  assert_same_map_and_vjp(
      lambda x, k: matmul.conv_4x4_matmul(x, k, stride),
      lambda x, k: torch_conv(x, k, stride),
      (2, 6, 9, 5),
      (4, 4, 5, 7),
      seed=0,
      rtol=1e-5,
      atol=1e-5,
  )


@pytest.mark.parametrize('c_out', [1, 2])
def test_few_output_conv_is_the_convolution_with_the_same_gradients(c_out):
  assert_same_map_and_vjp(
      logits.conv_4x4_few_outputs,
      lambda x, k: torch_conv(x, k, 1),
      (2, 7, 5, 6),
      (4, 4, 6, c_out),
      seed=2,
      rtol=1e-5,
      atol=1e-5,
  )


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('shape', [(2, 8, 6, 5, 7), (1, 9, 7, 3, 4), (1, 2, 3, 2, 1)])
def test_winograd_conv_is_the_convolution_with_the_same_gradients(stride, shape):
  n, h, w, c_in, c_out = shape  # Even and odd sides: partial output tiles at the edges.
  assert_same_map_and_vjp(
      lambda x, k: winograd.conv_4x4_winograd(x, k, stride),
      lambda x, k: torch_conv(x, k, stride),
      (n, h, w, c_in),
      (4, 4, c_in, c_out),
      seed=3,
      rtol=1e-5,
      atol=1e-4,
      vjp_rtol=1e-5,
  )


@pytest.mark.parametrize('stride', [1, 2])
def test_winograd_conv_exports_with_a_symbolic_batch(stride):
  # `--mode=export` lowers the generator with batch size 'n' for CPU and CUDA.
  (batch,) = jax.export.symbolic_shape('n')
  conv = jax.jit(lambda x, k: winograd.conv_4x4_winograd(x, k, stride))
  exported = jax.export.export(conv, platforms=('cpu', 'cuda'))(
      jax.ShapeDtypeStruct((batch, 10, 8, 3), jnp.float32),
      jax.ShapeDtypeStruct((4, 4, 3, 2), jnp.float32),
  )
  keys = jax.random.split(jax.random.PRNGKey(4), 2)
  x, kernel = jax.random.normal(keys[0], (3, 10, 8, 3)), jax.random.normal(keys[1], (4, 4, 3, 2))
  out = jax.export.deserialize(exported.serialize()).call(x, kernel)
  np.testing.assert_allclose(out, torch_conv(x, kernel, stride), rtol=1e-5, atol=1e-4)


def loss_and_grads(module, variables, x):
  """A loss that weighs every output differently, and its gradients with respect to the params."""

  def loss(params):
    out, _ = module.apply(
        {**variables, 'params': params},
        x,
        train=True,
        mutable=['batch_stats'],
        rngs={'dropout': jax.random.PRNGKey(3)},
    )
    return jnp.sum(out * jnp.arange(out.size).reshape(out.shape))

  return jax.value_and_grad(loss)(variables['params'])


# Forms against plain autodiff of XLA's convolutions (the networks' default).
# winograd_min_channels=0: every 4×4 convolution but the logits' (and matmul levels') by Winograd;
# 16² matmul pixels: all but the outermost level at 32².
FAST_FORMS = {
    'winograd': kernels.ConvImpl(winograd_min_channels=0),
    'adjoint': kernels.ConvImpl(upsample='adjoint'),
    'subpixel': kernels.ConvImpl(upsample='subpixel'),
    'matmul': kernels.ConvImpl(
        upsample='adjoint', matmul_max_pixels=16 * 16, few_outputs_grad=True
    ),
}


@pytest.mark.parametrize(
    'network, form',
    [
        ('generator', 'winograd'),
        ('generator', 'adjoint'),
        ('generator', 'subpixel'),
        ('generator', 'matmul'),
        ('discriminator', 'winograd'),
        ('discriminator', 'matmul'),
        ('resnet', 'adjoint'),
    ],
)
def test_networks_compute_the_same_function_with_every_form(network, form):
  if network == 'generator':
    channels, xla_network = 3, models.UNetGenerator(num_levels=5, base_features=4)
  elif network == 'resnet':
    channels, xla_network = 3, models.ResnetGenerator(num_blocks=2, base_features=4)
  else:
    channels, xla_network = 6, models.PatchDiscriminator(base_features=8)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, channels), minval=-1, maxval=1)
  variables = xla_network.init(jax.random.PRNGKey(1), x, train=True)
  fast_network = xla_network.clone(conv_impl=FAST_FORMS[form])
  assert jax.tree.map(
      jnp.shape, fast_network.init(jax.random.PRNGKey(1), x, train=True)
  ) == jax.tree.map(jnp.shape, variables)
  (loss_a, grads_a), (loss_b, grads_b) = (
      loss_and_grads(xla_network, variables, x),
      loss_and_grads(fast_network, variables, x),
  )
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  # Each gradient to 2e-5 of its largest entry (entries near 0 have no relative precision).
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * np.abs(b).max()),
      grads_a,
      grads_b,
  )
