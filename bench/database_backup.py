# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hot backups of PostgreSQL and MariaDB Orthanc servers: orthanc_backup against the bare tools.

For each backend, a fresh Orthanc (index in the database, files on disk) with N synthetic
instances, and in the same run, medians of a few runs of:
  - the naive way: pg_dump -Fc / mariadb-dump --single-transaction, then cp -a of the storage;
  - orthanc_backup through ansible-playbook (the first backup of a repository each time);
and the latency of GET /statistics (median, p99) from a client during the module's runs
against the same client while Orthanc is idle.

    make bench-databases BENCH_ARGS="--instances 5000"
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))

from harness import Ansible, MysqlDatabase, Orthanc, PostgresDatabase, seed  # noqa: E402

BACKENDS = {'postgresql': PostgresDatabase, 'mysql': MysqlDatabase}


def naive_dump(database, target):
    if isinstance(database, PostgresDatabase):
        subprocess.run(['pg_dump', '-Fc', '-h', '127.0.0.1', '-U', database.user, '-f', target, database.name],
                       env=dict(os.environ, PGPASSWORD=database.password), check=True)
    else:
        options = target + '.cnf'
        with open(os.open(options, os.O_WRONLY | os.O_CREAT, 0o600), 'w') as handle:
            handle.write('[client]\nuser=%s\npassword=%s\nhost=127.0.0.1\nprotocol=tcp\n' % (
                database.user, database.password))
        subprocess.run(['mariadb-dump', '--defaults-extra-file=' + options, '--single-transaction', '--hex-blob',
                        '--no-tablespaces', '--routines', '--result-file=' + target, database.name], check=True)


class Latency(threading.Thread):
    """GET /statistics in a loop; the latencies of the requests made."""

    def __init__(self, orthanc):
        super().__init__(daemon=True)
        self.orthanc, self.samples, self.done = orthanc, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            start = time.monotonic()
            self.orthanc.api('GET', '/statistics')
            self.samples.append(time.monotonic() - start)
            time.sleep(0.01)

    def stop(self):
        self.done.set()
        self.join()
        return self.samples


def summary(samples):
    """(median, p99, count) of latencies."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1], len(ordered)


def bench(backend, collections, count, repeat, work):
    database = BACKENDS[backend]('orthanc_bench_%d' % os.getpid())
    orthanc = None
    try:
        orthanc = Orthanc(os.path.join(work, 'orthanc'), database=database)
        orthanc.start()
        seed(orthanc, count)
        ansible = Ansible(collections, work)
        repository = os.path.join(work, 'repository')
        params = orthanc.module_params(repository=repository, instance='bench')

        naive, module, durations = [], [], []
        idle = Latency(orthanc)
        idle.start()
        time.sleep(3)
        idle_latency = summary(idle.stop())
        busy = []
        for dummy in range(repeat):
            # Interleaved, each from a clean page cache state: the disk is shared and noisy.
            copy = os.path.join(work, 'naive')
            shutil.rmtree(copy, ignore_errors=True)
            os.makedirs(copy)
            os.sync()
            start = time.monotonic()
            naive_dump(database, os.path.join(copy, 'dump'))
            subprocess.run(['cp', '-a', orthanc.storage_dir, os.path.join(copy, 'storage')], check=True)
            naive.append(time.monotonic() - start)
            shutil.rmtree(repository, ignore_errors=True)
            os.sync()
            during = Latency(orthanc)
            during.start()
            start = time.monotonic()
            result, rc, output = ansible.run('orthanc_backup', params)
            module.append(time.monotonic() - start)
            busy.extend(during.stop())
            assert rc == 0, output
            durations.append(result['duration_seconds'])
            timings = result['timings']
        busy_latency = summary(busy)

        print('%s, N=%d, medians of %d runs:' % (backend, count, repeat))
        print('  naive dump + cp -a          %6.2f s' % statistics.median(naive))
        print('  orthanc_backup (module)     %6.2f s  = %.2fx the naive way' % (
            statistics.median(durations), statistics.median(durations) / statistics.median(naive)))
        print('  last module run: snapshot of the files %.2f s, dump with the files held %.2f s' % (
            timings['snapshot_seconds'], timings['capture_seconds']))
        print('  orthanc_backup (playbook)   %6.2f s  = %.2fx (ansible-playbook start-up included)' % (
            statistics.median(module), statistics.median(module) / statistics.median(naive)))
        print('  GET /statistics idle:   median %.1f ms, p99 %.1f ms (%d requests)' % (
            idle_latency[0] * 1000, idle_latency[1] * 1000, idle_latency[2]))
        print('  GET /statistics during backup: median %.1f ms, p99 %.1f ms (%d requests, all answered)' % (
            busy_latency[0] * 1000, busy_latency[1] * 1000, busy_latency[2]))
    finally:
        if orthanc:
            orthanc.stop()
        database.drop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--collections', required=True, help='folder holding ansible_collections/orthanc_ops/backup')
    parser.add_argument('--instances', type=int, default=5000)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--backends', nargs='+', default=sorted(BACKENDS), choices=sorted(BACKENDS))
    args = parser.parse_args()
    for backend in args.backends:
        work = tempfile.mkdtemp(prefix='orthanc-bench-')
        try:
            bench(backend, args.collections, args.instances, args.repeat, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
