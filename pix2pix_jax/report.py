"""One static HTML page summarising a run: WORKDIR/report/index.html.

It gathers what training and evaluation leave in the workdir: the metrics of
`WORKDIR/eval/metrics.json`, the training curves of the TensorBoard event files in `WORKDIR/`
(read with tensorboard's event loader, drawn with matplotlib into `WORKDIR/report/charts/`) and
the [input | generated | target] panels the evaluation saved, copied into
`WORKDIR/report/images/`. The page is readable offline: no JavaScript, no CDN, no web fonts, and
everything it references lives under `WORKDIR/report/`; its Content-Security-Policy makes a
browser refuse anything else.

Training's own panels have an event file of their own in `WORKDIR/panels/`
(`summary.PANELS_DIR`), which the report does not read: without TensorFlow, tensorboard's reader
checks each record's CRC in pure Python, and a maps-sized run's 44 panels (23 MB) took it 4-7 s
to get past; its scalars alone take under 0.1 s. A run written before the split, with its panels
in the scalars' file, still gives the same report, only that much slower.

  python -m pix2pix_jax.report WORKDIR
"""

import datetime
import html
import json
import math
import os
import pathlib
import re
import shutil
import sys
from collections.abc import Sequence

import markdown
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util

from pix2pix_jax.metrics import METRICS

REPORT_DIR = 'report'
NO_EVAL_MESSAGE = 'no evaluation yet: run --mode=evaluate'
# Table labels: the metric's title with an arrow to the better direction.
_LABELS = {name: m.title + (' ↓' if m.lower_is_better else ' ↑') for name, m in METRICS.items()}
PANEL_GROUPS = {'fixed': 'Fixed images', 'best': 'Best (lowest L1)', 'worst': 'Worst (highest L1)'}

# Charts of the known tags: (title, unit of the y axis, [(tag, legend label, scale)], whether a log
# y axis may be used). train_g_l1 is the mean |G(x) - y| of images in [-1, 1] and eval_l1 that of
# images in [0, 1], so the train curve is halved to put both on the eval scale. The D outputs are
# probabilities of 'real' for the vanilla GAN, raw scores for LSGAN and hinge.
CHARTS = (
    (
        'Generator losses',
        'loss',
        [
            ('train_g_total', 'G total', 1.0),
            ('train_g_gan', 'G GAN', 1.0),
            ('train_g_l1', 'G L1', 1.0),
        ],
        True,
    ),
    (
        'Discriminator losses',
        'loss',
        [
            ('train_d_total', 'D total', 1.0),
            ('train_d_real', 'D real', 1.0),
            ('train_d_fake', 'D fake', 1.0),
        ],
        True,
    ),
    (
        'L1, images in [0, 1]',
        'mean |G(x) − y|',
        [('train_g_l1', 'train (G L1 × 0.5)', 0.5), ('eval_l1', 'eval', 1.0)],
        True,
    ),
    (
        'Discriminator outputs',
        'mean D output',
        [('train_d_real_output', 'D(x, y)', 1.0), ('train_d_fake_output', 'D(x, G(x))', 1.0)],
        False,
    ),
    ('Learning rate', 'Adam step size', [('train_learning_rate', 'learning rate', 1.0)], False),
    ('Throughput', 'steps per second', [('steps_per_second', 'steps / s', 1.0)], False),
)
# The y axis of each metric's eval curve (its title comes from METRICS): dB, or what is averaged.
_EVAL_UNITS = {
    'l1': 'mean |G(x) − y|',
    'psnr': 'dB',
    'ssim': 'similarity index',
    'hp_l1': 'mean |Laplacian difference|',
    'lpips': 'perceptual distance',
    'fid': 'Fréchet distance',
    'kid': 'MMD², mean over subsets',
}
# The other tags training and evaluation log, each a chart of its own: tag -> (title, unit).
TAG_CHARTS = {
    'data_wait_fraction': ('Data wait', 'fraction of step time'),
    'eval_seconds': ('Eval time', 'seconds'),
    'train_g_feat': ('Feature-matching loss (G)', 'loss (before its λ)'),
    'train_skipped_steps': ('Skipped steps (non-finite loss)', 'steps since the last log'),
} | {
    f'eval_{name}': (f'Eval {metric.title}', _EVAL_UNITS.get(name, 'value'))
    for name, metric in METRICS.items()
}
# Series with at most this many points also get a marker per point (a single point is visible).
# Long series need no decimation: Agg draws 100k points in well under a second, and a PNG's size
# does not grow with them.
_MAX_MARKERS = 40


def event_files(workdir: str | os.PathLike) -> list[pathlib.Path]:
  """The TensorBoard event files directly in `workdir` (not its subfolders), by name."""
  return sorted(p for p in pathlib.Path(workdir).glob('events.out.tfevents.*') if p.is_file())


def read_scalars(workdir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
  """All scalars of the event files in `workdir`.

  Files are merged oldest first (by the wall time of their first event, then by name), and on a
  step present in several files the later file wins: a run resumed from the checkpoint at step
  S writes the steps after S again, and those are the ones that led to the current state.
  Non-finite values are kept (they are what was logged); the charts skip them.

  Args:
    workdir: the training workdir.

  Returns:
    {tag: [(step, value), ...] sorted by step}; {} when there are no event files.
  """
  per_file = []  # (wall time of its first event, name, {tag: {step: value}}) per file.
  for path in event_files(workdir):
    first_wall_time, plugins, scalars = math.inf, {}, {}
    # The loader checks each record's CRC and stops at the first torn or corrupt one (a writer
    # killed mid-write), keeping those before it. It also turns tensorboardX's simple_value into
    # the 0-d tensor that TF2 writers write; those name the plugin on a tag's first value only.
    for event in event_file_loader.EventFileLoader(str(path)).Load():
      first_wall_time = min(first_wall_time, event.wall_time)
      for value in event.summary.value:
        plugin = plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
        if plugin == 'scalars' and value.HasField('tensor'):
          array = tensor_util.make_ndarray(value.tensor)
          if array.size == 1 and array.dtype.kind == 'f':
            scalars.setdefault(value.tag, {})[int(event.step)] = float(array.item())
    per_file.append((first_wall_time, path.name, scalars))
  merged: dict[str, dict[int, float]] = {}
  for _, _, scalars in sorted(per_file, key=lambda item: item[:2]):
    for tag, points in scalars.items():
      merged.setdefault(tag, {}).update(points)
  return {tag: sorted(points.items()) for tag, points in sorted(merged.items())}


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[int, float]]]],
    *,
    allow_log: bool = False,
    unit: str = '',
) -> tuple[Figure | None, int]:
  """A matplotlib line chart (on the Agg canvas) of some series against the training step.

  Args:
    series: (legend label, [(step, value), ...]) per line. Line i has colour Ci even when others
      are empty, so a curve keeps its colour in every report. Non-finite values are skipped.
    allow_log: use a log y axis when all values are positive and span more than 50×.
    unit: the y axis's label, so that a chart copied out of the page still says what it plots.

  Returns:
    (the figure or None if no series has a finite value, the number of values skipped).
  """
  skipped = sum(1 for _, points in series for _, v in points if not math.isfinite(v))
  finite = [
      (i, label, [(s, v) for s, v in points if math.isfinite(v)])
      for i, (label, points) in enumerate(series)
  ]
  finite = [item for item in finite if item[2]]
  if not finite:
    return None, skipped
  figure = Figure(figsize=(4.4, 2.7), layout='constrained')
  FigureCanvasAgg(figure)  # Non-interactive: no display, no global pyplot state.
  axes = figure.subplots()
  for index, label, points in finite:
    steps, values = zip(*points)
    axes.plot(
        steps,
        values,
        color=f'C{index}',
        label=label,
        linewidth=1.4,
        marker='o' if len(points) <= _MAX_MARKERS else None,
        markersize=3,
    )
  values = [v for _, _, points in finite for _, v in points]
  if allow_log and min(values) > 0 and max(values) / min(values) > 50:
    axes.set_yscale('log')
    # Ticks 0.1, 0.2, 0.5, 1, 2 over two decades or less (so a span has two labels at least),
    # and plain numbers rather than powers of ten.
    few_decades = max(values) / min(values) <= 100
    axes.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5) if few_decades else (1,)))
    axes.yaxis.set_major_formatter(ticker.StrMethodFormatter('{x:g}'))
    axes.yaxis.set_minor_formatter(ticker.NullFormatter())
  else:
    axes.ticklabel_format(axis='y', scilimits=(-3, 4), useMathText=True)  # 2.0 ×10⁻⁴.
  # Whole steps, labelled 0, 500, 20k, 1.5M.
  axes.xaxis.set_major_locator(ticker.MaxNLocator('auto', steps=[1, 2, 5, 10], integer=True))
  axes.xaxis.set_major_formatter(ticker.EngFormatter(sep=''))
  axes.set_xlabel('step', fontsize=9, color='#555')
  axes.set_ylabel(unit, fontsize=9, color='#555')
  axes.tick_params(labelsize=9)
  axes.grid(color='#ececec')
  figure.legend(loc='outside upper left', ncols=3, frameon=False, fontsize=9)
  return figure, skipped


def comparison_chart(labels: Sequence[str], values: dict[str, Sequence[float]]) -> Figure | None:
  """Horizontal bars: one panel per metric, one bar per run (e.g. the runs of a sweep).

  Args:
    labels: the runs' names, top to bottom.
    values: metric name (a key of METRICS) -> one value per run; NaN where a run has none.

  Returns:
    The figure, or None when no metric has a finite value.
  """
  shown = {n: v for n, v in values.items() if any(math.isfinite(x) for x in v)}
  if not shown:
    return None
  height = 0.9 + 0.24 * len(labels)
  figure = Figure(figsize=(1.2 + 2.1 * len(shown), height), layout='constrained')
  FigureCanvasAgg(figure)
  axes = figure.subplots(1, len(shown), sharey=True, squeeze=False)[0]
  positions = range(len(labels))
  for index, (axis, (name, run_values)) in enumerate(zip(axes, shown.items())):
    finite = [x if math.isfinite(x) else 0.0 for x in run_values]
    axis.barh(positions, finite, color=f'C{index}', height=0.7)
    axis.set_title(_LABELS.get(name, name), fontsize=9)
    axis.tick_params(labelsize=8)
    axis.grid(axis='x', color='#ececec')
  axes[0].set_yticks(list(positions), labels)
  axes[0].invert_yaxis()  # The first run on top, as in the table.
  return figure


def tag_chart(tag: str) -> tuple[str, str]:
  """(title, unit) of the chart of a tag no group of CHARTS draws.

  A tag of neither table (another writer's) gets its name in words and 'value' as its unit; its
  legend still names the tag, as TensorBoard does.
  """
  if tag in TAG_CHARTS:
    return TAG_CHARTS[tag]
  words = tag.replace('_', ' ').strip()
  title = words[:1].upper() + words[1:]
  return title or tag, 'value'


def chart_specs(
    scalars: dict[str, list[tuple[int, float]]],
) -> tuple[list[tuple[str, str, list, bool]], list[str]]:
  """What `_charts_html` draws.

  Returns:
    ([(title, unit, [(legend label, [(step, value), ...])], allow_log)] in page order: the groups
    of CHARTS, then the other tags logged more than once; the tags logged once (e.g. the
    eval_psnr, eval_fid, ... an evaluation logs), which are table rows rather than charts).
  """
  specs = [
      (
          title,
          unit,
          [
              (label, [(s, v * scale) for s, v in scalars.get(tag, [])])
              for tag, label, scale in lines
          ],
          allow_log,
      )
      for title, unit, lines, allow_log in CHARTS
  ]
  known = {tag for _, _, lines, _ in CHARTS for tag, _, _ in lines}
  others = [tag for tag in scalars if tag not in known]
  single = [tag for tag in others if len(scalars[tag]) == 1]
  specs += [(*tag_chart(tag), [(tag, scalars[tag])], False) for tag in others if tag not in single]
  return specs, single


def _charts_html(scalars: dict[str, list[tuple[int, float]]], charts_dir: pathlib.Path) -> str:
  """The chart grid (PNGs written to `charts_dir`) of `chart_specs`, then the tags logged once."""
  specs, single = chart_specs(scalars)
  figures = []
  for title, unit, series, allow_log in specs:
    if not any(points for _, points in series):
      continue
    figure, skipped = line_chart(series, allow_log=allow_log, unit=unit)
    note = (
        f' <span class="muted">({skipped} non-finite value{"s" * (skipped != 1)} skipped)</span>'
        if skipped
        else ''
    )
    body = '<p class="muted">no finite values</p>'
    if figure:
      name = f'{len(figures):02d}_{_safe_name(title)}.png'
      figure.savefig(charts_dir / name, dpi=200)  # Sharp on high-density screens.
      body = (
          f'<img class="chart" src="charts/{name}" '
          f'alt="{html.escape(f"{title}: {unit} against step")}">'
      )
    figures.append(
        f'<figure class="card"><figcaption>{html.escape(title)}{note}</figcaption>{body}</figure>'
    )
  out = '<div class="charts">' + ''.join(figures) + '</div>'
  if single:
    out += '<h3>Logged once</h3>' + _table(
        ['tag', 'step', 'value'],
        [[tag, f'{scalars[tag][0][0]:,}', _format(scalars[tag][0][1])] for tag in single],
    )
  return out


def render_markdown(text: str) -> str:
  """Markdown (with pipe tables) as HTML; raw HTML in it is shown as text, not interpreted.

  Args:
    text: e.g. an ablation table in GitHub pipe-table syntax, with a sentence around it.

  Returns:
    HTML; its headings start at <h3>, under the section's <h2>.
  """
  converter = markdown.Markdown(
      extensions=['tables', 'toc'], extension_configs={'toc': {'baselevel': 3}}
  )
  # Python-Markdown's documented way to escape raw HTML: file names may hold '<' and '&'.
  converter.preprocessors.deregister('html_block')
  converter.inlinePatterns.deregister('html')
  return f'<div class="md">{converter.convert(text)}</div>'


def _format(value) -> str:
  """A metric value with the digits that matter: 1,234, 42.17, 0.1234, 3.20e-05, nan; or —."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return '—'
  magnitude = abs(value)  # NaN compares false, and prints 'nan' in any format.
  spec = (
      ',.0f'
      if magnitude >= 1000
      else '.2f'
      if magnitude >= 10
      else '.4f'
      if (magnitude >= 1e-3 or value == 0)
      else '.2e'
  )
  return f'{value:{spec}}'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A table of plain-text cells (escaped here); each row's first cell is its header."""
  thead = ''.join(f'<th>{html.escape(cell)}</th>' for cell in head)
  body = ''.join(
      f'<tr><th>{html.escape(row[0])}</th>'
      + ''.join(f'<td>{html.escape(cell)}</td>' for cell in row[1:])
      + '</tr>'
      for row in rows
  )
  return f'<table>{f"<thead><tr>{thead}</tr></thead>" if head else ""}<tbody>{body}</tbody></table>'


def _metrics_html(data: dict) -> str:
  """The run header, the per-image metrics table and the single-value metrics."""
  facts = []
  for key, label in (
      ('step', 'step'),
      ('num_images', 'images'),
      ('dataset', 'dataset'),
      ('split', 'split'),
      ('direction', 'direction'),
      ('test_mode', 'test mode'),
  ):
    if data.get(key) is not None:  # --mode=score has no step, and no split for --targets.
      value = f'{data[key]:,}' if isinstance(data[key], int) else str(data[key])
      facts.append(f'<span><b>{label}</b> {html.escape(value)}</span>')
  out = [f'<p class="facts">{"".join(facts)}</p>'] if facts else []

  metrics = data.get('metrics') if isinstance(data.get('metrics'), dict) else {}
  order = [m for m in METRICS if m in metrics] + sorted(m for m in metrics if m not in METRICS)
  rows, singles = [], []  # Per-image statistics; single values (FID, KID's mean ± std).
  for name in order:
    value, label = metrics[name], _LABELS.get(name, name)
    if isinstance(value, dict) and any(k in value for k in ('min', 'max')):
      rows.append([label] + [_format(value.get(k)) for k in ('mean', 'min', 'max', 'std')])
    elif isinstance(value, dict) and 'mean' in value:
      std = (
          f' ± {_format(value["std"])}'
          if 'std' in value and _several_subsets(value, data.get('num_images'))
          else ''
      )
      singles.append([label, _format(value['mean']) + std])
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      singles.append([label, _format(value)])
  if rows:
    out.append(_table(['metric', 'mean', 'min', 'max', 'std'], rows))
  if singles:
    out.append(_table([], singles))
  if not rows and not singles:
    out.append('<p class="muted">metrics.json lists no metrics.</p>')
  if isinstance(data.get('perceptual_skipped'), str):
    out.append(
        '<p class="muted">FID, KID and LPIPS skipped: '
        f'{html.escape(data["perceptual_skipped"])}</p>'
    )
  return '\n'.join(out)


def _several_subsets(stats: dict, num_images) -> bool:
  """Whether a set metric's mean is over several distinct subsets, so that its std is a spread.

  KID (`perceptual.kid`) averages subsets of `subset_size` images drawn from the `num_images`
  scored; once the subset size reaches the set's, every subset is the whole set and the std of
  its identical estimates is 0 up to round-off (a '± 3.64e-16' that says nothing). A metrics.json
  from before KID recorded its subset size keeps its std.
  """
  size = stats.get('subset_size')
  return not (isinstance(size, int) and isinstance(num_images, int) and size >= num_images)


def _safe_name(text: str) -> str:
  """`text` as a file name that needs no URL escaping (and holds no folder)."""
  return re.sub(r'[^A-Za-z0-9._-]+', '_', text).strip('._')


def _panel_html(
    entry: dict, eval_dir: pathlib.Path, images_dir: pathlib.Path, copied: dict[pathlib.Path, str]
) -> str:
  """One panel's <figure>; its PNG is copied into `images_dir` once (`copied`: source -> name)."""
  file = str(entry.get('file', ''))
  name = str(entry.get('name', file))
  caption = f'<span class="name">{html.escape(name)}</span>' + ''.join(
      f' <span class="value">{html.escape(METRICS[k].title if k in METRICS else k)} '
      f'{_format(v)}</span>'
      for k, v in entry.items()
      if k not in ('file', 'name') and isinstance(v, (int, float)) and not isinstance(v, bool)
  )
  source = eval_dir / file
  if file and source.is_file():
    if source not in copied:  # The index keeps names apart that _safe_name makes equal.
      copied[source] = f'{len(copied):02d}_{_safe_name(file)}'
      shutil.copyfile(source, images_dir / copied[source])
    body = f'<img src="images/{copied[source]}" alt="{html.escape(name)}">'
  else:
    body = f'<div class="missing">image missing: {html.escape(file or "(no file)")}</div>'
  return (
      '<figure class="panel"><div class="columns"><span>input</span><span>generated</span>'
      f'<span>target</span></div>{body}<figcaption>{caption}</figcaption></figure>'
  )


def _panels_html(panels: dict, eval_dir: pathlib.Path, images_dir: pathlib.Path) -> str:
  """The panel grid, by group: fixed, best, worst, then any others."""
  copied: dict[pathlib.Path, str] = {}
  out = []
  for group in [g for g in PANEL_GROUPS if g in panels] + sorted(set(panels) - set(PANEL_GROUPS)):
    entries = panels[group] if isinstance(panels[group], list) else []
    figures = [_panel_html(e, eval_dir, images_dir, copied) for e in entries if isinstance(e, dict)]
    if figures:
      title = PANEL_GROUPS.get(group, group)
      out.append(f'<h3>{html.escape(title)}</h3><div class="panels">{"".join(figures)}</div>')
  return '\n'.join(out) or '<p class="muted">metrics.json lists no panels.</p>'


# ----------------------------------------------------------------------------------------------
# The page

_CSS = pathlib.Path(__file__).with_name('report.css').read_text(encoding='utf-8')

# Only inline styles and same-folder images may load: a browser refuses anything else, so a stray
# external reference shows up as a console error instead of a silent network request.
_CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"


def _section(title: str, body: str) -> str:
  return f'<section><h2>{html.escape(title)}</h2>\n{body}\n</section>'


def _evaluation_html(workdir: pathlib.Path, report_dir: pathlib.Path) -> tuple[str, str]:
  """(the Evaluation section's body, the Images section's body or '') from eval/."""
  eval_dir = workdir / 'eval'
  if not (eval_dir / 'metrics.json').is_file():
    return f'<p class="notice">{html.escape(NO_EVAL_MESSAGE)}</p>', ''
  try:
    data = json.loads((eval_dir / 'metrics.json').read_text())
    if not isinstance(data, dict):
      raise ValueError(f'expected a JSON object, got {type(data).__name__}')
    evaluation = _metrics_html(data)
    panels = data.get('panels') or {}
    images = (
        _panels_html(panels, eval_dir, report_dir / 'images')
        if isinstance(panels, dict)
        else '<p class="muted">metrics.json lists no panels.</p>'
    )
  except (ValueError, UnicodeDecodeError) as e:
    evaluation = f'<p class="notice">could not read eval/metrics.json: {html.escape(str(e))}</p>'
    images = ''
  if (eval_dir / 'per_image.csv').is_file():
    shutil.copyfile(eval_dir / 'per_image.csv', report_dir / 'per_image.csv')
    evaluation += (
        '\n<p class="muted">Metrics of every image: <a href="per_image.csv">per_image.csv</a></p>'
    )
  return evaluation, images


def write_report(
    workdir: str | os.PathLike,
    *,
    extra_sections: dict[str, str] | None = None,
    section_charts: dict[str, Figure] | None = None,
) -> pathlib.Path:
  """Writes WORKDIR/report/index.html (and report/images/, report/charts/) from a run's workdir.

  Missing parts (no metrics.json, no event files, a missing panel PNG) are said on the page
  instead of failing.

  Args:
    workdir: the training workdir: event files in it, the evaluation's eval/metrics.json and
      panels under it.
    extra_sections: title -> Markdown text (e.g. a pipe table; see `render_markdown`), appended
      as sections in order.
    section_charts: title of an extra section -> a figure shown above its text (saved to
      report/charts/).

  Returns:
    The path of index.html.
  """
  workdir = pathlib.Path(workdir)
  report_dir = workdir / REPORT_DIR
  # Images and charts of an earlier report would be stale; the folders are the report's own.
  for folder in ('images', 'charts'):
    shutil.rmtree(report_dir / folder, ignore_errors=True)
    (report_dir / folder).mkdir(parents=True)
  (report_dir / 'per_image.csv').unlink(missing_ok=True)
  evaluation, images = _evaluation_html(workdir, report_dir)

  files = event_files(workdir)
  scalars = read_scalars(workdir)
  if scalars:
    last_step = max(points[-1][0] for points in scalars.values() if points)
    curves = (
        f'<p class="muted">{len(files)} event file{"s" * (len(files) != 1)}, '
        f'last logged step {last_step:,}.</p>'
        + _charts_html(scalars, report_dir / 'charts')
    )
  elif files:
    curves = '<p class="notice">the event files hold no scalars yet.</p>'
  else:
    curves = (
        '<p class="notice">no training curves: no TensorBoard event files '
        '(events.out.tfevents.*) in the workdir.</p>'
    )

  sections = [_section('Evaluation', evaluation), _section('Training curves', curves)]
  if extra_sections and not (workdir / 'eval' / 'metrics.json').exists() and not files:
    # A folder of several runs (the patch-size ablation's root) has only the extra sections.
    sections = [
        '<p class="muted">No run in this folder itself (no eval/metrics.json, no event '
        'files): only the sections below.</p>'
    ]
  if images:
    sections.append(_section('Images', images))
  for title, text in (extra_sections or {}).items():
    body = render_markdown(text)
    if title in (section_charts or {}):
      name = f'section_{_safe_name(title)}.png'
      section_charts[title].savefig(report_dir / 'charts' / name, dpi=200)
      body = (
          f'<figure class="card"><img class="chart" src="charts/{name}" '
          f'alt="{html.escape(title)}: one bar per run"></figure>\n'
          + body
      )
    sections.append(_section(title, body))

  generated = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
  title = f'pix2pix report: {workdir.resolve().name}'
  page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="subtitle">{html.escape(str(workdir.resolve()))} · generated {generated}</p>
{chr(10).join(sections)}
</body></html>
"""
  path = report_dir / 'index.html'
  temporary = path.with_suffix('.html.tmp')
  temporary.write_text(page, encoding='utf-8')
  os.replace(temporary, path)  # A reader never sees half a page.
  return path


def main(argv: Sequence[str]) -> None:
  if len(argv) != 2:
    sys.exit('usage: python -m pix2pix_jax.report WORKDIR')
  print(write_report(argv[1]))


if __name__ == '__main__':
  main(sys.argv)
