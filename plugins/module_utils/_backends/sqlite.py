# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Orthanc's default index: one SQLite file that Orthanc holds exclusively while it runs."""

from __future__ import annotations

import os
import sqlite3

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import copy_file

# Orthanc's resource types in the Resources table.
RESOURCE_COUNTS = {1: 'patients', 2: 'studies', 3: 'series', 4: 'instances'}
COMPRESSION_ZLIB = 2


class SQLiteBackend:
    """Interface shared by all backends:

    - ``name``, ``modes`` (the backup modes it supports, the first being the default);
    - ``held_files()``: files Orthanc keeps open while it runs (gone = Orthanc stopped);
    - ``backup_index(folder)`` -> {relative path: {'size', 'md5'}}: copy or dump the index;
    - ``read_index(folder)`` -> (attachments, counts) from that copy: attachments maps the
      uuid of each file in the storage to {'size', 'md5'} as the index records it;
    - ``live_index_entries()`` / ``stage_index(backup_folder, staging)``: what a restore replaces.
    """

    name = 'sqlite'
    modes = ('cold',)
    folder = 'index'
    FILES = ('index', 'index-wal', 'index-shm')

    def __init__(self, config):
        self.index_dir = config.index_dir
        self.index_path = os.path.join(self.index_dir, 'index')

    def held_files(self):
        return [self.index_path]

    def live_index_entries(self):
        return [name for name in self.FILES if os.path.exists(os.path.join(self.index_dir, name))]

    def backup_index(self, backup_folder):
        """Copy the index (and the WAL files a crash may have left) into ``<backup>/index``."""
        if not os.path.isfile(self.index_path):
            raise OrthancOpsError('There is no SQLite index at %s. Check IndexDirectory in the configuration.'
                                  % self.index_path)
        target = os.path.join(backup_folder, self.folder)
        os.mkdir(target, 0o700)
        files = {}
        for name in self.live_index_entries():
            size, md5 = copy_file(os.path.join(self.index_dir, name), os.path.join(target, name))
            files['%s/%s' % (self.folder, name)] = {'size': size, 'md5': md5}
        return files

    def read_index(self, backup_folder):
        """Attachments and resource counts from the index copy in ``backup_folder``."""
        path = os.path.join(backup_folder, self.folder, 'index')
        try:
            connection = sqlite3.connect('file:%s?mode=ro' % path, uri=True)
            try:
                rows = connection.execute('SELECT uuid, compressedSize, compressionType, uncompressedMD5, '
                                          'compressedMD5 FROM AttachedFiles').fetchall()
                counts = dict((RESOURCE_COUNTS[kind], count) for kind, count in connection.execute(
                    'SELECT resourceType, COUNT(*) FROM Resources GROUP BY resourceType') if kind in RESOURCE_COUNTS)
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise OrthancOpsError('Cannot read the Orthanc index copied from %s: %s.' % (self.index_path, exc))
        attachments = {}
        for uuid, size, compression, uncompressed_md5, compressed_md5 in rows:
            md5 = compressed_md5 if compression == COMPRESSION_ZLIB else uncompressed_md5
            attachments[uuid] = {'size': size, 'md5': md5 or None}
        for label in RESOURCE_COUNTS.values():
            counts.setdefault(label, 0)
        counts['attachments'] = len(attachments)
        return attachments, counts

    def stage_index(self, backup_folder, staging):
        """Copy the index files of a backup into ``staging``; return their names."""
        source = os.path.join(backup_folder, self.folder)
        names = sorted(os.listdir(source))
        for name in names:
            copy_file(os.path.join(source, name), os.path.join(staging, name))
        return names
