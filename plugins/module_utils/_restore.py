# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The restore phase: check the backup, stage it beside the live data while Orthanc runs, swap
while it is stopped, start, compare, and put the previous data back if anything fails."""

from __future__ import annotations

import os
import time
from contextlib import nullcontext

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _authentication, _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends import registry
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_SHOWN, OrthancDown, OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import hashing_workers, set_owner
from ansible_collections.orthanc_ops.backup.plugins.module_utils._lock import orthanc_lock
from ansible_collections.orthanc_ops.backup.plugins.module_utils._phase import Phase
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import new_backup_id
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import is_pending_deletions, is_storage_entry
from ansible_collections.orthanc_ops.backup.plugins.module_utils._swap import StagedDamage, stage_files
from ansible_collections.orthanc_ops.backup.plugins.module_utils._versions import too_old


class Restore(Phase):
    """The restore of a backup into one Orthanc: checked, staged beside the live data while Orthanc runs, swapped
    in while it is stopped, and rolled back if anything fails, Orthanc running again on the previous data."""

    def __init__(self, module):
        super().__init__(module)
        if self.params['src']:
            self.repository, self.manifest = None, None
            self.folder = os.path.abspath(self.params['src'])
        else:
            self.repository = self.open_repository()
            self.folder, self.manifest = self.repository.open_backup(self.params['backup'])
        self.stamp = new_backup_id()

    def _check_backup(self, restore_storage):
        """The backup's manifest, once the backup is known to fit this Orthanc and to match its manifest (the
        storage files' sizes and MD5s are checked as they are staged: each file is read once)."""
        manifest = self.manifest or _manifest.read(self.folder, key=_authentication.from_params(self.params))
        if manifest['index_backend'] != self.backend.name:
            raise OrthancOpsError('The backup in %s holds a %s index but the configuration %s uses %s. '
                                  'Restore it with a matching configuration.'
                                  % (self.folder, manifest['index_backend'], self.config.path, self.backend.name))
        if self.service.is_running():
            missing = too_old(manifest, self.rest.software())
            if missing:
                raise OrthancOpsError('The Orthanc at %s cannot take the backup in %s: it has %s. Upgrade Orthanc and its '
                                      'plugins to at least the versions that wrote the backup; nothing was changed.'
                                      % (self.rest.url, self.folder, '; '.join(missing)))
        else:
            self.module.warn('Orthanc is not running: the versions of its database schema and plugins could not be '
                             'compared with those that wrote the backup (%s).' % manifest.get('orthanc_version'))
        problems = _manifest.problems(self.folder, manifest, check_md5=self.params['verify'],
                                      checked_later=('storage/',) if restore_storage and not self.module.check_mode
                                      else ())
        if problems.count:
            raise self._damaged(problems)
        return manifest

    def _damaged(self, problems):
        return OrthancOpsError('The backup in %s is damaged (%d problem(s): %s). Nothing was changed; restore '
                               'another backup.' % (self.folder, problems.count, '; '.join(problems[:PROBLEMS_SHOWN])),
                               problems=list(problems), problems_count=problems.count)

    def run(self):
        """Check and plan; outside check mode, restore with the Orthanc's lock and the repository's held
        (no backup, audit clean-up or prune of them meanwhile)."""
        if self.module.check_mode:
            return self._run()
        with orthanc_lock(self.config.identity, 'restore'):
            with self.repository.locked('restore') if self.repository else nullcontext():
                return self._run()

    def _run(self):
        """Check the backup and plan; outside check mode, stage, swap in, and keep (or discard) the replaced data."""
        started = time.monotonic()
        self.check_target()
        restore_storage = registry.files_on_disk(self.config) and os.path.isdir(os.path.join(self.folder, 'storage'))
        manifest = self._check_backup(restore_storage)
        restore_config = self.params['restore_config'] and os.path.isdir(os.path.join(self.folder, 'config'))
        was_running = self.service.is_running()
        if self.module.check_mode:
            plan = {'backup_id': manifest['backup_id'], 'restored_from': self.folder,
                    'index_backend': self.backend.name,
                    'storage_dir': self.config.storage_dir if restore_storage else None,
                    'restore_config': restore_config, 'orthanc_running': was_running,
                    'files': manifest['files'], 'bytes': manifest['bytes']}
            return {'changed': True, 'plan': plan, 'msg': 'check mode: the backup was checked, nothing changed'}
        self._check_space(manifest['bytes'])
        swaps = self._stage(manifest, restore_storage, restore_config)
        downtime, statistics = self._swap_in(swaps, manifest, was_running)
        kept = [swap.kept_at for swap in swaps]
        if not self.params['keep_previous']:
            for swap in swaps:
                swap.discard()
            kept = []
        if not was_running:
            self.module.warn('Orthanc was not running: it was left stopped and its statistics were not compared.')
        return {'changed': True, 'backup_id': manifest['backup_id'], 'restored_from': self.folder,
                'authenticated': manifest.authenticated,
                'previous_kept_at': kept, 'downtime_seconds': round(downtime, 3),
                'duration_seconds': round(time.monotonic() - started, 3), 'statistics': statistics}

    def _swap_in(self, swaps, manifest, was_running):
        """Put the staged data in place while Orthanc is stopped, and compare its statistics with the backup's once
        it runs again; on any failure, put the previous data back (``_fail``). (downtime seconds, statistics)."""
        stop_start = time.monotonic()
        attempted = []
        try:
            with self.service.stopped() if was_running else nullcontext():
                for swap in swaps:
                    attempted.append(swap)
                    swap.apply()
            downtime = time.monotonic() - stop_start
            statistics = self._compare_statistics(manifest) if was_running else None
        except BaseException as exc:
            self._fail(exc, attempted, was_running)
        finally:
            for swap in swaps:
                swap.cleanup()
        return downtime, statistics

    def _check_space(self, needed):
        stat = os.statvfs(self.config.storage_dir if os.path.isdir(self.config.storage_dir) else self.config.base_dir)
        if stat.f_bavail * stat.f_frsize < needed:
            raise OrthancOpsError('Not enough free space beside %s to stage the restore (%d MiB needed). Nothing '
                                  'was changed.' % (self.config.storage_dir, needed // 2**20))

    def _stage(self, manifest, restore_storage, restore_config):
        """Prepare every part of the restore while Orthanc still runs."""
        swaps = []
        try:
            if restore_storage:
                swaps.append(stage_files(os.path.join(self.folder, 'storage'), _manifest.area_entries(manifest, 'storage'),
                                         self.config.storage_dir, 'storage', self.stamp, is_storage_entry,
                                         check_md5=self.params['verify'], workers=hashing_workers(manifest['files']),
                                         stale=is_pending_deletions))
            swaps.append(self.backend.stage(_manifest.private_area(self.folder, manifest, self.backend.folder,
                                                                   os.path.join(self.module.tmpdir, 'backup')),
                                            self.stamp, manifest))
            if restore_config:
                swaps.append(self._stage_config(manifest))
        except BaseException as exc:
            for swap in swaps:
                swap.cleanup()
            if isinstance(exc, StagedDamage):
                raise self._damaged(exc.problems)
            if isinstance(exc, (OSError, OrthancOpsError)):
                raise OrthancOpsError('Preparing the restore failed: %s Nothing live was changed.'
                                      % str(exc).rstrip('.') + '.', **getattr(exc, 'details', {}))
            raise
        return swaps

    def _stage_config(self, manifest):
        """Stage the backup's configuration files beside the live ones, each with the mode and owner of the live
        file it replaces; in a configuration folder, every *.json is replaced."""
        names = set(self.config.named_files())
        folder = os.path.isdir(self.config.path)

        def owned(name):
            # Orthanc reads every *.json of a configuration folder: none may stay beside the restored ones.
            return name.endswith('.json') if folder else name in names
        swap = stage_files(os.path.join(self.folder, 'config'), _manifest.area_entries(manifest, 'config'),
                           self.config.base_dir, 'config', self.stamp, owned, check_md5=True)
        for name in os.listdir(swap.staging):
            live = os.path.join(self.config.base_dir, name)
            if os.path.exists(live):    # the live file's mode and owner (credentials are often 0640)
                info = os.stat(live)
                os.chmod(os.path.join(swap.staging, name), info.st_mode & 0o777)
                set_owner(os.path.join(swap.staging, name), info.st_uid, info.st_gid)
        return swap

    def _compare_statistics(self, manifest):
        statistics = self.rest.statistics()
        differences = _manifest.count_differences(manifest, statistics)
        if differences:
            raise OrthancOpsError('After the restore Orthanc does not hold what the backup does (%s).'
                                  % '; '.join(differences))
        return statistics

    def _fail(self, exc, attempted, was_running):
        """Put the previous data back after ``exc`` and raise what happened, naming only what is still aside."""
        cause = ('Orthanc did not start on the restored data (%s)' % exc.reason if isinstance(exc, OrthancDown)
                 else str(exc).rstrip('.'))
        try:
            self._roll_back(attempted, was_running)
        except BaseException as undo_exc:
            if attempted:
                raise OrthancOpsError('The restore of %s failed: %s. Putting the previous data back failed too (%s). '
                                      'The previous data is in %s; put it back by hand.'
                                      % (self.folder, cause, undo_exc, ', '.join(swap.kept_at for swap in attempted)),
                                      **getattr(undo_exc, 'details', {}))
            raise OrthancOpsError('The restore of %s failed: %s. The previous data was put back, but %s'
                                  % (self.folder, cause, undo_exc), **getattr(undo_exc, 'details', {}))
        raise OrthancOpsError('The restore of %s failed: %s. The previous data was put back%s.'
                              % (self.folder, cause, ' and Orthanc runs again with it' if was_running else ''))

    def _roll_back(self, swaps, was_running):
        """Undo ``swaps`` newest first, removing each from the list once undone, and start Orthanc again."""
        if not swaps:
            return

        def undo():
            while swaps:
                swaps[-1].undo()
                swaps.pop()
        # A program holding Orthanc's port is no Orthanc to stop first (see Service.impostor).
        if was_running and self.service.is_running() and not self.service.impostor():
            with self.service.stopped():
                undo()
        else:
            undo()
            if was_running:
                self.service.start()


def main(module):
    exit_with(module, lambda: Restore(module).run())
