"""Config validation: impossible combinations fail before anything is built or compiled."""

import ml_collections

from pix2pix_jax import checkpointing, kernels, losses, metrics, models, runtime, serving
from pix2pix_jax import train_state
from pix2pix_jax.data import folder, images, pipeline

_CHOICES = {
    'data.name': pipeline.DATASETS,
    'data.direction': images.DIRECTIONS,
    'data.preprocess': pipeline.PREPROCESS_MODES,
    'data.verify': images.VERIFY_MODES,
    'data.on_bad_file': folder.ON_BAD_FILE,
    'model.generator': models.GENERATORS,
    'model.patch_size': tuple(models.PATCH_SIZE_TO_STRIDED_LAYERS),
    'model.norm': models.NORMS,
    'model.batch_norm_stats': models.BATCH_NORM_STATS,
    'model.upsample_impl': kernels.UPSAMPLE_IMPLS + (runtime.AUTO,),
    'model.conv_impl': runtime.CONV_IMPLS + (runtime.AUTO,),
    'model.compute_dtype': ('float32', 'bfloat16', 'float16'),
    'loss.gan_mode': losses.GAN_MODES,
    'optim.schedule': train_state.SCHEDULES,
    'export.format': serving.FORMATS,
    'on_nonfinite': ('stop', 'skip'),
}


def _get(config, dotted):
  for part in dotted.split('.'):
    config = config[part]
  return config


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check_generator_size(config: ml_collections.ConfigDict) -> None:
  """The image size the generator can take: U-Net levels follow it, the ResNet halves it twice."""
  size, generator = config.data.image_size, config.model.generator
  if generator == 'unet':
    try:
      models.num_unet_levels(size)
    except ValueError as error:
      raise ValueError(f'config.data.image_size: {error}') from None
  elif size % models.RESNET_SIDE_MULTIPLE or size < models.RESNET_MIN_SIDE:
    raise ValueError(
        f'config.data.image_size={size} does not suit config.model.generator={generator!r}: the '
        f'ResNet generator needs a multiple of {models.RESNET_SIDE_MULTIPLE} (two stride-2 '
        f'convolutions, undone by two transposed ones), at least {models.RESNET_MIN_SIDE} (its '
        'reflection padding at a quarter of the size)'
    )


def _check_best_metric(config: ml_collections.ConfigDict, training: bool) -> None:
  """eval.best_metric names a metric; in training, one that the eval config can compute."""
  metric = checkpointing.best_metric(config)
  if metric is None:
    return
  if metric not in metrics.METRICS:
    raise ValueError(
        f'config.eval.best_metric={metric!r} is not one of {list(metrics.METRICS)} or None'
    )
  if not training:
    return  # Other modes only read the best checkpoint.
  if metrics.METRICS[metric].perceptual and not config.eval.perceptual:
    raise ValueError(
        f'config.eval.best_metric={metric!r} is a perceptual metric, but config.eval.perceptual='
        'False turns FID, KID and LPIPS off: set config.eval.perceptual=True, or a pixel metric '
        "(e.g. --config.eval.best_metric=l1), or None ('none') to keep no best checkpoint"
    )
  minimum = metrics.SET_METRICS_MIN_IMAGES
  if metric in metrics.SET_METRICS and 0 < config.eval.num_examples < minimum:
    raise ValueError(
        f'config.eval.best_metric={metric!r} needs at least {minimum} images per eval, but '
        f'config.eval.num_examples={config.eval.num_examples}: score more examples, or pick a '
        'per-image metric (e.g. l1)'
    )


def validate_config(
    config: ml_collections.ConfigDict, device_count: int, *, training: bool = False
) -> None:
  """Raises ValueError naming the offending `config.*` key.

  Args:
    config: the run's config.
    device_count: devices the batch is split over.
    training: also check what only training uses (what eval.best_metric needs).
  """
  for key, choices in _CHOICES.items():
    if _get(config, key) not in choices:
      raise ValueError(f'config.{key}={_get(config, key)!r} is not one of {list(choices)}')
  _check_generator_size(config)
  if config.data.name == 'folder' and not config.data.folder_dir:
    raise ValueError(
        "config.data.name='folder' needs config.data.folder_dir: the root of your pairs"
    )
  if config.data.preprocess != 'resize' and config.data.load_size < config.data.image_size:
    raise ValueError(
        f'config.data.load_size={config.data.load_size} is smaller than '
        f'config.data.image_size={config.data.image_size}: nothing to crop'
    )
  for key in ('batch_size', 'eval.batch_size'):
    value = _get(config, key)
    if value < 1 or value % device_count:
      raise ValueError(
          f'config.{key}={value} must be a positive multiple of the device count '
          f'({device_count}): the batch is split evenly over devices'
      )
  if config.num_train_steps == 0 or config.num_train_steps < -1:
    raise ValueError(
        f'config.num_train_steps={config.num_train_steps}: use a positive count, '
        'or -1 to train for config.num_epochs'
    )
  if config.num_train_steps == -1 and config.num_epochs < 1:
    raise ValueError(f'config.num_epochs={config.num_epochs} must be >= 1')
  for key, minimum in (('steps_per_call', 1), ('model.matmul_max_pixels', 0)):
    value = _get(config, key)
    if value != runtime.AUTO and (not _is_int(value) or value < minimum):
      raise ValueError(f"config.{key}={value!r} must be 'auto' or an integer >= {minimum}")
  if config.data.on_device != runtime.AUTO and not isinstance(config.data.on_device, bool):
    raise ValueError(
        f"config.data.on_device={config.data.on_device!r} must be 'auto', True or False"
    )
  for key in (
      'data.channels',
      'data.input_channels',
      'data.output_channels',
      'model.num_discriminators',
  ):
    value = _get(config, key)
    if not (key.endswith('put_channels') and value is None) and (not _is_int(value) or value < 1):
      raise ValueError(
          f'config.{key}={value!r} must be an integer >= 1'
          + (' (or None: data.channels)' if key.endswith('put_channels') else '')
      )
  if config.data.name != 'folder' and pipeline.channels(config.data) != (3, 3):
    raise ValueError(
        f'config.data.input_channels/output_channels resolve to {pipeline.channels(config.data)} '
        f'(config.data.channels={config.data.channels}), but config.data.name='
        f'{config.data.name!r} is RGB: 3 and 3. Other channel counts need your own pairs '
        "(config.data.name='folder')"
    )
  pixels = config.data.max_image_pixels
  if pixels is not None and (not _is_int(pixels) or pixels < 1):
    raise ValueError(
        f'config.data.max_image_pixels={pixels!r} must be an integer >= 1, or None for '
        "Pillow's limit"
    )
  if not 0 <= config.model.ema_decay < 1:
    raise ValueError(
        f'config.model.ema_decay={config.model.ema_decay} must be in [0, 1) '
        '(0: no EMA; 0.999 averages over about the last 1000 steps)'
    )
  for key in ('loss.lambda_l1', 'loss.lambda_feat'):
    if _get(config, key) < 0:
      raise ValueError(f'config.{key}={_get(config, key)} must be >= 0')
  for key in ('log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints'):
    if _get(config, key) < 1:
      raise ValueError(f'config.{key}={_get(config, key)} must be >= 1')
  if config.eval.every_steps < 0:
    raise ValueError(f'config.eval.every_steps={config.eval.every_steps} must be >= 0')
  if config.eval.num_examples == 0 or config.eval.num_examples < -1:
    raise ValueError(
        f'config.eval.num_examples={config.eval.num_examples}: use a positive count, '
        'or -1 for the whole eval split'
    )
  _check_best_metric(config, training)
  strided = models.PATCH_SIZE_TO_STRIDED_LAYERS[config.model.patch_size]
  if strided and config.data.image_size // 2**strided - 2 < 1:
    raise ValueError(
        f'config.model.patch_size={config.model.patch_size} needs config.data.image_size >= '
        f'{3 * 2**strided} (its {strided} stride-2 convolutions leave no patch logit at '
        f'{config.data.image_size}×{config.data.image_size})'
    )
  _check_smallest_scale(config, strided)


def _check_smallest_scale(config: ml_collections.ConfigDict, strided: int) -> None:
  """A multi-scale D's coarsest PatchGAN still gives a patch logit (`strided` stride-2 convs)."""
  num_scales, size = config.model.num_discriminators, config.data.image_size
  smallest = size
  for _ in range(num_scales - 1):
    smallest = -(-smallest // 2)  # models.downsample: AvgPool2d(3, 2, padding=1) rounds up.
  if strided and smallest // 2**strided - 2 < 1:
    # The least size whose (num_scales - 1) halvings, rounded up, leave 3·2**strided pixels.
    minimum = (3 * 2**strided - 1) * 2 ** (num_scales - 1) + 1
    raise ValueError(
        f'config.model.num_discriminators={num_scales} with config.model.patch_size='
        f'{config.model.patch_size} needs config.data.image_size >= {minimum}: at '
        f'config.data.image_size={size} its coarsest scale ({smallest}×{smallest}, downsampled '
        f'{num_scales - 1} times) leaves no patch logit'
    )
