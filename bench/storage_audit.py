# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The storage audit: orthanc_audit against the naive way, on one Orthanc with N synthetic instances.

The naive way is what orthanc-tools' OrthancFilesChecker does: download every instance over REST and
compare its MD5 with the one Orthanc recorded. It finds missing and damaged DICOM files, never orphans.
In the same run, medians of a few runs of:
  - the naive way (one client, as that tool);
  - orthanc_audit with check_md5=true (reads every file too, and finds orphans);
  - orthanc_audit with check_md5=false (sizes only: reads no data);
both modules through ansible-playbook, start-up included, and their own duration_seconds; the audit
reads the index directly (a copy of the SQLite index taken while Orthanc is frozen: pause_seconds).

    make bench-audit BENCH_ARGS="--instances 5000 --pixels 512"
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))

from harness import Ansible, Orthanc, seed  # noqa: E402


def naive_check(orthanc):
    """Every instance downloaded and its MD5 compared with Orthanc's: (instances, problems)."""
    problems = 0
    instances = orthanc.instances()
    for instance in instances:
        data = orthanc.api('GET', '/instances/%s/file' % instance, raw=True)
        recorded = orthanc.api('GET', '/instances/%s/attachments/dicom/md5' % instance, raw=True).decode()
        problems += hashlib.md5(data).hexdigest() != recorded
    return len(instances), problems


def timed(action):
    start = time.monotonic()
    value = action()
    return time.monotonic() - start, value


def bench(collections, count, pixels, repeat, work):
    orthanc = Orthanc(os.path.join(work, 'orthanc'))
    try:
        orthanc.start()
        seed(orthanc, count, pixels=pixels)
        ansible = Ansible(collections, work)
        naive, full, sizes, full_own, sizes_own, pauses = [], [], [], [], [], []
        for dummy in range(repeat):
            seconds, (instances, problems) = timed(lambda: naive_check(orthanc))
            assert instances == count and problems == 0
            naive.append(seconds)
            for md5, walls, owns in ((True, full, full_own), (False, sizes, sizes_own)):
                seconds, (result, rc, output) = timed(
                    lambda: ansible.run('orthanc_audit', {'config': orthanc.config, 'check_md5': md5}))
                assert rc == 0 and result['healthy'] and result['referenced'] >= count, output
                assert result['index_read'] == 'direct', output
                walls.append(seconds)
                owns.append(result['duration_seconds'])
                pauses.append(result['pause_seconds'])
        base = statistics.median(naive)
        print('storage audit, N=%d instances of %d KiB (%d attachments), medians of %d runs:' % (
            count, pixels * pixels // 1024, result['referenced'], repeat))
        print('  naive: download and MD5 every instance   %6.2f s' % base)
        for label, walls, owns in (('orthanc_audit check_md5=true ', full, full_own),
                                   ('orthanc_audit check_md5=false', sizes, sizes_own)):
            print('  %s (playbook) %6.2f s = %.2fx the naive way; the module itself %.2f s = %.2fx' % (
                label, statistics.median(walls), statistics.median(walls) / base,
                statistics.median(owns), statistics.median(owns) / base))
        print('  Orthanc frozen for the index copy: median %.3f s, at most %.3f s (no request refused)'
              % (statistics.median(pauses), max(pauses)))
    finally:
        orthanc.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--collections', required=True, help='folder holding ansible_collections/orthanc_ops/backup')
    parser.add_argument('--instances', type=int, default=2000)
    parser.add_argument('--pixels', type=int, default=512, help='rows and columns of each 8-bit image (512: a CT slice)')
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix='orthanc-bench-')
    try:
        bench(args.collections, args.instances, args.pixels, args.repeat, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
