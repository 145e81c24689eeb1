# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The prune phase: apply a retention policy to the complete backups of one instance."""

from __future__ import annotations

import heapq
import itertools
import shutil
from operator import itemgetter

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import walk_sorted
from ansible_collections.orthanc_ops.backup.plugins.module_utils._manifest import read_values, sort_key
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import ID_PATTERN, Repository
from ansible_collections.orthanc_ops.backup.plugins.module_utils._retention import kept, policy

_PATH = itemgetter(0)


def freed_bytes(folders):
    """Bytes that removing ``folders`` gives back: files whose every hard link is inside them.

    A backup links a file only from the same path in another backup, so links are counted path by path,
    the folders walked side by side in order: one path's entries are held at a time, whatever the size.
    """
    walks = [((sort_key(relative), entry.stat(follow_symlinks=False)) for relative, entry in walk_sorted(folder))
             for folder in folders]
    freed = 0
    for dummy, same_path in itertools.groupby(heapq.merge(*walks, key=_PATH), key=_PATH):
        inodes = {}
        for dummy, info in same_path:
            seen = inodes.setdefault((info.st_dev, info.st_ino), [0, info.st_nlink, info.st_size])
            seen[0] += 1
        freed += sum(size for count, links, size in inodes.values() if count == links)
    return freed


def predecessors(repository, backup_ids):
    """{backup id: the id of the backup it was taken after, or None} as each backup's (signed) manifest names it,
    and the ids of the backups whose new bytes jumped (see _backup.JUMP_RATIO)."""
    previous, jumped = {}, set()
    for backup_id in backup_ids:
        values = read_values(repository.backup_path(backup_id))
        named = values.get('previous_backup')
        previous[backup_id] = named if isinstance(named, str) and ID_PATTERN.match(named) else None
        if values.get('new_bytes_jump') is True:
            jumped.add(backup_id)
    return previous, jumped


def disappeared(previous, backup_ids, keep_policy):
    """Backups removed by something else than retention: of those the backups name as taken before them
    (``previous``, see predecessors), one that is gone although the policy, counting it, would keep it was removed
    by a person, a program (ransomware) or a failing disk. Sorted ids."""
    gone = set(named for named in previous.values() if named).difference(backup_ids)
    return sorted(gone.intersection(kept(sorted(gone.union(backup_ids)), **keep_policy))) if gone else []


def prune(module):
    """Remove the backups the retention policy no longer keeps, holding the repository's lock (check mode:
    which ones)."""
    params = module.params
    keep_policy = policy(params)
    repository = Repository.from_params(module)
    if not module.check_mode:
        # Backups, restores and incoming copies hold this lock: nothing they use is removed.
        repository.lock('prune')
    try:
        backup_ids = repository.counted_ids()
        previous, jumped = predecessors(repository, backup_ids)
        keep = kept(backup_ids, **keep_policy)
        # The last backup before a jump in new bytes is the one to restore if the jump was an attack: kept as long
        # as the backup after the jump is.
        before_jump = set(previous[backup_id] for backup_id in jumped.intersection(keep))
        for backup_id in (backup_id for backup_id in backup_ids if backup_id not in keep):
            if backup_id in before_jump:
                keep[backup_id] = ['before jump']
            elif repository.is_pinned(backup_id):
                keep[backup_id] = ['pinned']
        remove = [backup_id for backup_id in backup_ids if backup_id not in keep]
        folders = [repository.backup_path(backup_id) for backup_id in remove]
        result = {'changed': bool(remove), 'kept': sorted(keep), 'reasons': keep, 'removed': remove,
                  'left_alone': repository.rejected, 'bytes_freed': freed_bytes(folders),
                  'disappeared': disappeared(previous, backup_ids, keep_policy)}
        if result['disappeared']:
            module.warn('Backup(s) %s of instance "%s" are gone from %s although the retention policy keeps them: '
                        'something else removed them (a person, ransomware, a failing disk). Find out what.'
                        % (', '.join(result['disappeared']), repository.instance, repository.path))
        if not module.check_mode:
            partials = repository.clean_partials()
            for folder in folders:
                shutil.rmtree(folder)
            repository.record_held(repository.held().difference(remove))
            result.update(partials_removed=partials, changed=bool(remove or partials))
        return result
    finally:
        repository.unlock()


def main(module):
    exit_with(module, lambda: prune(module))
