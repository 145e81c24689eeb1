# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The off-site phase: copies of complete backups in a restic repository, pushed, listed, pulled back
(checked against their manifest before they count), pruned and checked.

restic does the encryption, deduplication, transport, locking and integrity checks; this phase chooses
what it copies and proves what comes back.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime, timezone

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _authentication, _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_SHOWN, OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._lock import Lock, host_lock
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import (
    CLOCK_DRIFT, ID_FORMAT, Repository, check_instance, new_backup_id)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._restic import Restic
from ansible_collections.orthanc_ops.backup.plugins.module_utils._retention import kept, policy

# In the instance's folder: the lock of off-site operations.
OFFSITE_LOCK = '.offsite.lock'


def _not_pushable(folder, why):
    return OrthancOpsError('The backup in %s cannot be pushed: %s. Nothing was pushed; check it with '
                           'orthanc_ops.backup.orthanc_backup_verify and take a new backup.' % (folder, why))


def parent(held, hostname):
    """The id of the snapshot restic should compare the push with (the newest one of the instance taken on this
    host: a backup links its unchanged files from the one before, so restic finds them there by path, size, time
    and inode, and does not read them again), or None."""
    mine = [snapshot for backup_id in sorted(held or ()) for snapshot in held[backup_id]
            if snapshot.get('hostname') == hostname]
    return mine[-1]['id'] if mine else None


def initialize(restic, instance):
    """Create the restic repository unless there is one by now; True when this call created it. Creations on
    one host take turns: restic's init is not atomic on a REST server or object storage, and two at once
    leave a repository that neither one's key opens."""
    with host_lock('restic ' + restic.location, 'The restic repository %s' % restic.location, 'init', wait=True):
        if restic.snapshots(instance, missing_ok=True) is not None:
            return False
        return restic.initialize()


def _copy(backup_id, snapshots):
    """What the results say of one backup held off site: its newest snapshot."""
    newest = snapshots[-1]
    return {'backup_id': backup_id, 'snapshot_id': newest['short_id'], 'time': newest['time'],
            'hostname': newest.get('hostname'), 'snapshots': len(snapshots)}


def push(module, restic, instance):
    """Push one backup to the restic repository (created first when allowed), unless a snapshot of it is
    there already; what was added. restic reads the backup folder itself, once it is found to hold exactly what
    its manifest lists (a file planted there is refused, not pushed); that check runs while restic lists the
    snapshots (about a second: it derives the key first). The backup is pinned meanwhile: a prune keeps it, and
    backups of the instance go on."""
    params = module.params
    repository = Repository.from_params(module)
    folder, manifest = repository.open_backup(params['backup'])
    backup_id = manifest['backup_id']
    result = {'backup_id': backup_id, 'path': folder, 'files': manifest['files'], 'bytes': manifest['bytes'],
              'bytes_added': 0, 'initialized': False}
    with ThreadPoolExecutor(1) as lister:
        listed = lister.submit(restic.snapshots, instance, missing_ok=True)

        def unchanged(wait=True):
            """The result of a push with nothing to do (a snapshot of the backup is there), else None (also while
            restic still lists, unless ``wait``); ``result['initialized']`` then says whether the repository must
            be created first, which must be allowed."""
            if not (wait or listed.done()):
                return None
            held = listed.result()
            if held is None and not params['initialize']:
                raise OrthancOpsError('There is no restic repository at %s. Check offsite_repository, or set '
                                      'initialize=true to create it. Nothing was pushed.' % restic.location)
            result['initialized'] = held is None
            pushed = (held or {}).get(backup_id)
            return dict(result, changed=False, snapshot_id=pushed[-1]['short_id']) if pushed else None
        if module.check_mode:
            return unchanged() or dict(result, changed=True)
        offsite_lock = Lock(os.path.join(repository.path, OFFSITE_LOCK), 'Off-site copies of instance "%s"' % instance)
        with offsite_lock.acquire('push'), ExitStack() as pin:
            with repository.locked('off-site push'):
                folder, manifest = repository.open_backup(backup_id)
                pin.enter_context(repository.pinned(backup_id, 'off-site push'))
            found = _manifest.problems(folder, manifest, check_md5=False,
                                       stop=lambda: unchanged(wait=False) is not None)
            done = unchanged()
            if done is not None:
                return done
            if found.count:
                raise _not_pushable(folder, '%d problem(s): %s' % (found.count, '; '.join(found)))
            if result['initialized']:
                result['initialized'] = initialize(restic, instance)
            taken_at = datetime.strptime(backup_id, ID_FORMAT).strftime('%Y-%m-%d %H:%M:%S')
            done = restic.backup(folder, instance, backup_id, taken_at, parent(listed.result(), socket.gethostname()))
    return dict(result, changed=True, snapshot_id=done['snapshot_id'], bytes_added=done['data_added'],
                files_unmodified=done['files_unmodified'])


def _chosen(backups, backup, instance, location):
    if not backups:
        raise OrthancOpsError('The restic repository %s holds no backup of instance "%s".' % (location, instance))
    # An id later than now is no backup's (see Repository.backup_ids): never the latest.
    latest = max((found for found in backups if found <= new_backup_id(datetime.now(timezone.utc) + CLOCK_DRIFT)),
                 default=None)
    backup_id = latest if backup == 'latest' else backup
    if backup_id not in backups:
        raise OrthancOpsError('Backup "%s" of instance "%s" is not in the restic repository %s; backups there: %s.'
                              % (backup, instance, location, ', '.join(sorted(backups))))
    return backup_id


def _made_private(folder):
    """restic restores a snapshot's owners and modes, which a holder of the off-site password chooses (setuid
    bits, another user's files, device files): what it wrote into ``folder`` (made for it, 0700, so nobody else
    reaches inside) becomes this user's, folders 0700 and files 0600, and anything else is removed (the manifest's
    check then names it if it was listed)."""
    uid, gid = os.geteuid(), os.getegid()
    for parent, folders, names in os.walk(folder):
        for name in folders + names:
            path = os.path.join(parent, name)
            kind = stat.S_IFMT(os.lstat(path).st_mode)
            if kind not in (stat.S_IFDIR, stat.S_IFREG):
                os.unlink(path)
                continue
            os.chown(path, uid, gid, follow_symlinks=False)
            os.chmod(path, 0o700 if kind == stat.S_IFDIR else 0o600)


def pull(module, restic, instance):
    """Pull one backup from the restic repository into the local one, as a .partial folder that becomes a
    backup only once checked against its manifest and synced to disk (synced while it is checked)."""
    params = module.params
    repository = Repository.from_params(module)
    backups = restic.snapshots(instance)
    backup_id = _chosen(backups, params['backup'], instance, restic.location)
    result = dict(_copy(backup_id, backups[backup_id]), path=repository.backup_path(backup_id))
    if backup_id in repository.backup_ids():
        return dict(result, changed=False)
    if module.check_mode:
        return dict(result, changed=True)
    with repository.locked('off-site pull'):
        partial = repository.fresh_partial(backup_id)
        restic.run(['restore', result['snapshot_id'], '--target', partial], 'pull from')
        _made_private(partial)
        with ThreadPoolExecutor(1) as syncer:
            # The copy goes to the disk while it is checked, which reads it from memory (the page cache).
            synced = syncer.submit(os.sync)
            manifest = _manifest.read(partial, key=repository.key)
            if manifest['backup_id'] != backup_id or manifest.get('instance', instance) != instance:
                raise OrthancOpsError('The snapshot %s of backup "%s" holds backup "%s" of instance "%s". It was left in '
                                      '%s and is not used.' % (result['snapshot_id'], backup_id, manifest['backup_id'],
                                                               manifest.get('instance'), partial))
            problems = _manifest.problems(partial, manifest, check_md5=True)
            synced.result()
        if problems.count:
            raise OrthancOpsError('The copy of backup "%s" pulled from %s does not match its manifest (%d problem(s): '
                                  '%s). It was left in %s and is not used; run "check" on the restic repository.'
                                  % (backup_id, restic.location, problems.count, '; '.join(problems[:PROBLEMS_SHOWN]), partial))
        result.update(path=repository.complete(backup_id, partial), files=manifest['files'],
                      bytes=manifest['bytes'])
    return dict(result, changed=True)


def init(module, restic, instance):
    if module.check_mode:
        created = restic.snapshots(instance, missing_ok=True) is None
    else:
        created = initialize(restic, instance)
    return {'changed': created, 'initialized': created}


def list_backups(module, restic, instance):
    held = [_copy(backup_id, snapshots) for backup_id, snapshots in sorted(restic.snapshots(instance).items())]
    return {'changed': False, 'backups': held, 'latest': held[-1] if held else None}


def prune(module, restic, instance):
    keep_policy = policy(module.params)
    backups = restic.snapshots(instance)
    keep = kept(list(backups), **keep_policy)
    removed = sorted(backup_id for backup_id in backups if backup_id not in keep)
    snapshots = [snapshot for backup_id in removed for snapshot in backups[backup_id]]
    if snapshots and not module.check_mode:
        restic.run(['forget', '--prune'] + [snapshot['id'] for snapshot in snapshots], 'prune')
    return {'changed': bool(removed), 'kept': sorted(keep), 'reasons': keep, 'removed': removed,
            'snapshots_removed': [snapshot['short_id'] for snapshot in snapshots]}


def check(module, restic, instance):
    subset = module.params['read_data_subset']
    restic.run(['check'] + (['--read-data-subset', subset] if subset else []), 'check')
    return {'changed': False, 'read_data_subset': subset}


OPERATIONS = {'init': init, 'push': push, 'pull': pull, 'list': list_backups, 'prune': prune, 'check': check}


def offsite(module):
    params = module.params
    started = time.monotonic()
    instance = check_instance(params['instance'] or socket.gethostname())
    restic = Restic(module, params['offsite_repository'], params['offsite_password'], params['offsite_environment'],
                    params['offsite_options'], _authentication.from_params(params))
    result = OPERATIONS[params['operation']](module, restic, instance)
    result.update(operation=params['operation'], instance=instance,
                  duration_seconds=round(time.monotonic() - started, 3))
    return result


def main(module):
    exit_with(module, lambda: offsite(module))
