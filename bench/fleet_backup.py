# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the backup playbook scales over a fleet: wall time for N hosts against N x one host.

For each N, N SQLite Orthanc servers with a little data each, reached over real SSH (a private
sshd on 127.0.0.x) plus a backup host, and the whole backup playbook (local backup, rsync to the
backup host, verification there, report) with forks >= N and serial = N. Every run starts from
empty repositories, so every run does the same work. Prints medians and the ratio T(N) / T(1).

    make bench-fleet BENCH_ARGS="--sizes 1,4,8 --repeat 3"
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))

from fleet import Fleet, Sshd  # noqa: E402
from harness import Orthanc, make_instances  # noqa: E402


def measure(size, instances, repeat, collections, root):
    servers = [Orthanc(os.path.join(root, 'pacs%d' % number)) for number in range(size)]
    sshd = Sshd(os.path.join(root, 'sshd'), ['127.0.0.%d' % number for number in range(2, size + 3)])
    fleet = Fleet(root, sshd, collections)
    try:
        for number, server in enumerate(servers):
            server.start()
            server.upload(make_instances(patients=1, studies=1, series=1, instances=instances))
            fleet.add_orthanc('pacs%d' % number, '127.0.0.%d' % (number + 2), server)
        fleet.add_host('backup1', '127.0.0.%d' % (size + 2), 'backup')
        central = os.path.join(root, 'central')
        extra = {'orthanc_backup_hosts': 'orthanc', 'orthanc_backup_serial': size,
                 'orthanc_backup_repository_host': 'backup1', 'orthanc_backup_repository_path': central,
                 'orthanc_backup_repository_ssh_args': sshd.ssh_args,
                 'orthanc_backup_report_dir': os.path.join(root, 'report')}
        os.environ['ANSIBLE_FORKS'] = str(max(size, 5))
        times = []
        for dummy in range(repeat):
            for folder in [central] + [os.path.join(root, 'pacs%d' % number, 'repository') for number in range(size)]:
                shutil.rmtree(folder, ignore_errors=True)
            rc, output, seconds = fleet.run_playbook('backup', extra)
            if rc != 0:
                raise SystemExit('the backup playbook failed for N=%d:\n%s' % (size, output[-4000:]))
            times.append(seconds)
        return statistics.median(times)
    finally:
        fleet.close()
        for server in servers:
            server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--collections', required=True, help='folder holding ansible_collections/orthanc_ops/backup')
    parser.add_argument('--sizes', default='1,4,8')
    parser.add_argument('--instances', type=int, default=20, help='instances per Orthanc')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--pipelining', action='store_true', help='with ANSIBLE_PIPELINING=True')
    args = parser.parse_args()
    if args.pipelining:
        os.environ['ANSIBLE_PIPELINING'] = 'True'
    results = {}
    for size in [int(value) for value in args.sizes.split(',')]:
        root = tempfile.mkdtemp(prefix='orthanc-bench-fleet-')
        try:
            results[size] = measure(size, args.instances, args.repeat, args.collections, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print('N=%d: %.1f s' % (size, results[size]), flush=True)
    single = results.get(1)
    print('\n| hosts N | playbook wall time (median of %d%s) | N x one host | T(N) / T(1) |'
          % (args.repeat, ', pipelining' if args.pipelining else ''))
    print('|---|---|---|---|')
    for size, seconds in results.items():
        together = '%.1f s' % (size * single) if single else '-'
        ratio = '%.2f' % (seconds / single) if single else '-'
        print('| %d | %.1f s | %s | %s |' % (size, seconds, together, ratio))


if __name__ == '__main__':
    main()
