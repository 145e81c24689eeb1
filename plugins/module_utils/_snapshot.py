# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Storage snapshots: Orthanc's ``xx/yy/uuid`` tree copied or hard-linked file by file.

A file is written once and never modified by Orthanc (same uuid, same bytes), so a
file that an earlier backup holds can be hard-linked from that backup. A backup never
shares an inode with the live storage: from there it always copies.

What a snapshot knows of the files (the live listing, the previous backup's files, those
taken, those the index references) lives in a ledger: a SQLite database on disk of its
own, joined there, so that memory stays flat whatever the number of files.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import re
import stat
import uuid as uuids

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import Findings
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import (
    TreeReader, UnsafePath, batches, copy_file, file_md5, io_workers, make_dirs, map_runs)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._ledger import BATCH, Ledger

_LEVEL = re.compile(r'^[0-9a-f]{2}$')
# The ledger of a snapshot: the live listing, the previous backup's files, those taken, those referenced.
TABLES = {
    'live': 'uuid TEXT PRIMARY KEY',
    'taken': 'uuid TEXT PRIMARY KEY, size INTEGER NOT NULL, md5 TEXT NOT NULL, linked INTEGER NOT NULL',
    'referenced': 'uuid TEXT PRIMARY KEY, size INTEGER, md5 TEXT',
    'not_regular': 'uuid TEXT PRIMARY KEY',
}
# The previous backup's files, in a database of their own (see load_previous).
PREVIOUS = 'previous.sqlite'
PREVIOUS_TABLES = {'previous': 'uuid TEXT PRIMARY KEY, size INTEGER NOT NULL, md5 TEXT NOT NULL'}
# What _take_run gives for a file it could not take: gone from the live storage (deleted meanwhile) and not
# linkable; not a regular file there.
GONE = 'gone'
NOT_REGULAR = 'not regular'
# How _take_run took a file: linked from the previous backup (LINKED alone: its size and MD5 are the listing's);
# copied from live, as new or because the previous backup's file could not be linked (see _linked). The ledger's
# ``taken.linked`` holds 1 for a file linked, 0 for one copied.
COPIED, LINKED, UNLINKABLE = 0, 1, 2


def is_storage_entry(name):
    """True for the top-level folders Orthanc writes in its storage directory (``xx``)."""
    return bool(_LEVEL.match(name))


# The queue of the DelayedDeletion plugin (Orthanc 1.12 and later), in the storage directory: the files Orthanc
# removed from its index, which the plugin deletes in the background.
_PENDING_DELETIONS = re.compile(r'^pending-deletions\..+\.db(-wal|-shm|-journal)?$')


def is_pending_deletions(name):
    """True for the files of DelayedDeletion's queue. They name files of the data they were made with: a restore
    that left them would have the plugin delete files it brought back."""
    return bool(_PENDING_DELETIONS.match(name))


def relative_path(uuid):
    return os.path.join(uuid[0:2], uuid[2:4], uuid)


def scan_storage(root):
    """(uuid, os.DirEntry) of every attachment file under ``root`` (``xx/yy/<uuid>``)."""
    for folder in storage_folders(root):
        for entry in _attachments(root, folder):
            yield entry.name, entry


def storage_uuids(root):
    """The uuid of every attachment file under ``root``, as scan_storage finds them, in uuid order: the folders
    ``xx/yy`` (65,536 at most) listed and sorted here, the files in each listed and sorted by io_workers processes
    once they are many (a cold listing waits on the disk folder by folder)."""
    folders = sorted(storage_folders(root))
    for dummy, names in map_runs(functools.partial(_attachment_names, root), folders, io_workers(len(folders))):
        yield from names


def storage_folders(root):
    """The attachment folders ``xx/yy`` under ``root``."""
    for first in _scandir(root):
        if first.is_dir(follow_symlinks=False) and is_storage_entry(first.name):
            for second in _scandir(first.path):
                if second.is_dir(follow_symlinks=False) and _LEVEL.match(second.name):
                    yield first.name + '/' + second.name


def _attachments(root, folder):
    """The os.DirEntry of each attachment file in ``folder`` (``xx/yy``): regular files named ``xxyy...``."""
    prefix = folder.replace('/', '')
    return [entry for entry in _scandir(os.path.join(root, folder))
            if entry.is_file(follow_symlinks=False) and entry.name.startswith(prefix)]


def _attachment_names(root, folders):
    return [sorted(entry.name for entry in _attachments(root, folder)) for folder in folders]


def _scandir(path):
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


class StorageSnapshot:
    """The storage folder of one backup (``target_root``), built from the live storage and the previous
    backup (the folder ``previous_backup``, none when there is none or linking is off), its bookkeeping in
    ``ledger``, a Ledger of TABLES."""

    def __init__(self, live_root, ledger):
        self.live_root = live_root
        self.target_root = self.previous_backup = None
        # Files the previous backup lists but could not give (see _linked): copied from live instead.
        self.unlinkable = 0
        self.ledger = ledger
        self.db = ledger.db
        ledger.attach(PREVIOUS, PREVIOUS_TABLES)

    def list_live(self):
        """Record the attachment files of the live storage; return how many there are. Their names only, no
        stat: the folders' listings say which entries are files, and a file the previous backup holds is
        linked from there whatever its live size (Orthanc never rewrites one; the index's sizes and MD5s
        are checked against what was taken, see mismatches)."""
        return self.ledger.fill('live', ((uuid,) for uuid in storage_uuids(self.live_root)), in_key_order=True)

    def load_previous(self, files):
        """Record the files of the previous backup, (uuid, size, md5) each, in uuid order (a listing's). They go
        to a database of their own, through a connection of its own, so that this may run in another thread
        while list_live runs."""
        previous = Ledger(self.ledger.folder, PREVIOUS_TABLES, PREVIOUS)
        try:
            previous.fill('previous', files, in_key_order=True)
        finally:
            previous.close()

    def plan(self):
        """What taking the live files would cost: files and bytes to copy (their sizes read now, by io_workers
        processes once they are many) and to link."""
        files, linked, linked_bytes = self.db.execute(
            'SELECT COUNT(*), COUNT(p.uuid), COALESCE(SUM(p.size), 0) FROM live l '
            'LEFT JOIN previous p ON p.uuid = l.uuid').fetchone()
        rows = self.db.execute('SELECT l.uuid FROM live l LEFT JOIN previous p ON p.uuid = l.uuid WHERE p.uuid IS NULL')
        to_copy = (uuid for uuid, in rows)
        sizes = map_runs(functools.partial(_live_sizes, self.live_root), to_copy, io_workers(files - linked))
        return {'files_to_link': linked, 'bytes_to_link': linked_bytes, 'files_to_copy': files - linked,
                'bytes_to_copy': sum(size for dummy, size in sizes)}

    def _take_all(self, query):
        """Take the files of the rows (uuid, previous size) that ``query`` selects (see _take_run), by io_workers
        processes once they are many; return the uuids not taken. Of a file linked, the workers say only that:
        the main process records it with the others from the previous backup's listing, in one statement."""
        missing, unlinked = [], []
        take_run = functools.partial(_take_run, self.live_root, self.target_root, self.previous_backup)
        with self.ledger.aside(query) as pending:
            workers = io_workers(self.ledger.one('SELECT COUNT(*) FROM temp.aside'))
            rows = itertools.chain.from_iterable(iter(lambda: pending.fetchmany(BATCH), []))
            for run in batches(map_runs(take_run, rows, workers), BATCH):
                taken = []
                for (uuid, previous_size), outcome in run:
                    if outcome == LINKED:
                        continue
                    if previous_size is not None:
                        unlinked.append((uuid,))
                    if outcome in (GONE, NOT_REGULAR):    # compared by value: they come back pickled
                        missing.append(uuid)
                        if outcome == NOT_REGULAR:
                            self.db.execute('INSERT OR IGNORE INTO not_regular VALUES (?)', (uuid,))
                        continue
                    size, md5, how = outcome
                    self.unlinkable += how == UNLINKABLE
                    taken.append((uuid, size, md5, 0))
                self.db.executemany('INSERT INTO taken VALUES (?, ?, ?, ?)', taken)
            self.db.execute('CREATE TEMP TABLE unlinked (uuid TEXT PRIMARY KEY) WITHOUT ROWID')
            self.db.executemany('INSERT INTO temp.unlinked VALUES (?)', unlinked)
            self.db.execute('INSERT INTO taken SELECT a.uuid, p.size, p.md5, 1 FROM temp.aside a JOIN previous p '
                            'ON p.uuid = a.uuid WHERE a.uuid NOT IN (SELECT uuid FROM temp.unlinked) ORDER BY a.uuid')
            self.db.execute('DROP TABLE temp.unlinked')
        return missing

    def take(self):
        """Phase one, while Orthanc runs: every file of the live listing."""
        self._take_all('SELECT l.uuid, p.size AS previous_size FROM live l LEFT JOIN previous p ON p.uuid = l.uuid')

    def hold(self, referenced):
        """Record what the index references, (uuid, size, md5 or None) each; return how many."""
        return self.ledger.fill('referenced', referenced)

    def absent_from_live(self, keep):
        """The referenced uuids the live storage does not hold as regular files (an unmounted NAS, a wrong
        StorageDirectory), whether or not an earlier backup could stand in for them: Findings of ``keep``."""
        absent = Findings(keep)
        rows = self.db.execute(
            'SELECT r.uuid, n.uuid IS NOT NULL FROM referenced r LEFT JOIN live l ON l.uuid = r.uuid '
            'LEFT JOIN not_regular n ON n.uuid = r.uuid WHERE l.uuid IS NULL OR n.uuid IS NOT NULL ORDER BY r.uuid')
        for uuid, not_regular in rows:
            try:
                regular = stat.S_ISREG(os.lstat(os.path.join(self.live_root, relative_path(uuid))).st_mode)
            except FileNotFoundError:
                regular = False
            if not regular or not_regular:
                absent.add(uuid)
        return absent

    def reconcile(self):
        """Bring the snapshot to exactly the referenced files. Returns the referenced uuids found nowhere
        (sorted); the files taken earlier that the index does not reference are removed again."""
        missing = self._take_all(
            'SELECT r.uuid, p.size AS previous_size FROM referenced r '
            'LEFT JOIN taken t ON t.uuid = r.uuid LEFT JOIN previous p ON p.uuid = r.uuid WHERE t.uuid IS NULL')
        dropped = self.db.execute('SELECT t.uuid FROM taken t LEFT JOIN referenced r ON r.uuid = t.uuid '
                                  'WHERE r.uuid IS NULL')
        for uuid, in dropped:
            os.unlink(os.path.join(self.target_root, relative_path(uuid)))
        self.db.execute('DELETE FROM taken WHERE uuid NOT IN (SELECT uuid FROM referenced)')
        return sorted(missing)

    def mismatches(self):
        """The taken files whose size or MD5 differ from those the index recorded, sorted."""
        return [uuid for uuid, in self.db.execute(
            'SELECT r.uuid FROM referenced r JOIN taken t ON t.uuid = r.uuid '
            'WHERE r.size != t.size OR (r.md5 IS NOT NULL AND r.md5 != t.md5) ORDER BY r.uuid')]

    def changed_since(self, count):
        """(files checked, uuids of those changed in the live storage, uuids of those changed in the backups): up to
        ``count`` files linked from the previous backup, picked at random, read again in the live storage and in the
        backup, each against the MD5 the previous backup's listing holds. Orthanc never rewrites a file, and a
        backup's files are never rewritten either: one that changed was changed by something else (ransomware
        encrypting in place, a failing disk, someone who can write the repository). A file deleted from the live
        storage since it was listed is not counted."""
        checked, live, kept = set(), [], []
        for dummy in range(count):
            row = self.db.execute('SELECT uuid, md5 FROM taken WHERE linked AND uuid >= ? ORDER BY uuid LIMIT 1',
                                  (str(uuids.uuid4()),)).fetchone()
            if row is None or row[0] in checked:
                continue
            uuid, md5 = row
            try:
                live_md5 = _md5_or_none(relative_path(uuid), self.live_root)
            except FileNotFoundError:
                continue
            checked.add(uuid)
            if live_md5 != md5:
                live.append(uuid)
            if _md5_or_none(relative_path(uuid), self.target_root) != md5:
                kept.append(uuid)
        return len(checked), sorted(live), sorted(kept)

    def orphans(self):
        """How many files of the live listing the index does not reference and are still there."""
        rows = self.db.execute('SELECT l.uuid FROM live l LEFT JOIN referenced r ON r.uuid = l.uuid '
                               'WHERE r.uuid IS NULL')
        return sum(1 for uuid, in rows if os.path.exists(os.path.join(self.live_root, relative_path(uuid))))

    def entries(self):
        """(uuid, size, md5) of the files taken, in uuid order (which is path order)."""
        return self.db.execute('SELECT uuid, size, md5 FROM taken ORDER BY uuid')

    def taken_count(self):
        return self.ledger.one('SELECT COUNT(*) FROM taken')

    @property
    def bytes_copied(self):
        """The bytes of the files taken that were copied from the live storage."""
        return self.ledger.one('SELECT COALESCE(SUM(size), 0) FROM taken WHERE NOT linked')

    @property
    def bytes_linked(self):
        """The bytes of the files taken that were linked from the previous backup."""
        return self.ledger.one('SELECT COALESCE(SUM(size), 0) FROM taken WHERE linked')


def _live_sizes(live_root, uuids):
    """The size of each live file of ``uuids``; 0 for one deleted since the listing."""
    sizes = []
    for uuid in uuids:
        try:
            sizes.append(os.lstat(os.path.join(live_root, relative_path(uuid))).st_size)
        except FileNotFoundError:
            sizes.append(0)
    return sizes


def _take_run(live_root, target_root, previous_backup, run):
    """Take each file of ``run`` ((uuid, previous size) in uuid order) into ``target_root``: a hard link to the
    previous backup when it holds the file (Orthanc never rewrites one), else a copy from live, hashed as it is
    read. LINKED, (size, md5, COPIED or UNLINKABLE), GONE or NOT_REGULAR each."""
    outcomes, folder = [], None
    live, previous = _reader(live_root), _reader(previous_backup)
    try:
        for uuid, previous_size in run:
            relative = relative_path(uuid)
            if os.path.dirname(relative) != folder:
                folder = os.path.dirname(relative)
                make_dirs(os.path.join(target_root, folder))
            target = os.path.join(target_root, relative)
            if previous_size is None:
                outcomes.append(_copied(live, relative, target, COPIED))
            elif _linked(previous, relative, target, previous_size):
                outcomes.append(LINKED)
            else:
                outcomes.append(_copied(live, relative, target, UNLINKABLE))
    finally:
        for reader in (live, previous):
            if reader:
                reader.close()
    return outcomes


def _md5_or_none(relative, root):
    """The MD5 of the regular file ``relative`` in ``root``, None for a link or a device there (FileNotFoundError
    when it is gone)."""
    try:
        return file_md5(relative, beneath=root)
    except FileNotFoundError:
        raise
    except OSError:
        return None


def _reader(root):
    """A TreeReader of ``root``, None when there is none (no previous backup, the live storage folder gone)."""
    try:
        return TreeReader(root) if root else None
    except FileNotFoundError:
        return None


def _linked(previous, relative, target, size):
    """Whether the previous backup's file ``relative`` is now linked at ``target``: a regular file of the ``size``
    its manifest lists. Anything else there (planted, damaged, missing, in a folder that is a symbolic link) is not
    linked, and the file is copied from live instead. ``previous`` reads the backup's folder, so that its
    ``storage`` folder is not followed either if it is a symbolic link."""
    if previous is None:
        return False
    try:
        linked = previous.link('storage/' + relative, target)
    except OSError:    # UnsafePath, or gone; a failure of the target itself recurs on the copy
        return False
    if linked != size:
        os.unlink(target)
        return False
    return True


def _copied(live, relative, target, how):
    """(size, md5, ``how``) of the copy of the live file ``relative`` made at ``target``, or GONE or NOT_REGULAR."""
    if live is None:
        return GONE
    try:
        size, md5 = copy_file(relative, target, beneath=live)
    except FileNotFoundError:
        return GONE
    except OSError as exc:
        # A symbolic link (or a device) where Orthanc writes plain files: never followed.
        if not isinstance(exc, UnsafePath) and exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        return NOT_REGULAR
    return size, md5, how
