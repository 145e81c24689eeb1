# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rounds of a frozen or cold capture: Orthanc is frozen or stopped only for the index copy, and a
referenced file that Orthanc deletes before it is taken sends the capture round again, the last one frozen
or stopped throughout.

The service and the index are stand-ins (the real freeze runs in tests/integration/test_freeze*.py); the
storage and the snapshot are real files."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backup import FREEZE_ROUNDS, STOP_ROUNDS, Backup
from ansible_collections.orthanc_ops.backup.plugins.module_utils._ledger import Ledger
from ansible_collections.orthanc_ops.backup.plugins.module_utils._service import Pause
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import (
    TABLES, StorageSnapshot, relative_path, scan_storage)

KEPT, LATE, GONE = '0a1b0000-kept', 'ff000000-late', 'ee000000-gone'


def stored(root):
    return sorted(uuid for uuid, entry in scan_storage(root))


def write(root, uuid, data=b'dicom'):
    path = os.path.join(root, relative_path(uuid))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.write(data)


class Orthanc:
    """Counts its freezes and stops and records whether each capture step ran frozen or stopped."""

    def __init__(self):
        self.freezes = self.stops = 0
        self.is_frozen = False

    @contextmanager
    def stopped(self):
        self.stops += 1
        self.is_frozen = True
        try:
            yield
        finally:
            self.is_frozen = False

    @contextmanager
    def frozen(self):
        self.freezes += 1
        self.is_frozen = True
        pause = Pause()
        pause.started = time.monotonic()
        try:
            yield pause
        finally:
            pause.ended = time.monotonic()
            self.is_frozen = False


class Index:
    """A backend whose index references what ``states`` give, one state per capture; ``after_copy`` runs
    once the copy is made, as Orthanc would right after the thaw."""

    folder = 'index'
    capture_takes_quiesced = True

    def __init__(self, orthanc, states, after_copy=lambda: None):
        self.orthanc, self.states, self.after_copy = orthanc, list(states), after_copy
        self.copied_frozen, self.held_frozen = [], []

    def capture(self, backup_folder, hold, quiesced=None):
        assert self.capture_takes_quiesced or not quiesced
        with quiesced() if quiesced else _nothing():
            os.makedirs(os.path.join(backup_folder, self.folder), exist_ok=True)
            self.copied_frozen.append(self.orthanc.is_frozen)
            referenced = [(uuid, 5, None) for uuid in self.states.pop(0)]
        self.after_copy()
        self.held_frozen.append(self.orthanc.is_frozen)
        return {}, {}, hold(iter(referenced))


@contextmanager
def _nothing():
    yield


def phase(tmp_path, index_states, after_copy=lambda: None):
    live, partial = str(tmp_path / 'live'), str(tmp_path / 'partial')
    os.makedirs(partial)
    write(live, KEPT)
    backup = Backup.__new__(Backup)    # only what the capture reads; no configuration or REST behind it
    backup._service = Orthanc()
    backup.backend = Index(backup.service, index_states, after_copy)
    backup.params = {'max_pause': 1.0}
    backup.files_on_disk = True
    backup.consistent_at = None
    os.makedirs(str(tmp_path / 'ledger'))
    snapshot = StorageSnapshot(live, Ledger(str(tmp_path / 'ledger'), TABLES))
    snapshot.target_root = os.path.join(partial, 'storage')
    snapshot.list_live()
    snapshot.take()
    write(live, LATE)    # arrives after the storage was listed, before the freeze
    return backup, snapshot, partial


def test_one_freeze_covers_only_the_index_copy(tmp_path):
    backup, snapshot, partial = phase(tmp_path, [[KEPT, LATE]])
    timings = {}
    dummy, counts, missing, live_missing = backup._capture_frozen(partial, snapshot, timings)
    assert backup.backend.copied_frozen == [True] and backup.backend.held_frozen == [False]
    assert timings['freezes'] == 1 and missing == [] and live_missing == [] and backup.consistent_at
    assert counts == {'attachments': 2}
    assert stored(snapshot.target_root) == sorted([KEPT, LATE])


def test_a_file_deleted_after_the_thaw_sends_the_capture_round_again(tmp_path):
    live = str(tmp_path / 'live')

    def orthanc_deletes_late_once():
        if os.path.exists(os.path.join(live, relative_path(LATE))):
            os.unlink(os.path.join(live, relative_path(LATE)))

    # The first copy references LATE, which Orthanc deletes as soon as it runs; the second no longer does.
    backup, snapshot, partial = phase(tmp_path, [[KEPT, LATE], [KEPT]], orthanc_deletes_late_once)
    timings = {}
    dummy, dummy, missing, live_missing = backup._capture_frozen(partial, snapshot, timings)
    assert timings['freezes'] == 2 and missing == [] and live_missing == []
    assert stored(snapshot.target_root) == [KEPT]


def test_a_file_missing_for_good_is_found_by_the_last_round_frozen_throughout(tmp_path):
    backup, snapshot, partial = phase(tmp_path, [[KEPT, GONE]] * FREEZE_ROUNDS)
    timings = {}
    dummy, dummy, missing, live_missing = backup._capture_frozen(partial, snapshot, timings)
    assert timings['freezes'] == FREEZE_ROUNDS and missing == [GONE] and live_missing == [GONE]
    assert backup.backend.copied_frozen == [True] * FREEZE_ROUNDS
    assert backup.backend.held_frozen == [False] * (FREEZE_ROUNDS - 1) + [True]


def cold_timings():
    return {'stop_seconds': 0.0, 'downtime_seconds': 0.0}


def test_one_stop_covers_only_the_index_copy(tmp_path):
    backup, snapshot, partial = phase(tmp_path, [[KEPT, LATE]])
    timings = cold_timings()
    dummy, dummy, missing, live_missing = backup._capture_stopped(partial, snapshot, timings)
    assert backup.backend.copied_frozen == [True] and backup.backend.held_frozen == [False]
    assert timings['stops'] == backup.service.stops == 1 and missing == [] and live_missing == []
    assert timings['downtime_seconds'] >= timings['stop_seconds'] >= 0 and backup.consistent_at
    assert stored(snapshot.target_root) == sorted([KEPT, LATE])


def test_a_file_deleted_after_the_start_stops_orthanc_again_until_its_files_are_taken(tmp_path):
    backup, snapshot, partial = phase(tmp_path, [[KEPT, GONE]] * STOP_ROUNDS)
    timings = cold_timings()
    dummy, dummy, missing, live_missing = backup._capture_stopped(partial, snapshot, timings)
    assert timings['stops'] == STOP_ROUNDS == 2 and missing == [GONE] and live_missing == [GONE]
    assert backup.backend.copied_frozen == [True, True] and backup.backend.held_frozen == [False, True]


def test_a_backend_that_cannot_copy_apart_is_stopped_once_for_its_whole_capture(tmp_path):
    backup, snapshot, partial = phase(tmp_path, [[KEPT, GONE]])
    backup.backend.capture_takes_quiesced = False
    timings = cold_timings()
    dummy, dummy, missing, dummy = backup._capture_stopped(partial, snapshot, timings)
    assert timings['stops'] == 1 and missing == [GONE]
    assert backup.backend.copied_frozen == [True] and backup.backend.held_frozen == [True]
