"""A PyTorch peer of our train step: pix2pix as the reference implementation trains it.

  python reference/pytorch_peer.py --image_size=256 --batch_size=1 --norm=batch --steps=5

The networks, init, losses, optimizers and update order follow junyanz/pytorch-CycleGAN-and-pix2pix
(`models/networks.py`, `models/pix2pix_model.py`) with its pix2pix defaults (`--netG unet_256
--netD basic --norm batch`, dropout on): eager mode, NCHW, one `optimize_parameters` per step.
Only what the benchmark needs is kept, so `benchmarks/train_step.py --peer` can compare our jitted
JAX step against the reference's way of doing the same work on the same device. Left out, as in our
benchmark: the data loader (a fixed uint8 batch already on the device is converted to [-1, 1] each
step), visualiser and checkpoints, and the single-GPU `DataParallel` wrapper. Kept: cuDNN autotuning
(the reference's BaseModel turns it on for fixed-size crops) and the reference's dropout placement
(the three levels next to the bottleneck; our default is the paper's, at the same cost). This module
imports PyTorch only (no JAX), so it also runs as a subprocess next to a JAX process without the
two frameworks sharing CUDA libraries, memory pools or threads.

bfloat16: the reference has no mixed precision. `dtype='bfloat16'` wraps every forward pass and
loss in `torch.autocast('cuda', dtype=torch.bfloat16)` (parameters, gradients and Adam stay float32,
as our `model.compute_dtype=bfloat16`); on CPU it is not timed and the figures are None.
"""

import argparse
import functools
import json
import pathlib
import statistics
import sys
import time

import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # pix2pix_jax when run as a script from anywhere.

# The key layout and tensor conversions (numpy and the standard library only: no JAX here).
from pix2pix_jax import torch_weights  # pylint: disable=g-import-not-at-top,wrong-import-position

# PatchGAN receptive field -> the reference's `n_layers` (0: its PixelDiscriminator).
PATCH_SIZE_TO_N_LAYERS = torch_weights.PATCH_SIZE_TO_N_LAYERS


def get_norm_layer(norm: str):
  """The reference's `get_norm_layer`: BatchNorm2d, or InstanceNorm2d without affine or stats."""
  if norm == 'batch':
    return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
  if norm == 'instance':
    return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
  raise ValueError(f'unknown norm {norm!r}; expected batch or instance')


def _uses_bias(norm_layer) -> bool:
  # The reference: convs followed by InstanceNorm get a bias, BatchNorm's shift replaces it.
  return norm_layer.func == nn.InstanceNorm2d


class UnetSkipConnectionBlock(nn.Module):
  """One U-Net level: down, the inner submodule, up, and the skip concatenation (the reference's).

  X -------------------identity------------------
  |-- downsampling -- |submodule| -- upsampling --|
  """

  def __init__(
      self,
      outer_nc,
      inner_nc,
      input_nc=None,
      submodule=None,
      outermost=False,
      innermost=False,
      norm_layer=nn.BatchNorm2d,
      use_dropout=False,
  ):
    super().__init__()
    self.outermost = outermost
    use_bias = _uses_bias(norm_layer)
    if input_nc is None:
      input_nc = outer_nc
    downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
    downrelu = nn.LeakyReLU(0.2, True)
    downnorm = norm_layer(inner_nc)
    uprelu = nn.ReLU(True)
    upnorm = norm_layer(outer_nc)
    if outermost:
      # The only transposed conv with a bias whatever the norm: nothing normalises its output.
      upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
      model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
    elif innermost:
      # The 1×1 bottleneck: no norm on the way down.
      upconv = nn.ConvTranspose2d(
          inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias
      )
      model = [downrelu, downconv, uprelu, upconv, upnorm]
    else:
      upconv = nn.ConvTranspose2d(
          inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias
      )
      model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
      if use_dropout:
        model.append(nn.Dropout(0.5))
    self.model = nn.Sequential(*model)

  def forward(self, x):
    if self.outermost:
      return self.model(x)
    return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
  """The reference's `UnetGenerator`, built from the innermost level outwards.

  `num_downs` = log2(image size) gives a 1×1 bottleneck (8 for `unet_256`). Dropout sits on the
  `num_downs - 5` levels just outside the innermost one (3 at 256²), as the reference places it.
  """

  def __init__(
      self, input_nc, output_nc, num_downs, ngf=64, norm_layer=nn.BatchNorm2d, use_dropout=True
  ):
    super().__init__()
    block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm_layer=norm_layer, innermost=True)
    for _ in range(num_downs - 5):
      block = UnetSkipConnectionBlock(
          ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer, use_dropout=use_dropout
      )
    block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm_layer=norm_layer)
    block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm_layer=norm_layer)
    block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm_layer=norm_layer)
    self.model = UnetSkipConnectionBlock(
        output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm_layer=norm_layer
    )

  def forward(self, x):
    return self.model(x)


class ResnetBlock(nn.Module):
  """The reference's `ResnetBlock` (reflection padding): x + conv_block(x).

  conv_block: ReflectionPad2d(1), 3×3 conv, norm, ReLU, (Dropout(0.5)), ReflectionPad2d(1), 3×3
  conv, norm.
  """

  def __init__(self, dim, norm_layer, use_dropout, use_bias):
    super().__init__()
    conv_block = [
        nn.ReflectionPad2d(1),
        nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
        norm_layer(dim),
        nn.ReLU(True),
    ]
    if use_dropout:
      conv_block.append(nn.Dropout(0.5))
    conv_block += [
        nn.ReflectionPad2d(1),
        nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
        norm_layer(dim),
    ]
    self.conv_block = nn.Sequential(*conv_block)

  def forward(self, x):
    return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
  """The reference's `ResnetGenerator` (Johnson et al.): `n_blocks` 9 or 6 residual blocks.

  c7s1-ngf, two stride-2 3×3 convs, the blocks at ngf*4, two 3×3 stride-2 transposed convs
  (padding 1, output_padding 1), c7s1-output_nc with a bias, tanh.
  """

  def __init__(
      self, input_nc, output_nc, ngf=64, norm_layer=nn.BatchNorm2d, use_dropout=False, n_blocks=6
  ):
    super().__init__()
    use_bias = _uses_bias(norm_layer)
    model = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
        norm_layer(ngf),
        nn.ReLU(True),
    ]
    for i in range(2):  # Downsampling.
      mult = 2**i
      model += [
          nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
          norm_layer(ngf * mult * 2),
          nn.ReLU(True),
      ]
    model += [ResnetBlock(ngf * 4, norm_layer, use_dropout, use_bias) for _ in range(n_blocks)]
    for i in range(2):  # Upsampling.
      mult = 2 ** (2 - i)
      model += [
          nn.ConvTranspose2d(
              ngf * mult,
              ngf * mult // 2,
              kernel_size=3,
              stride=2,
              padding=1,
              output_padding=1,
              bias=use_bias,
          ),
          norm_layer(ngf * mult // 2),
          nn.ReLU(True),
      ]
    model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
    self.model = nn.Sequential(*model)

  def forward(self, x):
    return self.model(x)


class NLayerDiscriminator(nn.Module):
  """The reference's PatchGAN: `n_layers` = 1, 3, 5 give 16², 70², 286² receptive fields."""

  def __init__(self, input_nc, ndf=64, n_layers=3, norm_layer=nn.BatchNorm2d):
    super().__init__()
    use_bias = _uses_bias(norm_layer)
    sequence = [
        nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1),
        nn.LeakyReLU(0.2, True),
    ]
    nf_mult = 1
    for n in range(1, n_layers):
      nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
      sequence += [
          nn.Conv2d(
              ndf * nf_mult_prev, ndf * nf_mult, kernel_size=4, stride=2, padding=1, bias=use_bias
          ),
          norm_layer(ndf * nf_mult),
          nn.LeakyReLU(0.2, True),
      ]
    nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
    sequence += [
        nn.Conv2d(
            ndf * nf_mult_prev, ndf * nf_mult, kernel_size=4, stride=1, padding=1, bias=use_bias
        ),
        norm_layer(ndf * nf_mult),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * nf_mult, 1, kernel_size=4, stride=1, padding=1),  # One logit per patch.
    ]
    self.model = nn.Sequential(*sequence)

  def forward(self, x):
    return self.model(x)


class PixelDiscriminator(nn.Module):
  """The reference's 1×1 PatchGAN ("PixelGAN")."""

  def __init__(self, input_nc, ndf=64, norm_layer=nn.BatchNorm2d):
    super().__init__()
    use_bias = _uses_bias(norm_layer)
    self.net = nn.Sequential(
        nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias),
        norm_layer(ndf * 2),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias),
    )

  def forward(self, x):
    return self.net(x)


def init_weights(net: nn.Module, init_gain: float = 0.02) -> None:
  """The reference's `init_weights(init_type='normal')`: convs N(0, gain), BatchNorm weight N(1, gain)."""

  def init_func(m):
    classname = m.__class__.__name__
    if hasattr(m, 'weight') and m.weight is not None and classname.find('Conv') != -1:
      nn.init.normal_(m.weight.data, 0.0, init_gain)
      if getattr(m, 'bias', None) is not None:
        nn.init.constant_(m.bias.data, 0.0)
    elif classname.find('BatchNorm2d') != -1:
      nn.init.normal_(m.weight.data, 1.0, init_gain)
      nn.init.constant_(m.bias.data, 0.0)

  net.apply(init_func)


def num_downs_for(image_size: int) -> int:
  """U-Net levels for a square image: log2(size), so the bottleneck is 1×1 (256 -> 8)."""
  if image_size < 32 or image_size & (image_size - 1):
    raise ValueError(f'image size {image_size} is not a power of two >= 32')
  return image_size.bit_length() - 1


# The reference's `--netG` resnet names -> its `n_blocks`.
RESNET_BLOCKS = torch_weights.RESNET_BLOCKS


def create_generator(
    image_size: int,
    ngf: int = 64,
    norm: str = 'batch',
    input_nc: int = 3,
    output_nc: int = 3,
    generator: str = 'unet',
) -> nn.Module:
  """The reference's `define_G(netG, use_dropout=True)` (pix2pix's default dropout), initialised.

  Args:
    image_size: side of the square images (U-Net: a power of two >= 32, `netG='unet_<size>'`).
    ngf: base filters.
    norm: 'batch' or 'instance'.
    input_nc: input channels.
    output_nc: output channels.
    generator: 'unet' (`unet_<image_size>`), 'resnet_9blocks' or 'resnet_6blocks' (our
      `model.generator` names, which are also the reference's `--netG` for the ResNets).

  Returns:
    The `UnetGenerator` or `ResnetGenerator`.
  """
  norm_layer = get_norm_layer(norm)
  if generator in RESNET_BLOCKS:
    net = ResnetGenerator(
        input_nc, output_nc, ngf, norm_layer, use_dropout=True, n_blocks=RESNET_BLOCKS[generator]
    )
  elif generator == 'unet':
    net = UnetGenerator(
        input_nc, output_nc, num_downs_for(image_size), ngf, norm_layer, use_dropout=True
    )
  else:
    raise ValueError(f'generator {generator!r} is not unet, {" or ".join(RESNET_BLOCKS)}')
  init_weights(net)
  return net


def create_discriminator(
    patch_size: int = 70, ndf: int = 64, norm: str = 'batch', input_nc: int = 6
) -> nn.Module:
  """The reference's `define_D` for a receptive field of 1, 16, 70 or 286 pixels, initialised."""
  if patch_size not in PATCH_SIZE_TO_N_LAYERS:
    raise ValueError(f'patch size {patch_size} is not one of {sorted(PATCH_SIZE_TO_N_LAYERS)}')
  n_layers = PATCH_SIZE_TO_N_LAYERS[patch_size]
  norm_layer = get_norm_layer(norm)
  net = (
      PixelDiscriminator(input_nc, ndf, norm_layer)
      if n_layers == 0
      else NLayerDiscriminator(input_nc, ndf, n_layers, norm_layer)
  )
  init_weights(net)
  return net


def count_parameters(net: nn.Module) -> int:
  """Trainable parameters (BatchNorm running statistics are buffers, so not counted)."""
  return sum(p.numel() for p in net.parameters())


def disable_dropout(net: nn.Module) -> nn.Module:
  """Turns every dropout layer of `net` into the identity (p = 0), as the reference's `--no_dropout`.

  A p = 0 `nn.Dropout` returns its input unchanged in train mode too, so this equals building the
  net with `use_dropout=False` for any generator, without rebuilding it. Returns `net`.
  """
  for module in net.modules():
    if isinstance(module, nn.Dropout):
      module.p = 0.0
  return net


def modules(net: nn.Module) -> dict:
  """Our module paths -> the peer's modules holding the same variables, for any of its networks.

  E.g. the U-Net's 'down{i}' / 'up{i}' (level i, 0 the outermost) and their norms, the ResNet's
  'stem', 'down0', 'block{i}/conv0', ..., the PatchGAN's 'conv{n}', 'conv{n}_norm', 'logits': the
  library's key layout (`torch_weights`' table), read from the peer's own `state_dict()` keys and
  shapes, which must be exactly the reference's (`torch_weights.read_state_dict` checks every
  key). One mapping for the peer, the import and the PyTorch export.
  """
  arch, _, _ = torch_weights.read_state_dict(net.state_dict(), f'the peer {type(net).__name__}')
  return {layer.ours: net.get_submodule(layer.torch) for layer in torch_weights.layout(arch)}


flatten_variables = torch_weights.flatten_variables  # A nested dict as {'a/b/name': array}.

# Our variable names -> the peer module's attribute.
_PEER_ATTRIBUTES = torch_weights.REFERENCE_NAMES


def to_peer_tensor(module: nn.Module, name: str, value) -> tuple[str, torch.Tensor]:
  """One of our variables (or its gradient) in the peer's layout: (the module's attribute, tensor).

  Args:
    module: the peer's module holding it (e.g. from `modules`).
    name: our variable's name: 'kernel', 'bias', 'scale' (BatchNorm), 'mean' or 'var' (running
      statistics).
    value: its host array.
  """
  if name not in _PEER_ATTRIBUTES:
    raise ValueError(f'no peer tensor for a {name!r}')
  kind = (
      'conv_transpose'
      if isinstance(module, nn.ConvTranspose2d)
      else 'conv'
      if isinstance(module, nn.Conv2d)
      else 'batch_norm'
  )
  return _PEER_ATTRIBUTES[name], torch.from_numpy(torch_weights.to_reference(kind, name, value))


def load_jax_variables(net: nn.Module, variables: dict, modules: dict) -> nn.Module:
  """Copies our Flax variables into the peer's `net`, checking that every tensor is covered.

  Args:
    net: the peer's network.
    variables: ours, {'params': ..., 'batch_stats': ...} as host arrays (`jax.device_get`).
    modules: our module path ('/'-joined, e.g. 'down3' or 'block0/conv1') -> the peer's module,
      e.g. `modules(net)`; each variable maps by `to_peer_tensor`.

  Returns:
    `net`, its parameters and BatchNorm running statistics now ours.

  Raises:
    ValueError: naming what is left over, if one of our variables has no peer tensor or a peer
      parameter or running statistic was not written.
  """
  flat = flatten_variables({kind: variables.get(kind, {}) for kind in ('params', 'batch_stats')})
  written = set()
  with torch.no_grad():
    for path, value in flat.items():
      _, rest = path.split('/', 1)  # 'params/...' or 'batch_stats/...'
      module_path, name = rest.rsplit('/', 1)
      if module_path not in modules or name not in _PEER_ATTRIBUTES:
        raise ValueError(
            f'our {path} has no peer module'
            if module_path not in modules
            else f'our {path} has no peer tensor'
        )
      attribute, tensor = to_peer_tensor(modules[module_path], name, value)
      target = getattr(modules[module_path], attribute)
      if target.shape != tensor.shape:
        raise ValueError(f'our {path} {tuple(tensor.shape)} != peer {tuple(target.shape)}')
      target.copy_(tensor)
      written.add(id(target))
  missing = [
      name
      for name, t in [*net.named_parameters(), *net.named_buffers()]
      if id(t) not in written and not name.endswith('num_batches_tracked')
  ]
  if missing:
    raise ValueError(f'peer tensors not written: {missing}')
  return net


class Pix2PixPeer:
  """The reference's `Pix2PixModel` training logic (vanilla GAN loss, λ = 100, Adam 2e-4, β 0.5/0.999).

  Args:
    net_g: the generator.
    net_d: the discriminator (takes the input and output images concatenated on channels).
    lambda_l1: weight of the L1 term.
    autocast_dtype: None (float32, the reference) or a torch dtype to autocast forward passes to.
    learning_rate: Adam's learning rate, both networks (the reference's `--lr`).
    betas: Adam's (β1, β2) (the reference's `--beta1`; β2 is its fixed 0.999).
    gan_mode: 'vanilla' (BCEWithLogitsLoss) or 'lsgan' (MSELoss), as the reference's `GANLoss`.
  """

  def __init__(
      self,
      net_g: nn.Module,
      net_d: nn.Module,
      lambda_l1: float = 100.0,
      autocast_dtype=None,
      *,
      learning_rate: float = 2e-4,
      betas: tuple[float, float] = (0.5, 0.999),
      gan_mode: str = 'vanilla',
  ):
    self.net_g, self.net_d, self.lambda_l1 = net_g.train(), net_d.train(), lambda_l1
    self.autocast_dtype = autocast_dtype
    device = next(net_g.parameters()).device
    self.device_type = device.type
    if gan_mode not in ('vanilla', 'lsgan'):
      raise ValueError(f'gan_mode {gan_mode!r} is not vanilla or lsgan')
    # The reference's GANLoss('vanilla') / GANLoss('lsgan').
    self.criterion_gan = nn.BCEWithLogitsLoss() if gan_mode == 'vanilla' else nn.MSELoss()
    # GANLoss keeps its labels as device buffers, so building a target costs no host copy.
    self.real_label = torch.tensor(1.0, device=device)
    self.fake_label = torch.tensor(0.0, device=device)
    self.criterion_l1 = nn.L1Loss()
    self.optimizer_g = torch.optim.Adam(net_g.parameters(), lr=learning_rate, betas=betas)
    self.optimizer_d = torch.optim.Adam(net_d.parameters(), lr=learning_rate, betas=betas)

  def _autocast(self):
    return torch.autocast(
        self.device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
    )

  def _gan_loss(self, prediction, target_is_real: bool):
    target = self.real_label if target_is_real else self.fake_label
    return self.criterion_gan(prediction, target.expand_as(prediction))

  @staticmethod
  def set_requires_grad(net: nn.Module, requires_grad: bool) -> None:
    for param in net.parameters():
      param.requires_grad = requires_grad

  def optimize_parameters(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict:
    """One step in the reference's order: forward G, update D, update G against the updated D.

    Args:
      real_a: input images, float (N, C, H, W) in [-1, 1].
      real_b: target images, the same shape.

    Returns:
      The losses as the reference computes them, as (still on-device) scalar tensors (reading
      them would synchronise): 'g_total', 'g_gan', 'g_l1' (already × λ, the reference's
      `loss_G_L1`), 'd_total' (the halved sum), 'd_real', 'd_fake'.
    """
    with self._autocast():
      fake_b = self.net_g(real_a)
    # D update: fake (detached) first, then real, each its own BatchNorm call.
    self.set_requires_grad(self.net_d, True)
    self.optimizer_d.zero_grad()
    with self._autocast():
      pred_fake = self.net_d(torch.cat((real_a, fake_b), 1).detach())
      loss_d_fake = self._gan_loss(pred_fake, False)
      pred_real = self.net_d(torch.cat((real_a, real_b), 1))
      loss_d_real = self._gan_loss(pred_real, True)
      loss_d = (loss_d_fake + loss_d_real) * 0.5
    loss_d.backward()
    self.optimizer_d.step()
    # G update: D frozen (its BatchNorm statistics still move, as in the reference).
    self.set_requires_grad(self.net_d, False)
    self.optimizer_g.zero_grad()
    with self._autocast():
      pred_fake = self.net_d(torch.cat((real_a, fake_b), 1))
      loss_g_gan = self._gan_loss(pred_fake, True)
      loss_g_l1 = self.criterion_l1(fake_b, real_b) * self.lambda_l1
      loss_g = loss_g_gan + loss_g_l1
    loss_g.backward()
    self.optimizer_g.step()
    return {
        'g_total': loss_g.detach(),
        'g_gan': loss_g_gan.detach(),
        'g_l1': loss_g_l1.detach(),
        'd_total': loss_d.detach(),
        'd_real': loss_d_real.detach(),
        'd_fake': loss_d_fake.detach(),
    }


def default_device() -> str:
  return 'cuda' if torch.cuda.is_available() else 'cpu'


def _synchronize(device: torch.device) -> None:
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


class PeerStepTimer:
  """The peer's train step on a fixed device batch, timed in blocks.

  The engine of `time_pytorch_step`; `benchmarks/train_step.py --interleave` alternates its blocks
  with ours. Each step converts a uint8 NCHW batch already on the device to [-1, 1] floats and runs
  `optimize_parameters`; on CUDA every timing waits for the device (`torch.cuda.synchronize`).
  Arguments as `time_pytorch_step`.
  """

  def __init__(
      self,
      *,
      image_size: int,
      batch_size: int,
      ngf: int = 64,
      ndf: int = 64,
      patch_size: int = 70,
      norm: str = 'batch',
      device: str | None = None,
      dtype: str = 'float32',
      seed: int = 0,
      generator: str = 'unet',
  ):
    self.device = torch.device(device or default_device())
    if dtype not in ('float32', 'bfloat16'):
      raise ValueError(f'dtype {dtype!r} is not float32 or bfloat16')
    if self.device.type == 'cuda':
      # The reference's BaseModel turns cuDNN autotuning on for fixed-size crops (the pix2pix default).
      torch.backends.cudnn.benchmark = True
    torch.manual_seed(seed)
    net_g = create_generator(image_size, ngf, norm, generator=generator).to(self.device)
    net_d = create_discriminator(patch_size, ndf, norm).to(self.device)
    self.batch_size = batch_size
    self.info = {
        'image_size': image_size,
        'batch_size': batch_size,
        'norm': norm,
        'patch_size': patch_size,
        'generator': generator,
        'ngf': ngf,
        'ndf': ndf,
        'dtype': dtype,
        'params_g': count_parameters(net_g),
        'params_d': count_parameters(net_d),
        'seconds_per_step': None,
        'steps_per_s': None,
        'images_per_s': None,
        'first_step_s': None,
        'repeat_seconds_per_step': None,
        'peak_memory_bytes': None,
        'device': self.device.type,
        'device_name': (
            torch.cuda.get_device_name(self.device)
            if self.device.type == 'cuda'
            else f'cpu ({torch.get_num_threads()} threads)'
        ),
        'torch': torch.__version__,
    }
    # The reference has no mixed precision; autocast on CPU would time oneDNN's bf16 emulation.
    self.timed = dtype == 'float32' or self.device.type == 'cuda'
    if not self.timed:
      self.info['skipped'] = 'bfloat16 autocast is timed on CUDA only'
      return
    self.peer = Pix2PixPeer(
        net_g, net_d, autocast_dtype=torch.bfloat16 if dtype == 'bfloat16' else None
    )
    generator = torch.Generator(device='cpu').manual_seed(seed)
    shape = (batch_size, 3, image_size, image_size)
    self.batch = [
        torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator).to(self.device)
        for _ in range(2)
    ]
    self.losses = None

  def _step(self):
    real_a, real_b = (images.float() / 127.5 - 1.0 for images in self.batch)
    self.losses = self.peer.optimize_parameters(real_a, real_b)

  def warm_up(self, warmup: int = 2) -> None:
    """Runs `warmup` (>= 1) untimed steps; the first one's time is `first_step_s`."""
    if self.device.type == 'cuda':
      torch.cuda.reset_peak_memory_stats(self.device)
    _synchronize(self.device)
    start = time.perf_counter()
    self._step()
    _synchronize(self.device)
    self.info['first_step_s'] = round(time.perf_counter() - start, 3)
    for _ in range(warmup - 1):
      self._step()
    _synchronize(self.device)

  def run(self, steps: int) -> float:
    """Seconds per step of a block of `steps` steps."""
    start = time.perf_counter()
    for _ in range(steps):
      self._step()
    _synchronize(self.device)
    return (time.perf_counter() - start) / steps

  def result(self, per_step: list[float], steps: int) -> dict:
    """The JSON-ready result for timed blocks of `steps` steps (`per_step`: seconds per step)."""
    if not all(torch.isfinite(v).item() for v in self.losses.values()):
      raise FloatingPointError(f'non-finite peer loss: {self.losses}')
    seconds = statistics.median(per_step)
    result = self.info | {
        'seconds_per_step': round(seconds, 4),
        'steps_per_s': round(1 / seconds, 3),
        'images_per_s': round(self.batch_size / seconds, 2),
        'repeat_seconds_per_step': [round(s, 4) for s in per_step],
        'steps': steps,
    }
    if self.device.type == 'cuda':
      result['peak_memory_bytes'] = torch.cuda.max_memory_allocated(self.device)
    return result


def time_pytorch_step(
    *,
    image_size: int,
    batch_size: int,
    ngf: int = 64,
    ndf: int = 64,
    patch_size: int = 70,
    norm: str = 'batch',
    steps: int = 5,
    warmup: int = 2,
    device: str | None = None,
    dtype: str = 'float32',
    repeats: int = 1,
    seed: int = 0,
    generator: str = 'unet',
) -> dict:
  """Times the peer's train step on a fixed device batch (as benchmarks/train_step.py times ours).

  Args:
    image_size: side of the square images (U-Net: a power of two >= 32; ResNet: a multiple of 4).
    batch_size: images per step.
    ngf: generator base filters.
    ndf: discriminator base filters.
    patch_size: PatchGAN receptive field (1, 16, 70, 286).
    norm: 'batch' or 'instance'.
    steps: timed steps per repeat.
    warmup: untimed steps first (>= 1: allocator, cuDNN autotuning, lazy init).
    device: 'cpu', 'cuda', 'cuda:1', ...; None: CUDA when available, else CPU.
    dtype: 'float32' (the reference) or 'bfloat16' (autocast; CUDA only, else not timed).
    repeats: timed blocks of `steps`; the median is reported.
    seed: torch seed for init, dropout and the random batch.
    generator: 'unet', 'resnet_9blocks' or 'resnet_6blocks' (see `create_generator`).

  Returns:
    {'seconds_per_step', 'steps_per_s', 'images_per_s', 'params_g', 'params_d', 'device',
     'torch', ...}: the timing keys are None when the setting is not timed (bf16 on CPU; see
    'skipped'). Also 'first_step_s' (the first eager step, the nearest thing to a compile time),
    'repeat_seconds_per_step' and 'peak_memory_bytes' (CUDA: torch.cuda.max_memory_allocated).
  """
  timer = PeerStepTimer(
      image_size=image_size,
      batch_size=batch_size,
      ngf=ngf,
      ndf=ndf,
      patch_size=patch_size,
      norm=norm,
      device=device,
      dtype=dtype,
      seed=seed,
      generator=generator,
  )
  if not timer.timed:
    return timer.info
  timer.warm_up(max(warmup, 1))
  return timer.result([timer.run(steps) for _ in range(repeats)], steps)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--image_size', type=int, default=256)
  parser.add_argument('--batch_size', type=int, default=1)
  parser.add_argument('--ngf', type=int, default=64)
  parser.add_argument('--ndf', type=int, default=64)
  parser.add_argument('--patch_size', type=int, default=70)
  parser.add_argument('--norm', default='batch', choices=('batch', 'instance'))
  parser.add_argument('--generator', default='unet', choices=('unet', *RESNET_BLOCKS))
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=1)
  parser.add_argument('--device', default=None, help='cpu, cuda, ... (default: cuda if available)')
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  args = parser.parse_args(argv)
  print(json.dumps(time_pytorch_step(**vars(args))), flush=True)


if __name__ == '__main__':
  main()
