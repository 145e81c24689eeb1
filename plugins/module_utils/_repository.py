# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A backup repository on the managed host: ``<repository>/<instance>/<backup_id>``.

A backup in progress lives in ``<backup_id>.partial`` and is never listed; it becomes
a backup when its manifest is written and fsynced and the folder is renamed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _authentication, _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import (
    DIR_MODE, create_file, make_dirs, open_regular, remove_entry, sync_folder)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._lock import LOCK_NAME, Lock, held
from ansible_collections.orthanc_ops.backup.plugins.module_utils import _ledger

ID_FORMAT = '%Y%m%dT%H%M%SZ'
ID_PATTERN = re.compile(r'^\d{8}T\d{6}Z$')
PARTIAL = '.partial'
# Beside the backups: the pin of a backup that an operation reads without the instance's lock (an off-site push,
# which lets backups go on meanwhile); a prune keeps a pinned backup.
PIN_PREFIX = '.pinned-'
# The instance's last drill and last passed drill (see orthanc_drill), and the most of it read.
DRILLS = '.drills.json'
DRILL_RECORD_LIMIT = 64 * 1024
# The instance's backup runs, newest last (see orthanc_backup): how many are kept, and the most of the file read.
RUNS = '.runs.json'
RUNS_KEPT = 400
RUN_RECORD_LIMIT = 512 * 1024
# The backups the last check of the instance saw, less those a prune removed since.
HELD = '.held.json'
HELD_RECORD_LIMIT = 1024 * 1024
RUN_STATUSES = ('complete', 'incomplete', 'failed')
RUN_NUMBERS = ('duration_seconds', 'pause_seconds', 'bytes', 'new_bytes')
# What the error message promises: a name that is one plain folder and one plain word on a command line.
INSTANCE_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
# A backup's id is the UTC time it started: one later than now by more than a clock's drift was planted.
CLOCK_DRIFT = timedelta(hours=1)
UNAUTHENTICATED = ('No backup_key was given: backups are neither signed nor checked, and only those in folders nobody '
                   'but root can write are used from %s. Give backup_key (the roles make one).')


def new_backup_id(now=None):
    return (now or datetime.now(timezone.utc)).strftime(ID_FORMAT)


def unusable(path, exc):
    return OrthancOpsError('Cannot use the repository %s: %s. Choose a writable folder for "repository".'
                           % (path, exc.strerror or exc))


def _is_drill(drill):
    return (isinstance(drill, dict) and isinstance(drill.get('backup_id'), str) and ID_PATTERN.match(drill['backup_id'])
            and isinstance(drill.get('drilled_at'), str) and ID_PATTERN.match(drill['drilled_at'])
            and isinstance(drill.get('passed'), bool)
            and (drill.get('rto_seconds') is None or isinstance(drill['rto_seconds'], (int, float)))
            and isinstance(drill.get('reason', ''), str))


def _is_run(run):
    return (isinstance(run, dict) and isinstance(run.get('started'), str) and bool(ID_PATTERN.match(run['started']))
            and run.get('status') in RUN_STATUSES
            and (run.get('backup_id') is None or isinstance(run['backup_id'], str)
                 and bool(ID_PATTERN.match(run['backup_id'])))
            and all(run.get(key) is None or isinstance(run[key], (int, float)) and not isinstance(run[key], bool)
                    for key in RUN_NUMBERS)
            and isinstance(run.get('error') or '', str))


def check_instance(instance):
    if not isinstance(instance, str) or not INSTANCE_PATTERN.match(instance) or len(instance) > 200:
        raise OrthancOpsError('instance %r cannot name a backup folder: use letters, digits, dots, dashes and '
                              'underscores, starting with a letter or digit.' % (instance,))
    return instance


class Repository:
    """The backups of one instance in one repository folder.

    ``warn`` receives what the caller should tell the user (a backup skipped as unreadable or left alone as
    not this instance's); ``key``, a BackupKey: only the backups it signed are listed, used and pruned.
    """

    def __init__(self, root, instance, warn=None, key=None):
        if not root or not os.path.isabs(root):
            raise OrthancOpsError('repository %r is not an absolute path; give the full path of the repository '
                                  'folder (a relative one would land in the folder the playbook runs from).' % (root,))
        self.root = os.path.normpath(root)
        self.instance = check_instance(instance)
        self.path = os.path.join(self.root, instance)
        self.warn = warn or (lambda message: None)
        self.key = key
        self.skipped = []
        # {backup id: why it is left alone} of the folders named as backups that are none of this instance's.
        self.rejected = {}
        self._vetted = {}
        self._lock = None

    @classmethod
    def from_params(cls, module):
        """The repository and instance a module's parameters name (instance: the host name by default), with the
        module's backup key."""
        key = _authentication.from_params(module.params)
        if key is None:
            module.warn(UNAUTHENTICATED % module.params['repository'])
        return cls(module.params['repository'], module.params['instance'] or socket.gethostname(), module.warn, key)

    def backup_path(self, backup_id):
        return os.path.join(self.path, backup_id)

    def backup_ids(self):
        """Ids of the complete backups of this instance, oldest first: folders named by an id whose manifest reads,
        names that id and this instance, and is signed by the key (if any). Others are left alone, in
        ``rejected``: whoever planted them chooses neither what is restored nor what a prune keeps."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise unusable(self.path, exc)
        # A link is not a backup here: it would let whoever planted it choose what is restored or verified.
        return sorted(name for name in names if ID_PATTERN.match(name)
                      and not os.path.islink(os.path.join(self.path, name))
                      and os.path.isdir(os.path.join(self.path, name)) and self._vet(name))

    def counted_ids(self):
        """The backup_ids() a retention policy counts: without a key, only those whose listings also read through to
        their end as their manifest describes them (with one, the signature vouches for the listings)."""
        if self.key:
            return self.backup_ids()
        counted = []
        for backup_id in self.backup_ids():
            try:
                _manifest.read(self.backup_path(backup_id))
            except OrthancOpsError as exc:
                self._reject(backup_id, str(exc))
                continue
            counted.append(backup_id)
        return counted

    def _vet(self, backup_id):
        """True if ``backup_id`` is one of this instance's backups (see backup_ids), asked once per folder."""
        if backup_id not in self._vetted:
            problem = self._problem(backup_id)
            if problem:
                self._reject(backup_id, problem)
            else:
                self._vetted[backup_id] = True
        return self._vetted[backup_id]

    def _reject(self, backup_id, problem):
        self._vetted[backup_id] = False
        self.rejected[backup_id] = problem
        self.warn('Backup folder %s of instance "%s" is left alone (never used, counted or pruned): %s'
                  % (backup_id, self.instance, problem))

    def _problem(self, backup_id):
        """Why the folder named ``backup_id`` is no backup of this instance, or None."""
        try:
            values = _manifest.read_values(self.backup_path(backup_id))
        except OrthancOpsError as exc:
            return str(exc)
        if values['backup_id'] != backup_id:
            return 'its manifest is that of backup %r' % values['backup_id']
        if values.get('instance', self.instance) != self.instance:
            return 'its manifest is that of instance %r' % values['instance']
        if backup_id > new_backup_id(datetime.now(timezone.utc) + CLOCK_DRIFT):
            return 'its id is a time to come'
        return _manifest.trust_problem(self.backup_path(backup_id), values, self.key)

    def latest(self, load=None):
        """(backup_id, manifest) of the newest complete backup, or (None, None).

        With ``load``, a manifest's listing is not read through on its own first: ``load(manifest)`` reads it
        (to its end, where its checks run, see Manifest.entries) and a backup whose listing fails there is
        skipped as one whose manifest does not read."""
        self.skipped = []
        for backup_id in reversed(self.backup_ids()):
            try:
                manifest = _manifest.read(self.backup_path(backup_id), checked=load is None, key=self.key)
                if load:
                    load(manifest)
                return backup_id, manifest
            except OrthancOpsError as exc:
                self.skipped.append('%s (%s)' % (backup_id, exc))
                self.warn('Backup %s of instance "%s" was skipped as the latest: %s' % (backup_id, self.instance, exc))
        return None, None

    def open_backup(self, backup):
        """(folder, manifest) of ``backup`` ('latest' or an id), the manifest read once and checked to be well
        formed (see _manifest.read)."""
        if backup == 'latest':
            backup_id, manifest = self.latest()
            if backup_id is None:
                raise OrthancOpsError('There is no usable complete backup of instance "%s" in %s%s.'
                                      % (self.instance, self.root,
                                         '; skipped: ' + '; '.join(self.skipped) if self.skipped else ''))
        else:
            backup_id = backup
            if backup_id not in self.backup_ids():
                if backup_id in self.rejected:
                    raise OrthancOpsError('Backup "%s" of instance "%s" in %s cannot be used: %s.'
                                          % (backup, self.instance, self.root, self.rejected[backup_id]))
                raise OrthancOpsError('Backup "%s" of instance "%s" is not in %s; complete backups there: %s.'
                                      % (backup, self.instance, self.root, ', '.join(self.backup_ids()) or 'none'))
            manifest = _manifest.read(self.backup_path(backup_id), key=self.key)
        return self.backup_path(backup_id), manifest

    def lock(self, operation):
        """Take the instance's lock or fail at once: backups, restores, prunes and incoming copies of an
        instance exclude each other."""
        try:
            make_dirs(self.path)
            self._lock = Lock(os.path.join(self.path, LOCK_NAME), 'Instance "%s" in %s' % (self.instance, self.root))
            self._lock.acquire(operation)
        except OSError as exc:
            self._lock = None
            raise unusable(self.path, exc)
        except OrthancOpsError:
            self._lock = None
            raise

    def unlock(self):
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @contextmanager
    def locked(self, operation):
        """The instance's lock for the body of the ``with``."""
        self.lock(operation)
        try:
            yield self
        finally:
            self.unlock()

    @contextmanager
    def pinned(self, backup_id, operation):
        """Keep prunes from removing ``backup_id`` for the body of the ``with``; pin it with the instance's lock
        held, so that no prune is removing it meanwhile."""
        path = self._pin(backup_id)
        try:
            pin = Lock(path, 'Backup "%s" of instance "%s"' % (backup_id, self.instance)).acquire(operation)
        except OSError as exc:    # something planted there (a link): never followed
            raise unusable(path, exc)
        with pin:
            try:
                yield
            finally:
                os.unlink(path)

    def is_pinned(self, backup_id):
        return held(self._pin(backup_id))

    def _pin(self, backup_id):
        return os.path.join(self.path, PIN_PREFIX + backup_id)

    def clean_partials(self):
        """Remove what crashed runs left, partial backups, their ledgers and pins nobody holds (call with the
        lock held); return the names removed."""
        removed = []
        for name in os.listdir(self.path):
            path = os.path.join(self.path, name)
            if name.startswith(PIN_PREFIX) and not os.path.isdir(path) and not held(path):
                os.unlink(path)
            elif name.endswith(PARTIAL) or name.startswith(_ledger.PREFIX):
                remove_entry(path)
            else:
                continue
            removed.append(name)
        return removed

    def new_partial(self):
        """Create ``<backup_id>.partial`` for a new backup; ids are unique per second."""
        while True:
            backup_id = new_backup_id()
            if not os.path.exists(self.backup_path(backup_id)):
                break
            time.sleep(0.2)
        return backup_id, self.fresh_partial(backup_id)

    def fresh_partial(self, backup_id):
        """``<backup_id>.partial``, created empty and private for a copy to be written into (call with the lock
        held). Whatever held the name is removed first: a copy a crashed run left, or a link planted to have the
        copy written elsewhere (the link itself, never followed)."""
        path = self.backup_path(backup_id) + PARTIAL
        remove_entry(path)
        try:
            os.mkdir(path, DIR_MODE)
            os.chmod(path, DIR_MODE)    # whatever the umask
        except OSError as exc:
            raise unusable(path, exc)
        return path

    def finalize(self, backup_id, partial, header, entries, storage=()):
        """Make the partial backup complete: manifest written (``header`` and the listings of ``entries`` and
        ``storage``, see _manifest.write), everything synced, folder renamed."""
        _manifest.write(partial, header, entries, storage, self.key)
        return self.complete(backup_id, partial)

    def complete(self, backup_id, partial):
        """Sync a partial backup (data and manifest) to disk, then rename it into place, durably."""
        os.sync()
        final = self.backup_path(backup_id)
        os.rename(partial, final)
        sync_folder(self.path)
        return final

    def _replace(self, name, record):
        """Replace the instance's file ``name`` with the JSON of ``record``, atomically."""
        path = os.path.join(self.path, name)
        partial = path + '.%d' % os.getpid()
        with create_file(partial) as handle:
            handle.write(json.dumps(record, sort_keys=True).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(partial, path)

    def _read(self, name, limit):
        """The JSON value of the instance's file ``name`` (untrusted: read through no link, at most ``limit``
        bytes), or None."""
        try:
            with open_regular(name, beneath=self.path) as handle:
                return json.loads(handle.read(limit))
        except (OSError, ValueError, RecursionError):
            return None

    def record_drill(self, drill):
        """Keep ``drill`` (a drill's result) as the instance's last drill, and as its last passed one when it passed,
        in DRILLS."""
        record = dict(self.drills(), last=drill)
        if drill['passed']:
            record['last_passed'] = drill
        self._replace(DRILLS, record)

    def drills(self):
        """{'last': drill, 'last_passed': drill} as record_drill kept them (each entry only when it is well formed:
        the file is untrusted input), or {}."""
        record = self._read(DRILLS, DRILL_RECORD_LIMIT)
        return dict((key, record[key]) for key in ('last', 'last_passed')
                    if isinstance(record, dict) and _is_drill(record.get(key)))

    def record_run(self, run):
        """Add ``run`` (a backup run: started, status, and what it made) to the instance's last RUNS_KEPT runs, in
        RUNS; nothing when the instance has no folder yet."""
        if os.path.isdir(self.path):
            self._replace(RUNS, (self.runs() + [run])[-RUNS_KEPT:])

    def runs(self, since=None):
        """The backup runs record_run kept, oldest first, those started at ``since`` (an id) or later; each only
        when it is well formed (the file is untrusted input)."""
        record = self._read(RUNS, RUN_RECORD_LIMIT)
        return [run for run in record if _is_run(run) and (since is None or run['started'] >= since)] if isinstance(
            record, list) else []

    def held(self):
        """The backup ids record_held kept (each only when it is one: the file is untrusted input)."""
        record = self._read(HELD, HELD_RECORD_LIMIT)
        return set(backup_id for backup_id in record if isinstance(backup_id, str) and ID_PATTERN.match(backup_id)
                   ) if isinstance(record, list) else set()

    def record_held(self, backup_ids):
        """Keep ``backup_ids`` as the backups the instance holds, for the next check to find those gone since."""
        if os.path.isdir(self.path):
            self._replace(HELD, sorted(backup_ids))

    def disappeared(self, backup_ids):
        """The backups record_held kept that ``backup_ids`` no longer holds, sorted: since a prune takes those it
        removes off the record, something else removed them (a person, ransomware, a failing disk) or made them
        unreadable as backups."""
        return sorted(self.held().difference(backup_ids))

    def free_bytes(self):
        stat = os.statvfs(self.path if os.path.isdir(self.path) else self.root)
        return stat.f_bavail * stat.f_frsize
