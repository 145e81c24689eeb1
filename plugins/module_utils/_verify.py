# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The verify phase: check a backup in a repository against its manifest, and complete a copy
that has just arrived (``<backup_id>.partial``) only when every file is there and sound."""

from __future__ import annotations

import contextlib
import os
import time

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_SHOWN, Findings, OrthancOpsError, exit_with
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


def _checked(folder, key, params):
    """{problems, problems_count} of one backup of verify_all; its listing is read once, to its end, by the check."""
    found = Findings(PROBLEMS_SHOWN)
    try:
        manifest = _manifest.read(folder, checked=False, key=key)
        if params['sample_files']:
            found = _manifest.sampled_problems(folder, manifest, params['sample_files'], keep=PROBLEMS_SHOWN)
        else:
            found = _manifest.problems(folder, manifest, check_md5=params['check_md5'], keep=PROBLEMS_SHOWN)
    except OrthancOpsError as exc:    # a listing or manifest rewritten: the backup changed
        found.add(str(exc))
    return {'problems': list(found), 'problems_count': found.count}


def verify_all(module):
    """Check every complete backup of the instance (O(sample_files) files of each at random, or all of them), and
    that none the last check saw is gone since, other than by a prune; then record the backups seen."""
    params = module.params
    if params['incoming'] or params['sign'] or params['sample_files'] < 0:
        raise OrthancOpsError('backup=all checks the complete backups, each on its own: incoming and sign take the id '
                              'of one backup, and sample_files cannot be negative (0 checks every file).')
    started = time.monotonic()
    repository = Repository.from_params(module)
    with contextlib.ExitStack() as held:
        if not module.check_mode:
            # No prune or incoming copy meanwhile: a backup removed during the check is not one that disappeared.
            held.enter_context(repository.locked('verify'))
        backups = []
        for backup_id in repository.backup_ids():
            backups.append(dict(_checked(repository.backup_path(backup_id), repository.key, params), backup_id=backup_id))
        present = [backup['backup_id'] for backup in backups]
        disappeared = repository.disappeared(present)
        if not module.check_mode:
            repository.record_held(present)
    result = {
        'changed': False,
        'backups': backups,
        'changed_backups': [backup['backup_id'] for backup in backups if backup['problems_count']],
        'disappeared': disappeared,
        'left_alone': repository.rejected,
        'md5_checked': params['check_md5'] or bool(params['sample_files']),
        'duration_seconds': round(time.monotonic() - started, 3),
    }
    problems = ['backup %s no longer matches its manifest (%s)' % (backup['backup_id'], '; '.join(backup['problems']))
                for backup in backups if backup['problems_count']]
    problems += ['backup %s is gone since the last check, and no prune removed it' % backup_id
                 for backup_id in disappeared]
    if problems:
        raise OrthancOpsError('Backups of instance "%s" in %s were changed or removed after they were taken, by '
                              'someone who can write the repository (ransomware?) or a failing disk: %s. Find out '
                              'what happened before relying on them; restore from another copy.'
                              % (repository.instance, repository.root, '; '.join(problems[:PROBLEMS_SHOWN])),
                              **result)
    return result


def main(module):
    exit_with(module, lambda: verify_all(module) if module.params['backup'] == 'all' else verify(module))
