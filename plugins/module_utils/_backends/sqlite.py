# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Orthanc's default index: one SQLite file that Orthanc holds exclusively while it runs."""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends._common import attachments_and_counts, count_resources
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import copy_file
from ansible_collections.orthanc_ops.backup.plugins.module_utils._manifest import area_files
from ansible_collections.orthanc_ops.backup.plugins.module_utils._swap import stage_files

# Orthanc core's numbering of resource types in the Resources table.
CORE_RESOURCE_TYPES = {1: 'patients', 2: 'studies', 3: 'series', 4: 'instances'}


class SQLiteBackend:
    """The SQLite index; the interface every backend offers (see _backends/__init__.py)."""

    name = 'sqlite'
    modes = ('freeze', 'cold')
    folder = 'index'
    FILES = ('index', 'index-wal', 'index-shm')

    @staticmethod
    def missing(module):
        """What this host lacks to back up and restore this backend: nothing beyond Python."""
        return []

    def __init__(self, module, config):
        self.index_dir = config.index_dir
        self.index_path = os.path.join(self.index_dir, 'index')

    def _live_entries(self):
        return [name for name in self.FILES if os.path.exists(os.path.join(self.index_dir, name))]

    def estimate_bytes(self):
        """The index's size, once it is known to be there: called before Orthanc is stopped."""
        if not os.path.isfile(self.index_path):
            raise OrthancOpsError('There is no SQLite index at %s. Check IndexDirectory (and StorageDirectory) in the '
                                  'configuration; nothing was stopped.' % self.index_path)
        return sum(os.path.getsize(os.path.join(self.index_dir, name)) for name in self._live_entries())

    def capture(self, backup_folder, hold):
        """Copy the index (and the WAL files a crash may have left), read that copy, hold its files.

        Orthanc is stopped or frozen: nothing changes between the copy and ``hold``.
        """
        target = os.path.join(backup_folder, self.folder)
        os.mkdir(target, 0o700)
        files = {}
        for name in self._live_entries():
            size, md5 = copy_file(name, os.path.join(target, name), beneath=self.index_dir)
            files['%s/%s' % (self.folder, name)] = {'size': size, 'md5': md5}
        attachments, counts = self._read(os.path.join(target, 'index'))
        for name in self.FILES:
            # SQLite creates -wal and -shm beside a WAL database it reads: not part of the backup.
            if '%s/%s' % (self.folder, name) not in files and os.path.lexists(os.path.join(target, name)):
                os.unlink(os.path.join(target, name))
        return files, attachments, counts, hold(attachments)

    def _read(self, path):
        try:
            connection = sqlite3.connect('file:%s?mode=ro' % quote(path), uri=True)
            try:
                cursor = connection.cursor()
                rows = cursor.execute('SELECT uuid, compressedSize, compressionType, uncompressedMD5, '
                                      'compressedMD5 FROM AttachedFiles').fetchall()
                counts = count_resources(cursor, 'SELECT resourceType, COUNT(*) FROM Resources GROUP BY resourceType',
                                         CORE_RESOURCE_TYPES)
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise OrthancOpsError('Cannot read the Orthanc index copied from %s: %s.' % (self.index_path, exc))
        return attachments_and_counts(rows, counts)

    def stage(self, backup_folder, stamp, manifest):
        """While Orthanc runs: copy the index files the manifest lists beside the live ones; return their Swap.

        The copy is checked by the manifest's MD5s; Orthanc's statistics check the counts.
        """
        return stage_files(os.path.join(backup_folder, self.folder), area_files(manifest, self.folder),
                           self.index_dir, 'index', stamp, lambda name: name in self.FILES)
