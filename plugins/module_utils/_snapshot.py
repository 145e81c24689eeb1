# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Storage snapshots: Orthanc's ``xx/yy/uuid`` tree copied or hard-linked file by file.

A file is written once and never modified by Orthanc (same uuid, same bytes), so a
file that an earlier backup holds can be hard-linked from that backup. A backup never
shares an inode with the live storage: from there it always copies.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import UnsafePath, copy_file, make_dirs

_LEVEL = re.compile(r'^[0-9a-f]{2}$')


def is_storage_entry(name):
    """True for the top-level folders Orthanc writes in its storage directory (``xx``)."""
    return bool(_LEVEL.match(name))


def relative_path(uuid):
    return os.path.join(uuid[0:2], uuid[2:4], uuid)


def scan_storage(root):
    """(uuid, os.DirEntry) of every attachment file under ``root`` (``xx/yy/<uuid>``)."""
    for first in _scandir(root):
        if not (first.is_dir(follow_symlinks=False) and is_storage_entry(first.name)):
            continue
        for second in _scandir(first.path):
            if not (second.is_dir(follow_symlinks=False) and _LEVEL.match(second.name)):
                continue
            for entry in _scandir(second.path):
                if entry.is_file(follow_symlinks=False) and entry.name.startswith(first.name + second.name):
                    yield entry.name, entry


def list_storage(root):
    """{uuid: size} of the attachment files under ``root``."""
    return dict((uuid, entry.stat(follow_symlinks=False).st_size) for uuid, entry in scan_storage(root))


def _scandir(path):
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


class StorageSnapshot:
    """The storage folder of one backup, built from the live storage and the previous backup.

    ``previous`` maps uuid -> (size, md5) for the files of the previous complete
    backup under ``previous_root`` (empty when there is none or linking is off); ``files``
    maps the uuids taken to (size, md5, linked).
    """

    def __init__(self, live_root, target_root, previous_root=None, previous=None):
        self.live_root = live_root
        self.target_root = target_root
        self.previous_root = previous_root
        self.previous = previous or {}
        self.files = {}
        self.bytes_copied = 0
        self.bytes_linked = 0
        self.not_regular = []
        self.listed = set()

    def _dirs_for(self, uuid):
        make_dirs(os.path.join(self.target_root, uuid[0:2], uuid[2:4]))

    def can_link(self, uuid, size=None):
        known = self.previous.get(uuid)
        return known is not None and (size is None or known[0] == size)

    def add(self, uuid, size=None):
        """Take one file: a link to the previous backup when it holds it, else a copy from live.

        Returns False when the file is not in the live storage (deleted meanwhile) nor linkable, or
        when it is not a regular file there (recorded in ``not_regular``).
        """
        self._dirs_for(uuid)
        target = os.path.join(self.target_root, relative_path(uuid))
        if self.can_link(uuid, size):
            os.link(os.path.join(self.previous_root, relative_path(uuid)), target)
            size, md5 = self.previous[uuid]
            self.files[uuid] = (size, md5, True)
            self.bytes_linked += size
            return True
        try:
            copied, md5 = copy_file(relative_path(uuid), target, beneath=self.live_root)
        except FileNotFoundError:
            return False
        except OSError as exc:
            # A symbolic link (or a device) where Orthanc writes plain files: never followed.
            if not isinstance(exc, UnsafePath) and exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            self.not_regular.append(uuid)
            return False
        self.files[uuid] = (copied, md5, False)
        self.bytes_copied += copied
        return True

    def take(self, live_files):
        """Phase one, while Orthanc runs: every file of the live listing {uuid: size}."""
        self.listed = set(live_files)
        for uuid, size in live_files.items():
            self.add(uuid, size)

    def absent_from_live(self, referenced):
        """The ``referenced`` uuids the live storage does not hold as regular files (an unmounted NAS, a
        wrong StorageDirectory), whether or not an earlier backup could stand in for them."""
        absent = []
        for uuid in referenced:
            if uuid in self.listed and uuid not in self.not_regular:
                continue
            try:
                regular = stat.S_ISREG(os.lstat(os.path.join(self.live_root, relative_path(uuid))).st_mode)
            except FileNotFoundError:
                regular = False
            if not regular or uuid in self.not_regular:
                absent.append(uuid)
        return sorted(absent)

    def reconcile(self, referenced):
        """Bring the snapshot to exactly the ``referenced`` uuids.

        Returns (missing, dropped): referenced uuids found nowhere, and the uuids
        taken earlier that the index does not reference (removed again).
        """
        missing = [uuid for uuid in referenced if uuid not in self.files and not self.add(uuid)]
        dropped = [uuid for uuid in self.files if uuid not in referenced]
        for uuid in dropped:
            os.unlink(os.path.join(self.target_root, relative_path(uuid)))
            size, dummy, linked = self.files.pop(uuid)
            if linked:
                self.bytes_linked -= size
            else:
                self.bytes_copied -= size
        return sorted(missing), dropped
