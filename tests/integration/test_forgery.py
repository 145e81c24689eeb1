# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Forged backups, as whoever can write the repository makes them (dump, listing and manifest rewritten to
match): nothing in them is executed, and, with a backup key, none of them is used, counted or pruned."""

from __future__ import annotations

import hashlib
import os

import pytest

from harness import make_instances, rewrite_listing


def forge_file(backup_path, relative, prefix):
    """Put ``prefix`` before a backup's file and list it again with its new size and MD5."""
    path = os.path.join(backup_path, relative)
    with open(path, 'rb') as handle:
        data = prefix + handle.read()
    with open(path, 'wb') as handle:
        handle.write(data)
    rewrite_listing(backup_path, lambda files: files[relative].update(size=len(data),
                                                                       md5=hashlib.md5(data).hexdigest()))


@pytest.mark.slow
@pytest.mark.parametrize('database_orthanc', ['mysql-index'], indirect=True)
def test_a_forged_mysql_dump_runs_no_shell_command(database_orthanc, ansible, repository, tmp_path):
    orthanc, database = database_orthanc
    orthanc.upload(make_instances(patients=1))
    live = orthanc.md5s()
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    marker = tmp_path / 'run-by-the-dump'
    forge_file(backup['path'], 'db/orthanc.sql', b'\\! touch %s\nsystem touch %s\n' % (
        str(marker).encode(), str(marker).encode()))

    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and 'Not allowed in the sandbox mode' in result['msg'], output
    assert not marker.exists()
    assert orthanc.md5s() == live and database.databases() == [database.name]
