# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The restart guarantee of Service, with a stand-in AnsibleModule (its run_command) and a stand-in REST
client whose Orthanc goes down when the stop command runs and comes back when the start command runs.
The integration tests do the same against real Orthanc servers; these pin the order of the steps and
the messages."""

from __future__ import annotations

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _service
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancDown, OrthancOpsError

STOP, START = 'stop-orthanc', 'start-orthanc'


class FakeOrthanc:
    """What the REST client sees: answering or not."""

    def __init__(self):
        self.up = True
        self.url = 'http://127.0.0.1:9/'

    def answers(self):
        return self.up

    def wait_until_answering(self, timeout):
        return self.up


class FakeModule:
    """The part of AnsibleModule that Service uses: params, run_command (recorded), get_bin_path."""

    def __init__(self, orthanc, failing=(), **params):
        self.orthanc, self.failing, self.commands = orthanc, failing, []
        self.params = dict(service_manager='command', service_name='orthanc', start_timeout=5, stop_timeout=5,
                           stop_command=STOP, start_command=START)
        self.params.update(params)

    def run_command(self, argv):
        command = argv[-1]
        self.commands.append(command)
        if command in self.failing:
            return 1, '', '%s: permission denied' % command
        self.orthanc.up = command == START
        return 0, '', ''

    def get_bin_path(self, name, required=False):
        return '/usr/bin/' + name


class Config:
    host_http_port = 9    # nobody listens on the discard port here
    container = None


@pytest.fixture
def watchers(monkeypatch):
    """The watcher's arming and dismissal, recorded instead of a detached process."""
    events = []
    monkeypatch.setattr(_service, 'arm_watcher', lambda *args, **kwargs: events.append('armed') or 'token')
    monkeypatch.setattr(_service, 'dismiss_watcher', lambda token: events.append(('dismissed', token)))
    return events


def service(failing=(), **params):
    orthanc = FakeOrthanc()
    module = FakeModule(orthanc, failing, **params)
    return _service.Service(module, orthanc, Config()), module, orthanc


def test_a_failed_operation_starts_orthanc_again_and_keeps_its_error(watchers):
    running, module, orthanc = service()
    with pytest.raises(ValueError, match='the copy failed'):
        with running.stopped():
            assert not orthanc.up
            raise ValueError('the copy failed')
    assert module.commands == [STOP, START] and orthanc.up
    assert watchers == ['armed', ('dismissed', 'token')]


def test_a_start_that_fails_after_a_failed_operation_says_orthanc_is_down_and_why(watchers):
    running, module, orthanc = service(failing=(START,))
    with pytest.raises(OrthancDown) as raised:
        with running.stopped():
            raise ValueError('the copy failed')
    message = str(raised.value)
    assert message.startswith('ORTHANC IS DOWN') and 'permission denied' in message and 'the copy failed' in message
    assert not orthanc.up and watchers[-1] == ('dismissed', 'token')


def test_a_stop_command_that_fails_leaves_the_running_orthanc_alone(watchers):
    running, module, orthanc = service(failing=(STOP,))
    with pytest.raises(OrthancOpsError, match='The stop command .*stop-orthanc.* failed'):
        with running.stopped():
            pytest.fail('the body ran without Orthanc stopped')
    assert module.commands == [STOP] and orthanc.up    # it still answers: no start command
    assert watchers == ['armed', ('dismissed', 'token')]


def test_a_command_manager_needs_both_commands_but_only_to_stop(watchers):
    running, module, orthanc = service(start_command=None)
    assert running.describe() == {'manager': None, 'stop': None, 'start': None}
    with pytest.raises(OrthancOpsError, match='needs both stop_command and start_command'):
        running.stop()
    assert module.commands == [] and watchers == []


def test_a_service_that_may_not_be_stopped_is_refused_before_anything(watchers):
    running, module, orthanc = service(service_manager='none')
    with pytest.raises(OrthancOpsError, match='service_manager is none'):
        running.stop()
    assert module.commands == [] and watchers == [] and orthanc.up


def test_systemd_and_sysvinit_commands_name_the_service(watchers):
    assert service(service_manager='systemd', service_name='pacs')[0].describe() == {
        'manager': 'systemd', 'stop': '/usr/bin/systemctl stop pacs', 'start': '/usr/bin/systemctl start pacs'}
    assert service(service_manager='sysvinit', service_name='pacs')[0].describe() == {
        'manager': 'sysvinit', 'stop': '/etc/init.d/pacs stop', 'start': '/etc/init.d/pacs start'}
