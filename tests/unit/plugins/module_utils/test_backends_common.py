# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends._common import (
    PLUGIN_RESOURCE_TYPES, attachments_with_resources)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends.sqlite import CORE_RESOURCE_TYPES


def test_attachments_are_named_as_the_rest_api_names_them():
    rows = [('u1', 100, 1, 'plain', None, 4, 'i-1', 1),            # SQLite core: 4 is an instance
            ('u2', 60, 2, 'whole', 'zipped', 4, 'i-1', 3),         # zlib: the file on disk is the compressed one
            ('u3', 10, 1, 'user', None, 2, 's-1', 1025)]           # a plugin's own attachment type
    found = attachments_with_resources(rows, CORE_RESOURCE_TYPES)
    assert found == {
        'u1': {'size': 100, 'md5': 'plain', 'resource': 'instances/i-1', 'attachment': 'dicom'},
        'u2': {'size': 60, 'md5': 'zipped', 'resource': 'instances/i-1', 'attachment': 'dicom-until-pixel-data'},
        'u3': {'size': 10, 'md5': 'user', 'resource': 'studies/s-1', 'attachment': '1025'}}
    # The database plugins number resource types from 0.
    assert attachments_with_resources([('u4', 1, 1, 'm', None, 3, 'i-2', 1)], PLUGIN_RESOURCE_TYPES)['u4'][
        'resource'] == 'instances/i-2'
