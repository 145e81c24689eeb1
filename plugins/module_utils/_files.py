# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""File primitives every phase uses: folders and files created with explicit modes whatever the
umask, and reads that follow no symbolic link inside an untrusted tree (a backup folder, Orthanc's
storage folder)."""

from __future__ import annotations

import errno
import functools
import hashlib
import multiprocessing
import os
import shutil
import stat
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from operator import attrgetter

CHUNK = 1024 * 1024
# Paths handed to a worker at a time: a tree of more files than that is hashed or copied by two worker processes.
HASH_BATCH = 1024
MAX_WORKERS = 2
# The processes that list, link or copy many small files: work that waits on the disk more than on the
# processor, and a disk serves several requests at once.
IO_WORKERS = 8
DIR_MODE = 0o700
FILE_MODE = 0o600
_NAME = attrgetter('name')


class UnsafePath(OSError):
    """A path of an untrusted tree that is not a plain relative path to a regular file."""


def safe_parts(relative):
    """The components of ``relative``, or UnsafePath when it is absolute, empty or climbs with ``..``."""
    parts = relative.split('/')
    if '' in parts or '.' in parts or '..' in parts or '\0' in relative:    # list lookups: called per file
        raise UnsafePath('%r is not a plain relative path' % relative)
    return parts


def make_dirs(path, mode=DIR_MODE):
    """Create ``path`` and its missing parents, each with exactly ``mode`` (os.makedirs applies
    ``mode`` to the last folder only, and the umask to all)."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, mode)
        except FileExistsError:
            if not os.path.isdir(folder):    # a file where a folder belongs: say so, not "File exists"
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder)
            continue
        os.chmod(folder, mode)


def remove_entry(path):
    """Remove what is at ``path`` if anything: a folder with its tree, anything else (a symbolic link too)
    itself, never what a link points to. What cannot be removed stays; whoever needs the name free finds it
    taken."""
    try:
        is_folder = stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return
    if is_folder:
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def remove_beneath(dir_fd, name):
    """Remove the entry ``name`` of the folder ``dir_fd``: a folder with its tree, each reached through no link,
    anything else (a link too) itself."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        os.unlink(name, dir_fd=dir_fd)
        return
    try:
        for child in os.listdir(fd):
            remove_beneath(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def private_folder(name, dir_fd):
    """Make the folder ``name`` in the folder ``dir_fd``, 0700, and return a descriptor of it, checked to be the
    folder this user just made: the name sits where others may write, and the descriptor, not the name, is used
    from then on."""
    os.mkdir(name, DIR_MODE, dir_fd=dir_fd)
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise UnsafePath('%s was replaced as soon as it was made' % name)
    give(fd, DIR_MODE)    # whatever the umask
    return fd


def fd_path(fd):
    """A path to the folder open as ``fd``, for calls that take paths: it stays that folder whatever is renamed or
    planted at its name (this process's own descriptor table)."""
    return '/proc/self/fd/%d' % fd


# Symbolic links followed on the way to a path before it counts as a loop (the kernel's limit).
MAX_LINKS = 40


def others_can_write(path):
    """Why someone but root or this user could change what ``path`` holds, or None when nobody can: ``path`` and
    every folder on the way to it (links followed, and the folders holding them) belong to root or this user and
    nobody else may write them. A sticky folder on the way (``/tmp``) lets others add entries there, not replace
    ours; ``path`` itself may not be one. Inside such a folder only its owners can have made anything."""
    trusted = (0, os.geteuid())
    todo = [part for part in os.path.abspath(path).split('/') if part][::-1]
    current, links = '/', 0
    while True:
        info = os.lstat(current)
        if info.st_uid not in trusted:
            return '%s belongs to uid %d' % (current, info.st_uid)
        if info.st_mode & 0o022 and not (todo and stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX):
            return '%s may be written by %s (mode %04o)' % (
                current, 'others' if info.st_mode & 0o002 else 'its group', info.st_mode & 0o7777)
        if not todo:
            return None
        part = todo.pop()
        following = os.path.join(current, part)
        if part == '..':
            current = os.path.dirname(current)
            continue
        entry = os.lstat(following)
        if stat.S_ISLNK(entry.st_mode):
            if entry.st_uid not in trusted:    # the owner of a link in a sticky folder may replace it
                return '%s belongs to uid %d' % (following, entry.st_uid)
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, 'Too many levels of symbolic links', path)
            target = os.readlink(following)
            todo.extend([name for name in target.split('/') if name and name != '.'][::-1])
            current = '/' if target.startswith('/') else current
        else:
            current = following


def sync_folder(path):
    """Make the entries of the folder ``path`` (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def give(fd, mode, owner=None):
    """Give the open file or folder ``fd`` exactly ``mode`` and, as root, the ``owner`` (uid, gid) given."""
    os.fchmod(fd, mode)
    if owner and os.geteuid() == 0:
        os.fchown(fd, *owner)


def folder_beneath(root, relative, mode=None, owner=None):
    """A descriptor of the folder ``root/relative``, each folder on the way reached through no symbolic link
    (OSError ELOOP otherwise) and, when missing, created with exactly ``mode`` and (as root) ``owner``
    (FileNotFoundError without a ``mode``)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in safe_parts(relative):
            made = False
            if mode is not None:
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                    made = True
                except FileExistsError:
                    pass
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
            if made:
                give(fd, mode, owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_file(path, mode=FILE_MODE, owner=None, dir_fd=None):
    """A new file opened for writing with exactly ``mode`` (and, as root, the ``owner`` (uid, gid) given);
    never through a symbolic link. With ``dir_fd``, ``path`` is a name in that folder."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    give(fd, mode, owner)
    return os.fdopen(fd, 'wb')


_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK


class TreeReader:
    """Regular files of an untrusted tree, opened by relative path with no component a symbolic link.

    The folders of the last file opened stay open, so files taken in sorted order open each folder once.
    """

    def __init__(self, root):
        self.folders, self.folder_fds = [], [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self._leave(0)
        os.close(self.folder_fds[0])

    def _leave(self, depth):
        """Close the open folders below the first ``depth``."""
        while len(self.folders) > depth:
            self.folders.pop()
            os.close(self.folder_fds.pop())

    def _folder(self, parts):
        """The descriptor of the folder holding the file whose path components are ``parts``."""
        depth = 0
        while depth < len(self.folders) and depth < len(parts) - 1 and self.folders[depth] == parts[depth]:
            depth += 1
        self._leave(depth)
        for part in parts[depth:-1]:
            self.folder_fds.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                           dir_fd=self.folder_fds[-1]))
            self.folders.append(part)
        return self.folder_fds[-1]

    def sized(self, relative):
        """(descriptor, size) of the regular file at ``relative``, open for reading: no file object, which
        matters in runs of thousands of small files."""
        parts = safe_parts(relative)
        return _regular(os.open(parts[-1], _READ_FLAGS | os.O_NOFOLLOW, dir_fd=self._folder(parts)), relative)

    def link(self, relative, target):
        """Hard-link the entry at ``relative`` (never following a symbolic link) to the new path ``target``, a
        path of a trusted folder; return its size. What was linked is then looked at through ``target``: anything
        but a regular file is unlinked again and raises UnsafePath. No open: a file swapped meanwhile is looked
        at as it was linked."""
        parts = safe_parts(relative)
        os.link(parts[-1], target, src_dir_fd=self._folder(parts), follow_symlinks=False)
        linked = os.lstat(target)
        if not stat.S_ISREG(linked.st_mode):
            os.unlink(target)
            raise UnsafePath('%s is not a regular file' % relative)
        return linked.st_size


def _regular(fd, path):
    """(fd, its size) when ``fd`` is a regular file; else UnsafePath, ``fd`` closed."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafePath('%s is not a regular file' % path)
    return fd, info.st_size


def open_regular(path, beneath=None):
    """Open a regular file for reading.

    With ``beneath`` (a folder, or a TreeReader of it that many files share), ``path`` is relative to that
    folder and no component of it may be a symbolic link; without, ``path`` is a trusted path (a
    configuration file may be a link). Anything but a regular file (a device, a FIFO, a folder) raises
    UnsafePath without blocking.
    """
    return os.fdopen(_opened(path, beneath)[0], 'rb')


def _opened(path, beneath):
    """(descriptor, size) of the regular file ``path`` (see open_regular)."""
    if beneath is None:
        return _regular(os.open(path, _READ_FLAGS), path)
    if isinstance(beneath, TreeReader):
        return beneath.sized(path)
    with TreeReader(beneath) as tree:
        return tree.sized(path)


def set_owner(path, uid, gid):
    """Give ``path`` the owner of the files it replaces; only root can, and only root needs to."""
    if os.geteuid() == 0:
        os.chown(path, uid, gid)


def copy_file(src, dst, mode=FILE_MODE, beneath=None, hashed=True, owner=None, size=None, dir_fd=None):
    """Copy the regular file ``src`` (see open_regular) to the new file ``dst`` (see create_file); return
    (size, md5), the MD5 None when not ``hashed`` (a copy that must be quick, hashed later). Given the
    ``size`` the file must have, one of another size is not copied (nothing is created): (its size, None)."""
    digest = hashlib.md5() if hashed else None
    source, found = _opened(src, beneath)
    try:
        if size is not None and found != size:
            return found, None
        copied = 0
        with create_file(dst, mode, owner, dir_fd) as target:
            for chunk in iter(lambda: os.read(source, CHUNK), b''):
                if digest:
                    digest.update(chunk)
                target.write(chunk)
                copied += len(chunk)
    finally:
        os.close(source)
    return copied, digest.hexdigest() if digest else None


def refresh_copy(src, dst, beneath=None):
    """Make ``dst``, a copy of the regular file ``src`` made earlier by copy_file, equal to ``src`` again,
    writing only the chunks that differ; return the size. A file that changed a little costs two reads
    and no new blocks: the copy that must be quick is made against one taken ahead."""
    size = 0
    fd = os.open(dst, os.O_RDWR | os.O_NOFOLLOW)
    with open_regular(src, beneath) as source, os.fdopen(fd, 'r+b') as target:
        for chunk in iter(lambda: source.read(CHUNK), b''):
            if target.read(len(chunk)) != chunk:
                target.seek(size)
                target.write(chunk)
            size += len(chunk)
        target.truncate(size)
    return size


def file_md5(path, beneath=None):
    """The MD5 of the regular file ``path`` (see open_regular), read straight from its descriptor."""
    return _digest(_opened(path, beneath)[0])


def _digest(fd):
    """The MD5 of the open file ``fd``, read to its end; ``fd`` is closed."""
    try:
        digest = hashlib.md5()
        for chunk in iter(lambda: os.read(fd, CHUNK), b''):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def map_runs(work, items, workers=1):
    """(item, result) for each of ``items``, in order, where ``work(run)`` returns the results of a run of
    consecutive items (HASH_BATCH at most). With more than one worker, runs are worked by that many processes
    forked from this one (``work`` and the items must pickle) while the caller goes on producing ``items``, at
    most two runs per worker waiting, so memory stays flat; with one, each run is worked here as soon as it is
    complete."""
    if workers <= 1:
        for run in batches(items, HASH_BATCH):
            yield from zip(run, work(run))
        return
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context('fork'))
    except (OSError, ImportError):    # no semaphores for its queues (a host without /dev/shm): work here
        yield from map_runs(work, items)
        return
    in_flight = deque()
    with pool:
        for run in batches(items, HASH_BATCH):
            in_flight.append((run, pool.submit(work, run)))
            if len(in_flight) >= 2 * workers:
                yield from _worked(*in_flight.popleft())
        while in_flight:
            yield from _worked(*in_flight.popleft())


def _worked(run, future):
    return zip(run, future.result())


def hashing_workers(files):
    """The processes that hash or copy ``files`` files best: two (on two cores or more) once there are two runs
    of them. Processes, not threads: on files of 10 KB the work per file is mostly the interpreter's, which
    threads take turns at (20,000 files hashed in 0.66 s by one thread, 1.07 s by four); two processes walked
    and hashed them in 0.50 s, one in 0.80 s, ``find | xargs md5sum`` in 0.55 s."""
    return min(MAX_WORKERS, os.cpu_count() or 1) if files > HASH_BATCH else 1


def io_workers(files):
    """The processes that list, link or copy ``files`` small files best: IO_WORKERS, whatever the number of
    cores, once there are two runs of them. From a cold page cache, 300,000 files of 512 bytes were listed and
    linked (none changed) in 4.8 s by eight processes, 5.5 s by four, 6.5 s by two, and copied in 16 s by eight,
    19.6 s by four, 27.3 s by two (``cp -a``: 37 s); sixteen did no better than eight."""
    return IO_WORKERS if files > HASH_BATCH else 1


def hash_tree(root, files, workers=1):
    """(relative, payload, size, md5) for each (relative, expected size, payload) of ``files``, in their order:
    the size and MD5 of the regular file at ``relative`` below ``root`` (see TreeReader); both None for one that
    cannot be read (gone, or not a regular file), the MD5 None for one of another size (not read). Hashed by
    ``workers`` as map_runs does, each with a reader of its own."""
    for (relative, dummy, payload), (size, md5) in map_runs(functools.partial(_hash_run, root), files, workers):
        yield relative, payload, size, md5


def _hash_run(root, run):
    with TreeReader(root) as tree:
        return [_sized_md5(tree, relative, expected_size) for relative, expected_size, dummy in run]


def _sized_md5(tree, relative, expected_size):
    try:
        fd, size = tree.sized(relative)
    except OSError:
        return None, None
    if size != expected_size:
        os.close(fd)
        return size, None
    try:
        return size, _digest(fd)
    except OSError:
        return None, None


def batches(items, size):
    """Lists of up to ``size`` consecutive items."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def walk_sorted(root, relative=''):
    """(relative path, os.DirEntry) of every entry below ``root`` that is not a folder, in the order of their
    path components, without following symbolic links: folders are entered, links and special files are
    yielded as they are. The kind of each entry comes with the folder's listing; a caller that needs more
    calls the entry's ``stat(follow_symlinks=False)``. One folder's entries are held at a time."""
    with os.scandir(os.path.join(root, relative) if relative else root) as listing:
        entries = sorted(listing, key=_NAME)
    for entry in entries:
        path = relative + '/' + entry.name if relative else entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from walk_sorted(root, path)
        else:
            yield path, entry
