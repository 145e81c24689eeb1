#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_backup_transfer
short_description: Copy an Orthanc backup to or from another host's repository with rsync over SSH
version_added: 0.1.0
description:
  - Copies one complete backup of an instance between the repository on this host and the repository on
    another host, with rsync over SSH. O(direction=push) sends a backup of this host's repository; O(direction=pull)
    fetches one from the other host.
  - The copy arrives in C(<repository>/<instance>/<backup>.partial) on the receiving side, whose instance folder is
    created when missing. Unchanged files are hard-linked to the receiving side's newest complete backup
    (rsync C(--link-dest)), so a copy costs only the files that are new since then.
  - On a pull, this host's C(.partial) folder is made anew for each copy - whatever held its name (a copy left by an
    interrupted pull, a symbolic link) is removed first, never followed.
  - The copy is not a backup yet. Run M(orthanc_ops.backup.orthanc_backup_verify) with
    O(orthanc_ops.backup.orthanc_backup_verify#module:incoming=true) on the receiving side; it checks every file
    against the manifest and only then completes the copy.
  - When the receiving side already has the backup, nothing is copied.
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
      - V(latest) for the newest complete backup on the sending side, or the id of a backup (C(YYYYMMDDTHHMMSSZ)).
    type: str
    default: latest
  direction:
    description:
      - V(push) copies from this host's O(repository) to O(remote_repository) on O(remote_host).
      - V(pull) copies from O(remote_repository) on O(remote_host) to this host's O(repository).
    type: str
    choices: [push, pull]
    default: push
  remote_host:
    description:
      - Name or address of the other host, as this host reaches it with SSH.
    type: str
    required: true
  remote_user:
    description:
      - SSH user on O(remote_host). Defaults to what SSH uses (the current user, or the SSH configuration).
    type: str
  remote_port:
    description:
      - SSH port of O(remote_host). Defaults to what SSH uses.
    type: int
  remote_repository:
    description:
      - Folder of the repository on O(remote_host), an absolute path there.
    type: str
    required: true
  ssh_args:
    description:
      - Extra options for C(ssh), for example C(-i /root/.ssh/backup_key). SSH runs in batch mode, so the key must
        work without a passphrase prompt, and the host key must be known or accepted by these options.
    type: str
    default: ''
requirements:
  - rsync on both hosts, and ssh on this host.
attributes:
  check_mode:
    support: full
    details: Lists both sides and runs rsync with C(--dry-run), so the figures returned are those of the real copy.
  diff_mode:
    support: none
notes:
  - No password is asked or accepted; use SSH keys (an agent, or a key named in O(ssh_args)).
seealso:
  - module: orthanc_ops.backup.orthanc_backup_verify
  - module: orthanc_ops.backup.orthanc_backup_repository
'''

EXAMPLES = r'''
- name: Send the newest backup of this host to the backup host
  orthanc_ops.backup.orthanc_backup_transfer:
    repository: /var/backups/orthanc
    instance: pacs1
    remote_host: backup1.example.org
    remote_user: orthanc-backup
    remote_repository: /srv/orthanc-backups
  register: sent

- name: Check the copy there and make it a complete backup
  orthanc_ops.backup.orthanc_backup_verify:
    repository: /srv/orthanc-backups
    instance: pacs1
    backup: "{{ sent.backup_id }}"
    incoming: true
  delegate_to: backup1.example.org

- name: Fetch a given backup of pacs1 from the backup host, to restore it here
  orthanc_ops.backup.orthanc_backup_transfer:
    repository: /var/backups/orthanc
    instance: pacs1
    backup: 20261127T231045Z
    direction: pull
    remote_host: backup1.example.org
    remote_repository: /srv/orthanc-backups
    ssh_args: -i /root/.ssh/orthanc_backup
'''

RETURN = r'''
backup_id:
  description: Id of the backup copied.
  returned: success
  type: str
  sample: 20261127T231045Z
direction:
  description: V(push) or V(pull), as asked.
  returned: success
  type: str
  sample: push
path:
  description:
    - Folder of the copy on the receiving side, C(<backup>.partial) until it is verified there.
    - The complete backup's folder when the receiving side already had it.
  returned: success
  type: str
  sample: /srv/orthanc-backups/pacs1/20261127T231045Z.partial
copied:
  description: Whether files were copied (false when the receiving side already had the backup, and in check mode).
  returned: success
  type: bool
linked_to:
  description: Id of the receiving side's backup that unchanged files are hard-linked to, or null for a full copy.
  returned: success
  type: str
  sample: 20261126T230000Z
new_bytes:
  description: Bytes of the files copied in full (rsync's "total transferred file size"); linked files cost none.
  returned: success
  type: int
  sample: 42580
sent_bytes:
  description: Bytes rsync sent over the connection.
  returned: success
  type: int
  sample: 43712
files_transferred:
  description: Number of regular files copied in full.
  returned: success
  type: int
  sample: 3
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _transfer
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import backup_argument_spec, repository_argument_spec


def main():
    argument_spec = repository_argument_spec(required=True)
    argument_spec.update(backup_argument_spec())
    argument_spec.update(
        direction=dict(type='str', choices=['push', 'pull'], default='push'),
        remote_host=dict(type='str', required=True),
        remote_user=dict(type='str'),
        remote_port=dict(type='int'),
        remote_repository=dict(type='str', required=True),
        ssh_args=dict(type='str', default=''),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    _transfer.main(module)


if __name__ == '__main__':
    main()
