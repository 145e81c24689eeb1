# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The restore phase: check the backup, stage it beside the live data, swap while Orthanc is
stopped, start, compare, and put the previous data back if anything fails."""

from __future__ import annotations

import os
import shutil
import time
from contextlib import nullcontext
from datetime import datetime, timezone

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._backup import config_files
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._phase import Phase
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import is_storage_entry, make_dirs

STAGING_PREFIX = '.orthanc-restore-'
ASIDE_PREFIX = '.orthanc-pre-restore-'
STATISTICS_KEYS = {'patients': 'CountPatients', 'studies': 'CountStudies',
                   'series': 'CountSeries', 'instances': 'CountInstances'}


class Swap:
    """Replace the entries of ``target`` that ``owned(name)`` selects by those of ``staging``.

    Everything is a rename inside ``target`` (one filesystem, even when ``target`` is a mount
    point); the replaced entries wait in ``aside`` until the restore is confirmed.
    """

    def __init__(self, target, staging, aside, owned):
        self.target, self.staging, self.aside, self.owned = target, staging, aside, owned
        self.moved_aside, self.moved_in = [], []

    def apply(self):
        make_dirs(self.aside)
        for name in sorted(os.listdir(self.target)):
            if self.owned(name):
                os.rename(os.path.join(self.target, name), os.path.join(self.aside, name))
                self.moved_aside.append(name)
        for name in sorted(os.listdir(self.staging)):
            os.rename(os.path.join(self.staging, name), os.path.join(self.target, name))
            self.moved_in.append(name)
        os.rmdir(self.staging)

    def undo(self):
        for name in self.moved_in:
            path = os.path.join(self.target, name)
            if not os.path.lexists(path):    # Orthanc removes index-wal/-shm when it stops
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        for name in self.moved_aside:
            os.rename(os.path.join(self.aside, name), os.path.join(self.target, name))
        self.moved_in, self.moved_aside = [], []
        shutil.rmtree(self.aside, ignore_errors=True)


def _copy_tree(source, target, owner, dir_mode, file_mode):
    """Copy a backup folder into staging: real copies (never links to the backup), live ownership."""
    for current, dirs, files in os.walk(source):
        folder = os.path.join(target, os.path.relpath(current, source))
        make_dirs(folder, dir_mode)
        _own(folder, owner, dir_mode)
        for name in files:
            path = os.path.join(folder, name)
            shutil.copyfile(os.path.join(current, name), path)
            _own(path, owner, file_mode)


def _own(path, owner, mode):
    os.chmod(path, mode)
    if os.geteuid() == 0:
        os.chown(path, owner[0], owner[1])


class Restore(Phase):
    def __init__(self, module):
        super().__init__(module)
        if self.params['src']:
            self.folder = os.path.abspath(self.params['src'])
        else:
            self.folder = self.open_repository().resolve(self.params['backup'])
        self.stamp = datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')

    def _check_backup(self):
        manifest = _manifest.read(self.folder)
        if manifest['index_backend'] != self.backend.name:
            raise OrthancOpsError('The backup in %s holds a %s index but the configuration %s uses %s. '
                                  'Restore it with a matching configuration.'
                                  % (self.folder, manifest['index_backend'], self.config.path, self.backend.name))
        problems = _manifest.problems(self.folder, manifest, check_md5=self.params['verify'])
        if problems:
            raise OrthancOpsError('The backup in %s is damaged (%d problem(s): %s). Nothing was changed; restore '
                                  'another backup.' % (self.folder, len(problems), '; '.join(problems[:10])),
                                  problems=problems)
        return manifest

    def _targets(self):
        """(target folder, backup sub-folders staged into it, owned(name)) for each live folder."""
        storage_dir, index_dir = self.config.storage_dir, self.backend.index_dir
        backup_index = os.listdir(os.path.join(self.folder, self.backend.folder))
        index_names = set(self.backend.live_index_entries()) | set(backup_index)
        if storage_dir == index_dir:
            return [(storage_dir, ['storage', self.backend.folder],
                     lambda name: is_storage_entry(name) or name in index_names)]
        return [(storage_dir, ['storage'], is_storage_entry),
                (index_dir, [self.backend.folder], lambda name: name in index_names)]

    def run(self):
        started = time.monotonic()
        manifest = self._check_backup()
        targets = self._targets()
        restore_config = self.params['restore_config'] and os.path.isdir(os.path.join(self.folder, 'config'))
        was_running = self.service.is_running()
        plan = {'backup_id': manifest['backup_id'], 'restored_from': self.folder,
                'targets': [target for target, dummy, dummy2 in targets],
                'restore_config': restore_config, 'orthanc_running': was_running,
                'files': len(manifest['files']),
                'bytes': sum(entry['size'] for entry in manifest['files'].values())}
        if self.module.check_mode:
            return {'changed': True, 'plan': plan, 'msg': 'check mode: the backup was checked, nothing changed'}
        self._check_space(plan['bytes'])
        swaps = self._stage(targets, restore_config)
        stop_start = time.monotonic()
        try:
            with self.service.stopped() if was_running else nullcontext():
                for swap in swaps:
                    swap.apply()
            downtime = time.monotonic() - stop_start
            statistics = self._compare_statistics(manifest) if was_running else None
        except BaseException as exc:
            try:
                self._roll_back(swaps, was_running)
            except BaseException as undo_exc:
                raise OrthancOpsError('The restore of %s failed (%s) and putting the previous data back failed too '
                                      '(%s). The previous data is in %s; move it back by hand.'
                                      % (self.folder, exc, undo_exc, ', '.join(swap.aside for swap in swaps)))
            raise OrthancOpsError('The restore of %s failed and the previous data was put back%s: %s'
                                  % (self.folder, ' and Orthanc started again' if was_running else '', exc))
        finally:
            for swap in swaps:
                shutil.rmtree(swap.staging, ignore_errors=True)
        kept = [swap.aside for swap in swaps]
        if not self.params['keep_previous']:
            for swap in swaps:
                shutil.rmtree(swap.aside, ignore_errors=True)
            kept = []
        if not was_running:
            self.module.warn('Orthanc was not running: it was left stopped and its statistics were not compared.')
        return {'changed': True, 'backup_id': manifest['backup_id'], 'restored_from': self.folder,
                'previous_kept_at': kept, 'downtime_seconds': round(downtime, 3),
                'duration_seconds': round(time.monotonic() - started, 3), 'statistics': statistics}

    def _check_space(self, needed):
        stat = os.statvfs(self.config.storage_dir if os.path.isdir(self.config.storage_dir) else self.config.base_dir)
        if stat.f_bavail * stat.f_frsize < needed:
            raise OrthancOpsError('Not enough free space beside %s to stage the restore (%d MiB needed). Nothing '
                                  'was changed.' % (self.config.storage_dir, needed // 2**20))

    def _stage(self, targets, restore_config):
        """Copy the backup beside each live folder while Orthanc still runs."""
        swaps = []
        try:
            for target, parts, owned in targets:
                make_dirs(target)
                for name in os.listdir(target):
                    if name.startswith(STAGING_PREFIX):    # left by a restore that was killed
                        shutil.rmtree(os.path.join(target, name), ignore_errors=True)
                info = os.stat(target)
                owner, dir_mode = (info.st_uid, info.st_gid), info.st_mode & 0o777
                staging = os.path.join(target, STAGING_PREFIX + self.stamp)
                swaps.append(Swap(target, staging, os.path.join(target, ASIDE_PREFIX + self.stamp), owned))
                make_dirs(staging)
                for part in parts:
                    _copy_tree(os.path.join(self.folder, part), staging, owner, dir_mode, dir_mode & 0o666)
            if restore_config:
                swaps.append(self._stage_config())
        except BaseException as exc:
            for swap in swaps:
                shutil.rmtree(swap.staging, ignore_errors=True)
            if isinstance(exc, OSError):
                raise OrthancOpsError('Staging the restore failed: %s. Nothing live was changed.' % exc)
            raise
        return swaps

    def _stage_config(self):
        names = set(config_files(self.config))
        target = self.config.base_dir
        staging = os.path.join(target, STAGING_PREFIX + 'config-' + self.stamp)
        info = os.stat(self.config.files[0]) if self.config.files else os.stat(target)
        shutil.copytree(os.path.join(self.folder, 'config'), staging)
        for name in os.listdir(staging):
            _own(os.path.join(staging, name), (info.st_uid, info.st_gid), info.st_mode & 0o777)
        folder = os.path.isdir(self.config.path)

        def owned(name):
            # Orthanc reads every *.json of a configuration folder: none may stay beside the restored ones.
            return name.endswith('.json') if folder else name in names
        return Swap(target, staging, os.path.join(target, ASIDE_PREFIX + 'config-' + self.stamp), owned)

    def _compare_statistics(self, manifest):
        statistics = self.rest.statistics()
        differences = ['%s: Orthanc has %s, the backup %s' % (label, statistics.get(key), manifest['counts'][label])
                       for label, key in STATISTICS_KEYS.items()
                       if statistics.get(key) != manifest['counts'].get(label)]
        if differences:
            raise OrthancOpsError('After the restore Orthanc does not hold what the backup does (%s).'
                                  % '; '.join(differences))
        return statistics

    def _roll_back(self, swaps, was_running):
        if not any(swap.moved_aside or swap.moved_in for swap in swaps):
            return

        def undo():
            for swap in reversed(swaps):
                swap.undo()
        if was_running and self.service.is_running():
            with self.service.stopped():
                undo()
        else:
            undo()
            if was_running:
                self.service.start()


def main(module):
    exit_with(module, lambda: Restore(module).run())
