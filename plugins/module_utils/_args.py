# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Argument specs shared by the modules; documented in the orthanc_ops.backup.orthanc doc fragment."""

from __future__ import annotations

from ansible_collections.orthanc_ops.backup.plugins.module_utils._retention import POLICY

# How Orthanc is stopped and started (_service.Service acts on each).
MANAGERS = ('auto', 'systemd', 'sysvinit', 'command', 'none', 'docker', 'podman')


def orthanc_argument_spec():
    return dict(
        config=dict(type='path'),
        service_manager=dict(type='str', default='auto', choices=list(MANAGERS)),
        service_name=dict(type='str', default='orthanc'),
        url=dict(type='str'),
        url_username=dict(type='str'),
        url_password=dict(type='str', no_log=True),
        validate_certs=dict(type='bool', default=True),
    )


def service_argument_spec():
    return dict(
        stop_command=dict(type='str'),
        start_command=dict(type='str'),
        start_timeout=dict(type='int', default=60),
        stop_timeout=dict(type='int', default=60),
    )


def repository_argument_spec(required=False):
    return dict(
        repository=dict(type='path', required=required),
        instance=dict(type='str'),
        backup_key=dict(type='str', no_log=True),
    )


def backup_argument_spec():
    """The backup a module acts on: V(latest) or an id (the BACKUP doc fragment)."""
    return dict(backup=dict(type='str', default='latest'))


def retention_argument_spec():
    return dict((name, dict(type='int', default=0)) for name in POLICY)


def database_argument_spec():
    return dict(
        login_host=dict(type='str'),
        login_port=dict(type='int'),
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True),
        login_db=dict(type='str'),
        login_unix_socket=dict(type='str'),
        database_container=dict(type='str'),
    )


def operation_argument_spec(repository_required):
    """Everything a module that may stop Orthanc and reach its database takes."""
    spec = orthanc_argument_spec()
    spec.update(service_argument_spec())
    spec.update(database_argument_spec())
    spec.update(dump_jobs=dict(type='int', default=1))
    spec.update(repository_argument_spec(required=repository_required))
    return spec


def sandbox_argument_spec():
    """Everything a module that starts a throwaway Orthanc on a backup takes (orthanc_recover, orthanc_drill): the
    Orthanc configuration, the database login, and the backup (in a repository, or a folder)."""
    spec = orthanc_argument_spec()
    spec.update(database_argument_spec())
    spec.update(repository_argument_spec())
    spec.update(backup_argument_spec())
    spec.update(dump_jobs=dict(type='int', default=1), src=dict(type='path'))
    return spec
