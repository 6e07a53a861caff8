"""Images/s of the train input pipeline (decode, resize, jitter, flip, direction, batch).

  python benchmarks/input_pipeline.py --config=configs/maps.py \
      --config.data.manual_dir=../shared/data/maps286 --config.data.verify=off

Prints one JSON line per (workers, threads, cache) setting: a cold pass (decode + resize + jitter)
and, with the cache on, a warm pass (the second epoch: crop and flip only). The pipeline must stay
>= 3× ahead of the train step: ~1,200 images/s for a GPU doing 400 steps/s at batch 1.
"""

import itertools
import json
import pathlib
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # For configs/.

from pix2pix_jax.data import pipeline  # pylint: disable=g-import-not-at-top

config_flags.DEFINE_config_file('config', 'configs/maps.py', 'Data config.', lock_config=True)
flags.DEFINE_list('workers', ['0', '2'], 'Worker process counts to time.')
flags.DEFINE_list('threads', ['1', '4'], 'Thread counts to time.')
flags.DEFINE_integer('images', 512, 'Images per timed pass.')
FLAGS = flags.FLAGS


def time_pass(iterator, batches: int, batch_size: int) -> float:
  start = time.perf_counter()
  for batch in itertools.islice(iterator, batches):
    assert batch['input'].shape[0] == batch_size
  return batches * batch_size / (time.perf_counter() - start)


def main(_):
  config = FLAGS.config
  source = pipeline.create_source(config.data, 'train', config.seed)
  print(f'# {config.data.name}: {len(source)} train examples', flush=True)
  batches = max(FLAGS.images // config.batch_size, 1)
  for workers, threads, cache in itertools.product(
      map(int, FLAGS.workers), map(int, FLAGS.threads), (False, True)
  ):
    config.data.num_workers, config.data.num_threads, config.data.cache = workers, threads, cache
    source = pipeline.create_source(config.data, 'train', config.seed)
    dataset = pipeline.train_dataset(
        source, config.data, batch_size=config.batch_size, seed=config.seed
    )
    steps_per_epoch = len(source) // config.batch_size
    iterator = pipeline.train_iterator(dataset, 0, config.data)
    row = {
        'dataset': config.data.name,
        'workers': workers,
        'threads': threads,
        'cache': cache,
        'batch_size': config.batch_size,
        'cold_images_per_s': round(time_pass(iterator, batches, config.batch_size), 1),
    }
    if cache and workers == 0:  # Worker processes do not share the parent's cache.
      time_pass(iterator, max(steps_per_epoch - batches, 0), config.batch_size)  # Fill it.
      row['warm_images_per_s'] = round(time_pass(iterator, batches, config.batch_size), 1)
    print(json.dumps(row), flush=True)


if __name__ == '__main__':
  app.run(main)
