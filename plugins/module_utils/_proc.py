# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What ``/proc`` says about the processes of this host: who listens on a port, which Orthancs run
and with which configuration and environment (containers included, through each process's root)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError

CLONE_NEWNET = 0x40000000
# The highest uid of a system account (Debian's SYS_UID_MAX): an Orthanc service runs as root or as one.
SYSTEM_UID_MAX = 999


def listening_pids(port, network_of='self'):
    """PIDs of the processes listening on TCP ``port`` (in the network namespace of the process ``network_of``):
    Orthanc itself, whatever its backend."""
    sockets = set()
    for table in ('/proc/%s/net/tcp' % network_of, '/proc/%s/net/tcp6' % network_of):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == '0A' and int(fields[1].rsplit(':', 1)[1], 16) == port:
                sockets.add('socket:[%s]' % fields[9])
    pids = []
    for pid in os.listdir('/proc') if sockets else ():
        if not pid.isdigit():
            continue
        fd_dir = '/proc/%s/fd' % pid
        try:
            if any(os.readlink(os.path.join(fd_dir, fd)) in sockets for fd in os.listdir(fd_dir)):
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def state(pid, task=None):
    """The state letter of ``pid`` (or of its thread ``task``): R, S, T for stopped, Z ...; None when gone."""
    try:
        with open('/proc/%d/task/%s/stat' % (pid, task) if task else '/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid):
    """True while ``pid`` runs (a zombie has finished)."""
    return state(pid) not in ('Z', 'X', None)


def all_stopped(pid):
    """True when every thread of ``pid`` is stopped by a signal (or the process is gone)."""
    try:
        tasks = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return True
    return all(state(pid, task) in ('T', None) for task in tasks)


def orthanc_pids():
    """PIDs of every Orthanc process on this host, containers included (by the name of the executable)."""
    return [int(name) for name in os.listdir('/proc') if name.isdigit() and is_orthanc(int(name))]


def runs_orthanc(pid):
    """True when ``pid`` runs root's own Orthanc: an executable named Orthanc*, owned and writable by root only, in a
    folder writable by root only (as the process's own root sees it). Anyone can name a program Orthanc."""
    try:
        exe = os.readlink('/proc/%d/exe' % pid)
        if not os.path.basename(exe).startswith('Orthanc'):
            return False
        binary = os.stat('/proc/%d/exe' % pid)
        folder = os.stat(os.path.join('/proc/%d/root' % pid, os.path.dirname(exe).lstrip('/')))
    except OSError:
        return False
    return all(info.st_uid == 0 and not info.st_mode & 0o022 for info in (binary, folder))


def is_orthanc(pid):
    """True when ``pid`` runs an Orthanc root can believe: root's own Orthanc (see runs_orthanc), run by root or a
    system account; anyone can start Orthanc with an environment of their own."""
    try:
        with open('/proc/%d/status' % pid) as handle:
            uids = next(line.split()[1:] for line in handle if line.startswith('Uid:'))
    except (OSError, StopIteration):
        return False
    return runs_orthanc(pid) and max(int(uid) for uid in uids) <= SYSTEM_UID_MAX


class Held:
    """Processes held by pidfds from the moment they were identified to the moment they are signalled: a pid
    read earlier may meanwhile belong to another process (pid_max is often 32768), a pidfd never does. ``pids``
    are those still alive when taken and, once taken, still ``accepted(pid)``. Where pidfds are missing (Linux
    before 5.3), the pids are signalled as they are."""

    def __init__(self, pids, accepted):
        self._fds = {}
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            except (AttributeError, OSError):
                fd = None
            self._fds[pid] = fd
            # Checked once the process is held: a pid reused before the pidfd was taken is checked as the new one.
            if not accepted(pid) or (fd is not None and not _holds(fd, pid)):
                self._close(pid)
        self.pids = sorted(self._fds)

    def signal(self, signum):
        """Send ``signum`` to every held process still alive; the pids it reached."""
        reached = []
        for pid, fd in self._fds.items():
            try:
                if fd is None:
                    os.kill(pid, signum)
                else:
                    signal.pidfd_send_signal(fd, signum)
                reached.append(pid)
            except ProcessLookupError:
                continue
        return reached

    def processes(self):
        """[pid, pidfd or None] of each held process, for a process that inherits the pidfds."""
        return [[pid, fd] for pid, fd in sorted(self._fds.items())]

    def _close(self, pid):
        fd = self._fds.pop(pid)
        if fd is not None:
            os.close(fd)

    def close(self):
        for pid in list(self._fds):
            self._close(pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _holds(fd, pid):
    """True while the pidfd ``fd`` holds the live process ``pid`` (its fdinfo names the pid, -1 once it ended)."""
    with open('/proc/self/fdinfo/%d' % fd) as handle:
        return any(line.split() == ['Pid:', str(pid)] for line in handle)


def configuration_of(pid):
    """The configuration file or folder Orthanc ``pid`` was started with, as a path this host can open
    (through the process's own root, so a container's too); None when it is not an Orthanc (a proxy
    that publishes a container's port), names none, or is gone."""
    return started_with(pid) if is_orthanc(pid) else None


def started_with(pid):
    """The last path on the command line of ``pid`` (see configuration_of), whoever runs it."""
    paths = configuration_paths(pid)
    return paths[-1] if paths else None


def configuration_paths(pid):
    """Every path on the command line of ``pid``, as this host can open them (see configuration_of)."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv = handle.read().split(b'\0')
        cwd = os.readlink('/proc/%d/cwd' % pid)
    except OSError:
        return []
    return [os.path.join('/proc/%d/root' % pid, os.path.join(cwd, path).lstrip('/'))
            for path in path_arguments([arg.decode(errors='surrogateescape') for arg in argv if arg])]


def path_arguments(argv):
    """The arguments of the command line ``argv`` that are not options."""
    return [arg for arg in argv[1:] if not arg.startswith('-')]


def several_configurations(paths):
    """The error for an Orthanc started with several configuration paths, as 1.13 allows."""
    return OrthancOpsError('This Orthanc reads several configuration paths (%s), as Orthanc 1.13 allows: the collection '
                           'reads one file or one folder, and would miss what the others set. Nothing was stopped or '
                           'changed. Put the files in one folder (Orthanc reads every .json file in it) and start '
                           'Orthanc with that folder.' % ', '.join(shown(path) for path in paths))


def process_tree(pid):
    """``pid`` and every process below it, from /proc."""
    children = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open('/proc/%s/stat' % name) as handle:
                    parent = int(handle.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def same_path(first, second):
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def shown(path):
    """A path from configuration_of as its process names it."""
    parts = path.split('/', 4)
    return '/' + parts[4] if len(parts) == 5 and parts[1] == 'proc' and parts[3] == 'root' else path


def running_orthanc(config_path):
    """The pid of the Orthanc on this host that runs the configuration at ``config_path``, or None; several are
    refused (which one's environment would count?)."""
    pids = []
    for pid in orthanc_pids():
        paths = configuration_paths(pid)
        if any(same_path(path, config_path) for path in paths):
            if len(paths) > 1:
                raise several_configurations(paths)
            pids.append(pid)
    if len(pids) > 1:
        raise OrthancOpsError('Several Orthanc processes run the configuration %s (pids %s): the module cannot tell '
                              'which one is the service. Nothing was done; stop the others and run again.'
                              % (config_path, ', '.join(map(str, pids))))
    return pids[0] if pids else None


def process_environment(pid):
    """{name: value} of the environment ``pid`` was started with."""
    with open('/proc/%d/environ' % pid, 'rb') as handle:
        items = handle.read().split(b'\0')
    return dict(item.decode(errors='surrogateescape').split('=', 1) for item in items if b'=' in item)


def _enter_network(libc, handle):
    if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


@contextlib.contextmanager
def network_namespace(pid):
    """Sockets opened and commands started in this block live in the network namespace of ``pid``.

    Only the calling thread changes namespace (setns), and it comes back at the end of the block;
    a socket keeps the namespace it was opened in, and a child process inherits its parent's.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    with open('/proc/thread-self/ns/net', 'rb') as own, open('/proc/%d/ns/net' % pid, 'rb') as target:
        _enter_network(libc, target)
        try:
            yield
        finally:
            _enter_network(libc, own)
