# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bringing back one deleted study: orthanc_recover against a full orthanc_restore of the same backup.

For each N, a fresh Orthanc (SQLite index) with N synthetic instances (studies of 50) and one backup;
then, in the same run and alternately, one study is deleted and brought back by (a) orthanc_restore of
the whole backup and (b) orthanc_recover of that study. The outage is what a client sees: GET /system
every 20 ms, the longest gap between answers (see sqlite_outage.py).

    make bench-recover BENCH_ARGS="--instances 20000 --repeat 3"
    make bench-recover BENCH_ARGS="--instances 20000 --pixels 512 --repeat 3"    # 256 KiB instances, 5 GB
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sizes  # noqa: E402
from harness import Ansible, Orthanc, seed  # noqa: E402
from sqlite_outage import Prober  # noqa: E402


def bench(collections, count, pixels, repeat, work):
    orthanc = Orthanc(os.path.join(work, 'orthanc'))
    orthanc.start()
    seed(orthanc, count, pixels)
    ansible = Ansible(collections, work)
    repository = os.path.join(work, 'repository')
    params = orthanc.module_params(repository=repository, instance='bench')
    result, rc, output = ansible.run('orthanc_backup', dict(params, mode='cold'))
    assert rc == 0, output
    study = orthanc.api('GET', '/studies')[0]
    size = len(orthanc.api('GET', '/studies/%s/instances' % study))
    print('N=%d: backup %s, one study of %d instances deleted and brought back, medians of %d runs'
          % (count, result['backup_id'], size, repeat))
    ways = {
        'a orthanc_restore (whole backup)': ('orthanc_restore', dict(params, keep_previous=False)),
        'b orthanc_recover (the study)': ('orthanc_recover', {'config': orthanc.config, 'repository': repository,
                                                              'instance': 'bench', 'resources': [study]}),
    }
    walls, outages, failures = dict((label, []) for label in ways), dict((label, []) for label in ways), {}
    inside, sandbox = dict((label, []) for label in ways), []
    for dummy in range(repeat):
        for label, (module, module_params) in ways.items():
            orthanc.api('DELETE', '/studies/%s' % study)
            prober = Prober(orthanc)
            prober.start()
            time.sleep(0.3)
            started = time.monotonic()
            process, out = ansible.start(module, module_params)
            output, dummy = process.communicate(timeout=1800)
            walls[label].append(time.monotonic() - started)
            assert process.returncode == 0 and os.path.exists(out), output
            result = ansible.result(out)
            inside[label].append(result['duration_seconds'])
            if module == 'orthanc_recover':
                sandbox.append(result['sandbox_start_seconds'])
            time.sleep(0.3)
            outages[label].append(prober.outage())
            failures[label] = failures.get(label, 0) + prober.failures
            assert len(orthanc.api('GET', '/studies/%s/instances' % study)) == size
    orthanc.stop()
    print('  %-34s %10s %10s %16s' % ('', 'wall s', 'outage s', 'failed requests'))    # wall: the whole ansible-playbook
    for label in ways:
        print('  %-34s %10.2f %10.2f %16d'
              % (label, statistics.median(walls[label]), statistics.median(outages[label]), failures[label]))
    ratio = statistics.median(walls['b orthanc_recover (the study)']) / statistics.median(
        walls['a orthanc_restore (whole backup)'])
    print('  recovery / full restore, wall time: %.3fx (target <= 0.1x); recovery outage %.2f s (target 0 s)'
          % (ratio, statistics.median(outages['b orthanc_recover (the study)'])))
    recover, restore = (statistics.median(inside[label])
                        for label in ('b orthanc_recover (the study)', 'a orthanc_restore (whole backup)'))
    print('  inside the modules (duration_seconds, without ansible-playbook\'s own start): recovery %.2f s, of which '
          'the throwaway Orthanc took %.2f s to answer; full restore %.2f s; ratio %.3fx'
          % (recover, statistics.median(sandbox), restore, recover / restore))


def main():
    args = sizes.parser(__doc__, repeat=3).parse_args()
    sizes.each_size(args.instances, lambda count, work: bench(args.collections, count, args.pixels, args.repeat, work))


if __name__ == '__main__':
    main()
