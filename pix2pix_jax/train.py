"""pix2pix training: the jitted step and the `train_and_evaluate` loop.

`train_step` is one iteration of the paper's algorithm (G forward, D update, G update against the
updated D); `train_and_evaluate` runs it for the config's steps, evaluates, logs and checkpoints
along the way (keeping the best checkpoint by `config.eval.best_metric` apart), and resumes from
the latest checkpoint. Process plumbing (stop requests, progress, prefetch, the write probe) is
in plumbing.py, the periodic eval in evaluation.py. Data flows one way: main -> train -> (data,
models, losses, train_state, evaluation, checkpointing).
"""

import functools
import json
import logging
import pathlib
import time

from clu import parameter_overview
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from pix2pix_jax import checkpointing, evaluation, losses, metrics, models, plumbing
from pix2pix_jax import runtime, summary, train_state
from pix2pix_jax import sharding as sharding_lib
from pix2pix_jax.data import device_data, images, pipeline

LOSS_NAMES = ('g_total', 'g_gan', 'g_l1', 'd_total', 'd_real', 'd_fake')  # In every step's metrics.
OPTIONAL_LOSS_NAMES = ('g_feat',)  # In them when their term is on (g_feat: loss.lambda_feat > 0).


def loss_names(metrics: dict) -> list[str]:
  """The losses among a step's metrics: LOSS_NAMES and the optional ones present."""
  return [name for name in LOSS_NAMES + OPTIONAL_LOSS_NAMES if name in metrics]


def _mean_output(logits: losses.Logits, gan_mode: str) -> jax.Array:
  """Mean D output, over patches, then scales.

  The probability of 'real' for the vanilla GAN; the raw score for LSGAN (target 1 on real, 0 on
  fake) and hinge (D aims at >= 1 on real, <= -1 on fake).
  """
  per_scale = [
      jnp.mean(jax.nn.sigmoid(x) if gan_mode == 'vanilla' else x) for x in losses.scales(logits)
  ]
  return sum(per_scale) / len(per_scale)


def _logits_and_features(outputs, discriminator: nn.Module):
  """A `return_features` call's outputs as (logits per scale, features per scale)."""
  per_scale = outputs if isinstance(discriminator, models.MultiScaleDiscriminator) else [outputs]
  return [logits for logits, _ in per_scale], [features for _, features in per_scale]


def train_step(
    state: train_state.TrainState,
    batch: dict,
    *,
    generator: nn.Module,
    discriminator: nn.Module,
    g_optimizer: optax.GradientTransformation,
    d_optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    lambda_l1: float,
    gan_mode: str,
    lambda_feat: float = 0.0,
    skip_nonfinite: bool = False,
):
  """One pix2pix iteration in the reference's order: G forward, D update, G update.

  G runs forward once (with this step's dropout noise); D is updated on (input, target) vs the
  detached (input, G(input)); then G is updated against the *updated* D, reusing the forward
  pass through `jax.vjp`. With `lambda_feat` > 0, G's feature-matching target is the *updated*
  D's features on (input, target): one extra D forward, without gradient, before G's. Real and
  fake features so come from one D, as in pix2pixHD (whose D is the one before its update: it
  updates G first).

  Args:
    state: the TrainState (donated by the caller's jit).
    batch: {'input', 'target'}: uint8 or uint16 (B, H, W, C_in / C_out).
    generator, discriminator: the networks.
    g_optimizer, d_optimizer: their optax optimizers.
    schedule: the learning-rate schedule (logged only; the optimizers hold it too).
    lambda_l1: weight of the L1 term.
    gan_mode: one of losses.GAN_MODES.
    lambda_feat: weight of pix2pixHD's feature-matching loss; 0: off (no extra D forward).
    skip_nonfinite: if any loss is not finite, keep the networks, batch statistics and
      optimizer states as they were (the step counter still advances, so the data moves on);
      metrics['skipped'] is 1 for such a step.

  Returns:
    (new state, metrics): the six losses (and 'g_feat' with `lambda_feat` > 0), mean D outputs
    on real and fake, and the learning rate.
  """
  step_rng = jax.random.fold_in(state.rng, state.step)
  inputs, targets = images.to_float(batch['input']), images.to_float(batch['target'])
  g, d = state.generator, state.discriminator

  def run_generator(params):
    return train_state.apply_train_mode(generator, params, g.batch_stats, inputs, step_rng)

  fake, generator_vjp, g_batch_stats = jax.vjp(run_generator, g.params, has_aux=True)

  def run_discriminator(params, batch_stats, outputs, **kwargs):
    pairs = jnp.concatenate([inputs, outputs], axis=-1)
    return train_state.apply_train_mode(discriminator, params, batch_stats, pairs, **kwargs)

  def d_loss_fn(params):
    # Fake first, then real, each its own BatchNorm call, as the reference's backward_D.
    fake_logits, batch_stats = run_discriminator(params, d.batch_stats, jax.lax.stop_gradient(fake))
    real_logits, batch_stats = run_discriminator(params, batch_stats, targets)
    d_losses = losses.discriminator_loss(real_logits, fake_logits, gan_mode)
    outputs = {
        'd_real_output': _mean_output(real_logits, gan_mode),
        'd_fake_output': _mean_output(fake_logits, gan_mode),
    }
    return d_losses['d_total'], (d_losses | outputs, batch_stats)

  d_grads, (d_metrics, d_batch_stats) = jax.grad(d_loss_fn, has_aux=True)(d.params)
  d_updates, d_opt_state = d_optimizer.update(d_grads, d.opt_state, d.params)
  d_params = optax.apply_updates(d.params, d_updates)

  feature_matching = lambda_feat > 0
  real_features = None
  if feature_matching:
    # pix2pixHD's `pred_real[i][j].detach()`, from the D that G now meets; this forward updates
    # D's running statistics (and spectral norm's u) like the others.
    real_outputs, d_batch_stats = run_discriminator(
        d_params, d_batch_stats, targets, return_features=True
    )
    real_features = jax.lax.stop_gradient(_logits_and_features(real_outputs, discriminator)[1])

  def g_loss_fn(outputs):
    fake_outputs, batch_stats = run_discriminator(
        d_params, d_batch_stats, outputs, return_features=feature_matching
    )
    fake_logits, fake_features = fake_outputs, None
    if feature_matching:
      fake_logits, fake_features = _logits_and_features(fake_outputs, discriminator)
    g_losses = losses.generator_loss(
        fake_logits,
        outputs,
        targets,
        lambda_l1,
        gan_mode,
        fake_features=fake_features,
        real_features=real_features,
        lambda_feat=lambda_feat,
    )
    return g_losses['g_total'], (g_losses, batch_stats)

  fake_grads, (g_metrics, d_batch_stats) = jax.grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = generator_vjp(fake_grads)
  g_updates, g_opt_state = g_optimizer.update(g_grads, g.opt_state, g.params)

  networks = (
      train_state.NetworkState(
          optax.apply_updates(g.params, g_updates), g_batch_stats, g_opt_state
      ),
      train_state.NetworkState(d_params, d_batch_stats, d_opt_state),
  )
  metrics = g_metrics | d_metrics | {'learning_rate': schedule(state.step)}
  if skip_nonfinite:
    finite = jnp.all(jnp.isfinite(jnp.stack([metrics[name] for name in loss_names(metrics)])))
    networks = jax.tree.map(lambda new, old: jnp.where(finite, new, old), networks, (g, d))
    metrics['skipped'] = 1.0 - finite.astype(jnp.float32)
  return (
      state.replace(step=state.step + 1, generator=networks[0], discriminator=networks[1]),
      metrics,
  )


def run_steps(state: train_state.TrainState, data, *, step_fn, num_steps: int, batch_fn=None):
  """`num_steps` train steps in one call (a `lax.scan` when there are several).

  Args:
    state: the TrainState (donated by the caller's jit).
    data: a tuple of `num_steps` batches, or with `batch_fn` the device-resident train images.
    step_fn: (state, batch) -> (state, metrics), e.g. `train_step` with its networks bound.
    num_steps: steps to run (static).
    batch_fn: (images, step) -> the batch of that step (1-based), made on the device.

  Returns:
    (state, metrics), every metric stacked over the steps: shape (num_steps,).
  """
  if batch_fn is None and num_steps == 1:
    state, metrics = step_fn(state, data[0])
    return state, jax.tree.map(lambda x: jnp.asarray(x)[None], metrics)
  # XLA:CPU emits most convolutions inside a while loop as naive loops (the 256² paper step: 14 s
  # instead of 0.77 s, jax 0.10.2), so on CPU the steps are unrolled: compile time grows with
  # num_steps there. GPUs and TPUs run the loop.
  unroll = jax.default_backend() == 'cpu'
  if batch_fn is None:
    return jax.lax.scan(
        step_fn, state, jax.tree.map(lambda *xs: jnp.stack(xs), *data), unroll=unroll
    )
  return jax.lax.scan(
      lambda state, _: step_fn(state, batch_fn(data, state.step + 1)),
      state,
      None,
      length=num_steps,
      unroll=unroll,
  )


def compiler_options(config: ml_collections.ConfigDict) -> dict:
  """XLA options for compiling the train step on the default backend (`jax.jit(compiler_options=)`)."""
  if jax.default_backend() == 'cpu' and config.xla_cpu_region_analysis:
    return {'xla_cpu_copy_insertion_use_region_analysis': True}
  return {}


def jit_run_steps(
    config: ml_collections.ConfigDict, step_fn, num_steps: int, batch_fn=None, **shardings
):
  """`run_steps` jitted as training runs it: the state donated, `compiler_options(config)`.

  `shardings`: `in_shardings` / `out_shardings` for `jax.jit` (none: the default device).
  """
  return jax.jit(
      functools.partial(run_steps, step_fn=step_fn, num_steps=num_steps, batch_fn=batch_fn),
      donate_argnums=0,
      compiler_options=compiler_options(config),
      **shardings,
  )


def device_batch_fn(config: ml_collections.ConfigDict, data_sharding: jax.sharding.Sharding):
  """(images, step) -> the global batch of `step` from device-resident images, split over devices."""

  def batch_fn(images, step):
    batch = device_data.batch_for_step(
        images,
        step,
        seed=config.seed,
        batch_size=config.batch_size,
        image_size=config.data.image_size,
        flip=config.data.flip,
        direction=config.data.direction,
        channels=pipeline.channels(config.data),
    )
    return jax.lax.with_sharding_constraint(batch, data_sharding)

  return batch_fn


def next_call_end(step: int, config: ml_collections.ConfigDict, num_train_steps: int) -> int:
  """The last step of the device call that starts after `step`.

  A call runs at most `config.steps_per_call` steps and ends at the next log, eval, checkpoint or
  last step, where the host needs the state.
  """
  periods = [config.log_every_steps, config.checkpoint_every_steps]
  periods += [config.eval.every_steps] if config.eval.every_steps else []
  return min(
      [step + config.steps_per_call, num_train_steps] + [(step // p + 1) * p for p in periods]
  )


def check_finite(history: list[dict], first_step: int) -> None:
  """Raises FloatingPointError naming the first step and loss that is not finite.

  Steps whose updates the train step already skipped (`config.on_nonfinite='skip'`) are logged
  instead.
  """
  for offset, step_metrics in enumerate(history):
    bad = [
        f'{name}={float(step_metrics[name])}'
        for name in loss_names(step_metrics)
        if not np.isfinite(step_metrics[name])
    ]
    if bad and step_metrics.get('skipped'):
      logging.warning(
          'step %d: non-finite loss (%s): update skipped', first_step + offset, ', '.join(bad)
      )
    elif bad:
      raise FloatingPointError(f'non-finite loss at step {first_step + offset}: {", ".join(bad)}')


def create_train_functions(
    config: ml_collections.ConfigDict, steps_per_epoch: int, num_train_steps: int
):
  """The networks and optimizers a config describes, as pure functions to jit.

  Args:
    config: the run's config.
    steps_per_epoch: for the learning-rate schedule.
    num_train_steps: for the learning-rate schedule.

  Returns:
    (generator, init_fn(rng) -> TrainState, step_fn(state, batch) -> (state, metrics)).
  """
  input_channels, output_channels = pipeline.channels(config.data)
  generator = models.create_generator(config.model, config.data.image_size, output_channels)
  discriminator = models.create_discriminator(config.model)
  schedule = train_state.create_learning_rate_schedule(
      config.optim, steps_per_epoch, num_train_steps
  )
  g_optimizer = train_state.create_optimizer(config.optim, schedule)
  d_optimizer = train_state.create_optimizer(config.optim, schedule)
  init_fn = functools.partial(
      train_state.create_train_state,
      generator=generator,
      discriminator=discriminator,
      g_optimizer=g_optimizer,
      d_optimizer=d_optimizer,
      image_size=config.data.image_size,
      input_channels=input_channels,
      output_channels=output_channels,
      with_ema=config.model.ema_decay > 0,
  )
  step_fn = functools.partial(
      train_step,
      generator=generator,
      discriminator=discriminator,
      g_optimizer=g_optimizer,
      d_optimizer=d_optimizer,
      schedule=schedule,
      lambda_l1=config.loss.lambda_l1,
      gan_mode=config.loss.gan_mode,
      lambda_feat=config.loss.lambda_feat,
      skip_nonfinite=config.on_nonfinite == 'skip',
  )
  step_fn = train_state.with_ema_update(step_fn, config.model.ema_decay)  # No-op when 0.
  return generator, init_fn, step_fn


def create_best_checkpoint(
    config: ml_collections.ConfigDict,
    workdir: pathlib.Path,
    scorers: evaluation.PerceptualScorers,
    num_eval_examples: int,
) -> checkpointing.BestCheckpoint | None:
  """The keeper of the best checkpoint by `config.eval.best_metric`, or None.

  None when the key is off, or (with one warning; training goes on) when its metric is not
  computed here: a perceptual metric without the `metrics` extra or with other than 1 or 3
  output channels.

  Raises:
    ValueError: FID or KID with fewer than 2 eval examples; the workdir keeps the best by
      another metric (`checkpointing.BestCheckpoint`).
  """
  metric = checkpointing.best_metric(config)
  if metric is None:
    return None
  if metrics.METRICS[metric].perceptual and scorers.inception is None:
    logging.warning(
        'No best checkpoint is kept: config.eval.best_metric=%r is not computed (%s). '
        'Training goes on; to keep one, fix that or keep the best by a pixel metric: '
        '--config.eval.best_metric=l1',
        metric,
        scorers.skipped,
    )
    return None
  if metric in metrics.SET_METRICS and num_eval_examples < metrics.SET_METRICS_MIN_IMAGES:
    raise ValueError(
        f'config.eval.best_metric={metric!r} needs at least {metrics.SET_METRICS_MIN_IMAGES} eval '
        f'images, but training scores {num_eval_examples} (config.eval.num_examples='
        f'{config.eval.num_examples}, eval split {config.data.eval_split!r}): pick a per-image '
        'metric, e.g. --config.eval.best_metric=l1'
    )
  return checkpointing.BestCheckpoint(workdir, metric, num_eval_examples)


def _write_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  if jax.process_index() == 0:
    (workdir / 'config.json').write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_state.TrainState:
  """Trains (or resumes training) in `workdir`; evaluates, logs and checkpoints along the way.

  Args:
    config: the run's config (see configs/default.py), checked by
      `config_checks.validate_config(..., training=True)`, as main.py does.
    workdir: where checkpoints, TensorBoard events, image panels and the config go.

  Returns:
    The final TrainState.
  """
  # Signals are caught from here on: a SIGTERM during start-up stops after the first step.
  with plumbing.StopRequest() as stop:
    return _train(config, pathlib.Path(workdir), stop)


def _train(
    config: ml_collections.ConfigDict, workdir: pathlib.Path, stop: plumbing.StopRequest
) -> train_state.TrainState:
  """The body of `train_and_evaluate`, once the config is valid and signals are caught."""
  # Folder data is checked file by file here: bad data stops the run before the workdir is touched.
  train_source, eval_source = pipeline.create_sources(config.data, config.seed)
  plumbing.check_writable(workdir)
  # One training per workdir, from before anything is written (config.json, checkpoints) to the end.
  with plumbing.WorkdirLock(workdir):
    return _train_in_workdir(config, workdir, stop, train_source, eval_source)


def _train_in_workdir(
    config: ml_collections.ConfigDict,
    workdir: pathlib.Path,
    stop: plumbing.StopRequest,
    train_source,
    eval_source,
) -> train_state.TrainState:
  """Trains in `workdir`, which this process holds (`plumbing.WorkdirLock`)."""
  replicated, data_sharding = sharding_lib.data_parallel_shardings()

  auto_on_device = config.data.on_device == runtime.AUTO
  config = runtime.resolve(
      config,
      train_set_bytes=device_data.train_set_bytes(
          config.data, len(train_source), pipeline.sample_bytes(train_source)
      ),
  )
  runtime.log_resolved(config)
  if auto_on_device and config.data.on_device:
    # The pairs are read once into device memory: a source without the host cache.
    train_source = train_source.uncached()
  num_train_steps, steps_per_epoch = train_state.train_length(
      len(train_source),
      batch_size=config.batch_size,
      num_train_steps=config.num_train_steps,
      num_epochs=config.num_epochs,
  )

  generator, init_fn, train_step_fn = create_train_functions(
      config, steps_per_epoch, num_train_steps
  )
  rng = jax.random.PRNGKey(config.seed)

  scorers = evaluation.create_perceptual_scorers(config)  # Once: loading them takes seconds.
  num_eval_examples = (
      len(eval_source)
      if config.eval.num_examples < 0
      else min(config.eval.num_examples, len(eval_source))
  )
  best = create_best_checkpoint(config, workdir, scorers, num_eval_examples)
  manager = checkpointing.create_checkpoint_manager(
      workdir / checkpointing.CHECKPOINT_DIR, config.keep_checkpoints
  )
  abstract_state = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
      jax.eval_shape(init_fn, rng),
  )
  state, start_step = checkpointing.restore(manager, abstract_state, config)
  if state is not None and start_step >= num_train_steps:
    key = 'num_train_steps' if config.num_train_steps > 0 else 'num_epochs'
    logging.warning(
        "Nothing to train: the latest checkpoint, %s, is at or past this run's last step, %d "
        '(config.%s=%s). To train on, raise config.%s; to score it, run --mode=evaluate. '
        'Nothing was written.',
        manager.directory / str(start_step),
        num_train_steps,
        key,
        config[key],
        key,
    )
    if best is not None:
      best.close()
    return state
  if state is None:
    state, start_step = jax.jit(init_fn, out_shardings=replicated)(rng), 0
    logging.info('Initialised a new run in %s', workdir)
  else:
    logging.info(
        'Resuming from checkpoint at step %d of %d (%s)',
        start_step,
        num_train_steps,
        manager.directory / str(start_step),
    )
    imported = checkpointing.describe_import(workdir) if start_step == 0 else None
    if imported:
      logging.info('Fine-tuning from step 0: %s', imported)
  _write_config(config, workdir)
  parameter_overview.log_parameter_overview(state.generator.params, msg='Generator parameters')
  parameter_overview.log_parameter_overview(
      state.discriminator.params, msg='Discriminator parameters'
  )
  logging.info(
      '%d steps (%d per epoch, global batch %d, %d device(s))',
      num_train_steps,
      steps_per_epoch,
      config.batch_size,
      jax.device_count(),
  )

  if config.data.on_device:
    images = device_data.put_replicated(
        device_data.load_images(train_source, config.data), replicated
    )
    batch_fn, data_in_sharding = device_batch_fn(config, data_sharding), replicated
  else:
    dataset = pipeline.train_dataset(
        train_source,
        config.data,
        batch_size=config.batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    pipeline.check_batch(dataset[start_step], config)  # Before the step compiles.
    batches = plumbing.prefetch_to_device(
        pipeline.train_iterator(dataset, start_step, config.data), data_sharding
    )
    batch_fn, data_in_sharding = None, data_sharding

  @functools.cache
  def compiled_steps(num_steps):  # One compilation per call length (usually one or two).
    return jit_run_steps(
        config,
        train_step_fn,
        num_steps,
        batch_fn,
        in_shardings=(replicated, data_in_sharding),
        out_shardings=(replicated, replicated),
    )

  score_batch = evaluation.create_score_batch(generator, config, replicated, data_sharding)
  target_features = {}  # The eval targets' Inception features: the same at every eval.
  writer = summary.SummaryWriter(workdir)
  progress = plumbing.Progress(start_step, num_train_steps)
  history = []  # Step metrics still on the device: fetched only when written.

  def flush_metrics(step):
    host = [
        {k: v[i] for k, v in chunk.items()}  # Per step, from per-call stacks.
        for chunk in jax.device_get(history)
        for i in range(len(chunk['g_total']))
    ]
    check_finite(host, step - len(host) + 1)
    # Means over the finite steps (all of them, unless updates were skipped).
    means = {
        f'train_{k}': float(np.mean([m[k] for m in host if not m.get('skipped')] or [np.nan]))
        for k in host[0]
        if k != 'skipped'
    }
    if 'skipped' in host[0]:
      means['train_skipped_steps'] = float(sum(m['skipped'] for m in host))
    rate, wait, eta = progress.update(step)
    writer.write_scalars(step, means | {'steps_per_second': rate, 'data_wait_fraction': wait})
    logging.info(
        'step %d/%d epoch %.2f | %.2f steps/s, data wait %.0f%% | ETA %s | G %.3f '
        '(GAN %.3f, L1 %.4f) D %.3f | D(real) %.2f D(fake) %.2f',
        step,
        num_train_steps,
        step / steps_per_epoch,
        rate,
        100 * wait,
        eta,
        means['train_g_total'],
        means['train_g_gan'],
        means['train_g_l1'],
        means['train_d_total'],
        means['train_d_real_output'],
        means['train_d_fake_output'],
    )
    history.clear()

  def evaluate(step):
    weights = checkpointing.generator_weights(config)  # The weights --mode=evaluate would score.
    network = state.ema if weights == 'ema' else train_state.generator_variables(state.generator)
    start = time.perf_counter()
    scalars, panel = evaluation.evaluate_in_training(
        network, score_batch, eval_source, config, data_sharding, scorers, target_features
    )
    seconds = time.perf_counter() - start
    writer.write_scalars(step, scalars | {'eval_seconds': seconds})
    logging.info(
        'step %d eval, %s weights, %d images in %.1f s (images in [0, 1], 8-bit outputs): %s',
        step,
        weights,
        num_eval_examples,
        seconds,
        evaluation.format_scalars(scalars),
    )
    if panel is not None:
      writer.write_images(step, {'eval_panel': panel})
      if jax.process_index() == 0:
        summary.save_png(panel, workdir / 'images' / f'step_{step:08d}.png')
    if best is not None and step > 0:  # Not the untrained baseline.
      keep_if_best(step, scalars)

  def keep_if_best(step, scalars):
    name = f'eval_{best.metric}'
    if name not in scalars:
      raise RuntimeError(
          f'config.eval.best_metric={best.metric!r}: the eval at step {step} did '
          f'not compute it (it gave {sorted(scalars)})'
      )
    previous, start = best.record, time.perf_counter()
    if best.update(step, scalars[name], state, config):
      before = f"{previous['value']:.6g} at step {previous['step']}" if previous else 'none'
      logging.info(
          'step %d: best %s so far, %.6g (before: %s); saved %s in %.1f s',
          step,
          best.metric,
          scalars[name],
          before,
          best.directory / str(step),
          time.perf_counter() - start,
      )
    else:
      logging.info(
          'step %d: %s %.6g; the best stays %s',
          step,
          best.metric,
          scalars[name],
          checkpointing.describe_best(previous) if previous else 'none (NaN)',
      )

  step = start_step
  try:
    if start_step == 0 and config.eval.every_steps and not stop.requested(manager, 0):
      evaluate(0)  # The untrained baseline, for the curves and panels.
    while step < num_train_steps:
      end = next_call_end(step, config, num_train_steps)
      data = images if batch_fn else tuple(progress.next_batch(batches) for _ in range(end - step))
      state, metrics = compiled_steps(end - step)(state, data)
      step = end
      history.append(metrics)
      stopping = stop.requested(manager, step, agree_now=step % config.log_every_steps == 0)
      last = step == num_train_steps or stopping
      if step % config.log_every_steps == 0 or step % config.checkpoint_every_steps == 0 or last:
        flush_metrics(step)  # Also the non-finite check before any checkpoint is written.
      if not stopping and (
          (config.eval.every_steps and step % config.eval.every_steps == 0) or last
      ):
        evaluate(step)
      if step % config.checkpoint_every_steps == 0 or last:
        checkpointing.save(manager, step, state, config)
        logging.info('Saving checkpoint %s', manager.directory / str(step))
      if stopping:
        break
  finally:
    # An interrupted run still completes the last good save (or names why it failed).
    checkpointing.wait(manager)
    writer.close()
    if best is not None:
      best.close()
  if stop.signal_name:
    logging.warning(
        'Stopped by %s at step %d of %d; checkpoint %s saved. Run the same command to resume.',
        stop.signal_name,
        step,
        num_train_steps,
        manager.directory / str(step),
    )
  else:
    logging.info('Finished at step %d; checkpoints in %s', num_train_steps, manager.directory)
  if best is not None and best.record is not None:
    logging.info(
        'Best checkpoint (--step=best): %s, in %s',
        checkpointing.describe_best(best.record),
        best.directory / str(best.record['step']),
    )
  return state
