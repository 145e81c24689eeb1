# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _files


@pytest.fixture
def small_runs(monkeypatch):
    """A host of two cores where workers take runs of 8 files: a few dozen files make several runs."""
    monkeypatch.setattr(os, 'cpu_count', lambda: 2)
    monkeypatch.setattr(_files, 'HASH_BATCH', 8)


@pytest.fixture
def workers_used(monkeypatch, small_runs):
    """With small_runs: ``workers_used(module)`` returns the list of the worker processes that each call of
    ``module.hash_tree`` is given from then on."""

    def spy(module):
        used = []

        def spying(root, files, workers=1):
            used.append(workers)
            return _files.hash_tree(root, files, workers)
        monkeypatch.setattr(module, 'hash_tree', spying)
        return used
    return spy
