#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_backup_verify
short_description: Verify an Orthanc backup against its manifest and complete an incoming copy
version_added: 0.1.0
description:
  - Checks that every file the manifest of a backup lists is in the backup, with the manifest's size and MD5.
    It needs no Orthanc and no database, so it runs on any host that holds a repository (a backup host).
  - With O(incoming=true), checks a copy that has just arrived in C(<repository>/<instance>/<backup>.partial)
    (for example by rsync from the Orthanc host) and, only if it is sound, makes it a complete backup the way
    a backup completes (synced to disk, then renamed to C(<backup>)). A damaged copy stays C(.partial), is never
    listed, and the next prune removes it.
  - With O(backup=all), checks every complete backup of the instance (O(sample_files) files of each, picked at
    random, or all of them) and that none of those the previous such check saw is gone, other than by
    M(orthanc_ops.backup.orthanc_backup_prune). A backup rewritten or removed after it was taken (ransomware, a
    person, a failing disk) is found by the next run, whichever backup it is. It then records the backups it saw.
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.orthanc.REPOSITORY
  - orthanc_ops.backup.attributes
options:
  repository:
    required: true
  backup:
    description:
      - V(latest) for the newest complete backup, the id of a backup (C(YYYYMMDDTHHMMSSZ)), or V(all) for every
        complete backup of the instance.
      - With O(incoming=true), the id of the copy that arrived.
    type: str
    default: latest
  sample_files:
    description:
      - With O(backup=all), the number of files of each backup to read at random and compare with its listing
        (which is read whole, and checked, each time); V(0) compares every file (as O(check_md5) says).
      - A backup encrypted or overwritten whole cannot pass 32 files; a single file changed is found only by a
        check of every file.
    type: int
    default: 0
  incoming:
    description:
      - Verify C(<backup>.partial), a copy that has just arrived, and complete it when it passes.
    type: bool
    default: false
  check_md5:
    description:
      - Compare the MD5 of every file; V(false) compares sizes only, which reads no data.
    type: bool
    default: true
  list_limit:
    description:
      - At most this many entries in RV(problems); RV(problems_count) counts them all.
    type: int
    default: 1000
  sign:
    description:
      - Sign the backup with O(backup_key) once it passes, so that a site adopts a key without taking its
        backups again. The backup is opened without the key (it is not signed yet) and checked against its
        manifest like any other; signing says that you trust what it holds, so sign only backups that nobody
        else could have written, then verify with O(check_md5=true) as here.
      - A backup the key has already signed is left as it is.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Verifies as usual; an incoming copy is not renamed.
  diff_mode:
    support: none
seealso:
  - module: orthanc_ops.backup.orthanc_backup
  - module: orthanc_ops.backup.orthanc_restore
'''

EXAMPLES = r'''
- name: Verify the latest backup of pacs1 on the backup host
  orthanc_ops.backup.orthanc_backup_verify:
    repository: /srv/orthanc-backups
    instance: pacs1

- name: Complete a copy that rsync has just brought in
  orthanc_ops.backup.orthanc_backup_verify:
    repository: /srv/orthanc-backups
    instance: pacs1
    backup: 20261127T231045Z
    incoming: true
  delegate_to: backup1.example.org

- name: At every run, read 32 files of every backup of pacs1 again, and find any backup gone outside retention
  orthanc_ops.backup.orthanc_backup_verify:
    repository: /srv/orthanc-backups
    instance: pacs1
    backup: all
    sample_files: 32
  delegate_to: backup1.example.org

- name: Sign a backup made before the site had a backup key
  orthanc_ops.backup.orthanc_backup_verify:
    repository: /var/backups/orthanc
    backup: 20261127T231045Z
    backup_key: "{{ vault_orthanc_backup_key }}"
    sign: true
'''

RETURN = r'''
backup_id:
  description: Id of the backup checked.
  returned: when one backup is checked and its manifest could be read
  type: str
  sample: 20261127T231045Z
path:
  description: Folder of the backup (after completion, its final name).
  returned: when one backup is checked and its manifest could be read
  type: str
  sample: /srv/orthanc-backups/pacs1/20261127T231045Z
files:
  description: Number of files the manifest lists.
  returned: when one backup is checked and its manifest could be read
  type: int
bytes:
  description: Total size of those files.
  returned: when one backup is checked and its manifest could be read
  type: int
md5_checked:
  description: Whether MD5s were compared (otherwise sizes only).
  returned: always when the manifest could be read
  type: bool
problems:
  description:
    - Files missing, of another size or of another MD5 than the manifest says, and anything in the backup
      folder the manifest does not list (a file, a symbolic link, a device). A backup folder is untrusted
      input, and the restore touches exactly the regular files its manifest lists.
    - At most O(list_limit) entries.
  returned: when one backup is checked and its manifest could be read
  type: list
  elements: str
  sample: ["storage/3f/a2/3fa2c1d0-... has MD5 0c0f..., expected 9d1e...", "storage/index is not listed in the manifest"]
problems_count:
  description: Number of problems found, all of them.
  returned: when one backup is checked and its manifest could be read
  type: int
authenticated:
  description: Whether the backup's signature was checked with O(backup_key) (or made, with O(sign=true)).
  returned: when one backup is checked and its manifest could be read
  type: bool
signed:
  description: Whether O(sign=true) signed the backup now (false when the key had signed it already).
  returned: when one backup is checked and its manifest could be read
  type: bool
backups:
  description: With O(backup=all), each complete backup checked, oldest first.
  returned: with O(backup=all)
  type: list
  elements: dict
  contains:
    backup_id:
      description: Id of the backup.
      type: str
    problems:
      description: The first problems found in it, as RV(problems) words them.
      type: list
      elements: str
    problems_count:
      description: Number of problems found in it.
      type: int
changed_backups:
  description: With O(backup=all), the ids of the backups that no longer match their manifest.
  returned: with O(backup=all)
  type: list
  elements: str
  sample: [20261127T231045Z]
disappeared:
  description:
    - With O(backup=all), the ids of the backups the previous check saw that are gone, or no longer readable as
      backups, although no prune removed them. The module fails when there is one, or a changed backup.
  returned: with O(backup=all)
  type: list
  elements: str
left_alone:
  description: With O(backup=all), the folders named as backups that are none of this instance's, and why.
  returned: with O(backup=all)
  type: dict
duration_seconds:
  description: Seconds the check took.
  returned: success
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _verify
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import backup_argument_spec, repository_argument_spec


def main():
    argument_spec = repository_argument_spec(required=True)
    argument_spec.update(backup_argument_spec())
    argument_spec.update(
        incoming=dict(type='bool', default=False),
        check_md5=dict(type='bool', default=True),
        list_limit=dict(type='int', default=1000),
        sign=dict(type='bool', default=False),
        sample_files=dict(type='int', default=0),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    _verify.main(module)


if __name__ == '__main__':
    main()
