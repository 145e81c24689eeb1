# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Replace live entries by staged ones with renames, keeping the replaced ones for a way back."""

from __future__ import annotations

import functools
import os
import shutil
from abc import ABC, abstractmethod

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_KEPT, Findings, OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import (
    TreeReader, copy_file, fd_path, give, make_dirs, map_runs, private_folder, remove_beneath)

STAGING_PREFIX = '.orthanc-restore-'
ASIDE_PREFIX = '.orthanc-pre-restore-'


class Swap(ABC):
    """One staged replacement of live data, as a backend's ``stage`` returns it for the restore phase to drive.

    ``kept_at`` says where the replaced data waits until the restore is confirmed.
    """

    kept_at = None

    @abstractmethod
    def apply(self):
        """While Orthanc is stopped: put the staged data in place, keeping what it replaces at ``kept_at``."""

    @abstractmethod
    def undo(self):
        """Put back what ``apply`` replaced, also after an ``apply`` cut short, and remove what it brought."""

    @abstractmethod
    def discard(self):
        """Once the restore is confirmed: remove what ``apply`` kept."""

    @abstractmethod
    def cleanup(self):
        """Remove the staging that ``apply`` did not take in (after a failure before it)."""


class FolderSwap(Swap):
    """Replace the entries of ``target`` that ``owned(name)`` selects by those of a staging folder made in it; the
    entries ``stale(name)`` selects are put aside too, and nothing takes their place.

    ``target`` is a live folder that the Orthanc user can write. So the staging folder (named ``name``) and the
    folder that keeps the replaced entries (``aside``) are root's, 0700, reached from their making through
    descriptors, as ``target`` is from the start: renaming them or planting a link at their names makes root
    neither write nor move anything elsewhere. Files are staged through ``staging``, a path through the staging
    folder's descriptor. Every move is a rename inside ``target`` (one filesystem, even when ``target`` is a mount
    point); a staged entry never replaces one the swap does not own, so ``undo`` removes only what the backup
    brought.
    """

    def __init__(self, target, name, aside, owned, stale=None):
        self.target, self.name, self.aside, self.owned = target, name, aside, owned
        self.stale = stale or (lambda name: False)
        self.kept_at = os.path.join(target, aside)
        self.moved_aside, self.moved_in = [], []
        self.kept_fd = None
        self.target_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self.staging_fd = private_folder(name, self.target_fd)
        except BaseException:
            os.close(self.target_fd)
            raise
        # Forked copying workers inherit the descriptor, so the path holds for them too.
        self.staging = fd_path(self.staging_fd)

    def apply(self):
        try:
            self.kept_fd = private_folder(self.aside, self.target_fd)    # follows no link: what was planted stays
        except FileExistsError:
            raise OrthancOpsError('Something is already at %s, where this restore keeps the data it replaces (it was '
                                  'not followed); nothing was replaced. Remove it and restore again.' % self.kept_at)
        for name in sorted(os.listdir(self.target_fd)):
            if self.owned(name) or self.stale(name):
                os.rename(name, name, src_dir_fd=self.target_fd, dst_dir_fd=self.kept_fd)
                self.moved_aside.append(name)
        for name in sorted(os.listdir(self.staging_fd)):
            if not self.owned(name) or _present(name, self.target_fd):
                raise OrthancOpsError('The staged %s would replace %s, which this restore does not own.'
                                      % (name, os.path.join(self.target, name)))
            os.rename(name, name, src_dir_fd=self.staging_fd, dst_dir_fd=self.target_fd)
            self.moved_in.append(name)
        self._remove_own(self.name, self.staging_fd)
        self.staging_fd = None

    def undo(self):
        for name in self.moved_in:
            remove_beneath(self.target_fd, name)    # gone already when Orthanc removed index-wal/-shm at its stop
        for name in self.moved_aside:
            os.rename(name, name, src_dir_fd=self.kept_fd, dst_dir_fd=self.target_fd)
        self.moved_in, self.moved_aside = [], []
        self.discard()

    def discard(self):
        if self.kept_fd is not None:
            self._remove_own(self.aside, self.kept_fd)
            self.kept_fd = None
        self.cleanup()

    def cleanup(self):
        if self.staging_fd is not None:
            self._remove_own(self.name, self.staging_fd)
            self.staging_fd = None
        if self.target_fd is not None:
            os.close(self.target_fd)
            self.target_fd = None

    def _remove_own(self, name, fd):
        """Empty the folder ``fd`` and close it; remove ``name`` from ``target`` when it is still that folder."""
        try:
            for child in os.listdir(fd):
                remove_beneath(fd, child)
            ours = os.fstat(fd)
            found = os.stat(name, dir_fd=self.target_fd, follow_symlinks=False)
            if (found.st_dev, found.st_ino) == (ours.st_dev, ours.st_ino):
                os.rmdir(name, dir_fd=self.target_fd)
        except OSError:
            pass    # moved away or replaced by someone else: theirs now, and empty of ours
        finally:
            os.close(fd)


def _present(name, dir_fd):
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _own(path, owner, mode):
    """Give the folder just made at ``path`` ``mode`` and (as root) ``owner`` through a descriptor, opened through
    no link at its end: a folder swapped for a link meanwhile (the staging sits in a folder the Orthanc user may
    write) is refused, never what the link points to changed."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        give(fd, mode, owner)
    finally:
        os.close(fd)


class StagedDamage(OrthancOpsError):
    """Staged files whose MD5 is not the manifest's: the staging was removed, nothing live changed."""

    def __init__(self, problems):
        super().__init__('; '.join(problems))
        self.problems = problems


def _with_folders(files, staging, owner, dir_mode, refuse):
    """The ``files`` (tuples of a relative path first, in a manifest's order), each once its folders exist in
    ``staging`` (each created once), after ``refuse(top-level name)`` let it pass."""
    made = []
    for entry in files:
        parts = entry[0].split('/')
        refuse(parts[0])
        folders = parts[:-1]
        depth = 0
        while depth < len(made) and depth < len(folders) and made[depth] == folders[depth]:
            depth += 1
        del made[depth:]
        for name in folders[depth:]:
            made.append(name)
            path = os.path.join(staging, *made)
            os.mkdir(path, dir_mode)
            _own(path, owner, dir_mode)
        yield entry


def stage_files(source, files, target, label, stamp, owned, check_md5=False, workers=1, stale=None):
    """Copy ``files`` ((path relative to ``source``, size, MD5), as a manifest lists them, in its order) into a
    staging folder inside ``target`` (root's, see FolderSwap), each owned like ``target``, and return the
    FolderSwap that puts them in place of the entries ``owned`` selects (and puts aside those ``stale`` selects).

    Only those files are read, each a regular file reached through no symbolic link; a listed file whose
    top-level name the swap does not own is refused and the staging removed. Each copy is checked as it is
    made (one read of each file): its size, and with ``check_md5`` its MD5; any difference raises StagedDamage
    once all are copied. ``workers`` processes copy at once (see _files.hashing_workers).
    """
    make_dirs(target)
    for name in os.listdir(target):
        if name.startswith(STAGING_PREFIX + label):    # left by a restore that was killed
            shutil.rmtree(os.path.join(target, name), ignore_errors=True)
    info = os.stat(target)
    owner, dir_mode = (info.st_uid, info.st_gid), info.st_mode & 0o777
    swap = FolderSwap(target, '%s%s-%s' % (STAGING_PREFIX, label, stamp), '%s%s-%s' % (ASIDE_PREFIX, label, stamp),
                      owned, stale)
    staging = swap.staging
    damage = Findings(PROBLEMS_KEPT)

    def refuse(name):
        if not owned(name):
            raise OrthancOpsError('The backup holds %s in %s, which a restore must not put in %s. The backup was '
                                  'altered or belongs to another layout; choose another backup.' % (name, source, target))

    try:
        copy_run = functools.partial(_copy_run, source, staging, dir_mode & 0o666, check_md5, owner)
        for (relative, size, expected), (copied, md5) in map_runs(
                copy_run, _with_folders(files, staging, owner, dir_mode, refuse), workers):
            if copied != size:
                damage.add('%s/%s has %d bytes, expected %d' % (label, relative, copied, size))
            elif check_md5 and md5 != expected:
                damage.add('%s/%s has MD5 %s, expected %s' % (label, relative, md5, expected))
        if damage.count:
            raise StagedDamage(damage)
    except BaseException:
        swap.cleanup()
        raise
    return swap


def _copy_run(source, staging, mode, hashed, owner, run):
    """(size, md5) of the copies of the files of ``run`` (see stage_files) made in ``staging``."""
    with TreeReader(source) as tree:
        return [copy_file(relative, os.path.join(staging, relative), mode, beneath=tree, hashed=hashed, owner=owner,
                          size=size) for relative, size, dummy in run]
