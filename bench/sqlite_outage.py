# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Outage and wall time of a SQLite backup: orthanc_backup against the naive ways.

For each N, a fresh Orthanc with N synthetic instances, and in the same run:
  (0) stop + start, the floor; (a) the Orthanc Book's procedure: stop, cp -a, start;
  (b) orthanc_backup; (c) orthanc_backup again with nothing changed; (d) the same with
  mode=freeze (Orthanc paused, not stopped); and, as the anchor for (c), rsync -a
  --link-dest of the same storage against a previous rsync copy.
The outage is what a client sees: GET /system every 20 ms, the longest gap between answers. Above
--synthesize-above instances, they are written into the index and storage directly (see scale.py).

    make bench BENCH_ARGS="--instances 2000 20000"
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sizes  # noqa: E402
from harness import Ansible, Orthanc  # noqa: E402
from scale import populate, synthesis_options  # noqa: E402


class Prober(threading.Thread):
    """Polls GET /system every 20 ms (1 s timeout); the longest gap between two answers is the outage,
    and every request refused, cut off or timed out is a failed one."""

    def __init__(self, orthanc):
        super().__init__(daemon=True)
        self.orthanc = orthanc
        self.answers = []
        self.failures = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.orthanc.api('GET', '/system', timeout=1)
                self.answers.append(time.monotonic())
            except (OSError, http.client.HTTPException):    # refused, or cut off by the shutdown
                self.failures += 1
            time.sleep(0.02)

    def outage(self):
        self.done.set()
        self.join()
        return max((b - a for a, b in zip(self.answers, self.answers[1:])), default=0.0)


def measured(orthanc, action, repeat, before=None):
    """Medians over ``repeat`` runs of action(), which returns the seconds Orthanc took to stop:
    (client-seen outage, wall time, outage beyond Orthanc's own shutdown, failed requests)."""
    outages, walls, beyond, failures = [], [], [], []
    for dummy in range(repeat):
        if before:
            before()
        prober = Prober(orthanc)
        prober.start()
        time.sleep(0.3)
        start = time.monotonic()
        stopping = action()
        walls.append(time.monotonic() - start)
        time.sleep(0.3)
        outages.append(prober.outage())
        beyond.append(outages[-1] - stopping)
        failures.append(prober.failures)
    return (statistics.median(outages), statistics.median(walls), statistics.median(beyond),
            statistics.median(failures))


def timed_stop(orthanc):
    start = time.monotonic()
    orthanc.stop()
    return time.monotonic() - start


def set_aside(path):
    """Move an earlier run's copy out of the way, to be deleted after the timed runs: on this machine's
    ext4 without a journal, every file created in the minutes after a mass deletion scans the freed
    inodes, which would slow the next timed copy several-fold."""
    if os.path.exists(path):
        os.rename(path, tempfile.mkdtemp(prefix='aside-', dir=os.path.dirname(path)) + '/copy')


def sh(command):
    subprocess.run(command, shell=True, check=True)


def bench(collections, count, pixels, repeat, work, synthesize_above, file_bytes):
    orthanc = Orthanc(os.path.join(work, 'orthanc'))
    seeded = time.monotonic()
    populate(orthanc, count, pixels, synthesize_above, file_bytes)
    storage_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, dummy, fs in os.walk(orthanc.storage_dir) for f in fs
                        if not f.startswith('index'))
    print('N=%d: seeded in %.0f s, %d MiB of storage, medians of %d runs' % (
        count, time.monotonic() - seeded, storage_bytes >> 20, repeat))
    ansible = Ansible(collections, work)
    repository = os.path.join(work, 'repository')
    params = orthanc.module_params(repository=repository, instance='bench')
    book_copy = os.path.join(work, 'book')
    results, modules = {}, {'b': [], 'c': [], 'd': []}

    def restart():
        stopping = timed_stop(orthanc)
        orthanc.start()
        return stopping

    def book():
        stopping = timed_stop(orthanc)
        sh('mkdir -p %s && cp -a %s %s/storage && cp -a %s %s/' % (
            book_copy, orthanc.storage_dir, book_copy, orthanc.config, book_copy))
        orthanc.start()
        return stopping

    def module(label, **extra):
        def run():
            result, rc, output = ansible.run('orthanc_backup', dict(params, **extra))
            assert rc == 0, output
            modules[label].append(result)
            return result['timings']['stop_seconds']
        return run

    results['0 stop+start (floor)'] = measured(orthanc, restart, repeat)
    results['a book: stop, cp -a, start'] = measured(orthanc, book, repeat, before=lambda: set_aside(book_copy))
    results['b orthanc_backup, first'] = measured(orthanc, module('b', mode='cold'), repeat,
                                                  before=lambda: set_aside(repository))
    results['c orthanc_backup, unchanged'] = measured(orthanc, module('c', mode='cold'), repeat)
    results['d orthanc_backup mode=freeze'] = measured(orthanc, module('d', mode='freeze'), repeat)

    rsync_walls = []
    for number in range(repeat):
        sh('rsync -a %s/ %s/rsync-base/' % (orthanc.storage_dir, work))
        start = time.monotonic()
        sh('rsync -a --link-dest=%s/rsync-base/ %s/ %s/rsync-%d/' % (work, orthanc.storage_dir, work, number))
        rsync_walls.append(time.monotonic() - start)
    rsync_wall = statistics.median(rsync_walls)
    orthanc.stop()

    def median(label, key):
        return statistics.median(result[key] if key in result else result['timings'][key] for result in modules[label])

    print('  %-32s %10s %10s %12s %16s' % ('', 'outage s', 'wall s', 'beyond stop', 'failed requests'))
    for label, (outage, wall, beyond, failed) in results.items():
        print('  %-32s %10.2f %10.2f %12.2f %16d' % (label, outage, wall, beyond, failed))
    print('  %-32s %10s %10.2f' % ('rsync -a --link-dest', '-', rsync_wall))
    floor = results['0 stop+start (floor)']
    book_extra = results['a book: stop, cp -a, start'][2] - floor[2]
    module_extra = results['b orthanc_backup, first'][2] - floor[2]
    print('  outage beyond the floor, Orthanc\'s own shutdown time taken out: book %.2f s, orthanc_backup %.2f s '
          '(target <= max(0.5 s, 10%% of book) = %.2f s); raw outage ratio (b)/(a) %.2f' % (
              book_extra, module_extra, max(0.5, 0.1 * book_extra),
              results['b orthanc_backup, first'][0] / results['a book: stop, cp -a, start'][0]))
    for label in ('b', 'c'):
        print('  (%s) module: duration %.2f s, downtime %.2f s (stopping %.2f s, index capture %.2f s), '
              'bytes copied %d, linked %d' % (
                  label, median(label, 'duration_seconds'), median(label, 'downtime_seconds'),
                  median(label, 'stop_seconds'), median(label, 'capture_seconds'),
                  median(label, 'bytes_copied'), median(label, 'bytes_linked')))
    print('  (d) freeze: Orthanc paused %.3f s (pause_seconds), never stopped; client-seen gap %.3f s with a '
          'probe every 20 ms; freeze outage / book outage %.3f' % (
              median('d', 'pause_seconds'), results['d orthanc_backup mode=freeze'][0],
              results['d orthanc_backup mode=freeze'][0] / results['a book: stop, cp -a, start'][0]))
    print('  (c) linked %d of the %d storage bytes; what it copied is the index and the configuration' % (
        median('c', 'bytes_linked'), storage_bytes))
    work_outside = median('c', 'duration_seconds') - median('c', 'downtime_seconds')
    print('  (c) work outside the outage %.2f s / rsync --link-dest %.2f s = %.2fx' % (
        work_outside, rsync_wall, work_outside / rsync_wall))


def main():
    args = synthesis_options(sizes.parser(__doc__, repeat=3)).parse_args()
    sizes.each_size(args.instances, lambda count, work: bench(args.collections, count, args.pixels, args.repeat, work,
                                                              args.synthesize_above, args.file_bytes))


if __name__ == '__main__':
    main()
