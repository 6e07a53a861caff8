"""The PyTorch reference's weights in and out (pix2pix_jax/torch_weights.py), against the peer.

The peer (reference/pytorch_peer.py) builds the reference's networks, and its `state_dict()` keys
are the reference's (checked below against keys written out from its models/networks.py). For
every architecture: its weights (random, every tensor distinct, BatchNorm statistics from data)
-> --mode=import -> --config.export.format=pytorch -> the peer, strict: bit-identical tensors; and
the imported generator gives the peer's outputs within OUTPUT_ATOL, in the deterministic and the
paper's (dropout off) test modes.
"""

import copy
import functools
import json
import pathlib
import shlex
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from configs import test as test_config  # pylint: disable=g-import-not-at-top
from PIL import Image  # pylint: disable=g-import-not-at-top
from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
from pix2pix_jax import checkpointing, evaluation, export, inference, predict, torch_import, torch_weights, train  # pylint: disable=g-import-not-at-top
from reference import pytorch_peer  # pylint: disable=g-import-not-at-top

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT_ATOL = 1e-5  # Max abs difference of images in [-1, 1] (the bound).
NGF = NDF = 4


@pytest.fixture(autouse=True, scope='module')
def one_torch_thread():
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


# (generator, image size, norm, U-Net reference dropout placement / ResNet dropout, D patch size):
# every generator at both norms, every PatchGAN at both norms.
CASES = {
    'unet_32_batch': ('unet', 32, 'batch', True, 70),
    'unet_32_instance': ('unet', 32, 'instance', False, 1),
    'unet_128_batch': ('unet', 128, 'batch', True, 286),
    'unet_128_instance': ('unet', 128, 'instance', True, 16),
    'unet_256_batch': ('unet', 256, 'batch', False, 16),
    'unet_256_instance': ('unet', 256, 'instance', True, 286),
    'resnet_6blocks_batch': ('resnet_6blocks', 32, 'batch', False, 1),
    'resnet_6blocks_instance': ('resnet_6blocks', 32, 'instance', True, 70),
    'resnet_9blocks_batch': ('resnet_9blocks', 32, 'batch', True, 70),
    'resnet_9blocks_instance': ('resnet_9blocks', 32, 'instance', False, 16),
}


def case_config(name: str):
  generator, size, norm, dropout, patch_size = CASES[name]
  config = test_config.get_config()
  config.data.image_size = size
  config.data.load_size = size
  config.model.update(generator=generator, norm=norm, ngf=NGF, ndf=NDF, patch_size=patch_size)
  if size >= 128:
    # XLA's own convolution forms: compiling the CPU's faster forms ('auto') for the deep U-Nets
    # costs seconds per case; their equality with XLA's is tests/test_kernels.py's. The 32² cases
    # run 'auto', as users do.
    config.model.update(conv_impl='xla', upsample_impl='conv_transpose', matmul_max_pixels=0)
  if generator == 'unet':
    config.model.dropout_skip_innermost = dropout  # Either placement imports.
  else:
    config.model.dropout_rate = 0.5 if dropout else 0.0
  return config


def randomize(net, seed: int, images=None):
  """Every tensor random and distinct; BatchNorm running statistics from `images` (train mode)."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in net.named_parameters():
      if p.dim() == 4:
        fan_in = p.shape[1] * p.shape[2] * p.shape[3]
        if '.weight' in name and isinstance(net.get_submodule(name[:-7]), torch.nn.ConvTranspose2d):
          fan_in = p.shape[0] * p.shape[2] * p.shape[3] / 4
        p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5)
      elif name.endswith('weight'):  # BatchNorm scale.
        p.copy_(0.5 + torch.rand(p.shape, generator=generator))
      else:
        p.copy_(0.1 * torch.randn(p.shape, generator=generator))
  if images is not None:
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
      m.momentum = None  # Cumulative averages.
    net.train()
    with torch.no_grad():
      for batch in images:
        net(batch)
    for m in norms:
      m.momentum = 0.1
  for name, b in net.named_buffers():
    if name.endswith('num_batches_tracked'):
      b.fill_(int(torch.randint(1, 10**6, (), generator=generator)))
  return net


def to_float(images: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def uint8_images(size: int, n: int = 2, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def peer_networks(name: str):
  generator, size, norm, dropout, patch_size = CASES[name]
  torch.manual_seed(0)
  net_g = pytorch_peer.create_generator(size, NGF, norm, generator=generator)
  if generator != 'unet' and not dropout:
    net_g = pytorch_peer.ResnetGenerator(
        3, 3, NGF, pytorch_peer.get_norm_layer(norm), use_dropout=False, n_blocks=int(generator[7])
    )
  pytorch_peer.disable_dropout(net_g)  # Modules kept (and so the keys): p = 0.
  net_d = pytorch_peer.create_discriminator(patch_size, NDF, norm)
  data = [to_float(uint8_images(size, 2, seed)) for seed in (1, 2)]
  randomize(net_g, 1, data)
  pairs = [torch.cat([a, b], 1) for a, b in zip(data, data[::-1])]
  randomize(net_d, 2, pairs)
  return net_g.eval(), net_d.eval()


@functools.cache
def imported(name: str, root: str) -> dict:
  """The peer's nets saved as the reference does, imported, and exported back."""
  root = pathlib.Path(root) / name
  root.mkdir(parents=True)
  net_g, net_d = peer_networks(name)
  torch.save(net_g.state_dict(), root / 'latest_net_G.pth')
  torch.save(net_d.state_dict(), root / 'latest_net_D.pth')
  config = case_config(name)
  workdir = root / 'workdir'
  torch_import.import_checkpoint(
      config, workdir, root / 'latest_net_G.pth', root / 'latest_net_D.pth'
  )
  config.export.format = 'pytorch'
  out = export.export_generator(config, str(workdir), str(root / 'export'))
  return {'net_g': net_g, 'net_d': net_d, 'config': config, 'workdir': workdir, 'export': out}


@pytest.fixture(scope='module')
def scratch(tmp_path_factory):
  return str(tmp_path_factory.mktemp('torch_weights'))


# The reference's keys, written out by hand from its models/networks.py (UnetSkipConnectionBlock:
# outermost [downconv, submodule, uprelu, upconv, tanh], middle [downrelu, downconv, downnorm,
# submodule, uprelu, upconv, upnorm(, dropout)], innermost [downrelu, downconv, uprelu, upconv,
# upnorm]; ResnetGenerator and ResnetBlock's conv_block; NLayerDiscriminator; PixelDiscriminator).
_INNER = 'model.model.1.model' + '.3.model' * 6  # unet_256's level 7, the 1×1 bottleneck.
REFERENCE_KEYS = {
    ('unet', 256, 'batch'): [
        'model.model.0.weight',
        'model.model.1.model.1.weight',
        'model.model.1.model.2.weight',
        'model.model.1.model.2.running_var',
        'model.model.1.model.2.num_batches_tracked',
        'model.model.1.model.3.model.1.weight',
        f'{_INNER}.1.weight',
        f'{_INNER}.3.weight',
        f'{_INNER}.4.running_mean',
        'model.model.1.model.5.weight',
        'model.model.1.model.6.bias',
        'model.model.3.weight',
        'model.model.3.bias',
    ],
    ('resnet_9blocks', 256, 'batch'): [
        'model.1.weight',
        'model.2.running_mean',
        'model.4.weight',
        'model.8.bias',
        'model.10.conv_block.1.weight',
        'model.10.conv_block.2.weight',
        'model.10.conv_block.6.weight',  # After the Dropout at 4 and the padding at 5.
        'model.18.conv_block.7.num_batches_tracked',
        'model.19.weight',
        'model.20.weight',
        'model.22.weight',
        'model.26.weight',
        'model.26.bias',
    ],
    ('n_layers', 3, 'batch'): [
        'model.0.weight',
        'model.0.bias',
        'model.2.weight',
        'model.3.weight',
        'model.3.bias',
        'model.3.running_mean',
        'model.3.running_var',
        'model.3.num_batches_tracked',
        'model.5.weight',
        'model.6.weight',
        'model.8.weight',
        'model.9.running_var',
        'model.11.weight',
        'model.11.bias',
    ],
    ('pixel', 0, 'instance'): [
        'net.0.weight',
        'net.0.bias',
        'net.2.weight',
        'net.2.bias',
        'net.5.weight',
        'net.5.bias',
    ],
}


def test_peer_state_dict_keys_are_the_references():
  with torch.device('meta'):
    nets = {
        ('unet', 256, 'batch'): pytorch_peer.create_generator(256, 64, 'batch'),
        ('resnet_9blocks', 256, 'batch'): pytorch_peer.create_generator(
            256, 64, 'batch', generator='resnet_9blocks'
        ),
        ('n_layers', 3, 'batch'): pytorch_peer.create_discriminator(70, 64, 'batch'),
        ('pixel', 0, 'instance'): pytorch_peer.create_discriminator(1, 64, 'instance'),
    }
  for case, net in nets.items():
    keys = list(net.state_dict())
    missing = [k for k in REFERENCE_KEYS[case] if k not in keys]
    assert not missing, (case, missing)
  assert list(nets['pixel', 0, 'instance'].state_dict()) == REFERENCE_KEYS['pixel', 0, 'instance']
  assert list(nets['n_layers', 3, 'batch'].state_dict())[-1] == 'model.11.bias'


@pytest.mark.parametrize('name', list(CASES))
def test_layout_is_the_peers_state_dict(name):
  """The library's key layout (import, export, the peer's mapping) is the peer's, key for key."""
  config = case_config(name)
  net_g, net_d = peer_networks(name)
  for net, arch in (
      (net_g, torch_weights.generator_architecture(config)),
      (net_d, torch_weights.discriminator_architecture(config)),
  ):
    expected = torch_weights.state_dict_keys(arch)
    actual = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert list(actual.items()) == list(expected.items())
    read, _, _ = torch_weights.read_state_dict(net.state_dict(), 'peer')
    assert read == arch


@pytest.mark.parametrize('name', list(CASES))
def test_round_trip_is_bit_identical_under_the_printed_options(name, scratch):
  result = imported(name, scratch)
  out = result['export']
  options = (out / torch_weights.OPTIONS_FILE).read_text().splitlines()[0]
  signature = json.loads((out / 'signature.json').read_text())
  assert signature['format'] == 'pytorch' and signature['reference_options'] == options
  # The peer built from the printed options, as the reference's define_G / define_D would.
  parser = _reference_parser()
  opt = parser.parse_known_args(shlex.split(options))[0]
  size = int(opt.netG.split('_')[1]) if opt.netG.startswith('unet_') else 32
  norm_layer = pytorch_peer.get_norm_layer(opt.norm)
  if opt.netG.startswith('unet'):
    net_g = pytorch_peer.UnetGenerator(
        opt.input_nc,
        opt.output_nc,
        pytorch_peer.num_downs_for(size),
        opt.ngf,
        norm_layer,
        not opt.no_dropout,
    )
  else:
    net_g = pytorch_peer.ResnetGenerator(
        opt.input_nc,
        opt.output_nc,
        opt.ngf,
        norm_layer,
        not opt.no_dropout,
        pytorch_peer.RESNET_BLOCKS[opt.netG],
    )
  n_layers = {'basic': 3, 'n_layers': opt.n_layers_D, 'pixel': 0}[opt.netD]
  net_d = pytorch_peer.create_discriminator(
      torch_weights.N_LAYERS_TO_PATCH_SIZE[n_layers],
      opt.ndf,
      opt.norm,
      opt.input_nc + opt.output_nc,
  )
  for net, original, filename in (
      (net_g, result['net_g'], 'latest_net_G.pth'),
      (net_d, result['net_d'], 'latest_net_D.pth'),
  ):
    state = torch.load(out / filename, weights_only=True)
    net.load_state_dict(state, strict=True)  # As the reference's load_networks.
    theirs = original.state_dict()
    assert list(state) == list(theirs)
    for key, tensor in theirs.items():
      assert state[key].dtype == tensor.dtype, key
      assert torch.equal(state[key], tensor), key


def _reference_parser():
  """The reference's options that build the networks (its base_options.py), with its defaults."""
  import argparse  # pylint: disable=g-import-not-at-top

  parser = argparse.ArgumentParser()
  parser.add_argument('--model', default='cycle_gan')
  parser.add_argument('--input_nc', type=int, default=3)
  parser.add_argument('--output_nc', type=int, default=3)
  parser.add_argument('--ngf', type=int, default=64)
  parser.add_argument('--ndf', type=int, default=64)
  parser.add_argument('--netD', default='basic')
  parser.add_argument('--netG', default='resnet_9blocks')
  parser.add_argument('--n_layers_D', type=int, default=3)
  parser.add_argument('--norm', default='instance')
  parser.add_argument('--no_dropout', action='store_true')
  parser.add_argument('--direction', default='AtoB')
  parser.add_argument('--load_size', type=int, default=286)
  parser.add_argument('--crop_size', type=int, default=256)
  parser.add_argument('--eval', action='store_true')
  return parser


@pytest.mark.parametrize('name', list(CASES))
def test_imported_generator_gives_the_peers_outputs(name, scratch):
  result = imported(name, scratch)
  config, net_g = result['config'], result['net_g']
  generator, network, step, _ = inference.restore_trained_generator(config, str(result['workdir']))
  assert step == 0
  generator = generator.clone(dropout_rate=0.0)  # The paper's mode with dropout off.
  images = uint8_images(config.data.image_size, 2, seed=3)
  key = jax.random.PRNGKey(0)
  with torch.no_grad():
    deterministic = net_g.eval()(to_float(images))
    per_image = copy.deepcopy(net_g).train()  # Running statistics move: a copy.
    paper = torch.cat([per_image(to_float(images[i : i + 1])) for i in range(len(images))])
  # Both test modes in one compilation.
  both = jax.jit(
      lambda network, images, key: [
          inference.generate(generator, network, images, key, train_mode)
          for train_mode in (False, True)
      ]
  )
  for train_mode, ours, theirs in zip(
      (False, True), both(network, images, key), (deterministic, paper)
  ):
    theirs = theirs.permute(0, 2, 3, 1).numpy()
    assert np.abs(theirs).max() > 0.1  # Not a trivially flat output.
    error = np.abs(np.asarray(ours) - theirs).max()
    assert error <= OUTPUT_ATOL, f'train_mode={train_mode}: {error}'


def _state(name):
  net_g, net_d = peer_networks(name)
  return net_g.state_dict(), net_d.state_dict()


@pytest.mark.parametrize('name', ['unet_32_instance', 'resnet_9blocks_instance', 'unet_32_batch'])
def test_files_of_every_reference_version_read_alike(name):
  config = case_config(name)
  for state in _state(name):
    arch, clean, counters = torch_weights.read_state_dict(state, 'file')
    variables = torch_weights.to_variables(arch, clean)
    variants = {
        'DataParallel': {f'module.{k}': v for k, v in state.items()},
        'no num_batches_tracked': {
            k: v for k, v in state.items() if not k.endswith('num_batches_tracked')
        },
    }
    legacy = dict(state)  # PyTorch < 0.4's InstanceNorm kept running statistics.
    for layer in torch_weights.layout(arch):
      if layer.kind == 'instance_norm':
        legacy[f'{layer.torch}.running_mean'] = torch.zeros(layer.shape)
        legacy[f'{layer.torch}.running_var'] = torch.ones(layer.shape)
        legacy[f'{layer.torch}.num_batches_tracked'] = torch.tensor(0)
    variants['legacy InstanceNorm'] = legacy
    for variant, modified in variants.items():
      arch_v, clean_v, counters_v = torch_weights.read_state_dict(modified, variant)
      assert arch_v == arch, variant
      ours = torch_weights.flatten_variables(torch_weights.to_variables(arch_v, clean_v))
      for path, value in torch_weights.flatten_variables(variables).items():
        np.testing.assert_array_equal(ours[path], value, err_msg=f'{variant} {path}')
      if variant == 'no num_batches_tracked':
        assert counters_v == {}
      else:
        assert counters_v == counters
    assert config.model.norm == arch.norm


def test_dataparallel_legacy_file_imports_and_predicts(tmp_path):
  """A DataParallel file with PyTorch < 0.4's InstanceNorm keys; the EMA starts as the import."""
  name = 'unet_32_instance'
  state_g, _ = _state(name)
  file_state = {f'module.{k}': v for k, v in state_g.items()}
  for layer in torch_weights.layout(torch_weights.generator_architecture(case_config(name))):
    if layer.kind == 'instance_norm':
      file_state[f'module.{layer.torch}.running_mean'] = torch.zeros(layer.shape)
      file_state[f'module.{layer.torch}.running_var'] = torch.ones(layer.shape)
  torch.save(file_state, tmp_path / 'net_G.pth')
  config = case_config(name)
  config.model.ema_decay = 0.999  # Predict, evaluate and export read the EMA.
  torch_import.import_checkpoint(config, tmp_path / 'w', tmp_path / 'net_G.pth')
  record = json.loads((tmp_path / 'w' / checkpointing.IMPORT_RECORD).read_text())
  assert record['discriminator'] is None and record['generator']['reference_name'] == 'unet_32'
  network = inference.restore_trained_generator(config, str(tmp_path / 'w')).network
  ours = torch_weights.to_variables(*torch_weights.read_state_dict(state_g, 'peer')[:2])
  assert jax.tree.all(jax.tree.map(np.array_equal, jax.device_get(network), ours))
  # Without a D file, D is the one a new run of the config starts from.
  _, init_fn, _ = train.create_train_functions(config, 1, 1)
  new_d = jax.jit(init_fn)(jax.random.PRNGKey(config.seed)).discriminator
  restored_d = inference.restore_trained_discriminator(config, str(tmp_path / 'w'), 0, None)
  assert jax.tree.all(
      jax.tree.map(
          np.array_equal,
          jax.device_get(restored_d),
          jax.device_get({'params': new_d.params, 'batch_stats': new_d.batch_stats}),
      )
  )
  Image.fromarray(uint8_images(32, 1)[0]).save(tmp_path / 'in.png')
  (written,) = predict.predict(config, str(tmp_path / 'w'), str(tmp_path / 'in.png'), str(tmp_path))
  assert np.asarray(Image.open(written)).shape == (32, 32, 3)


def _save(tmp_path, state, filename='f.pth'):
  path = tmp_path / filename
  torch.save(state, path)
  return path


def _import_error(config, workdir, g, d=None) -> str:
  with pytest.raises(torch_weights.ReferenceWeightsError) as error:
    torch_import.import_checkpoint(config, workdir, g, d)
  assert not workdir.exists(), 'nothing is written'
  return str(error.value)


def test_a_mismatch_names_the_config_key_and_both_values(tmp_path):
  state_g, state_d = _state('unet_128_batch')
  g, d = _save(tmp_path, state_g, 'g.pth'), _save(tmp_path, state_d, 'd.pth')
  config = case_config('unet_128_batch')
  config.data.image_size = 256
  config.model.ngf = 64
  message = _import_error(config, tmp_path / 'w', g)
  assert 'the file has 7 U-Net levels (unet_128); data.image_size=256 needs 8' in message
  assert 'model.ngf: the file has 4; model.ngf=64' in message
  config = case_config('unet_128_batch')
  config.model.patch_size = 70
  config.model.norm = 'instance'
  message = _import_error(config, tmp_path / 'w', g, d)
  assert "model.norm: the file has 'batch'; model.norm='instance'" in message
  config.model.norm = 'batch'
  message = _import_error(config, tmp_path / 'w', g, d)
  assert 'model.patch_size: the file has the 286×286 PatchGAN' in message
  assert 'model.patch_size=70' in message
  config = case_config('resnet_6blocks_batch')  # The file: no dropout.
  config.model.dropout_rate = 0.5
  state_r, _ = _state('resnet_6blocks_batch')
  message = _import_error(config, tmp_path / 'w', _save(tmp_path, state_r, 'r.pth'))
  assert 'model.dropout_rate: the file has no Dropout(0.5)' in message
  config.model.generator = 'unet'
  message = _import_error(config, tmp_path / 'w', _save(tmp_path, state_r, 'r.pth'))
  assert "model.generator: the file has a resnet_6blocks generator; model.generator='unet'" in (
      message
  )


def test_wrong_files_are_named_and_nothing_is_written(tmp_path):
  state_g, state_d = _state('unet_32_batch')
  config = case_config('unet_32_batch')
  workdir = tmp_path / 'w'
  g, d = _save(tmp_path, state_g, 'g.pth'), _save(tmp_path, state_d, 'd.pth')
  assert 'holds a discriminator' in _import_error(config, workdir, d)
  assert 'pass it as --input_d' in _import_error(config, workdir, d)
  assert 'pass it as --input' in _import_error(config, workdir, g, g)
  assert 'is not a state dict' in _import_error(config, workdir, _save(tmp_path, [1, 2]))
  message = _import_error(config, workdir, _save(tmp_path, {'optimizer': {'lr': 1}}))
  assert 'not a state dict of tensors' in message
  truncated = tmp_path / 'truncated.pth'
  truncated.write_bytes(g.read_bytes()[: g.stat().st_size // 2])
  assert 'is not a readable PyTorch state dict' in _import_error(config, workdir, truncated)
  partial = dict(state_g)
  del partial['model.model.1.model.3.model.5.weight']
  message = _import_error(config, workdir, _save(tmp_path, partial))
  assert 'tensors missing (truncated?)' in message and 'model.model.1.model.3.model.5' in message
  assert 'no such file' in _import_error(config, workdir, tmp_path / 'absent.pth')
  torch_import.import_checkpoint(config, workdir, g, d)
  with pytest.raises(FileExistsError, match='already holds checkpoints'):
    torch_import.import_checkpoint(config, workdir, g, d)


def test_main_import_then_fine_tune_lowers_the_l1(tmp_path):
  """--mode=import as a user runs it, then training from it (fresh Adam) lowers the eval L1."""
  torch.manual_seed(0)
  net_g = pytorch_peer.create_generator(32, 8, 'batch')  # configs/test.py's networks.
  net_d = pytorch_peer.create_discriminator(70, 8, 'batch')
  g, d = _save(tmp_path, net_g.state_dict(), 'g.pth'), _save(tmp_path, net_d.state_dict(), 'd.pth')
  workdir = tmp_path / 'w'
  overrides = ['--config.model.dropout_rate=0.0']
  command = [sys.executable, 'main.py', '--config=configs/test.py', f'--workdir={workdir}']
  run = subprocess.run(
      command + ['--mode=import', f'--input={g}', f'--input_d={d}'] + overrides,
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  assert 'as step 0' in run.stderr
  config = test_config.get_config()
  config.model.dropout_rate = 0.0
  config.num_train_steps = 40
  config.checkpoint_every_steps = 40
  config.log_every_steps = 20
  config.eval.every_steps = 40  # Training's evals: the imported model at step 0, then step 40.
  with _captured_logs() as logs:
    train.train_and_evaluate(config, str(workdir))
  assert any(
      'Fine-tuning from step 0: weights imported from the PyTorch reference' in m for m in logs
  )
  assert any('fresh Adam states' in m for m in logs)
  events = event_accumulator.EventAccumulator(str(workdir), size_guidance={'scalars': 0})
  events.Reload()
  l1 = {e.step: e.value for e in events.Scalars('eval_l1')}
  assert sorted(l1) == [0, 40] and l1[40] < l1[0], l1
  # --mode=evaluate reads the imported checkpoint as it is, and scores it as training's eval did.
  evaluation.evaluate(config, str(workdir), 0)
  metrics = json.loads((workdir / 'eval' / 'metrics.json').read_text())
  assert metrics['step'] == 0
  np.testing.assert_allclose(metrics['metrics']['l1']['mean'], l1[0], rtol=1e-5)


class _captured_logs:  # pylint: disable=invalid-name
  """The messages absl logs inside the block."""

  def __enter__(self):
    import logging  # pylint: disable=g-import-not-at-top

    self.messages = []
    outer = self

    class Handler(logging.Handler):

      def emit(self, record):
        outer.messages.append(record.getMessage())

    self.handler = Handler(level=logging.INFO)
    self.logger = logging.getLogger()
    self.level = self.logger.level
    self.logger.setLevel(logging.INFO)
    self.logger.addHandler(self.handler)
    return self.messages

  def __exit__(self, *exc):
    self.logger.removeHandler(self.handler)
    self.logger.setLevel(self.level)
