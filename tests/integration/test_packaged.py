# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Debian package's Orthanc through its init script (destructive: the script stops every Orthanc)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request

import pytest

from harness import make_instances


def packaged_md5s():
    def get(path):
        with urllib.request.urlopen('http://127.0.0.1:8042' + path, timeout=30) as response:
            return response.read()
    return dict((iid, get('/instances/%s/attachments/dicom/md5' % iid).decode())
                for iid in json.loads(get('/instances')))


def wait_packaged():
    for dummy in range(600):
        try:
            return packaged_md5s()
        except OSError:
            subprocess.run(['sleep', '0.05'], check=True)
    raise AssertionError('the packaged Orthanc did not answer on 8042')


@pytest.mark.destructive
def test_packaged_orthanc_through_sysvinit(packaged_orthanc, ansible, repository):
    wait_packaged()
    for data in make_instances(patients=2):
        request = urllib.request.Request('http://127.0.0.1:8042/instances', data=data, method='POST')
        urllib.request.urlopen(request, timeout=30).close()
    before = packaged_md5s()
    assert len(before) == 16
    backup, rc, output = ansible.run('orthanc_backup', {'repository': repository, 'service_manager': 'sysvinit'})
    assert rc == 0, output
    assert backup['counts']['instances'] == 16 and packaged_md5s() == before

    subprocess.run(['/etc/init.d/orthanc', 'stop'], check=True, capture_output=True)
    for name in os.listdir(packaged_orthanc):
        path = os.path.join(packaged_orthanc, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    subprocess.run(['/etc/init.d/orthanc', 'start'], check=True, capture_output=True)
    assert wait_packaged() == {}

    restore, rc, output = ansible.run('orthanc_restore', {'repository': repository, 'service_manager': 'sysvinit',
                                                          'keep_previous': False})
    assert rc == 0, output
    assert packaged_md5s() == before and restore['previous_kept_at'] == []
    owners = set(os.stat(os.path.join(d, f)).st_uid for d, dummy, files in os.walk(packaged_orthanc) for f in files)
    assert owners == {os.stat(packaged_orthanc).st_uid}
