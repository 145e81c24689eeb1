# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ansible-builder finds the collection's execution-environment requirements in the built artifact."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import yaml

BIN = os.path.dirname(sys.executable)


def test_ansible_builder_reads_the_requirements_from_the_built_collection(collections_root, tmp_path):
    source = os.path.join(collections_root, 'ansible_collections', 'orthanc_ops', 'backup')
    subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', source, '--output-path',
                    str(tmp_path)], check=True, capture_output=True)
    artifact = glob.glob(str(tmp_path / 'orthanc_ops-backup-*.tar.gz'))[0]
    installed = tmp_path / 'installed'
    # --force: run from inside a collection tree, ansible-galaxy would find it installed already.
    subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--force', artifact, '-p', str(installed)],
                   check=True, capture_output=True)
    output = subprocess.run([os.path.join(BIN, 'ansible-builder'), 'introspect', '--sanitize', str(installed)],
                            check=True, capture_output=True, text=True).stdout
    found = yaml.safe_load(output)
    ours = '  # from collection orthanc_ops.backup'
    assert {'psycopg2-binary>=2.9' + ours, 'PyMySQL>=1.0' + ours} <= set(found['python']), output
    assert {package + ours for package in ('openssh-client [platform:dpkg]', 'rsync [platform:rpm platform:dpkg]',
                                           'postgresql-client [platform:dpkg]', 'mariadb-client [platform:dpkg]')
            } <= set(found['system']), output
