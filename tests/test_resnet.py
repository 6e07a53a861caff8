"""The ResNet generators (models.ResnetGenerator): the reference's, layer for layer; they train."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip('torch')

from configs import default as default_config  # pylint: disable=g-import-not-at-top
from configs import test as test_config
from pix2pix_jax import checkpointing, inference, layers, models, predict, train
from pix2pix_jax.data import pipeline
from reference import pytorch_peer

KEYS = {'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(1)}


def model_config(**overrides):
  config = default_config.get_config().model
  config.update(overrides)
  return config


def abstract_params(module, shape):
  return jax.eval_shape(lambda: module.init(KEYS, jnp.zeros(shape), train=True))['params']


@pytest.mark.parametrize(
    'generator, norm, expected',
    [
        ('resnet_9blocks', 'batch', 11_383_427),
        ('resnet_9blocks', 'instance', 11_378_179),
        ('resnet_6blocks', 'batch', 7_841_411),
        ('resnet_6blocks', 'instance', 7_837_699),
    ],
)
def test_parameter_counts_at_256_equal_the_reference(generator, norm, expected):
  ours = models.create_generator(model_config(generator=generator, norm=norm), 256)
  count = sum(x.size for x in jax.tree.leaves(abstract_params(ours, (1, 256, 256, 3))))
  with torch.device('meta'):  # Shapes only: no 11M-parameter init.
    peer = pytorch_peer.create_generator(256, 64, norm, generator=generator)
  assert count == pytorch_peer.count_parameters(peer) == expected


def test_non_square_multiple_of_4_keeps_its_shape_and_other_sides_are_named():
  generator = models.ResnetGenerator(num_blocks=1, base_features=4, dropout_rate=0.0)
  x = jnp.zeros((1, 20, 36, 3))
  variables = generator.init(KEYS, x, train=False)
  out = generator.apply(variables, jnp.ones((2, 20, 36, 3)), train=False)
  assert out.shape == (2, 20, 36, 3) and out.dtype == jnp.float32
  with pytest.raises(ValueError, match=r'multiples of 4, at least 8, got 20×34'):
    generator.apply(variables, jnp.zeros((1, 20, 34, 3)), train=False)


@pytest.mark.parametrize('norm', ['batch', 'instance'])
def test_convolutions_have_biases_only_with_instance_norm(norm):
  params = abstract_params(
      models.ResnetGenerator(num_blocks=1, base_features=4, norm=norm), (1, 16, 16, 3)
  )
  flat = flax.traverse_util.flatten_dict(params, sep='/')
  convs = ['stem', 'down0', 'down1', 'block0/conv0', 'block0/conv1', 'up0', 'up1']
  for conv in convs:
    assert (f'{conv}/bias' in flat) == (norm == 'instance'), conv
    assert (f'{conv}_norm/scale' in flat) == (norm == 'batch'), conv  # InstanceNorm: no affine.
  assert 'out/bias' in flat  # The last conv, with no norm after it, always has one.


def test_conv_transpose_3x3_is_torchs_with_the_documented_weight_mapping():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 7, 6)).astype(np.float32)
  weight = rng.normal(size=(6, 4, 3, 3)).astype(np.float32)  # PyTorch: (C_in, C_out, 3, 3).
  bias = rng.normal(size=(4,)).astype(np.float32)
  expected = (
      torch.nn.functional.conv_transpose2d(
          torch.from_numpy(x).permute(0, 3, 1, 2),
          torch.from_numpy(weight),
          torch.from_numpy(bias),
          stride=2,
          padding=1,
          output_padding=1,
      )
      .permute(0, 2, 3, 1)
      .numpy()
  )

  def ours(kernel):
    return np.asarray(
        layers.ConvTranspose3x3(4).apply({'params': {'kernel': kernel, 'bias': bias}}, x)
    )

  assert expected.shape == (2, 10, 14, 4)
  np.testing.assert_allclose(ours(weight.transpose(2, 3, 0, 1)), expected, atol=1e-5)
  # The mapping is not flipped: a flipped kernel computes something else.
  assert not np.allclose(ours(weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)), expected, atol=1e-2)


def copy_into_peer(peer, params):
  """Our ResnetGenerator's params into the peer's `pytorch_peer.ResnetGenerator`."""
  modules = pytorch_peer.resnet_modules(peer)
  written = 0
  with torch.no_grad():
    for path, value in flax.traverse_util.flatten_dict(params, sep='/').items():
      module_path, name = path.rsplit('/', 1)
      module = modules[module_path]
      tensor = torch.from_numpy(np.array(value))
      # Ours (kh, kw, in, out); Conv2d (out, in, kh, kw); ConvTranspose2d (in, out, kh, kw).
      if name == 'kernel':
        tensor = tensor.permute(
            (2, 3, 0, 1) if isinstance(module, torch.nn.ConvTranspose2d) else (3, 2, 0, 1)
        )
      target = {'kernel': module.weight, 'scale': module.weight, 'bias': module.bias}[name]
      target.copy_(tensor)
      written += tensor.numel()
  assert written == pytorch_peer.count_parameters(peer)  # Every peer parameter came from ours.


@pytest.mark.parametrize('norm', ['batch', 'instance'])
def test_forward_equals_the_peers_with_copied_weights(norm):
  """Train mode (BatchNorm with the batch's statistics), dropout off, a non-square 24×40."""
  ours = models.ResnetGenerator(num_blocks=2, base_features=4, norm=norm, dropout_rate=0.0)
  x = np.random.default_rng(0).uniform(-1, 1, (2, 24, 40, 3)).astype(np.float32)
  variables = ours.init(KEYS, jnp.asarray(x), train=True)
  expected, _ = ours.apply(variables, jnp.asarray(x), train=True, mutable=['batch_stats'])
  peer = pytorch_peer.ResnetGenerator(
      3, 3, 4, pytorch_peer.get_norm_layer(norm), use_dropout=False, n_blocks=2
  ).train()
  copy_into_peer(peer, variables['params'])
  with torch.no_grad():
    out = peer(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  assert np.abs(np.asarray(expected)).max() > 0.05  # Not a trivially small output.
  np.testing.assert_allclose(np.asarray(expected), out, atol=2e-5)


def test_dropout_rate_puts_one_dropout_in_every_block():
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)), jnp.float32)

  def outputs(rate):
    generator = models.ResnetGenerator(num_blocks=2, base_features=4, dropout_rate=rate)
    variables = generator.init(KEYS, x, train=False)
    return [
        np.asarray(
            generator.apply(
                variables,
                x,
                train=True,
                mutable=['batch_stats'],
                rngs={'dropout': jax.random.PRNGKey(k)},
            )[0]
        )
        for k in (0, 1)
    ]

  with_dropout, without = outputs(0.5), outputs(0.0)
  assert not np.allclose(*with_dropout)  # Noise: two dropout keys, two outputs.
  np.testing.assert_array_equal(*without)


def resnet_test_config():
  config = test_config.get_config()
  config.model.generator = 'resnet_6blocks'
  config.model.ngf = 4
  return config


def test_resnet_6blocks_training_lowers_l1():
  config = resnet_test_config()
  config.optim.learning_rate = 1e-3
  config.model.dropout_rate = 0.0  # Fitting one batch: without noise, as GAN Compression trains.
  _, init_fn, step_fn = train.create_train_functions(config, steps_per_epoch=8, num_train_steps=100)
  state, step = jax.jit(init_fn)(jax.random.PRNGKey(0)), jax.jit(step_fn, donate_argnums=0)
  source = pipeline.create_source(config.data, 'eval', seed=0)
  batch = next(pipeline.eval_batches(source, config.data, batch_size=2))
  batch = {'input': batch['input'], 'target': batch['target']}
  l1 = []
  for _ in range(30):
    state, metrics = step(state, batch)
    l1.append(float(metrics['g_l1']))
  assert np.mean(l1[-5:]) < 0.6 * np.mean(l1[:3]), l1


def test_resnet_run_resumes_and_predicts_at_native_resolution(tmp_path):
  config = resnet_test_config()
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  config.num_train_steps = 3
  state = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert int(state.step) == 3
  assert sorted(
      int(p.name) for p in (tmp_path / 'run' / 'checkpoints').iterdir() if p.name.isdigit()
  ) == [2, 3]
  # Native resolution pads to a multiple of 4 (not of the U-Net's 32) and crops back.
  Image.fromarray(np.full((37, 50, 3), 128, np.uint8)).save(tmp_path / 'odd.png')
  written = predict.predict(
      config,
      str(tmp_path / 'run'),
      str(tmp_path / 'odd.png'),
      str(tmp_path / 'out'),
      resolution='native',
  )
  assert Image.open(written[0]).size == (50, 37)


def test_unet_checkpoint_is_refused_by_a_resnet_config(trained_workdir):
  config = test_config.get_config()
  config.model.generator = 'resnet_9blocks'
  with pytest.raises(
      checkpointing.CheckpointMismatchError,
      match="model.generator: checkpoint 'unet', config 'resnet_9blocks'",
  ):
    inference.restore_trained_generator(config, str(trained_workdir))


def test_side_multiple_is_what_native_prediction_pads_to():
  assert models.side_multiple(models.UNetGenerator(num_levels=5)) == 32
  assert (
      models.side_multiple(models.create_generator(model_config(generator='resnet_9blocks'), 256))
      == 4
  )
