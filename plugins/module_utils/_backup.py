# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The backup phase: the one place that sequences snapshot, stop, index copy, start and manifest."""

from __future__ import annotations

import os
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends import registry
from ansible_collections.orthanc_ops.backup.plugins.module_utils._deployment import describe_deployment
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_SHOWN, Findings, OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._lock import orthanc_lock
from ansible_collections.orthanc_ops.backup.plugins.module_utils._phase import Phase
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import copy_file, file_md5, make_dirs, others_can_write
from ansible_collections.orthanc_ops.backup.plugins.module_utils._ledger import private_ledger
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import new_backup_id
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import TABLES, StorageSnapshot

# Room kept free beyond the estimate: the index may grow and new files may arrive meanwhile.
SPACE_MARGIN_BYTES = 64 * 1024 * 1024
SPACE_MARGIN_RATIO = 1.1
# Uuids of the files missing from the live storage that a result and a manifest name.
LIVE_MISSING_LISTED = 100
# The most of a failed run's reason kept in the instance's history.
RUN_ERROR_LENGTH = 300
# Files linked from the previous backup whose live copy is read again, at random: a storage encrypted in place is
# found by the next backup (all of 32 files differ), at the cost of reading 32 files.
LIVE_SAMPLE = 32
# A jump in new bytes: more than JUMP_RATIO times the most any of the last JUMP_RUNS complete runs took (at least
# JUMP_MIN_RUNS of them), and more than JUMP_SHARE of the backup. A normal day adds a small share of the archive;
# a mass change (an import or re-import, a flood, an index grown many times over) adds most of it. A storage
# encrypted in place is no jump: its files are linked, and the live sample fails the backup.
JUMP_RATIO = 10
JUMP_RUNS = 14
JUMP_MIN_RUNS = 3
JUMP_SHARE = 0.25
# Freezes, and stops, a backup may make: the last holds Orthanc quiesced until its files are taken (see
# _capture_in_rounds). A stop costs Orthanc's shutdown and start, so a cold backup makes two at most.
FREEZE_ROUNDS = 3
STOP_ROUNDS = 2


class PauseTooLong(OrthancOpsError):
    """A freeze that reached max_pause: Orthanc was continued and nothing counts as backed up."""

    def __init__(self, seconds, max_pause, index_bytes):
        self.freeze = 'Orthanc was frozen for %.3f s, longer than max_pause (%g s): it was continued.' % (
            seconds, max_pause)
        super().__init__('%s This backup was not completed, so the previous backup stays the latest. Raise max_pause, '
                         'or use mode=cold (or auto) for this index (%d MiB).' % (self.freeze, index_bytes // 2**20),
                         pause_seconds=round(seconds, 3))


def _utc_iso():
    return datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


class Backup(Phase):
    """The backup of one Orthanc into its repository: the storage snapshot taken while Orthanc serves, the index
    captured in the backup's mode (freeze, cold or hot), and the manifest that makes the backup complete."""

    def __init__(self, module):
        super().__init__(module)
        params = self.params
        self.index_backend = self.backend.name
        self.storage_backend, dummy = registry.storage_backend(self.config)
        self.mode = self.backend.modes[0] if params['mode'] == 'auto' else params['mode']
        # Only the default may trade a freeze that would be too long for a stop; an explicit mode is kept.
        self.may_fall_back = params['mode'] == 'auto' and 'cold' in self.backend.modes
        if self.mode not in self.backend.modes:
            raise OrthancOpsError('mode=%s is not possible with the %s index (possible: %s).'
                                  % (self.mode, self.index_backend, ', '.join(self.backend.modes)))
        self.repository = self.open_repository()
        self.storage_dir = self.config.storage_dir
        self.files_on_disk = registry.files_on_disk(self.config)
        self.consistent_at = None

    def _previous(self, snapshot):
        """The id of the backup to link unchanged files from, its files recorded in the snapshot's ledger."""
        if not self.params['link']:
            return None

        def load(manifest):
            # A file is linked by its size, unread: only from a backup nobody else can have rewritten since.
            problem = others_can_write(manifest.folder)
            if problem:
                raise OrthancOpsError('no file is linked from it, others can change it (%s)' % problem)
            # Every entry read, so that the listing's checks at its end run before any file is linked.
            snapshot.load_previous(manifest.storage_files())

        backup_id, manifest = self.repository.latest(load)
        if manifest is None:
            return None
        snapshot.previous_backup = self.repository.backup_path(backup_id)
        return backup_id

    def plan(self, snapshot, previous_id):
        """What a backup would do, as check mode reports it: the backends, the mode, the backup to link from, the
        service, and the files and bytes to copy."""
        index_bytes = self.backend.estimate_bytes()
        config_bytes = sum(os.path.getsize(path) for path in self.config.files) if self.params['include_config'] else 0
        plan = {
            'instance': self.repository.instance,
            'repository': self.repository.path,
            'index_backend': self.index_backend,
            'storage_backend': self.storage_backend,
            'mode': self.mode,
            'previous_backup': previous_id,
            'orthanc_running': self.service.is_running(),
            'service': self.service.describe(),
        }
        plan.update(snapshot.plan())
        plan['bytes_to_copy'] += index_bytes + config_bytes
        return plan

    @contextmanager
    def _snapshot(self):
        """The storage snapshot, its ledger in a private folder of the repository (the system's temporary
        folder in check mode, which writes nothing there), removed afterwards."""
        with private_ledger(None if self.module.check_mode else self.repository.path, TABLES) as ledger:
            yield StorageSnapshot(self.storage_dir, ledger)

    def _listed(self, snapshot):
        """The live storage and the previous backup recorded in the snapshot's ledger; (plan, previous id). The
        previous backup's listing is read in a thread meanwhile: the live listing waits on the disk (its folders
        are read by worker processes), the reading of a listing on the processor."""
        with ThreadPoolExecutor(1) as reader:
            previous = reader.submit(self._previous, snapshot)
            live_count = snapshot.list_live() if self.files_on_disk else 0
        previous_id = previous.result()
        plan = self.plan(snapshot, previous_id)
        if self.files_on_disk and not live_count and plan['orthanc_running']:
            self._check_storage_not_lost()
        return plan, previous_id

    def run(self):
        started = time.monotonic()
        if self.module.check_mode:
            self.check_target()
            with self._snapshot() as snapshot:
                return {'changed': True, 'plan': self._listed(snapshot)[0],
                        'msg': 'check mode: nothing was stopped or written'}
        started_id = new_backup_id()
        try:
            result = self._run(started)
        except Exception as exc:
            self._record(started_id, started, {'status': 'failed', 'error': str(exc)[:RUN_ERROR_LENGTH]})
            raise
        self._record(started_id, started, {
            'status': 'incomplete' if result['live_missing_count'] else 'complete', 'backup_id': result['backup_id'],
            'pause_seconds': result['pause_seconds'], 'bytes': result['bytes_copied'] + result['bytes_linked'],
            'new_bytes': result['bytes_copied']})
        return result

    def _record(self, started_id, started, run):
        """Keep this run in the instance's history, which the fleet report shows; one that cannot be kept is said,
        never the run's failure."""
        run.update(started=started_id, duration_seconds=round(time.monotonic() - started, 3))
        try:
            self.repository.record_run(run)
        except OSError as exc:
            self.module.warn('This backup run could not be kept in the history of %s: %s.' % (self.repository.path, exc))

    def _run(self, started):
        self.check_target()
        with self.repository.locked('backup'), orthanc_lock(self.config.identity, 'backup'):
            self.repository.clean_partials()
            with self._snapshot() as snapshot:
                plan, previous_id = self._listed(snapshot)
                self._check_space(plan['bytes_to_copy'])
                return self._run_locked(started, snapshot, previous_id, plan['orthanc_running'])

    def _check_storage_not_lost(self):
        """An empty storage folder under an Orthanc that holds instances is a lost mount or a wrong path."""
        instances = self.rest.statistics().get('CountInstances') or 0
        if instances and not self.params['allow_missing_files']:
            raise OrthancOpsError('The storage folder %s holds no DICOM file, but Orthanc holds %d instance(s): the '
                                  'storage is not mounted there, or StorageDirectory is not the folder Orthanc uses. '
                                  'Nothing was stopped or written. Fix the mount or the configuration (or set '
                                  'allow_missing_files to back up a damaged Orthanc knowingly).'
                                  % (self.storage_dir, instances))

    def _check_space(self, needed):
        free = self.repository.free_bytes()
        wanted = int(needed * SPACE_MARGIN_RATIO) + SPACE_MARGIN_BYTES
        if free < wanted:
            raise OrthancOpsError('Not enough free space in %s: the backup needs about %d MiB, %d MiB are free. '
                                  'Free space there, or point "repository" elsewhere. Nothing was stopped.'
                                  % (self.repository.path, wanted // 2**20, free // 2**20))

    def _run_locked(self, started, snapshot, previous_id, was_running):
        """Make the backup in a .partial folder and make it complete (manifest written, folder renamed); any
        failure removes the partial folder, so no partial backup ever counts. The module's result."""
        started_at = _utc_iso()
        software = self.rest.software() if was_running else {}
        backup_id, partial = self.repository.new_partial()
        try:
            manifest, files = self._make(backup_id, partial, snapshot, previous_id, was_running)
            manifest['new_bytes_jump'] = self._new_bytes_jump(backup_id, manifest, previous_id)
            manifest.update(started_at=started_at, finished_at=_utc_iso(), orthanc_version=software.get('orthanc_version'),
                            database_version=software.get('database_version'), plugins=software.get('plugins'))
            manifest['timings']['duration_seconds'] = round(time.monotonic() - started, 3)
            path = self.repository.finalize(backup_id, partial, manifest, [
                (relative,) + tuple(files[relative]) for relative in sorted(files, key=_manifest.sort_key)], snapshot.entries())
        except BaseException as exc:
            shutil.rmtree(partial, ignore_errors=True)
            if isinstance(exc, OSError):
                raise OrthancOpsError('Writing the backup failed: %s. The partial backup was removed; fix the '
                                      'cause (free space, permissions) and run again.' % exc)
            raise
        return {
            'changed': True,
            'backup_id': backup_id,
            'path': path,
            'previous_backup': previous_id,
            'authenticated': self.repository.key is not None,
            'consistent_at': manifest['consistent_at'],
            'index_backend': self.index_backend,
            'storage_backend': self.storage_backend,
            'downtime_seconds': manifest['timings']['downtime_seconds'],
            'pause_seconds': manifest['timings']['pause_seconds'],
            # The manifest's own figure ends before the manifest is written; this one after, as the user waits.
            'duration_seconds': round(time.monotonic() - started, 3),
            'files': len(files) + snapshot.taken_count(),
            'bytes_copied': manifest['bytes_copied'],
            'bytes_linked': manifest['bytes_linked'],
            'orphans_skipped': manifest['orphans_skipped'],
            'missing_attachments': manifest['missing_attachments'],
            'live_missing_count': manifest['live_missing_count'],
            'live_missing': manifest['live_missing'],
            'md5_mismatches': manifest['md5_mismatches'],
            'live_checked': manifest['live_checked'],
            'live_changed': manifest['live_changed'],
            'new_bytes_jump': manifest['new_bytes_jump'],
            'counts': manifest['counts'],
            'timings': manifest['timings'],
        }

    def _make(self, backup_id, partial, snapshot, previous_id, was_running):
        """The backup's description, and its files beside the storage snapshot's: {path: (size, md5)}."""
        files = self._copy_config(partial)
        timings = {'snapshot_seconds': 0.0, 'stop_seconds': 0.0, 'capture_seconds': 0.0, 'downtime_seconds': 0.0,
                   'pause_seconds': 0.0}
        step = time.monotonic()
        self._take_ahead(partial, snapshot, was_running)
        timings['snapshot_seconds'] = time.monotonic() - step
        index_files, counts, missing, live_missing = self._timed_capture(partial, snapshot, was_running, timings)
        self._check_live_files(live_missing, counts['attachments'])
        for relative, entry in index_files.items():
            # The MD5 left out by a capture that had to be quick: Orthanc runs again now.
            files[relative] = (entry['size'], entry['md5'] or file_md5(relative, beneath=partial))
        mismatches = snapshot.mismatches()
        self._warn_findings(missing, mismatches)
        live_checked, live_changed, backup_changed = snapshot.changed_since(LIVE_SAMPLE)
        self._check_changed_files(live_checked, live_changed, backup_changed, previous_id)
        if snapshot.unlinkable:
            self.module.warn('%d file(s) that backup %s lists are not there as listed (missing, of another size, '
                             'not a regular file): they were copied from the live storage instead. Run '
                             'orthanc_backup_verify on %s to see what happened to it.'
                             % (snapshot.unlinkable, previous_id, previous_id))
        return {
            'collection_version': _manifest.COLLECTION_VERSION,
            'status': 'complete',
            'backup_id': backup_id,
            'instance': self.repository.instance,
            'host': socket.gethostname(),
            'mode': self.mode,
            'index_backend': self.index_backend,
            'storage_backend': self.storage_backend,
            'storage_compression': self.config.storage_compression,
            'config_path': self.config.inside,
            'deployment': describe_deployment(self.module, self.config),
            'config_is_folder': os.path.isdir(self.config.path),
            'storage_dir': self.storage_dir,
            'index_dir': self.config.index_dir,
            'previous_backup': previous_id,
            'consistent_at': self.consistent_at,
            'counts': counts,
            'orphans_skipped': snapshot.orphans(),
            'missing_attachments': missing,
            'live_missing_count': live_missing.count,
            'live_missing': live_missing[:LIVE_MISSING_LISTED],
            'md5_mismatches': mismatches,
            'live_checked': live_checked,
            'live_changed': live_changed,
            'bytes_copied': snapshot.bytes_copied + sum(size for size, dummy in files.values()),
            'bytes_linked': snapshot.bytes_linked,
            'timings': dict((name, round(value, 3)) for name, value in timings.items()),
        }, files

    def _copy_config(self, partial):
        """The configuration files copied into the backup: {path in the backup: (size, md5)}."""
        files = {}
        if self.params['include_config']:
            make_dirs(os.path.join(partial, 'config'))
            for name, path in self.config.named_files().items():
                files['config/' + name] = copy_file(path, os.path.join(partial, 'config', name))
        return files

    def _take_ahead(self, partial, snapshot, was_running):
        """While Orthanc serves: the storage files present now (the index decides later which stay), and what
        the backend can take ahead of its capture."""
        snapshot.target_root = os.path.join(partial, 'storage')
        if self.files_on_disk:
            make_dirs(snapshot.target_root)
            snapshot.take()
        if was_running:
            self.backend.prepare(partial)
            if self.mode == 'cold':
                # Written data reaches the disk while Orthanc still serves: its own fsyncs at
                # shutdown would otherwise wait behind the snapshot's dirty pages.
                os.sync()

    def _timed_capture(self, partial, snapshot, was_running, timings):
        """The capture in the backup's mode (a freeze that would be too long falls back to a stop, when mode=auto
        allows it), its steps' durations recorded in ``timings``; what ``_capture`` returns."""
        step = time.monotonic()
        if self.mode == 'freeze' and was_running:
            try:
                captured = self._capture_frozen(partial, snapshot, timings)
                timings['capture_seconds'] = time.monotonic() - step
                return captured
            except PauseTooLong as exc:
                if not self.may_fall_back:
                    raise
                self.module.warn('%s mode=auto takes it cold instead: Orthanc is stopped for the index copy.'
                                 % exc.freeze)
                self.mode = 'cold'
                step = time.monotonic()
        if self.mode == 'cold' and was_running:
            captured = self._capture_stopped(partial, snapshot, timings)
            timings['capture_seconds'] = time.monotonic() - step - timings['stop_seconds']
            return captured
        captured = self._capture(partial, snapshot)
        timings['capture_seconds'] = time.monotonic() - step
        return captured

    def _warn_findings(self, missing, mismatches):
        """Say what the index references and the backup could not take as Orthanc recorded it."""
        if missing:
            self.module.warn('%d attachment(s) referenced by the index are not in the storage: %s'
                             % (len(missing), ', '.join(missing[:PROBLEMS_SHOWN])))
        if mismatches:
            self.module.warn('%d file(s) in the storage differ from the size or MD5 that Orthanc recorded: %s'
                             % (len(mismatches), ', '.join(mismatches[:PROBLEMS_SHOWN])))

    def _capture_frozen(self, partial, snapshot, timings):
        """The index copied while every Orthanc thread is stopped by the kernel: what a crash at that instant
        leaves, which SQLite recovers to the last committed transaction (its WAL is copied too)."""
        pauses = []

        @contextmanager
        def frozen():
            with self.service.frozen() as pause:
                pauses.append(pause)
                yield

        def check():
            self._check_pause(pauses[-1])

        try:
            return self._capture_in_rounds(partial, snapshot, FREEZE_ROUNDS, frozen, check)
        finally:
            timings['pause_seconds'] = max([pause.seconds for pause in pauses] or [0.0])
            timings['freezes'] = len(pauses)

    def _capture_stopped(self, partial, snapshot, timings):
        """The index copied or dumped while Orthanc is stopped, after its own clean shutdown (stopped only for
        the copy when the backend allows it); ``timings`` get the stop's and the whole outage's seconds, summed
        over the stops, and how many there were."""
        timings['stops'] = 0

        @contextmanager
        def stopped():
            step = time.monotonic()
            timings['stops'] += 1
            try:
                with self.service.stopped():
                    timings['stop_seconds'] += time.monotonic() - step
                    yield
            finally:
                timings['downtime_seconds'] += time.monotonic() - step

        rounds = STOP_ROUNDS if self.backend.capture_takes_quiesced else 1
        return self._capture_in_rounds(partial, snapshot, rounds, stopped)

    def _capture_in_rounds(self, partial, snapshot, rounds, quiesce, check=None):
        """The capture with Orthanc quiesced (frozen or stopped by ``quiesce()``) only for the index copy: the
        files that copy references are taken once Orthanc runs again, which is sound because Orthanc never
        rewrites a file. A referenced file deleted meanwhile sends the capture round again; the last of the
        ``rounds`` keeps Orthanc quiesced until its files are taken. ``check()``, if given, runs after each
        round and before the last one takes its files (it raises to end the capture)."""
        @contextmanager
        def quiesced():
            with quiesce():
                self.consistent_at = _utc_iso()
                yield

        for dummy in range(rounds - 1):
            captured = self._capture(partial, snapshot, quiesced=quiesced)
            if check:
                check()
            if not (captured[2] or captured[3].count):
                return captured    # nothing referenced went missing
        with quiesced():
            captured = self._capture(partial, snapshot, check)
        if check:
            check()
        return captured

    def _capture(self, partial, snapshot, check=None, quiesced=None):
        """The index (copy or dump), with the snapshot brought to exactly the files it references, and the
        referenced files absent from the live storage. Orthanc is quiesced (stopped, frozen, or its attachment
        table locked) by the caller, or with ``quiesced`` only while the backend copies the index; ``check()``,
        if given, runs before the files are taken (a freeze already too long ends the capture there)."""
        def hold(expected):
            if not quiesced:
                # Orthanc can neither add nor delete an attachment now: the backup holds its state of this instant.
                self.consistent_at = _utc_iso()
            if check:
                check()
            referenced = snapshot.hold(expected)
            if not self.files_on_disk:
                return referenced, [], Findings(LIVE_MISSING_LISTED)
            return referenced, snapshot.reconcile(), snapshot.absent_from_live(LIVE_MISSING_LISTED)
        if quiesced:
            index_files, counts, held = self.backend.capture(partial, hold, quiesced)
        else:
            index_files, counts, held = self.backend.capture(partial, hold)
        counts['attachments'], missing, live_missing = held
        return index_files, counts, missing, live_missing

    def _check_pause(self, pause):
        if pause.seconds > self.params['max_pause']:
            raise PauseTooLong(pause.seconds, self.params['max_pause'], self.backend.estimate_bytes())

    def _check_live_files(self, live_missing, referenced):
        """A backup that cannot hold what its index references is not complete, unless told so."""
        if not live_missing.count:
            return
        what = ('%d of the %d file(s) that the index references are not in the storage folder %s (first: %s)'
                % (live_missing.count, referenced, self.storage_dir, ', '.join(live_missing[:5])))
        if not self.params['allow_missing_files']:
            raise OrthancOpsError('%s. The backup was not completed, so the previous backup stays the latest. Check '
                                  'that the storage is mounted and StorageDirectory is right; set allow_missing_files '
                                  'to back up a damaged Orthanc knowingly.' % what,
                                  live_missing_count=live_missing.count, live_missing=list(live_missing))
        self.module.warn('%s; backed up anyway (allow_missing_files), with those taken from an earlier backup where '
                         'one holds them.' % what)

    def _new_bytes_jump(self, backup_id, manifest, previous_id):
        """Whether this backup's new bytes jumped (see JUMP_RATIO); said, and recorded in its manifest, where a prune
        reads it: the backup taken before a jump is kept as long as the one after it is."""
        recent = [run['new_bytes'] for run in self.repository.runs()
                  if run['status'] == 'complete' and run.get('new_bytes') is not None][-JUMP_RUNS:]
        new_bytes = manifest['bytes_copied']
        if (previous_id is None or len(recent) < JUMP_MIN_RUNS or new_bytes <= JUMP_RATIO * max(recent)
                or new_bytes <= JUMP_SHARE * (new_bytes + manifest['bytes_linked'])):
            return False
        self.module.warn('Backup %s copied %d new bytes, more than %d times the most any of the last %d backups did '
                         '(%d): most of the archive is new to the backups (a mass import or re-import, someone flooding '
                         'Orthanc, an index grown many times over). Backup %s, the last one before, is kept as long '
                         'as retention keeps %s. Find out what Orthanc received before relying on the new backup.'
                         % (backup_id, new_bytes, JUMP_RATIO, len(recent), max(recent), previous_id, backup_id))
        return True

    def _check_changed_files(self, checked, changed, backup_changed, previous_id):
        """A live storage whose files were rewritten since the previous backup took them (Orthanc never rewrites
        one) is not backed up over the backups made before, unless told so; a previous backup whose files were
        rewritten is never linked from."""
        if backup_changed:
            raise OrthancOpsError('%d of the %d file(s) of backup %s checked at random no longer have the MD5 its '
                                  'listing holds (first: %s): the backup was changed after it was taken, by someone '
                                  'who can write the repository or by a failing disk. The new backup was not '
                                  'completed, so as not to link those files. Check that backup with '
                                  'orthanc_backup_verify, and back up with link=false until it is removed.'
                                  % (len(backup_changed), checked, previous_id,
                                     ', '.join(backup_changed[:PROBLEMS_SHOWN])), backup_changed=backup_changed)
        if not changed:
            return
        what = ('%d of the %d file(s) of the live storage checked at random differ from the MD5 they had when backup '
                '%s took them (first: %s). Orthanc never rewrites a file: something else changed them, such as '
                'ransomware encrypting the storage or a failing disk'
                % (len(changed), checked, previous_id, ', '.join(changed[:5])))
        if not self.params['allow_missing_files']:
            raise OrthancOpsError('%s. The backup was not completed: the earlier backups stay as they are, and '
                                  'retention removes none. Check the storage (orthanc_audit) before anything else; '
                                  'set allow_missing_files to back up a damaged Orthanc knowingly.' % what,
                                  live_checked=checked, live_changed=changed)
        self.module.warn('%s; backed up anyway (allow_missing_files), with those files as backup %s holds them.'
                         % (what, previous_id))


def main(module):
    exit_with(module, lambda: Backup(module).run())
