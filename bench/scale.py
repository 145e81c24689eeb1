# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the modules scale: wall time against the plain tools on the same files, and peak memory.

For each N, a SQLite Orthanc with N synthetic instances, and in the same run, medians of a few runs of:
  - a full backup (mode=freeze, no earlier backup) against `cp -a` of the storage, and against `cp -a`
    followed by `sync` (a backup is complete only once it is on disk);
  - a backup with nothing changed against `rsync -a --link-dest` of the storage;
  - a restore of that backup, its work beyond Orthanc's own stop and start, against `cp -a
    --no-preserve=links` of the backup's storage (its files are hard links shared with the other
    backups, which `cp -a` would track one by one);
  - verify with check_md5 against `find -type f | xargs md5sum` of the same backup;
  - the check every run makes of every backup (verify backup=all, 32 files of each read at random, the
    repository holding two backups) against that same `md5sum` of one backup;
  - the audit with check_md5;
and how long each backup paused Orthanc.
Each module runs as its own process (its arguments in a file), and reports its peak resident memory
(VmHWM) as it exits, with the size of the backup's listing of files; a file creation timed right after a mass deletion is slowed by
this machine's ext4, so earlier copies are moved aside and deleted at the end, and every timed step
starts from a synced page cache (with --cold, an empty one).

Up to --synthesize-above instances, they are uploaded to Orthanc. Above, ingest would take hours, so
they are written straight into a stopped Orthanc's SQLite index (one Resources and one AttachedFiles row
each, under one series that Orthanc created, its triggers keeping the statistics) and storage (files of
--file-bytes distinct bytes each, with their true MD5s): Orthanc starts and answers on them, which is all
the backup, restore, verify and audit read.

    make bench-scale BENCH_ARGS="--instances 20000 100000 1000000 --repeat 1"
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sizes  # noqa: E402
from harness import Orthanc, seed  # noqa: E402


# Runs a module as __main__ and, at its exit, reports the high-water mark of its own memory: the rusage
# of a child counts the memory of the process it was forked from, which at 100,000 instances is this one.
LAUNCHER = """
import atexit, runpy, sys
def peak():
    with open('/proc/self/status') as status:
        sys.stderr.write(''.join(line for line in status if line.startswith('VmHWM:')))
atexit.register(peak)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
"""


def settle(cold):
    """Before a timed step: every dirty page written out (a backup syncs before it calls itself complete, so
    nobody else's pages may be counted in) and, when ``cold``, the page cache emptied, so that no step reads
    what an earlier one left in memory (at 1,000,000 instances the trees outgrow the memory, and whichever
    step runs second would find the other's files cached)."""
    os.sync()
    if cold:
        with open('/proc/sys/vm/drop_caches', 'w') as caches:
            caches.write('3\n')


class Runner:
    """Runs one module of the collection as a plain process and keeps its result and peak memory."""

    def __init__(self, collections, work, cold=False):
        self.collections, self.work, self.cold = collections, work, cold

    def run(self, module, params):
        settle(self.cold)
        arguments = os.path.join(self.work, 'arguments.json')
        with open(arguments, 'w') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': dict(params, _ansible_tmpdir=tempfile.mkdtemp(dir=self.work))}, handle)
        started = time.monotonic()
        process = subprocess.run(
            [sys.executable, '-c', LAUNCHER, 'ansible_collections.orthanc_ops.backup.plugins.modules.' + module,
             arguments], capture_output=True, env=dict(os.environ, PYTHONPATH=self.collections), check=False)
        wall = time.monotonic() - started
        result = json.loads(process.stdout)
        assert process.returncode == 0 and not result.get('failed'), process.stdout
        peak_kib = int(process.stderr.decode().rsplit('VmHWM:', 1)[1].split()[0])
        return result, wall, peak_kib / 1024.0


def timed(command, cold=False):
    settle(cold)
    started = time.monotonic()
    subprocess.run(command, shell=True, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


class Aside:
    """Folders moved out of the way between runs and deleted once the timing is over."""

    def __init__(self, work):
        self.folder = os.path.join(work, 'aside')
        os.mkdir(self.folder)

    def __call__(self, path):
        if os.path.exists(path):
            os.rename(path, tempfile.mkdtemp(dir=self.folder) + '/old')


def synthesis_options(arguments):
    """The options of populate: above which count instances are synthesized, and the size of their files."""
    arguments.add_argument('--synthesize-above', type=int, default=200000,
                           help='above this many instances, write them into the index and storage directly')
    arguments.add_argument('--file-bytes', type=int, default=512, help='size of each synthesized file')
    return arguments


def populate(orthanc, count, pixels, synthesize_above, file_bytes):
    """Start ``orthanc`` holding ``count`` instances: uploaded up to ``synthesize_above``, synthesized above."""
    if count > synthesize_above:
        synthesize(orthanc, count, file_bytes)
    else:
        orthanc.start()
        seed(orthanc, count, pixels)


def synthesize(orthanc, count, file_bytes):
    """``count`` instances written into the index and storage of the stopped ``orthanc`` (see the top)."""
    orthanc.start()
    seed(orthanc, 1, 8)
    orthanc.stop()
    index = sqlite3.connect(os.path.join(orthanc.index_dir, 'index'))
    series, = index.execute('SELECT internalId FROM Resources WHERE resourceType = 3').fetchone()
    first, = index.execute('SELECT MAX(internalId) + 1 FROM Resources').fetchone()
    folders = set()
    for start in range(first, first + count - 1, 10000):
        resources, attachments = [], []
        for internal_id in range(start, min(start + 10000, first + count - 1)):
            name = str(uuid.uuid4())
            data = name.encode() * (file_bytes // len(name) + 1)
            data = data[:file_bytes]
            folder = os.path.join(orthanc.storage_dir, name[0:2], name[2:4])
            if folder not in folders:
                os.makedirs(folder, exist_ok=True)
                folders.add(folder)
            with open(os.path.join(folder, name), 'wb') as handle:
                handle.write(data)
            md5 = hashlib.md5(data).hexdigest()
            public_id = hashlib.sha1(name.encode()).hexdigest()
            resources.append((internal_id, 4, '-'.join(public_id[i:i + 8] for i in range(0, 40, 8)), series))
            attachments.append((internal_id, 1, name, file_bytes, file_bytes, 1, md5, md5))
        index.executemany('INSERT INTO Resources (internalId, resourceType, publicId, parentId) VALUES (?, ?, ?, ?)',
                          resources)
        index.executemany('INSERT INTO AttachedFiles (id, fileType, uuid, compressedSize, uncompressedSize, '
                          'compressionType, uncompressedMD5, compressedMD5) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                          attachments)
        index.commit()
    index.close()
    orthanc.start()
    assert orthanc.statistics()['CountInstances'] == count


def bench(collections, count, pixels, repeat, work, synthesize_above, file_bytes, cold):
    orthanc = Orthanc(os.path.join(work, 'orthanc'))
    populate(orthanc, count, pixels, synthesize_above, file_bytes)
    runner, aside = Runner(collections, work, cold), Aside(work)
    repository = os.path.join(work, 'repository')
    params = orthanc.module_params(repository=repository, instance='bench')
    rows = dict((name, []) for name in ('full', 'cp', 'cp sync', 'unchanged', 'rsync', 'restore', 'cp backup', 'verify',
                                        'md5sum', 'check all', 'audit', 'pause', 'pause unchanged'))
    memory = dict((name, []) for name in ('orthanc_backup', 'orthanc_restore', 'orthanc_backup_verify',
                                          'orthanc_backup_prune', 'orthanc_audit'))
    listing = []
    try:
        for number in range(repeat):
            aside(repository)
            result, wall, peak = runner.run('orthanc_backup', params)
            rows['full'].append(wall)
            rows['pause'].append(result['pause_seconds'])
            memory['orthanc_backup'].append(peak)
            copy = os.path.join(work, 'cp')
            aside(copy)
            rows['cp'].append(timed('cp -a %s %s' % (orthanc.storage_dir, copy), cold))
            synced = os.path.join(work, 'cp-synced')
            aside(synced)
            rows['cp sync'].append(timed('cp -a %s %s && sync' % (orthanc.storage_dir, synced), cold))
            result, wall, peak = runner.run('orthanc_backup', params)
            rows['unchanged'].append(wall)
            rows['pause unchanged'].append(result['pause_seconds'])
            memory['orthanc_backup'].append(peak)
            listing.append(sum(os.path.getsize(os.path.join(result['path'], name))
                               for name in ('manifest-files.jsonl.gz', 'manifest-storage.bin.gz')) / result['files'])
            rsync = os.path.join(work, 'rsync')
            aside(rsync)
            rows['rsync'].append(timed('rsync -a --link-dest=%s/ %s/ %s/' % (copy, orthanc.storage_dir, rsync), cold))
            backup = result['path']

            result, wall, peak = runner.run('orthanc_backup_verify', {'repository': repository, 'instance': 'bench',
                                                                      'check_md5': True})
            rows['verify'].append(wall)
            memory['orthanc_backup_verify'].append(peak)
            rows['md5sum'].append(timed('cd %s && find . -type f -print0 | xargs -0 md5sum' % backup, cold))
            result, wall, peak = runner.run('orthanc_backup_verify', {'repository': repository, 'instance': 'bench',
                                                                      'backup': 'all', 'sample_files': 32})
            assert len(result['backups']) == 2 and not result['changed_backups'], result
            rows['check all'].append(wall)
            memory['orthanc_backup_verify'].append(peak)

            copy = os.path.join(work, 'cp-backup')
            aside(copy)
            rows['cp backup'].append(timed('cp -a --no-preserve=links %s/storage %s' % (backup, copy), cold))
            # The replaced storage is kept (not deleted: a mass deletion would slow what follows).
            result, wall, peak = runner.run('orthanc_restore', params)
            rows['restore'].append(wall - result['downtime_seconds'])
            memory['orthanc_restore'].append(peak)

            result, wall, peak = runner.run('orthanc_audit', {'config': orthanc.config, 'check_md5': True})
            assert result['healthy'], result
            rows['audit'].append(wall)
            memory['orthanc_audit'].append(peak)

            # Measured in the plan of check mode, which walks every backup it would remove as a prune does.
            result, wall, peak = runner.run('orthanc_backup_prune', {'repository': repository, 'instance': 'bench',
                                                                     'keep_last': 1, '_ansible_check_mode': True})
            assert result['removed'], result
            memory['orthanc_backup_prune'].append(peak)
    finally:
        orthanc.stop()
    median = dict((name, statistics.median(values)) for name, values in rows.items())
    print('N=%d instances (%s), medians of %d runs, the module processes\' wall time%s:' % (
        count, '%d bytes each, synthesized' % file_bytes if count > synthesize_above
        else '%d KiB each' % (pixels * pixels // 1024), repeat, ', cold cache' if cold else ''))
    for label, ours, theirs, anchor in (
            ('full backup (freeze)', 'full', 'cp', 'cp -a of the storage'),
            ('full backup, synced', 'full', 'cp sync', 'cp -a of the storage, then sync'),
            ('backup, nothing changed', 'unchanged', 'rsync', 'rsync -a --link-dest'),
            ('restore beyond the restart', 'restore', 'cp backup', 'cp -a of the backup (no links)'),
            ('verify, check_md5', 'verify', 'md5sum', 'find | xargs md5sum'),
            ('2 backups, 32 files each', 'check all', 'md5sum', 'find | xargs md5sum of one')):
        ratio = median[ours] / median[theirs]
        print('  %-28s %7.2f s   %-34s %7.2f s   = %.2fx' % (label, median[ours], anchor, median[theirs], ratio))
    print('  %-28s %7.2f s' % ('audit, check_md5', median['audit']))
    print('  %-28s %7.3f s / %.3f s' % ('Orthanc paused: full / same', median['pause'], median['pause unchanged']))
    print('  peak memory: ' + ', '.join('%s %.0f MB' % (name, max(values)) for name, values in memory.items()))
    print('  listing of files: %.1f bytes per file' % statistics.median(listing))


def main():
    args = synthesis_options(sizes.parser(__doc__, repeat=3)).parse_args()
    sizes.each_size(args.instances, lambda count, work: bench(
        args.collections, count, args.pixels, args.repeat, work, args.synthesize_above, args.file_bytes, args.cold))


if __name__ == '__main__':
    main()
