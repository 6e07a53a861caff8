"""One static HTML page summarising a run: WORKDIR/report/index.html.

It gathers what training and evaluation leave in the workdir: the metrics of
`WORKDIR/eval/metrics.json`, the training curves of the TensorBoard event files in `WORKDIR/`
(drawn as inline SVG) and the [input | generated | target] panels the evaluation saved, copied
into `WORKDIR/report/images/`. The page is readable offline: no JavaScript, no CDN, no web fonts,
and everything it references lives under `WORKDIR/report/`; its Content-Security-Policy makes a
browser refuse anything else.

Event files are read without TensorFlow or the tensorboard package: they are TFRecord files of
`Event` protos, which tensorboardX (a runtime dependency) can parse.

  python -m pix2pix_jax.report WORKDIR
"""

import datetime
import html
import json
import logging
import math
import os
import pathlib
import re
import shutil
import struct
import sys
import urllib.parse
from collections.abc import Iterator, Sequence

from PIL import Image
from tensorboardX.crc32c import crc32c
from tensorboardX.proto import event_pb2, types_pb2

REPORT_DIR = 'report'
NO_EVAL_MESSAGE = 'no evaluation yet: run --mode=evaluate'

# Rows of the metrics table, in this order (others follow alphabetically): name, label, and whether
# lower is better (None: no arrow).
METRIC_LABELS = {
    'l1': ('L1', True),
    'psnr': ('PSNR (dB)', False),
    'ssim': ('SSIM', False),
    'hp_l1': ('High-pass L1', True),
    'lpips': ('LPIPS', True),
    'fid': ('FID', True),
    'kid': ('KID', True),
}
PANEL_GROUPS = {'fixed': 'Fixed images', 'best': 'Best (lowest L1)', 'worst': 'Worst (highest L1)'}

# Charts of the known tags: (title, [(tag, legend label, scale)], whether a log y axis may be used).
# train_g_l1 is the mean |G(x) - y| of images in [-1, 1] and eval_l1 that of images in [0, 1], so
# the train curve is halved to put both on the eval scale.
CHARTS = (
    ('Generator losses', [('train_g_total', 'G total', 1.0), ('train_g_gan', 'G GAN', 1.0),
                          ('train_g_l1', 'G L1', 1.0)], True),
    ('Discriminator losses', [('train_d_total', 'D total', 1.0), ('train_d_real', 'D real', 1.0),
                              ('train_d_fake', 'D fake', 1.0)], True),
    ('L1, images in [0, 1]', [('train_g_l1', 'train (G L1 × 0.5)', 0.5),
                              ('eval_l1', 'eval', 1.0)], True),
    ('Discriminator outputs', [('train_d_real_output', 'D(x, y)', 1.0),
                               ('train_d_fake_output', 'D(x, G(x))', 1.0)], False),
    ('Learning rate', [('train_learning_rate', 'learning rate', 1.0)], False),
    ('Throughput', [('steps_per_second', 'steps / s', 1.0)], False),
)
COLORS = ('#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f')

# Records longer than this (images) are not CRC-checked: tensorboardX's pure-Python CRC32C runs at
# ~8 MB/s and the report never reads them. Scalar records are ~100 bytes and always checked.
_MAX_CHECKED_RECORD_BYTES = 1 << 16
_HEADER = struct.Struct('<QI')
_FLOAT_FIELDS = {types_pb2.DT_FLOAT: ('float_val', struct.Struct('<f')),
                 types_pb2.DT_DOUBLE: ('double_val', struct.Struct('<d'))}
_FOOTER = struct.Struct('<I')
# A series longer than this is decimated to the min and max of each of _BUCKETS step ranges, which
# keeps its envelope (spikes included) at a fraction of the SVG size.
_MAX_POINTS = 2000
_BUCKETS = 600
# Series with at most this many points also get a marker per point (a single point is visible).
_MAX_MARKERS = 40


# ----------------------------------------------------------------------------------------------
# Event files


def _masked_crc(data: bytes) -> int:
  """TFRecord's masked CRC32C."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


def read_records(path: pathlib.Path) -> Iterator[bytes]:
  """The records of one TFRecord file.

  Each record is: uint64 length, uint32 masked CRC of the length, the data, uint32 masked CRC of
  the data (little endian). A torn tail (the writer was killed) or a bad length CRC ends the file,
  as the framing cannot be trusted past it; a record whose data CRC is wrong is skipped.

  Args:
    path: an event file.

  Yields:
    The data of each record.
  """
  with open(path, 'rb') as f:
    while True:
      header = f.read(_HEADER.size)
      if not header:
        return
      if len(header) < _HEADER.size:
        logging.warning('%s: truncated record header; ignoring the rest of the file', path)
        return
      length, length_crc = _HEADER.unpack(header)
      if _masked_crc(header[:8]) != length_crc:
        logging.warning('%s: corrupt record length; ignoring the rest of the file', path)
        return
      data = f.read(length)
      footer = f.read(_FOOTER.size)
      if len(data) < length or len(footer) < _FOOTER.size:
        logging.warning('%s: truncated record; ignoring the rest of the file', path)
        return
      if length <= _MAX_CHECKED_RECORD_BYTES and _masked_crc(data) != _FOOTER.unpack(footer)[0]:
        logging.warning('%s: record with a bad CRC skipped', path)
        continue
      yield data


def _scalar_value(value) -> float | None:
  """The float of a `Summary.Value` holding a scalar, or None for images, text, histograms, ...

  tensorboardX writes `simple_value`; TF2-style writers write a 0-d float tensor instead.
  """
  kind = value.WhichOneof('value')
  if kind == 'simple_value':
    return float(value.simple_value)
  if kind != 'tensor' or value.metadata.plugin_data.plugin_name not in ('', 'scalars'):
    return None
  tensor = value.tensor
  # One value may also encode a larger tensor whose elements all equal it: only 0-d and 1-element
  # shapes are scalars.
  if tensor.dtype not in _FLOAT_FIELDS or any(dim.size != 1 for dim in tensor.tensor_shape.dim):
    return None
  field, packed = _FLOAT_FIELDS[tensor.dtype]
  values = list(getattr(tensor, field))
  if not values and len(tensor.tensor_content) == packed.size:
    values = list(packed.unpack(tensor.tensor_content))
  return float(values[0]) if len(values) == 1 else None


def _read_event_file(path: pathlib.Path) -> tuple[float, dict[str, dict[int, float]]]:
  """(wall time of its first event, {tag: {step: value}}) of one event file."""
  first_wall_time = math.inf
  scalars = {}
  for record in read_records(path):
    try:
      event = event_pb2.Event.FromString(record)
    except Exception:  # pylint: disable=broad-except  (protobuf's DecodeError varies by backend)
      logging.warning('%s: undecodable event skipped', path)
      continue
    first_wall_time = min(first_wall_time, event.wall_time)
    if event.WhichOneof('what') != 'summary':
      continue
    for value in event.summary.value:
      scalar = _scalar_value(value)
      if scalar is not None:
        scalars.setdefault(value.tag, {})[int(event.step)] = scalar
  return first_wall_time, scalars


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
  per_file = [(*_read_event_file(path), path.name) for path in event_files(workdir)]
  merged: dict[str, dict[int, float]] = {}
  for _, scalars, _ in sorted(per_file, key=lambda item: (item[0], item[2])):
    for tag, points in scalars.items():
      merged.setdefault(tag, {}).update(points)
  return {tag: sorted(points.items()) for tag, points in sorted(merged.items())}


# ----------------------------------------------------------------------------------------------
# SVG charts

_SUPERSCRIPT = str.maketrans('-0123456789', '⁻⁰¹²³⁴⁵⁶⁷⁸⁹')


def _nice_step(span: float, max_ticks: int) -> float:
  """The 1, 2 or 5 × 10^k tick step giving at most about `max_ticks` ticks over `span`."""
  raw = span / max(max_ticks, 1)
  magnitude = 10.0 ** math.floor(math.log10(raw))
  for multiple in (1, 2, 5, 10):
    if multiple * magnitude >= raw * (1 - 1e-9):
      return multiple * magnitude
  return 10 * magnitude


def _linear_ticks(lo: float, hi: float, max_ticks: int, expand: bool) -> tuple[float, float, list]:
  """(domain lo, domain hi, ticks) of a linear axis; `expand` rounds the domain out to ticks."""
  step = _nice_step(hi - lo, max_ticks)
  first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
  if expand:
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    lo, hi = first * step, last * step
  return lo, hi, [k * step for k in range(first, last + 1)]


def _tick_labels(ticks: Sequence[float]) -> tuple[list[str], str]:
  """(labels, axis note) of linear ticks: fixed decimals, or ×10ⁿ in the note if tiny or huge."""
  if len(ticks) < 2:
    return [f'{t:g}' for t in ticks], ''
  step = abs(ticks[1] - ticks[0])
  biggest = max(abs(t) for t in ticks)
  exponent = 0
  if step < 1e-3 or biggest >= 1e5:
    exponent = math.floor(math.log10(biggest))
  scaled_step = step / 10.0 ** exponent
  decimals = max(0, -math.floor(math.log10(scaled_step) + 1e-9))
  labels = [f'{t / 10.0 ** exponent:.{decimals}f}' for t in ticks]
  labels = [label[1:] if re.fullmatch(r'-0(\.0*)?', label) else label for label in labels]
  return labels, f'×10{str(exponent).translate(_SUPERSCRIPT)}' if exponent else ''


def _step_labels(ticks: Sequence[float]) -> list[str]:
  """Training steps: 0, 500, 1000 or 0, 20k, 40k, 1.5M."""
  biggest = max((abs(t) for t in ticks), default=0)
  if biggest >= 1e6:
    return [f'{t / 1e6:g}M' if t else '0' for t in ticks]
  if biggest >= 1e4:
    return [f'{t / 1e3:g}k' if t else '0' for t in ticks]
  return [f'{t:g}' for t in ticks]


def _log_ticks(lo: float, hi: float) -> tuple[float, float, list, list[str]]:
  """(domain lo, domain hi, ticks, labels) of a log axis spanning whole decades."""
  first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
  last = max(last, first + 1)
  multiples = (1, 2, 5) if last - first <= 2 else (1,)
  ticks = [m * 10.0 ** e for e in range(first, last + 1) for m in multiples
           if m * 10.0 ** e <= 10.0 ** last]
  return 10.0 ** first, 10.0 ** last, ticks, [f'{t:g}' for t in ticks]


def _decimate(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
  """At most 2·_BUCKETS + 2 points: the first, the last, and each step range's min and max."""
  if len(points) <= _MAX_POINTS:
    return points
  lo, hi = points[0][0], points[-1][0]
  buckets: dict[int, list[tuple[int, float]]] = {}
  for point in points:
    buckets.setdefault(min(int((point[0] - lo) / (hi - lo) * _BUCKETS), _BUCKETS - 1),
                       []).append(point)
  kept = {points[0], points[-1]}  # The ends fix the x domain.
  for bucket in buckets.values():
    kept.update((min(bucket, key=lambda p: p[1]), max(bucket, key=lambda p: p[1])))
  return sorted(kept)


def _text_width(text: str, font_size: float) -> float:
  """A sans-serif width estimate, for laying out legends without a font engine."""
  return 0.58 * font_size * len(text)


def line_chart_svg(series: Sequence[tuple[str, Sequence[tuple[int, float]]]], *,
                   title: str = '', allow_log: bool = False, width: int = 440,
                   height: int = 270) -> tuple[str, int]:
  """An inline SVG line chart of some series against the training step.

  Args:
    series: (legend label, [(step, value), ...]) per line; non-finite values are skipped.
    title: the chart's accessible name (its <title>).
    allow_log: use a log y axis when all values are positive and span more than 50×.
    width: of the viewBox; the SVG scales to its container.
    height: of the viewBox.

  Returns:
    (the <svg> element, the number of non-finite values skipped); ('', skipped) when no series
    has a finite value.
  """
  skipped = sum(1 for _, points in series for _, v in points if not math.isfinite(v))
  series = [(label, color, _decimate([(s, v) for s, v in points if math.isfinite(v)]))
            for (label, points), color in zip(series, COLORS * 4)]
  series = [item for item in series if item[2]]
  if not series:
    return '', skipped
  steps = [s for _, _, points in series for s, _ in points]
  values = [v for _, _, points in series for _, v in points]

  # Legend rows above the plot, wrapped to the width.
  font = 12
  rows, row, row_width = [], [], 0.0
  for label, color, _ in series:
    item_width = 16 + _text_width(label, font) + 14
    if row and row_width + item_width > width - 60:
      rows.append(row)
      row, row_width = [], 0.0
    row.append((label, color, row_width))
    row_width += item_width
  rows.append(row)
  left, right, bottom = 56, 14, 36
  top = 14 + 17 * len(rows) + 10
  plot_w, plot_h = width - left - right, height - top - bottom

  # Axes. A single step or value gets a small window around it instead of a zero-width domain.
  x_lo, x_hi = min(steps), max(steps)
  x_ticks = [x_lo]
  if x_lo == x_hi:
    x_lo, x_hi = x_lo - 1, x_hi + 1
  else:
    _, _, x_ticks = _linear_ticks(x_lo, x_hi, 6, expand=False)
  x_labels = _step_labels(x_ticks)
  y_lo, y_hi = min(values), max(values)
  log_y = allow_log and y_lo > 0 and y_hi / y_lo > 50
  note = ''
  if log_y:
    y_lo, y_hi, y_ticks, y_labels = _log_ticks(y_lo, y_hi)
  else:
    if y_lo == y_hi:
      pad = abs(y_lo) * 0.1 or 1.0
      y_lo, y_hi = y_lo - pad, y_hi + pad
    y_lo, y_hi, y_ticks = _linear_ticks(y_lo, y_hi, 5, expand=True)
    y_labels, note = _tick_labels(y_ticks)

  def x_of(step):
    return left + (step - x_lo) / (x_hi - x_lo) * plot_w

  def y_of(value):
    if log_y:
      fraction = (math.log10(value) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo))
    else:
      fraction = (value - y_lo) / (y_hi - y_lo)
    return top + (1 - fraction) * plot_h

  out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
         f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>']
  for row_index, items in enumerate(rows):
    y = 14 + 17 * row_index + 4
    for label, color, offset in items:
      x = left + offset
      out.append(f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x + 12:.1f}" y2="{y - 4}" stroke="{color}" '
                 f'stroke-width="2.5"/><text x="{x + 16:.1f}" y="{y}" font-size="{font}">'
                 f'{html.escape(label)}</text>')
  for tick, label in zip(y_ticks, y_labels):
    y = y_of(tick)
    out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" class="grid"/>'
               f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
               f'{html.escape(label)}</text>')
  for tick, label in zip(x_ticks, x_labels):
    x = x_of(tick)
    out.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" '
               f'class="axis"/><text x="{x:.1f}" y="{top + plot_h + 16}" font-size="11" '
               f'text-anchor="middle">{html.escape(label)}</text>')
  out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>')
  out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 3}" font-size="11" '
             f'text-anchor="middle" class="muted">step</text>')
  if note or log_y:
    out.append(f'<text x="{left}" y="{top - 4}" font-size="10" class="muted">'
               f'{"log scale" if log_y else html.escape(note)}</text>')
  for label, color, points in series:
    path = ' '.join(f'{"L" if i else "M"}{x_of(s):.1f} {y_of(v):.1f}'
                    for i, (s, v) in enumerate(points))
    out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.6" '
               f'stroke-linejoin="round"><title>{html.escape(label)}</title></path>')
    if len(points) <= _MAX_MARKERS:
      out.extend(f'<circle cx="{x_of(s):.1f}" cy="{y_of(v):.1f}" r="2.6" fill="{color}"/>'
                 for s, v in points)
  out.append('</svg>')
  return ''.join(out), skipped


def _charts_html(scalars: dict[str, list[tuple[int, float]]]) -> str:
  """The chart grid: the known groups of CHARTS, then one chart per other tag."""
  # Absent tags stay in as empty series, so each line keeps its colour in every report.
  specs = [(title, [(label, [(s, v * scale) for s, v in scalars.get(tag, [])])
                    for tag, label, scale in lines], allow_log)
           for title, lines, allow_log in CHARTS]
  known = {tag for _, lines, _ in CHARTS for tag, _, _ in lines}
  others = [tag for tag in scalars if tag not in known]
  # A tag logged once (e.g. the eval_psnr, eval_fid, ... an evaluation logs) is a row, not a chart.
  single = [tag for tag in others if len(scalars[tag]) == 1]
  specs += [(tag, [(tag, scalars[tag])], False) for tag in others if tag not in single]
  figures = []
  for title, series, allow_log in specs:
    if not any(points for _, points in series):
      continue
    svg, skipped = line_chart_svg(series, title=title, allow_log=allow_log)
    note = (f' <span class="muted">({skipped} non-finite value{"s" * (skipped != 1)} '
            'skipped)</span>' if skipped else '')
    body = svg or '<p class="muted">no finite values</p>'
    figures.append(f'<figure class="card"><figcaption>{html.escape(title)}{note}</figcaption>'
                   f'{body}</figure>')
  out = '<div class="charts">' + ''.join(figures) + '</div>'
  if single:
    out += ('<h3>Logged once</h3><table class="metrics"><thead><tr><th>tag</th><th>step</th>'
            '<th>value</th></tr></thead><tbody>' + ''.join(
                f'<tr><th>{html.escape(tag)}</th><td>{scalars[tag][0][0]:,}</td>'
                f'<td>{_format(scalars[tag][0][1])}</td></tr>' for tag in single) +
            '</tbody></table>')
  return out


# ----------------------------------------------------------------------------------------------
# Markdown-ish text

_SEPARATOR_CELL = re.compile(r':?-+:?')
_NUMBER = r'[-+−]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?'
_NUMBER_CELL = re.compile(rf'{_NUMBER}\s*(%|×)?(\s*±\s*{_NUMBER})?', re.IGNORECASE)


def _inline(text: str) -> str:
  """Escaped text with `code` and **bold** spans."""
  parts = re.split(r'(`[^`]*`)', text)
  out = []
  for part in parts:
    if len(part) >= 2 and part.startswith('`') and part.endswith('`'):
      out.append(f'<code>{html.escape(part[1:-1])}</code>')
    else:
      out.append(re.sub(r'\*\*(.+?)\*\*', r'<strong>\1</strong>', html.escape(part)))
  return ''.join(out)


def _split_row(line: str) -> list[str]:
  """The cells of a `| a | b |` line; `\\|` is a literal bar."""
  line = line.strip()
  if line.startswith('|'):
    line = line[1:]
  if line.endswith('|') and not line.endswith('\\|'):
    line = line[:-1]
  return [cell.strip().replace('\\|', '|') for cell in re.split(r'(?<!\\)\|', line)]


def _table_html(lines: list[str]) -> str:
  rows = [_split_row(line) for line in lines]
  header, aligns = None, None
  if len(rows) >= 2 and all(_SEPARATOR_CELL.fullmatch(cell) for cell in rows[1]):
    header, body = rows[0], rows[2:]
    aligns = [('center' if c.startswith(':') and c.endswith(':') else 'right' if c.endswith(':')
               else 'left' if c.startswith(':') else None) for c in rows[1]]
  else:
    body = rows
  columns = len(header) if header else max(len(row) for row in rows)
  body = [(row + [''] * columns)[:columns] for row in body]
  aligns = ((aligns or []) + [None] * columns)[:columns]
  # Unaligned columns of numbers are right-aligned, as results tables read best.
  for i in range(columns):
    cells = [row[i] for row in body if row[i]]
    if aligns[i] is None and cells and all(_NUMBER_CELL.fullmatch(cell) for cell in cells):
      aligns[i] = 'right'

  def cell_html(tag, text, align):
    style = f' style="text-align:{align}"' if align else ''
    return f'<{tag}{style}>{_inline(text)}</{tag}>'

  out = ['<table class="md">']
  if header:
    out.append('<thead><tr>' + ''.join(cell_html('th', c, a) for c, a in zip(header, aligns)) +
               '</tr></thead>')
  out.append('<tbody>')
  out.extend('<tr>' + ''.join(cell_html('td', c, a) for c, a in zip(row, aligns)) + '</tr>'
             for row in body)
  out.append('</tbody></table>')
  return ''.join(out)


def render_markdown(text: str) -> str:
  """A small Markdown subset as HTML: pipe tables, paragraphs, `-` lists, `#` headings.

  Everything is HTML-escaped; inline `code` and **bold** are kept.

  Args:
    text: e.g. an ablation table in GitHub pipe-table syntax, with a sentence around it.

  Returns:
    HTML.
  """
  out, block, kind = [], [], None

  def flush():
    if kind == 'table':
      out.append(_table_html(block))
    elif kind == 'list':
      out.append('<ul>' + ''.join(f'<li>{_inline(item)}</li>' for item in block) + '</ul>')
    elif kind == 'paragraph':
      out.append(f'<p>{_inline(" ".join(block))}</p>')
    block.clear()

  for line in text.splitlines():
    stripped = line.strip()
    heading = re.fullmatch(r'(#{1,4})\s+(.*)', stripped)
    if stripped.startswith('|'):
      new_kind = 'table'
    elif re.match(r'[-*]\s', stripped):
      new_kind = 'list'
      stripped = stripped[2:].strip()
    elif heading or not stripped:
      new_kind = None
    else:
      new_kind = 'paragraph'
    if new_kind != kind or new_kind is None:
      flush()
    kind = new_kind
    if heading:
      level = len(heading.group(1)) + 2  # Sections are <h2>.
      out.append(f'<h{level}>{_inline(heading.group(2))}</h{level}>')
    elif new_kind:
      block.append(stripped)
  flush()
  return '\n'.join(out)


# ----------------------------------------------------------------------------------------------
# Metrics and panels


def _format(value) -> str:
  """A metric value with the digits that matter: 42.17, 22.31, 0.1234, 3.2e-05."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return '—'
  if not math.isfinite(value):
    return str(value)
  magnitude = abs(value)
  if magnitude >= 1000:
    return f'{value:,.0f}'
  if magnitude >= 10:
    return f'{value:.2f}'
  if magnitude >= 1e-3 or value == 0:
    return f'{value:.4f}'
  return f'{value:.2e}'


def _metric_label(name: str) -> str:
  label, lower_is_better = METRIC_LABELS.get(name, (name, None))
  arrow = {True: ' ↓', False: ' ↑'}.get(lower_is_better, '')
  return html.escape(label) + arrow


def _metrics_html(data: dict) -> str:
  """The run header, the per-image metrics table and the single-value metrics."""
  facts = []
  for key, label in (('step', 'step'), ('num_images', 'images'), ('dataset', 'dataset'),
                     ('split', 'split'), ('direction', 'direction'), ('test_mode', 'test mode')):
    if data.get(key) is not None:  # --mode=score has no step, and no split for --targets.
      value = f'{data[key]:,}' if isinstance(data[key], int) else str(data[key])
      facts.append(f'<span><b>{label}</b> {html.escape(value)}</span>')
  out = [f'<p class="facts">{"".join(facts)}</p>'] if facts else []

  metrics = data.get('metrics') or {}
  if not isinstance(metrics, dict):
    metrics = {}
  order = [m for m in METRIC_LABELS if m in metrics] + sorted(m for m in metrics
                                                               if m not in METRIC_LABELS)
  rows, singles = [], []
  for name in order:
    value = metrics[name]
    if isinstance(value, dict) and any(k in value for k in ('min', 'max')):
      cells = ''.join(f'<td>{_format(value.get(k))}</td>' for k in ('mean', 'min', 'max', 'std'))
      rows.append(f'<tr><th>{_metric_label(name)}</th>{cells}</tr>')
    elif isinstance(value, dict) and 'mean' in value:
      text = _format(value['mean'])
      if 'std' in value:
        text += f' ± {_format(value["std"])}'
      singles.append((name, text))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      singles.append((name, _format(value)))
  if rows:
    out.append('<table class="metrics"><thead><tr><th>metric</th><th>mean</th><th>min</th>'
               '<th>max</th><th>std</th></tr></thead><tbody>' + ''.join(rows) + '</tbody></table>')
  if singles:
    out.append('<table class="metrics singles"><tbody>' + ''.join(
        f'<tr><th>{_metric_label(name)}</th><td>{html.escape(text)}</td></tr>'
        for name, text in singles) + '</tbody></table>')
  if not rows and not singles:
    out.append('<p class="muted">metrics.json lists no metrics.</p>')
  return '\n'.join(out)


def _safe_name(relative: str) -> str:
  """A file name for report/images/ that needs no URL escaping."""
  name = re.sub(r'[^A-Za-z0-9._-]+', '_', relative.replace('\\', '/').strip('/')).strip('._')
  return name or 'image.png'


def _panels_html(panels: dict, eval_dir: pathlib.Path, images_dir: pathlib.Path) -> str:
  """The panel grid; each PNG is copied into `images_dir` (missing ones get a placeholder)."""
  copied: dict[pathlib.Path, str] = {}
  groups = [g for g in PANEL_GROUPS if g in panels] + sorted(g for g in panels
                                                             if g not in PANEL_GROUPS)
  out = []
  for group in groups:
    entries = panels[group] if isinstance(panels[group], list) else []
    figures = []
    for entry in entries:
      if not isinstance(entry, dict):
        continue
      file = str(entry.get('file', ''))
      name = str(entry.get('name', file))
      numbers = [(k, v) for k, v in entry.items() if k not in ('file', 'name')
                 and isinstance(v, (int, float)) and not isinstance(v, bool)]
      caption = (f'<span class="name">{html.escape(name)}</span>' +
                 ''.join(f' <span class="value">{html.escape(METRIC_LABELS.get(k, (k,))[0])} '
                         f'{_format(v)}</span>' for k, v in numbers))
      source = eval_dir / file
      if file and source.is_file():
        if source not in copied:
          dest = _safe_name(file)
          stem, suffix = os.path.splitext(dest)
          taken = set(copied.values())
          index = 2
          while dest in taken:
            dest, index = f'{stem}-{index}{suffix}', index + 1
          shutil.copyfile(source, images_dir / dest)
          copied[source] = dest
        dest = copied[source]
        try:
          with Image.open(images_dir / dest) as image:
            size = f' width="{image.width}" height="{image.height}"'
        except OSError:
          size = ''
        body = (f'<img src="images/{html.escape(urllib.parse.quote(dest))}"{size} '
                f'alt="{html.escape(name)}">')
      else:
        body = f'<div class="missing">image missing: {html.escape(file or "(no file)")}</div>'
      figures.append(f'<figure class="panel"><div class="columns"><span>input</span><span>generated'
                     f'</span><span>target</span></div>{body}<figcaption>{caption}</figcaption>'
                     '</figure>')
    if figures:
      title = PANEL_GROUPS.get(group, group)
      out.append(f'<h3>{html.escape(title)}</h3><div class="panels">{"".join(figures)}</div>')
  return '\n'.join(out) or '<p class="muted">metrics.json lists no panels.</p>'


# ----------------------------------------------------------------------------------------------
# The page

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; color: #222; background: #fff; max-width: 1240px; margin: 0 auto;
       padding: 20px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.muted, .subtitle { color: #666; }
.subtitle { margin: 0 0 8px; }
.notice { background: #fff6dd; border: 1px solid #e8d48a; padding: 8px 12px; border-radius: 4px; }
.notice::first-letter { text-transform: uppercase; }
.facts span { display: inline-block; margin-right: 18px; }
.facts b { color: #555; font-weight: 600; margin-right: 4px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 8px 0 12px; }
th, td { padding: 4px 14px; border-bottom: 1px solid #e3e3e3; text-align: right; }
thead th { border-bottom: 2px solid #bbb; font-weight: 600; }
tbody th { text-align: left; font-weight: 600; }
table.metrics thead th:first-child { text-align: left; }
table.md th, table.md td { text-align: left; }
table.singles { margin-top: 4px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px; }
.card { margin: 0; border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px 8px 2px; }
.card figcaption { font-weight: 600; margin: 0 0 2px 4px; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart text { fill: #333; }
svg.chart .muted { fill: #777; }
svg.chart .grid { stroke: #ececec; }
svg.chart .axis { stroke: #888; }
svg.chart .frame { fill: none; stroke: #aaa; }
.columns { display: grid; grid-template-columns: 1fr 1fr 1fr; color: #777; font-size: 11px;
           text-align: center; }
.panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 14px; }
.panel { margin: 0; }
.panel img { display: block; width: 100%; height: auto; border: 1px solid #ddd; }
.panel figcaption { font-size: 12px; margin-top: 3px; display: flex; justify-content: space-between;
                    gap: 8px; }
.panel .name { overflow-wrap: anywhere; }
.panel .value { white-space: nowrap; font-variant-numeric: tabular-nums; }
.missing { border: 1px dashed #c66; color: #a33; padding: 20px; font-size: 12px; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
"""

# Only inline styles and same-folder images may load: a browser refuses anything else, so a stray
# external reference shows up as a console error instead of a silent network request.
_CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"


def _section(title: str, body: str) -> str:
  return f'<section><h2>{html.escape(title)}</h2>\n{body}\n</section>'


def write_report(workdir: str | os.PathLike, *,
                 extra_sections: dict[str, str] | None = None) -> pathlib.Path:
  """Writes WORKDIR/report/index.html (and report/images/) from what a run left in `workdir`.

  Missing parts (no metrics.json, no event files, a missing panel PNG) are said on the page
  instead of failing.

  Args:
    workdir: the training workdir: event files in it, the evaluation's eval/metrics.json and
      panels under it.
    extra_sections: title -> Markdown-ish text (pipe tables, paragraphs; see `render_markdown`),
      appended as sections in order.

  Returns:
    The path of index.html.
  """
  workdir = pathlib.Path(workdir)
  report_dir = workdir / REPORT_DIR
  images_dir = report_dir / 'images'
  # Images of an earlier report would be stale; the folder is the report's own.
  shutil.rmtree(images_dir, ignore_errors=True)
  images_dir.mkdir(parents=True)

  eval_dir = workdir / 'eval'
  metrics_path = eval_dir / 'metrics.json'
  (report_dir / 'per_image.csv').unlink(missing_ok=True)
  if metrics_path.is_file():
    try:
      data = json.loads(metrics_path.read_text())
      if not isinstance(data, dict):
        raise ValueError(f'expected a JSON object, got {type(data).__name__}')
      evaluation = _metrics_html(data)
      panels = data.get('panels') or {}
      images = (_panels_html(panels, eval_dir, images_dir) if isinstance(panels, dict)
                else '<p class="muted">metrics.json lists no panels.</p>')
    except (ValueError, UnicodeDecodeError) as e:
      evaluation = (f'<p class="notice">could not read eval/metrics.json: '
                    f'{html.escape(str(e))}</p>')
      images = ''
    if (eval_dir / 'per_image.csv').is_file():
      shutil.copyfile(eval_dir / 'per_image.csv', report_dir / 'per_image.csv')
      evaluation += ('\n<p class="muted">Metrics of every image: '
                     '<a href="per_image.csv">per_image.csv</a></p>')
  else:
    evaluation = f'<p class="notice">{html.escape(NO_EVAL_MESSAGE)}</p>'
    images = ''

  files = event_files(workdir)
  scalars = read_scalars(workdir)
  if scalars:
    last_step = max(points[-1][0] for points in scalars.values() if points)
    curves = (f'<p class="muted">{len(files)} event file{"s" * (len(files) != 1)}, '
              f'last logged step {last_step:,}.</p>' + _charts_html(scalars))
  elif files:
    curves = '<p class="notice">the event files hold no scalars yet.</p>'
  else:
    curves = ('<p class="notice">no training curves: no TensorBoard event files '
              '(events.out.tfevents.*) in the workdir.</p>')

  sections = [_section('Evaluation', evaluation), _section('Training curves', curves)]
  if extra_sections and not metrics_path.exists() and not files:
    # A folder of several runs (the patch-size ablation's root) has only the extra sections.
    sections = ['<p class="muted">No run in this folder itself (no eval/metrics.json, no event '
                'files): only the sections below.</p>']
  if images:
    sections.append(_section('Images', images))
  for title, text in (extra_sections or {}).items():
    sections.append(_section(title, render_markdown(text)))

  generated = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
  title = f'pix2pix report: {workdir.resolve().name}'
  page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="subtitle">{html.escape(str(workdir.resolve()))} · generated {generated}</p>
{chr(10).join(sections)}
</body>
</html>
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
