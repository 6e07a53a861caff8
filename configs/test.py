"""Tiny CPU config for tests and CI: 32×32, 8 filters, 4 steps of batch 2 on synthetic maps.

  python main.py --config=configs/test.py --workdir=/tmp/test

Checks wiring, not quality: a run compiles and trains in seconds (the step: 2.8 ms on the 2-core
development CPU, benchmarks/README.md); eval L1 stays near its untrained 0.16.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.batch_size = 2
  config.num_train_steps = 4
  config.data.name = 'synthetic'
  config.data.image_size = 32  # 5 U-Net levels.
  config.data.load_size = 36
  config.data.synthetic_train_examples = 16
  config.data.synthetic_eval_examples = 4
  config.data.num_threads = 1
  config.model.ngf = 8
  config.model.ndf = 8
  config.eval.batch_size = 2
  config.eval.every_steps = 0
  config.eval.num_panel_images = 2
  # No FID/KID/LPIPS (seconds per eval) and so no best checkpoint by FID; the tests of those
  # turn them on.
  config.eval.perceptual = False
  config.eval.best_metric = None
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  return config
