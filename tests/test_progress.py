"""progress.ProgressLog: the line long evaluate, score and predict work prints."""

import logging

from pix2pix_jax import progress


def test_lines_give_count_rate_eta_and_the_time_of_each_phase(monkeypatch, caplog):
  caplog.set_level(logging.INFO)
  now = [100.0]
  monkeypatch.setattr(progress.time, 'perf_counter', lambda: now[0])
  log = progress.ProgressLog('Evaluating', 100, rest='generation', every_seconds=10)
  with log.phase('FID features'):
    now[0] += 6.0
  now[0] += 4.0  # 10 s in: 6 s in FID features, 4 s generating.
  log.update(20)
  now[0] += 5.0
  log.update(30)  # Only 5 s since the last line: quiet.
  now[0] += 25.0
  log.update(100)  # The end always gets its line.
  assert log.lines == [
      'Evaluating: 20/100 images, 2.00 images/s, ETA 00:00:40 (generation 4 s, FID features 6 s)',
      (
          'Evaluating: 100/100 images, 2.50 images/s, done in 00:00:40 (generation 34 s, FID'
          ' features 6 s)'
      ),
  ]
  assert caplog.text.count('Evaluating: ') == 2


def test_short_work_can_stay_quiet_at_the_end(monkeypatch):
  now = [0.0]
  monkeypatch.setattr(progress.time, 'perf_counter', lambda: now[0])
  quick = progress.ProgressLog('Checking', 3, unit='pairs')
  for done in (1, 2, 3):
    quick.update(done, quiet_end=True)
  assert quick.lines == []  # Done within the first interval: no line at all.
  slow = progress.ProgressLog('Checking', 3, unit='pairs')
  now[0] = 11.0
  slow.update(1, quiet_end=True)
  slow.update(3, quiet_end=True)
  assert [line.split(',')[0] for line in slow.lines] == [
      'Checking: 1/3 pairs',
      'Checking: 3/3 pairs',
  ]
  assert progress.format_duration(2 * 86400 + 3600) == '2.0d'
