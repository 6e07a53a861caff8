"""`--mode=evaluate` and training's eval: image metrics of a generator's outputs against targets.

`evaluate` runs the trained generator over the whole eval split. Every score goes through one
`ImageScores`, `--mode=score`'s too (scoring.py: images generated elsewhere), so their numbers and
files are comparable.

Metrics are computed on images in [0, 1] after the generator's output is quantised to 8 bits
(what a saved PNG holds; 16-bit targets keep their 16 bits): L1, PSNR (data range 1), SSIM
(Gaussian window 11, σ 1.5, per channel), HP-L1 (L1 of 3×3 Laplacian high-passes), and with the
`metrics` extra FID and KID (InceptionV3 pool3) and LPIPS (AlexNet).

Channels: the pixel metrics are defined for 1- and 3-channel images and, for any other count,
are the same per-pixel, per-channel means (SSIM: the mean of the per-channel SSIMs), so they
compare runs on the same bands only. FID, KID and LPIPS are 3-channel RGB networks: 1-channel
images are replicated to 3 (the usual practice for grayscale); for other counts they are skipped
with one warning, and metrics.json says why (`perceptual_skipped`).

Results go to WORKDIR/eval/metrics.json, per_image.csv and panels/, to the log as a table and, for
`evaluate` only, to TensorBoard (`eval_*` scalars at the checkpoint's step; scored images have no
step).

Training's periodic eval (`evaluate_in_training`) goes through the same generation loop
(`score_generator`, with the same keys) and the same `ImageScores`, so its `eval_*` scalars are
what `evaluate` gives the same checkpoint on the same examples; it writes no files to WORKDIR/eval.
"""

import contextlib
import csv
import functools
import heapq
import json
import logging
import pathlib
from typing import NamedTuple

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from pix2pix_jax import checkpointing, inference, metrics, progress, summary
from pix2pix_jax import sharding as sharding_lib
from pix2pix_jax.data import images, pipeline

PIXEL_METRICS = ('l1', 'psnr', 'ssim', 'hp_l1')


# uint8 -> [0, 1] by table look-up, not arithmetic: XLA (CPU) fuses a computed `x / 255` into the
# metrics' `generated - target` as a fused multiply-add, so identical images came out round-off
# apart (L1 ~1e-8, PSNR ~158 dB instead of 0 and inf). Looked-up values are exact and equal.
_UNIT_VALUES = np.arange(256, dtype=np.float32) / np.float32(255)


@functools.cache
def _unit_values_16() -> np.ndarray:
  # uint16 likewise (256 KiB): v / 65535 for 257·u is u / 255's float, so 16-bit targets agree
  # exactly with 8-bit outputs of the same value.
  return np.arange(65536, dtype=np.float32) / np.float32(65535)


def _to_unit(images_: jax.Array) -> jax.Array:
  table = _unit_values_16() if images_.dtype == jnp.uint16 else _UNIT_VALUES
  return jnp.asarray(table)[images_]


def pixel_metrics(generated: jax.Array, target: jax.Array) -> dict:
  """Per-image PIXEL_METRICS of two uint8/uint16 (N, H, W, C) batches, on images in [0, 1]."""
  fake, real = _to_unit(generated), _to_unit(target)
  return {name: getattr(metrics, name)(fake, real) for name in PIXEL_METRICS}


_jitted_pixel_metrics = jax.jit(pixel_metrics)


def evaluate_batch(network, batch: dict, rng: jax.Array, *, generator, train_mode: bool) -> dict:
  """Generates a batch and scores every image; returns uint8 outputs and per-image metrics."""
  generated = images.to_uint8(
      inference.generate(generator, network, batch['input'], rng, train_mode)
  )
  return {'generated': generated} | pixel_metrics(generated, batch['target'])


def eval_rng(seed: int) -> jax.Array:
  """The key of eval's generation; batch i uses fold_in(key, i).

  Training's eval and `evaluate` both use it, so a checkpoint's scores are the same in both (with
  the paper's test-time dropout too), and repeated evaluations of one checkpoint agree.
  """
  return jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED)


def create_score_batch(generator, config: ml_collections.ConfigDict, replicated, data_sharding):
  """`evaluate_batch` jitted for `config.eval.train_mode`: (network, batch, rng) -> outputs."""
  return jax.jit(
      functools.partial(evaluate_batch, generator=generator, train_mode=config.eval.train_mode),
      in_shardings=(replicated, data_sharding, replicated),
  )


def score_generator(
    network,
    score_batch,
    source,
    config: ml_collections.ConfigDict,
    data_sharding,
    scores: 'ImageScores',
    num_examples: int = -1,
) -> None:
  """Generates the eval examples with `network` and adds them to `scores`.

  The one generation loop of `evaluate` and training's eval. Batch i is generated with the key
  fold_in(eval_rng(config.seed), i). Every process gets every image (scored on each).

  Args:
    network: the generator's {'params', 'batch_stats'}.
    score_batch: `create_score_batch`'s function.
    source: the eval source.
    config: the run's config (`config.data`, `config.eval.batch_size`, `config.seed`).
    data_sharding: how a batch is split over devices.
    scores: where the images and their per-image metrics go.
    num_examples: the first this many examples; -1: all.
  """
  rng = eval_rng(config.seed)
  batches = pipeline.eval_batches(
      source,
      config.data,
      batch_size=config.eval.batch_size,
      num_examples=num_examples,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
  )
  for index, host_batch in enumerate(batches):
    names = host_batch.pop('file_name')
    batch = sharding_lib.to_global(host_batch, data_sharding)
    out = multihost_utils.process_allgather(
        score_batch(network, batch, jax.random.fold_in(rng, index)) | batch, tiled=True
    )
    names = _allgather_names(names)
    keep = np.asarray(out['mask']) > 0
    rows = {k: np.asarray(v)[keep] for k, v in out.items()}
    scores.add(
        np.asarray(names)[keep],
        rows['generated'],
        rows['target'],
        inputs=rows['input'],
        indices=rows['index'],
        pixel={k: rows[k] for k in PIXEL_METRICS},
    )


def _allgather_names(names) -> np.ndarray:
  """Every process's file names of a batch, in process order (as `process_allgather` tiles).

  `process_allgather` moves numbers only: names travel as zero-padded UTF-8 bytes.
  """
  if jax.process_count() == 1:
    return np.asarray(names)
  encoded = [str(name).encode() for name in names]
  longest = np.int32(max(map(len, encoded), default=1))
  width = max(int(np.max(multihost_utils.process_allgather(longest))), 1)
  codes = np.zeros((len(encoded), width), np.uint8)
  for row, name in enumerate(encoded):
    codes[row, : len(name)] = np.frombuffer(name, np.uint8)
  gathered = multihost_utils.process_allgather(codes, tiled=True)
  return np.array([bytes(row).rstrip(b'\0').decode() for row in gathered])


def eval_scalars(results: dict) -> dict[str, float]:
  """`ImageScores.results` as TensorBoard's `eval_*` scalars: means, FID, KID's mean."""
  return {
      f'eval_{name}': value['mean'] if isinstance(value, dict) else value
      for name, value in results.items()
  }


def format_scalars(scalars: dict[str, float]) -> str:
  """'L1 0.0831, PSNR (dB) 18.80, ...': `eval_scalars` for a log line, in METRICS order."""
  decimals = {'psnr': 2, 'fid': 2}  # Others: 4.
  return ', '.join(
      f'{metric.title} {scalars[f"eval_{name}"]:.{decimals.get(name, 4)}f}'
      for name, metric in metrics.METRICS.items()
      if f'eval_{name}' in scalars
  )


def evaluate_in_training(
    network,
    score_batch,
    source,
    config: ml_collections.ConfigDict,
    data_sharding,
    scorers: 'PerceptualScorers',
    target_features: dict,
) -> tuple[dict, np.ndarray | None]:
  """Training's eval: `evaluate`'s metrics of `network`, and a panel of the first examples.

  The same generation (`score_generator`, same keys) and scoring (`ImageScores`) as
  `--mode=evaluate`, on the first `config.eval.num_examples` examples (-1: all), so a
  checkpoint's `eval_*` scalars are those `evaluate` gives it. Nothing is written to WORKDIR/eval.

  Args:
    network: the generator's {'params', 'batch_stats'}.
    score_batch: `create_score_batch`'s function.
    source: the eval source.
    config: the run's config.
    data_sharding: how a batch is split over devices.
    scorers: `create_perceptual_scorers(config)`, made once per run.
    target_features: the run's cache of the targets' Inception features (`ImageScores`): the
      eval examples are the same at every eval.

  Returns:
    ({'eval_l1', 'eval_psnr', 'eval_ssim', 'eval_hp_l1', and with the perceptual metrics
    'eval_lpips', 'eval_fid', 'eval_kid'}, the uint8 [input | generated | target] panel of the
    first `config.eval.num_panel_images` examples, or None).
  """
  scores = ImageScores(
      config, scorers=scorers, ranked_panels=False, target_features=target_features
  )
  score_generator(
      network,
      score_batch,
      source,
      config,
      data_sharding,
      scores,
      num_examples=config.eval.num_examples,
  )
  return eval_scalars(scores.results()), scores.first_panels()


class _Panels:
  """The first `count` examples, and (if `ranked`) the `count` best and worst by L1, as
  [in | out | target]."""

  def __init__(self, count: int, ranked: bool = True):
    self.count, self.ranked, self.fixed, self._best, self._worst = count, ranked, [], [], []

  def wanted(self) -> bool:
    """Whether the next example's panel may be kept (if not, it need not be made)."""
    return self.ranked or len(self.fixed) < self.count

  def add(self, l1: float, name: str, index: int, panel: np.ndarray) -> None:
    if len(self.fixed) < self.count:
      self.fixed.append((l1, name, panel))
    if not self.ranked:
      return
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


class _InceptionQueue:
  """Images waiting for Inception, sent in full batches of its `batch_size` (the JAX network pads
  every call to that size: an eval batch of 8 would pay for 32). Features are kept by key.

  Args:
    inception: a perceptual.InceptionFeatures.
    features: {key: (2048,) features} to fill; keys already in it are not computed again.
  """

  def __init__(self, inception, features: dict):
    self._inception, self.features = inception, features
    self._size = getattr(inception, 'batch_size', 32)
    self._keys, self._images = [], []

  def add(self, keys, batch: np.ndarray) -> None:
    for key, image in zip(keys, batch):
      if key not in self.features and key not in self._keys:
        self._keys.append(key)
        self._images.append(image)
    if len(self._images) >= self._size:
      self._run(len(self._images) // self._size * self._size)

  def flush(self) -> None:
    self._run(len(self._images))

  def _run(self, count: int) -> None:
    if not count:
      return
    batch = np.stack(self._images[:count])
    # uint8 as it is; 16-bit as [0, 1] floats, which the Inception path rounds to 8 bits.
    features = self._inception(batch if batch.dtype == np.uint8 else images.to_unit(batch))
    self.features.update(zip(self._keys[:count], features))
    del self._keys[:count], self._images[:count]


class PerceptualScorers(NamedTuple):
  """The networks of FID, KID and LPIPS, or why they are not there."""

  inception: object = None  # perceptual.InceptionFeatures, or None.
  lpips: object = None  # perceptual.LPIPS, or None.
  skipped: str | None = None  # Why not, if they were wanted (config.eval.perceptual).


def create_perceptual_scorers(config: ml_collections.ConfigDict) -> PerceptualScorers:
  """The networks if the `metrics` extra is installed and wanted and the outputs have 1 or 3
  channels; else none, with why not (None if not wanted), logged once as a warning.

  Loading them takes seconds: a caller scoring repeatedly (training) makes them once.
  """
  if not config.eval.perceptual:
    return PerceptualScorers()
  output_channels = pipeline.channels(config.data)[1]
  if output_channels not in (1, 3):
    why = (
        f'the outputs have {output_channels} channels (config.data.output_channels); these '
        'networks take RGB (1-channel images are replicated to 3, other counts have no '
        'standard mapping)'
    )
    logging.warning('FID, KID and LPIPS skipped: %s', why)
    return PerceptualScorers(skipped=why)
  from pix2pix_jax import perceptual  # pylint: disable=g-import-not-at-top

  ok, why = perceptual.available()
  if not ok:
    logging.warning('FID, KID and LPIPS skipped: %s', why)
    return PerceptualScorers(skipped=why)
  return PerceptualScorers(
      perceptual.InceptionFeatures(), perceptual.LPIPS(net=config.eval.lpips_net)
  )


def format_table(results: dict) -> str:
  """The metrics as a markdown table: mean / min / max / std of the per-image ones, then FID, KID."""
  lines = ['| metric | mean | min | max | std |', '|---|---|---|---|---|']
  for name, metric in metrics.METRICS.items():
    if name not in results:
      continue
    stats = results[name]
    if name == 'fid':
      lines.append(f'| {metric.title} | {stats:.2f} | | | |')
    elif name == 'kid':
      title = f'KID (subsets of {stats["subset_size"]})' if 'subset_size' in stats else 'KID'
      lines.append(f'| {title} | {stats["mean"]:.4f} | | | {stats["std"]:.4f} |')
    else:
      lines.append(
          f'| {metric.title} | '
          + ' | '.join(f'{stats[k]:.4f}' for k in ('mean', 'min', 'max', 'std'))
          + ' |'
      )
  return '\n'.join(lines)


class ImageScores:
  """Scores (generated, target) image pairs batch by batch; `finish` writes the results.

  The one scoring path of `evaluate` and `score`: per-image pixel metrics, LPIPS and Inception
  features (with the `metrics` extra and `config.eval.perceptual`), the panels, then the summary,
  FID and KID, WORKDIR/eval/ and the log table.

  Args:
    config: the run's config (`config.eval`: batch_size, num_panel_images, perceptual,
      lpips_net, kid_subset_size).
    scorers: `create_perceptual_scorers(config)` made beforehand; None makes them here.
    ranked_panels: keep the best and worst examples' panels too, not only the first ones.
    target_features: {example index: Inception features of its target}, filled and read here;
      a caller scoring the same examples again (training's evals) keeps it between them, so the
      targets go through Inception once (half of FID's cost). None: no cache.
    progress_log: told the count after each batch, and the time LPIPS and FID take; None: quiet.
  """

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      scorers: PerceptualScorers | None = None,
      ranked_panels: bool = True,
      target_features: dict | None = None,
      progress_log: progress.ProgressLog | None = None,
  ):
    self._batch_size = config.eval.batch_size
    self._kid_subset_size = config.eval.kid_subset_size
    scorers = create_perceptual_scorers(config) if scorers is None else scorers
    self._inception, self._lpips, self._perceptual_skipped = scorers
    if self._inception is not None:  # Generated images by their running count, targets by index.
      self._generated_features = _InceptionQueue(self._inception, {})
      self._target_features = _InceptionQueue(
          self._inception, {} if target_features is None else target_features
      )
    self._target_order = []  # The targets' example indices, in the order added.
    self._panels = _Panels(config.eval.num_panel_images, ranked=ranked_panels)
    self._progress = progress_log
    self.per_image = []

  def _pixel_metrics(self, generated: np.ndarray, target: np.ndarray) -> dict:
    """PIXEL_METRICS in batches of eval.batch_size, the last one zero-padded: one compilation."""
    out = {name: [] for name in PIXEL_METRICS}
    for start in range(0, len(generated), self._batch_size):
      chunk = [images[start : start + self._batch_size] for images in (generated, target)]
      count = len(chunk[0])
      padding = ((0, self._batch_size - count),) + ((0, 0),) * 3
      scores = _jitted_pixel_metrics(*(np.pad(images, padding) for images in chunk))
      for name in PIXEL_METRICS:
        out[name].append(np.asarray(scores[name])[:count])
    return {name: np.concatenate(values) for name, values in out.items()}

  def add(
      self,
      names,
      generated: np.ndarray,
      target: np.ndarray,
      *,
      inputs=None,
      indices=None,
      pixel: dict | None = None,
  ) -> None:
    """Scores one batch.

    Args:
      names: the N images' names (per_image.csv's file_name, the panels' captions).
      generated: uint8 or uint16 (N, H, W, C).
      target: uint8 or uint16 (N, H, W, C).
      inputs: uint8 or uint16 (N, H, W, C_input) for [input | generated | target] panels; None gives
        [generated | target].
      indices: N example indices (per_image.csv's index, panel tie-breaks); default: the running
        count of images added.
      pixel: PIXEL_METRICS already computed with the generation (`evaluate_batch`), {name: (N,)};
        None computes them here.
    """
    if indices is None:
      indices = range(len(self.per_image), len(self.per_image) + len(generated))
    rows = dict(pixel) if pixel is not None else self._pixel_metrics(generated, target)
    if self._lpips is not None:
      with self._phase('LPIPS'):
        rows['lpips'] = self._lpips(images.to_unit(generated), images.to_unit(target))
    if self._inception is not None:
      first = len(self.per_image)
      keys = [int(index) for index in indices]
      with self._phase('FID features'):
        self._generated_features.add(range(first, first + len(generated)), generated)
        self._target_features.add(keys, target)
      self._target_order += keys
    for row, (name, index) in enumerate(zip(names, indices)):
      values = {k: float(rows[k][row]) for k in PIXEL_METRICS + ('lpips',) if k in rows}
      self.per_image.append({'file_name': str(name), 'index': int(index)} | values)
      if self._panels.wanted():
        panel = summary.image_panel(
            None if inputs is None else inputs[row : row + 1],
            generated[row : row + 1],
            target[row : row + 1],
        )
        self._panels.add(self.per_image[-1]['l1'], str(name), int(index), panel)
    if self._progress is not None:
      self._progress.update(len(self.per_image))

  def _phase(self, name: str):
    return self._progress.phase(name) if self._progress is not None else contextlib.nullcontext()

  def first_panels(self) -> np.ndarray | None:
    """The first `config.eval.num_panel_images` examples' panels as one image, or None."""
    fixed = [panel for _, _, panel in self._panels.fixed]
    return np.concatenate(fixed) if fixed else None

  def _fid_skipped(self) -> str | None:
    """Why FID and KID are missing although wanted: too few images; None otherwise."""
    minimum = metrics.SET_METRICS_MIN_IMAGES
    if self._inception is not None and len(self.per_image) < minimum:
      return f'FID and KID need at least {minimum} images, got {len(self.per_image)}'
    return None

  def results(self) -> dict:
    """{metric: summary} of the images added so far, with FID and KID when computed."""
    per_image = self.per_image
    results = {
        name: metrics.summarize([r[name] for r in per_image])
        for name in PIXEL_METRICS + ('lpips',)
        if per_image and name in per_image[0]
    }
    if self._inception is not None and not self._fid_skipped():
      from pix2pix_jax import perceptual  # pylint: disable=g-import-not-at-top

      with self._phase('FID features'):
        for queue in (self._generated_features, self._target_features):
          queue.flush()
      fake = np.stack([self._generated_features.features[i] for i in range(len(per_image))])
      real = np.stack([self._target_features.features[i] for i in self._target_order])
      # 'svd': exact, sqrtm's round-off-free twin.
      results['fid'] = perceptual.fid(fake, real, method='svd')
      results['kid'] = perceptual.kid(fake, real, subset_size=self._kid_subset_size)
    return results

  def finish(self, workdir: str, facts: dict, heading: str) -> dict:
    """Summarises, writes WORKDIR/eval/ (process 0) and logs the table.

    Args:
      workdir: where eval/ goes.
      facts: what was scored, first key 'step' (an int writes `eval_*` TensorBoard scalars at
        that step; None writes none).
      heading: the log line's start, e.g. 'Evaluation of step 100'.

    Returns:
      The contents written to WORKDIR/eval/metrics.json.
    """
    results = self.results()
    report = (
        {'step': facts['step'], 'num_images': len(self.per_image)} | facts | {'metrics': results}
    )
    skipped = self._perceptual_skipped or self._fid_skipped()
    if skipped:
      report['perceptual_skipped'] = skipped
      if skipped != self._perceptual_skipped:  # The other reasons were logged at the start.
        logging.warning('%s', skipped)
    if jax.process_index() == 0:
      report['panels'] = _write_outputs(pathlib.Path(workdir), report, self.per_image, self._panels)
    logging.info('%s on %d images:\n%s', heading, len(self.per_image), format_table(results))
    return report


def evaluate(
    config: ml_collections.ConfigDict, workdir: str, step: int | str | None = None
) -> dict:
  """Scores the generator of checkpoint `step` (default: latest) on every eval example.

  Args:
    config: the run's config (`config.eval.train_mode` picks the test-time behaviour).
    workdir: the training workdir.
    step: checkpoint step, 'best' (the best checkpoint training kept; metrics.json then has its
      record under 'best'), or None for the latest.

  Returns:
    The contents written to WORKDIR/eval/metrics.json.
  """
  replicated, data_sharding = sharding_lib.data_parallel_shardings()
  generator, network, step, best = inference.restore_trained_generator(
      config, workdir, step, replicated
  )
  source = pipeline.create_source(config.data, 'eval', config.seed)
  which = f'{checkpointing.describe_best(best)},' if best else f'step {step}'
  logging.info(
      'Evaluating %s on %d %s examples; test mode: %s',
      which,
      len(source),
      config.data.eval_split,
      inference.test_mode_description(config.eval.train_mode),
  )
  scores = ImageScores(
      config, progress_log=progress.ProgressLog('Evaluating', len(source), rest='generation')
  )
  score_generator(
      network,
      create_score_batch(generator, config, replicated, data_sharding),
      source,
      config,
      data_sharding,
      scores,
  )
  facts = {
      'step': step,
      'split': config.data.eval_split,
      'direction': config.data.direction,
      'dataset': config.data.name,
      'test_mode': inference.test_mode_description(config.eval.train_mode),
      'weights': checkpointing.generator_weights(config),
  }  # 'ema' or 'raw'.
  if best:
    facts['best'] = best
  return scores.finish(workdir, facts, f'Evaluation of {which}')


def _write_outputs(workdir: pathlib.Path, report: dict, per_image: list, panels: _Panels) -> dict:
  """Writes eval/metrics.json, eval/per_image.csv, eval/panels/*.png and, with a step, scalars."""
  eval_dir = workdir / 'eval'
  eval_dir.mkdir(parents=True, exist_ok=True)
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
  if report['step'] is not None:
    writer = summary.SummaryWriter(workdir)
    writer.write_scalars(report['step'], eval_scalars(report['metrics']))
    writer.close()
  return listed
