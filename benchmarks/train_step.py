"""Times the jitted train step for named settings; prints one JSON line per setting (and peer).

Everything on a GPU (all settings, JAX and the PyTorch peer, the upsample comparison):

  python benchmarks/train_step.py --peer --compare_upsample

On a CPU (default: `paper` only, ~1 s/step; --interleave pairs our blocks with the peer's, so a
shared machine's drifting load hits both alike):

  python benchmarks/train_step.py --peer --interleave --compare_upsample --steps=4 --repeats=3
  python benchmarks/train_step.py --settings=paper --config.model.ngf=32   # overrides still work
  python benchmarks/train_step.py --isolate=false --breakdown              # where the time goes
  python benchmarks/train_step.py --variants=model.conv_impl=xla --variants=model.winograd_min_channels=128

Settings (applied on top of `--config`, default configs/maps.py, and its overrides; the speed
keys they do not set keep their 'auto' value for the backend, see pix2pix_jax/runtime.py):
  paper               batch 1, BatchNorm, float32 (the paper's; 256² with configs/maps.py), one
                      step per device call, host-fed batch
  paper_bf16          paper with `model.compute_dtype=bfloat16`
  paper_resnet_9blocks  paper with `model.generator=resnet_9blocks` (the reference's ResNet, 9
                      residual blocks; dropout in each as the paper setting keeps dropout_rate 0.5)
  paper_resnet_6blocks  the same with `model.generator=resnet_6blocks`
  b16_instance_fp32   batch 16, instance norm, float32
  b16_instance_bf16   batch 16, instance norm, bfloat16
  b64_instance_fp32   batch 64, instance norm, float32
  b64_instance_bf16   batch 64, instance norm, bfloat16
  paper_device_loop   paper, 100 steps per device call (`lax.scan`) on device-resident data
                      (`steps_per_call=100`, `data.on_device=True`): how a GPU run trains
  paper_device_loop_cpu_forms  the same with the CPU-tuned convolution forms forced
                      (`upsample_impl=adjoint`, `matmul_max_pixels=64`, `conv_impl=winograd`)
  paper_device_loop_bf16       the same in bfloat16
`--compare_upsample` adds `paper_conv_transpose` (`model.upsample_impl=conv_transpose`, XLA's
transposed convolution differentiated by XLA; the 'auto' choice on GPU/TPU, 'adjoint' on CPU).

Method: the state is initialised on the device and a fixed device batch of random uint8 images is
reused (no input pipeline); the step is compiled ahead of time (`lower().compile()`, timed as
`compile_s`), run once to warm up, then `--repeats` blocks of `--steps` steps are timed up to
`block_until_ready`; the median block gives `seconds_per_step`. Each setting runs in a fresh
process (`--isolate`, default), so `peak_memory_bytes` (`memory_stats()['peak_bytes_in_use']`;
null on CPU, which has no memory stats) is that setting's own and one setting running out of memory
does not stop the others. `xla_peak_bytes` is XLA's static estimate for the compiled step (every
backend).

`--peer` also times `reference/pytorch_peer.py` (pix2pix as the PyTorch reference trains it:
eager, NCHW) on the same device in its own process, prints its line with
`jax_over_pytorch_steps_per_s` = JAX steps/s ÷ PyTorch steps/s. The peer's bfloat16 is
`torch.autocast` (the reference has none) and is only timed on CUDA. `--interleave` instead runs
both in this process, alternating one timed block of each per repeat; the ratio is then the median
of the per-repeat ratios (CPU only: on a GPU the two frameworks would share one process's CUDA
libraries).

`--variants` times the first setting (default `paper`) as it is and with each variant's config
overrides (`key=value[,key=value]`), in this process, alternating one block of each per repeat (as
`--interleave`); each variant's line has `over_base` = median per-repeat ratio of its steps/s to
the unmodified setting's.

`--breakdown` also prints where the JAX step's time goes: jitted pieces (G forward, G forward +
backward, D forward, D loss gradient, D input gradient, G's Adam update) timed alone. The pieces
fuse differently from the whole step, so they add up to it only roughly.
"""

import copy
import functools
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
import time

# With --isolate=false or --interleave the PyTorch peer runs on the GPU while this process holds
# JAX's memory pool: grow the pool on demand rather than reserve 75% of the GPU up front.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # For configs/ and pix2pix_jax when run from anywhere.

from pix2pix_jax import losses, models, runtime, train, train_state  # pylint: disable=g-import-not-at-top
from pix2pix_jax.data import device_data, images  # pylint: disable=g-import-not-at-top

# Name -> config overrides (dotted keys), applied after the command line's. Steps per call and
# on-device data are set, not 'auto', so that a setting means the same on every backend.
_ONE_STEP = {'steps_per_call': 1, 'data.on_device': False}
_DEVICE_LOOP = {'steps_per_call': 100, 'data.on_device': True}
_PAPER = {'batch_size': 1, 'model.norm': 'batch', 'model.compute_dtype': 'float32'}
# The CPU-tuned convolution forms ('auto' on CPU), forced on any backend.
CPU_FORMS = {
    'model.upsample_impl': 'adjoint',
    'model.matmul_max_pixels': 64,
    'model.conv_impl': 'winograd',
}
_BF16 = {'model.compute_dtype': 'bfloat16'}
_INSTANCE = {'model.norm': 'instance', 'model.compute_dtype': 'float32'}
SETTINGS = {
    'paper': _PAPER | _ONE_STEP,
    'paper_bf16': _PAPER | _BF16 | _ONE_STEP,
    # The paper's step with the reference's ResNet generators instead of the U-Net.
    'paper_resnet_9blocks': _PAPER | _ONE_STEP | {'model.generator': 'resnet_9blocks'},
    'paper_resnet_6blocks': _PAPER | _ONE_STEP | {'model.generator': 'resnet_6blocks'},
    'b16_instance_fp32': {'batch_size': 16} | _INSTANCE | _ONE_STEP,
    'b16_instance_bf16': {'batch_size': 16} | _INSTANCE | _BF16 | _ONE_STEP,
    'b64_instance_fp32': {'batch_size': 64} | _INSTANCE | _ONE_STEP,
    'b64_instance_bf16': {'batch_size': 64} | _INSTANCE | _BF16 | _ONE_STEP,
    # The paper setting as a GPU run trains it ('auto' there): 100 steps per device call on
    # device-resident data; the same with the CPU-tuned forms; in bfloat16.
    'paper_device_loop': _PAPER | _DEVICE_LOOP,
    'paper_device_loop_cpu_forms': _PAPER | _DEVICE_LOOP | CPU_FORMS,
    'paper_device_loop_bf16': _PAPER | _DEVICE_LOOP | _BF16,
}
UPSAMPLE_SETTING = ('paper_conv_transpose', 'paper', {'model.upsample_impl': 'conv_transpose'})
DEFAULT_STEPS = {'cpu': 5}  # Timed steps per repeat by backend; accelerators: 50.

config_flags.DEFINE_config_file(
    'config', str(ROOT / 'configs/maps.py'), 'Base config.', lock_config=True
)
flags.DEFINE_list(
    'settings',
    None,
    f'Settings to time, of {list(SETTINGS)} (and '
    f'{UPSAMPLE_SETTING[0]}). Default: all on an accelerator, `paper` on CPU.',
)
flags.DEFINE_integer('steps', None, 'Timed steps per repeat (default: 5 on CPU, 50 otherwise).')
flags.DEFINE_integer('repeats', 3, 'Timed blocks of --steps steps; the median is reported.')
flags.DEFINE_bool(
    'peer', False, 'Also time the PyTorch peer on the same device and print the ratio.'
)
flags.DEFINE_bool(
    'compare_upsample', False, 'Also time `paper` with model.upsample_impl=conv_transpose.'
)
flags.DEFINE_bool('breakdown', False, 'Also time jitted pieces of the JAX step.')
flags.DEFINE_bool('isolate', True, 'Run each setting in its own process (fresh device memory).')
flags.DEFINE_bool(
    'interleave',
    False,
    'With --peer: time ours and the peer in this process, alternating blocks, and '
    'report the median paired ratio (for shared CPUs; implies --isolate=false).',
)
flags.DEFINE_multi_string(
    'variants',
    [],
    'Config overrides `key=value[,key=value]` to time '
    'against the first setting in this process, alternating blocks.',
)
FLAGS = flags.FLAGS


def setting_overrides(name: str) -> dict:
  """The config overrides of a setting name (KeyError names the known ones)."""
  if name == UPSAMPLE_SETTING[0]:
    return SETTINGS[UPSAMPLE_SETTING[1]] | UPSAMPLE_SETTING[2]
  if name not in SETTINGS:
    raise KeyError(f'unknown setting {name!r}; known: {list(SETTINGS) + [UPSAMPLE_SETTING[0]]}')
  return SETTINGS[name]


def peer_setting(name: str) -> str:
  """The setting whose PyTorch peer a setting compares with: the one it only runs differently."""
  if name == UPSAMPLE_SETTING[0]:
    return UPSAMPLE_SETTING[1]
  if name.startswith('paper_device_loop'):
    return 'paper_bf16' if name.endswith('_bf16') else 'paper'
  return name


def apply_overrides(config, overrides: dict):
  """A copy of `config` with dotted-key overrides set (keys must exist: typos are errors)."""
  config = copy.deepcopy(config)  # Keeps the types of 'auto' fields (str or int).
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = functools.reduce(getattr, parents, config)
    setattr(node, leaf, value)
  return config


def default_steps() -> int:
  return FLAGS.steps or DEFAULT_STEPS.get(jax.default_backend(), 50)


def _time_blocks(run_block, steps: int, repeats: int) -> list[float]:
  """Seconds per step of `repeats` timed blocks; `run_block(steps)` must block until done."""
  per_step = []
  for _ in range(repeats):
    start = time.perf_counter()
    run_block(steps)
    per_step.append((time.perf_counter() - start) / steps)
  return per_step


def _median(values: list[float]) -> float:
  return float(np.median(values))


def _random_batch(config) -> dict:
  size = config.data.image_size
  rng = np.random.default_rng(0)
  shape = (config.batch_size, size, size, config.data.channels)
  return jax.device_put({
      'input': rng.integers(0, 256, shape, np.uint8),
      'target': rng.integers(0, 256, shape, np.uint8),
  })


_NUM_DEVICE_IMAGES = 64


def _random_images(config):
  """Random device-resident train pairs (64, load_size², 2C) for `config.data.on_device`."""
  size = config.data.image_size if config.data.preprocess == 'resize' else config.data.load_size
  shape = (_NUM_DEVICE_IMAGES, size, size, 2 * config.data.channels)
  return jax.device_put(np.random.default_rng(0).integers(0, 256, shape, np.uint8))


_VERSIONED = ('jaxlib', 'flax', 'jax-cuda12-plugin', 'jax-cuda13-plugin')


def _installed(distribution: str) -> bool:
  try:
    importlib.metadata.version(distribution)
    return True
  except importlib.metadata.PackageNotFoundError:
    return False


def _versions() -> dict:
  device = jax.devices()[0]
  versions = {name: importlib.metadata.version(name) for name in _VERSIONED if _installed(name)}
  return {
      'backend': jax.default_backend(),
      'device': str(device.device_kind),
      'device_count': jax.device_count(),
      'platform_version': getattr(device.client, 'platform_version', None),  # CUDA/ROCm.
      'jax': jax.__version__,
  } | versions


def _peak_memory_bytes():
  stats = jax.devices()[0].memory_stats()  # None on CPU.
  return stats.get('peak_bytes_in_use') if stats else None


class JaxStepTimer:
  """Our jitted train step for a config on the default device, compiled and timed in blocks.

  Runs `train.run_steps` as training does: `config.steps_per_call` steps per device call, fed a
  fixed random batch or, with `config.data.on_device`, cropping and flipping random device images.

  Args:
    config: the full config (model, batch size, image size, steps per call, on-device data).
  """

  def __init__(self, config):
    config = runtime.resolve(
        config, train_set_bytes=device_data.train_set_bytes(config.data, _NUM_DEVICE_IMAGES)
    )
    self.config = config
    self.steps_per_call = config.steps_per_call
    _, init_fn, step_fn = train.create_train_functions(config, steps_per_epoch=1, num_train_steps=1)
    self.state = jax.jit(init_fn)(jax.random.PRNGKey(0))
    if config.data.on_device:
      self.data = _random_images(config)
      batch_fn = train.device_batch_fn(config, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    else:
      self.data, batch_fn = (_random_batch(config),) * self.steps_per_call, None
    steps = train.jit_run_steps(config, step_fn, self.steps_per_call, batch_fn)
    start = time.perf_counter()
    self.compiled = steps.lower(self.state, self.data).compile()
    self.compile_s = time.perf_counter() - start
    self.metrics = None

  def run(self, steps: int) -> float:
    """Seconds per step of a block of at least `steps` steps, whole calls (the first call warms up)."""
    calls = -(-steps // self.steps_per_call)
    start = time.perf_counter()
    for _ in range(calls):
      self.state, self.metrics = self.compiled(self.state, self.data)
    jax.block_until_ready((self.state, self.metrics))
    return (time.perf_counter() - start) / (calls * self.steps_per_call)

  def result(self, per_step: list[float], steps: int) -> dict:
    """The JSON-ready result for timed blocks of `steps` steps (`per_step`: seconds per step)."""
    config = self.config
    if not all(np.all(np.isfinite(self.metrics[name])) for name in train.LOSS_NAMES):
      raise FloatingPointError(f'non-finite loss: {jax.device_get(self.metrics)}')
    seconds = _median(per_step)
    memory = self.compiled.memory_analysis()
    return {
        'impl': 'jax',
        'image_size': config.data.image_size,
        'batch_size': config.batch_size,
        'generator': config.model.generator,
        'norm': config.model.norm,
        'patch_size': config.model.patch_size,
        'ngf': config.model.ngf,
        'ndf': config.model.ndf,
        'upsample_impl': config.model.upsample_impl,
        'matmul_max_pixels': config.model.matmul_max_pixels,
        'winograd_min_channels': runtime.conv_impl(config.model).winograd_min_channels,
        'compute_dtype': config.model.compute_dtype,
        'steps_per_call': self.steps_per_call,
        'on_device_data': config.data.on_device,
        'compile_s': round(self.compile_s, 2),
        'seconds_per_step': round(seconds, 4),
        'steps_per_s': round(1 / seconds, 3),
        'images_per_s': round(config.batch_size / seconds, 2),
        'repeat_seconds_per_step': [round(s, 4) for s in per_step],
        'steps': steps,
        'peak_memory_bytes': _peak_memory_bytes(),
        'xla_peak_bytes': getattr(memory, 'peak_memory_in_bytes', None) if memory else None,
    } | _versions()


def time_jax_step(config, steps: int, repeats: int) -> dict:
  """Compile time, steps/s and memory of `train.train_step` for `config` on the default device.

  Args:
    config: the full config (model, batch size, image size).
    steps: timed steps per repeat.
    repeats: timed blocks; the median is reported.

  Returns:
    A dict of the setting's shape, the figures and the versions (one JSON line).
  """
  timer = JaxStepTimer(config)
  timer.run(1)  # Warm-up: first-run allocations.
  return timer.result([timer.run(steps) for _ in range(repeats)], steps)


def time_interleaved(config, steps: int, repeats: int) -> tuple[dict, dict]:
  """Ours and the PyTorch peer in this process, alternating timed blocks.

  On a shared CPU the load drifts between and within runs; alternating blocks exposes both to the
  same load, and each round gives one paired ratio. (Not for GPUs: both frameworks would then load
  their own CUDA libraries into one process.)

  Returns:
    (JAX line, peer line); the peer line's `jax_over_pytorch_steps_per_s` is the median of the
    per-round ratios, listed in `paired_ratios`.
  """
  from reference import pytorch_peer  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  jax_timer = JaxStepTimer(config)
  peer_timer = pytorch_peer.PeerStepTimer(
      image_size=config.data.image_size,
      batch_size=config.batch_size,
      ngf=config.model.ngf,
      ndf=config.model.ndf,
      patch_size=config.model.patch_size,
      norm=config.model.norm,
      device='cuda' if jax.default_backend() == 'gpu' else 'cpu',
      dtype=config.model.compute_dtype,
      generator=config.model.generator,
  )
  jax_timer.run(1)  # Warm-up.
  if not peer_timer.timed:
    return jax_timer.result([jax_timer.run(steps) for _ in range(repeats)], steps), peer_timer.info
  peer_timer.warm_up(2)
  jax_times, peer_times = [], []
  for _ in range(repeats):
    jax_times.append(jax_timer.run(steps))
    peer_times.append(peer_timer.run(steps))
  ratios = [p / j for j, p in zip(jax_times, peer_times)]
  peer_line = peer_timer.result(peer_times, steps) | {
      'interleaved': True,
      'paired_ratios': [round(r, 3) for r in ratios],
      'jax_over_pytorch_steps_per_s': round(_median(ratios), 3),
  }
  return jax_timer.result(jax_times, steps) | {'interleaved': True}, peer_line


def parse_variant(config, spec: str) -> dict:
  """`key=value[,key=value]` -> overrides typed as `config`'s values (unknown keys are errors)."""
  overrides = {}
  for item in filter(None, spec.split(',')):
    key, sep, text = item.partition('=')
    if not sep:
      raise app.UsageError(f'--variants={spec!r}: {item!r} is not key=value')
    old = functools.reduce(getattr, key.split('.'), config)
    if isinstance(old, bool):
      value = {'true': True, 'false': False}[text.lower()]
    else:
      value = type(old)(text) if old is not None else text
    overrides[key] = value
  return overrides


def time_variants(config, variants: list[str], steps: int, repeats: int) -> list[dict]:
  """`config` and each variant of it, alternating one timed block of each per repeat.

  Returns:
    One line per config (the base first); variants' lines add `variant` and `over_base`.
  """
  configs = [config] + [apply_overrides(config, parse_variant(config, v)) for v in variants]
  timers = [JaxStepTimer(c) for c in configs]
  for timer in timers:
    timer.run(1)  # Warm-up.
  times = [[] for _ in timers]
  for _ in range(repeats):
    for timer, block_times in zip(timers, times):
      block_times.append(timer.run(steps))
  lines = [timers[0].result(times[0], steps) | {'variant': None}]
  for variant, timer, block_times in zip(variants, timers[1:], times[1:]):
    ratios = [base / t for base, t in zip(times[0], block_times)]
    lines.append(
        timer.result(block_times, steps)
        | {'variant': variant, 'over_base': round(_median(ratios), 3)}
    )
  return lines


def time_breakdown(config, steps: int, repeats: int) -> dict:
  """Seconds per call of jitted pieces of the step (see the module docstring).

  Returns:
    {piece name: median seconds per call}.
  """
  generator, init_fn, _ = train.create_train_functions(config, steps_per_epoch=1, num_train_steps=1)
  discriminator = models.create_discriminator(config.model)
  state = jax.jit(init_fn)(jax.random.PRNGKey(0))
  batch = _random_batch(config)
  g, d = state.generator, state.discriminator
  rng = jax.random.PRNGKey(1)
  inputs, targets = images.to_float(batch['input']), images.to_float(batch['target'])
  gan_mode = config.loss.gan_mode

  def g_forward(params):
    return train_state.apply_train_mode(generator, params, g.batch_stats, inputs, rng)[0]

  def g_forward_backward(params):
    fake, vjp = jax.vjp(g_forward, params)
    return vjp(jnp.ones_like(fake))[0]

  def d_forward(params, images):
    pair = jnp.concatenate([inputs, images], axis=-1)
    return train_state.apply_train_mode(discriminator, params, d.batch_stats, pair)[0]

  def d_loss(params, fake):
    return losses.discriminator_loss(d_forward(params, targets), d_forward(params, fake), gan_mode)[
        'd_total'
    ]

  def d_input_grad(fake):  # G's GAN gradient through D (no D parameter gradient).
    return jax.grad(lambda f: losses.gan_loss(d_forward(d.params, f), True, gan_mode))(fake)

  fake = jax.jit(g_forward)(g.params)
  g_optimizer = train_state.create_optimizer(config.optim, lambda _: config.optim.learning_rate)
  pieces = {
      'g_forward': (jax.jit(g_forward), (g.params,)),
      'g_forward_backward': (jax.jit(g_forward_backward), (g.params,)),
      'd_forward': (jax.jit(d_forward), (d.params, fake)),
      'd_loss_grad (2 D passes)': (jax.jit(jax.grad(d_loss)), (d.params, fake)),
      'd_input_grad (G side)': (jax.jit(d_input_grad), (fake,)),
      'g_adam_update': (jax.jit(lambda p, s: g_optimizer.update(p, s, p)), (g.params, g.opt_state)),
  }
  result = {}
  for name, (fn, args) in pieces.items():
    compiled = fn.lower(*args).compile()
    jax.block_until_ready(compiled(*args))

    def run_block(n, compiled=compiled, args=args):
      for _ in range(n):
        out = compiled(*args)
      jax.block_until_ready(out)

    result[name] = round(_median(_time_blocks(run_block, steps, repeats)), 4)
  return result


def _run_in_process(names: list[str]) -> None:
  steps = default_steps()
  peers = {}
  for name in names:
    config = apply_overrides(FLAGS.config, setting_overrides(name))
    if FLAGS.peer and FLAGS.interleave:
      jax_line, peer_line = time_interleaved(config, steps, FLAGS.repeats)
      print(json.dumps({'setting': name} | jax_line), flush=True)
      print(json.dumps({'setting': name, 'impl': 'pytorch_peer'} | peer_line), flush=True)
      continue
    try:
      line = {'setting': name} | time_jax_step(config, steps, FLAGS.repeats)
    except Exception as e:  # pylint: disable=broad-except
      line = {
          'setting': name,
          'impl': 'jax',
          'error': f'{type(e).__name__}: {e}'[:2000],
      } | _versions()
    lines = [line]
    if FLAGS.breakdown and 'error' not in line:
      lines.append({
          'setting': name,
          'impl': 'jax',
          'breakdown_seconds': time_breakdown(config, steps, FLAGS.repeats),
      })
    _report(name, lines, jax.default_backend(), steps, peers)


def _last_json_line(stdout: str):
  for text in reversed(stdout.splitlines()):
    if text.startswith('{'):
      return json.loads(text)
  return None


def _forwarded_config_args(argv: list[str]) -> list[str]:
  # `--config=...` and `--config.key=value` (also in the two-token `--config.key value` form).
  args, take_next = [], False
  for arg in argv[1:]:
    if take_next:
      args.append(arg)
      take_next = False
    elif arg.startswith('--config'):
      args.append(arg)
      take_next = '=' not in arg
  return args


def _run_child(command: list[str]) -> list[dict]:
  """Runs a benchmark process; returns its JSON lines (or one error line)."""
  done = subprocess.run(
      command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, check=False
  )
  lines = [json.loads(t) for t in done.stdout.splitlines() if t.startswith('{')]
  if done.returncode != 0 or not lines:
    tail = done.stderr.strip().splitlines()[-3:]
    return lines + [{'error': f'exit status {done.returncode}: {" | ".join(tail)}'[:2000]}]
  return lines


def time_peer(config, name: str, backend: str, steps: int, repeats: int) -> dict:
  """The PyTorch peer's line for a setting, timed in its own process on the backend's device."""
  command = [
      sys.executable,
      str(ROOT / 'reference/pytorch_peer.py'),
      f'--image_size={config.data.image_size}',
      f'--batch_size={config.batch_size}',
      f'--ngf={config.model.ngf}',
      f'--ndf={config.model.ndf}',
      f'--patch_size={config.model.patch_size}',
      f'--norm={config.model.norm}',
      f'--generator={config.model.generator}',
      f'--dtype={config.model.compute_dtype}',
      f'--steps={steps}',
      f'--repeats={repeats}',
      f'--device={"cuda" if backend == "gpu" else "cpu"}',
  ]
  return {'setting': name, 'impl': 'pytorch_peer'} | _run_child(command)[-1]


def _ratio(jax_line: dict, peer_line: dict):
  if jax_line.get('steps_per_s') and peer_line.get('steps_per_s'):
    return round(jax_line['steps_per_s'] / peer_line['steps_per_s'], 3)
  return None


def _run_isolated(names: list[str] | None, argv: list[str]) -> None:
  """Each setting (and its peer) in a fresh process; `names` None: the backend's defaults."""
  base = [
      sys.executable,
      str(pathlib.Path(__file__).resolve()),
      '--isolate=false',
      '--peer=false',
      f'--repeats={FLAGS.repeats}',
      f'--breakdown={str(FLAGS.breakdown).lower()}',
  ]
  base += [f'--steps={FLAGS.steps}'] if FLAGS.steps else []
  base += _forwarded_config_args(argv)
  queue = list(names) if names else ['paper']
  if FLAGS.compare_upsample and UPSAMPLE_SETTING[0] not in queue:
    queue.insert(queue.index('paper') + 1 if 'paper' in queue else len(queue), UPSAMPLE_SETTING[0])
  peers, backend = {}, None
  while queue:
    name = queue.pop(0)
    lines = [
        {'setting': name, 'impl': 'jax'} | line
        for line in _run_child(base + [f'--settings={name}'])
    ]
    jax_line = lines[0]
    backend = backend or jax_line.get('backend')
    if names is None and name == 'paper' and backend not in (None, 'cpu'):
      queue += [n for n in SETTINGS if n != 'paper']  # Defaults on an accelerator: all.
    _report(name, lines, backend, jax_line.get('steps'), peers)


def _report(
    name: str, lines: list[dict], backend: str | None, steps: int | None, peers: dict
) -> None:
  """Prints a setting's JAX lines and, with --peer, the peer's line and the ratio.

  Args:
    name: the setting.
    lines: its JAX lines (the first is the timing line).
    backend: the JAX backend it ran on (None if it failed before saying).
    steps: timed steps per repeat the JAX line used (the peer uses as many).
    peers: peer lines by setting name, filled here (one peer run per PyTorch model).
  """
  for line in lines:
    print(json.dumps(line), flush=True)
  if not FLAGS.peer or backend is None:
    return
  # Settings that only change how our step runs compare with the peer of the setting they vary.
  peer_key = peer_setting(name)
  if peer_key not in peers:
    config = apply_overrides(FLAGS.config, setting_overrides(peer_key))
    peers[peer_key] = time_peer(
        config,
        peer_key,
        backend,
        steps or FLAGS.steps or DEFAULT_STEPS.get(backend, 50),
        FLAGS.repeats,
    )
    print(
        json.dumps(
            peers[peer_key] | {'jax_over_pytorch_steps_per_s': _ratio(lines[0], peers[peer_key])}
        ),
        flush=True,
    )
  else:
    print(
        json.dumps({
            'setting': name,
            'impl': 'ratio',
            'peer_setting': peer_key,
            'jax_over_pytorch_steps_per_s': _ratio(lines[0], peers[peer_key]),
        }),
        flush=True,
    )


def main(argv):
  for name in FLAGS.settings or []:
    try:
      setting_overrides(name)  # Unknown names fail before anything runs.
    except KeyError as e:
      raise app.UsageError(e.args[0]) from None
  if FLAGS.variants:
    name = (FLAGS.settings or ['paper'])[0]
    config = apply_overrides(FLAGS.config, setting_overrides(name))
    for line in time_variants(config, FLAGS.variants, default_steps(), FLAGS.repeats):
      print(json.dumps({'setting': name} | line), flush=True)
    return
  if FLAGS.isolate and not (FLAGS.peer and FLAGS.interleave):
    _run_isolated(FLAGS.settings, sys.argv)
    return
  names = FLAGS.settings or (list(SETTINGS) if jax.default_backend() != 'cpu' else ['paper'])
  if FLAGS.compare_upsample and UPSAMPLE_SETTING[0] not in names:
    names.append(UPSAMPLE_SETTING[0])
  _run_in_process(names)
  del argv


if __name__ == '__main__':
  app.run(main)
