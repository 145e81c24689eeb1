# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ledger the backup and the audit keep on disk instead of in memory."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._ledger import BATCH, PREFIX, Ledger, private_ledger

TABLES = {'files': 'uuid TEXT PRIMARY KEY, size INTEGER NOT NULL'}


def test_fill_replaces_the_rows_and_keeps_the_old_ones_when_the_new_cannot_all_be_read(tmp_path):
    with private_ledger(str(tmp_path), TABLES) as ledger:
        assert ledger.fill('files', (('u%06d' % number, number) for number in range(BATCH * 2 + 1))) == BATCH * 2 + 1
        assert ledger.fill('files', [('a', 1), ('b', 2)]) == 2

        def failing():
            yield ('c', 3)
            raise OSError('the index copy went away')
        with pytest.raises(OSError):
            ledger.fill('files', failing())
        assert ledger.db.execute('SELECT * FROM files ORDER BY uuid').fetchall() == [('a', 1), ('b', 2)]


@pytest.mark.parametrize('in_key_order', [False, True])
def test_fill_keeps_the_last_row_of_a_key_given_twice_in_any_order(tmp_path, in_key_order):
    rows = [('a', 1), ('b', 2), ('b', 3), ('c', 4)] if in_key_order else [('c', 4), ('b', 2), ('a', 1), ('b', 3)]
    with private_ledger(str(tmp_path), TABLES) as ledger:
        for dummy in range(2):    # the rows gathered apart first are not left behind
            assert ledger.fill('files', iter(rows), in_key_order) == 3
        assert ledger.db.execute('SELECT * FROM files ORDER BY uuid').fetchall() == [('a', 1), ('b', 3), ('c', 4)]


def test_an_attached_database_is_filled_by_another_thread_while_this_one_fills_its_own(tmp_path):
    """As the backup reads the previous listing while it lists the live storage: two writers, two databases."""
    other_tables = {'others': 'uuid TEXT PRIMARY KEY, size INTEGER NOT NULL'}
    with private_ledger(str(tmp_path), TABLES) as ledger:
        ledger.attach('others.sqlite', other_tables)
        inside_main_fill, filled, errors = threading.Event(), threading.Event(), []

        def fill_others():
            try:
                inside_main_fill.wait(10)
                others = Ledger(ledger.folder, other_tables, 'others.sqlite')
                others.fill('others', (('o%06d' % number, number) for number in range(BATCH * 2)), in_key_order=True)
                others.close()
            except Exception as exc:    # pylint: disable=broad-exception-caught
                errors.append(exc)
            filled.set()

        def rows():
            for number in range(BATCH * 2):
                if number == BATCH:    # the other thread fills its database while this transaction is open
                    inside_main_fill.set()
                    assert filled.wait(10)
                yield 'f%06d' % number, number
        thread = threading.Thread(target=fill_others)
        thread.start()
        assert ledger.fill('files', rows(), in_key_order=True) == BATCH * 2
        thread.join()
        assert not errors
        assert ledger.one('SELECT COUNT(*) FROM others JOIN files ON files.size = others.size') == BATCH * 2


def test_rows_set_aside_can_be_written_back_while_they_are_read(tmp_path):
    with private_ledger(str(tmp_path), TABLES) as ledger:
        ledger.fill('files', [('b', 2), ('a', 1)])
        with ledger.aside('SELECT uuid, size FROM files') as rows:
            for uuid, size in rows:
                ledger.db.execute('INSERT INTO files VALUES (?, ?)', (uuid + '-copy', size))
        assert ledger.one('SELECT COUNT(*) FROM files') == 4
        with ledger.aside('SELECT uuid FROM files WHERE size = 2') as rows:    # the name can be used again
            assert [uuid for uuid, in rows] == ['b', 'b-copy']


def test_the_private_folder_is_the_runs_own_and_is_removed_even_after_a_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with private_ledger(str(tmp_path), TABLES):
            folder, = os.listdir(str(tmp_path))
            assert folder.startswith(PREFIX) and stat.S_IMODE(os.stat(str(tmp_path / folder)).st_mode) == 0o700
            raise RuntimeError('the backup failed')
    assert os.listdir(str(tmp_path)) == []
