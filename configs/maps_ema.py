"""The paper's maps model, scored, predicted and exported with an exponential moving average of G.

  python main.py --config=configs/maps_ema.py --workdir=/tmp/maps_ema

configs/maps.py's setting (map -> aerial, U-Net-256, 70×70 PatchGAN, BCE + 100·L1, Adam 2e-4,
batch 1, 200 epochs), plus an EMA of the generator's weights with decay 0.999 (an average over
about the last 1,000 steps; Karras et al. 2018 popularised it for GANs), kept beside the trained
weights in the checkpoint. Training is unchanged; `eval.use_ema` (on) makes evaluate, predict
and export use the average. Not in the paper.
Runtime and outcome with this code: not yet measured.
"""

from configs import maps


def get_config(direction: str = 'BtoA'):
  config = maps.get_config(direction)
  config.model.ema_decay = 0.999
  return config
