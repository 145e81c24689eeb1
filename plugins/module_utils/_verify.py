# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The verify phase: check a backup in a repository against its manifest, and complete a copy
that has just arrived (``<backup_id>.partial``) only when every file is there and sound."""

from __future__ import annotations

import os
import time

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_SHOWN, OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import remove_entry, sync_folder
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import ID_PATTERN, PARTIAL, Repository


def _incoming_folder(repository, backup):
    if not ID_PATTERN.match(backup):
        raise OrthancOpsError('incoming=true needs the id of the copy that arrived in "backup" (YYYYMMDDTHHMMSSZ), '
                              'not %r.' % backup)
    folder = repository.backup_path(backup) + PARTIAL
    if os.path.islink(folder):
        raise OrthancOpsError('%s is a symbolic link, not a copy that arrived; it is not followed. Remove it and copy '
                              'backup "%s" there again.' % (folder, backup))
    if not os.path.isdir(folder):
        if backup in repository.backup_ids():
            raise OrthancOpsError('Backup "%s" of instance "%s" is already complete in %s; verify it with '
                                  'incoming=false.' % (backup, repository.instance, repository.root))
        raise OrthancOpsError('No copy of backup "%s" arrived: %s does not exist. Copy the backup there first.'
                              % (backup, folder))
    return folder


def _opened(module, repository):
    """(folder, manifest) of the backup to verify; with sign, a backup its key has not signed yet too."""
    params = module.params
    if params['sign']:
        if repository.key is None:
            raise OrthancOpsError('sign=true needs backup_key: the key to sign the backup with.')
        # Opened without the key: signing is what it lacks.
        repository = Repository(repository.root, repository.instance, module.warn)
    if not params['incoming']:
        return repository.open_backup(params['backup'])
    folder = _incoming_folder(repository, params['backup'])
    manifest = _manifest.read(folder, key=repository.key)
    if (manifest['backup_id'], manifest.get('instance', repository.instance)) != (params['backup'], repository.instance):
        raise OrthancOpsError('The copy in %s is not backup "%s" of instance "%s": its manifest names backup "%s" of '
                              'instance "%s". It is left as it is.'
                              % (folder, params['backup'], repository.instance, manifest['backup_id'],
                                 manifest.get('instance')))
    return folder, manifest


def _sign(folder, key):
    """Seal ``folder``'s manifest with ``key``, replacing it atomically and durably; True if it was not yet."""
    values = _manifest.read_values(folder)
    if key.problem(values) is None:
        return False
    # Written beside the backup, not in it (the backup holds only what it lists), under a name a prune's
    # clean-up removes if this run is killed.
    partial = os.path.join(os.path.dirname(folder), '.manifest-%s%s' % (os.path.basename(folder), PARTIAL))
    remove_entry(partial)
    os.rename(_manifest.write_values(partial, key.seal(values)), os.path.join(folder, _manifest.NAME))
    sync_folder(folder)
    return True


def verify(module):
    """Check a backup (or an incoming copy) against its manifest: every listed file present with its size and,
    with check_md5, its MD5, and nothing else; an incoming copy that passes becomes a complete backup, and with
    sign a backup that passes is signed with the key."""
    params = module.params
    started = time.monotonic()
    repository = Repository.from_params(module)
    folder, manifest = _opened(module, repository)
    problems = _manifest.problems(folder, manifest, check_md5=params['check_md5'],
                                  keep=max(params['list_limit'], PROBLEMS_SHOWN))
    result = {
        'changed': False,
        'backup_id': manifest['backup_id'],
        'path': folder,
        'files': manifest['files'],
        'bytes': manifest['bytes'],
        'md5_checked': params['check_md5'],
        'problems': problems[:max(params['list_limit'], 0)],
        'problems_count': problems.count,
        'authenticated': manifest.authenticated,
        'signed': False,
    }
    if problems.count:
        raise OrthancOpsError('The backup in %s does not match its manifest (%d problem(s): %s). Do not rely on it; '
                              'copy or take the backup again.' % (folder, problems.count,
                                                                  '; '.join(problems[:PROBLEMS_SHOWN])),
                              **result)
    if params['sign'] and not module.check_mode:
        with repository.locked('verify'):
            result['signed'] = result['changed'] = _sign(folder, repository.key)
        result['authenticated'] = True
    if params['incoming'] and not module.check_mode:
        with repository.locked('verify'):
            result['path'] = repository.complete(params['backup'], folder)
        result['changed'] = True
    result['duration_seconds'] = round(time.monotonic() - started, 3)
    return result


def main(module):
    exit_with(module, lambda: verify(module))
