"""Architecture tests: exact parameter counts (the PyTorch reference's), receptive fields, shapes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default as default_config
from pix2pix_jax import layers, models


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
@pytest.mark.parametrize(
    'patch_size, params, logits_side',
    [(1, 9_024, 256), (16, 139_585, 126), (70, 2_768_705, 30), (286, 11_159_361, 6)],
)
def test_discriminator_counts_and_output_shape(patch_size, params, logits_side):
  config = default_config.get_config().model
  config.patch_size = patch_size
  discriminator = models.create_discriminator(config)
  variables = abstract_variables(discriminator, (1, 256, 256, 6))
  assert count(variables['params']) == params
  logits = jax.eval_shape(
      lambda v: discriminator.apply(
          v, jnp.zeros((1, 256, 256, 6)), train=True, mutable=['batch_stats']
      )[0],
      variables,
  )
  assert logits.shape == (1, logits_side, logits_side, 1)


@pytest.mark.parametrize('patch_size', [1, 16, 70, 286])
def test_receptive_field_by_gradient_support(patch_size):
  """Pixels of the pair that one central logit depends on form a patch_size² square."""
  size = 320 if patch_size == 286 else 128
  discriminator = models.PatchDiscriminator(
      base_features=4, num_strided_layers=models.PATCH_SIZE_TO_STRIDED_LAYERS[patch_size]
  )
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


def test_generator_output_range_noise_and_init():
  generator = models.UNetGenerator(num_levels=6, base_features=8)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3), minval=-1, maxval=1)
  variables = jax.jit(lambda: generator.init(jax.random.PRNGKey(0), x, train=True))()
  apply = jax.jit(
      lambda rng: generator.apply(
          variables, x, train=True, rngs={'dropout': rng}, mutable=['batch_stats']
      )[0]
  )
  out_a, out_b = apply(jax.random.PRNGKey(1)), apply(jax.random.PRNGKey(2))
  assert out_a.shape == (2, 64, 64, 3)
  assert float(jnp.max(jnp.abs(out_a))) <= 1.0
  assert not np.allclose(out_a, out_b)  # Dropout is the noise source in train mode...
  deterministic = generator.apply(variables, x, train=False)
  np.testing.assert_array_equal(deterministic, generator.apply(variables, x, train=False))
  # ... and the init is the paper's: conv weights N(0, 0.02), BatchNorm scales N(1, 0.02).
  kernels = np.concatenate(
      [np.ravel(p['kernel']) for p in variables['params'].values() if 'kernel' in p]
  )
  scales = np.concatenate(
      [np.ravel(p['scale']) for p in variables['params'].values() if 'scale' in p]
  )
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
  grouped = layers.GroupedBatchNorm(2, use_running_average=False)
  variables = reference.init(jax.random.PRNGKey(1), x)
  # Same parameters and statistics as nn.BatchNorm: checkpoints work with either.
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
      jnp.shape, grouped.init(jax.random.PRNGKey(1), x)
  )
  out, updated = grouped.apply(variables, x, mutable=['batch_stats'])
  halves = [reference.apply(variables, x[i : i + 2], mutable=['batch_stats']) for i in (0, 2)]
  np.testing.assert_allclose(out, jnp.concatenate([h[0] for h in halves]), rtol=1e-4, atol=1e-4)
  for name in ('mean', 'var'):  # Running statistics move by the groups' mean.
    expected = (halves[0][1]['batch_stats'][name] + halves[1][1]['batch_stats'][name]) / 2
    if name == 'var':  # nn.BatchNorm's moves by the biased variance, ours by PyTorch's unbiased.
      n = 2 * 3 * 5
      expected = 0.9 * variables['batch_stats']['var'] + (
          expected - 0.9 * variables['batch_stats']['var']
      ) * n / (n - 1)
    np.testing.assert_allclose(updated['batch_stats'][name], expected, rtol=1e-5, atol=1e-6)
  one_group, _ = layers.GroupedBatchNorm(1, use_running_average=False).apply(
      variables, x, mutable=['batch_stats']
  )
  np.testing.assert_allclose(
      one_group, reference.apply(variables, x, mutable=['batch_stats'])[0], rtol=1e-4, atol=1e-4
  )
  with pytest.raises(ValueError, match='does not split into 3 BatchNorm groups'):
    layers.GroupedBatchNorm(3, use_running_average=False).apply(
        variables, x, mutable=['batch_stats']
    )


@pytest.mark.parametrize('shape', [(1, 2, 2, 8), (4, 6, 5, 3)])  # The U-Net's 2×2 level at batch 1.
def test_batch_norm_is_pytorchs_running_statistics_included(shape):
  torch = pytest.importorskip('torch')
  x = np.array(jax.random.normal(jax.random.PRNGKey(0), (3,) + shape) * 2 + 0.5)  # Writable.
  ours = layers.norm_layer('batch', train=True, init_std=0.02, dtype=jnp.float32, name='bn')
  variables = ours.init(jax.random.PRNGKey(1), x[0])
  reference = torch.nn.BatchNorm2d(shape[-1], momentum=0.1, eps=1e-5)
  with torch.no_grad():
    reference.weight.copy_(torch.from_numpy(np.array(variables['params']['scale'])))
  for step in range(3):  # Train-mode calls: each updates the running statistics.
    out, updates = ours.apply(variables, x[step], mutable=['batch_stats'])
    variables = {**variables, **updates}
    expected = reference(torch.from_numpy(x[step]).permute(0, 3, 1, 2))
    np.testing.assert_allclose(
        out, expected.permute(0, 2, 3, 1).detach().numpy(), rtol=1e-5, atol=1e-5
    )
  np.testing.assert_allclose(variables['batch_stats']['mean'], reference.running_mean, rtol=1e-5)
  np.testing.assert_allclose(variables['batch_stats']['var'], reference.running_var, rtol=1e-5)
  test_mode = layers.norm_layer('batch', train=False, init_std=0.02, dtype=jnp.float32, name='bn')
  reference.eval()
  expected = reference(torch.from_numpy(x[0]).permute(0, 3, 1, 2))
  np.testing.assert_allclose(
      test_mode.apply(variables, x[0]),
      expected.permute(0, 2, 3, 1).detach().numpy(),
      rtol=1e-5,
      atol=1e-5,
  )


def test_unet_takes_multiples_of_its_size_and_names_the_sizes_otherwise():
  generator = models.UNetGenerator(num_levels=2, base_features=4)
  variables = generator.init(jax.random.PRNGKey(0), np.zeros((1, 4, 4, 3)), train=False)
  assert generator.apply(variables, np.zeros((1, 8, 12, 3)), train=False).shape == (1, 8, 12, 3)
  with pytest.raises(
      ValueError, match='2-level U-Net takes images whose sides are multiples of 4, got 8×10'
  ):
    generator.apply(variables, np.zeros((1, 8, 10, 3)), train=False)
