# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""restic, run for one repository: secrets passed only through its environment, its JSON read, and
its failures told in words an admin can act on.

Snapshots of Orthanc backups carry two tags, ``orthanc-instance:<instance>`` and
``orthanc-backup:<backup_id>``: the backups of an instance are found by the first, a backup by both. With a backup
key, a third, ``orthanc-seal:<seal>``, proves that the snapshot was pushed by a holder of the key: only sealed
snapshots are listed, pulled, taken as pushed already, counted and forgotten by a prune.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import urlsplit

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import ID_PATTERN

INSTANCE_TAG = 'orthanc-instance:'
BACKUP_TAG = 'orthanc-backup:'
SEAL_TAG = 'orthanc-seal:'
# Where restic reads a password from, besides RESTIC_PASSWORD.
PASSWORD_SOURCES = ('RESTIC_PASSWORD', 'RESTIC_PASSWORD_FILE', 'RESTIC_PASSWORD_COMMAND')
# restic's words for a failure, first match wins, and what the admin should do. An unreachable repository
# also prints "Is there a repository at the following location?", so the network comes before "no repository".
FAILURES = (
    (('wrong password or no key found',),
     'the password does not open it (wrong password or no key found). Give the repository\'s password in '
     'offsite_password or RESTIC_PASSWORD'),
    (('repository is already locked',),
     'another restic process holds its lock (%(detail)s). Wait for it to finish; if it died on another host, '
     'remove its lock with "restic unlock" there'),
    (('connection refused', 'no such host', 'i/o timeout', 'network is unreachable', 'connection reset',
      'no route to host', 'tls: ', 'x509: ', 'ssh command exited', 'unable to start the sftp session',
      'subprocess ssh:'),
     'it cannot be reached (%(detail)s). Check its address, the network and the credentials in '
     'offsite_environment'),
    (('no space left on device', 'quota exceeded', 'quotaexceeded', 'disk quota'),
     'it is full (%(detail)s). Free space there, or prune its old backups'),
    (('read-only file system', 'permission denied', 'access denied', 'accessdenied', 'forbidden',
      'appendonly', 'append-only'),
     'it refuses this change (%(detail)s). Check that the credentials may write there and that the storage is '
     'writable'),
    (('is there a repository at the following location?',),
     'there is no restic repository there (%(detail)s). Check the address, or create it (restic init, or this '
     'module with initialize=true)'),
)


def tags(instance, backup_id):
    return [INSTANCE_TAG + instance, BACKUP_TAG + backup_id]


def backup_of(snapshot):
    """The backup id a snapshot's tags name, or None; a tag that is not a backup id (it would name a folder
    to pull into) is not one."""
    for tag in snapshot.get('tags') or ():
        if tag.startswith(BACKUP_TAG) and ID_PATTERN.match(tag[len(BACKUP_TAG):]):
            return tag[len(BACKUP_TAG):]
    return None


def _moment(snapshot):
    """A sort key of a snapshot's time as restic writes it (RFC 3339, UTC here, a fraction of any length)."""
    match = re.match(r'^([^.Z+]*)(?:\.(\d+))?', snapshot.get('time') or '')
    return match.group(1), float('0.' + (match.group(2) or '0'))


def by_backup(snapshots, seal=None):
    """{backup_id: [snapshot, ...]} of snapshots tagged with a backup id, each list oldest first; with ``seal``
    (backup id -> its seal tag), only those that carry it."""
    found = {}
    for snapshot in sorted(snapshots, key=_moment):
        backup_id = backup_of(snapshot)
        if backup_id and (seal is None or seal(backup_id) in (snapshot.get('tags') or ())):
            found.setdefault(backup_id, []).append(snapshot)
    return found


def url_password(location):
    """The password a repository string holds in a URL (``rest:https://user:secret@host/``), or None."""
    url = location.split(':', 1)[1] if re.match(r'^(rest|s3|swift|azure|gs|b2|rclone):', location) else location
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def explain(stderr, location, action):
    """The message of a failed restic run: what failed, on which repository, why in restic's words, and what
    to do."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = '; '.join(lines[-6:])[-600:] or 'restic printed nothing'
    lowered = stderr.lower()
    for needles, advice in FAILURES:
        if any(needle in lowered for needle in needles):
            return 'Cannot %s the restic repository %s: %s.' % (action, location, advice % {'detail': detail})
    return 'Cannot %s the restic repository %s: %s.' % (action, location, detail)


def summary(stdout):
    """The last ``summary`` message of ``restic backup --json``."""
    for line in reversed(stdout.splitlines()):
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get('message_type') == 'summary':
            return message
    raise OrthancOpsError('restic backup ended without its summary; its output was: %s' % stdout[-500:])


class Restic:
    """restic for one repository, run by ``module`` with the password and credentials in its environment."""

    def __init__(self, module, location, password, environment, options=None, key=None):
        self.module, self.key = module, key
        self.binary = module.get_bin_path('restic')
        if not self.binary:
            raise OrthancOpsError('restic is not installed on this host (looked for it on PATH). Install the restic '
                                  'package (Debian and Ubuntu: apt install restic), or let the roles install it.')
        self.location = location
        self.options = [arg for name, value in sorted((options or {}).items()) for arg in ('-o', '%s=%s' % (name, value))]
        self.environ = dict((str(name), str(value)) for name, value in (environment or {}).items())
        self.environ.update(RESTIC_REPOSITORY=location, TZ='UTC')
        if password:
            self.environ['RESTIC_PASSWORD'] = password
        if not any(name in self.environ or name in os.environ for name in PASSWORD_SOURCES):
            raise OrthancOpsError('No password for the restic repository %s: give offsite_password, or '
                                  'RESTIC_PASSWORD (or RESTIC_PASSWORD_FILE) in offsite_environment or in the '
                                  'environment of the task.' % location)
        secret = url_password(location)
        if secret:
            module.no_log_values.add(secret)

    def run(self, args, action, check_rc=True, cwd=None):
        """(rc, stdout, stderr) of ``restic args``; a failure raises with explain(). A lock left by a restic
        process that died on this host is removed (``restic unlock`` removes stale locks only) and the command
        tried once more."""
        command = [self.binary, '--quiet'] + self.options + args
        rc, out, err = self.module.run_command(command, environ_update=self.environ, cwd=cwd)
        if rc != 0 and 'repository is already locked' in err:
            self.module.run_command([self.binary] + self.options + ['unlock'], environ_update=self.environ)
            rc, out, err = self.module.run_command(command, environ_update=self.environ, cwd=cwd)
        if rc != 0 and check_rc:
            raise OrthancOpsError(explain(err, self.location, action), restic_rc=rc)
        return rc, out, err

    def initialize(self):
        """Create the repository; return False when another push (a host beside this one) created it first."""
        rc, dummy, err = self.run(['init'], 'create', check_rc=False)
        if rc == 0:
            return True
        if 'config file already exists' in err:
            return False
        raise OrthancOpsError(explain(err, self.location, 'create'), restic_rc=rc)

    def snapshots(self, instance, missing_ok=False):
        """{backup_id: [snapshot, ...]} of the instance's snapshots, read without a lock (it changes nothing);
        None when there is no repository at the location and ``missing_ok``. Any other failure (password,
        network) raises."""
        args = ['snapshots', '--json', '--no-lock', '--tag', INSTANCE_TAG + instance]
        rc, out, err = self.run(args, 'list', check_rc=False)
        if rc != 0:
            message = explain(err, self.location, 'open')
            if missing_ok and 'there is no restic repository there' in message:
                return None
            raise OrthancOpsError(message, restic_rc=rc)
        try:
            return by_backup(json.loads(out or '[]'), self._seal(instance))
        except ValueError:
            raise OrthancOpsError('restic snapshots printed no JSON: %s' % out[-300:])

    def _seal(self, instance):
        """backup id -> the seal tag of its snapshots, or None without a key."""
        if self.key is None:
            return None
        return lambda backup_id: SEAL_TAG + self.key.snapshot_seal(instance, backup_id)

    def backup(self, folder, instance, backup_id, taken_at, parent=None):
        """Back up the content of ``folder`` as a snapshot of the backup (sealed, with a key); return restic's
        summary. Files whose size, time and inode match the ``parent`` snapshot at the same path are not read."""
        args = ['backup', '--json', '--ignore-ctime', '--time', taken_at]
        for tag in tags(instance, backup_id) + ([self._seal(instance)(backup_id)] if self.key else []):
            args += ['--tag', tag]
        if parent:
            args += ['--parent', parent]
        dummy, out, dummy = self.run(args + ['.'], 'push to', cwd=folder)
        return summary(out)
