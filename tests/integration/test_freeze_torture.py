# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The torture test of mode=freeze: 100 frozen backups of a SQLite Orthanc while clients upload and delete
without pause. Every copy must be a sound SQLite database holding exactly Orthanc's state at the backup's
consistent_at, with every file it references; no client request may fail during a freeze."""

from __future__ import annotations

import pytest

from harness import make_instances
from torture import backups_under_load, check_consistent, check_restores

# Takes minutes: make quick leaves it out.
pytestmark = pytest.mark.slow

FREEZES = 100


def test_a_hundred_freezes_under_uploads_and_deletes(make_orthanc, ansible, repository, tmp_path):
    orthanc = make_orthanc()
    initial = set(orthanc.upload(make_instances(patients=2)))
    pid = orthanc.pid()
    freezes, clients = backups_under_load(orthanc, ansible, repository, tmp_path, 'freeze', FREEZES, 0.05)
    assert clients.failures == [] and orthanc.pid() == pid
    assert all(run['downtime_seconds'] == 0 for run in freezes)
    assert len(clients.uploads) > FREEZES and len(clients.deletes) > FREEZES / 2
    held = check_consistent(freezes, clients, initial, tmp_path)

    pauses = sorted(run['pause_seconds'] for run in freezes)
    print('pause_seconds: median %.4f, max %.4f; %d backups froze Orthanc more than once; %d uploads, %d deletes'
          % (pauses[len(pauses) // 2], pauses[-1], sum(run['timings']['freezes'] > 1 for run in freezes),
             len(clients.uploads), len(clients.deletes)))
    check_restores(orthanc, ansible, repository, held, (freezes[FREEZES // 3], freezes[-1]))
