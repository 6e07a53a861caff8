"""Maps quality, ours beside the PyTorch reference: same steps, same pairs, same scorer.

  python benchmarks/parity.py --workdir=/tmp/parity                        # CPU: 3 epochs
  python benchmarks/parity.py --workdir=/tmp/parity_gpu --steps=219200 --eval_every=21920  # GPU: the paper

Trains `configs/maps.py` (map -> aerial, the paper's U-Net and 70×70 PatchGAN, batch 1, jitter
286 -> 256 + flip) with the reference's dropout placement (`model.dropout_skip_innermost=True`)
for `--steps` on the folder `--maps_dir/train`, once per seed in `--ours_seeds`; and the PyTorch
peer (`reference/pytorch_peer.py`: the reference's networks, init, losses and update order) for
the same steps on the same pairs, loaded as the reference's `AlignedDataset` loads them (resize
to 286, bicubic; random 256 crop and flip, the same for both halves), shuffled each epoch, with
seeds of its own (`--peer_seeds`). Every `--eval_every` steps each run keeps a snapshot.

Then each snapshot translates the val maps in the paper's test mode (dropout on, BatchNorm with
each image's own statistics; the reference's `test.py` without `--eval`), one image at a time,
from the same 256² inputs (the project's eval pipeline: each val original's map half resized
bicubic to 256²), and the project's scorer scores them against the aerial halves resized the
same way: ours through `main.py --mode=evaluate`, the peer's PNGs through `main.py --mode=score`
(one `ImageScores`: FID, KID, LPIPS, L1, PSNR, SSIM). Intermediate snapshots are scored on the
first `--subset` val pairs, the last on all of `--val_dir` (the 1098 originals every published
maps figure uses).

Writes WORKDIR/parity.md (the table; the last snapshot on all val pairs, and the per-step subset
points), WORKDIR/parity.csv (every point) and WORKDIR/parity.png (each metric against step, every
run). Everything resumes: run the same command again and finished parts are skipped, a stopped
training continues from its last checkpoint (ours: Orbax; the peer: its own snapshot with both
optimisers and the random states). Runs go one after another (two heavy jobs on a 2-core CPU slow
each other many times over). Each training's wall time is recorded per segment in
WORKDIR/<run>/segments.jsonl.
"""

import argparse
import csv
import itertools
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
METRICS = ('fid', 'kid', 'lpips', 'l1', 'psnr', 'ssim')
LOWER_IS_BETTER = {
    'fid': True,
    'kid': True,
    'lpips': True,
    'l1': True,
    'psnr': False,
    'ssim': False,
}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--steps', type=int, default=3288, help='train steps (3288 = 3 maps epochs)')
  parser.add_argument(
      '--eval_every', type=int, default=548, help='snapshot (and subset score) every N steps'
  )
  parser.add_argument(
      '--subset', type=int, default=100, help='val pairs scored at intermediate snapshots'
  )
  parser.add_argument('--ours_seeds', default='0,1')
  parser.add_argument('--peer_seeds', default='0')
  parser.add_argument(
      '--maps_dir',
      default=str(ROOT.parent / 'shared/data/maps286'),
      help='folder dataset with train/ (side-by-side A|B maps pairs)',
  )
  parser.add_argument(
      '--val_dir',
      default=str(ROOT.parent / 'shared/data/maps_val/val'),
      help='the val originals scored at the last snapshot',
  )
  parser.add_argument('--stage', default='all', choices=('all', 'train', 'score', 'table'))
  parser.add_argument('--config', default='configs/maps.py', help='ours (the peer mirrors it)')
  # Both sides (tests use tiny ones): image and jitter size, filters.
  parser.add_argument('--image_size', type=int, default=256)
  parser.add_argument('--load_size', type=int, default=286)
  parser.add_argument('--ngf', type=int, default=64)
  parser.add_argument('--ndf', type=int, default=64)
  parser.add_argument(
      '--override',
      action='append',
      default=[],
      help='extra --config.KEY=VALUE for ours (the peer does not follow them)',
  )
  # Internal: the peer's phases run in their own process (PyTorch only, no JAX on the device).
  parser.add_argument('--peer_phase', choices=('train', 'generate'), help=argparse.SUPPRESS)
  parser.add_argument('--run', help=argparse.SUPPRESS)
  parser.add_argument('--step', type=int, help=argparse.SUPPRESS)
  parser.add_argument('--eval_dir', help=argparse.SUPPRESS)
  parser.add_argument('--output', help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def runs(args) -> list[tuple[str, str, int]]:
  """(name, side, seed) of every run in training order: ours and the peer alternate, so that the
  first pair of results (ours_seed0, peer_seed0) comes first."""
  ours = [(f'ours_seed{s}', 'ours', int(s)) for s in args.ours_seeds.split(',') if s]
  peer = [(f'peer_seed{s}', 'peer', int(s)) for s in args.peer_seeds.split(',') if s]
  order = [run for pair in itertools.zip_longest(ours, peer) for run in pair if run]
  return order


def snapshot_steps(args) -> list[int]:
  steps = list(range(args.eval_every, args.steps, args.eval_every))
  return steps + [args.steps]


def _record_segment(run_dir: pathlib.Path, start: float, first_step: int, last_step: int) -> None:
  with open(run_dir / 'segments.jsonl', 'a') as f:
    f.write(
        json.dumps({
            'start': time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(start)),
            'wall_s': round(time.time() - start, 1),
            'first_step': first_step,
            'last_step': last_step,
        })
        + '\n'
    )


def _check(command: list[str], log: pathlib.Path, env=None) -> None:
  """Runs `command`, its output appended to `log`. A SIGTERM or Ctrl-C reaches it too (training
  then saves its state); this script waits for it to exit, then stops."""
  print('$', ' '.join(command), f'>> {log}', flush=True)
  with open(log, 'a') as f:
    process = subprocess.Popen(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    stopped = []

    def forward(*_):
      stopped.append(True)
      process.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
      status = process.wait()
    except KeyboardInterrupt:  # Ctrl-C went to the whole process group, the child included.
      stopped.append(True)
      status = process.wait()
    finally:
      signal.signal(signal.SIGTERM, previous)
  if stopped:
    raise SystemExit(
        f'stopped; {command[1]} exited with {status} (log: {log}). Run the same command to resume.'
    )
  if status:
    raise SystemExit(f'{command[1]} exited with {status}; see {log}')


# ------------------------------------------------------------------------------------------------
# Ours: main.py


def ours_overrides(args, seed: int, folder_dir: str | None = None) -> list[str]:
  return [
      f'--config={args.config}',
      '--config.data.name=folder',
      f'--config.data.folder_dir={folder_dir or args.maps_dir}',
      f'--config.data.image_size={args.image_size}',
      f'--config.data.load_size={args.load_size}',
      f'--config.model.ngf={args.ngf}',
      f'--config.model.ndf={args.ndf}',
      f'--config.num_train_steps={args.steps}',
      f'--config.seed={seed}',
      '--config.model.dropout_skip_innermost=True',
      f'--config.checkpoint_every_steps={args.eval_every}',
      f'--config.keep_checkpoints={len(snapshot_steps(args)) + 1}',
      '--config.eval.every_steps=0',
  ] + [f'--config.{o}' for o in args.override]


def ours_steps_done(run_dir: pathlib.Path) -> list[int]:
  checkpoints = run_dir / 'checkpoints'
  return (
      sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
      if checkpoints.is_dir()
      else []
  )


def train_ours(args, run_dir: pathlib.Path, seed: int) -> None:
  done = ours_steps_done(run_dir)
  if done and done[-1] >= args.steps:
    return
  start = time.time()
  try:
    _check(
        [sys.executable, 'main.py', f'--workdir={run_dir}'] + ours_overrides(args, seed),
        run_dir.parent / f'{run_dir.name}.log',
    )
  finally:  # A stopped run's segment counts too (up to the checkpoint it saved).
    reached = ours_steps_done(run_dir)
    _record_segment(run_dir, start, done[-1] if done else 0, reached[-1] if reached else 0)


def score_ours(
    args,
    run_dir: pathlib.Path,
    seed: int,
    step: int,
    which: str,
    eval_dir: pathlib.Path,
    out: pathlib.Path,
) -> None:
  # --mode=evaluate writes WORKDIR/eval/metrics.json; a copy per (step, split) is kept.
  _check(
      [
          sys.executable,
          'main.py',
          f'--workdir={run_dir}',
          '--mode=evaluate',
          f'--step={step}',
          *ours_overrides(args, seed, folder_dir=str(eval_dir.parent)),
      ],
      run_dir.parent / f'{run_dir.name}.score.log',
  )
  shutil.copy(run_dir / 'eval' / 'metrics.json', out)


# ------------------------------------------------------------------------------------------------
# The peer: PyTorch, in a process of its own


def _peer_networks(args, device):
  sys.path.insert(0, str(ROOT))
  from reference import pytorch_peer  # pylint: disable=g-import-not-at-top

  net_g = pytorch_peer.create_generator(args.image_size, ngf=args.ngf).to(device)
  net_d = pytorch_peer.create_discriminator(70, ndf=args.ndf).to(device)
  return pytorch_peer, net_g, net_d


def _load_train_pairs(maps_dir: str, load_size: int):
  """All train pairs as the reference's AlignedDataset reads them: (B map, A aerial), uint8."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  files = sorted(
      (pathlib.Path(maps_dir) / 'train').glob('*.jpg'),
      key=lambda p: int(re.sub(r'\D', '', p.stem) or 0),
  )
  pairs = []
  for path in files:
    ab = Image.open(path).convert('RGB')
    w, h = ab.size
    a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
    # transforms.Resize([286, 286], BICUBIC): the identity for maps286's 286² halves.
    a, b = (x.resize((load_size, load_size), Image.BICUBIC) for x in (a, b))
    pairs.append((np.asarray(b), np.asarray(a)))  # BtoA: the map is the input.
  return pairs


def peer_train(args) -> None:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  run_dir = pathlib.Path(args.workdir) / args.run
  seed = int(args.run.rsplit('seed', 1)[1])
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  torch.manual_seed(seed)
  pytorch_peer, net_g, net_d = _peer_networks(args, device)
  if device.type == 'cuda':
    torch.backends.cudnn.benchmark = True
  model = pytorch_peer.Pix2PixPeer(net_g, net_d, lambda_l1=100.0)
  snapshots = run_dir / 'snapshots'
  snapshots.mkdir(parents=True, exist_ok=True)
  done = sorted(int(p.stem.split('_')[1]) for p in snapshots.glob('state_*.pt'))
  step = 0
  if done:
    state = torch.load(
        snapshots / f'state_{done[-1]:08d}.pt', map_location=device, weights_only=False
    )
    net_g.load_state_dict(state['net_g'])
    net_d.load_state_dict(state['net_d'])
    model.optimizer_g.load_state_dict(state['optimizer_g'])
    model.optimizer_d.load_state_dict(state['optimizer_d'])
    torch.set_rng_state(state['torch_rng'])
    if device.type == 'cuda':
      torch.cuda.set_rng_state(state['cuda_rng'])
    step = state['step']
    print(f'peer {args.run}: resumed at step {step}', flush=True)
  if step >= args.steps:
    return
  pairs = _load_train_pairs(args.maps_dir, args.load_size)
  start, first_step, losses = time.time(), step, []
  segment_start, segment_step = start, step
  orders, stop = {}, []
  # SIGTERM or Ctrl-C: snapshot the step reached, then exit (the same command resumes there).
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda *_: stop.append(True))
  while step < args.steps and not stop:
    epoch, position = divmod(step, len(pairs))
    if epoch not in orders:  # Each epoch its own shuffle, a function of (seed, epoch).
      orders = {epoch: np.random.default_rng([seed, epoch]).permutation(len(pairs))}
    map_, aerial = pairs[orders[epoch][position]]
    rng = np.random.default_rng([seed, 1 << 20, step])  # AlignedDataset's get_params, per step.
    size = args.image_size
    x, y = rng.integers(0, args.load_size - size + 1, size=2)
    flip = rng.random() > 0.5
    tensors = []
    for image in (map_, aerial):
      crop = image[y : y + size, x : x + size]
      crop = crop[:, ::-1] if flip else crop
      t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float()
      tensors.append(((t / 255 - 0.5) / 0.5).to(device))  # ToTensor + Normalize(0.5, 0.5).
    out = model.optimize_parameters(*tensors)
    step += 1
    losses.append({k: float(v) for k, v in out.items()})
    if step % 100 == 0:
      mean = {k: np.mean([l[k] for l in losses]) for k in losses[0]}
      rate = (step - first_step) / (time.time() - start)
      print(
          f'peer {args.run}: step {step}/{args.steps} | {rate:.2f} steps/s | G'
          f' {mean["g_total"]:.3f} (GAN {mean["g_gan"]:.3f}, L1 {mean["g_l1"] / 100:.4f}) D'
          f' {mean["d_total"]:.3f}',
          flush=True,
      )
      losses.clear()
    if step % args.eval_every == 0 or step == args.steps or stop:
      state = {
          'net_g': net_g.state_dict(),
          'net_d': net_d.state_dict(),
          'optimizer_g': model.optimizer_g.state_dict(),
          'optimizer_d': model.optimizer_d.state_dict(),
          'torch_rng': torch.get_rng_state(),
          'step': step,
      }
      if device.type == 'cuda':
        state['cuda_rng'] = torch.cuda.get_rng_state()
      tmp = snapshots / f'.state_{step:08d}.pt.tmp'
      torch.save(state, tmp)
      os.replace(tmp, snapshots / f'state_{step:08d}.pt')
      # The segment up to this snapshot counts now: a process killed outright (a session's end)
      # loses only the steps after it, which the next start redoes.
      _record_segment(run_dir, segment_start, segment_step, step)
      segment_start, segment_step = time.time(), step
      # Only the generator of earlier snapshots is needed later (and only at snapshot steps):
      # drop their D and Adam states.
      for old in snapshots.glob('state_*.pt'):
        old_step = int(old.stem.split('_')[1])
        if old_step < step:
          if old_step % args.eval_every == 0:
            torch.save(
                {'net_g': torch.load(old, weights_only=False)['net_g'], 'step': old_step},
                snapshots / f'g_{old_step:08d}.pt',
            )
          old.unlink()
  if stop:
    print(f'peer {args.run}: stopped at step {step}; run the same command to resume', flush=True)


def peer_generate(args) -> None:
  """The peer's snapshot at `--step` translates the eval split of `--eval_dir` into PNGs."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  sys.path.insert(0, str(ROOT))
  from configs import maps  # pylint: disable=g-import-not-at-top
  from pix2pix_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  run_dir = pathlib.Path(args.workdir) / args.run
  seed = int(args.run.rsplit('seed', 1)[1])
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  _, net_g, _ = _peer_networks(args, device)
  snapshots = run_dir / 'snapshots'
  path = next(
      p
      for p in (snapshots / f'g_{args.step:08d}.pt', snapshots / f'state_{args.step:08d}.pt')
      if p.exists()
  )
  net_g.load_state_dict(torch.load(path, map_location=device, weights_only=False)['net_g'])
  net_g.train()  # The reference's test.py without --eval: dropout on, each image's own statistics.
  config = maps.get_config()
  config.data.name, config.data.folder_dir = 'folder', str(pathlib.Path(args.eval_dir).parent)
  config.data.image_size = args.image_size
  source = pipeline.create_source(config.data, 'eval', seed)
  out_dir = pathlib.Path(args.output)
  tmp_dir = out_dir.with_name(out_dir.name + '.tmp')
  shutil.rmtree(tmp_dir, ignore_errors=True)
  tmp_dir.mkdir(parents=True)
  torch.manual_seed(seed + 0x5EED)
  with torch.no_grad():
    for batch in pipeline.eval_batches(source, config.data, batch_size=1):
      x = torch.from_numpy(batch['input'][0]).permute(2, 0, 1)[None].float().to(device)
      fake = net_g((x / 255 - 0.5) / 0.5)[0].permute(1, 2, 0).cpu().numpy()
      # Quantised as ours (images.to_uint8: rounded). The reference's tensor2im truncates
      # ((x + 1) / 2 × 255 cast to uint8), half a level darker on average.
      image = np.clip(np.round((fake + 1) * 127.5), 0, 255).astype(np.uint8)
      Image.fromarray(image).save(tmp_dir / f'{pathlib.Path(str(batch["file_name"][0])).stem}.png')
  os.replace(tmp_dir, out_dir)


def _peer(args, phase: str, run: str, log: pathlib.Path, **extra) -> None:
  command = [
      sys.executable,
      str(pathlib.Path(__file__).resolve()),
      f'--workdir={args.workdir}',
      f'--steps={args.steps}',
      f'--eval_every={args.eval_every}',
      f'--maps_dir={args.maps_dir}',
      f'--image_size={args.image_size}',
      f'--load_size={args.load_size}',
      f'--ngf={args.ngf}',
      f'--ndf={args.ndf}',
      f'--peer_phase={phase}',
      f'--run={run}',
  ] + [f'--{k}={v}' for k, v in extra.items()]
  # JAX (the eval pipeline's import) stays off the accelerator in the peer's process.
  _check(command, log, env=os.environ | {'JAX_PLATFORMS': 'cpu'})


def peer_steps_done(run_dir: pathlib.Path) -> list[int]:
  snapshots = run_dir / 'snapshots'
  return (
      sorted(int(p.stem.split('_')[1]) for p in snapshots.glob('*_*.pt'))
      if snapshots.is_dir()
      else []
  )


def score_peer(
    args,
    run_dir: pathlib.Path,
    seed: int,
    step: int,
    which: str,
    eval_dir: pathlib.Path,
    out: pathlib.Path,
) -> None:
  generated = run_dir / 'generated' / f'{which}_{step:08d}'
  if not generated.is_dir():
    _peer(
        args,
        'generate',
        run_dir.name,
        run_dir.parent / f'{run_dir.name}.log',
        step=step,
        eval_dir=eval_dir,
        output=generated,
    )
  score_dir = run_dir / 'score'
  _check(
      [
          sys.executable,
          'main.py',
          f'--workdir={score_dir}',
          '--mode=score',
          f'--input={generated}',
          f'--targets={eval_dir}',
          *ours_overrides(args, seed),
      ],
      run_dir.parent / f'{run_dir.name}.score.log',
  )
  metrics = json.loads((score_dir / 'eval' / 'metrics.json').read_text())
  metrics['step'] = step
  out.write_text(json.dumps(metrics, indent=1))


# ------------------------------------------------------------------------------------------------
# Scoring and the table


def eval_sets(args) -> dict[str, pathlib.Path]:
  """{'subset': first --subset val originals (a folder of links), 'full': --val_dir}."""
  val_dir = pathlib.Path(args.val_dir)
  files = sorted(
      (p for p in val_dir.iterdir() if p.suffix.lower() in ('.jpg', '.png')),
      key=lambda p: (int(re.sub(r'\D', '', p.stem) or 0), p.name),
  )
  subset = pathlib.Path(args.workdir) / 'val_subset' / 'val'
  if not subset.is_dir() or len(list(subset.iterdir())) != min(args.subset, len(files)):
    shutil.rmtree(subset, ignore_errors=True)
    subset.mkdir(parents=True)
    for path in files[: args.subset]:
      (subset / path.name).symlink_to(path.resolve())
  if val_dir.name != 'val':
    raise SystemExit(f'--val_dir={val_dir} must be a folder named val (the eval split)')
  return {'subset': subset, 'full': val_dir}


def score_all(args) -> None:
  """Scores every snapshot not yet scored: first each run's last one on all val pairs (the
  table), then the intermediate ones on the subset (the curves)."""
  sets = eval_sets(args)
  points = [(args.steps, 'full')] + [(step, 'subset') for step in snapshot_steps(args)[:-1]]
  for step, which in points:
    for name, side, seed in runs(args):
      run_dir = pathlib.Path(args.workdir) / name
      done = ours_steps_done(run_dir) if side == 'ours' else peer_steps_done(run_dir)
      out = run_dir / 'scores' / f'{which}_{step:08d}.json'
      if out.exists() or step not in done:
        continue
      out.parent.mkdir(exist_ok=True)
      scorer = score_ours if side == 'ours' else score_peer
      scorer(args, run_dir, seed, step, which, sets[which], out)


def _mean(metrics: dict, name: str):
  value = metrics['metrics'].get(name)
  if value is None:
    return None
  return value['mean'] if isinstance(value, dict) else value


def collect(args) -> list[dict]:
  rows = []
  for name, side, seed in runs(args):
    run_dir = pathlib.Path(args.workdir) / name
    for path in (
        sorted((run_dir / 'scores').glob('*.json')) if (run_dir / 'scores').is_dir() else []
    ):
      metrics = json.loads(path.read_text())
      which, step = path.stem.split('_')
      rows.append({
          'run': name,
          'side': side,
          'seed': seed,
          'step': int(step),
          'images': which,
          'num_images': metrics['num_images'],
          **{m: _mean(metrics, m) for m in METRICS},
      })
  return rows


def train_wall(run_dir: pathlib.Path) -> tuple[float, str]:
  path = run_dir / 'segments.jsonl'
  if not path.exists():
    return 0.0, ''
  segments = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return sum(s['wall_s'] for s in segments), f'{len(segments)} segment(s)'


def _fmt(value, name: str) -> str:
  if value is None:
    return '–'
  return {
      'fid': '{:.2f}',
      'kid': '{:.4f}',
      'lpips': '{:.4f}',
      'l1': '{:.4f}',
      'psnr': '{:.2f}',
      'ssim': '{:.4f}',
  }[name].format(value)


def write_table(args, rows: list[dict]) -> str:
  workdir = pathlib.Path(args.workdir)
  with open(workdir / 'parity.csv', 'w', newline='') as f:
    writer = csv.DictWriter(
        f, fieldnames=['run', 'side', 'seed', 'step', 'images', 'num_images', *METRICS]
    )
    writer.writeheader()
    writer.writerows(rows)
  header = (
      '| run | steps | train wall | '
      + ' | '.join(m.upper() if m != 'lpips' else 'LPIPS' for m in METRICS)
      + ' |'
  )
  lines = [
      (
          f'Last snapshot (step {args.steps}) on all val pairs ({args.val_dir}),'
          f" {args.image_size}², the paper's test mode:"
      ),
      '',
      header,
      '|' + '---|' * (len(METRICS) + 3),
  ]
  for row in (r for r in rows if r['images'] == 'full'):
    wall, _ = train_wall(workdir / row['run'])
    lines.append(
        f'| {row["run"]} | {row["step"]} | {wall / 60:.1f} min | '
        + ' | '.join(_fmt(row[m], m) for m in METRICS)
        + ' |'
    )
  lines += [
      '',
      f'Intermediate snapshots on the first {args.subset} val pairs:',
      '',
      '| run | step | ' + ' | '.join(m.upper() for m in METRICS) + ' |',
      '|' + '---|' * (len(METRICS) + 2),
  ]
  for row in (r for r in rows if r['images'] == 'subset'):
    lines.append(
        f'| {row["run"]} | {row["step"]} | ' + ' | '.join(_fmt(row[m], m) for m in METRICS) + ' |'
    )
  table = '\n'.join(lines) + '\n'
  (workdir / 'parity.md').write_text(table)
  return table


def plot(args, rows: list[dict]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(2, 3, figsize=(13, 7))
  for ax, metric in zip(axes.flat, METRICS):
    for name, side, _ in runs(args):
      points = sorted(
          (r['step'], r[metric])
          for r in rows
          if r['run'] == name and r['images'] == 'subset' and r[metric] is not None
      )
      style = '-o' if side == 'ours' else '--s'
      if points:
        (line,) = ax.plot(*zip(*points), style, label=f'{name} (first {args.subset} val)', ms=4)
        full = [
            (r['step'], r[metric])
            for r in rows
            if r['run'] == name and r['images'] == 'full' and r[metric] is not None
        ]
        if full:
          ax.plot(
              *zip(*full),
              marker='*',
              ms=12,
              ls='none',
              color=line.get_color(),
              label=f'{name} (all val)',
          )
    ax.set_title(f'{metric.upper()} ({"lower" if LOWER_IS_BETTER[metric] else "higher"} is better)')
    ax.set_xlabel('step')
  handles, labels = axes.flat[3].get_legend_handles_labels()  # L1: every run has it.
  fig.legend(handles, labels, loc='lower center', ncol=max(len(labels) // 2, 1), fontsize=8)
  fig.suptitle(f'maps map→aerial, {args.steps} steps: ours (JAX) and the PyTorch reference peer')
  fig.tight_layout(rect=(0, 0.08, 1, 1))
  fig.savefig(pathlib.Path(args.workdir) / 'parity.png', dpi=110)


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.peer_phase == 'train':
    return peer_train(args)
  if args.peer_phase == 'generate':
    return peer_generate(args)
  workdir = pathlib.Path(args.workdir).resolve()
  args.workdir = str(workdir)
  args.maps_dir = str(pathlib.Path(args.maps_dir).resolve())
  args.val_dir = str(pathlib.Path(args.val_dir).resolve())
  for path, what in (
      (pathlib.Path(args.maps_dir) / 'train', '--maps_dir'),
      (pathlib.Path(args.val_dir), '--val_dir'),
  ):
    if not path.is_dir():
      raise SystemExit(f'{what}: {path} is not a folder')
  workdir.mkdir(parents=True, exist_ok=True)
  if args.stage in ('all', 'train'):
    for name, side, seed in runs(args):
      run_dir = workdir / name
      run_dir.mkdir(exist_ok=True)
      if side == 'ours':
        train_ours(args, run_dir, seed)
      elif not peer_steps_done(run_dir) or peer_steps_done(run_dir)[-1] < args.steps:
        _peer(args, 'train', name, workdir / f'{name}.log')
  if args.stage in ('all', 'score'):
    score_all(args)
  rows = collect(args)
  print(write_table(args, rows))
  if rows:
    plot(args, rows)


if __name__ == '__main__':
  main()
