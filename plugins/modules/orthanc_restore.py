#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_restore
short_description: Restore an Orthanc server from a backup, with a way back
version_added: 0.1.0
description:
  - Restores a backup made by M(orthanc_ops.backup.orthanc_backup) into the paths the Orthanc configuration names.
  - The backup is checked first, before anything live is touched; the manifest must be complete and well formed,
    every file present with its size (and MD5 with O(verify)), and nothing else in the backup folder (a backup
    folder is untrusted input; only the regular files its manifest lists are read, never through a link).
  - A running Orthanc whose database schema, or whose database plugin (C(postgresql-index), C(mysql-index), ...),
    is older than the one that wrote the backup is refused with the versions needed. When Orthanc is not
    running this cannot be checked; the module warns.
  - The backup is staged while Orthanc still runs; the storage files and a SQLite index are copied into
    C(.orthanc-restore-*) folders beside the live ones, a PostgreSQL dump is restored into a fresh database
    C(<db>_restore_<time>). Then Orthanc is stopped, the live data is moved aside by renames (folders
    C(.orthanc-pre-restore-*), database C(<db>_pre_<time>)), the staged data is renamed into place, and
    Orthanc is started; its C(/statistics) must match the counts of the manifest.
  - Any failure once the swap began puts the previous data back and starts Orthanc again.
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.orthanc
  - orthanc_ops.backup.orthanc.SERVICE
  - orthanc_ops.backup.orthanc.REPOSITORY
  - orthanc_ops.backup.orthanc.BACKUP
  - orthanc_ops.backup.orthanc.DATABASE
  - orthanc_ops.backup.orthanc.DUMP
  - orthanc_ops.backup.attributes
options:
  src:
    description:
      - A backup folder to restore, instead of O(repository), O(instance) and O(backup).
    type: path
  keep_previous:
    description:
      - Keep the replaced index and storage (C(.orthanc-pre-restore-*) folders inside the live folders,
        database C(<db>_pre_<time>)).
      - When false they are removed once the restore is confirmed.
    type: bool
    default: true
  verify:
    description:
      - Check the MD5 of every file of the backup before Orthanc is stopped. The storage files are checked as they
        are staged (each is read once); any difference removes the staging and changes nothing live. When false
        only presence and sizes are checked.
    type: bool
    default: true
  restore_config:
    description:
      - Also put the configuration files of the backup in place (the replaced ones are kept aside).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Checks the backup and returns a plan; changes nothing.
  diff_mode:
    support: none
notes:
  - If Orthanc was not running, it is left stopped and its statistics are not compared.
seealso:
  - module: orthanc_ops.backup.orthanc_backup
'''

EXAMPLES = r'''
- name: Restore the latest backup of this host
  orthanc_ops.backup.orthanc_restore:
    repository: /var/backups/orthanc

- name: Restore a given backup, without keeping the replaced data
  orthanc_ops.backup.orthanc_restore:
    repository: /var/backups/orthanc
    instance: pacs1
    backup: 20261127T231045Z
    keep_previous: false

- name: Restore a backup folder copied from elsewhere
  orthanc_ops.backup.orthanc_restore:
    src: /mnt/usb/pacs1/20261127T231045Z
'''

RETURN = r'''
backup_id:
  description: Id of the backup restored.
  returned: success and not check mode
  type: str
  sample: 20261127T231045Z
restored_from:
  description: Folder of the backup restored.
  returned: success and not check mode
  type: str
authenticated:
  description: Whether the backup's signature was checked with O(backup_key) before anything was staged.
  returned: success and not check mode
  type: bool
previous_kept_at:
  description: Folders and databases holding the replaced data (empty with O(keep_previous=false)).
  returned: success and not check mode
  type: list
  elements: str
downtime_seconds:
  description: Seconds from the stop command until Orthanc's REST API answered again.
  returned: success and not check mode
  type: float
duration_seconds:
  description: Seconds the whole restore took.
  returned: success and not check mode
  type: float
statistics:
  description: Orthanc's C(/statistics) after the restore; null when Orthanc was not running.
  returned: success and not check mode
  type: dict
problems:
  description:
    - What is wrong with the backup (see M(orthanc_ops.backup.orthanc_backup_verify)), at most 1000 entries.
    - Anything in the backup folder that its manifest does not list counts, so nothing planted in a backup
      can reach the live data.
  returned: when the backup is damaged
  type: list
  elements: str
problems_count:
  description: Number of problems found, all of them.
  returned: when the backup is damaged
  type: int
plan:
  description: In check mode, what the restore would do.
  returned: check mode
  type: dict
  contains:
    backup_id:
      description: Backup that would be restored.
      type: str
    restored_from:
      description: Its folder.
      type: str
    index_backend:
      description: Index backend whose index would be replaced.
      type: str
    storage_dir:
      description: Storage folder whose files would be replaced; null when the files are in the database.
      type: str
    restore_config:
      description: Whether the configuration would be replaced.
      type: bool
    orthanc_running:
      description: Whether Orthanc runs (and so would be stopped).
      type: bool
    files:
      description: Files in the backup.
      type: int
    bytes:
      description: Bytes in the backup.
      type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _restore
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import backup_argument_spec, operation_argument_spec


def main():
    argument_spec = operation_argument_spec(repository_required=False)
    argument_spec.update(backup_argument_spec())
    argument_spec.update(
        src=dict(type='path'),
        keep_previous=dict(type='bool', default=True),
        verify=dict(type='bool', default=True),
        restore_config=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('src', 'repository')],
                           required_one_of=[('src', 'repository')])
    _restore.main(module)


if __name__ == '__main__':
    main()
