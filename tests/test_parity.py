"""benchmarks/parity.py end to end at toy size: both sides train, snapshot, translate, score, resume."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from pix2pix_jax.data import synthetic

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOY = [
    '--steps=4',
    '--eval_every=2',
    '--subset=2',
    '--image_size=32',
    '--load_size=36',
    '--ngf=8',
    '--ndf=8',
    '--override=eval.perceptual=False',
    '--override=eval.best_metric=None',
]


def write_pairs(root: pathlib.Path) -> pathlib.Path:
  """maps-like side-by-side A|B JPEGs (A aerial, B map) in root/train (6) and root/val (3)."""
  for split, count in (('train', 6), ('val', 3)):
    folder = root / split
    folder.mkdir(parents=True)
    source = synthetic.SyntheticMaps(split, count, 40, seed=0)
    for i in range(count):
      pair = source[i]
      Image.fromarray(np.concatenate([pair['A'], pair['B']], 1)).save(
          folder / f'{i + 1}.jpg', quality=95
      )
  return root


def parity(workdir, data, *flags):
  command = [
      sys.executable,
      'benchmarks/parity.py',
      f'--workdir={workdir}',
      f'--maps_dir={data}',
      f'--val_dir={data / "val"}',
      *TOY,
      *flags,
  ]
  return subprocess.run(
      command,
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=900,
      env=os.environ | {'JAX_PLATFORMS': 'cpu'},
  )


@pytest.fixture(scope='module')
def toy_parity(tmp_path_factory):
  root = tmp_path_factory.mktemp('parity')
  data = write_pairs(root / 'data')
  result = parity(root / 'w', data, '--ours_seeds=0', '--peer_seeds=0')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return root / 'w', data


def test_every_run_is_scored_at_every_snapshot(toy_parity):
  workdir, _ = toy_parity
  with open(workdir / 'parity.csv') as f:
    rows = list(csv.DictReader(f))
  points = sorted((r['run'], int(r['step']), r['images'], int(r['num_images'])) for r in rows)
  assert points == sorted(
      (run, step, images, count)
      for run in ('ours_seed0', 'peer_seed0')
      for step, images, count in ((2, 'subset', 2), (4, 'full', 3))
  )
  for row in rows:
    for metric in ('l1', 'psnr', 'ssim'):
      assert np.isfinite(float(row[metric])), row
    assert row['fid'] == ''  # eval.perceptual=False: not computed, not invented.
  table = (workdir / 'parity.md').read_text()
  for run in ('ours_seed0', 'peer_seed0'):
    assert f'| {run} | 4 |' in table
  assert (workdir / 'parity.png').stat().st_size > 10_000
  # The peer's outputs are PNGs named as the targets, scored by the same scorer as ours.
  assert sorted(p.name for p in (workdir / 'peer_seed0/generated/full_00000004').iterdir()) == [
      '1.png',
      '2.png',
      '3.png',
  ]


def test_a_second_call_redoes_nothing(toy_parity):
  workdir, data = toy_parity
  scores = sorted(workdir.glob('*/scores/*.json'))
  before = {p: p.stat().st_mtime_ns for p in scores}
  segments = {p: p.read_text() for p in workdir.glob('*/segments.jsonl')}
  result = parity(workdir, data, '--ours_seeds=0', '--peer_seeds=0')
  assert result.returncode == 0, result.stderr[-3000:]
  assert '$' not in result.stdout  # No training, generating or scoring command ran.
  assert {p: p.stat().st_mtime_ns for p in scores} == before
  assert {p: p.read_text() for p in workdir.glob('*/segments.jsonl')} == segments


def test_a_stopped_peer_resumes_where_an_uninterrupted_one_would_be(tmp_path):
  import torch  # pylint: disable=g-import-not-at-top

  data = write_pairs(tmp_path / 'data')
  only_peer = ['--ours_seeds=', '--peer_seeds=0', '--stage=train']
  straight = parity(tmp_path / 'straight', data, *only_peer)
  assert straight.returncode == 0, straight.stderr[-3000:]
  # Stopped after the first snapshot (step 2 of 4), then the same command again.
  first = parity(tmp_path / 'resumed', data, *only_peer, '--steps=2')
  assert first.returncode == 0, first.stderr[-3000:]
  second = parity(tmp_path / 'resumed', data, *only_peer)
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'resumed at step 2' in (tmp_path / 'resumed' / 'peer_seed0.log').read_text()
  a, b = (
      torch.load(d / 'peer_seed0/snapshots/state_00000004.pt', weights_only=False)
      for d in (tmp_path / 'straight', tmp_path / 'resumed')
  )
  for net in ('net_g', 'net_d'):
    for key, value in a[net].items():
      assert torch.equal(value, b[net][key]), (net, key)
  segments = (tmp_path / 'resumed/peer_seed0/segments.jsonl').read_text().splitlines()
  assert [(json.loads(s)['first_step'], json.loads(s)['last_step']) for s in segments] == [
      (0, 2),
      (2, 4),
  ]
