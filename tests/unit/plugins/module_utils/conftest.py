# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _files


@pytest.fixture
def threads_used(monkeypatch):
    """On a host of two cores: ``threads_used(module)`` returns the list of the threads that each call of
    ``module.hash_tree`` is given from then on."""
    monkeypatch.setattr(os, 'cpu_count', lambda: 2)

    def spy(module):
        used = []

        def spying(root, files, threads=1):
            used.append(threads)
            return _files.hash_tree(root, files, threads)
        monkeypatch.setattr(module, 'hash_tree', spying)
        return used
    return spy
