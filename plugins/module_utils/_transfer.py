# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The transfer phase: copy one backup between this host's repository and another host's with
rsync over SSH, into ``<backup_id>.partial`` on the receiving side, hard-linking unchanged files
to the receiving side's newest backup. The receiving side verifies and completes the copy."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._lock import LOCK_NAME
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import ID_PATTERN, PARTIAL, Repository

# rsync's exit code when some files could not be read: for --list-only, the folder is missing.
RSYNC_PARTIAL_TRANSFER = 23
# Seconds the receiving side waits for a backup or prune of the instance there to finish.
REMOTE_LOCK_WAIT = 600
_STATS = {
    'new_bytes': re.compile(r'^Total transferred file size: ([\d,.]+)', re.MULTILINE),
    'sent_bytes': re.compile(r'^Total bytes sent: ([\d,.]+)', re.MULTILINE),
    'files_transferred': re.compile(r'^Number of regular files transferred: ([\d,.]+)', re.MULTILINE),
}


def parse_stats(output):
    """The figures of ``rsync --stats`` output that say what a copy cost."""
    stats = {}
    for name, pattern in _STATS.items():
        match = pattern.search(output)
        stats[name] = int(re.sub(r'[,.]', '', match.group(1))) if match else None
    return stats


def parse_listing(output):
    """Backup ids in the output of ``rsync --list-only <folder>/``: complete backups only, oldest first.

    A folder gets its final name only once its copy is verified, so ``.partial`` ones are left out."""
    names = (line.rsplit(None, 1)[-1] for line in output.splitlines() if line.startswith('d'))
    return sorted(name for name in names if ID_PATTERN.match(name))


def choose(backup, ids, where):
    """The id ``backup`` ('latest' or an id) names among ``ids``, or a clear error."""
    if backup == 'latest' and ids:
        return ids[-1]
    if backup in ids:
        return backup
    raise OrthancOpsError('There is no complete backup %s of this instance in %s (complete backups there: %s). '
                          'Choose another backup or instance; nothing was copied.'
                          % ('at all' if backup == 'latest' else '"%s"' % backup, where, ', '.join(ids) or 'none'))


class Remote:
    """The other side of the copy: a repository on a host reached by SSH."""

    def __init__(self, params, instance, ssh):
        self.ssh = ssh
        self.host = params['remote_host']
        self.user = params['remote_user']
        self.port = params['remote_port']
        self.ssh_args = params['ssh_args']
        self.folder = '%s/%s' % (params['remote_repository'].rstrip('/'), instance)
        self.control_path = None

    @property
    def rsh(self):
        options = [self.ssh, '-o', 'BatchMode=yes']
        if self.control_path:
            options += ['-o', 'ControlMaster=auto', '-o', 'ControlPath=' + self.control_path,
                        '-o', 'ControlPersist=60']
        return ' '.join(options + (['-p', str(self.port)] if self.port else [])
                        + ([self.ssh_args] if self.ssh_args else []))

    def spec(self, path=''):
        """``[user@]host:<folder>[/path]`` as rsync names a remote file."""
        login = '%s@' % self.user if self.user else ''
        return '%s%s:%s' % (login, self.host, '%s/%s' % (self.folder, path) if path else self.folder + '/')

    def where(self):
        return '%s on %s' % (self.folder, self.host)


class Transfer:
    """A copy of one backup between this host's repository and a remote one with rsync over SSH, hard-linking
    unchanged files to the receiving side's newest backup."""

    def __init__(self, module):
        self.module = module
        params = module.params
        self.local = Repository.from_params(module)
        self.remote = Remote(params, self.local.instance, module.get_bin_path('ssh', required=True))
        self.push = params['direction'] == 'push'
        self.rsync = module.get_bin_path('rsync', required=True)

    def remote_ids(self):
        rc, out, err = self.module.run_command([self.rsync, '--list-only', '--rsh', self.remote.rsh,
                                                self.remote.spec()])
        if rc == RSYNC_PARTIAL_TRANSFER and 'No such file or directory' in err:
            return []
        if rc != 0:
            raise OrthancOpsError('Cannot list %s with rsync over SSH (exit code %d): %s. Check that the host is '
                                  'reachable with the given user, port and ssh_args, and has rsync.'
                                  % (self.remote.where(), rc, err.strip() or out.strip()))
        return parse_listing(out)

    def run(self):
        # The listing and the copy share one SSH connection: a handshake costs as much as a small copy.
        control_dir = tempfile.mkdtemp(prefix='orthanc-ops-ssh-')
        self.remote.control_path = os.path.join(control_dir, 'master')
        try:
            return self._listed_and_copied()
        finally:
            if os.path.exists(self.remote.control_path):
                self.module.run_command([self.remote.ssh, '-o', 'ControlPath=' + self.remote.control_path, '-O', 'exit',
                                         self.remote.host])
            shutil.rmtree(control_dir, ignore_errors=True)

    def _listed_and_copied(self):
        """Choose the backup to copy, and copy it unless the receiving side has it already; the module's result."""
        backup = self.module.params['backup']
        local_ids, remote_ids = self.local.backup_ids(), self.remote_ids()
        if self.push:
            backup_id = choose(backup, local_ids, '%s on this host' % self.local.path)
            received, folder = remote_ids, self.remote.folder
        else:
            backup_id = choose(backup, remote_ids, self.remote.where())
            received, folder = local_ids, self.local.path
        result = {'backup_id': backup_id, 'direction': self.module.params['direction'],
                  'path': '%s/%s' % (folder, backup_id)}
        if backup_id in received:
            result.update(changed=False, copied=False, linked_to=None, new_bytes=0, sent_bytes=0, files_transferred=0)
            return result
        linked_to = received[-1] if received else None
        result.update(self._copy(backup_id, linked_to), changed=True, copied=not self.module.check_mode,
                      linked_to=linked_to, path=result['path'] + PARTIAL)
        return result

    def _copy(self, backup_id, linked_to):
        """Run rsync for one backup into a .partial folder on the receiving side (a dry run in check mode); what it
        sent and what the copy added."""
        # Contents and times, not the sending side's owners, modes or device files: a backup's folders are 0700
        # and its files 0600, whoever wrote them there.
        argv = [self.rsync, '--archive', '--no-owner', '--no-group', '--no-devices', '--no-specials',
                '--chmod=D0700,F0600', '--stats', '--rsh', self.remote.rsh]
        if self.module.check_mode:
            argv.append('--dry-run')
        if linked_to:
            argv.append('--link-dest=../%s' % linked_to)
        if self.push:
            if not self.module.check_mode:
                # The receiving rsync creates the instance folder first (private, with any rsync version)
                # and holds the instance's lock while it writes, so a prune there cannot remove the copy.
                folder = shlex.quote(self.remote.folder)
                argv.append('--rsync-path=umask 077 && mkdir -p -- %s && flock -w %d %s/%s rsync'
                            % (folder, REMOTE_LOCK_WAIT, folder, LOCK_NAME))
            argv += ['%s/' % self.local.backup_path(backup_id), self.remote.spec(backup_id + PARTIAL + '/')]
            rc, out, err = self.module.run_command(argv)
        else:
            argv += [self.remote.spec(backup_id + '/'), '%s%s/' % (self.local.backup_path(backup_id), PARTIAL)]
            if self.module.check_mode:
                rc, out, err = self.module.run_command(argv)
            else:
                self.local.lock('incoming copy')
                try:
                    # rsync writes through a link at the top of its destination: the folder is made anew.
                    self.local.fresh_partial(backup_id)
                    rc, out, err = self.module.run_command(argv)
                finally:
                    self.local.unlock()
        if rc != 0:
            raise OrthancOpsError('rsync could not copy backup %s %s %s (exit code %d): %s. Nothing was completed; '
                                  'the next copy starts again.'
                                  % (backup_id, 'to' if self.push else 'from', self.remote.where(), rc,
                                     err.strip() or out.strip()))
        return parse_stats(out)


def main(module):
    exit_with(module, lambda: Transfer(module).run())
