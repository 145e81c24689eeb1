# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Orthanc's default index: one SQLite file that Orthanc holds exclusively while it runs."""

from __future__ import annotations

import os
import sqlite3
from contextlib import nullcontext
from urllib.parse import quote

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends._common import (
    Backend, all_counts, count_resources, expected_files, resource_files)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import copy_file, open_regular, refresh_copy
from ansible_collections.orthanc_ops.backup.plugins.module_utils._manifest import area_entries
from ansible_collections.orthanc_ops.backup.plugins.module_utils._swap import stage_files

# Orthanc core's numbering of resource types in the Resources table.
CORE_RESOURCE_TYPES = {1: 'patients', 2: 'studies', 3: 'series', 4: 'instances'}
# A WAL file's header: its size and first four bytes (https://www.sqlite.org/fileformat.html#wal_file_format).
_WAL_HEADER = 32
_WAL_MAGIC = (b'\x37\x7f\x06\x82', b'\x37\x7f\x06\x83')


def _wal_epoch(folder):
    """The checkpoint sequence number and salts of the WAL ``index-wal`` in ``folder`` (bytes 12 to 24 of its
    header), None without a WAL header. SQLite changes them when it restarts the WAL from its start, which it
    does only once every frame is in the database file; until then, frames are only appended."""
    try:
        with open_regular('index-wal', beneath=folder) as wal:
            header = wal.read(_WAL_HEADER)
    except FileNotFoundError:
        return None
    return header[12:24] if len(header) == _WAL_HEADER and header[:4] in _WAL_MAGIC else None


class SQLiteBackend(Backend):
    """Orthanc's own SQLite index, copied while Orthanc is frozen or stopped."""

    name = 'sqlite'
    modes = ('freeze', 'cold')
    capture_takes_quiesced = True
    folder = 'index'
    plugin_marker = None
    FILES = ('index', 'index-wal', 'index-shm')
    # What a copy takes: the database and its write-ahead log. The -shm is the wal-index of the processes
    # that have it open, which SQLite rebuilds from the WAL when a database is first opened; a copy of
    # a running Orthanc's would not match the copied WAL, and reading the copy rewrites it.
    COPIED = ('index', 'index-wal')

    @staticmethod
    def missing(module):
        """What this host lacks to back up and restore this backend: nothing beyond Python."""
        return []

    def __init__(self, module, config):
        self.index_dir = config.index_dir
        self.index_path = os.path.join(self.index_dir, 'index')
        self._ahead = None    # what prepare's copy returned

    def _live_entries(self):
        return [name for name in self.COPIED if os.path.exists(os.path.join(self.index_dir, name))]

    def estimate_bytes(self):
        """The index's size, once it is known to be there: called before Orthanc is stopped."""
        if not os.path.isfile(self.index_path):
            raise OrthancOpsError('There is no SQLite index at %s. Check IndexDirectory (and StorageDirectory) in the '
                                  'configuration; nothing was stopped.' % self.index_path)
        return sum(os.path.getsize(os.path.join(self.index_dir, name)) for name in self._live_entries())

    def _copy(self, target, ahead=None):
        """Bring the copies of the index files in ``target`` to the live ones, unhashed (Orthanc may be frozen
        meanwhile): a file copied before is rewritten only where it differs. Returns the WAL's epoch, read before
        the database file is copied.

        ``ahead`` is what the copy made ahead into ``target`` returned. While the WAL has kept that epoch, every
        page written to the database file since that copy began is still in the WAL, which is copied whole: SQLite
        replays it over the database file copied then, even one a checkpoint changed as it was read. The database
        file is then not read again, and a copy made while Orthanc is frozen costs the WAL, whatever the index's
        size."""
        if not os.path.isdir(target):
            os.mkdir(target, 0o700)
        epoch = _wal_epoch(self.index_dir)
        kept = 'index' if ahead is not None and epoch == ahead and os.path.isfile(os.path.join(target, 'index')) else None
        live = self._live_entries()
        for name in self.FILES:
            copied = os.path.join(target, name)
            if name == kept:
                continue
            if name not in live:
                if os.path.lexists(copied):    # a WAL checkpointed away since, or SQLite's own beside a read copy
                    os.unlink(copied)
            elif os.path.lexists(copied):
                refresh_copy(name, copied, beneath=self.index_dir)
            else:
                copy_file(name, copied, beneath=self.index_dir, hashed=False)
        return epoch

    def prepare(self, backup_folder):
        """While Orthanc serves: a first copy of the index files, which ``capture`` brings up to date
        writing only what changed since (new blocks cost far more than rewritten ones)."""
        self._ahead = self._copy(os.path.join(backup_folder, self.folder))

    def capture(self, backup_folder, hold, quiesced=nullcontext):
        """Copy the index (and the WAL a crash or a running Orthanc leaves) inside ``quiesced()``, read
        that copy, hold its files, and fold the copied WAL into the copied index.

        Orthanc is stopped or frozen at least while the files are copied: the copy is what a crash at that
        instant would leave. The copies' MD5s are left to the phase (None), to be computed once Orthanc
        runs again.
        """
        target = os.path.join(backup_folder, self.folder)
        with quiesced():
            self._copy(target, self._ahead)
        index = os.path.join(target, 'index')
        counts, held = self._query(index, lambda cursor: (
            all_counts(count_resources(cursor, 'SELECT resourceType, COUNT(*) FROM Resources GROUP BY resourceType',
                                       CORE_RESOURCE_TYPES)),
            hold(expected_files(cursor.execute(
                'SELECT uuid, compressedSize, compressionType, uncompressedMD5, compressedMD5 FROM AttachedFiles')))))
        self._fold_wal(index)
        sizes = {'index': os.path.getsize(index)}
        for name in self.FILES:
            # What is left of the WAL, and the -shm SQLite creates beside a WAL database it opens.
            if name not in sizes and os.path.lexists(os.path.join(target, name)):
                os.unlink(os.path.join(target, name))
        files = dict(('%s/%s' % (self.folder, name), {'size': size, 'md5': None}) for name, size in sizes.items())
        return files, counts, held

    def referenced(self, scratch, frozen, hold):
        """Every attachment the index references, with its resource (see resource_files), handed to ``hold``
        as it is read from a copy of the index in ``scratch`` (its own connection excludes any other reader),
        taken ahead and brought up to date while Orthanc is ``frozen()``."""
        ahead = self._copy(scratch)
        with frozen():
            self._copy(scratch, ahead)
        return self._query(os.path.join(scratch, 'index'), lambda cursor: hold(resource_files(cursor.execute(
            'SELECT a.uuid, a.compressedSize, a.compressionType, a.uncompressedMD5, a.compressedMD5, r.resourceType, '
            'r.publicId, a.fileType FROM AttachedFiles a JOIN Resources r ON r.internalId = a.id'),
            CORE_RESOURCE_TYPES)))

    def _fold_wal(self, path):
        """Checkpoint the copied WAL into the copied index, as Orthanc's next start would. The backup then holds
        one file, the same bytes from one backup to the next while the data do not change: a WAL is rewritten
        with new salts at every checkpoint, and a deduplicating store (restic, off site) would take it anew
        each time."""
        try:
            connection = sqlite3.connect('file:%s' % quote(path), uri=True)
            try:
                connection.execute('PRAGMA wal_checkpoint(TRUNCATE)')
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise OrthancOpsError('Cannot fold the write-ahead log into the Orthanc index copied from %s: %s.'
                                  % (self.index_path, exc))

    def _query(self, path, read):
        """``read(cursor)`` on the index copy at ``path``, opened read-only."""
        try:
            connection = sqlite3.connect('file:%s?mode=ro' % quote(path), uri=True)
            try:
                return read(connection.cursor())
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise OrthancOpsError('Cannot read the Orthanc index copied from %s: %s.' % (self.index_path, exc))

    def stage(self, backup_folder, stamp, manifest):
        """While Orthanc runs: copy the index files the manifest lists beside the live ones; return their Swap.

        The copy is checked by the manifest's MD5s; Orthanc's statistics check the counts.
        """
        return stage_files(os.path.join(backup_folder, self.folder), area_entries(manifest, self.folder),
                           self.index_dir, 'index', stamp, lambda name: name in self.FILES)

    def sandbox(self, backup_folder, name, manifest, folder):
        """A copy of the backup's index files in ``folder``, checked by the manifest's MD5s, for a throwaway
        Orthanc (which writes to its index, so it cannot have the backup's own)."""
        source = os.path.join(backup_folder, self.folder)
        for relative, dummy, md5 in area_entries(manifest, self.folder):
            copied = copy_file(relative, os.path.join(folder, relative), beneath=source)[1]
            if copied != md5:
                raise OrthancOpsError('%s/%s in %s has MD5 %s, expected %s: the backup is damaged; use another backup.'
                                      % (self.folder, relative, backup_folder, copied, md5))
        return {'IndexDirectory': folder}

    def labels(self, backup_folder, name):
        """The labels of the backup's own index file (see Backend.labels), read as an immutable file: its sandbox's
        copy is held by the throwaway Orthanc, and the backup's has been checked against the manifest."""
        path = os.path.join(backup_folder, self.folder, 'index')
        try:
            connection = sqlite3.connect('file:%s?mode=ro&immutable=1' % quote(path), uri=True)
            try:
                if not connection.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                                          "AND name = 'Labels'").fetchone()[0]:
                    return []
                return [(CORE_RESOURCE_TYPES[kind], public_id, label) for kind, public_id, label in connection.execute(
                    'SELECT r.resourceType, r.publicId, l.label FROM Labels l JOIN Resources r '
                    'ON r.internalId = l.id ORDER BY r.publicId, l.label')]
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise OrthancOpsError('Cannot read the labels of the backup in %s: %s.' % (backup_folder, exc))

    def drop_sandbox(self, name):
        """Nothing of a sandbox lives outside its folder."""
