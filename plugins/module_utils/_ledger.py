# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A ledger: a SQLite database on disk, private to one run, where a phase keeps what it knows of every
file (a storage listing, what an index references, what a backup took) and joins it there, so that its
memory stays flat whatever the number of files. Nothing in it needs to survive the run."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from contextlib import contextmanager

from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import batches

# The private folder of a ledger; a backup's lives in the instance's folder of the repository, where the
# next run removes what a killed one left.
PREFIX = '.orthanc-ops-ledger-'
NAME = 'ledger.sqlite'
# Rows written per statement.
BATCH = 4096
_SETTINGS = '''
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA temp_store = FILE;
PRAGMA cache_size = -16384;
'''


class Ledger:
    """The tables {name: column definitions} of a database in ``folder``; ``db`` is its connection, in
    autocommit mode (a bulk write takes a transaction of its own)."""

    def __init__(self, folder, tables, name=NAME):
        self.folder = folder
        self.db = sqlite3.connect(os.path.join(folder, name), isolation_level=None)
        self.db.executescript(_SETTINGS + ''.join('CREATE TABLE IF NOT EXISTS %s (%s) WITHOUT ROWID;\n'
                                                  % (table, columns) for table, columns in tables.items()))
        self.widths = dict((table, columns.count(',') + 1) for table, columns in tables.items())

    def attach(self, name, tables):
        """Create a database ``name`` of ``tables`` in this ledger's folder, whose tables this ledger reads by their
        names too. Another thread may fill them, through a Ledger of its own (``Ledger(folder, tables, name)``),
        while this one fills its own: a connection takes one transaction at a time, and each database has one
        writer."""
        Ledger(self.folder, tables, name).close()
        self.db.execute('ATTACH DATABASE ? AS %s' % os.path.splitext(name)[0], (os.path.join(self.folder, name),))

    def fill(self, table, rows, in_key_order=False):
        """Replace the rows of ``table`` by ``rows`` in one transaction; return how many there are. Rows not
        ``in_key_order`` (the first column's) are gathered apart and sorted by SQLite first: inserted in a random
        order they would touch pages all over the table, which once the table outgrows the cache costs twice as
        much (measured at 1,000,000 uuids: 4.8 s, 2.2 s gathered and sorted first)."""
        width = self.widths[table]
        gathered = table if in_key_order else 'temp.gathered'
        self.db.execute('BEGIN')
        try:
            self.db.execute('DELETE FROM %s' % table)
            if not in_key_order:
                self.db.execute('CREATE TEMP TABLE gathered (%s)' % ', '.join('c%d' % column for column in range(width)))
            statement = 'INSERT OR REPLACE INTO %s VALUES (%s)' % (gathered, ', '.join('?' * width))
            for batch in batches(rows, BATCH):
                self.db.executemany(statement, batch)
            if not in_key_order:
                # In the order given where a key comes twice: the last one stays, as it would inserted directly.
                self.db.execute('INSERT OR REPLACE INTO %s SELECT * FROM temp.gathered ORDER BY 1, rowid' % table)
                self.db.execute('DROP TABLE temp.gathered')
        except BaseException:
            self.db.execute('ROLLBACK')    # the rows could not all be read (a failed query, a pause too long)
            raise
        self.db.execute('COMMIT')
        return self.one('SELECT COUNT(*) FROM %s' % table)

    @contextmanager
    def aside(self, query):
        """A cursor over the rows of ``query`` in the order of their first column, set aside in a table of
        their own first (a table is not read and written in one go), within one transaction."""
        self.db.execute('CREATE TEMP TABLE aside AS ' + query)
        self.db.execute('BEGIN')
        try:
            yield self.db.execute('SELECT * FROM temp.aside ORDER BY 1')
        finally:
            self.db.execute('COMMIT')
            self.db.execute('DROP TABLE temp.aside')

    def one(self, query, parameters=()):
        """The first column of the first row of ``query``."""
        return self.db.execute(query, parameters).fetchone()[0]

    def close(self):
        self.db.close()


@contextmanager
def private_ledger(where, tables):
    """A Ledger in a new private folder (0700) of ``where`` (the system's temporary folder if None), closed
    and removed afterwards."""
    folder = tempfile.mkdtemp(prefix=PREFIX, dir=where)
    ledger = None
    try:
        ledger = Ledger(folder, tables)
        yield ledger
    finally:
        if ledger is not None:
            ledger.close()
        shutil.rmtree(folder, ignore_errors=True)
