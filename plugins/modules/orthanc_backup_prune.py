#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_backup_prune
short_description: Remove old Orthanc backups by a retention policy
version_added: 0.1.0
description:
  - Keeps, among the complete backups of one instance in a repository, those a restic-style policy selects
    and removes the others. The newest complete backup is always kept.
  - O(keep_last) keeps the newest n backups; O(keep_daily), O(keep_weekly), O(keep_monthly) keep the newest
    backup of each of the n newest days, ISO weeks and months that have one. A backup kept by any rule stays.
  - Takes the instance's lock, so it never runs beside a backup of the same instance; removes the
    C(.partial) folders that interrupted backups left.
  - Keeps, until a later prune, a backup that an off-site push is reading (it pins the backup and lets
    backups go on meanwhile).
  - Backups share unchanged files by hard links; removing one frees only the files no kept backup links.
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.orthanc.REPOSITORY
  - orthanc_ops.backup.orthanc.RETENTION
  - orthanc_ops.backup.attributes
options:
  repository:
    required: true
attributes:
  check_mode:
    support: full
    details: Lists what would be removed; removes nothing and takes no lock.
  diff_mode:
    support: none
seealso:
  - module: orthanc_ops.backup.orthanc_backup
'''

EXAMPLES = r'''
- name: Keep 7 daily, 4 weekly and 12 monthly backups of this host
  orthanc_ops.backup.orthanc_backup_prune:
    repository: /var/backups/orthanc
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 12

- name: Show what keeping the last 3 would remove
  orthanc_ops.backup.orthanc_backup_prune:
    repository: /var/backups/orthanc
    instance: pacs1
    keep_last: 3
  check_mode: true
'''

RETURN = r'''
kept:
  description: Ids of the backups kept, oldest first.
  returned: success
  type: list
  elements: str
reasons:
  description:
    - For each kept backup, the rules that keep it (last, daily, weekly, monthly, newest).
    - C(pinned) keeps a backup that no rule keeps while an off-site push (M(orthanc_ops.backup.orthanc_offsite))
      reads it; the next prune removes it.
    - C(before jump) keeps a backup that no rule keeps as long as a rule keeps the backup taken after it, whose
      new bytes jumped (RV(orthanc_ops.backup.orthanc_backup#module:new_bytes_jump)); if the jump was an attack
      or a mistake, it is the last backup from before it.
  returned: success
  type: dict
  sample: {"20261127T231045Z": ["last", "daily", "weekly", "monthly"]}
removed:
  description: Ids of the backups removed (in check mode, that would be removed).
  returned: success
  type: list
  elements: str
disappeared:
  description:
    - Backups that are gone although the policy keeps them, so something else than retention removed them (a
      person, ransomware, a failing disk). Each backup's manifest names the backup it was taken after, and one of
      those that is missing while the policy, counting it, would keep it is listed here, with a warning.
  returned: success
  type: list
  elements: str
  sample: ["20261201T020000Z"]
left_alone:
  description:
    - Folders named as backups that are none of this instance's, each with the reason, neither counted nor
      removed. Their manifest does not read, names another backup or instance, has an id later than now, or
      (with O(backup_key)) is not signed by the key. Look at who made them.
  returned: success
  type: dict
  sample: {"29991231T235959Z": "its id is a time to come"}
bytes_freed:
  description: Bytes given back by the removal (files no kept backup links).
  returned: success
  type: int
partials_removed:
  description: What interrupted runs left and this prune removed (partial backups, their ledgers, pins).
  returned: success and not check mode
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _prune
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import repository_argument_spec, retention_argument_spec


def main():
    argument_spec = repository_argument_spec(required=True)
    argument_spec.update(retention_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    _prune.main(module)


if __name__ == '__main__':
    main()
