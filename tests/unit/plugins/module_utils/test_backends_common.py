# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import inspect

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends import mysql, postgresql, registry
from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends._common import (
    PLUGIN_RESOURCE_TYPES, Backend, resource_files)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends.sqlite import CORE_RESOURCE_TYPES
from ansible_collections.orthanc_ops.backup.plugins.module_utils._swap import FolderSwap, Swap


@pytest.mark.parametrize('backend', registry.BACKENDS, ids=lambda backend: backend.name)
def test_every_backend_offers_the_whole_interface(backend):
    """Each backend implements every method of the interface (an abstract one left would make it unbuildable)."""
    assert issubclass(backend, Backend) and not inspect.isabstract(backend)
    assert backend.name and backend.folder and backend.modes


@pytest.mark.parametrize('swap', [FolderSwap, postgresql.DatabaseSwap, mysql.TableSwap], ids=lambda swap: swap.__name__)
def test_every_swap_offers_the_whole_protocol(swap):
    assert issubclass(swap, Swap) and not inspect.isabstract(swap)


def test_attachments_are_named_as_the_rest_api_names_them():
    rows = [('u1', 100, 1, 'plain', None, 4, 'i-1', 1),            # SQLite core: 4 is an instance
            ('u2', 60, 2, 'whole', 'zipped', 4, 'i-1', 3),         # zlib: the file on disk is the compressed one
            ('u3', 10, 1, 'user', None, 2, 's-1', 1025)]           # a plugin's own attachment type
    assert list(resource_files(rows, CORE_RESOURCE_TYPES)) == [
        ('u1', 100, 'plain', 'instances/i-1', 'dicom'),
        ('u2', 60, 'zipped', 'instances/i-1', 'dicom-until-pixel-data'),
        ('u3', 10, 'user', 'studies/s-1', '1025')]
    # The database plugins number resource types from 0.
    assert list(resource_files([('u4', 1, 1, 'm', None, 3, 'i-2', 1)], PLUGIN_RESOURCE_TYPES))[0][3] == 'instances/i-2'
