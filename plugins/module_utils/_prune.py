# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The prune phase: apply a retention policy to the complete backups of one instance."""

from __future__ import annotations

import os
import shutil

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import Repository
from ansible_collections.orthanc_ops.backup.plugins.module_utils._retention import kept

POLICY = ('keep_last', 'keep_daily', 'keep_weekly', 'keep_monthly')


def freed_bytes(folders):
    """Bytes that removing ``folders`` gives back: files whose every hard link is inside them."""
    inodes = {}
    for folder in folders:
        for current, dummy, names in os.walk(folder):
            for name in names:
                info = os.lstat(os.path.join(current, name))
                seen = inodes.setdefault((info.st_dev, info.st_ino), [0, info.st_nlink, info.st_size])
                seen[0] += 1
    return sum(size for count, links, size in inodes.values() if count == links)


def prune(module):
    params = module.params
    policy = dict((name, params[name]) for name in POLICY)
    if any(value < 0 for value in policy.values()):
        raise OrthancOpsError('keep_* options cannot be negative.')
    if not any(policy.values()):
        # As restic's forget: no policy removes nothing rather than everything but the newest.
        raise OrthancOpsError('No retention policy was given: set at least one of %s (keep_last: 1 keeps only the '
                              'newest backup). Nothing was removed.' % ', '.join(POLICY))
    repository = Repository.from_params(module)
    if not module.check_mode:
        # Backups, restores and incoming copies hold this lock: nothing they use is removed.
        repository.lock('prune')
    try:
        backup_ids = repository.backup_ids()
        keep = kept(backup_ids, **policy)
        remove = [backup_id for backup_id in backup_ids if backup_id not in keep]
        folders = [repository.backup_path(backup_id) for backup_id in remove]
        result = {'changed': bool(remove), 'kept': sorted(keep), 'reasons': keep, 'removed': remove,
                  'bytes_freed': freed_bytes(folders)}
        if not module.check_mode:
            partials = repository.clean_partials()
            for folder in folders:
                shutil.rmtree(folder)
            result.update(partials_removed=partials, changed=bool(remove or partials))
        return result
    finally:
        repository.unlock()


def main(module):
    exit_with(module, lambda: prune(module))
