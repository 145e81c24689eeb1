# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The torture test of mode=cold: 8 cold backups of a SQLite Orthanc while clients upload and delete. Every
copy must be a sound SQLite database holding exactly Orthanc's state at the backup's consistent_at, with every
file it references."""

from __future__ import annotations

import pytest

from harness import make_instances
from torture import backups_under_load, check_consistent, check_restores

# Takes a minute or more: make quick leaves it out.
pytestmark = pytest.mark.slow

COLD_BACKUPS = 8
# Orthanc 1.10.1 stops only once no change has come for 100 ms (its Lua event thread ends on an empty queue):
# at the freeze test's pace (an upload every 0.05 s) every stop would wait for its timeout and kill Orthanc.
UPLOAD_PAUSE = 0.15


def test_cold_backups_under_uploads_and_deletes(make_orthanc, ansible, repository, tmp_path):
    orthanc = make_orthanc()
    initial = set(orthanc.upload(make_instances(patients=2)))
    runs, clients = backups_under_load(orthanc, ansible, repository, tmp_path, 'cold', COLD_BACKUPS, UPLOAD_PAUSE)
    assert all(run['downtime_seconds'] > 0 and run['timings']['stops'] in (1, 2) for run in runs)
    assert len(clients.uploads) > COLD_BACKUPS and clients.deletes
    held = check_consistent(runs, clients, initial, tmp_path)
    print('stops: %s; %d uploads, %d deletes, %d requests refused while Orthanc was stopped'
          % ([run['timings']['stops'] for run in runs], len(clients.uploads), len(clients.deletes),
             len(clients.failures)))
    check_restores(orthanc, ansible, repository, held, (runs[COLD_BACKUPS // 2], runs[-1]))
