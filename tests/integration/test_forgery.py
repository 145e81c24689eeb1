# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Forged backups, as whoever can write the repository makes them (dump, listing and manifest rewritten to
match): nothing in them is executed, and, with a backup key, none of them is used, counted or pruned."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from harness import complete_backups, listed_files, make_instances, read_manifest, rewrite_listing, write_manifest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._authentication import BackupKey


def forge_file(backup_path, relative, prefix):
    """Put ``prefix`` before a backup's file and list it again with its new size and MD5."""
    path = os.path.join(backup_path, relative)
    with open(path, 'rb') as handle:
        data = prefix + handle.read()
    with open(path, 'wb') as handle:
        handle.write(data)
    rewrite_listing(backup_path, lambda files: files[relative].update(size=len(data), md5=hashlib.md5(data).hexdigest()))


@pytest.mark.slow
@pytest.mark.parametrize('database_orthanc', ['mysql-index'], indirect=True)
def test_a_forged_mysql_dump_runs_no_shell_command(database_orthanc, ansible, repository, tmp_path):
    orthanc, database = database_orthanc
    orthanc.upload(make_instances(patients=1))
    live = orthanc.md5s()
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    marker = tmp_path / 'run-by-the-dump'
    forge_file(backup['path'], 'db/orthanc.sql', b'\\! touch %s\nsystem touch %s\n' % (
        str(marker).encode(), str(marker).encode()))

    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and 'Not allowed in the sandbox mode' in result['msg'], output
    assert not marker.exists()
    assert orthanc.md5s() == live and database.databases() == [database.name]


KEY = 'a-backup-key-of-the-tests-' + 'x' * 16
OTHER_KEY = 'another-key-of-the-tests-' + 'y' * 16


def copy_backup(backup_path, backup_id, change=None):
    """A copy of a backup under another id, its manifest naming that id: what a forger starts from."""
    folder = os.path.join(os.path.dirname(backup_path), backup_id)
    shutil.copytree(backup_path, folder)
    values = read_manifest(folder)
    values['backup_id'] = backup_id
    if change:
        change(values)
    write_manifest(folder, values)
    return folder


def signed_with(key):
    def sign(values):
        values.update(BackupKey(key).seal(values))
    return sign


def nested(folder):
    with open(os.path.join(folder, 'manifest.json'), 'w') as handle:
        handle.write('[' * 100000 + ']' * 100000)


FORGERIES = {
    # name: (the folder's id, how it is forged once copied, the backup key the modules get, the refusal)
    # The forger keeps the seal of the backup copied, or drops it ('unsigned' below).
    'index and listing rewritten': ('20260102T000000Z', lambda folder: forge_file(folder, 'index/index', b'x'), KEY,
                                    'its signature does not match its contents'),
    'unsigned': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        (key, value) for key, value in read_manifest(folder).items() if key != 'authentication')), KEY,
        'it is not signed'),
    'signed with another key': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        read_manifest(folder), **BackupKey(OTHER_KEY).seal(read_manifest(folder)))), KEY,
        'it is signed with another key'),
    'changed after it was signed': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        BackupKey(KEY).seal(read_manifest(folder)), counts={'instances': 0})), KEY,
        'its signature does not match its contents'),
    'planted newest id': ('29991231T235959Z', None, None, 'its id is a time to come'),
    'nested JSON': ('20260102T000000Z', nested, None, 'nests too deep'),
    'claimed 10^9 records': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        read_manifest(folder), files=10 ** 9)), None, 'its listings hold 2'),
    'wrong bytes': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        read_manifest(folder), bytes=1)), None, 'bytes, the manifest says 1'),
    'another instance': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        read_manifest(folder), instance='other')), None, "its manifest is that of instance 'other'"),
}


@pytest.mark.parametrize('forgery', sorted(FORGERIES))
def test_a_forged_backup_is_refused_by_name_and_changes_nothing(loaded, ansible, repository, forgery):
    orthanc, live = loaded
    backup_id, forge, key, refusal = FORGERIES[forgery]
    params = orthanc.module_params(repository=repository, instance='pacs', backup_key=key)
    real, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0 and real['authenticated'] == bool(key), output
    folder = copy_backup(real['path'], backup_id)
    if forge:
        forge(folder)
    before = listed_files(real['path'])

    result, rc, output = ansible.run('orthanc_restore', dict(params, backup=backup_id))
    assert rc != 0 and backup_id in result['msg'] and refusal in result['msg'], output
    assert orthanc.md5s() == live and listed_files(real['path']) == before
    # The latest backup is the real one, and a prune counts only it: the forged folder stays, left alone.
    verify, rc, output = ansible.run('orthanc_backup_verify', {'repository': repository, 'instance': 'pacs',
                                                               'backup_key': key})
    assert rc == 0 and verify['backup_id'] == real['backup_id'] and verify['authenticated'] == bool(key), output
    prune, rc, output = ansible.run('orthanc_backup_prune', {'repository': repository, 'instance': 'pacs',
                                                             'backup_key': key, 'keep_last': 1})
    assert rc == 0 and prune['kept'] == [real['backup_id']] and prune['removed'] == [], output
    assert refusal in prune['left_alone'][backup_id]
    assert os.path.isdir(folder) and complete_backups(repository) == sorted([real['backup_id'], backup_id])


def test_a_planted_newest_folder_makes_prune_remove_no_real_backup(loaded, ansible, repository):
    """Seen on efe99ee: a folder 29991231T235959Z with a one-line manifest made keep_last 1 remove both real
    backups."""
    orthanc, live = loaded
    params = orthanc.module_params(repository=repository, instance='pacs')
    real = [ansible.run('orthanc_backup', params)[0]['backup_id'] for dummy in range(2)]
    planted = os.path.join(repository, 'pacs', '29991231T235959Z')
    os.mkdir(planted)
    with open(os.path.join(planted, 'manifest.json'), 'w') as handle:
        handle.write('{"status": "complete", "format": 1, "backup_id": "29991231T235959Z", "counts": {}, "files": {}}')
    prune, rc, output = ansible.run('orthanc_backup_prune', {'repository': repository, 'instance': 'pacs',
                                                             'keep_last': 1})
    assert rc == 0 and prune['kept'] == [real[1]] and prune['removed'] == [real[0]], output
    assert complete_backups(repository) == [real[1], '29991231T235959Z']
    assert any('29991231T235959Z' in warning and 'left alone' in warning for warning in prune['warnings'])


def test_with_a_key_only_signed_backups_are_linked_used_and_signed_ones_restore(loaded, ansible, repository):
    orthanc, live = loaded
    params = orthanc.module_params(repository=repository, instance='pacs')
    unsigned, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0 and not unsigned['authenticated'], output
    assert any('No backup_key was given' in warning for warning in unsigned['warnings'])
    keyed = dict(params, backup_key=KEY)
    first, rc, output = ansible.run('orthanc_backup', keyed)
    # The unsigned backup is no backup for the key: nothing is linked from it.
    assert rc == 0 and first['authenticated'] and first['previous_backup'] is None, output
    assert 'No backup_key was given' not in ' '.join(first.get('warnings', []))
    # Signing the unsigned one (checked first) makes it a backup again, signed once.
    signing = {'repository': repository, 'instance': 'pacs', 'backup': unsigned['backup_id'], 'backup_key': KEY,
               'sign': True}
    signed, rc, output = ansible.run('orthanc_backup_verify', signing)
    assert rc == 0 and signed['signed'] and signed['changed'] and signed['authenticated'], output
    again, rc, output = ansible.run('orthanc_backup_verify', signing)
    assert rc == 0 and not again['signed'] and not again['changed'], output
    assert complete_backups(repository) == sorted([unsigned['backup_id'], first['backup_id']])

    orthanc.wipe()
    orthanc.start()
    restored, rc, output = ansible.run('orthanc_restore', dict(keyed, backup=unsigned['backup_id']))
    assert rc == 0 and restored['authenticated'], output
    assert orthanc.md5s() == live


# Run by a forged dump as it is loaded (a CHECK constraint is evaluated for each row COPY loads): as the owner of
# the Orthanc database, who owns the live database too, it changes that one's settings.
HOSTILE_SQL = r"""
CREATE FUNCTION hostile(x int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF current_database() LIKE '%\_restore\_%' THEN
    EXECUTE format('ALTER DATABASE %I SET work_mem = %L', split_part(current_database(), '_restore_', 1), '77kB');
  END IF;
  RETURN true;
END $$;
CREATE TABLE hostile (x int CHECK (hostile(x)));
INSERT INTO hostile VALUES (1);
"""


def forge_postgresql_dump(database, backup_path):
    """The backup's dump with HOSTILE_SQL added, made as the database's owner would, listed again."""
    forged = database.name + '_forged'
    database.admin('CREATE DATABASE %s OWNER %s' % (forged, database.user))
    dump = os.path.join(backup_path, 'db', 'orthanc.dump')
    login = dict(os.environ, PGPASSWORD=database.password)
    for argv in (['pg_restore', '--no-owner', '-d', forged, dump],
                 ['psql', '-v', 'ON_ERROR_STOP=1', '-qd', forged, '-c', HOSTILE_SQL],
                 ['pg_dump', '-Fc', '-f', dump, forged]):
        subprocess.run(argv[:1] + ['-h', '127.0.0.1', '-U', database.user] + argv[1:], env=login, check=True)
    database.admin('DROP DATABASE %s' % forged)
    with open(dump, 'rb') as handle:
        data = handle.read()
    rewrite_listing(backup_path, lambda files: files['db/orthanc.dump'].update(
        size=len(data), md5=hashlib.md5(data).hexdigest()))


def live_database_settings(database):
    """The settings of the Orthanc database, or of the one a restore kept aside in its place."""
    return database.admin("SELECT setconfig FROM pg_db_role_setting JOIN pg_database d ON d.oid = setdatabase "
                          "WHERE datname LIKE '%s%%'" % database.name)


@pytest.mark.slow
@pytest.mark.parametrize('database_orthanc', ['postgresql-index'], indirect=True)
def test_a_forged_postgresql_dump_is_loaded_only_where_nobody_else_can_write(database_orthanc, ansible, repository):
    """Item 1: pg_restore runs the SQL of a dump as the Orthanc database's owner. Without a key, a backup in a
    folder someone else can write is never loaded; the same dump in root's own folder shows what it would do."""
    orthanc, database = database_orthanc
    orthanc.upload(make_instances(patients=1))
    live = orthanc.md5s()
    params = orthanc.module_params(repository=repository, instance='pacs')
    backup, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0, output
    forge_postgresql_dump(database, backup['path'])
    os.chown(backup['path'], 65534, 65534)    # as the account that receives copies owns what it receives

    drill = dict(config=orthanc.config, repository=repository, instance='pacs')
    for module, arguments in (('orthanc_restore', params), ('orthanc_drill', drill)):
        result, rc, output = ansible.run(module, dict(arguments, backup=backup['backup_id']))
        assert rc != 0 and 'cannot be used: it is not authenticated (no backup_key)' in result['msg'], output
        assert backup['backup_id'] in result['msg'] and 'belongs to uid 65534' in result['msg'], output
    assert live_database_settings(database) == '' and orthanc.md5s() == live
    assert database.databases() == [database.name]

    os.chown(backup['path'], 0, 0)    # root's own again: believed, and the forged dump does what it was made for
    result, rc, output = ansible.run('orthanc_restore', params)
    assert rc == 0 and live_database_settings(database) == '{work_mem=77kB}', output


def test_with_a_key_a_backup_others_can_write_is_never_linked_and_restores_from_what_was_checked(
        loaded, ansible, repository):
    """Item 6: files are linked from the previous backup by their size, unread; where someone else can write that
    backup, they may have rewritten one in place."""
    orthanc, live = loaded
    keyed = orthanc.module_params(repository=repository, instance='pacs', backup_key=KEY)
    first, rc, output = ansible.run('orthanc_backup', keyed)
    assert rc == 0, output
    os.chown(first['path'], 65534, 65534)
    second, rc, output = ansible.run('orthanc_backup', keyed)
    assert rc == 0 and second['previous_backup'] is None and second['bytes_linked'] == 0, output
    assert any(first['backup_id'] in warning and 'no file is linked from it, others can change it' in warning
               for warning in second['warnings']), output

    orthanc.wipe()
    orthanc.start()
    restored, rc, output = ansible.run('orthanc_restore', dict(keyed, backup=first['backup_id']))
    assert rc == 0 and restored['authenticated'], output
    assert orthanc.md5s() == live
