# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_backup_transfer through ansible-playbook, with rsync over a real SSH server: a push
links unchanged files to the other side's newest copy, a pull brings a backup back, and a copy
that cannot be made leaves nothing behind that looks like a backup."""

from __future__ import annotations

import os

import pytest

from fleet import Sshd
from harness import make_instances

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(str(tmp_path / 'sshd'), ['127.0.0.2'])
    yield server
    server.stop()


def transfer_params(sshd, local, remote, **extra):
    params = {'repository': local, 'instance': 'pacs', 'remote_host': '127.0.0.2', 'remote_user': 'root',
              'remote_port': sshd.port, 'remote_repository': remote, 'ssh_args': sshd.ssh_args}
    params.update(extra)
    return params


def inodes(folder):
    return dict((os.path.relpath(os.path.join(current, name), folder), os.stat(os.path.join(current, name)).st_ino)
                for current, dummy, names in os.walk(folder) for name in names)


def ssh_masters_left(sshd):
    """The SSH connections to ``sshd`` (this test's own) that a copy shared and left open."""
    masters = []
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                command = handle.read().split(b'\0')
        except OSError:
            continue
        if any(b'orthanc-ops-ssh-' in word for word in command) and str(sshd.port).encode() in command:
            masters.append(pid)
    return masters


def test_push_links_to_the_newest_copy_and_pull_brings_a_backup_back(make_orthanc, ansible, sshd, tmp_path):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=2))
    local, central, elsewhere = (str(tmp_path / name) for name in ('local', 'central', 'elsewhere'))
    # Cold: the index then has no write-ahead log, whose megabytes would outweigh these few instances.
    first, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=local, instance='pacs',
                                                                            mode='cold'))
    assert rc == 0, output
    push = transfer_params(sshd, local, central)

    plan, rc, output = ansible.run('orthanc_backup_transfer', push, check=True)
    assert rc == 0 and plan['changed'] and not plan['copied'] and plan['new_bytes'] > 0, output
    assert not os.path.exists(central)

    sent, rc, output = ansible.run('orthanc_backup_transfer', push)
    assert rc == 0 and sent['backup_id'] == first['backup_id'] and sent['linked_to'] is None, output
    assert sent['path'] == os.path.join(central, 'pacs', first['backup_id'] + '.partial')
    assert not ssh_masters_left(sshd), 'the SSH connection the copy shared was not closed'
    assert sent['files_transferred'] == len(inodes(first['path'])) and sent['new_bytes'] == plan['new_bytes']
    verified, rc, output = ansible.run('orthanc_backup_verify', {'repository': central, 'instance': 'pacs',
                                                                 'backup': sent['backup_id'], 'incoming': True})
    assert rc == 0 and verified['path'] == os.path.join(central, 'pacs', first['backup_id']), output

    orthanc.upload(make_instances(patients=1))
    second, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=local, instance='pacs',
                                                                             mode='cold'))
    assert rc == 0, output
    again, rc, output = ansible.run('orthanc_backup_transfer', push)
    assert rc == 0 and again['backup_id'] == second['backup_id'] and again['linked_to'] == first['backup_id'], output
    assert 0 < again['new_bytes'] < sent['new_bytes']
    old, new = inodes(os.path.join(central, 'pacs', first['backup_id'])), inodes(again['path'])
    stored_before = set(name for name in old if name.startswith('storage/'))
    assert set(name for name in new if old.get(name) == new[name]) == stored_before
    assert again['files_transferred'] == len(new) - len(stored_before)

    repeated, rc, output = ansible.run('orthanc_backup_transfer', dict(push, backup=first['backup_id']))
    assert rc == 0 and repeated['changed'] is False and repeated['copied'] is False, output

    # A link planted where the pulled copy goes: verifying it as a copy is refused, and the pull removes it
    # instead of writing through it.
    steered, incoming = str(tmp_path / 'steered'), os.path.join(elsewhere, 'pacs', first['backup_id'] + '.partial')
    os.makedirs(os.path.dirname(incoming))
    os.mkdir(steered)
    os.symlink(steered, incoming)
    refused, rc, output = ansible.run('orthanc_backup_verify', {'repository': elsewhere, 'instance': 'pacs',
                                                                'backup': first['backup_id'], 'incoming': True})
    assert rc != 0 and 'is a symbolic link' in refused['msg'] and os.path.islink(incoming), output
    # The sending side's owners and modes are not kept: a setuid file of another user's arrives as root's 0600.
    source = next(os.path.join(folder, name) for folder, dummy, names in os.walk(os.path.join(
        central, 'pacs', first['backup_id'], 'storage')) for name in names)
    os.chown(source, 65534, 65534)
    os.chmod(source, 0o4755)
    pulled, rc, output = ansible.run('orthanc_backup_transfer', transfer_params(sshd, elsewhere, central, direction='pull'))
    assert rc == 0 and pulled['backup_id'] == first['backup_id'] and pulled['linked_to'] is None, output
    assert not os.path.islink(incoming) and os.listdir(steered) == []
    relative = os.path.relpath(source, os.path.join(central, 'pacs', first['backup_id']))
    arrived = os.stat(os.path.join(pulled['path'], relative))
    assert (arrived.st_uid, arrived.st_mode & 0o7777) == (0, 0o600)
    assert pulled['path'] == os.path.join(elsewhere, 'pacs', first['backup_id'] + '.partial')
    verified, rc, output = ansible.run('orthanc_backup_verify', {'repository': elsewhere, 'instance': 'pacs',
                                                                 'backup': first['backup_id'], 'incoming': True})
    assert rc == 0 and verified['files'] == first['files'], output


def test_a_copy_that_cannot_be_made_says_why_and_leaves_no_backup(make_orthanc, ansible, sshd, tmp_path):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    local, central = str(tmp_path / 'local'), str(tmp_path / 'central')
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=local, instance='pacs'))
    assert rc == 0, output

    missing, rc, output = ansible.run('orthanc_backup_transfer',
                                      transfer_params(sshd, local, central, backup='20200101T000000Z'))
    assert rc != 0 and 'no complete backup "20200101T000000Z"' in missing['msg'], output
    assert backup['backup_id'] in missing['msg'] and not os.path.exists(central)

    nothing, rc, output = ansible.run('orthanc_backup_transfer',
                                      transfer_params(sshd, str(tmp_path / 'empty'), central, direction='pull'))
    assert rc != 0 and 'no complete backup at all' in nothing['msg'] and '127.0.0.2' in nothing['msg'], output

    unreachable, rc, output = ansible.run('orthanc_backup_transfer',
                                          transfer_params(sshd, local, central, remote_port=sshd.port + 1))
    assert rc != 0 and 'Cannot list' in unreachable['msg'] and 'reachable' in unreachable['msg'], output
    assert not os.path.exists(central)
    assert [name for name in os.listdir(os.path.join(local, 'pacs')) if not name.startswith('.')] == [backup['backup_id']]
