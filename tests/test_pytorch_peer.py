"""The PyTorch peer (reference/pytorch_peer.py) is the same model as ours: counts, shapes, a step."""

import jax
import jax.numpy as jnp
import pytest

torch = pytest.importorskip('torch')

from configs import default as default_config  # pylint: disable=g-import-not-at-top
from pix2pix_jax import models
from reference import pytorch_peer  # pylint: disable=g-import-not-at-top


def model_config(**overrides):
  config = default_config.get_config().model
  config.update(overrides)
  return config


def our_variables(module, shape):
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(shape), train=True))


def our_count(module, shape) -> int:
  return sum(x.size for x in jax.tree.leaves(our_variables(module, shape)['params']))


@pytest.mark.parametrize('norm, expected', [('batch', 54_413_955), ('instance', None)])
def test_generator_parameter_count_equals_ours(norm, expected):
  ours = our_count(models.create_generator(model_config(norm=norm), 256), (1, 256, 256, 3))
  with torch.device('meta'):  # Shapes only: no 54M-parameter init.
    peer = pytorch_peer.create_generator(256, 64, norm)
  assert pytorch_peer.count_parameters(peer) == ours
  if expected is not None:
    assert ours == expected


@pytest.mark.parametrize('norm', ['batch', 'instance'])
@pytest.mark.parametrize('patch_size', [1, 16, 70, 286])
def test_discriminator_parameter_count_equals_ours(patch_size, norm):
  ours = our_count(
      models.create_discriminator(model_config(patch_size=patch_size, norm=norm)), (1, 256, 256, 6)
  )
  peer = pytorch_peer.create_discriminator(patch_size, 64, norm)
  assert pytorch_peer.count_parameters(peer) == ours
  if (patch_size, norm) == (70, 'batch'):
    assert ours == 2_768_705


@pytest.mark.parametrize('patch_size', [1, 16, 70, 286])
def test_discriminator_output_shape_equals_ours(patch_size):
  # 64² is too small for the 286² PatchGAN (its logits would be 0×0), so it gets its smallest size.
  size = 96 if patch_size == 286 else 64
  discriminator = models.create_discriminator(model_config(patch_size=patch_size, ndf=8))
  variables = our_variables(discriminator, (2, size, size, 6))
  ours = jax.eval_shape(
      lambda v: discriminator.apply(
          v, jnp.zeros((2, size, size, 6)), train=True, mutable=['batch_stats']
      )[0],
      variables,
  )
  peer = pytorch_peer.create_discriminator(patch_size, 8)
  with torch.no_grad():
    logits = peer(torch.zeros(2, 6, size, size))
  n, c, h, w = logits.shape
  assert (n, h, w, c) == ours.shape


@pytest.fixture
def one_torch_thread():
  # Tiny nets gain nothing from threads, and on a busy CI core OpenMP's spinning makes them slower.
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def named_parameters(*nets) -> dict:
  return {f'{type(net).__name__}.{name}': p for net in nets for name, p in net.named_parameters()}


def test_one_peer_step_updates_both_networks(one_torch_thread):
  torch.manual_seed(0)
  net_g = pytorch_peer.create_generator(32, ngf=4)
  net_d = pytorch_peer.create_discriminator(70, ndf=4)
  before = {name: p.detach().clone() for name, p in named_parameters(net_g, net_d).items()}
  peer = pytorch_peer.Pix2PixPeer(net_g, net_d)
  real_a, real_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
  losses = peer.optimize_parameters(real_a, real_b)
  assert all(torch.isfinite(v) for v in losses.values())
  unchanged = [
      name for name, p in named_parameters(net_g, net_d).items() if torch.equal(p, before[name])
  ]
  assert not unchanged
  # As in the reference, D stays frozen after the G update until the next D update unfreezes it.
  assert not any(p.requires_grad for p in net_d.parameters())


def test_time_pytorch_step_reports_and_skips_cpu_bf16(one_torch_thread):
  result = pytorch_peer.time_pytorch_step(
      image_size=32,
      batch_size=1,
      ngf=4,
      ndf=4,
      patch_size=16,
      norm='instance',
      steps=1,
      warmup=1,
      device='cpu',
  )
  assert result['seconds_per_step'] > 0 and result['images_per_s'] > 0
  assert result['device'] == 'cpu' and result['torch'] == torch.__version__
  skipped = pytorch_peer.time_pytorch_step(
      image_size=32,
      batch_size=1,
      ngf=4,
      ndf=4,
      patch_size=16,
      norm='batch',
      steps=1,
      device='cpu',
      dtype='bfloat16',
  )
  assert skipped['steps_per_s'] is None and 'skipped' in skipped
