"""Every config field, with the paper's (Isola et al. 2017) defaults.

Other configs import this one and change a few lines. Any field can be overridden on the command
line, e.g. `--config.model.patch_size=16`; a misspelt key or a wrong type is an error.
"""

import ml_collections
from ml_collections import config_dict


def _auto() -> ml_collections.FieldReference:
  """A speed key that is 'auto' (resolved per backend by pix2pix_jax/runtime.py) or a value."""
  return ml_collections.FieldReference('auto', field_type=object)


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds init, dropout noise, data order and augmentation.
  config.batch_size = 1  # Global batch (paper: 1); split over all devices, so divisible by their count.
  config.num_epochs = 200  # Paper, maps: 200 epochs.
  config.num_train_steps = -1  # -1: num_epochs × (train examples // batch_size).
  # Train steps per device call (one `lax.scan`): the host dispatches, and with data.on_device
  # feeds, once per call instead of once per step, which matters when a step takes a few ms (GPU,
  # batch 1). Calls end at log/eval/checkpoint steps; results equal steps_per_call=1 up to float
  # rounding. 'auto': 1 on CPU (XLA:CPU unrolls the steps of a call), 100 on GPU/TPU.
  config.steps_per_call = _auto()
  # XLA:CPU only (ignored on GPU/TPU): compile the train step with region analysis in XLA's copy
  # insertion. Without it XLA:CPU copies each Adam first moment before updating it in place, as the
  # moment's update is fused into both its own output and the parameter update. Same results;
  # the paper step on the 2-core CPU takes 0.65 s instead of 0.71 s.
  config.xla_cpu_region_analysis = True

  config.data = data = ml_collections.ConfigDict()
  # 'maps', 'facades', 'cityscapes', 'edges2shoes', 'edges2handbags', 'night2day' (the pix2pix
  # authors' paired sets, via the TFDS builder `pix2pix`), 'folder' (your own pairs: see
  # pix2pix_jax/data/folder.py) or 'synthetic' (built-in procedural maps, no download).
  data.name = 'maps'
  # The maps pairs are side by side: left half = aerial photo = A, right half = map = B.
  # AtoB: aerial -> map; BtoA: map -> aerial (the paper's headline maps direction shown here).
  data.direction = 'BtoA'
  data.image_size = 256  # Model resolution; a power of two >= 32 (U-Net levels follow it).
  data.channels = 3
  # 'resize_and_crop' (paper jitter: resize to load_size, random crop, flip), 'resize' (to
  # image_size only) or 'patches' (4 native-resolution image_size crops per image, then jitter).
  data.preprocess = 'resize_and_crop'
  data.load_size = 286  # Paper: resize to 286×286, then random-crop 256×256.
  data.flip = True  # Random horizontal flip (the same for input and target).
  data.train_split = 'train'
  data.eval_split = 'val'  # maps has no test split; its 1098 val pairs are the paper's test set.
  data.data_dir = config_dict.placeholder(str)  # Prepared TFDS data; None: TFDS's default.
  # Offline copy of a pix2pix dataset: the extracted archive (train/, val/), the .tar.gz itself
  # or a folder holding it, or a resized copy in the same layout. None: download.
  data.manual_dir = config_dict.placeholder(str)
  # maps integrity check against the shipped SHA-256 manifest: 'full' (every file present and
  # matching), 'present' (present files must match: partial copies), 'off' (resized copies).
  data.verify = 'full'
  data.folder_dir = config_dict.placeholder(str)  # Root of your own pairs (data.name='folder').
  # Keep decoded, resized pairs in host memory after their first use: later epochs only crop and
  # flip. maps at 286²: 538 MB. Turn off for datasets larger than host memory.
  data.cache = True
  # Keep the resized train set in device memory (replicated; maps at 286²: 538 MB per device) and
  # shuffle, crop and flip it inside the jitted step: no host input pipeline at all while training.
  # Same augmentation as the host pipeline, different random numbers. 'auto': on GPU/TPU when the
  # train set takes at most 1/4 of a device's memory, never on CPU.
  data.on_device = _auto()
  data.num_threads = 4  # Host threads decoding and augmenting ahead of the device.
  data.num_workers = 0  # Worker processes (each with num_threads threads); 0: in this process.
  data.prefetch = 4  # Batches prepared ahead on the host.
  # Built-in synthetic data (data.name = 'synthetic'): size of each split.
  data.synthetic_train_examples = 1096  # Same size as the maps train split.
  data.synthetic_eval_examples = 100

  config.model = model = ml_collections.ConfigDict()
  model.ngf = 64  # Generator base filters (C64 ... C512).
  model.ndf = 64  # Discriminator base filters.
  model.patch_size = 70  # PatchGAN receptive field: 1 (PixelGAN), 16, 70 (paper default), 286 (ImageGAN at 256²).
  model.norm = 'batch'  # 'batch' (paper) or 'instance' (no running stats, convs get biases).
  # BatchNorm statistics with the batch split over several devices: 'global' (over the whole
  # batch, as on one device: results do not depend on the device count) or 'per_device' (each
  # device's shard, as PyTorch DDP without SyncBatchNorm; no cross-device reduction in the norms).
  model.batch_norm_stats = 'global'
  model.bottleneck_norm = False  # Paper: no BatchNorm on the 1×1 bottleneck (it would zero it at batch 1).
  model.leaky_relu_slope = 0.2  # Paper: encoder and discriminator LeakyReLU slope 0.2.
  model.dropout_rate = 0.5  # Paper: dropout, also at test time, is G's only noise source (no z).
  model.num_dropout_layers = 3  # Paper: on the first three decoder layers.
  model.dropout_skip_innermost = False  # True: the PyTorch reference's placement (decoder layers 2-4).
  model.init_std = 0.02  # Paper: weights N(0, 0.02); BatchNorm scales N(1, 0.02).
  # How the decoder's transposed convs are computed (all the same linear map and parameters; see
  # models.conv_transpose_4x4_stride2). 'adjoint': gradients written as the encoder-style stride-2
  # convolution (fastest on CPU); 'subpixel': four stride-1 convs + depth-to-space;
  # 'conv_transpose': XLA's own, autodiff (slow on XLA:CPU). 'auto': 'adjoint' on CPU,
  # 'conv_transpose' on GPU/TPU (pix2pix_jax/runtime.py).
  model.upsample_impl = _auto()
  # Levels of at most this many pixels per image (256²: the 8×8 ... 1×1 levels) compute their
  # convolutions as matrix products on the weights' own layout: same values; on XLA:CPU it avoids
  # copying each multi-MB kernel into a transposed layout for every gradient. 0: never.
  # 'auto': 64 on CPU, 0 on GPU/TPU.
  model.matmul_max_pixels = _auto()
  # How 4×4 convolutions with at least `winograd_min_channels` input channels are computed (not
  # those of `matmul_max_pixels` levels, nor PatchGAN's 1-channel logits): 'xla' (lax.conv) or
  # 'winograd' (models.conv_4x4_winograd: same parameters and linear map with 25/64 (stride 1) or
  # 9/16 (stride 2) of the multiplications; float32 rounding ~1e-6-5e-6 relative instead of ~5e-7).
  # 'auto': 'winograd' on CPU in float32, 'xla' elsewhere (GPUs: cuDNN picks its own algorithms).
  # 64: all but the first layers (3 and 6 input channels).
  model.conv_impl = 'auto'
  model.winograd_min_channels = 64
  model.compute_dtype = 'float32'  # Activations/conv dtype ('bfloat16' for speed); params stay float32.

  config.loss = loss = ml_collections.ConfigDict()
  loss.gan_mode = 'vanilla'  # 'vanilla' (paper: sigmoid cross-entropy on logits) or 'lsgan'.
  loss.lambda_l1 = 100.0  # Paper: λ = 100 for the L1 term.

  config.optim = optim = ml_collections.ConfigDict()
  optim.learning_rate = 2e-4  # Paper: Adam, lr 0.0002, β1 0.5, β2 0.999 (both networks).
  optim.b1 = 0.5
  optim.b2 = 0.999
  optim.schedule = 'constant'  # 'constant' (paper) or 'linear' (reference: constant, then linear to 0).
  optim.decay_epochs = 100  # 'linear': the last N epochs decay to 0 (reference: 100 of 200).

  config.eval = eval_config = ml_collections.ConfigDict()
  # Paper: "at inference time we run the generator net in exactly the same manner as during the
  # training phase": dropout on, BatchNorm with the test batch's statistics.
  eval_config.train_mode = True
  eval_config.batch_size = 8  # Eval batch (also split over devices).
  eval_config.num_examples = -1  # Eval examples scored during training; -1: the whole eval split.
  eval_config.every_steps = 5000  # Eval L1 and image panel (0: only at the end).
  eval_config.num_panel_images = 4  # Rows of the [input | generated | target] panel.
  # --mode=evaluate: FID and KID (InceptionV3 pool3) and LPIPS, when the `metrics` extra is
  # installed (pip install -e '.[metrics]'); L1, PSNR, SSIM and HP-L1 are always computed.
  eval_config.perceptual = True
  eval_config.lpips_net = 'alex'  # LPIPS backbone: 'alex' (the LPIPS paper's default) or 'vgg'.
  eval_config.kid_subset_size = 1000  # KID subsets of this many images (fewer if the split is smaller).

  # A non-finite loss: 'stop' (raise, naming the step and the loss; only finite states are ever
  # checkpointed) or 'skip' (drop that step's updates and go on; skipped steps are logged).
  config.on_nonfinite = 'stop'
  config.log_every_steps = 100  # Losses, learning rate, steps/s and a progress line.
  config.checkpoint_every_steps = 5000  # The last step is always checkpointed too.
  config.keep_checkpoints = 3  # Most recent checkpoints kept.
  return config
