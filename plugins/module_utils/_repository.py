# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A backup repository on the managed host: ``<repository>/<instance>/<backup_id>``.

A backup in progress lives in ``<backup_id>.partial`` and is never listed; it becomes
a backup when its manifest is written and fsynced and the folder is renamed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import time
from datetime import datetime, timezone

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import DIR_MODE, make_dirs

ID_FORMAT = '%Y%m%dT%H%M%SZ'
ID_PATTERN = re.compile(r'^\d{8}T\d{6}Z$')
PARTIAL = '.partial'
LOCK_NAME = '.lock'


def new_backup_id(now=None):
    return (now or datetime.now(timezone.utc)).strftime(ID_FORMAT)


def unusable(path, exc):
    return OrthancOpsError('Cannot use the repository %s: %s. Choose a writable folder for "repository".'
                           % (path, exc.strerror or exc))


class Repository:
    def __init__(self, root, instance):
        if not instance or '/' in instance or instance.startswith('.'):
            raise OrthancOpsError('instance %r cannot name a folder: use letters, digits, dots, dashes.' % instance)
        self.root = root
        self.instance = instance
        self.path = os.path.join(root, instance)
        self._lock_fd = None

    def backup_path(self, backup_id):
        return os.path.join(self.path, backup_id)

    def backup_ids(self):
        """Ids of the complete backups, oldest first."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise unusable(self.path, exc)
        return sorted(name for name in names if ID_PATTERN.match(name)
                      and os.path.isfile(os.path.join(self.path, name, _manifest.NAME)))

    def latest(self):
        """(backup_id, manifest) of the newest complete backup, or (None, None)."""
        for backup_id in reversed(self.backup_ids()):
            try:
                return backup_id, _manifest.read(self.backup_path(backup_id))
            except OrthancOpsError:
                continue
        return None, None

    def resolve(self, backup):
        """The folder of ``backup`` ('latest' or an id), checked to exist."""
        if backup == 'latest':
            backup_id, dummy = self.latest()
            if backup_id is None:
                raise OrthancOpsError('There is no complete backup of instance "%s" in %s.' % (self.instance, self.root))
        else:
            backup_id = backup
            if backup_id not in self.backup_ids():
                raise OrthancOpsError('Backup "%s" of instance "%s" is not in %s; complete backups there: %s.'
                                      % (backup, self.instance, self.root, ', '.join(self.backup_ids()) or 'none'))
        return self.backup_path(backup_id)

    def lock(self):
        """Take the instance's lock or fail at once: one backup of an instance at a time."""
        try:
            make_dirs(self.path)
            fd = os.open(os.path.join(self.path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise unusable(self.path, exc)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.read(fd, 64).decode(errors='replace').strip()
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OrthancOpsError('Another backup of instance "%s" is running (lock %s held by pid %s). '
                                      'Wait for it to finish.' % (self.instance, os.path.join(self.path, LOCK_NAME),
                                                                  owner or 'unknown'))
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def clean_partials(self):
        """Remove what crashed runs left (call with the lock held); return the names removed."""
        removed = []
        for name in os.listdir(self.path):
            if name.endswith(PARTIAL):
                shutil.rmtree(os.path.join(self.path, name), ignore_errors=True)
                removed.append(name)
        return removed

    def new_partial(self):
        """Create ``<backup_id>.partial`` for a new backup; ids are unique per second."""
        while True:
            backup_id = new_backup_id()
            if not os.path.exists(self.backup_path(backup_id)):
                break
            time.sleep(0.2)
        path = self.backup_path(backup_id) + PARTIAL
        os.mkdir(path, DIR_MODE)
        return backup_id, path

    def finalize(self, backup_id, partial, manifest):
        """Make the partial backup complete: manifest written, everything synced, folder renamed."""
        _manifest.write(partial, manifest)
        return self.complete(backup_id, partial)

    def complete(self, backup_id, partial):
        """Sync a partial backup (data and manifest) to disk, then rename it into place, durably."""
        os.sync()
        final = self.backup_path(backup_id)
        os.rename(partial, final)
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return final

    def free_bytes(self):
        stat = os.statvfs(self.path if os.path.isdir(self.path) else self.root)
        return stat.f_bavail * stat.f_frsize
