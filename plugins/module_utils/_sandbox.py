# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A throwaway Orthanc on a backup, beside the live one and never touching it.

The host's Orthanc program runs on a copy of the backup's index (a SQLite copy, or the dump restored
into a database of its own: the backend's ``sandbox``), on a storage folder into which the files it
is asked for are hard-linked from the backup one by one, on a free loopback port, with a random
password, no DICOM server, no Lua scripts, no peers or modalities, and no plugin but the database's.

Each sandbox is a folder ``.orthanc-sandbox-<name>`` of a work folder, locked while its module runs.
A sandbox whose lock is free was left by a module that died (SIGKILL, a lost connection): the next
sandbox made in the same work folder first kills its Orthanc, drops its database and removes it.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import time

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _authentication, _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import (
    TreeReader, UnsafePath, copy_file, create_file, file_md5, make_dirs, others_can_write, set_owner)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._lock import Lock
from ansible_collections.orthanc_ops.backup.plugins.module_utils._proc import (
    Held, alive, listening_pids, runs_orthanc, same_path, started_with)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import Repository
from ansible_collections.orthanc_ops.backup.plugins.module_utils._rest import OrthancRest

PREFIX = '.orthanc-sandbox-'
NAME_PATTERN = re.compile(r'^[0-9a-f]{12}$')
CONFIG, LOG, PID, LOCK = 'orthanc.json', 'orthanc.log', 'orthanc.pid', 'lock'
USER = 'sandbox'
START_TIMEOUT = 120
KILL_TIMEOUT = 10
# Started through sh so that it outlives run_command, which waits for the output it captures; what
# Orthanc writes (its log, the index) is private whatever the module's umask.
LAUNCH = 'umask 077 && cd "$1" && shift && exec "$@" </dev/null >/dev/null 2>&1 &\necho $!'
# The account a throwaway Orthanc runs as: it parses files that came from a backup (DICOM from modalities, an
# index), and as root a flaw there would be root's. It keeps one capability, reading any file (the backup's
# files it is given are root's, 0600), and may write only its own index, log and temporary folder.
ACCOUNT = 'nobody'
CONFINED = ['--clear-groups', '--no-new-privs'] + ['--%s=-all,+dac_read_search' % caps for caps in (
    'inh-caps', 'ambient-caps', 'bounding-set')]


def backup_source(module):
    """(repository or None, backup folder, its manifest, work folder for sandboxes) of the backup the options
    name: ``src``, or ``backup`` of ``instance`` in ``repository``. The work folder is the backup's parent, where
    the backup's files can be linked, when it is this user's own and nobody else can write there (nobody can then
    swap the sandbox's folder for a link while root writes into it); else the module's private temporary
    folder, where they are copied."""
    if module.params['src']:
        folder = os.path.abspath(module.params['src'])
        private = others_can_write(os.path.dirname(folder)) is None
        return (None, folder, _manifest.read(folder, key=_authentication.from_params(module.params)),
                os.path.dirname(folder) if private else module.tmpdir)
    repository = Repository.from_params(module)
    folder, manifest = repository.open_backup(module.params['backup'])
    return repository, folder, manifest, repository.path


# The plugins of the host's Orthanc packages (Debian's): the only ones a throwaway Orthanc loads.
HOST_PLUGINS = '/usr/share/orthanc/plugins'


def free_port():
    """A TCP port of the loopback nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def plugin_libraries(marker):
    """The host's own libraries of the database plugin whose names hold ``marker``, from its packages' plugin
    folder: never a path the configuration names, which a container, a volume or a backup may have chosen (the
    throwaway Orthanc would load it). Each is a file that only root can write, in folders only root can write."""
    try:
        names = sorted(os.listdir(HOST_PLUGINS))
    except OSError:
        names = []
    found = [os.path.realpath(os.path.join(HOST_PLUGINS, name)) for name in names if marker in name and '.so' in name]
    found = [path for path in found if others_can_write(path) is None]
    if not found:
        raise OrthancOpsError('This host has no %s plugin in %s, which a throwaway Orthanc on the backup needs (it '
                              'loads only the host\'s own plugins, never those the configuration names). Install '
                              'the package of the plugin (orthanc-%s) of the version that wrote the backup; nothing '
                              'was changed.' % (marker, HOST_PLUGINS, marker.replace('Orthanc', '', 1).lower()))
    return found


def _kill(pid, config_path):
    """SIGKILL the Orthanc ``pid`` if it was started on this host with the configuration path ``config_path``
    (the sandbox's own), and wait until it is gone."""
    # The path as the process names it, not the file: a planted folder's orthanc.json may be a link to the
    # live Orthanc's configuration, and its orthanc.pid the live Orthanc's pid.
    def ours(candidate):
        root = '/proc/%d/root' % candidate
        return (runs_orthanc(candidate) and started_with(candidate) == os.path.join(root, config_path.lstrip('/'))
                and same_path(root, '/'))

    with Held([pid], ours) as held:
        if not held.signal(signal.SIGKILL):
            return
    deadline = time.monotonic() + KILL_TIMEOUT
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _read_pid(folder):
    try:
        with open(os.path.join(folder, PID)) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def remove_stale(work_dir, backend):
    """Remove the sandboxes of ``work_dir`` whose module died: their Orthanc, database and folder. The names
    removed."""
    work_dir = os.path.realpath(work_dir)    # as Sandbox names it to its Orthanc
    try:
        names = os.listdir(work_dir)
    except FileNotFoundError:
        return []
    removed = []
    for entry in names:
        name = entry[len(PREFIX):]
        folder = os.path.join(work_dir, entry)
        if not entry.startswith(PREFIX) or not NAME_PATTERN.match(name):
            continue
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                continue    # not ours: a sandbox is a folder
            lock = Lock(os.path.join(folder, LOCK), 'The sandbox %s' % folder).acquire('sandbox clean-up')
        except OrthancOpsError:
            continue    # a module still uses it
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP):
                continue    # gone meanwhile, or not ours
            raise
        with lock:
            pid = _read_pid(folder)
            if pid:
                _kill(pid, os.path.join(folder, CONFIG))
            backend.drop_sandbox(name)
            shutil.rmtree(folder)
        removed.append(name)
    return removed


class Sandbox:
    """A throwaway Orthanc on the backup in ``backup_folder`` (its ``manifest`` checked), made in ``work_dir``
    by ``with``: started by ``start()``, its files linked by ``link()``, read through ``rest``; gone on exit."""

    def __init__(self, module, backend, config, work_dir, backup_folder, manifest):
        self.module, self.backend, self.config = module, backend, config
        self.backup_folder, self.manifest = backup_folder, manifest
        self.work_dir = os.path.realpath(work_dir)    # one spelling of the paths its Orthanc is started with
        self.name = secrets.token_hex(6)
        self.folder = os.path.join(self.work_dir, PREFIX + self.name)
        self.index, self.storage = os.path.join(self.folder, 'index'), os.path.join(self.folder, 'storage')
        self.password = secrets.token_urlsafe(24)
        module.no_log_values.add(self.password)
        self.rest, self.pid, self._lock, self._reader = None, None, None, None
        # Where the backend's files of the backup are read from (see _manifest.private_area).
        self.source = backup_folder

    def __enter__(self):
        remove_stale(self.work_dir, self.backend)
        try:
            os.mkdir(self.folder, 0o700)
        except OSError as exc:
            raise OrthancOpsError('Cannot make the throwaway Orthanc\'s folder in %s: %s. The backup\'s parent '
                                  'folder must be writable; nothing was changed.' % (self.work_dir, exc.strerror))
        self._lock = Lock(os.path.join(self.folder, LOCK), 'The sandbox %s' % self.folder).acquire('sandbox')
        for folder in (self.index, self.storage):
            os.mkdir(folder, 0o700)
        self.source = _manifest.private_area(self.backup_folder, self.manifest, self.backend.folder,
                                             os.path.join(self.folder, 'backup'))
        return self

    def __exit__(self, *exc_info):
        try:
            if self._reader:
                self._reader.__exit__(None, None, None)
            if self.pid:
                _kill(self.pid, os.path.join(self.folder, CONFIG))
            self.backend.drop_sandbox(self.name)
            shutil.rmtree(self.folder, ignore_errors=True)
        finally:
            self._lock.release()

    def start(self):
        """Stage the backup's index and start Orthanc on it; its REST client (``rest``) once it answers. Returns
        the seconds from the start of Orthanc until it answered."""
        orthanc = self.module.get_bin_path('Orthanc', opt_dirs=['/usr/sbin'])
        if not orthanc:
            raise OrthancOpsError('There is no Orthanc program on this host (Orthanc in a container?): a throwaway '
                                  'Orthanc on the backup needs one. Install the orthanc package (and its database '
                                  'plugin) of the version that wrote the backup; nothing was changed.')
        plugins = plugin_libraries(self.backend.plugin_marker) if self.backend.plugin_marker else []
        with self.backend.network():
            port = free_port()
        settings = {
            'Name': 'orthanc-ops sandbox %s' % self.name, 'StorageDirectory': self.storage, 'IndexDirectory': self.index,
            'HttpPort': port, 'RemoteAccessAllowed': False, 'SslEnabled': False,
            'AuthenticationEnabled': True, 'RegisteredUsers': {USER: self.password},
            'DicomServerEnabled': False, 'DicomModalities': {}, 'OrthancPeers': {}, 'LuaScripts': [],
            'Plugins': plugins, 'StorageAccessOnFind': 'Never', 'SaveJobs': False, 'MaximumStorageSize': 0,
            'MaximumPatientCount': 0, 'ExecuteLuaEnabled': False, 'RestApiWriteToFileSystemEnabled': False}
        settings.update(self.backend.sandbox(self.source, self.name, self.manifest, self.index))
        config_path = os.path.join(self.folder, CONFIG)
        with create_file(config_path) as handle:
            handle.write(json.dumps(settings, indent=1).encode())
        confined, temporary = self._confinement()
        started = time.monotonic()
        # In the database's network, where the index is reached at the address the backend connects to: the
        # same address on the host may be served by anyone, who would get the password.
        with self.backend.network():
            rc, out, err = self.module.run_command(
                ['/bin/sh', '-c', LAUNCH, 'sh', self.folder] + confined
                + [orthanc, '--logfile=' + os.path.join(self.folder, LOG), config_path],
                environ_update={'TMPDIR': temporary})
        if rc != 0 or not out.strip().isdigit():
            raise OrthancOpsError('Cannot start a throwaway Orthanc: %s' % (err.strip() or out.strip()))
        self.pid = int(out.strip())
        with create_file(os.path.join(self.folder, PID)) as handle:
            handle.write(str(self.pid).encode())
        self.rest = OrthancRest('http://127.0.0.1:%d' % port, USER, self.password, network=self.backend.network)
        deadline = started + START_TIMEOUT
        while not self.rest.answers():
            if not alive(self.pid) or time.monotonic() > deadline:
                raise OrthancOpsError('The throwaway Orthanc on the backup in %s did not start (%s). Is the backup '
                                      'newer than this host\'s Orthanc or its plugins?'
                                      % (self.backup_folder, self._log_tail()))
            time.sleep(0.02)
        # The port was free when it was chosen, not since: what answers must be this Orthanc, or a drill could pass
        # on another program's answers.
        holders = listening_pids(port, network_of=self.pid)
        if self.pid not in holders:
            raise OrthancOpsError('Port %d of the throwaway Orthanc on the backup in %s is held by another program (pid '
                                  '%s); its answers are not used. Run again (another port is chosen).'
                                  % (port, self.backup_folder, ', '.join(map(str, holders)) or '?'))
        return time.monotonic() - started

    def _confinement(self):
        """(the command that runs Orthanc as ACCOUNT, its temporary folder), once what it writes is the account's:
        its index, its log and that folder, inside the sandbox's folder (root's, 0700, which it may only read)."""
        setpriv = self.module.get_bin_path('setpriv')
        try:
            account = pwd.getpwnam(ACCOUNT)
        except KeyError:
            account = None
        if not setpriv or account is None:
            raise OrthancOpsError('A throwaway Orthanc runs as the account "%s" through setpriv (util-linux); this '
                                  'host lacks %s. Nothing was changed.'
                                  % (ACCOUNT, 'setpriv' if account else 'the account'))
        temporary = os.path.join(self.folder, 'tmp')
        os.mkdir(temporary, 0o700)
        with create_file(os.path.join(self.folder, LOG)):
            pass
        owner = (account.pw_uid, account.pw_gid)
        for path in [temporary, os.path.join(self.folder, LOG), self.index] + [
                os.path.join(self.index, name) for name in os.listdir(self.index)]:
            set_owner(path, *owner)
        return [setpriv, '--reuid=%d' % owner[0], '--regid=%d' % owner[1]] + CONFINED + ['--'], temporary

    def _log_tail(self):
        try:
            with open(os.path.join(self.folder, LOG), 'rb') as handle:
                lines = handle.read().decode(errors='replace').strip().splitlines()
        except OSError:
            return 'no log'
        return ' | '.join(line for line in lines if line.startswith(('E', 'W')))[-1500:] or 'no error logged'

    def link(self, wanted=None):
        """Hard-link (copy, across file systems) into the storage folder the backup's files whose uuids are in
        ``wanted`` (all of them by default), each checked to be a regular file the manifest lists, with its size
        and MD5. Returns {uuid: problem} for the files missing or damaged."""
        problems = dict((uuid, 'not in the backup') for uuid in wanted or ())
        if self._reader is None:
            self._reader = TreeReader(os.path.join(self.backup_folder, 'storage'))
        for relative, size, md5 in self.manifest.entries('storage'):
            relative = relative[len('storage/'):]
            uuid = relative.rsplit('/', 1)[-1]
            if wanted is not None and uuid not in wanted:
                continue
            target = os.path.join(self.storage, relative)
            make_dirs(os.path.dirname(target), 0o700)
            try:
                if not os.path.lexists(target):
                    self._place(relative, target, size, md5)
                problems.pop(uuid, None)
            except (OSError, UnsafePath) as exc:
                problems[uuid] = 'storage/%s: %s' % (relative, exc)
        return problems

    def _place(self, relative, target, size, md5):
        try:
            placed = self._reader.link(relative, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            placed = copy_file(relative, target, beneath=self._reader, hashed=False)[0]
        found = file_md5(target) if placed == size else None
        if found != md5:
            os.unlink(target)
            raise UnsafePath('%d bytes with MD5 %s, the manifest says %d bytes with MD5 %s' % (placed, found, size, md5))
