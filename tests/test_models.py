"""Architecture tests: exact parameter counts (the PyTorch reference's), receptive fields, shapes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

from configs import default as default_config
from pix2pix_jax import models


def count(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def abstract_variables(module, shape):
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(shape), train=True))


def test_unet256_has_the_reference_parameter_count():
  generator = models.create_generator(default_config.get_config().model, 256)
  variables = abstract_variables(generator, (1, 256, 256, 3))
  assert count(variables['params']) == 54_413_955


@pytest.mark.parametrize('size, levels', [(32, 5), (64, 6), (128, 7), (256, 8), (512, 9)])
def test_levels_follow_image_size(size, levels):
  assert models.num_unet_levels(size) == levels


@pytest.mark.parametrize('size', [16, 48, 100, 257, 0])
def test_bad_image_size_is_a_clear_error(size):
  with pytest.raises(ValueError, match=f'image size {size} is not a power of two'):
    models.num_unet_levels(size)


def test_no_norm_on_outermost_layer_and_bottleneck():
  names = set(abstract_variables(models.UNetGenerator(num_levels=8), (1, 256, 256, 3))['params'])
  assert 'down0_norm' not in names and 'down7_norm' not in names
  assert {f'down{i}_norm' for i in range(1, 7)} <= names
  with_bottleneck = models.UNetGenerator(num_levels=8, bottleneck_norm=True)
  assert 'down7_norm' in abstract_variables(with_bottleneck, (1, 256, 256, 3))['params']


# Counts of the reference's NLayerDiscriminator / PixelDiscriminator with BatchNorm, in_ch = 6.
@pytest.mark.parametrize('patch_size, params, logits_side', [
    (1, 9_024, 256), (16, 139_585, 126), (70, 2_768_705, 30), (286, 11_159_361, 6)])
def test_discriminator_counts_and_output_shape(patch_size, params, logits_side):
  config = default_config.get_config().model
  config.patch_size = patch_size
  discriminator = models.create_discriminator(config)
  variables = abstract_variables(discriminator, (1, 256, 256, 6))
  assert count(variables['params']) == params
  logits = jax.eval_shape(lambda v: discriminator.apply(v, jnp.zeros((1, 256, 256, 6)), train=True,
                                                         mutable=['batch_stats'])[0], variables)
  assert logits.shape == (1, logits_side, logits_side, 1)


@pytest.mark.parametrize('patch_size', [1, 16, 70, 286])
def test_receptive_field_by_gradient_support(patch_size):
  """Pixels of the pair that one central logit depends on form a patch_size² square."""
  size = 320 if patch_size == 286 else 128
  discriminator = models.PatchDiscriminator(
      base_features=4, num_strided_layers=models.PATCH_SIZE_TO_STRIDED_LAYERS[patch_size])
  x = jax.random.normal(jax.random.PRNGKey(1), (1, size, size, 6))
  variables = jax.jit(lambda: discriminator.init(jax.random.PRNGKey(0), x, train=True))()

  def central_logit(x):
    # Eval-mode BatchNorm is a per-channel affine map, so it does not couple pixels.
    logits = discriminator.apply(variables, x, train=False)
    return logits[0, logits.shape[1] // 2, logits.shape[2] // 2, 0]

  support = np.asarray(jnp.abs(jax.jit(jax.grad(central_logit))(x)).sum(axis=(0, 3)) > 0)
  rows, cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
  assert rows[-1] - rows[0] + 1 == patch_size
  assert cols[-1] - cols[0] + 1 == patch_size
  assert support.sum() == patch_size**2


def test_bad_patch_size_names_the_key():
  config = default_config.get_config().model
  config.patch_size = 34
  with pytest.raises(ValueError, match='config.model.patch_size=34'):
    models.create_discriminator(config)


def torch_conv_transpose(x, kernel):
  """PyTorch ConvTranspose2d(4, stride=2, padding=1) by definition: the adjoint of Conv2d."""
  def conv(y):
    return lax.conv_general_dilated(y, jnp.swapaxes(kernel, 2, 3), (2, 2), ((1, 1), (1, 1)),
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  n, h, w, _ = x.shape
  _, vjp = jax.vjp(conv, jnp.zeros((n, 2 * h, 2 * w, kernel.shape[3])))
  return vjp(x)[0]


@pytest.mark.parametrize('impl', models.UPSAMPLE_IMPLS)
@pytest.mark.parametrize('c_out', [3, 8])  # The subpixel form has a variant for C_out < 8.
def test_transposed_conv_is_the_pytorch_linear_map(impl, c_out):
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  x = jax.random.normal(keys[0], (2, 5, 7, 3))
  kernel = jax.random.normal(keys[1], (4, 4, 3, c_out))
  out = models.conv_transpose_4x4_stride2(x, kernel, impl)
  assert out.shape == (2, 10, 14, c_out)
  np.testing.assert_allclose(out, torch_conv_transpose(x, kernel), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('stride', [1, 2])
def test_matmul_conv_is_the_convolution_with_the_same_gradients(stride):
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(keys[0], (2, 6, 9, 5))
  kernel = jax.random.normal(keys[1], (4, 4, 5, 7))

  def conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, (stride, stride), ((1, 1), (1, 1)),
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  expected, expected_vjp = jax.vjp(conv, x, kernel)
  out, vjp = jax.vjp(lambda x, k: models.conv_4x4_matmul(x, k, stride), x, kernel)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  cotangent = jax.random.normal(keys[2], out.shape)
  for got, want in zip(vjp(cotangent), expected_vjp(cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('impl', ['matmul', 'adjoint'])
def test_hand_written_transposed_conv_vjps_are_the_pytorch_gradients(impl):
  # These impls have hand-written VJPs: check them against autodiff of the definition.
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  x = jax.random.normal(keys[0], (2, 3, 4, 6))
  kernel = jax.random.normal(keys[1], (4, 4, 6, 5))
  cotangent = jax.random.normal(keys[2], (2, 6, 8, 5))
  _, vjp = jax.vjp(lambda x, k: models.conv_transpose_4x4_stride2(x, k, impl), x, kernel)
  _, expected_vjp = jax.vjp(torch_conv_transpose, x, kernel)
  for got, want in zip(vjp(cotangent), expected_vjp(cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('c_out', [1, 2])
def test_few_output_conv_is_the_convolution_with_the_same_gradients(c_out):
  keys = jax.random.split(jax.random.PRNGKey(2), 3)
  x = jax.random.normal(keys[0], (2, 7, 5, 6))
  kernel = jax.random.normal(keys[1], (4, 4, 6, c_out))

  def conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  expected, expected_vjp = jax.vjp(conv, x, kernel)
  out, vjp = jax.vjp(models.conv_4x4_few_outputs, x, kernel)
  assert out.shape == (2, 6, 4, c_out)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  cotangent = jax.random.normal(keys[2], out.shape)
  for got, want in zip(vjp(cotangent), expected_vjp(cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('shape', [(2, 8, 6, 5, 7), (1, 9, 7, 3, 4), (1, 2, 3, 2, 1)])
def test_winograd_conv_is_the_convolution_with_the_same_gradients(stride, shape):
  n, h, w, c_in, c_out = shape  # Even and odd sides: partial output tiles at the edges.
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  x = jax.random.normal(keys[0], (n, h, w, c_in))
  kernel = jax.random.normal(keys[1], (4, 4, c_in, c_out))

  def conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, (stride, stride), ((1, 1), (1, 1)),
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  expected, expected_vjp = jax.vjp(conv, x, kernel)
  out, vjp = jax.vjp(lambda x, k: models.conv_4x4_winograd(x, k, stride), x, kernel)
  assert out.shape == expected.shape
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
  cotangent = jax.random.normal(keys[2], out.shape)
  for got, want in zip(vjp(cotangent), expected_vjp(cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('stride', [1, 2])
def test_winograd_conv_exports_with_a_symbolic_batch(stride):
  # `--mode=export` lowers the generator with batch size 'n' for CPU and CUDA.
  (batch,) = jax.export.symbolic_shape('n')
  conv = jax.jit(lambda x, k: models.conv_4x4_winograd(x, k, stride))
  exported = jax.export.export(conv, platforms=('cpu', 'cuda'))(
      jax.ShapeDtypeStruct((batch, 10, 8, 3), jnp.float32), jax.ShapeDtypeStruct((4, 4, 3, 2), jnp.float32))
  keys = jax.random.split(jax.random.PRNGKey(4), 2)
  x, kernel = jax.random.normal(keys[0], (3, 10, 8, 3)), jax.random.normal(keys[1], (4, 4, 3, 2))
  expected = lax.conv_general_dilated(x, kernel, (stride, stride), ((1, 1), (1, 1)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  out = jax.export.deserialize(exported.serialize()).call(x, kernel)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('network', ['generator', 'discriminator'])
def test_winograd_networks_compute_the_same_function(network):
  # winograd_min_channels=0: every 4×4 convolution but the logits' (and matmul levels') by Winograd.
  if network == 'generator':
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3), minval=-1, maxval=1)
    convs = models.UNetGenerator(num_levels=5, base_features=4)
  else:
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 6), minval=-1, maxval=1)
    convs = models.PatchDiscriminator(base_features=8)
  winograd = convs.clone(winograd_min_channels=0)
  variables = convs.init(jax.random.PRNGKey(1), x, train=True)
  assert (jax.tree.map(jnp.shape, winograd.init(jax.random.PRNGKey(1), x, train=True))
          == jax.tree.map(jnp.shape, variables))

  def loss_and_grads(module):
    def loss(params):
      out, _ = module.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'],
                            rngs={'dropout': jax.random.PRNGKey(3)})
      return jnp.sum(out * jnp.arange(out.size).reshape(out.shape))
    return jax.value_and_grad(loss)(variables['params'])

  (loss_a, grads_a), (loss_b, grads_b) = loss_and_grads(convs), loss_and_grads(winograd)
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  # Each gradient to 2e-5 of its largest entry (entries near 0 have no relative precision).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * np.abs(b).max()),
               grads_a, grads_b)


@pytest.mark.parametrize('impl, dtype, expected', [
    ('auto', 'float32', 64), ('auto', 'bfloat16', None), ('xla', 'float32', None),
    ('winograd', 'bfloat16', 64)])
def test_conv_impl_from_config(impl, dtype, expected):
  config = default_config.get_config().model
  config.conv_impl, config.compute_dtype = impl, dtype
  assert jax.default_backend() == 'cpu'  # 'auto' picks Winograd on CPU only.
  assert models.create_discriminator(config).winograd_min_channels == expected
  assert models.create_generator(config, 256).winograd_min_channels == expected
  config.conv_impl = 'fft'
  with pytest.raises(ValueError, match="config.model.conv_impl='fft'"):
    models.create_discriminator(config)


@pytest.mark.parametrize('impl, matmul_max_pixels', [('adjoint', 0), ('subpixel', 0), ('adjoint', 16 * 16)])
def test_generator_fast_forms_compute_the_same_function(impl, matmul_max_pixels):
  # Against plain autodiff of XLA's convolutions; 16² matmul pixels: all but the outermost level.
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3), minval=-1, maxval=1)
  convs = models.UNetGenerator(num_levels=5, base_features=4, upsample_impl='conv_transpose')
  matmuls = convs.clone(upsample_impl=impl, matmul_max_pixels=matmul_max_pixels)
  variables = convs.init(jax.random.PRNGKey(0), x, train=True)

  def loss_and_grads(generator):
    def loss(params):
      out, _ = generator.apply({**variables, 'params': params}, x, train=True,
                               rngs={'dropout': jax.random.PRNGKey(3)}, mutable=['batch_stats'])
      return jnp.sum(out * x)
    return jax.value_and_grad(loss)(variables['params'])

  (loss_a, grads_a), (loss_b, grads_b) = loss_and_grads(convs), loss_and_grads(matmuls)
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5), grads_a, grads_b)


def test_generator_output_range_noise_and_init():
  generator = models.UNetGenerator(num_levels=6, base_features=8)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3), minval=-1, maxval=1)
  variables = jax.jit(lambda: generator.init(jax.random.PRNGKey(0), x, train=True))()
  apply = jax.jit(lambda rng: generator.apply(variables, x, train=True, rngs={'dropout': rng},
                                              mutable=['batch_stats'])[0])
  out_a, out_b = apply(jax.random.PRNGKey(1)), apply(jax.random.PRNGKey(2))
  assert out_a.shape == (2, 64, 64, 3)
  assert float(jnp.max(jnp.abs(out_a))) <= 1.0
  assert not np.allclose(out_a, out_b)  # Dropout is the noise source in train mode...
  deterministic = generator.apply(variables, x, train=False)
  np.testing.assert_array_equal(deterministic, generator.apply(variables, x, train=False))
  # ... and the init is the paper's: conv weights N(0, 0.02), BatchNorm scales N(1, 0.02).
  kernels = np.concatenate([np.ravel(p['kernel']) for p in variables['params'].values() if 'kernel' in p])
  scales = np.concatenate([np.ravel(p['scale']) for p in variables['params'].values() if 'scale' in p])
  assert abs(kernels.mean()) < 2e-3 and 0.018 < kernels.std() < 0.022
  assert abs(scales.mean() - 1) < 5e-3 and 0.012 < scales.std() < 0.028


def test_instance_norm_has_no_running_stats_and_biased_convs():
  config = default_config.get_config().model
  config.norm = 'instance'
  variables = abstract_variables(models.create_discriminator(config), (1, 64, 64, 6))
  assert not variables.get('batch_stats')
  assert 'bias' in variables['params']['conv1']
  generator = models.create_generator(config, 64)
  assert not abstract_variables(generator, (1, 64, 64, 3)).get('batch_stats')


def test_grouped_batch_norm_is_batch_norm_of_each_group():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 5, 6)) * 3 + 1
  reference = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  grouped = models.GroupedBatchNorm(2, use_running_average=False)
  variables = reference.init(jax.random.PRNGKey(1), x)
  # Same parameters and statistics as nn.BatchNorm: checkpoints work with either.
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, grouped.init(jax.random.PRNGKey(1), x))
  out, updated = grouped.apply(variables, x, mutable=['batch_stats'])
  halves = [reference.apply(variables, x[i:i + 2], mutable=['batch_stats']) for i in (0, 2)]
  np.testing.assert_allclose(out, jnp.concatenate([h[0] for h in halves]), rtol=1e-4, atol=1e-4)
  for name in ('mean', 'var'):  # Running statistics move by the groups' mean.
    expected = (halves[0][1]['batch_stats'][name] + halves[1][1]['batch_stats'][name]) / 2
    np.testing.assert_allclose(updated['batch_stats'][name], expected, rtol=1e-5, atol=1e-6)
  one_group, _ = models.GroupedBatchNorm(1, use_running_average=False).apply(variables, x, mutable=['batch_stats'])
  np.testing.assert_allclose(one_group, reference.apply(variables, x, mutable=['batch_stats'])[0],
                             rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match='does not split into 3 BatchNorm groups'):
    models.GroupedBatchNorm(3, use_running_average=False).apply(variables, x, mutable=['batch_stats'])
