#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_info
short_description: Describe an Orthanc server from its configuration and REST API
version_added: 0.1.0
description:
  - Reads the Orthanc configuration as Orthanc does and tells which database backends it uses,
    where its storage and index are, and, when the REST API answers, its version and statistics.
  - Changes nothing.
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.orthanc
  - orthanc_ops.backup.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Describe the Debian-packaged Orthanc
  orthanc_ops.backup.orthanc_info:
  register: orthanc

- name: Describe the Orthanc of the Docker Compose service "orthanc" (container pacs-orthanc-1)
  orthanc_ops.backup.orthanc_info:
    service_manager: docker
    service_name: pacs-orthanc-1

- name: Describe an Orthanc configured in one file, with REST credentials
  orthanc_ops.backup.orthanc_info:
    config: /srv/orthanc/orthanc.json
    url: http://127.0.0.1:8042
    url_username: admin
    url_password: "{{ vault_orthanc_password }}"
'''

RETURN = r'''
deployment:
  description:
    - How this Orthanc is deployed. C(kind) is V(container) (with C(engine), C(name), C(image) and C(running)),
      V(service) (with C(manager), V(systemd) or V(sysvinit), and C(name)), V(command), V(none) or V(unknown).
  returned: success
  type: dict
  sample: {"kind": "container", "engine": "podman", "name": "orthanc", "image": "orthancteam/orthanc", "running": true}
config_files:
  description:
    - The configuration files read, in the order Orthanc reads them.
    - For a running container, paths through the Orthanc process's root (C(/proc/<pid>/root/...)).
  returned: success
  type: list
  elements: str
index_backend:
  description: Where the index is kept.
  returned: success
  type: str
  sample: sqlite
  choices: [sqlite, postgresql, mysql, plugin]
storage_backend:
  description: Where the DICOM files are kept.
  returned: success
  type: str
  sample: filesystem
  choices: [filesystem, postgresql, mysql, plugin]
storage_dir:
  description: The storage folder, resolved as Orthanc resolves it.
  returned: success
  type: str
  sample: /var/lib/orthanc/db-v6
index_dir:
  description: The folder of the SQLite index, resolved as Orthanc resolves it.
  returned: success
  type: str
  sample: /var/lib/orthanc/db-v6
storage_compression:
  description: Whether Orthanc compresses the files it stores (C(StorageCompression)).
  returned: success
  type: bool
http_port:
  description: Orthanc's HTTP port (C(HttpPort)).
  returned: success
  type: int
  sample: 8042
url:
  description: The REST URL used.
  returned: success
  type: str
  sample: http://127.0.0.1:8042
database:
  description: Connection settings of the database plugin in use, with passwords masked; null for SQLite.
  returned: success
  type: dict
  sample: {Host: db.example.org, Port: 5432, Database: orthanc, Username: orthanc, Password: "********"}
unsupported_layout:
  description:
    - What of the advanced-storage plugin's settings (C(AdvancedStorage) with C(NamingScheme), C(MultipleStorages),
      C(Indexer) or C(DelayedDeletion)) puts files where the collection does not look for them yet, in which case
      the other modules refuse this Orthanc before doing anything; null when there is none.
  returned: success
  type: str
  sample: NamingScheme {PatientID}/{StudyInstanceUID}/{UUID}{.ext}
missing_requirements:
  description:
    - What this host lacks to back up and restore this Orthanc with the collection, that is the Python driver
      and client tools of its index backend, and rsync for copies to a backup host. Empty when nothing is missing.
  returned: success
  type: list
  elements: str
  sample: ["Python module psycopg2", "command pg_dump"]
running:
  description: Whether the REST API answered.
  returned: success
  type: bool
version:
  description: Orthanc's version, when the REST API answered.
  returned: success
  type: str
  sample: 1.10.1
statistics:
  description: Orthanc's C(/statistics), when the REST API answered.
  returned: success
  type: dict
  sample: {CountPatients: 3, CountStudies: 4, CountSeries: 8, CountInstances: 40}
rest_error:
  description: Why version and statistics are missing although Orthanc answered (for example bad credentials).
  returned: when the REST API answered with an error
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _info
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import orthanc_argument_spec


def main():
    module = AnsibleModule(argument_spec=orthanc_argument_spec(), supports_check_mode=True)
    _info.main(module)


if __name__ == '__main__':
    main()
