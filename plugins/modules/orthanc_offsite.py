#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_offsite
short_description: Keep encrypted, deduplicated off-site copies of Orthanc backups with restic
version_added: 0.2.0
description:
  - Copies complete backups of a repository (C(<repository>/<instance>/<backup_id>)) into a restic repository
    on object storage (S3-compatible, Azure, Google Cloud Storage, B2), on an SFTP host or on a restic REST
    server, and brings them back. restic encrypts and authenticates everything it stores, and stores a file
    that an earlier push already stored only once.
  - O(operation=init) creates the restic repository when there is none. Creations on one host take turns, since
    restic's own is not atomic on a REST server or object storage; the roles run it one host at a time before they
    push. O(operation=push) creates the repository too when O(initialize=true).
  - O(operation=push) copies one backup, tagged C(orthanc-instance:<instance>) and C(orthanc-backup:<backup_id>),
    with the backup's time as the snapshot's time. restic reads the backup folder once it is found to hold
    exactly what the backup's manifest lists, each file a regular file of the size listed; a folder holding
    anything else (a planted file, a symbolic link) is refused. A backup already held off site is not pushed
    again. restic compares the backup with the newest snapshot this host pushed and reads only the files that
    changed since, so a push after a backup that changed little reads little and sends less.
  - The backup being pushed is pinned, not locked, while restic reads it - backups of the instance go on, and
    M(orthanc_ops.backup.orthanc_backup_prune) keeps it until a later prune.
  - O(operation=list) lists the backups of the instance held off site.
  - O(operation=pull) restores one into C(<repository>/<instance>/<backup_id>.partial) (made anew - whatever held the
    name, a symbolic link too, is removed first, never followed), checks every file against
    the manifest (size and MD5), and only then renames it into place, so that
    M(orthanc_ops.backup.orthanc_restore) can use it as any backup of the repository. A copy that fails the
    check stays C(.partial) and is never used.
  - O(operation=prune) removes the off-site copies the retention policy does not keep (the rules of
    M(orthanc_ops.backup.orthanc_backup_prune); the newest is always kept), then the data only they used
    (C(restic forget --prune)).
  - O(operation=check) checks the restic repository's structure (C(restic check)) and, with
    O(read_data_subset), reads and checks that part of the stored data.
  - The password and the credentials reach restic only through its environment, never its command line, and
    are kept out of results, warnings and logs.
  - A lock that a restic process killed on this host left is removed (C(restic unlock) removes only stale
    locks) and the command run once more; a lock held by a live process is reported with its holder.
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.orthanc.REPOSITORY
  - orthanc_ops.backup.orthanc.RETENTION
  - orthanc_ops.backup.attributes
requirements:
  - restic 0.14 or later on the managed host.
options:
  operation:
    description: What to do; see the description.
    type: str
    required: true
    choices: [init, push, pull, list, prune, check]
  repository:
    description:
      - Required for O(operation=push) and O(operation=pull).
  offsite_repository:
    description:
      - The restic repository, as restic names it, for example C(s3:https://s3.example.org/bucket/orthanc),
        C(sftp:backup@host:/srv/restic), C(rest:https://host:8000/) or a local path.
      - Defaults to the environment variable E(RESTIC_REPOSITORY).
      - Put credentials in O(offsite_environment) rather than here; a password written in a URL here is kept
        out of the output too.
    type: str
    required: true
  offsite_password:
    description:
      - The password of the restic repository.
      - Defaults to the environment variable E(RESTIC_PASSWORD); E(RESTIC_PASSWORD_FILE) or
        E(RESTIC_PASSWORD_COMMAND) in O(offsite_environment) or in the task's environment serve too.
    type: str
  offsite_environment:
    description:
      - Environment variables for restic, such as the storage's credentials (E(AWS_ACCESS_KEY_ID),
        E(AWS_SECRET_ACCESS_KEY), E(AZURE_ACCOUNT_KEY), E(B2_ACCOUNT_KEY), ...). Their values are kept out of
        the output.
    type: dict
    default: {}
  offsite_options:
    description:
      - Extended options of restic, each given as C(-o name=value), for example C(sftp.command) for an SFTP
        repository reached with a key of its own, or C(s3.storage-class).
      - restic takes them only on its command line, which every local user can read while it runs, so never put a
        secret here (a password or a key belongs in O(offsite_environment) or a file the option names).
    type: dict
    default: {}
  backup:
    description:
      - The backup to push or pull, V(latest) or an id (C(YYYYMMDDTHHMMSSZ)). For a push, V(latest) is the newest
        complete backup in O(repository); for a pull, the newest held off site.
    type: str
    default: latest
  initialize:
    description:
      - Whether O(operation=push) creates the restic repository when there is none at O(offsite_repository).
        A repository that cannot be reached or opened is never created anew.
    type: bool
    default: true
  read_data_subset:
    description:
      - For O(operation=check), the part of the stored data to read and check, as restic takes it
        (V(5%), V(1/10), V(500M)). Without it, only the structure is checked.
    type: str
attributes:
  check_mode:
    support: full
    details:
      - An init, push, pull or prune reports what it would create, copy or remove, and changes nothing.
      - A check runs as usual, as it changes nothing.
  diff_mode:
    support: none
seealso:
  - module: orthanc_ops.backup.orthanc_backup
  - module: orthanc_ops.backup.orthanc_backup_prune
  - module: orthanc_ops.backup.orthanc_restore
  - name: restic's documentation of repository locations
    description: How to name S3, SFTP, REST and other repositories, and their environment variables.
    link: https://restic.readthedocs.io/en/stable/030_preparing_a_new_repo.html
'''

EXAMPLES = r'''
- name: Push the newest backup of this host to S3-compatible object storage
  orthanc_ops.backup.orthanc_offsite:
    operation: push
    repository: /var/backups/orthanc
    offsite_repository: s3:https://s3.example.org/orthanc-backups/pacs
    offsite_password: "{{ vault_restic_password }}"
    offsite_environment:
      AWS_ACCESS_KEY_ID: "{{ vault_s3_key_id }}"
      AWS_SECRET_ACCESS_KEY: "{{ vault_s3_secret }}"

- name: Bring the newest off-site copy back, then restore it
  block:
    - name: Pull the copy into the local repository
      orthanc_ops.backup.orthanc_offsite:
        operation: pull
        repository: /var/backups/orthanc
        offsite_repository: sftp:restic@vault.example.org:/srv/restic/orthanc
        offsite_password: "{{ vault_restic_password }}"
      register: pulled

    - name: Restore what was pulled
      orthanc_ops.backup.orthanc_restore:
        repository: /var/backups/orthanc
        backup: "{{ pulled.backup_id }}"

- name: Keep 14 daily and 12 monthly copies off site
  orthanc_ops.backup.orthanc_offsite:
    operation: prune
    offsite_repository: rest:https://restic.example.org:8000/pacs/
    keep_daily: 14
    keep_monthly: 12

- name: Read a tenth of the stored data back and check it
  orthanc_ops.backup.orthanc_offsite:
    operation: check
    offsite_repository: s3:https://s3.example.org/orthanc-backups/pacs
    read_data_subset: 10%
'''

RETURN = r'''
operation:
  description: The operation run.
  returned: success
  type: str
  sample: push
instance:
  description: The instance whose backups were handled.
  returned: success
  type: str
  sample: pacs1
backup_id:
  description: Id of the backup pushed or pulled.
  returned: success, for push and pull
  type: str
  sample: 20261127T231045Z
path:
  description: Its folder in the local repository.
  returned: success, for push and pull
  type: str
  sample: /var/backups/orthanc/pacs1/20261127T231045Z
snapshot_id:
  description: Short id of the restic snapshot that holds it.
  returned: success, for push (not in check mode when it was not pushed yet) and pull
  type: str
files:
  description: Number of files the backup's manifest lists.
  returned: success, for push, and for pull when a copy was pulled
  type: int
bytes:
  description: Their total size.
  returned: success, for push, and for pull when a copy was pulled
  type: int
bytes_added:
  description: Bytes the push added to the restic repository, after deduplication and compression (0 when it
    was held there already).
  returned: success, for push
  type: int
files_unmodified:
  description: Files restic did not read again, as the previous push of the instance held them unchanged.
  returned: success, for push when a copy was pushed
  type: int
initialized:
  description: Whether the operation created the restic repository (in check mode, would create it).
  returned: success, for init and push
  type: bool
time:
  description: Time of the snapshot, the time of the backup (UTC).
  returned: success, for pull
  type: str
hostname:
  description: Host that pushed the snapshot.
  returned: success, for pull
  type: str
snapshots:
  description: Number of snapshots that hold the backup (more than one when it was pushed twice at once).
  returned: success, for pull
  type: int
backups:
  description: The backups of the instance held off site, oldest first.
  returned: success, for list
  type: list
  elements: dict
  contains:
    backup_id:
      description: Id of the backup.
      type: str
    snapshot_id:
      description: Short id of its newest snapshot.
      type: str
    time:
      description: Time of the snapshot (the backup's time, UTC).
      type: str
    hostname:
      description: Host that pushed it.
      type: str
    snapshots:
      description: Number of snapshots that hold it.
      type: int
latest:
  description: The newest entry of RV(backups), or null when there is none.
  returned: success, for list
  type: dict
kept:
  description: Ids of the backups kept off site, oldest first.
  returned: success, for prune
  type: list
  elements: str
reasons:
  description: For each kept backup, the rules that keep it (last, daily, weekly, monthly, newest).
  returned: success, for prune
  type: dict
removed:
  description: Ids of the backups removed off site (in check mode, that would be removed).
  returned: success, for prune
  type: list
  elements: str
snapshots_removed:
  description: Short ids of the restic snapshots removed.
  returned: success, for prune
  type: list
  elements: str
read_data_subset:
  description: The part of the data the check read, or null for a check of the structure only.
  returned: success, for check
  type: str
duration_seconds:
  description: Seconds the operation took.
  returned: success
  type: float
restic_rc:
  description: restic's exit code, when restic failed.
  returned: failure
  type: int
'''

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _offsite
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import backup_argument_spec, repository_argument_spec, retention_argument_spec


def main():
    argument_spec = repository_argument_spec()
    argument_spec.update(backup_argument_spec())
    argument_spec.update(retention_argument_spec())
    argument_spec.update(
        operation=dict(type='str', required=True, choices=list(_offsite.OPERATIONS)),
        offsite_repository=dict(type='str', required=True, fallback=(env_fallback, ['RESTIC_REPOSITORY'])),
        offsite_password=dict(type='str', no_log=True, fallback=(env_fallback, ['RESTIC_PASSWORD'])),
        offsite_environment=dict(type='dict', default={}, no_log=True),
        offsite_options=dict(type='dict', default={}),
        initialize=dict(type='bool', default=True),
        read_data_subset=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('operation', 'push', ['repository']), ('operation', 'pull', ['repository'])])
    _offsite.main(module)


if __name__ == '__main__':
    main()
