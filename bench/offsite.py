# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Off-site copies through restic: orthanc_offsite against restic run by hand on the same backup.

A SQLite Orthanc with N instances is backed up once; then, in the same run, medians of a few runs of:
  - push (a new restic repository each time) against `restic backup` of the backup's folder run by hand
    into another new repository;
  - pull (into an empty local repository, every file's MD5 checked and the copy synced to disk before it
    counts) against `restic restore` of the hand-made snapshot, against that restore followed by `sync`, and
    against the same job done by hand: that restore, `md5sum -c` of every file the manifest lists, and `sync`;
and the bytes restic adds for a push of a second backup with nothing changed, and for a push after 1% more
instances. Both sides use restic repositories on the local disk, so that the network plays no part.

    make bench-offsite BENCH_ARGS="--instances 20000 --repeat 2"
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sizes  # noqa: E402
from harness import Orthanc, seed  # noqa: E402
from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest  # noqa: E402
from scale import Aside, Runner, timed  # noqa: E402

PASSWORD = 'bench-password'


def bench(collections, count, pixels, repeat, work, cold):
    orthanc = Orthanc(os.path.join(work, 'orthanc'))
    orthanc.start()
    seed(orthanc, count, pixels)
    runner, aside = Runner(collections, work, cold), Aside(work)
    repository = os.path.join(work, 'repository')
    os.environ.update(RESTIC_PASSWORD=PASSWORD)
    rows = dict((name, []) for name in ('push', 'restic backup', 'pull', 'restic restore', 'restic restore sync',
                                        'restic restore md5sum sync'))
    try:
        backup, dummy, dummy = runner.run('orthanc_backup', orthanc.module_params(repository=repository,
                                                                                  instance='bench'))
        checksums = os.path.join(work, 'md5sums')
        with open(checksums, 'w') as handle:
            for relative, dummy, md5 in _manifest.read(backup['path']).entries():
                handle.write('%s  %s\n' % (md5, relative))
        for number in range(repeat):
            ours, theirs = os.path.join(work, 'restic-ours'), os.path.join(work, 'restic-by-hand')
            aside(ours)
            aside(theirs)
            offsite = {'offsite_repository': ours, 'offsite_password': PASSWORD, 'instance': 'bench'}
            subprocess.run(['restic', '-q', 'init', '-r', ours], check=True)
            subprocess.run(['restic', '-q', 'init', '-r', theirs], check=True)
            result, wall, peak = runner.run('orthanc_offsite', dict(offsite, operation='push', repository=repository))
            rows['push'].append(wall)
            rows['restic backup'].append(timed('cd %s && restic -q -r %s backup .' % (backup['path'], theirs), cold))

            pulled = os.path.join(work, 'pulled')
            aside(pulled)
            result, wall, peak = runner.run('orthanc_offsite', dict(offsite, operation='pull', repository=pulled))
            rows['pull'].append(wall)
            restored = os.path.join(work, 'restored')
            aside(restored)
            rows['restic restore'].append(timed('restic -q -r %s restore latest --target %s' % (theirs, restored),
                                                cold))
            synced = os.path.join(work, 'restored-synced')
            aside(synced)
            rows['restic restore sync'].append(timed('restic -q -r %s restore latest --target %s && sync'
                                                     % (theirs, synced), cold))
            checked = os.path.join(work, 'restored-checked')
            aside(checked)
            rows['restic restore md5sum sync'].append(timed(
                'restic -q -r %s restore latest --target %s && cd %s && md5sum --quiet -c %s && sync'
                % (theirs, checked, checked, checksums), cold))

        unchanged, dummy, dummy = runner.run('orthanc_backup', orthanc.module_params(repository=repository,
                                                                                     instance='bench'))
        second, wall, peak = runner.run('orthanc_offsite', dict(offsite, operation='push', repository=repository))
        before = orthanc.statistics()['TotalDiskSize']
        seed(orthanc, count // 100, pixels)
        added = int(orthanc.statistics()['TotalDiskSize']) - int(before)
        runner.run('orthanc_backup', orthanc.module_params(repository=repository, instance='bench'))
        third, wall, peak = runner.run('orthanc_offsite', dict(offsite, operation='push', repository=repository))
    finally:
        orthanc.stop()
    median = dict((name, statistics.median(values)) for name, values in rows.items())
    print('N=%d instances (%d KiB each), %d bytes in the backup, medians of %d runs:' % (
        count, pixels * pixels // 1024, backup['bytes_copied'] + backup['bytes_linked'], repeat))
    for label, mine, anchor in (('push', 'push', 'restic backup'), ('pull, MD5s checked', 'pull', 'restic restore'),
                                ('pull, MD5s checked', 'pull', 'restic restore sync'),
                                ('pull, MD5s checked', 'pull', 'restic restore md5sum sync')):
        ratio = median[mine] / median[anchor]
        print('  %-20s %7.2f s   %-28s %7.2f s   = %.2fx' % (label, median[mine], anchor, median[anchor], ratio))
    print('  push of an unchanged backup added %d bytes (%.3f%% of its %d bytes, %d files not read again)' % (
        second['bytes_added'], 100.0 * second['bytes_added'] / second['bytes'], second['bytes'],
        second['files_unmodified']))
    print('  push after %d more instances (%d bytes in Orthanc) added %d bytes (%.2fx their size)' % (
        count // 100, added, third['bytes_added'], third['bytes_added'] / float(added)))


def main():
    args = sizes.parser(__doc__, repeat=2).parse_args()
    sizes.each_size(args.instances, lambda count, work: bench(
        args.collections, count, args.pixels, args.repeat, work, args.cold))


if __name__ == '__main__':
    main()
