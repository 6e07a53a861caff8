"""Every config field, with the paper's (Isola et al. 2017) defaults.

Other configs import this one and change a few lines. Any field can be overridden on the command
line, e.g. `--config.model.patch_size=16`; a misspelt key or a wrong type is an error. The science
comes first; the last block holds the speed and runtime keys, which change how fast a run is but
not what it computes (up to float rounding).
"""

import ml_collections
from ml_collections import config_dict


def _auto() -> ml_collections.FieldReference:
  """A speed key that is 'auto' (resolved per backend by pix2pix_jax/runtime.py) or a value."""
  return ml_collections.FieldReference('auto', field_type=object)


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds init, dropout noise, data order and augmentation.
  config.batch_size = 1  # Global batch (paper: 1), split over all devices (a multiple of them).
  config.num_epochs = 200  # Paper, maps: 200 epochs.
  config.num_train_steps = -1  # -1: num_epochs × (train examples // batch_size).

  config.data = data = ml_collections.ConfigDict()
  # pix2pix datasets (TFDS builder `pix2pix`): 'maps', 'facades', 'cityscapes', 'edges2shoes',
  # 'edges2handbags', 'night2day'; 'folder' (your pairs, data/folder.py); 'synthetic' (built in).
  data.name = 'maps'
  data.direction = 'BtoA'  # maps: A = left = aerial, B = right = map; BtoA is map -> aerial.
  data.image_size = 256  # Model resolution. U-Net: a power of two >= 32; ResNet: a multiple of 4.
  data.channels = 3  # Image channels, input and output (unless set apart by the next two keys).
  data.input_channels = config_dict.placeholder(
      int
  )  # Generator input channels; None: data.channels.
  data.output_channels = config_dict.placeholder(
      int
  )  # Output (target) channels; None: data.channels.
  # 'resize_and_crop' (paper jitter), 'resize' (to image_size) or 'patches' (4 native crops).
  data.preprocess = 'resize_and_crop'
  data.load_size = 286  # Paper: resize to 286×286, then random-crop 256×256.
  data.flip = True  # Random horizontal flip (the same for input and target).
  data.train_split = 'train'
  data.eval_split = 'val'  # maps has no test split; its 1098 val pairs are the paper's test set.
  data.data_dir = config_dict.placeholder(str)  # Prepared TFDS data; None: TFDS's default.
  # Offline copy of a pix2pix dataset (archive, extracted or resized folder); None: download.
  data.manual_dir = config_dict.placeholder(str)
  data.verify = 'full'  # maps SHA-256 check: 'full', 'present' (partial copy), 'off' (resized).
  data.folder_dir = config_dict.placeholder(str)  # Root of your own pairs (data.name='folder').
  data.on_bad_file = 'error'  # Unusable folder files (corrupt, odd A|B width): 'error' or 'skip'.
  # Pillow's decompression-bomb limit in pixels; None: Pillow's 89,478,485. Larger files decode
  # with a warning naming them, files over twice it are bad files: raise it for huge orthophotos.
  data.max_image_pixels = config_dict.placeholder(int)
  data.synthetic_train_examples = 1096  # data.name='synthetic': train pairs (as many as maps).
  data.synthetic_eval_examples = 100  # data.name='synthetic': eval pairs.

  config.model = model = ml_collections.ConfigDict()
  # 'unet' (paper; levels follow image_size), 'resnet_9blocks' or 'resnet_6blocks' (the
  # reference's ResnetGenerator, Johnson et al.; GAN Compression's maps generator is resnet_9blocks).
  model.generator = 'unet'
  model.ngf = 64  # Generator base filters (C64 ... C512).
  model.ndf = 64  # Discriminator base filters.
  model.patch_size = 70  # PatchGAN receptive field: 1 (PixelGAN), 16, 70 (paper), 286 (ImageGAN).
  # PatchGANs on the pair at full, 1/2, 1/4 ... resolution (pix2pixHD's multi-scale D: 2-3); 1: paper.
  model.num_discriminators = 1
  model.d_spectral_norm = False  # Spectral norm on D's middle convolutions (SPADE's); paper: off.
  model.norm = 'batch'  # 'batch' (paper) or 'instance' (no running stats, convs get biases).
  # BatchNorm over several devices: 'global' (the whole batch, as one device) or 'per_device'.
  model.batch_norm_stats = 'global'
  model.bottleneck_norm = False  # Paper: no BatchNorm on the 1×1 bottleneck (zero at batch 1).
  model.leaky_relu_slope = 0.2  # Paper: encoder and discriminator LeakyReLU slope 0.2.
  model.dropout_rate = 0.5  # Paper: dropout, also at test time, is G's only noise source (no z).
  # U-Net only: dropout's placement (the ResNet has one dropout per residual block if rate > 0).
  model.num_dropout_layers = 3  # Paper: on the first three decoder layers.
  model.dropout_skip_innermost = False  # True: the PyTorch reference's placement (layers 2-4).
  model.init_std = 0.02  # Paper: weights N(0, 0.02); BatchNorm scales N(1, 0.02).
  # Exponential moving average of G's params and batch stats, kept in the state; 0: off (paper).
  model.ema_decay = 0.0

  config.loss = loss = ml_collections.ConfigDict()
  # 'vanilla' (paper: sigmoid cross-entropy on logits), 'lsgan' or 'hinge' (SPADE).
  loss.gan_mode = 'vanilla'
  loss.lambda_l1 = 100.0  # Paper: λ = 100 for the L1 term.
  loss.lambda_feat = 0.0  # D feature-matching loss weight (pix2pixHD: 10); 0: off (paper).

  config.optim = optim = ml_collections.ConfigDict()
  optim.learning_rate = 2e-4  # Paper: Adam, lr 0.0002, β1 0.5, β2 0.999 (both networks).
  optim.b1 = 0.5
  optim.b2 = 0.999
  optim.schedule = 'constant'  # 'constant' (paper) or 'linear' (reference: then linear to 0).
  optim.decay_epochs = 100  # 'linear': the last N epochs decay to 0 (reference: 100 of 200).

  config.eval = eval_config = ml_collections.ConfigDict()
  eval_config.train_mode = True  # Paper's test time: dropout on, each image's own BatchNorm stats.
  eval_config.use_ema = True  # With model.ema_decay > 0: score, predict and export the EMA weights.
  eval_config.num_examples = -1  # Eval examples scored during training; -1: the whole split.
  eval_config.every_steps = 5000  # Training's eval metrics and image panel (0: only at the end).
  eval_config.num_panel_images = 4  # Rows of the [input | generated | target] panel.
  # FID, KID, LPIPS (the `metrics` extra) in every mode's eval, training's included (its cost is
  # logged: eval_seconds).
  eval_config.perceptual = True
  # Training keeps the checkpoint of its best eval by this metric (lower is better but for psnr
  # and ssim) in WORKDIR/checkpoints_best, for --step=best: 'fid', 'kid', 'lpips', 'l1', 'psnr',
  # 'ssim', 'hp_l1'; None ('none' on the command line): off. A workdir keeps one metric's best.
  eval_config.best_metric = ml_collections.FieldReference('fid', field_type=str)
  eval_config.lpips_net = 'alex'  # LPIPS backbone: 'alex' (the LPIPS paper's default) or 'vgg'.
  eval_config.kid_subset_size = 1000  # KID subsets of this many images (fewer if the split is).

  # --mode=sweep's runs when no --sweep flag is given: 'KEY=VALUE,VALUE,...' per axis, as the
  # flag takes them (configs/sweeps/maps_study.py); zip: pair the lists instead of their grid.
  config.sweep = sweep = ml_collections.ConfigDict()
  sweep.axes = ()
  sweep.zip = False

  config.export = export_config = ml_collections.ConfigDict()
  export_config.format = 'jax'  # 'jax' (jax.export, StableHLO) or 'onnx' (the `onnx` extra).

  # A non-finite loss: 'stop' (raise, naming step and loss) or 'skip' (drop the step's updates).
  config.on_nonfinite = 'stop'
  config.log_every_steps = 100  # Losses, learning rate, steps/s and a progress line.
  config.checkpoint_every_steps = 5000  # The last step is always checkpointed too.
  config.keep_checkpoints = 3  # Most recent checkpoints kept.

  # ---------------------------------------------------------------------------------------------
  # Speed and runtime only: same results up to float rounding. 'auto' resolves per backend in
  # pix2pix_jax/runtime.py (its table; logged at start).
  config.steps_per_call = _auto()  # Train steps per device call (lax.scan); 'auto': CPU 1, GPU 100.
  config.xla_cpu_region_analysis = True  # XLA:CPU copy insertion without copies of Adam moments.
  data.on_device = _auto()  # Train set in device memory, jitter on device; 'auto': GPU/TPU if fits.
  data.cache = True  # Decoded, resized pairs kept in host memory after their first use.
  data.num_threads = 4  # Host threads decoding and augmenting ahead of the device.
  data.num_workers = 0  # Worker processes (each with num_threads threads); 0: in this process.
  data.prefetch = 4  # Batches prepared ahead on the host.
  # Transposed convs: 'adjoint', 'subpixel' or 'conv_transpose' (XLA's); 'auto': CPU 'adjoint'.
  model.upsample_impl = _auto()
  model.matmul_max_pixels = _auto()  # Levels of <= this many pixels as matmuls; 'auto': CPU 64.
  model.conv_impl = 'auto'  # 4×4 convs: 'xla' or 'winograd'; 'auto': Winograd on CPU in float32.
  model.winograd_min_channels = 64  # Winograd for convs with at least this many input channels.
  model.compute_dtype = 'float32'  # Activations and convs ('bfloat16': coarser rounding, faster).
  eval_config.batch_size = 8  # Eval batch (split over devices).
  return config
