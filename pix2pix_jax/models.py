"""pix2pix networks: the U-Net and ResNet generators and the PatchGAN discriminator (Flax Linen).

Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks", appendix 6,
and the PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix) layer for layer, so parameter
counts match the reference exactly (54,413,955 for the 256² U-Net, 2,768,705 for the 70×70
PatchGAN). In the paper's notation Ck is a 4×4 Convolution-BatchNorm-ReLU layer with k filters,
CDk the same with 50 % dropout; convolutions have stride 2 (6.1). Modules take plain typed fields;
`create_generator` and `create_discriminator` turn a config into those fields.

The ResNet generator (`model.generator='resnet_9blocks'` or `'resnet_6blocks'`) is the reference's
`ResnetGenerator`, Johnson et al. 2016's network as the CycleGAN paper (Zhu et al. 2017, appendix
7.2) writes it: c7s1-64, d128, d256, R256 × 9 (or 6), u128, u64, c7s1-3 (11,383,427 parameters at
resnet_9blocks with BatchNorm, 7,841,411 at resnet_6blocks).

How the 4×4 convolutions are computed is the `conv_impl` field (pix2pix_jax/kernels: the same
linear maps, faster forms per backend, chosen by pix2pix_jax/runtime.py), and so are the ResNet's
3×3 transposed ones; the default is XLA's own. The ResNet's 3×3 and 7×7 convolutions are XLA's.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax import layers, runtime

# PatchGAN receptive field -> number of stride-2 conv layers (the reference's `n_layers`);
# 0 means the 1×1 "PixelGAN" discriminator.
PATCH_SIZE_TO_STRIDED_LAYERS = {1: 0, 16: 1, 70: 3, 286: 5}
NORMS = layers.NORMS
GENERATORS = ('unet', 'resnet_9blocks', 'resnet_6blocks')
# ResNet generator -> residual blocks (the reference's `n_blocks`).
RESNET_BLOCKS = {'resnet_9blocks': 9, 'resnet_6blocks': 6}
# The ResNet halves the image twice (d128, d256) and takes reflection paddings of 1 pixel at a
# quarter of its size: sides are multiples of 4, at least 8.
RESNET_SIDE_MULTIPLE = 4
RESNET_MIN_SIDE = 8
BATCH_NORM_STATS = ('global', 'per_device')


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
        'down to a 1×1 bottleneck, so use 32, 64, 128, 256, 512, ...'
    )
  return image_size.bit_length() - 1


class UNetGenerator(layers.Network):
  """The pix2pix U-Net (paper appendix 6.1.1; the reference's `UnetGenerator`).

  Encoder C64-C128-C256-C512-...-C512, decoder CD512-CD512-CD512-C512-C256-C128-C64 (at 256²,
  8 levels), skip connections between mirrored levels, tanh output in [-1, 1]. The norm,
  initialisation, dtype and `conv_impl` fields are `layers.Network`'s.
  """

  out_channels: int = 3
  num_levels: int = 8
  base_features: int = 64  # ngf
  # Paper: BatchNorm on every encoder layer but the first *and* the 1×1 bottleneck (at batch 1
  # a 1×1 map normalised by its own statistics would be zeroed). TF's tutorial sets it.
  bottleneck_norm: bool = False
  leaky_relu_slope: float = 0.2  # Encoder activation (paper: LeakyReLU 0.2; decoder: ReLU).
  dropout_rate: float = 0.5  # Paper: dropout is the generator's only source of noise.
  num_dropout_layers: int = 3  # Paper: the first three decoder layers.
  # The PyTorch reference puts them on the three decoder layers after the innermost one instead.
  dropout_skip_innermost: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Translates images (N, H, W, C_in) in [-1, 1] into (N, H, W, out_channels) in [-1, 1].

    H and W are multiples of 2**num_levels: the model size (a 1×1 bottleneck, as trained) or any
    larger multiple (an (H/2**num_levels)×(W/2**num_levels) bottleneck; the net is convolutional).
    """
    levels = self.num_levels
    if x.shape[1] % 2**levels or x.shape[2] % 2**levels:
      raise ValueError(
          f'a {levels}-level U-Net takes images whose sides are multiples of '
          f'{2**levels}, got {x.shape[1]}×{x.shape[2]}'
      )
    bound = dict(
        use_bias=self.conv_bias, init_std=self.init_std, conv_impl=self.conv_impl, dtype=self.dtype
    )
    down = functools.partial(layers.Conv4x4, stride=2, **bound)
    up = functools.partial(layers.ConvTranspose4x4, **bound)
    norm = self.bound_norm(train)
    features = [self.base_features * min(2**i, 8) for i in range(levels)]  # C64-C128-C256-C512...
    dropout_start = 1 if self.dropout_skip_innermost else 0
    dropout_levels = {
        levels - 1 - k for k in range(dropout_start, dropout_start + self.num_dropout_layers)
    }

    # Encoder, as the reference's blocks: (LeakyReLU,) conv, norm; each level's output is a skip.
    h = x.astype(self.dtype)
    skips = []
    for i in range(levels):
      if i > 0:
        h = nn.leaky_relu(h, self.leaky_relu_slope)  # "All ReLUs in the encoder are leaky".
      h = down(features[i], name=f'down{i}')(h)
      # "BatchNorm is not applied to the first C64 layer"; the bottleneck per `bottleneck_norm`.
      if 0 < i < levels - 1 or (i == levels - 1 and self.bottleneck_norm):
        h = norm(name=f'down{i}_norm')(h)
      skips.append(h)

    # Decoder: "skip connections between each layer i in the encoder and layer n - i in the
    # decoder ... concatenate activations" (reference order: skip first); ReLUs not leaky.
    for i in reversed(range(1, levels)):
      if i < levels - 1:
        h = jnp.concatenate([skips[i], h], axis=-1)
      h = up(features[i - 1], name=f'up{i}')(nn.relu(h))
      h = norm(name=f'up{i}_norm')(h)
      if i in dropout_levels:
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    # "After the last layer in the decoder, a convolution is applied to map to the number of
    # output channels ..., followed by a Tanh function."
    h = jnp.concatenate([skips[0], h], axis=-1)
    h = up(self.out_channels, use_bias=True, name='up0')(nn.relu(h))
    return jnp.tanh(h).astype(jnp.float32)


def _reflect_pad(x: jax.Array, pad: int) -> jax.Array:
  """PyTorch's `ReflectionPad2d(pad)` on (N, H, W, C): mirrors without repeating the edge pixel."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


class ResnetBlock(nn.Module):
  """A residual block, R256 (the reference's `ResnetBlock`): x + F(x), channels unchanged.

  F is reflect-pad 1, 3×3 conv, norm, ReLU, (dropout), reflect-pad 1, 3×3 conv, norm; no ReLU after
  the sum. Reflection rather than zero padding avoids border artefacts (Johnson et al.).
  """

  conv: layers.ModuleDef  # The generator's `nn.Conv`, its bias, init and dtype bound.
  norm: layers.ModuleDef  # The generator's norm layer, bound for this call (`bound_norm`).
  # The reference puts one Dropout(0.5) after the first ReLU when `use_dropout` (pix2pix: on unless
  # --no_dropout); here any rate > 0 puts one dropout of that rate there, 0 none.
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Maps (N, H, W, C) to (N, H, W, C); H, W >= 2 (the reflection needs a pixel to mirror)."""
    conv = functools.partial(self.conv, x.shape[-1], (3, 3), padding='VALID')
    h = nn.relu(self.norm(name='conv0_norm')(conv(name='conv0')(_reflect_pad(x, 1))))
    if self.dropout_rate > 0:
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    h = self.norm(name='conv1_norm')(conv(name='conv1')(_reflect_pad(h, 1)))
    return x + h


class ResnetGenerator(layers.Network):
  """The ResNet generator (Johnson et al. 2016; the reference's `ResnetGenerator`).

  In the CycleGAN paper's notation (appendix 7.2): c7s1-64, d128, d256, R256 × num_blocks, u128,
  u64, c7s1-3. c7s1-k is a reflection-padded 7×7 Convolution-Norm-ReLU with k filters and stride
  1, dk a 3×3 stride-2 Convolution-Norm-ReLU (zero padding 1), Rk a residual block (`ResnetBlock`),
  uk a 3×3 stride-1/2 fractionally-strided Convolution-Norm-ReLU; the last c7s1 has no norm, a
  bias and a tanh. 64 is `base_features` (ngf). The norm, initialisation, dtype and `conv_impl`
  (for the transposed convolutions) fields are `layers.Network`'s.
  """

  out_channels: int = 3
  num_blocks: int = 9  # resnet_9blocks (the reference's for 256²) or resnet_6blocks (128²).
  base_features: int = 64  # ngf
  # Dropout inside each residual block (see ResnetBlock). The reference's pix2pix has one
  # Dropout(0.5) per block unless --no_dropout; `model.dropout_rate` 0.5 (the default) is that,
  # 0 is --no_dropout. The U-Net's dropout placement keys do not apply.
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Translates images (N, H, W, C_in) in [-1, 1] into (N, H, W, out_channels) in [-1, 1].

    H and W are multiples of 4 (two stride-2 convolutions, undone by two transposed ones), at least
    8; they need not be equal, nor the size the net was trained at (it is convolutional).
    """
    height, width = x.shape[1:3]
    if (
        height % RESNET_SIDE_MULTIPLE
        or width % RESNET_SIDE_MULTIPLE
        or min(height, width) < RESNET_MIN_SIDE
    ):
      raise ValueError(
          'the ResNet generator takes images whose sides are multiples of '
          f'{RESNET_SIDE_MULTIPLE}, at least {RESNET_MIN_SIDE}, got {height}×{width}'
      )
    ngf = self.base_features
    conv = functools.partial(
        nn.Conv,
        use_bias=self.conv_bias,
        kernel_init=layers.normal_init(self.init_std),
        dtype=self.dtype,
    )
    norm = self.bound_norm(train)

    h = x.astype(self.dtype)
    h = conv(ngf, (7, 7), padding='VALID', name='stem')(_reflect_pad(h, 3))  # c7s1-64
    h = nn.relu(norm(name='stem_norm')(h))
    for i in range(2):  # d128, d256
      h = conv(ngf * 2 ** (i + 1), (3, 3), strides=2, padding=((1, 1), (1, 1)), name=f'down{i}')(h)
      h = nn.relu(norm(name=f'down{i}_norm')(h))
    for i in range(self.num_blocks):  # R256 × num_blocks
      h = ResnetBlock(conv, norm, self.dropout_rate, name=f'block{i}')(h, train=train)
    for i in range(2):  # u128, u64
      h = layers.ConvTranspose3x3(
          ngf * 2 ** (1 - i),
          use_bias=self.conv_bias,
          init_std=self.init_std,
          conv_impl=self.conv_impl,
          dtype=self.dtype,
          name=f'up{i}',
      )(h)
      h = nn.relu(norm(name=f'up{i}_norm')(h))
    # c7s1-3: no norm follows, so it has a bias whatever the norm; tanh to [-1, 1].
    h = conv(self.out_channels, (7, 7), padding='VALID', use_bias=True, name='out')(
        _reflect_pad(h, 3)
    )
    return jnp.tanh(h).astype(jnp.float32)


class PatchDiscriminator(layers.Network):
  """PatchGAN (paper appendix 6.1.2; the reference's `NLayerDiscriminator`, `PixelDiscriminator`).

  Classifies each N×N patch of the (input, output) pair as real or fake and returns one logit per
  patch. `num_strided_layers` = 1, 3, 5 give 16×16, 70×70, 286×286 receptive fields; 0 gives the
  1×1 PixelGAN. Beyond the paper: spectral normalisation (SPADE) and, on request, the intermediate
  features for pix2pixHD's feature-matching loss. The norm, initialisation, dtype and
  `conv_impl` fields are `layers.Network`'s.
  """

  base_features: int = 64  # ndf
  num_strided_layers: int = 3
  leaky_relu_slope: float = 0.2  # Paper: "All ReLUs are leaky, with slope 0.2".
  # SPADE's D (norm_D='spectralinstance'): spectral norm on the convs its norm layer wraps, the
  # middle ones (conv1 ... conv{num_strided_layers}), not the first nor the logits. Off: paper.
  spectral_norm: bool = False

  @nn.compact
  def __call__(
      self, x: jax.Array, *, train: bool, return_features: bool = False
  ) -> jax.Array | tuple[jax.Array, tuple[jax.Array, ...]]:
    """Maps pairs (N, H, W, C_in + C_out) to patch logits (N, H', W', 1).

    Args:
      x: the pairs, input and output concatenated on channels.
      train: BatchNorm by the batch's own statistics (updating the running ones), and with
        `spectral_norm` one power-iteration step that updates the stored u and σ, as torch's
        `spectral_norm` does at each train-mode call.
      return_features: also return the activations after every layer but the last (pix2pixHD's
        `getIntermFeat`), for the feature-matching loss.

    Returns:
      The logits, or (logits, features) with `return_features`: features a tuple of float32
      arrays, num_strided_layers + 1 of them (2 for the PixelGAN).
    """
    ndf, slope, use_bias = self.base_features, self.leaky_relu_slope, self.conv_bias
    norm = self.bound_norm(train)

    def middle(conv_layer: nn.Module):
      # The parameters stay where they are (conv{n}/kernel); u and σ go to 'batch_stats', which
      # the train step threads, under conv{n}_spectral_norm.
      if not self.spectral_norm:
        return conv_layer
      wrapped = nn.SpectralNorm(
          conv_layer, collection_name='batch_stats', name=f'{conv_layer.name}_spectral_norm'
      )
      return functools.partial(wrapped, update_stats=train)

    h = x.astype(self.dtype)
    features = []
    if self.num_strided_layers == 0:
      # 1×1 PixelGAN: "in this special case, all convolutions are 1×1 spatial filters", C64-C128.
      conv = functools.partial(
          nn.Conv,
          kernel_size=(1, 1),
          strides=1,
          padding=((0, 0), (0, 0)),
          kernel_init=layers.normal_init(self.init_std),
          dtype=self.dtype,
      )
      h = nn.leaky_relu(conv(ndf, use_bias=True, name='conv0')(h), slope)
      features.append(h)
      h = middle(conv(2 * ndf, use_bias=use_bias, name='conv1'))(h)
      h = nn.leaky_relu(norm(name='conv1_norm')(h), slope)
      features.append(h)
      h = conv(1, use_bias=use_bias, name='logits')(h)  # The reference's: biased as conv1.
    else:
      bound = dict(init_std=self.init_std, conv_impl=self.conv_impl, dtype=self.dtype)
      conv = functools.partial(layers.Conv4x4, use_bias=use_bias, **bound)
      # "BatchNorm is not applied to the first C64 layer": the reference gives it a bias.
      h = nn.leaky_relu(conv(ndf, use_bias=True, name='conv0')(h), slope)
      features.append(h)
      for n in range(1, self.num_strided_layers + 1):
        # C128-C256-C512(-C512-C512); the last has stride 1 (the reference's `n_layers`-th block).
        stride = 2 if n < self.num_strided_layers else 1
        h = middle(conv(ndf * min(2**n, 8), stride=stride, name=f'conv{n}'))(h)
        h = nn.leaky_relu(norm(name=f'conv{n}_norm')(h), slope)
        features.append(h)
      # "After the last layer, a convolution is applied to map to a 1-dimensional output" (the
      # sigmoid is in the loss, on logits).
      h = layers.Logits4x4(1, use_bias=True, name='logits', **bound)(h)
    logits = h.astype(jnp.float32)
    if return_features:
      return logits, tuple(f.astype(jnp.float32) for f in features)
    return logits


def downsample(x: jax.Array) -> jax.Array:
  """pix2pixHD's `AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)`: H -> ceil(H/2).

  Border windows average only the pixels inside the image (no zeros from the padding).
  """
  return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=False)


class MultiScaleDiscriminator(nn.Module):
  """pix2pixHD's multi-scale discriminator (Wang et al. 2018, 3.2; its `MultiscaleDiscriminator`).

  `num_discriminators` copies of one PatchGAN, each with its own parameters (scale0, scale1, ...);
  scale i classifies the pair downsampled i times by `downsample`, so coarser scales judge larger
  regions of the image with the same architecture. Used only for 2 or more scales: one scale is
  the plain `PatchDiscriminator`, with its parameter tree.
  """

  patch_discriminator: PatchDiscriminator  # The architecture every scale copies.
  num_discriminators: int = 2

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, return_features: bool = False) -> list:
    """Maps pairs (N, H, W, C) to a list over scales of what `PatchDiscriminator` returns."""
    outputs = []
    for i in range(self.num_discriminators):
      if i:
        x = downsample(x)
      scale = self.patch_discriminator.copy(name=f'scale{i}')
      outputs.append(scale(x, train=train, return_features=return_features))
    return outputs


def batch_norm_groups(model_config) -> int:
  """BatchNorm groups for `config.model.batch_norm_stats`: 1 (global) or the device count."""
  return jax.device_count() if model_config.batch_norm_stats == 'per_device' else 1


def create_generator(model_config, image_size: int, out_channels: int = 3) -> nn.Module:
  """The generator a config describes (`config.model`, `model.generator`), for `image_size`² images.

  Args:
    model_config: `config.model`; its 'auto' speed keys take their value for JAX's default
      backend (`runtime.conv_impl`).
    image_size: the side of the square images (U-Net: a power of two >= 32, its levels follow it;
      ResNet: a multiple of 4, >= 8).
    out_channels: channels of the generated images (the input's follow the images given).

  Returns:
    The unbound generator: a `UNetGenerator` or a `ResnetGenerator`.
  """
  if model_config.generator == 'unet':
    return UNetGenerator(
        out_channels=out_channels,
        num_levels=num_unet_levels(image_size),
        base_features=model_config.ngf,
        norm=model_config.norm,
        bottleneck_norm=model_config.bottleneck_norm,
        leaky_relu_slope=model_config.leaky_relu_slope,
        dropout_rate=model_config.dropout_rate,
        num_dropout_layers=model_config.num_dropout_layers,
        dropout_skip_innermost=model_config.dropout_skip_innermost,
        init_std=model_config.init_std,
        batch_norm_groups=batch_norm_groups(model_config),
        conv_impl=runtime.conv_impl(model_config),
        dtype=jnp.dtype(model_config.compute_dtype),
    )
  return ResnetGenerator(
      out_channels=out_channels,
      num_blocks=RESNET_BLOCKS[model_config.generator],
      base_features=model_config.ngf,
      norm=model_config.norm,
      dropout_rate=model_config.dropout_rate,
      init_std=model_config.init_std,
      batch_norm_groups=batch_norm_groups(model_config),
      conv_impl=runtime.conv_impl(model_config),
      dtype=jnp.dtype(model_config.compute_dtype),
  )


def side_multiple(generator: nn.Module) -> int:
  """What the sides of a generator's input must be multiples of (at a native resolution).

  Args:
    generator: a `UNetGenerator` (2**num_levels: its stride-2 levels down to the bottleneck) or a
      `ResnetGenerator` (4: its two stride-2 convolutions).

  Returns:
    The multiple.
  """
  if isinstance(generator, UNetGenerator):
    return 2**generator.num_levels
  if isinstance(generator, ResnetGenerator):
    return RESNET_SIDE_MULTIPLE
  raise TypeError(f'not a generator of this module: {type(generator).__name__}')


def create_discriminator(model_config) -> nn.Module:
  """The PatchGAN a config describes (`config.model.patch_size` in {1, 16, 70, 286}).

  Args:
    model_config: `config.model`; 'auto' speed keys as for `create_generator`.

  Returns:
    The unbound `PatchDiscriminator`, or with `model.num_discriminators` > 1 a
    `MultiScaleDiscriminator` of that many copies of it.
  """
  discriminator = PatchDiscriminator(
      base_features=model_config.ndf,
      num_strided_layers=PATCH_SIZE_TO_STRIDED_LAYERS[model_config.patch_size],
      norm=model_config.norm,
      leaky_relu_slope=model_config.leaky_relu_slope,
      init_std=model_config.init_std,
      batch_norm_groups=batch_norm_groups(model_config),
      spectral_norm=model_config.d_spectral_norm,
      conv_impl=runtime.conv_impl(model_config, network='discriminator'),
      dtype=jnp.dtype(model_config.compute_dtype),
  )
  if model_config.num_discriminators == 1:
    return discriminator  # The paper's D, with the parameter tree of checkpoints made before.
  return MultiScaleDiscriminator(discriminator, model_config.num_discriminators)
