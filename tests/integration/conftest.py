# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
    LAYOUTS, SERVICES, Ansible, ContainerOrthanc, ContainerPostgres, Orthanc, container_image, machine_lock,
    make_instances, server_answers)


def pytest_configure(config):
    config.addinivalue_line('markers', 'destructive: changes the whole machine (removes a Debian package for a while, '
                                       'or runs the packaged Orthanc service, whose init script stops every Orthanc of '
                                       'the host); make integration runs these alone, after the others')
    config.addinivalue_line('markers', 'slow: takes more than a few seconds (a fleet, containers, a large storage, '
                                       'many ansible-playbook runs); make quick leaves these out')


@pytest.fixture
def make_database(request):
    created = []

    def factory(kind, enable_storage):
        with machine_lock(SERVICES[kind]):
            if not server_answers(kind):
                subprocess.run(['service', SERVICES[kind], 'start'], check=True, capture_output=True)
        # Unique on this machine, across workers and runs: the pid and random digits.
        database = kind('orthanc_t%d_%s' % (os.getpid(), secrets.token_hex(3)), enable_storage)
        created.append(database)
        return database
    yield factory
    for database in created:
        database.drop()


@pytest.fixture
def database_orthanc(request, make_database, make_orthanc):
    kind, enable_storage = LAYOUTS[request.param]
    database = make_database(kind, enable_storage)
    orthanc = make_orthanc(database=database)
    return orthanc, database


@pytest.fixture(scope='session')
def collections_root():
    root = os.environ.get('ORTHANC_OPS_COLLECTIONS')
    if not root or not os.path.isdir(os.path.join(root, 'ansible_collections', 'orthanc_ops', 'backup')):
        pytest.fail('Set ORTHANC_OPS_COLLECTIONS to the folder holding ansible_collections/orthanc_ops/backup '
                    '(make integration does).')
    return root


@pytest.fixture
def ansible(collections_root, tmp_path):
    work = tmp_path / 'ansible'
    work.mkdir()
    return Ansible(collections_root, str(work))


@pytest.fixture
def make_orthanc(tmp_path):
    """Factory of running Orthanc servers, each in its own folder; all stopped at teardown."""
    servers = []

    def factory(name='orthanc', start=True, **options):
        server = Orthanc(str(tmp_path / name), **options)
        servers.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture(scope='session')
def orthanc_image():
    """The container image of Debian's Orthanc, built once for the whole run (and kept by the machine)."""
    return container_image()


@pytest.fixture
def make_container_orthanc(tmp_path, orthanc_image):
    """Factory of running Orthanc containers, each with its own folders and ports; all removed at teardown."""
    containers = []

    def factory(name='container', start=True, **options):
        container = ContainerOrthanc(str(tmp_path / name), orthanc_image, **options)
        containers.append(container)
        if start:
            container.start()
        return container

    yield factory
    for container in containers:
        container.remove()


@pytest.fixture
def container_postgres(orthanc_image):
    database = ContainerPostgres(orthanc_image)
    yield database
    database.remove()


@pytest.fixture
def container_network(orthanc_image):
    """A Podman bridge network of its own, as Docker Compose makes for a project."""
    name = 'orthanc-ops-%s' % base64.b32encode(os.urandom(5)).decode().lower()
    subprocess.run(['podman', 'network', 'create', name], check=True, capture_output=True)
    yield name
    subprocess.run(['podman', 'network', 'rm', '--force', name], check=False, capture_output=True)


@pytest.fixture
def packaged_orthanc():
    """The Debian package's Orthanc: /etc/orthanc, /var/lib/orthanc/db-v6, /etc/init.d/orthanc, port 8042."""
    storage = '/var/lib/orthanc/db-v6'
    subprocess.run(['/etc/init.d/orthanc', 'stop'], check=False, capture_output=True)
    saved = storage + '.before-tests'
    if os.path.exists(storage):
        shutil.move(storage, saved)
    os.makedirs(storage)
    shutil.chown(storage, 'orthanc', 'orthanc')
    subprocess.run(['/etc/init.d/orthanc', 'start'], check=True, capture_output=True)
    yield storage
    subprocess.run(['/etc/init.d/orthanc', 'stop'], check=False, capture_output=True)
    shutil.rmtree(storage, ignore_errors=True)
    if os.path.exists(saved):
        shutil.move(saved, storage)


@pytest.fixture
def repository(tmp_path):
    path = tmp_path / 'repository'
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def loaded(make_orthanc):
    orthanc = make_orthanc()
    orthanc.upload(make_instances())
    return orthanc, orthanc.md5s()


@pytest.fixture
def backed_up(loaded, ansible, repository):
    """A backup, then one more instance: the live data differs from the backup."""
    orthanc, before = loaded
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    orthanc.upload(make_instances(patients=1, studies=1, series=1, instances=1))
    return orthanc, backup, orthanc.md5s()
