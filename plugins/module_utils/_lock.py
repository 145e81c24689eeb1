# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Locks that make operations exclude each other: one per instance of a repository (backup,
restore, prune, an incoming copy), one per Orthanc on a host (backup, restore, audit clean-up), and one per
restic repository on a host (its creation).

They are ``flock`` locks, so a killed module releases its lock with its last file descriptor,
and ``flock(1)`` can hold the same lock for a process that is not ours (the receiving rsync).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import tempfile

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError

LOCK_NAME = '.lock'
# Where root's per-Orthanc locks live: a folder of its own in /run (a tmpfs emptied at boot, which only root can
# write; /run/lock is writable by all, so anyone could take the name first).
RUN_DIR = '/run'


class Lock:
    """An exclusive lock on ``path``, taken at once or refused with who holds it."""

    def __init__(self, path, subject):
        self.path = path
        self.subject = subject
        self._fd = None

    def acquire(self, operation, wait=False):
        """Take the lock, waiting for its holder with ``wait``, else refusing at once."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            holder = os.read(fd, 200).decode(errors='replace').strip()
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OrthancOpsError('%s is busy: another operation holds its lock %s (%s). Nothing was done; run '
                                      'the %s again when it has finished.'
                                      % (self.subject, self.path, holder or 'an incoming copy', operation))
            raise
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.write(fd, ('%s by pid %d' % (operation, os.getpid())).encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)    # a holder without a line of its own (flock(1)) is then told apart
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()


def held(path):
    """True while a process holds the lock at ``path``; what is not a file (missing, a link) is a lock nobody
    holds."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _private_lock_dir():
    """A folder only this user can use, for the per-Orthanc locks: /run/orthanc-ops for root, else one in the
    user's runtime folder (or the temporary folder)."""
    if os.geteuid() == 0 and os.path.isdir(RUN_DIR):
        base = RUN_DIR
    else:
        base = os.environ.get('XDG_RUNTIME_DIR') or tempfile.gettempdir()
    folder = os.path.join(base, 'orthanc-ops')
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise OrthancOpsError('%s, where this user keeps its locks, is not a folder that only this user can use (a '
                              'link, another owner, or a mode beyond 0700): someone else made it. Nothing was done; '
                              'remove it and run again.' % folder)
    return folder


def host_lock(identity, subject, operation, wait=False):
    """Take the lock of ``identity`` on this host, one file per identity in a private folder."""
    name = hashlib.sha256(identity.encode()).hexdigest()[:24] + '.lock'
    return Lock(os.path.join(_private_lock_dir(), name), subject).acquire(operation, wait)


def orthanc_lock(identity, operation):
    """Take the lock of one Orthanc of this host, named by its configuration's ``identity`` (see _config)."""
    return host_lock(identity, 'The Orthanc configured by %s' % identity, operation)
