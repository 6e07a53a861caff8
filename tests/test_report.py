"""The run report: event files, charts, the page's content, and the page in a real browser."""

import fcntl
import html
import io
import json
import math
import os
import re
import select
import shutil
import struct
import subprocess
import tempfile
import time

import numpy as np
import pytest
import tensorboardX
from PIL import Image

from pix2pix_jax import metrics, report, summary

LOSS_TAGS = (
    'train_g_total',
    'train_g_gan',
    'train_g_l1',
    'train_d_total',
    'train_d_real',
    'train_d_fake',
    'train_d_real_output',
    'train_d_fake_output',
)
# The known panel's thirds: colours nothing else on the page uses, looked for in the screenshot.
PANEL_COLORS = ((255, 0, 255), (0, 200, 255), (255, 140, 0))
WEIRD_NAME = 'val/<b>odd</b> & "quoted" \'name\'.jpg'


def value(tag, step, run):
  """A deterministic, tag- and run-dependent value (run 1 is the resumed run)."""
  return (LOSS_TAGS.index(tag) + 1) * (1.0 + 0.5 * math.cos(step / 300)) + 10 * run


def write_events(workdir):
  """Event files as after a resume and an evaluation.

  Training writes steps 0..1000, is resumed from the checkpoint at 500 and writes 600..1500 into
  a second file; the evaluation then logs its metrics at step 1500 into a third.

  Returns:
    {tag: {step: value}} of what the last write of each step logged.
  """
  expected = {}

  def log(writer, tag, step, v):
    writer.add_scalar(tag, v, step)
    expected.setdefault(tag, {})[step] = float(np.float32(v))  # simple_value is a float32.

  for run, steps in ((0, range(0, 1001, 100)), (1, range(600, 1501, 100))):
    # The suffix keeps the names distinct (and in order) when both files start in the same second.
    writer = tensorboardX.SummaryWriter(str(workdir), filename_suffix=f'.{run}')
    for step in steps:
      for tag in LOSS_TAGS:
        log(writer, tag, step, value(tag, step, run))
      log(writer, 'train_learning_rate', step, 2e-4 * (1 - step / 1500))
      log(writer, 'steps_per_second', step, 5.0 + run)
      if step % 500 == 0:
        log(writer, 'eval_l1', step, 0.2 - step / 10000 + run / 100)
        writer.add_image('eval_panel', np.zeros((8, 24, 3), np.uint8), step, dataformats='HWC')
        writer.add_text('note', f'step {step}', step)
    writer.close()
    time.sleep(0.05)  # Distinct wall times of the files' first events.
  writer = tensorboardX.SummaryWriter(str(workdir), filename_suffix='.2')
  log(writer, 'eval_l1', 1500, 0.125)
  log(writer, 'eval_psnr', 1500, 22.5)
  writer.close()
  assert len(report.event_files(workdir)) == 3
  return expected


def save_panel(path, colors, size=32):
  """A [input | generated | target] panel of three solid squares."""
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(
      np.concatenate([np.full((size, size, 3), c, np.uint8) for c in colors], axis=1)
  ).save(path)


def write_eval(workdir):
  """eval/metrics.json with every metric and three panel groups, and the panels' PNGs."""
  eval_dir = workdir / 'eval'
  rng = np.random.default_rng(0)
  save_panel(eval_dir / 'panels/fixed_0.png', PANEL_COLORS, size=64)
  for name in ('fixed_1', 'best_0', 'worst_0'):
    save_panel(eval_dir / f'panels/{name}.png', rng.integers(0, 256, (3, 3)))
  data = {
      'step': 1500,
      'num_images': 1098,
      'split': 'val',
      'direction': 'BtoA',
      'test_mode': 'paper (dropout on, per-image batch statistics)',
      'metrics': {
          'l1': {'mean': 0.1234, 'min': 0.0512, 'max': 0.2468, 'std': 0.0201},
          'psnr': {'mean': 22.3456, 'min': 15.5, 'max': 30.25, 'std': 2.5},
          'ssim': {'mean': 0.4567, 'min': 0.2, 'max': 0.8, 'std': 0.1},
          'hp_l1': {'mean': 0.0789, 'min': 0.03, 'max': 0.15, 'std': 0.02},
          'lpips': {'mean': 0.3111, 'min': 0.1, 'max': 0.5, 'std': 0.05},
          'fid': 42.1718,
          'kid': {'mean': 0.0123, 'std': 0.0011},
      },
      'panels': {
          'fixed': [
              {'file': 'panels/fixed_0.png', 'name': 'val/1.jpg', 'l1': 0.1101},
              {'file': 'panels/fixed_1.png', 'name': WEIRD_NAME, 'l1': 0.1202},
          ],
          'best': [{'file': 'panels/best_0.png', 'name': 'val/7.jpg', 'l1': 0.0512}],
          'worst': [{'file': 'panels/worst_0.png', 'name': 'val/9.jpg', 'l1': 0.2468}],
      },
  }
  (eval_dir / 'metrics.json').write_text(json.dumps(data))
  (eval_dir / 'per_image.csv').write_text('file_name,index,l1\nval/1.jpg,0,0.1101\n')
  return data


ABLATION = """Patch size ablation (BtoA, 200 epochs):

| patch | L1 | PSNR | notes |
|:---|---:|---|---|
| 1×1 | 0.145 | 20.1 | PixelGAN <colourful> |
| 70×70 | 0.123 | 22.3 | the paper's **default** |
"""


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """A workdir as a run and its evaluation leave it, with the report written."""
  workdir = tmp_path_factory.mktemp('run')
  expected = write_events(workdir)
  data = write_eval(workdir)
  path = report.write_report(workdir, extra_sections={'Ablation: patch size': ABLATION})
  return workdir, expected, data, path


def same(a, b):
  return a == b or (math.isnan(a) and math.isnan(b))


# ----------------------------------------------------------------------------------------------
# Event files


def test_read_scalars_later_file_wins(run_dir):
  workdir, expected, _, _ = run_dir
  scalars = report.read_scalars(workdir)
  assert set(scalars) == set(expected)
  for tag, points in scalars.items():
    assert points == sorted(expected[tag].items()), tag
  # The resumed run's values replace the first run's from step 600 on.
  g_total = dict(scalars['train_g_total'])
  assert g_total[500] == pytest.approx(value('train_g_total', 500, 0))
  assert g_total[600] == pytest.approx(value('train_g_total', 600, 1))
  assert scalars['eval_l1'] == [
      (0, pytest.approx(0.2)),
      (500, pytest.approx(0.15)),
      (1000, pytest.approx(0.11)),
      (1500, 0.125),
  ]


def test_read_scalars_agrees_with_tensorboard(run_dir):
  from tensorboard.backend.event_processing import event_accumulator

  workdir = run_dir[0]
  accumulator = event_accumulator.EventAccumulator(str(workdir), size_guidance={'scalars': 0})
  accumulator.Reload()
  ours = report.read_scalars(workdir)
  assert set(accumulator.Tags()['scalars']) == set(ours)
  for tag in ours:
    # TensorBoard keeps both copies of a re-logged step (tensorboardX writes no SessionLog.START
    # to purge by); the last one read is the resumed run's.
    last = {}
    for event in accumulator.Scalars(tag):
      last[event.step] = event.value
    assert ours[tag] == sorted(last.items()), tag


def test_read_scalars_no_event_files(tmp_path):
  assert report.read_scalars(tmp_path) == {}


def record_offsets(raw):
  """The start of each TFRecord in `raw`: uint64 length, uint32 CRC, data, uint32 CRC."""
  offsets, offset = [], 0
  while offset < len(raw):
    offsets.append(offset)
    offset += 8 + 4 + struct.unpack('<Q', raw[offset : offset + 8])[0] + 4
  return offsets


def test_read_scalars_torn_and_corrupt_files(tmp_path):
  writer = tensorboardX.SummaryWriter(str(tmp_path))
  for step in range(5):
    writer.add_scalar('loss', float(step), step)
  writer.close()
  (path,) = report.event_files(tmp_path)
  raw = path.read_bytes()
  offsets = record_offsets(raw)
  assert len(offsets) == 6  # The file-version event, then one per scalar.

  def corrupt(record):
    flipped = bytearray(raw)
    flipped[offsets[record] + 12 + 2] ^= 0xFF  # A byte of the record's data: its CRC fails.
    return bytes(flipped)

  # A bad record ends the file (as in TensorBoard): the records before it are read.
  path.write_bytes(corrupt(5))
  assert report.read_scalars(tmp_path) == {'loss': [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]}
  path.write_bytes(corrupt(3))
  assert report.read_scalars(tmp_path) == {'loss': [(0, 0.0), (1, 1.0)]}
  # A writer killed mid-record leaves a torn tail: everything before it is read.
  path.write_bytes(raw[:-7])
  assert report.read_scalars(tmp_path) == {'loss': [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]}


def test_tensor_scalars(tmp_path):
  """TF2-style scalars (a 0-d float tensor) are read too; other tensors are not.

  TF2 writers name the plugin in a tag's first value only; the later values are still scalars.
  """
  from tensorboardX.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

  metadata = summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name='scalars')
  )
  values = [
      summary_pb2.Summary.Value(
          tag='f32',
          metadata=metadata,
          tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.5]),
      ),
      summary_pb2.Summary.Value(
          tag='f64',
          metadata=metadata,
          tensor=tensor_pb2.TensorProto(
              dtype=types_pb2.DT_DOUBLE, tensor_content=np.float64(2.5).tobytes()
          ),
      ),
      summary_pb2.Summary.Value(
          tag='vector',
          metadata=metadata,
          tensor=tensor_pb2.TensorProto(
              dtype=types_pb2.DT_FLOAT,
              float_val=[3.5],
              tensor_shape=tensor_shape_pb2.TensorShapeProto(
                  dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=4)]
              ),
          ),
      ),
      summary_pb2.Summary.Value(
          tag='other_plugin',
          tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[4.5]),
          metadata=summary_pb2.SummaryMetadata(
              plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name='histograms')
          ),
      ),
  ]
  writer = tensorboardX.SummaryWriter(str(tmp_path))
  file_writer = writer._get_file_writer()  # pylint: disable=protected-access
  file_writer.add_summary(summary_pb2.Summary(value=values), 3)
  file_writer.add_summary(
      summary_pb2.Summary(
          value=[
              summary_pb2.Summary.Value(
                  tag='f32',
                  tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[0.5]),
              )
          ]
      ),
      4,
  )
  writer.close()
  assert report.read_scalars(tmp_path) == {'f32': [(3, 1.5), (4, 0.5)], 'f64': [(3, 2.5)]}


class OldLayoutWriter(summary.SummaryWriter):
  """summary.SummaryWriter as it was before the panels had an event file of their own."""

  def write_images(self, step, images):
    for name, image in images.items():
      self._writer.add_image(name, image, step, dataformats='HWC')


def write_run(workdir, *, old_layout=False):
  """A short run's events as training writes them: scalars every 10 steps, a panel every 20.

  Returns:
    {step: panel} of the panels written.
  """
  rng = np.random.default_rng(1)
  panels = {}
  writer = (OldLayoutWriter if old_layout else summary.SummaryWriter)(workdir)
  for step in range(0, 101, 10):
    writer.write_scalars(step, {tag: value(tag, step, 0) for tag in LOSS_TAGS})
    if step % 20 == 0:
      writer.write_scalars(step, {'eval_l1': 0.2 - step / 1000})
      panels[step] = rng.integers(0, 256, (8, 24, 3), dtype=np.uint8)
      writer.write_images(step, {'eval_panel': panels[step]})
  writer.close()
  return panels


def test_panels_have_their_own_event_file(tmp_path, monkeypatch):
  """Panels go to WORKDIR/panels/, which TensorBoard shows as a run of its own; the report
  reads the scalars' file only, and no image record."""
  from tensorboard.backend.event_processing import event_multiplexer

  panels = write_run(tmp_path)
  (scalar_file,) = report.event_files(tmp_path)
  (panel_file,) = report.event_files(tmp_path / summary.PANELS_DIR)
  multiplexer = event_multiplexer.EventMultiplexer(size_guidance={'images': 0, 'scalars': 0})
  multiplexer.AddRunsFromDirectory(str(tmp_path)).Reload()
  runs = multiplexer.Runs()
  assert set(runs) == {'.', summary.PANELS_DIR}
  assert runs['.']['images'] == [] and set(runs['.']['scalars']) == set(LOSS_TAGS) | {'eval_l1'}
  assert runs[summary.PANELS_DIR]['images'] == ['eval_panel']
  assert runs[summary.PANELS_DIR]['scalars'] == []
  events = multiplexer.Images(summary.PANELS_DIR, 'eval_panel')
  assert [e.step for e in events] == sorted(panels)
  for event in events:
    with Image.open(io.BytesIO(event.encoded_image_string)) as image:
      assert np.array_equal(np.asarray(image), panels[event.step])

  loaded = []
  loader = report.event_file_loader.EventFileLoader
  monkeypatch.setattr(
      report.event_file_loader, 'EventFileLoader', lambda path: loaded.append(path) or loader(path)
  )
  scalars = report.read_scalars(tmp_path)
  assert loaded == [str(scalar_file)] and str(panel_file) not in loaded
  assert set(scalars) == set(LOSS_TAGS) | {'eval_l1'}
  assert [step for step, _ in scalars['eval_l1']] == sorted(panels)
  page = report.write_report(tmp_path).read_text()
  assert '1 event file, last logged step 100' in page


def test_scalars_only_writer_makes_no_panels_folder(tmp_path):
  """Evaluation's writer logs scalars only: no empty panels run in TensorBoard."""
  writer = summary.SummaryWriter(tmp_path)
  writer.write_scalars(3, {'eval_l1': 0.5})
  writer.close()
  assert not (tmp_path / summary.PANELS_DIR).exists()
  assert report.read_scalars(tmp_path) == {'eval_l1': [(3, 0.5)]}


def test_old_layout_run(tmp_path):
  """A run written before the panels had their own file reports the same: same scalars, same
  charts, and the evaluation's panels."""
  pages = {}
  for layout in ('old', 'new'):
    workdir = tmp_path / layout
    workdir.mkdir()
    write_run(workdir, old_layout=layout == 'old')
    write_eval(workdir)
    pages[layout] = report.write_report(workdir).read_text()
  from tensorboard.backend.event_processing import event_accumulator

  old = event_accumulator.EventAccumulator(str(tmp_path / 'old'))
  assert old.Reload().Tags()['images'] == ['eval_panel']  # In its one file, with the scalars.
  assert not (tmp_path / 'old' / summary.PANELS_DIR).exists()
  assert report.read_scalars(tmp_path / 'old') == report.read_scalars(tmp_path / 'new')
  captions = {
      layout: re.findall(r'<figcaption>([^<]+)</figcaption><img class="chart"', page)
      for layout, page in pages.items()
  }
  assert captions['old'] == captions['new'] and 'Generator losses' in captions['old']
  for layout, page in pages.items():
    assert '1 event file, last logged step 100' in page, layout
    assert '<h2>Images</h2>' in page and page.count('<figure class="panel">') == 4, layout
    copies = {p.read_bytes() for p in (tmp_path / layout / 'report' / 'images').iterdir()}
    assert copies == {p.read_bytes() for p in (tmp_path / layout / 'eval' / 'panels').iterdir()}


# ----------------------------------------------------------------------------------------------
# Charts


def project_tags():
  """Every scalar tag training and evaluation log (train.py's flush_metrics and evaluate,
  evaluation.eval_scalars)."""
  from pix2pix_jax import train

  step_metrics = (
      train.LOSS_NAMES
      + train.OPTIONAL_LOSS_NAMES
      + ('d_real_output', 'd_fake_output', 'learning_rate', 'skipped_steps')
  )
  return (
      [f'train_{name}' for name in step_metrics]
      + ['steps_per_second', 'data_wait_fraction', 'eval_seconds']
      + [f'eval_{name}' for name in metrics.METRICS]
  )


def test_every_chart_has_a_human_title_and_a_unit(tmp_path):
  """Every tag the project logs is drawn once, under a title in words (not the tag) with a unit
  on its y axis."""
  tags = project_tags()
  writer = summary.SummaryWriter(tmp_path)
  for step in (0, 100):
    writer.write_scalars(step, {tag: 1.0 + step / 100 for tag in tags})
  writer.close()
  specs, single = report.chart_specs(report.read_scalars(tmp_path))
  assert single == []
  grouped = {tag for _, _, lines, _ in report.CHARTS for tag, _, _ in lines}
  assert len(specs) == len(report.CHARTS) + len(set(tags) - grouped)
  titles = {}
  for title, unit, _, _ in specs:
    assert title not in tags and '_' not in title and title[0].isupper(), title
    assert unit and '_' not in unit and unit != 'value', (title, unit)
    titles[title] = unit
  assert len(titles) == len(specs)  # No two charts share a title.
  # The examples the issue names; eval titles come from the project's one metric table.
  assert titles['Data wait'] == 'fraction of step time'
  assert titles['Throughput'] == 'steps per second' and titles['Eval time'] == 'seconds'
  assert titles['Eval PSNR (dB)'] == 'dB'
  assert titles[f'Eval {metrics.METRICS["hp_l1"].title}'] == 'mean |Laplacian difference|'
  assert set(report._EVAL_UNITS) == set(metrics.METRICS)  # pylint: disable=protected-access

  # On the page: each caption a title, each chart's alt text its unit, its PNG's y axis too.
  page = report.write_report(tmp_path).read_text()
  charts = re.findall(
      r'<figcaption>([^<]+)</figcaption><img class="chart" src="[^"]+" ' r'alt="([^"]+)">', page
  )
  assert [caption for caption, _ in charts] == [title for title, _, _, _ in specs]
  assert [alt for _, alt in charts] == [
      html.escape(f'{title}: {unit} against step') for title, unit, _, _ in specs
  ]
  assert not set(tags) & {caption for caption, _ in charts}
  figure, _ = report.line_chart([('x', [(0, 1.0)])], unit='steps per second')
  assert figure.axes[0].get_ylabel() == 'steps per second'


def test_unknown_tag_title():
  assert report.tag_chart('custom_metric') == ('Custom metric', 'value')
  assert report.tag_chart('data_wait_fraction') == ('Data wait', 'fraction of step time')


def chart_pixels(page, report_dir, title):
  """The RGB pixels of the chart titled `title` on the page (its alt text starts 'title: ')."""
  (source,) = re.findall(rf'<img class="chart" src="([^"]+)" alt="{re.escape(title)}: ', page)
  return np.asarray(Image.open(report_dir / source).convert('RGB')).astype(np.int32)


def count_color(pixels, color, tolerance=12):
  return int(np.all(np.abs(pixels - np.array(color)) <= tolerance, axis=-1).sum())


def test_non_finite_and_single_point_series(tmp_path):
  writer = tensorboardX.SummaryWriter(str(tmp_path))
  for step, v in enumerate([1.0, math.nan, 2.0, float('inf'), 3.0]):
    writer.add_scalar('train_g_total', v, step)
  writer.add_scalar('eval_l1', 0.25, 7)  # A single point.
  writer.add_scalar('custom_metric', math.nan, 3)  # Nothing finite to draw.
  writer.add_scalar('custom_metric', float('-inf'), 4)
  writer.add_scalar('logged_once', math.nan, 5)
  writer.close()
  scalars = report.read_scalars(tmp_path)
  assert all(
      same(a, b) for (_, a), b in zip(scalars['train_g_total'], [1.0, math.nan, 2.0, math.inf, 3.0])
  )
  page = report.write_report(tmp_path).read_text()
  assert 'Generator losses <span class="muted">(2 non-finite values skipped)' in page
  assert '2 non-finite values skipped)</span></figcaption><p class="muted">no finite values' in page
  assert '<tr><th>logged_once</th><td>5</td><td>nan</td></tr>' in page
  assert page.count('<img class="chart"') == 2
  # The single eval point is drawn (as a marker, in the eval line's colour C1, orange).
  pixels = chart_pixels(page, tmp_path / 'report', 'L1, images in [0, 1]')
  assert count_color(pixels, (255, 127, 14)) > 20


def test_chart_axes():
  figure, skipped = report.line_chart(
      [('a', [(0, 0.1), (50000, 0.5)]), ('b', [(0, 100.0), (50000, 3.0)])], allow_log=True
  )
  figure.canvas.draw()
  (axes,) = figure.axes
  assert skipped == 0 and axes.get_yscale() == 'log'
  assert {'0', '10k', '50k'} <= {t.get_text() for t in axes.get_xticklabels()}
  assert {'0.1', '1', '10', '100'} <= {t.get_text() for t in axes.get_yticklabels()}
  assert [t.get_text() for t in figure.legends[0].get_texts()] == ['a', 'b']
  # Two decades or less: 1-2-5 ticks, so that the axis has labels between its decades.
  figure, _ = report.line_chart([('c', [(0, 0.15), (1, 8.0)])], allow_log=True)
  figure.canvas.draw()
  assert {'0.2', '0.5', '1', '2', '5'} <= {t.get_text() for t in figure.axes[0].get_yticklabels()}
  # Linear: a narrow span, values not all positive, or no log allowed.
  for series, allow_log in (
      ([(0, 1.0), (1, 40.0)], True),
      ([(0, 0.0), (1, 100.0)], True),
      ([(0, 0.01), (1, 100.0)], False),
  ):
    assert report.line_chart([('x', series)], allow_log=allow_log)[0].axes[0].get_yscale() == (
        'linear'
    )
  figure, _ = report.line_chart([('lr', [(0, 2e-4), (100, 1e-4), (200, 0.0)])])
  figure.canvas.draw()
  assert '10^{-4}' in figure.axes[0].yaxis.get_offset_text().get_text().replace('\u2212', '-')
  assert report.line_chart([('x', [(0, math.nan)])]) == (None, 1)


def test_long_series_keep_their_envelope(tmp_path):
  """100k points are drawn without decimation, and a one-step spike stays visible."""
  points = [(step, 1.0 + (step % 7) / 100) for step in range(100_000)]
  points[54_321] = (54_321, 9.0)
  figure, _ = report.line_chart([('x', points)])
  assert len(figure.axes[0].lines[0].get_xdata()) == 100_000
  figure.savefig(tmp_path / 'long.png', dpi=100)
  pixels = np.asarray(Image.open(tmp_path / 'long.png').convert('RGB')).astype(np.int32)
  x, y = figure.axes[0].transData.transform((54_321, 9.0))
  column = pixels[:, int(round(x)) - 2 : int(round(x)) + 3]  # Pixel rows count from the top.
  blue = np.nonzero(np.all(np.abs(column - np.array((31, 119, 180))) <= 40, axis=-1))[0]
  assert blue.size and abs(blue.min() - (pixels.shape[0] - y)) <= 3


# ----------------------------------------------------------------------------------------------
# The page


def test_report_content(run_dir):
  workdir, _, _, path = run_dir
  assert path == workdir / 'report' / 'index.html'
  page = path.read_text()
  for text in (
      '0.1234',
      '0.0512',
      '0.2468',
      '0.0201',
      '22.35',
      '0.4567',
      '0.0789',
      '0.3111',
      '42.17',
      '0.0123 ± 0.0011',
      '1,098',
      'BtoA',
      'val',
      '1,500',
      'paper (dropout on, per-image batch statistics)',
      'L1 ↓',
      'PSNR (dB) ↑',
      'SSIM ↑',
      'LPIPS ↓',
      'FID ↓',
      'KID ↓',
  ):
    assert text in page, text
  # Titles come from the project's one metric table.
  assert f'<th>{metrics.METRICS["hp_l1"].title} ↓</th>' in page and 'High-pass' not in page
  assert 'L1 0.1101' in page  # A panel's caption.
  assert re.search(r'<th>mean</th><th>min</th><th>max</th><th>std</th>', page)
  charts = re.findall(r'<figcaption>([^<]+)</figcaption><img class="chart" src="([^"]+)"', page)
  assert [title for title, _ in charts] == [
      'Generator losses',
      'Discriminator losses',
      'L1, images in [0, 1]',
      'Discriminator outputs',
      'Learning rate',
      'Throughput',
  ]
  for _, source in charts:
    with Image.open(path.parent / source) as chart:
      assert chart.format == 'PNG' and chart.width > 600
  assert '3 event files, last logged step 1,500' in page
  # A tag logged once is a table row, not a chart.
  assert '<tr><th>eval_psnr</th><td>1,500</td><td>22.50</td></tr>' in page
  assert '<a href="per_image.csv">' in page and (path.parent / 'per_image.csv').is_file()


def test_report_curves(run_dir):
  """The L1 chart is on a log axis (its curves span 50×) and shows the resumed run's values."""
  workdir, _, _, path = run_dir
  pixels = chart_pixels(path.read_text(), path.parent, 'L1, images in [0, 1]')
  for color in ((31, 119, 180), (255, 127, 14)):  # train (C0) and eval (C1).
    assert count_color(pixels, color) > 200, color
  figure, _ = report.line_chart(
      [
          (label, [(s, v * scale) for s, v in report.read_scalars(workdir)[tag]])
          for tag, label, scale in report.CHARTS[2][2]
      ],
      allow_log=report.CHARTS[2][3],
  )
  assert figure.axes[0].get_yscale() == 'log'


def test_report_is_self_contained(run_dir):
  workdir, _, _, path = run_dir
  page = path.read_text()
  references = re.findall(r'(?:src|href)="([^"]*)"', page)
  assert len(references) == 4 + 6 + 1  # Panels, charts, per_image.csv.
  for reference in references:
    assert re.fullmatch(r'(images|charts)/[\w.-]+|per_image\.csv', reference), reference
    assert (path.parent / reference).is_file()
  assert 'http://' not in page and 'https://' not in page and '<script' not in page
  panels = {p.read_bytes() for p in (workdir / 'eval' / 'panels').iterdir()}
  copies = list((path.parent / 'images').iterdir())
  assert len(copies) == 4 and {p.read_bytes() for p in copies} == panels
  assert 'Best (lowest L1)' in page and 'Worst (highest L1)' in page


def test_report_escapes_names(run_dir):
  page = run_dir[3].read_text()
  assert '<b>odd</b>' not in page
  assert 'val/&lt;b&gt;odd&lt;/b&gt; &amp; &quot;quoted&quot; &#x27;name&#x27;.jpg' in page


def test_markdown():
  """Pipe tables with their alignment, inline markup; raw HTML is text; headings start at h3."""
  out = report.render_markdown(
      ABLATION + '\n<script>x()</script>\n\n- one `a|b`\n- two\n\n## More\nplain <i>text</i>'
  )
  assert '<p>Patch size ablation (BtoA, 200 epochs):</p>' in out
  assert '<th style="text-align: left;">patch</th>' in out
  assert '<td style="text-align: right;">0.145</td>' in out
  assert '<td>PixelGAN &lt;colourful&gt;</td>' in out
  assert "<td>the paper's <strong>default</strong></td>" in out
  assert '<li>one <code>a|b</code></li>' in out and '&lt;script&gt;' in out
  assert re.search(r'<h4[^>]*>More</h4>', out) and '<p>plain &lt;i&gt;text&lt;/i&gt;</p>' in out
  assert '<script' not in out and '<i>' not in out


def test_extra_section_in_report(run_dir):
  page = run_dir[3].read_text()
  assert '<h2>Ablation: patch size</h2>\n<div class="md"><p>Patch size ablation' in page
  assert '<td style="text-align: right;">0.123</td>' in page


def test_no_evaluation_yet(tmp_path):
  page = report.write_report(tmp_path).read_text()
  assert report.NO_EVAL_MESSAGE in page
  assert 'no training curves' in page
  assert '<img' not in page


def test_scored_run_has_no_step(tmp_path):
  """--mode=score writes `step: null` and no event files."""
  (tmp_path / 'eval').mkdir()
  (tmp_path / 'eval' / 'metrics.json').write_text(
      json.dumps({'step': None, 'num_images': 2, 'split': None, 'metrics': {'l1': {'mean': 0.5}}})
  )
  page = report.write_report(tmp_path).read_text()
  assert '<b>images</b> 2' in page and '<b>step</b>' not in page and '<b>split</b>' not in page


@pytest.mark.parametrize(
    'num_images, subset_size, shown',
    [
        (100, 100, False),  # The subsets are the whole set: one subset.
        (100, 99, True),  # 100 distinct subsets of 99 of its 100 images.
        (1098, 1000, True),  # maps: 100 distinct subsets of 1,000 of its 1,098 images.
        (1098, None, True),  # A metrics.json from before KID recorded its subset size.
    ],
)
def test_kid_spread_only_with_several_subsets(tmp_path, num_images, subset_size, shown):
  kid = {'mean': 0.0123, 'std': 3.64e-16 if not shown else 0.0011}
  if subset_size is not None:
    kid['subset_size'] = subset_size
  (tmp_path / 'eval').mkdir()
  (tmp_path / 'eval' / 'metrics.json').write_text(
      json.dumps({'step': 5, 'num_images': num_images, 'metrics': {'fid': 42.0, 'kid': kid}})
  )
  page = report.write_report(tmp_path).read_text()
  (row,) = re.findall(r'<tr><th>KID ↓</th><td>([^<]*)</td></tr>', page)
  assert row == ('0.0123 ± 0.0011' if shown else '0.0123')
  assert '<tr><th>FID ↓</th><td>42.00</td></tr>' in page


def test_folder_of_runs(tmp_path):
  """The ablation's root has no run of its own: only its sections, no misleading notices."""
  page = report.write_report(tmp_path, extra_sections={'PatchGAN': ABLATION}).read_text()
  assert report.NO_EVAL_MESSAGE not in page and 'no training curves' not in page
  assert '<h2>PatchGAN</h2>' in page and '<td style="text-align: right;">0.145</td>' in page


def test_missing_panel_and_bad_json(tmp_path):
  (tmp_path / 'eval').mkdir()
  (tmp_path / 'eval' / 'metrics.json').write_text(
      json.dumps({
          'step': 3,
          'metrics': {'l1': {'mean': 0.5}},
          'panels': {'fixed': [{'file': 'panels/<gone>.png', 'name': 'x', 'l1': 0.5}]},
      })
  )
  for stale in ('images/stale.png', 'charts/stale.png'):
    (tmp_path / 'report' / stale).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / 'report' / stale).write_bytes(b'old')
  page = report.write_report(tmp_path).read_text()
  assert 'image missing: panels/&lt;gone&gt;.png' in page
  assert '0.5000' in page
  assert not list((tmp_path / 'report').glob('*/stale.png'))
  (tmp_path / 'eval' / 'metrics.json').write_text('{"step": ')
  page = report.write_report(tmp_path).read_text()
  assert 'could not read eval/metrics.json' in page


# ----------------------------------------------------------------------------------------------
# A real browser


def find_chromium():
  """The Chromium binary, or skip (fail on CI, which installs it)."""
  for name in ('chromium', 'chromium-browser', 'google-chrome'):
    path = shutil.which(name)
    if path:
      return path
  if os.environ.get('CI') == 'true':
    pytest.fail('chromium is not installed; CI installs it (apt-get install -y chromium)')
  pytest.skip('chromium is not installed (apt-get install -y chromium)')


def chromium_args(binary, profile):
  # Headless, and nothing that would reach for the network (updates, sync, QUIC probes).
  return [
      binary,
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--hide-scrollbars',
      '--force-device-scale-factor=1',
      f'--user-data-dir={profile}',
  ]


class DevTools:
  """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe.

  Chromium reads NUL-terminated JSON commands from fd 3 and writes replies and events to fd 4.
  This reports console errors as structured events (Runtime.consoleAPICalled,
  Runtime.exceptionThrown, Log.entryAdded for failed loads and CSP violations) instead of
  scraping the log format of stderr, which changes between versions.
  """

  def __init__(self, binary, profile):
    to_child, self._to_browser = os.pipe()
    self._from_browser, from_child = os.pipe()
    # bash moves the child's ends to fds 3 and 4, then becomes Chromium. They are first moved to
    # fds >= 5, so that neither redirection overwrites the other's source (dash, Debian's sh,
    # takes single-digit fds only, hence bash).
    to_child, from_child = (self._move_above_4(fd) for fd in (to_child, from_child))
    self.process = subprocess.Popen(
        [
            'bash',
            '-c',
            f'exec "$0" "$@" 3<&{to_child} 4>&{from_child}',
            *chromium_args(binary, profile),
            '--remote-debugging-pipe',
        ],
        pass_fds=(to_child, from_child),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(to_child)
    os.close(from_child)
    self._buffer = b''
    self._id = 0
    self.events = []

  @staticmethod
  def _move_above_4(fd):
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved

  def send(self, method, params=None, session=None):
    self._id += 1
    message = {'id': self._id, 'method': method, 'params': params or {}}
    if session:
      message['sessionId'] = session
    os.write(self._to_browser, json.dumps(message).encode() + b'\0')
    return self._id

  def wait_for(self, predicate, timeout=30):
    """Reads messages until one satisfies `predicate`; all are kept in `events`."""
    deadline = time.monotonic() + timeout
    while True:
      while b'\0' in self._buffer:
        raw, self._buffer = self._buffer.split(b'\0', 1)
        message = json.loads(raw)
        self.events.append(message)
        if predicate(message):
          return message
      ready, _, _ = select.select(
          [self._from_browser], [], [], max(0.0, deadline - time.monotonic())
      )
      if not ready:
        raise TimeoutError('no answer from chromium')
      chunk = os.read(self._from_browser, 1 << 16)
      if not chunk:
        raise EOFError('chromium closed the DevTools pipe')
      self._buffer += chunk

  def call(self, method, params=None, session=None, check=True):
    call_id = self.send(method, params, session)
    reply = self.wait_for(lambda m: m.get('id') == call_id)
    if check and 'error' in reply:
      raise RuntimeError(f'DevTools {method}: {reply["error"]}')
    return reply

  def new_page(self):
    """Opens a blank page; returns the session that drives it."""
    target = self.call('Target.createTarget', {'url': 'about:blank'})['result']['targetId']
    reply = self.call('Target.attachToTarget', {'targetId': target, 'flatten': True})
    return reply['result']['sessionId']

  def close(self):
    try:
      self.send('Browser.close')
      self.process.wait(timeout=20)
    except (OSError, subprocess.TimeoutExpired):
      self.process.kill()
      self.process.wait()
    finally:
      os.close(self._to_browser)
      os.close(self._from_browser)


def console_errors(binary, url):
  """The console errors of loading `url`: console.error, uncaught exceptions, failed loads."""
  with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
    browser = DevTools(binary, profile)
    try:
      session = browser.new_page()
      for method in ('Page.enable', 'Runtime.enable', 'Log.enable'):
        browser.call(method, session=session)
      browser.call('Page.navigate', {'url': url}, session=session)
      # Loaded means: this document (not the about:blank before it) has fired its load event.
      # Polling the page, rather than waiting for Page.loadEventFired, cannot take about:blank's
      # event for ours, and each answer comes after the messages the page sent before it.
      deadline = time.monotonic() + 30
      while True:
        reply = browser.call(
            'Runtime.evaluate',
            {
                'expression': (
                    'document.readyState === "complete" && location.href !== "about:blank"'
                ),
                'returnByValue': True,
            },
            session=session,
            check=False,
        )  # Fails mid-navigation.
        if reply.get('result', {}).get('result', {}).get('value') is True:
          break
        assert time.monotonic() < deadline, f'{url} did not load: {reply}'
        time.sleep(0.05)
    finally:
      browser.close()
  errors = []
  for message in browser.events:
    method, params = message.get('method'), message.get('params', {})
    if method == 'Runtime.consoleAPICalled' and params['type'] in ('error', 'assert'):
      errors.append(' '.join(str(a.get('value', a.get('description'))) for a in params['args']))
    elif method == 'Runtime.exceptionThrown':
      details = params['exceptionDetails']
      errors.append(details.get('exception', {}).get('description', details['text']))
    elif method == 'Log.entryAdded' and params['entry']['level'] == 'error':
      errors.append(f'{params["entry"]["text"]} {params["entry"].get("url", "")}')
  return errors


def test_report_in_chromium(run_dir, tmp_path):
  binary = find_chromium()
  path = run_dir[3]

  # The capture itself must work: a page with a broken image, a console.error, an uncaught
  # exception and a CSP-blocked remote image reports all four.
  control = tmp_path / 'control.html'
  control.write_text(
      '<!doctype html><meta http-equiv="Content-Security-Policy" content="img-src \'self\'">'
      '<img src="missing.png"><img src="https://example.invalid/x.png">'
      '<script>console.error("logged"); throw new Error("thrown");</script>'
  )
  errors = console_errors(binary, control.as_uri())
  assert len(errors) == 4, errors
  assert any('logged' in e for e in errors) and any('thrown' in e for e in errors)
  assert any('ERR_FILE_NOT_FOUND' in e for e in errors)
  assert any('Content Security Policy' in e for e in errors)

  assert console_errors(binary, path.as_uri()) == []

  screenshot = tmp_path / 'report.png'
  with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
    subprocess.run(
        [
            *chromium_args(binary, profile),
            f'--screenshot={screenshot}',
            '--window-size=1280,2600',
            path.as_uri(),
        ],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
  if os.environ.get('REPORT_SCREENSHOT'):  # To look at it: REPORT_SCREENSHOT=/tmp/report.png
    shutil.copyfile(screenshot, os.environ['REPORT_SCREENSHOT'])
  pixels = np.asarray(Image.open(screenshot).convert('RGB')).astype(np.int32)
  assert pixels.shape == (2600, 1280, 3)
  assert pixels.std() > 20, 'blank screenshot'
  # The known panel is drawn: ~128×128 screen pixels of each of its colours (its 64×64 thirds
  # scaled to the panel's width), away from the smoothed edges.
  for color in PANEL_COLORS:
    matches = np.all(np.abs(pixels - np.array(color)) <= 6, axis=-1).sum()
    assert matches > 3000, (color, matches)


def test_comparison_chart_above_its_section(tmp_path):
  """A sweep's chart: a panel per metric with a value, saved above the section it belongs to."""
  assert report.comparison_chart(['run'], {'l1': [math.nan]}) is None
  figure = report.comparison_chart(['a', 'b'], {'l1': [0.1, 0.2], 'fid': [math.nan] * 2})
  assert len(figure.axes) == 1  # No FID value: no FID panel.
  assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ['a', 'b']
  page = report.write_report(
      tmp_path, extra_sections={'Sweep': '| a |\n|---|\n| 1 |'}, section_charts={'Sweep': figure}
  ).read_text()
  assert (
      '<h2>Sweep</h2>\n<figure class="card"><img class="chart" src="charts/section_Sweep.png"'
      in (page)
  )
  assert (tmp_path / 'report' / 'charts' / 'section_Sweep.png').stat().st_size > 1000
