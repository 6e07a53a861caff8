"""`--mode=evaluate`: the trained generator over the whole eval split, with image metrics.

Metrics are computed on images in [0, 1] after the generator's output is quantised to 8 bits
(what a saved PNG holds): L1, PSNR (data range 1), SSIM (Gaussian window 11, σ 1.5, per channel),
HP-L1 (L1 of 3×3 Laplacian high-passes), and with the `metrics` extra FID and KID (InceptionV3
pool3) and LPIPS (AlexNet). Results go to WORKDIR/eval/metrics.json, per_image.csv and panels/,
to TensorBoard (`eval_*` scalars at the checkpoint's step) and to the log as a table.
"""

import csv
import functools
import heapq
import json
import logging
import pathlib

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from pix2pix_jax import config_checks, inference, metrics, summary
from pix2pix_jax import sharding as sharding_lib
from pix2pix_jax.data import pipeline

PIXEL_METRICS = ('l1', 'psnr', 'ssim', 'hp_l1')
_TITLES = {'l1': 'L1', 'psnr': 'PSNR (dB)', 'ssim': 'SSIM', 'hp_l1': 'HP-L1', 'lpips': 'LPIPS'}


def evaluate_batch(network, batch: dict, rng: jax.Array, *, generator, train_mode: bool) -> dict:
  """Generates a batch and scores every image; returns uint8 outputs and per-image metrics."""
  generated = inference.to_uint8(inference.generate(generator, network, batch['input'], rng,
                                                    train_mode))
  fake, real = generated.astype(jnp.float32) / 255, batch['target'].astype(jnp.float32) / 255
  return {'generated': generated} | {name: getattr(metrics, name)(fake, real)
                                     for name in PIXEL_METRICS}


class _Panels:
  """The first `count` examples, and the `count` best and worst by L1, as [in | out | target]."""

  def __init__(self, count: int):
    self.count, self.fixed, self._best, self._worst = count, [], [], []

  def add(self, l1: float, name: str, index: int, panel: np.ndarray) -> None:
    if len(self.fixed) < self.count:
      self.fixed.append((l1, name, panel))
    # Heaps whose smallest key is the first to drop out: -L1 for the best, L1 for the worst.
    for heap, key in ((self._best, -l1), (self._worst, l1)):
      if len(heap) < self.count:
        heapq.heappush(heap, (key, index, name, panel))
      elif key > heap[0][0]:
        heapq.heapreplace(heap, (key, index, name, panel))

  def groups(self) -> dict:
    best = sorted(((-key, name, panel) for key, _, name, panel in self._best), key=lambda e: e[0])
    worst = sorted(((key, name, panel) for key, _, name, panel in self._worst), key=lambda e: -e[0])
    return {'fixed': self.fixed, 'best': best, 'worst': worst}


def _perceptual_scorers(config: ml_collections.ConfigDict):
  """(InceptionFeatures, LPIPS) if the `metrics` extra is installed and wanted, else Nones."""
  if not config.eval.perceptual:
    return None, None
  from pix2pix_jax import perceptual  # pylint: disable=g-import-not-at-top
  ok, why = perceptual.available()
  if not ok:
    logging.warning('FID, KID and LPIPS skipped: %s', why)
    return None, None
  return perceptual.InceptionFeatures(), perceptual.LPIPS(net=config.eval.lpips_net)


def format_table(results: dict) -> str:
  """The metrics as a markdown table (mean / min / max / std), then FID and KID."""
  lines = ['| metric | mean | min | max | std |', '|---|---|---|---|---|']
  for name, title in _TITLES.items():
    if name in results:
      stats = results[name]
      lines.append(f'| {title} | ' + ' | '.join(f'{stats[k]:.4f}' for k in ('mean', 'min', 'max', 'std'))
                   + ' |')
  if 'fid' in results:
    lines.append(f'| FID | {results["fid"]:.2f} | | | |')
  if 'kid' in results:
    kid = results['kid']
    title = f'KID (subsets of {kid["subset_size"]})' if 'subset_size' in kid else 'KID'
    lines.append(f'| {title} | {kid["mean"]:.4f} | | | {kid["std"]:.4f} |')
  return '\n'.join(lines)


def evaluate(config: ml_collections.ConfigDict, workdir: str, step: int | None = None) -> dict:
  """Scores the generator of checkpoint `step` (default: latest) on every eval example.

  Args:
    config: the run's config (`config.eval.train_mode` picks the test-time behaviour).
    workdir: the training workdir.
    step: checkpoint step, or None for the latest.

  Returns:
    The contents written to WORKDIR/eval/metrics.json.
  """
  config_checks.validate_config(config, jax.device_count())
  replicated, data_sharding = sharding_lib.data_parallel_shardings()
  generator, network, step = inference.restore_trained_generator(config, workdir, step, replicated)
  source = pipeline.create_source(config.data, 'eval', config.seed)
  logging.info('Evaluating step %d on %d %s examples; test mode: %s', step, len(source),
               config.data.eval_split, inference.test_mode_description(config.eval.train_mode))
  score = jax.jit(functools.partial(evaluate_batch, generator=generator,
                                    train_mode=config.eval.train_mode),
                  in_shardings=(replicated, data_sharding, replicated))
  inception, lpips = _perceptual_scorers(config)
  rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x5eed)
  per_image, features, panels = [], {'generated': [], 'target': []}, _Panels(config.eval.num_panel_images)
  batches = pipeline.eval_batches(source, config.data, batch_size=config.eval.batch_size,
                                  process_index=jax.process_index(), process_count=jax.process_count())
  for index, host_batch in enumerate(batches):
    names = host_batch.pop('file_name')
    batch = sharding_lib.to_global(host_batch, data_sharding)
    out = multihost_utils.process_allgather(
        score(network, batch, jax.random.fold_in(rng, index)) | batch, tiled=True)
    names = multihost_utils.process_allgather(names, tiled=True) if jax.process_count() > 1 else names
    keep = np.asarray(out['mask']) > 0
    rows = {k: np.asarray(v)[keep] for k, v in out.items()}
    if lpips is not None:
      rows['lpips'] = lpips(rows['generated'] / 255.0, rows['target'] / 255.0)
    if inception is not None:
      features['generated'].append(inception(rows['generated']))
      features['target'].append(inception(rows['target']))
    for row, name in enumerate(np.asarray(names)[keep]):
      per_image.append({'file_name': str(name), 'index': int(rows['index'][row])} |
                       {k: float(rows[k][row]) for k in PIXEL_METRICS + ('lpips',) if k in rows})
      panels.add(per_image[-1]['l1'], str(name), int(rows['index'][row]), summary.image_panel(
          rows['input'][row:row + 1], rows['generated'][row:row + 1], rows['target'][row:row + 1]))

  results = {name: metrics.summarize([r[name] for r in per_image])
             for name in PIXEL_METRICS + ('lpips',) if per_image and name in per_image[0]}
  if inception is not None and per_image:
    from pix2pix_jax import perceptual  # pylint: disable=g-import-not-at-top
    fake, real = (np.concatenate(features[k]) for k in ('generated', 'target'))
    results['fid'] = perceptual.fid(fake, real, method='svd')  # Exact; sqrtm's round-off-free twin.
    results['kid'] = perceptual.kid(fake, real, subset_size=config.eval.kid_subset_size)
  report = {'step': step, 'num_images': len(per_image), 'split': config.data.eval_split,
            'direction': config.data.direction, 'dataset': config.data.name,
            'test_mode': inference.test_mode_description(config.eval.train_mode),
            'metrics': results}
  if jax.process_index() == 0:
    report['panels'] = _write_outputs(pathlib.Path(workdir), report, per_image, panels)
  logging.info('Evaluation of step %d on %d images:\n%s', step, len(per_image), format_table(results))
  return report


def _write_outputs(workdir: pathlib.Path, report: dict, per_image: list, panels: _Panels) -> dict:
  """Writes eval/metrics.json, eval/per_image.csv, eval/panels/*.png and TensorBoard scalars."""
  eval_dir = workdir / 'eval'
  listed = {}
  for group, entries in panels.groups().items():
    listed[group] = []
    for i, (l1, name, image) in enumerate(entries):
      file = f'panels/{group}_{i}.png'
      summary.save_png(image, eval_dir / file)
      listed[group].append({'file': file, 'name': name, 'l1': l1})
  if per_image:
    with open(eval_dir / 'per_image.csv', 'w', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=list(per_image[0]))
      writer.writeheader()
      writer.writerows(per_image)
  (eval_dir / 'metrics.json').write_text(json.dumps(report | {'panels': listed}, indent=2))
  scalars = {f'eval_{k}': v['mean'] if isinstance(v, dict) else v for k, v in report['metrics'].items()}
  writer = summary.SummaryWriter(workdir)
  writer.write_scalars(report['step'], scalars)
  writer.close()
  return listed
