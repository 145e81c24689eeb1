# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What authenticated backups cost: a backup with nothing changed, signed and checked with a backup_key, against
the same backup without a key, in the same run, and the authentication work alone.

For each N, a SQLite Orthanc with N instances written straight into its index and storage (files of
--file-bytes each, see scale.py), and two repositories, one per case, each
holding a full backup first. Then, alternately, a backup with nothing changed into each (mode=freeze, every
file linked to the previous backup), --repeat times: the keyed one signs its manifest, reads every backup's
manifest of the instance to know which are its own and checks the previous one's signature before it links
from it. Medians of the module processes' wall time, and their ratio.

    make bench-authentication BENCH_ARGS="--instances 100000 --repeat 5"
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sizes  # noqa: E402
from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest  # noqa: E402
from ansible_collections.orthanc_ops.backup.plugins.module_utils._authentication import BackupKey  # noqa: E402
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import Repository  # noqa: E402
from harness import Orthanc  # noqa: E402
from scale import Runner, populate, synthesis_options  # noqa: E402

KEY = 'bench-backup-key-' + 'k' * 47


def bench(collections, count, pixels, repeat, work, synthesize_above, file_bytes, cold):
    orthanc = Orthanc(os.path.join(work, 'orthanc'))
    populate(orthanc, count, pixels, synthesize_above, file_bytes)
    runner = Runner(collections, work, cold)
    cases = {'without a key': orthanc.module_params(repository=os.path.join(work, 'plain'), instance='bench'),
             'signed and checked': orthanc.module_params(repository=os.path.join(work, 'signed'), instance='bench',
                                                         backup_key=KEY)}
    walls = dict((case, []) for case in cases)
    try:
        for params in cases.values():
            runner.run('orthanc_backup', params)
        for dummy in range(repeat):
            for case, params in cases.items():
                result, wall, dummy = runner.run('orthanc_backup', params)
                assert result['bytes_linked'] > 0 and result['authenticated'] == ('backup_key' in params), result
                walls[case].append(wall)
    finally:
        orthanc.stop()
    plain, signed = (statistics.median(walls[case]) for case in cases)
    work_alone = statistics.median(_authentication_work(os.path.join(work, 'signed')) for dummy in range(21))
    print('N=%d instances, backup with nothing changed, medians of %d runs, the module processes\' wall time%s:'
          % (count, repeat, ', cold cache' if cold else ''))
    print('  without a key       %7.3f s' % plain)
    print('  signed and checked  %7.3f s   = %.4fx (%+.1f ms)' % (signed, signed / plain, (signed - plain) * 1000))
    print('  the authentication work alone (every manifest of the instance read and checked, one sealed), in one '
          'process: %.2f ms = %.3f%% of the backup without a key' % (work_alone * 1000, work_alone / plain * 100))


def _authentication_work(root):
    """Seconds of what a keyed no-change backup does beyond an unkeyed one: every backup folder's manifest read
    and its seal checked (the listing of the instance's backups), and its own manifest sealed."""
    started = time.perf_counter()
    key = BackupKey(KEY)
    repository = Repository(root, 'bench', key=key)
    newest = repository.backup_ids()[-1]
    values = _manifest.read_values(repository.backup_path(newest))
    assert key.problem(values) is None
    key.seal(values)
    return time.perf_counter() - started


def main():
    arguments = synthesis_options(sizes.parser(__doc__, repeat=5))
    arguments.set_defaults(synthesize_above=0)    # what is measured does not depend on real DICOM files
    args = arguments.parse_args()
    sizes.each_size(args.instances, lambda count, work: bench(
        args.collections, count, args.pixels, args.repeat, work, args.synthesize_above, args.file_bytes, args.cold))


if __name__ == '__main__':
    main()
