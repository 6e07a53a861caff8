"""PyTorch reference weights in and out: `--mode=import` and `config.export.format='pytorch'`.

The networks of junyanz/pytorch-CycleGAN-and-pix2pix (its `models/networks.py`) are ours layer for
layer, so a generator or discriminator it saved (`checkpoints/NAME/latest_net_G.pth`,
`latest_net_D.pth`: the module's `state_dict()`) maps tensor for tensor onto our variables, and
back. This module holds that mapping (the one the PyTorch peer, reference/pytorch_peer.py, loads
our variables with), reads the architecture from a file's key names and shapes, checks it against
the config (`read_file`), and writes the files (`write_reference_files`); torch_import.py writes
the imported checkpoint.
It needs no PyTorch but to read and write .pth files, and imports it only there.

Key layout: every tensor is `<module>.<name>`; the module is a path of the reference's
`nn.Sequential` indices. Ours are '/'-joined module paths of `models.py`. L = U-Net levels (7 for
unet_128, 8 for unet_256; level 0 the outermost), B = residual blocks (9 or 6), N = the PatchGAN's
`n_layers` (1, 3, 5 for 16², 70², 286²).

  network: module prefix      the reference's modules       ours
  --------------------------  ----------------------------  ----------------------------------------
  U-Net level 0: model.model  .0, .3 (+bias)                down0, up0
  U-Net 0 < i < L-1: P(i)     .1, .2, .5, .6                down{i}, down{i}_norm, up{i}, up{i}_norm
  U-Net L-1 (1×1): P(i)       .1, .3, .4                    down{i}, up{i}, up{i}_norm
  ResNet c7s1, d128, d256:    .1, .2; .4, .5; .7, .8        stem, down0, down1, each + _norm
    model
  ResNet block b:             .1, .2, .5, .6                block{b}/conv0, conv0_norm, conv1,
    model.{10+b}.conv_block   (dropout: .6, .7 for .5, .6)  conv1_norm
  ResNet u128, u64, c7s1:     .{10+B}, .{11+B}; .{13+B},    up0, up0_norm; up1, up1_norm; out
    model                     .{14+B}; .{17+B} (+bias)
  PatchGAN (basic, n_layers): .0 (+bias); .{3n-1}, .{3n}    conv0; conv{n}, conv{n}_norm; logits
    model                     (n = 1..N); .{3N+2} (+bias)
  PixelGAN (pixel): net       .0 (+bias); .2, .3; .5        conv0; conv1, conv1_norm; logits

P(i) = `model.model.1.model` followed by (i - 1) times `.3.model` (the `submodule` of each
`UnetSkipConnectionBlock` sits at index 1 of the outermost block's `model`, 3 of the others'): the
down convolution of level 2 is `model.model.1.model.3.model.1.weight`, its norm's scale
`model.model.1.model.3.model.2.weight`.
Tensors per layer: Conv2d `weight` (O, I, kH, kW) = our `kernel` (kH, kW, I, O); ConvTranspose2d
`weight` (I, O, kH, kW) = our `kernel` (kH, kW, I, O) (no flip: layers.py); `bias` = `bias`;
BatchNorm2d `weight`, `bias`, `running_mean`, `running_var` = our params `scale`, `bias` and
batch_stats `mean`, `var`, plus `num_batches_tracked` (a counter we do not keep: see
`write_reference_files`). Convolutions have a bias with instance norm and none with batch norm, but
for the marked (+bias) ones; InstanceNorm2d (affine=False, no running statistics) has no tensors.

Files as the reference wrote them in every version are read: with or without
`num_batches_tracked` (PyTorch < 0.4.1 has none), with the InstanceNorm `running_mean` /
`running_var` / `num_batches_tracked` keys of PyTorch < 0.4, which the reference's
`load_networks` (`__patch_instance_norm_state_dict`) deletes and so are dropped here, and with the
`module.` prefix of a state dict saved from `torch.nn.DataParallel`.
"""

import dataclasses
import json
import pathlib

import numpy as np

# What the reference's networks hard-code, which our config may change.
REFERENCE_LEAKY_RELU_SLOPE = 0.2
REFERENCE_DROPOUT_RATE = 0.5
# The reference's --netD and --n_layers_D for our model.patch_size.
PATCH_SIZE_TO_N_LAYERS = {1: 0, 16: 1, 70: 3, 286: 5}
N_LAYERS_TO_PATCH_SIZE = {n: p for p, n in PATCH_SIZE_TO_N_LAYERS.items()}
RESNET_BLOCKS = {'resnet_9blocks': 9, 'resnet_6blocks': 6}
# BatchNorm calls per train step in the reference (and here): G once, D three times (fake for D,
# real, fake for G), so its `num_batches_tracked` grows by these per step.
CALLS_PER_STEP = {'generator': 1, 'discriminator': 3}
GENERATOR_FILE = 'latest_net_G.pth'
DISCRIMINATOR_FILE = 'latest_net_D.pth'
OPTIONS_FILE = 'reference_options.txt'
_BN_TENSORS = ('weight', 'bias', 'running_mean', 'running_var')
_LEGACY_INSTANCE_NORM = ('running_mean', 'running_var', 'num_batches_tracked')


class ReferenceWeightsError(ValueError):
  """A file is not the reference's network, or not the one the config describes."""


@dataclasses.dataclass(frozen=True)
class Layer:
  """One layer holding tensors: its module in the reference's state dict and in ours.

  Attributes:
    torch: the reference's module path, e.g. 'model.model.1.model.1'.
    ours: our module path, '/'-joined, e.g. 'down1' or 'block0/conv1'.
    kind: 'conv', 'conv_transpose', 'batch_norm' or 'instance_norm' (no tensors).
    shape: the reference's `weight` shape (convolutions: 4-D) or (channels,) for a norm.
    bias: a convolution with a bias.
  """

  torch: str
  ours: str
  kind: str
  shape: tuple[int, ...]
  bias: bool = False

  def tensors(self, num_batches_tracked: bool = True) -> dict:
    """{the reference's key: shape} of this layer's tensors, in its state dict's order."""
    if self.kind == 'instance_norm':
      return {}
    if self.kind == 'batch_norm':
      names = _BN_TENSORS + (('num_batches_tracked',) if num_batches_tracked else ())
      return {f'{self.torch}.{n}': () if n == 'num_batches_tracked' else self.shape for n in names}
    keys = {f'{self.torch}.weight': self.shape}
    if self.bias:
      keys[f'{self.torch}.bias'] = (
          self.shape[1] if self.kind == 'conv_transpose' else self.shape[0],
      )
    return keys


@dataclasses.dataclass(frozen=True)
class Architecture:
  """A reference network, as its file shows it.

  Attributes:
    network: 'unet', 'resnet_9blocks', 'resnet_6blocks' (generators), 'n_layers' or 'pixel'.
    depth: U-Net levels (the reference's `num_downs`), ResNet blocks, PatchGAN `n_layers` (0 for
      the PixelGAN).
    features: ngf or ndf.
    norm: 'batch' or 'instance'.
    input_nc: input channels (a discriminator's: input + output image channels).
    output_nc: output channels (1 for a discriminator).
    dropout: ResNet: a Dropout in each block (it shifts the keys, so the file shows it); None
      where the file cannot show it (the U-Net's dropout has no tensors) or there is none.
  """

  network: str
  depth: int
  features: int
  norm: str
  input_nc: int
  output_nc: int
  dropout: bool | None = None

  @property
  def is_generator(self) -> bool:
    return self.network not in ('n_layers', 'pixel')

  @property
  def reference_name(self) -> str:
    """--netG or --netD: 'unet_256', 'resnet_9blocks', 'basic', 'n_layers', 'pixel'."""
    if self.network == 'unet':
      return f'unet_{2**self.depth}'
    if self.network == 'n_layers' and self.depth == 3:
      return 'basic'
    return self.network

  def describe(self) -> str:
    if self.network == 'unet':
      what = f'{self.reference_name} ({self.depth}-level U-Net), ngf {self.features}'
    elif self.is_generator:
      dropout = 'with' if self.dropout else 'without'
      what = f'{self.network} ({dropout} dropout), ngf {self.features}'
    else:
      patch = N_LAYERS_TO_PATCH_SIZE.get(self.depth, '?')
      what = f'{self.reference_name} (n_layers {self.depth}, {patch}×{patch} PatchGAN)'
      what += f', ndf {self.features}'
    return f'{what}, {self.norm} norm, {self.input_nc} -> {self.output_nc} channels'


def _conv(torch_path, ours, c_in, c_out, k, bias, transpose=False) -> Layer:
  if transpose:
    return Layer(torch_path, ours, 'conv_transpose', (c_in, c_out, k, k), bias)
  return Layer(torch_path, ours, 'conv', (c_out, c_in, k, k), bias)


def _norm(torch_path, ours, norm, channels) -> Layer:
  return Layer(torch_path, ours, f'{norm}_norm', (channels,))


def unet_level_path(level: int) -> str:
  """The reference's module path of U-Net level `level`'s `nn.Sequential` (0: the outermost)."""
  return 'model.model' if level == 0 else 'model.model.1.model' + '.3.model' * (level - 1)


def _unet_layout(arch: Architecture) -> list[Layer]:
  levels, ngf, norm, bias = arch.depth, arch.features, arch.norm, arch.norm == 'instance'
  features = [ngf * min(2**i, 8) for i in range(levels)]
  down, up = [], []
  for i in range(levels):
    p = unet_level_path(i)
    if i == 0:
      down.append(_conv(f'{p}.0', 'down0', arch.input_nc, ngf, 4, bias))
      up.append(_conv(f'{p}.3', 'up0', 2 * ngf, arch.output_nc, 4, True, transpose=True))
    elif i == levels - 1:  # The 1×1 bottleneck: no norm on the way down.
      down.append(_conv(f'{p}.1', f'down{i}', features[i - 1], features[i], 4, bias))
      up += [
          _norm(f'{p}.4', f'up{i}_norm', norm, features[i - 1]),
          _conv(f'{p}.3', f'up{i}', features[i], features[i - 1], 4, bias, transpose=True),
      ]
    else:
      down += [
          _conv(f'{p}.1', f'down{i}', features[i - 1], features[i], 4, bias),
          _norm(f'{p}.2', f'down{i}_norm', norm, features[i]),
      ]
      up += [
          _norm(f'{p}.6', f'up{i}_norm', norm, features[i - 1]),
          _conv(f'{p}.5', f'up{i}', 2 * features[i], features[i - 1], 4, bias, transpose=True),
      ]
  return down + up[::-1]  # The state dict's order: down the levels, then up from the innermost.


def _resnet_layout(arch: Architecture) -> list[Layer]:
  ngf, norm, bias, blocks = arch.features, arch.norm, arch.norm == 'instance', arch.depth
  layout = [
      _conv('model.1', 'stem', arch.input_nc, ngf, 7, bias),
      _norm('model.2', 'stem_norm', norm, ngf),
  ]
  for i in range(2):  # d128, d256
    c_in, c_out = ngf * 2**i, ngf * 2 ** (i + 1)
    layout += [
        _conv(f'model.{4 + 3 * i}', f'down{i}', c_in, c_out, 3, bias),
        _norm(f'model.{5 + 3 * i}', f'down{i}_norm', norm, c_out),
    ]
  second = 6 if arch.dropout else 5  # The Dropout after the first ReLU shifts the second conv.
  for b in range(blocks):
    p, dim = f'model.{10 + b}.conv_block', 4 * ngf
    layout += [
        _conv(f'{p}.1', f'block{b}/conv0', dim, dim, 3, bias),
        _norm(f'{p}.2', f'block{b}/conv0_norm', norm, dim),
        _conv(f'{p}.{second}', f'block{b}/conv1', dim, dim, 3, bias),
        _norm(f'{p}.{second + 1}', f'block{b}/conv1_norm', norm, dim),
    ]
  for i in range(2):  # u128, u64
    c_in, c_out = ngf * 2 ** (2 - i), ngf * 2 ** (1 - i)
    layout += [
        _conv(f'model.{10 + blocks + 3 * i}', f'up{i}', c_in, c_out, 3, bias, transpose=True),
        _norm(f'model.{11 + blocks + 3 * i}', f'up{i}_norm', norm, c_out),
    ]
  layout.append(_conv(f'model.{17 + blocks}', 'out', ngf, arch.output_nc, 7, True))
  return layout


def _discriminator_layout(arch: Architecture) -> list[Layer]:
  ndf, norm, bias = arch.features, arch.norm, arch.norm == 'instance'
  if arch.network == 'pixel':
    return [
        _conv('net.0', 'conv0', arch.input_nc, ndf, 1, True),
        _conv('net.2', 'conv1', ndf, 2 * ndf, 1, bias),
        _norm('net.3', 'conv1_norm', norm, 2 * ndf),
        _conv('net.5', 'logits', 2 * ndf, 1, 1, bias),
    ]
  layout = [_conv('model.0', 'conv0', arch.input_nc, ndf, 4, True)]
  for n in range(1, arch.depth + 1):
    c_in, c_out = ndf * min(2 ** (n - 1), 8), ndf * min(2**n, 8)
    layout += [
        _conv(f'model.{3 * n - 1}', f'conv{n}', c_in, c_out, 4, bias),
        _norm(f'model.{3 * n}', f'conv{n}_norm', norm, c_out),
    ]
  c_last = ndf * min(2**arch.depth, 8)
  return layout + [_conv(f'model.{3 * arch.depth + 2}', 'logits', c_last, 1, 4, True)]


def layout(arch: Architecture) -> list[Layer]:
  """The layers of `arch` in the reference's state-dict order (the table in the docstring)."""
  if arch.network == 'unet':
    return _unet_layout(arch)
  if arch.network.startswith('resnet_'):  # Any block count: the reference's class takes one.
    return _resnet_layout(arch)
  return _discriminator_layout(arch)


def state_dict_keys(arch: Architecture, num_batches_tracked: bool = True) -> dict:
  """{key: shape} of the reference's `state_dict()` for `arch`, in its order."""
  return {k: s for layer in layout(arch) for k, s in layer.tensors(num_batches_tracked).items()}


# ------------------------------------------------------------------------------------------------
# Reading a file's architecture.


def _shape(value) -> tuple[int, ...]:
  return tuple(int(d) for d in value.shape)


def _infer(state: dict) -> Architecture:
  """The architecture the keys and shapes of `state` (no `module.` prefix) show; KeyError if
  they do not show one of the reference's networks."""
  if 'model.model.0.weight' in state:
    levels = 1
    while f'{unet_level_path(levels)}.1.weight' in state:
      levels += 1
    w0 = _shape(state['model.model.0.weight'])
    norm = 'batch' if f'{unet_level_path(1)}.2.weight' in state else 'instance'
    return Architecture(
        'unet', levels, w0[0], norm, w0[1], _shape(state['model.model.3.weight'])[1]
    )
  if 'net.0.weight' in state:
    w0 = _shape(state['net.0.weight'])
    norm = 'batch' if 'net.3.weight' in state else 'instance'
    return Architecture('pixel', 0, w0[0], norm, w0[1], 1)
  if 'model.0.weight' in state:
    convs = [k for k in state if k.startswith('model.') and k.endswith('.weight')]
    convs = [k for k in convs if len(_shape(state[k])) == 4]
    w0 = _shape(state['model.0.weight'])
    norm = 'batch' if 'model.3.weight' in state else 'instance'
    return Architecture('n_layers', len(convs) - 2, w0[0], norm, w0[1], 1)
  if 'model.1.weight' in state:
    blocks = 0
    while any(k.startswith(f'model.{10 + blocks}.conv_block.') for k in state):
      blocks += 1
    w1 = _shape(state['model.1.weight'])
    out = _shape(state[f'model.{17 + blocks}.weight'])[0]
    norm = 'batch' if 'model.2.weight' in state else 'instance'
    dropout = 'model.10.conv_block.5.weight' not in state
    name = {9: 'resnet_9blocks', 6: 'resnet_6blocks'}.get(blocks, f'resnet_{blocks}blocks')
    return Architecture(name, blocks, w1[0], norm, w1[1], out, dropout)
  raise KeyError('no first layer of a reference network')


def _is_legacy_instance_norm_key(key: str, norms: set) -> bool:
  module, _, name = key.rpartition('.')
  return module in norms and name in _LEGACY_INSTANCE_NORM


def read_state_dict(state, where: str) -> tuple[Architecture, dict, dict]:
  """The reference network a state dict holds, checked key by key and shape by shape.

  Args:
    state: what `torch.load` returned (a mapping of names to tensors; numpy arrays do too).
    where: the file, for messages.

  Returns:
    (its Architecture, {key: tensor} of exactly `state_dict_keys(arch, False)`, and
    {our norm module path: num_batches_tracked} for the BatchNorm layers that have one).

  Raises:
    ReferenceWeightsError: not a state dict, not one of the reference's pix2pix networks, or a
      tensor missing (a truncated file), unexpected or of another shape.
  """
  if not hasattr(state, 'items') or not state:
    raise ReferenceWeightsError(
        f'{where} is not a state dict (it holds a {type(state).__name__}): --mode=import reads '
        "the reference's checkpoints/NAME/latest_net_G.pth and latest_net_D.pth, which "
        'torch.save(net.state_dict()) wrote'
    )
  bad = [k for k, v in state.items() if not isinstance(k, str) or not hasattr(v, 'shape')]
  if bad:
    raise ReferenceWeightsError(
        f'{where} is not a state dict of tensors: {bad[:3]} hold no tensor (a training '
        'checkpoint of another kind, or an optimizer state?)'
    )
  if all(k.startswith('module.') for k in state):  # Saved from a DataParallel.
    state = {k[len('module.') :]: v for k, v in state.items()}
  try:
    arch = _infer(state)
  except (KeyError, IndexError) as error:
    raise ReferenceWeightsError(
        f"{where} holds none of the reference's pix2pix networks (U-Net, ResNet, PatchGAN, "
        f'PixelGAN): its first keys are {list(state)[:4]} ({error})'
    ) from None
  layers = layout(arch)
  expected = state_dict_keys(arch, num_batches_tracked=False)
  optional = {f'{l.torch}.num_batches_tracked' for l in layers if l.kind == 'batch_norm'}
  instance_norms = {l.torch for l in layers if l.kind == 'instance_norm'}
  missing = [k for k in expected if k not in state]
  unexpected = [
      k
      for k in state
      if k not in expected
      and k not in optional
      and not _is_legacy_instance_norm_key(k, instance_norms)
  ]
  wrong = [
      f'{k} {_shape(state[k])} (expected {expected[k]})'
      for k in expected
      if k in state and _shape(state[k]) != expected[k]
  ]
  if missing or unexpected or wrong:
    problems = []
    if missing:
      problems.append(f'{len(missing)} tensors missing (truncated?): {missing[:4]}')
    if unexpected:
      problems.append(f'{len(unexpected)} unexpected: {unexpected[:4]}')
    if wrong:
      problems.append(f'{len(wrong)} of another shape: {wrong[:3]}')
    raise ReferenceWeightsError(
        f'{where} looks like {arch.describe()}, but not as the reference builds it: '
        + '; '.join(problems)
    )
  counters = {
      l.ours: int(state[f'{l.torch}.num_batches_tracked'])
      for l in layers
      if l.kind == 'batch_norm' and f'{l.torch}.num_batches_tracked' in state
  }
  return arch, {k: state[k] for k in expected}, counters


# ------------------------------------------------------------------------------------------------
# The config's architecture, and checking a file's against it.


def generator_architecture(config) -> Architecture:
  """The reference generator `config` describes (`model.generator`, `model.ngf`, ...)."""
  from pix2pix_jax import models  # pylint: disable=g-import-not-at-top
  from pix2pix_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  input_nc, output_nc = pipeline.channels(config.data)
  model = config.model
  if model.generator == 'unet':
    levels = models.num_unet_levels(config.data.image_size)
    return Architecture('unet', levels, model.ngf, model.norm, input_nc, output_nc)
  return Architecture(
      model.generator,
      RESNET_BLOCKS[model.generator],
      model.ngf,
      model.norm,
      input_nc,
      output_nc,
      dropout=model.dropout_rate > 0,
  )


def discriminator_architecture(config) -> Architecture | None:
  """The reference discriminator `config` describes; None if the reference has none like it
  (pix2pixHD's multi-scale D, SPADE's spectral norm)."""
  from pix2pix_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  model = config.model
  if model.num_discriminators != 1 or model.d_spectral_norm:
    return None
  n_layers = PATCH_SIZE_TO_N_LAYERS[model.patch_size]
  return Architecture(
      'pixel' if n_layers == 0 else 'n_layers',
      n_layers,
      model.ndf,
      model.norm,
      sum(pipeline.channels(config.data)),
      1,
  )


def _unet_size(levels: int) -> str:
  return f'{2**levels}'


def generator_mismatches(arch: Architecture, config) -> list[str]:
  """What in `config` does not fit the generator `arch`: '<config key>: <the file>; <config>'."""
  from pix2pix_jax import models  # pylint: disable=g-import-not-at-top
  from pix2pix_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  model, data = config.model, config.data
  problems = []
  file_generator = 'unet' if arch.network == 'unet' else arch.network
  if file_generator != model.generator:
    problems.append(
        f'model.generator: the file has a {arch.reference_name} generator; '
        f'model.generator={model.generator!r}'
    )
  elif arch.network == 'unet':
    try:
      needed = models.num_unet_levels(data.image_size)
    except ValueError:
      needed = None
    if needed != arch.depth:
      problems.append(
          f'data.image_size: the file has {arch.depth} U-Net levels ({arch.reference_name}); '
          f'data.image_size={data.image_size} needs '
          + (f'{needed}' if needed else 'a power of two')
          + f' (use --config.data.image_size={_unet_size(arch.depth)})'
      )
  input_nc, output_nc = pipeline.channels(data)
  for key, file_value, value in (
      ('model.ngf', arch.features, model.ngf),
      ('model.norm', arch.norm, model.norm),
      ('data.input_channels', arch.input_nc, input_nc),
      ('data.output_channels', arch.output_nc, output_nc),
  ):
    if file_value != value:
      problems.append(f'{key}: the file has {file_value!r}; {key}={value!r}')
  if arch.network == 'unet' and model.generator == 'unet' and model.bottleneck_norm:
    problems.append(
        'model.bottleneck_norm: the file has no norm on the 1×1 bottleneck (the reference never '
        'has); model.bottleneck_norm=True needs one'
    )
  if arch.network in RESNET_BLOCKS and model.generator in RESNET_BLOCKS:
    expected = REFERENCE_DROPOUT_RATE if arch.dropout else 0.0
    if model.dropout_rate != expected:
      problems.append(
          f'model.dropout_rate: the file has {"a" if arch.dropout else "no"} Dropout(0.5) in '
          f'each residual block; model.dropout_rate={model.dropout_rate} (use {expected})'
      )
  problems += _slope_mismatch(config)
  return problems


def _slope_mismatch(config) -> list[str]:
  slope = config.model.leaky_relu_slope
  if slope == REFERENCE_LEAKY_RELU_SLOPE:
    return []
  return [
      f'model.leaky_relu_slope: the reference computes with {REFERENCE_LEAKY_RELU_SLOPE}; '
      f'model.leaky_relu_slope={slope}'
  ]


def discriminator_mismatches(arch: Architecture, config) -> list[str]:
  """As `generator_mismatches`, for the discriminator."""
  from pix2pix_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  model = config.model
  problems = []
  patch = N_LAYERS_TO_PATCH_SIZE.get(arch.depth)
  if patch is None:
    problems.append(
        f'model.patch_size: the file has a PatchGAN of n_layers {arch.depth}, which has no '
        f'model.patch_size here (n_layers 0, 1, 3, 5 are {list(PATCH_SIZE_TO_N_LAYERS)})'
    )
  elif patch != model.patch_size:
    problems.append(
        f'model.patch_size: the file has the {patch}×{patch} PatchGAN ({arch.reference_name}, '
        f'n_layers {arch.depth}); model.patch_size={model.patch_size}'
    )
  channels = sum(pipeline.channels(config.data))
  for key, file_value, value in (
      ('model.ndf', arch.features, model.ndf),
      ('model.norm', arch.norm, model.norm),
      ('data.input_channels + data.output_channels', arch.input_nc, channels),
      ('model.num_discriminators', 1, model.num_discriminators),
      ('model.d_spectral_norm', False, model.d_spectral_norm),
  ):
    if file_value != value:
      problems.append(f'{key}: the file has {file_value!r}; {key}={value!r}')
  return problems + _slope_mismatch(config)


# ------------------------------------------------------------------------------------------------
# Tensors: the reference's layout <-> ours.


def to_ours(kind: str, name: str, value) -> tuple[str, str, np.ndarray]:
  """One of the reference's tensors as ours: (collection, our variable name, float32 array).

  Args:
    kind: its layer's kind ('conv', 'conv_transpose', 'batch_norm').
    name: the reference's tensor name ('weight', 'bias', 'running_mean', 'running_var').
    value: the tensor (torch or numpy).
  """
  array = np.asarray(value.detach().cpu().numpy() if hasattr(value, 'detach') else value)
  array = array.astype(np.float32)
  if kind == 'batch_norm':
    collection = 'batch_stats' if name.startswith('running_') else 'params'
    return collection, {'weight': 'scale', 'bias': 'bias'}.get(name, name[len('running_') :]), array
  if name == 'bias':
    return 'params', 'bias', array
  # Conv2d (O, I, kH, kW) -> (kH, kW, I, O); ConvTranspose2d (I, O, kH, kW) -> (kH, kW, I, O).
  return (
      'params',
      'kernel',
      array.transpose((2, 3, 0, 1) if kind == 'conv_transpose' else (2, 3, 1, 0)),
  )


def to_reference(kind: str, name: str, value) -> np.ndarray:
  """One of our variables in the reference's layout (the inverse of `to_ours`), float32.

  Args:
    kind: its layer's kind.
    name: our variable's name: 'kernel', 'bias', 'scale', 'mean' or 'var'.
    value: its host array.
  """
  array = np.asarray(value)
  array = array if array.dtype == np.float64 else array.astype(np.float32)  # float64: tests'.
  if name == 'kernel':
    # (kH, kW, I, O) -> Conv2d (O, I, kH, kW) or ConvTranspose2d (I, O, kH, kW).
    array = array.transpose((2, 3, 0, 1) if kind == 'conv_transpose' else (3, 2, 0, 1))
  return np.ascontiguousarray(array)


REFERENCE_NAMES = {'kernel': 'weight', 'bias': 'bias', 'scale': 'weight', 'mean': 'running_mean'}
REFERENCE_NAMES['var'] = 'running_var'


def nested_set(tree: dict, path: str, value) -> None:
  *parents, leaf = path.split('/')
  for part in parents:
    tree = tree.setdefault(part, {})
  tree[leaf] = value


def to_variables(arch: Architecture, state: dict) -> dict:
  """Our {'params', 'batch_stats'} (nested, numpy float32) from a state dict of `arch`."""
  variables = {'params': {}, 'batch_stats': {}}
  for layer in layout(arch):
    for key in layer.tensors(num_batches_tracked=False):
      collection, name, array = to_ours(layer.kind, key.rpartition('.')[2], state[key])
      nested_set(variables[collection], f'{layer.ours}/{name}', array)
  return variables


def flatten_variables(tree, prefix: str = '') -> dict:
  """A nested dict of Flax variables (plain or frozen) as {'a/b/name': array}."""
  flat = {}
  for key, value in tree.items():
    if hasattr(value, 'items'):
      flat |= flatten_variables(value, f'{prefix}{key}/')
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def to_state_dict(arch: Architecture, variables: dict, num_batches_tracked=None) -> dict:
  """The reference's state dict (key -> numpy array, its order) from our variables of `arch`.

  Args:
    arch: the architecture.
    variables: ours, {'params': ..., 'batch_stats': ...} as host arrays.
    num_batches_tracked: {our norm path: count}, or one count for all (default 0): the
      BatchNorm `num_batches_tracked` buffers (int64 scalars).

  Raises:
    ValueError: a variable of ours has no place in the layout, or a tensor of it no variable.
  """
  flat = flatten_variables({k: variables.get(k, {}) for k in ('params', 'batch_stats')})
  used, out = set(), {}
  for layer in layout(arch):
    for key in layer.tensors():
      name = key.rpartition('.')[2]
      if name == 'num_batches_tracked':
        count = num_batches_tracked or 0
        count = count.get(layer.ours, 0) if hasattr(count, 'get') else count
        out[key] = np.array(count, np.int64)
        continue
      ours_name = {'weight': 'scale' if layer.kind == 'batch_norm' else 'kernel'}.get(name, name)
      ours_name = {'running_mean': 'mean', 'running_var': 'var'}.get(ours_name, ours_name)
      collection = 'batch_stats' if name.startswith('running_') else 'params'
      path = f'{collection}/{layer.ours}/{ours_name}'
      if path not in flat:
        raise ValueError(f'{key} has no variable of ours ({path})')
      out[key] = to_reference(layer.kind, ours_name, flat[path])
      used.add(path)
  left = sorted(set(flat) - used)
  if left:
    raise ValueError(f'our variables {left[:4]} have no place in {arch.describe()}')
  return out


# ------------------------------------------------------------------------------------------------
# Files.


def _torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
        "reading or writing the PyTorch reference's .pth files needs PyTorch, which the `metrics` "
        f"extra brings ({error}): pip install -e '.[metrics]' (a CPU torch is enough)"
    ) from error
  return torch


def check_torch_installed() -> None:
  """Raises ImportError, naming the extra, if PyTorch is missing."""
  _torch()


def load_file(path) -> dict:
  """A .pth file's state dict, read without running code from it (`weights_only`).

  Raises:
    ReferenceWeightsError: no such file, or not a file `torch.load` reads as plain tensors
      (truncated, another format, a pickled module).
  """
  torch = _torch()
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise ReferenceWeightsError(f'{path}: no such file')
  try:
    return torch.load(path, map_location='cpu', weights_only=True)
  except Exception as error:  # pylint: disable=broad-except
    raise ReferenceWeightsError(
        f'{path} is not a readable PyTorch state dict ({type(error).__name__}: '
        f'{str(error).splitlines()[0] if str(error) else ""}): truncated, another format, or '
        'a whole pickled module rather than its state_dict()'
    ) from None


def read_file(path, config, role: str) -> tuple[Architecture, dict, dict]:
  """Reads and checks a generator ('generator') or discriminator ('discriminator') file.

  Returns:
    (its Architecture, our variables {'params', 'batch_stats'}, its BatchNorm counters).

  Raises:
    ReferenceWeightsError: a wrong file (see `read_state_dict`), a file of the other network
      (a D given as G), or an architecture the config does not describe, naming every config
      key that differs with both values.
  """
  where = str(path)
  arch, state, counters = read_state_dict(load_file(path), where)
  if arch.is_generator != (role == 'generator'):
    flag = '--input_d' if arch.is_generator is False else '--input'
    raise ReferenceWeightsError(
        f'{where} holds a {"generator" if arch.is_generator else "discriminator"} '
        f'({arch.describe()}), not a {role}: pass it as {flag}'
    )
  check = generator_mismatches if role == 'generator' else discriminator_mismatches
  problems = check(arch, config)
  if problems:
    raise ReferenceWeightsError(
        f'{where} ({arch.describe()}) does not fit the config:\n  '
        + '\n  '.join(problems)
        + '\nOverride these keys (--config.KEY=VALUE) to describe the file.'
    )
  return arch, to_variables(arch, state), counters


# ------------------------------------------------------------------------------------------------
# Export for the reference.


def reference_options(g_arch: Architecture, d_arch: Architecture | None, config) -> str:
  """The reference's command-line options that build `g_arch` (and `d_arch`) and test as here."""
  options = [
      '--model pix2pix',
      f'--netG {g_arch.reference_name}',
      f'--ngf {g_arch.features}',
      f'--norm {g_arch.norm}',
      f'--input_nc {g_arch.input_nc}',
      f'--output_nc {g_arch.output_nc}',
      f'--direction {config.data.direction}',
      f'--load_size {config.data.image_size}',
      f'--crop_size {config.data.image_size}',
  ]
  if (g_arch.network == 'unet' and config.model.dropout_rate == 0) or g_arch.dropout is False:
    options.append('--no_dropout')
  if d_arch is not None:
    options.append(f'--netD {d_arch.reference_name} --ndf {d_arch.features}')
    if d_arch.reference_name == 'n_layers':
      options.append(f'--n_layers_D {d_arch.depth}')
  if not config.eval.train_mode:
    options.append('--eval')
  return ' '.join(options)


def _options_notes(g_arch: Architecture, d_arch: Architecture | None, config) -> list[str]:
  model = config.model
  notes = [
      'Test time: '
      + (
          '--eval (running BatchNorm statistics, no dropout), as here with eval.train_mode=False.'
          if not config.eval.train_mode
          else (
              "no --eval: the reference's test.py then runs G in train mode (dropout on, "
              "BatchNorm with each image's own statistics at its batch size 1), the paper's test "
              'mode, as here with eval.train_mode=True.'
          )
      ),
      (
          '--load_size = --crop_size = data.image_size: the reference resizes test images to it, as'
          ' evaluation here does.'
      ),
  ]
  if g_arch.network == 'unet' and g_arch.depth not in (7, 8):
    notes.append(
        f"The reference's define_G knows unet_128 and unet_256 only: this {g_arch.depth}-level "
        f'U-Net is its UnetGenerator(input_nc, output_nc, num_downs={g_arch.depth}, ngf, '
        f"norm_layer, use_dropout); add `elif netG == '{g_arch.reference_name}'` to define_G."
    )
  if g_arch.network == 'unet' and model.dropout_rate > 0:
    reference = (True, g_arch.depth - 5, REFERENCE_DROPOUT_RATE)
    ours = (model.dropout_skip_innermost, model.num_dropout_layers, model.dropout_rate)
    if ours != reference:
      notes.append(
          f'Dropout: the reference puts Dropout(0.5) on the {g_arch.depth - 5} levels next to the '
          'bottleneck; this model was trained with dropout_skip_innermost='
          f'{ours[0]}, num_dropout_layers={ours[1]}, dropout_rate={ours[2]}: without --eval its '
          'noise falls elsewhere than in training here (the weights are the same).'
      )
  if g_arch.network in RESNET_BLOCKS and model.dropout_rate not in (0, REFERENCE_DROPOUT_RATE):
    notes.append(f'Dropout: the reference has 0.5; this model trained with {model.dropout_rate}.')
  if d_arch is None:
    notes.append(
        'No latest_net_D.pth: the reference has no discriminator like this one '
        f'(model.num_discriminators={model.num_discriminators}, '
        f'model.d_spectral_norm={model.d_spectral_norm}).'
    )
  return notes


def write_reference_files(
    config, g_variables: dict, d_variables: dict | None, step: int, workdir, output: pathlib.Path
) -> dict:
  """Writes latest_net_G.pth (and latest_net_D.pth) and reference_options.txt into `output`.

  The files are what the reference's `save_networks` writes (`torch.save` of a CPU
  `state_dict()`, no `module.` prefix), so its `load_networks` loads them with
  `load_state_dict(strict=True)` into the networks the printed options build, and its test.py runs
  them unchanged: put them in its checkpoints/NAME/ and run `python test.py --dataroot DATA --name
  NAME` with the options. BatchNorm's `num_batches_tracked` (which the reference's momentum 0.1
  never reads) is the count the reference would have: the imported file's (WORKDIR/imported.json)
  plus the train steps since, times the network's BatchNorm calls per step (G 1, D 3).

  Args:
    config: the run's config.
    g_variables: G's {'params', 'batch_stats'} on the host.
    d_variables: D's, or None (not written).
    step: the checkpoint's step.
    workdir: the training workdir (for imported.json).
    output: the export folder.

  Returns:
    signature.json's format-specific keys.
  """
  torch = _torch()
  from pix2pix_jax import checkpointing  # pylint: disable=g-import-not-at-top

  g_arch = generator_architecture(config)
  problems = _slope_mismatch(config)  # What the reference's networks cannot express.
  if g_arch.network == 'unet' and config.model.bottleneck_norm:
    problems.append('model.bottleneck_norm=True: the reference has no norm on the U-Net bottleneck')
  if problems:
    raise ValueError('the reference cannot build this generator:\n  ' + '\n  '.join(problems))
  d_arch = discriminator_architecture(config) if d_variables is not None else None
  record_path = pathlib.Path(workdir) / checkpointing.IMPORT_RECORD
  record = json.loads(record_path.read_text()) if record_path.is_file() else {}
  files = {}
  for role, arch, variables, filename in (
      ('generator', g_arch, g_variables, GENERATOR_FILE),
      ('discriminator', d_arch, d_variables, DISCRIMINATOR_FILE),
  ):
    if arch is None:
      continue
    base = (record.get(role) or {}).get('num_batches_tracked', {})
    since = max(step - record.get('step', 0), 0) * CALLS_PER_STEP[role]
    counts = {l.ours: base.get(l.ours, 0) + since for l in layout(arch) if l.kind == 'batch_norm'}
    state = to_state_dict(arch, variables, counts)
    tensors = {k: torch.from_numpy(v.copy()) for k, v in state.items()}  # C order, 0-d kept.
    torch.save(tensors, output / filename)
    files[role] = filename
  options = reference_options(g_arch, d_arch, config)
  notes = _options_notes(g_arch, d_arch, config)
  weights = checkpointing.generator_weights(config)
  (output / OPTIONS_FILE).write_text(
      f'{options}\n\n# latest_net_G.pth ({g_arch.describe()}, {weights} weights of step {step})'
      + (f' and latest_net_D.pth ({d_arch.describe()})' if d_arch else '')
      + ' load into the PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix) built with the '
      'options above. Copy them to its checkpoints/NAME/ and run\n'
      f'#   python test.py --dataroot DATA --name NAME {options}\n'
      + ''.join(f'# {note}\n' for note in notes)
  )
  return {
      'files': files,
      'reference_options': options,
      'netG': g_arch.reference_name,
      'netD': d_arch.reference_name if d_arch else None,
      'torch_version': torch.__version__,
  }
