#!/usr/bin/env python3
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Outage and wall time of a cold SQLite backup: orthanc_backup against the naive ways.

For each N, a fresh Orthanc with N synthetic instances, and in the same run:
  (0) stop + start, the floor; (a) the Orthanc Book's procedure: stop, cp -a, start;
  (b) orthanc_backup; (c) orthanc_backup again with nothing changed; and, as the anchor
  for (c), rsync -a --link-dest of the same storage against a previous rsync copy.
The outage is what a client sees: GET /system every 20 ms, the longest gap between answers.

    make bench BENCH_ARGS="--instances 2000 20000"
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))

from harness import Ansible, Orthanc, make_instance  # noqa: E402


class Prober(threading.Thread):
    """Polls GET /system every 20 ms; the longest gap between two answers is the outage."""

    def __init__(self, orthanc):
        super().__init__(daemon=True)
        self.orthanc = orthanc
        self.answers = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.orthanc.api('GET', '/system', timeout=1)
                self.answers.append(time.monotonic())
            except OSError:
                pass
            time.sleep(0.02)

    def outage(self):
        self.done.set()
        self.join()
        return max((b - a for a, b in zip(self.answers, self.answers[1:])), default=0.0)


def measured(orthanc, action):
    """(client-seen outage, wall time) of action()."""
    prober = Prober(orthanc)
    prober.start()
    time.sleep(0.2)
    start = time.monotonic()
    action()
    wall = time.monotonic() - start
    time.sleep(0.2)
    return prober.outage(), wall


def seed(orthanc, count, pixels):
    def upload(number):
        orthanc.api('POST', '/instances', make_instance(number // 200, number // 50 % 4, number // 10 % 5, number, pixels))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(upload, range(count)))


def sh(command):
    subprocess.run(command, shell=True, check=True)


def bench(collections, count, pixels, work):
    orthanc = Orthanc(os.path.join(work, 'orthanc'))
    orthanc.start()
    seeded = time.monotonic()
    seed(orthanc, count, pixels)
    print('N=%d: seeded in %.0f s, %d MiB of storage' % (
        count, time.monotonic() - seeded,
        sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(orthanc.storage_dir) for f in fs) >> 20))
    ansible = Ansible(collections, work)
    repository = os.path.join(work, 'repository')
    params = orthanc.module_params(repository=repository, instance='bench')
    results = {}

    def restart():
        orthanc.stop()
        orthanc.start()
    results['0 stop+start'] = measured(orthanc, restart)

    def book():
        target = os.path.join(work, 'book')
        orthanc.stop()
        sh('mkdir -p %s && cp -a %s %s/storage && cp -a %s %s/config.json' % (
            target, orthanc.storage_dir, target, orthanc.config, target))
        orthanc.start()
    results['a book: stop+cp -a+start'] = measured(orthanc, book)

    outputs = {}

    def module(label):
        def run():
            result, rc, output = ansible.run('orthanc_backup', params)
            assert rc == 0, output
            outputs[label] = result
        return run
    results['b orthanc_backup'] = measured(orthanc, module('b'))
    results['c orthanc_backup, unchanged'] = measured(orthanc, module('c'))

    sh('rsync -a %s/ %s/rsync1/' % (orthanc.storage_dir, work))
    start = time.monotonic()
    sh('rsync -a --link-dest=%s/rsync1/ %s/ %s/rsync2/' % (work, orthanc.storage_dir, work))
    rsync_wall = time.monotonic() - start
    orthanc.stop()

    floor = results['0 stop+start'][0]
    print('  %-30s %10s %10s' % ('', 'outage s', 'wall s'))
    for label, (outage, wall) in results.items():
        print('  %-30s %10.2f %10.2f' % (label, outage, wall))
    print('  %-30s %10s %10.2f' % ('rsync -a --link-dest', '-', rsync_wall))
    book_extra = results['a book: stop+cp -a+start'][0] - floor
    module_extra = results['b orthanc_backup'][0] - floor
    print('  outage beyond the floor: book %.2f s, orthanc_backup %.2f s (target <= %.2f s)' % (
        book_extra, module_extra, max(0.5, 0.1 * book_extra)))
    print('  (b) outage / (a) outage: %.2f; (c) bytes copied: %d storage bytes (%d with index and config), '
          'linked %d' % (
              results['b orthanc_backup'][0] / results['a book: stop+cp -a+start'][0],
              outputs['c']['bytes_copied'] - sum(os.path.getsize(os.path.join(orthanc.index_dir, n))
                                                 for n in os.listdir(orthanc.index_dir) if n.startswith('index'))
              - os.path.getsize(orthanc.config),
              outputs['c']['bytes_copied'], outputs['c']['bytes_linked']))
    for label in ('b', 'c'):
        result = outputs[label]
        print('  (%s) module: duration %.2f s, downtime %.2f s, work outside the outage %.2f s' % (
            label, result['duration_seconds'], result['downtime_seconds'],
            result['duration_seconds'] - result['downtime_seconds']))
    print('  (c) work outside the outage / rsync --link-dest: %.2fx' % (
        (outputs['c']['duration_seconds'] - outputs['c']['downtime_seconds']) / rsync_wall))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--collections', required=True, help='folder holding ansible_collections/orthanc_ops/backup')
    parser.add_argument('--instances', type=int, nargs='+', default=[20000])
    parser.add_argument('--pixels', type=int, default=96, help='image side in pixels (file size ~ pixels^2 bytes)')
    args = parser.parse_args()
    for count in args.instances:
        work = tempfile.mkdtemp(prefix='orthanc-bench-')
        try:
            bench(args.collections, count, args.pixels, work)
        finally:
            subprocess.run('start-stop-daemon --stop --quiet --retry TERM/30/KILL/5 --pidfile %s/orthanc/orthanc.pid'
                           % work, shell=True, check=False)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
