# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The roles' host prerequisites: the package names they install exist and are what a Debian host has."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize('backend', ['sqlite', 'postgresql', 'mysql'])
def test_package_installation_for_each_backend(ansible, backend):
    """This machine has every package already: the install runs for real and changes nothing."""
    rc, output = ansible.run_tasks([{
        'name': 'Install what the modules need',
        'ansible.builtin.include_role': {'name': 'orthanc_ops.backup.backup', 'tasks_from': 'packages'},
        'vars': {'__orthanc_backup_info': {'index_backend': backend}},
    }])
    assert rc == 0, output
    assert 'changed=0' in output and 'failed=0' in output, output
    assert 'Install rsync and the database client and driver' in output and 'DEPRECATION' not in output
