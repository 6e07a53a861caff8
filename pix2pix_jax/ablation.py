"""`--mode=ablation`: the paper's PatchGAN receptive-field study (its Table 3) as one command.

Trains the same config once per `config.model.patch_size` in WORKDIR/patch_<N>/ (each run resumes
like any other), evaluates each, and writes the comparison to WORKDIR/ablation.md and
WORKDIR/report/index.html.
"""

import logging
import pathlib

import ml_collections

from pix2pix_jax import evaluation, metrics, report, train

# Per-image metrics, shown as mean ± std; FID and KID are single values.
_COLUMNS = tuple(
    (name, metric.title) for name, metric in metrics.METRICS.items() if name not in ('fid', 'kid')
)


def comparison_table(rows: list[tuple[int, dict]]) -> str:
  """Markdown table: one row per patch size, the mean of each metric, FID and KID."""
  present = [(k, t) for k, t in _COLUMNS if any(k in r['metrics'] for _, r in rows)]
  extra = [name for name in ('fid', 'kid') if any(name in r['metrics'] for _, r in rows)]
  header = (
      ['patch size', 'images']
      + [t + ' (mean ± std)' for _, t in present]
      + [e.upper() for e in extra]
  )
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for patch_size, result in rows:
    values = result['metrics']
    cells = [f'{patch_size}×{patch_size}', str(result['num_images'])]
    cells += [
        f'{values[k]["mean"]:.4f} ± {values[k]["std"]:.4f}' if k in values else ''
        for k, _ in present
    ]
    if 'fid' in extra:
      cells.append(f'{values["fid"]:.2f}' if 'fid' in values else '')
    if 'kid' in extra:
      cells.append(f'{values["kid"]["mean"]:.4f}' if 'kid' in values else '')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def run_configs(
    config: ml_collections.ConfigDict, patch_sizes: list[int]
) -> list[ml_collections.ConfigDict]:
  """`config` once per patch size (main.py checks them all before the first run trains)."""
  configs = []
  for patch_size in patch_sizes:
    run_config = config.copy_and_resolve_references()
    run_config.model.patch_size = patch_size
    configs.append(run_config)
  return configs


def run_patch_size_ablation(
    config: ml_collections.ConfigDict, workdir: str, patch_sizes: list[int]
) -> str:
  """Trains and evaluates `config` for each patch size; returns the markdown table.

  Args:
    config: the base config (its model.patch_size is replaced).
    workdir: root folder; run N goes to WORKDIR/patch_N.
    patch_sizes: e.g. [1, 16, 70, 286].
  """
  configs = run_configs(config, patch_sizes)
  rows = []
  for patch_size, run_config in zip(patch_sizes, configs):
    run_dir = pathlib.Path(workdir) / f'patch_{patch_size}'
    logging.info('Ablation: patch size %d in %s', patch_size, run_dir)
    train.train_and_evaluate(run_config, str(run_dir))
    rows.append((patch_size, evaluation.evaluate(run_config, str(run_dir))))
  table = comparison_table(rows)
  (pathlib.Path(workdir) / 'ablation.md').write_text(
      f'# PatchGAN receptive field ({config.data.name}, {config.data.direction})\n\n{table}\n'
  )
  report.write_report(workdir, extra_sections={'PatchGAN receptive field': table})
  logging.info('Ablation results (%s):\n%s', pathlib.Path(workdir) / 'ablation.md', table)
  return table
