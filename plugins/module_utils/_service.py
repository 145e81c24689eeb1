# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Stop and start Orthanc through its service manager, and make sure it comes back.

Before Orthanc is stopped, a small detached watcher is started: if this
module's process disappears (SIGKILL, out of memory, lost connection) before it
has started Orthanc again, the watcher starts it. ``try/finally`` alone does
not survive SIGKILL.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _config
from ansible_collections.orthanc_ops.backup.plugins.module_utils._config import Environment
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancDown, OrthancOpsError

POLL_INTERVAL = 0.05

MANAGERS = ('auto', 'systemd', 'sysvinit', 'command', 'none')
WATCHER_LOG = 'watcher.log'


def listening_pids(port):
    """PIDs of the processes listening on TCP ``port``: Orthanc itself, whatever its backend."""
    sockets = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == '0A' and int(fields[1].rsplit(':', 1)[1], 16) == port:
                sockets.add('socket:[%s]' % fields[9])
    pids = []
    for pid in os.listdir('/proc') if sockets else ():
        if not pid.isdigit():
            continue
        fd_dir = '/proc/%s/fd' % pid
        try:
            if any(os.readlink(os.path.join(fd_dir, fd)) in sockets for fd in os.listdir(fd_dir)):
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def orthanc_pids():
    """PIDs of every Orthanc process on this host, containers included (by the name of the executable)."""
    pids = []
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                if os.path.basename(os.readlink('/proc/%s/exe' % name)).startswith('Orthanc'):
                    pids.append(int(name))
            except OSError:
                continue
    return pids


def configuration_of(pid):
    """The configuration file or folder Orthanc ``pid`` was started with, as a path this host can open
    (through the process's own root, so a container's too); None when it names none or is gone."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv = handle.read().split(b'\0')
        args = [arg.decode(errors='surrogateescape') for arg in argv[1:] if arg and not arg.startswith(b'-')]
        if not args:
            return None
        path = args[-1] if os.path.isabs(args[-1]) else os.path.join(os.readlink('/proc/%d/cwd' % pid), args[-1])
    except OSError:
        return None
    return os.path.join('/proc/%d/root' % pid, path.lstrip('/'))


def same_path(first, second):
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def shown(path):
    """A path from configuration_of as its process names it."""
    parts = path.split('/', 4)
    return '/' + parts[4] if len(parts) == 5 and parts[1] == 'proc' and parts[3] == 'root' else path


def running_orthanc(config_path):
    """The pid of the Orthanc on this host that runs the configuration at ``config_path``, or None."""
    for pid in orthanc_pids():
        other = configuration_of(pid)
        if other and same_path(other, config_path):
            return pid
    return None


def process_environment(pid):
    """{name: value} of the environment ``pid`` was started with."""
    with open('/proc/%d/environ' % pid, 'rb') as handle:
        items = handle.read().split(b'\0')
    return dict(item.decode(errors='surrogateescape').split('=', 1) for item in items if b'=' in item)


def environment_file(path):
    """{name: value} of a systemd EnvironmentFile= (KEY=VALUE lines, # and ; comments, quotes)."""
    values = {}
    try:
        with open(path, errors='surrogateescape') as handle:
            lines = handle.read().splitlines()
    except OSError:
        return values
    for line in lines:
        line = line.strip()
        if not line or line[0] in '#;' or '=' not in line:
            continue
        name, value = line.split('=', 1)
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] and value[0] in '"\'':
            value = value[1:-1]
        values[name.strip()] = value
    return values


def parse_systemd_environment(output, read_file=environment_file):
    """{name: value} from ``systemctl show -p Environment -p EnvironmentFiles``: EnvironmentFile= settings
    override Environment= ones, as systemd applies them."""
    values, files = {}, []
    for line in output.splitlines():
        key, dummy, value = line.partition('=')
        if key == 'Environment' and value:
            values.update(item.split('=', 1) for item in shlex.split(value) if '=' in item)
        elif key == 'EnvironmentFiles' and value:
            files.append(value.rsplit(' (', 1)[0])
    for path in files:
        values.update(read_file(path.lstrip('-')))
    return values


def load_configuration(module):
    """The configuration of O(config) as the Orthanc that runs it sees it; its secrets kept out of all output."""
    config = _config.load(module.params['config'], environment_of(module))
    module.no_log_values.update(config.secrets())
    return config


def environment_of(module):
    """Where the configuration's ``${NAME}`` get their values: the environment of the Orthanc that runs
    it, exactly; when none runs, its systemd unit's Environment= and EnvironmentFile=, then this
    module's own environment (a task's ``environment:``)."""
    params = module.params
    pid = running_orthanc(params['config'])
    if pid:
        try:
            return Environment([('the environment of the running Orthanc (pid %d)' % pid, process_environment(pid))],
                               complete=True)
        except OSError:
            pass
    sources = []
    systemctl = module.get_bin_path('systemctl')
    name = params.get('service_name') or 'orthanc'
    if params.get('service_manager', 'auto') in ('auto', 'systemd') and systemctl and os.path.isdir('/run/systemd/system'):
        rc, out, dummy = module.run_command([systemctl, 'show', '--property=Environment', '--property=EnvironmentFiles',
                                             name])
        if rc == 0:
            sources.append(('the systemd unit %s' % name, parse_systemd_environment(out)))
    sources.append(("this module's environment (the task's environment:)", dict(os.environ)))
    return Environment(sources)


def check_runs(config_path, port):
    """Refuse when an Orthanc listening on ``port`` runs another configuration than ``config_path``:
    a wrong or empty configuration (default port 8042) must not make us stop or judge another server."""
    for pid in listening_pids(port):
        other = configuration_of(pid)
        if other and not same_path(other, config_path):
            raise OrthancOpsError('The Orthanc listening on port %d (pid %d) runs the configuration %s, not %s. '
                                  'Nothing was stopped or changed: point "config" (and "url") at the configuration '
                                  'of the Orthanc to act on.' % (port, pid, shown(other), config_path))


def alive(pid):
    """True while ``pid`` runs (a zombie has finished)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except (OSError, IndexError):
        return False


# Runs detached with the interpreter of the module; argv[1] is a JSON spec. Whoever
# removes the token first (the module when it is done, or this watcher when the
# module is gone) owns the restart. Orthanc's processes are waited for first, so
# that the start command does not meet an Orthanc that is still shutting down.
WATCHER_SOURCE = inspect.getsource(alive) + r'''
import json, os, subprocess, sys, time
spec = json.loads(sys.argv[1])
while os.path.exists(spec["token"]):
    if alive(spec["pid"]):
        time.sleep(0.1)
        continue
    try:
        os.unlink(spec["token"])
    except OSError:
        break
    # The log sits in the module's private folder, created here and never through a link.
    with os.fdopen(os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600), "ab") as log:
        deadline = time.monotonic() + spec["stop_timeout"]
        while any(alive(pid) for pid in spec["orthanc"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if any(alive(pid) for pid in spec["orthanc"]):
            log.write(("module %d vanished; Orthanc (pids %s) still runs: nothing to do\n"
                       % (spec["pid"], spec["orthanc"])).encode())
            break
        log.write(("module %d vanished while Orthanc was stopped; running %s\n" % (spec["pid"], spec["start"])).encode())
        log.flush()
        rc = subprocess.call(spec["start"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.write(("exit code %d\n" % rc).encode())
    break
'''


def command_failure(rc, out, err):
    """'exit code N: what it printed' (or 'exit code N, no output') for an error message."""
    printed = (err or out).strip()
    return 'exit code %d: %s' % (rc, printed) if printed else 'exit code %d, no output' % rc


class Service:
    """Orthanc as a service: its commands, its state and the restart guarantee."""

    def __init__(self, module, rest, port):
        params = module.params
        self.module = module
        self.rest = rest
        self.port = port
        self.pids = []
        self.name = params['service_name']
        self.start_timeout = params['start_timeout']
        self.stop_timeout = params['stop_timeout']
        # Hot backups never stop Orthanc: a manager that cannot be resolved is an error only when needed.
        try:
            self.manager = self._resolve_manager(params['service_manager'])
            self.stop_argv, self.start_argv = self._commands(params)
            self.unusable = None
        except OrthancOpsError as exc:
            self.manager, self.stop_argv, self.start_argv, self.unusable = None, None, None, exc
        self._token = None

    def _resolve_manager(self, manager):
        if manager != 'auto':
            return manager
        if os.path.isdir('/run/systemd/system') and self.module.get_bin_path('systemctl'):
            return 'systemd'
        if os.path.exists('/etc/init.d/%s' % self.name):
            return 'sysvinit'
        raise OrthancOpsError('Cannot tell how to stop and start Orthanc: no systemd and no /etc/init.d/%s. '
                              'Set service_manager (systemd, sysvinit, or command with stop_command and '
                              'start_command).' % self.name)

    def _commands(self, params):
        if self.manager == 'systemd':
            systemctl = self.module.get_bin_path('systemctl', required=True)
            return [systemctl, 'stop', self.name], [systemctl, 'start', self.name]
        if self.manager == 'sysvinit':
            script = '/etc/init.d/%s' % self.name
            return [script, 'stop'], [script, 'start']
        if self.manager == 'command':
            if not params.get('stop_command') or not params.get('start_command'):
                raise OrthancOpsError('service_manager=command needs both stop_command and start_command.')
            return ['/bin/sh', '-c', params['stop_command']], ['/bin/sh', '-c', params['start_command']]
        return None, None

    def describe(self):
        return {'manager': self.manager,
                'stop': ' '.join(self.stop_argv) if self.stop_argv else None,
                'start': ' '.join(self.start_argv) if self.start_argv else None}

    def is_running(self):
        return self.rest.answers() or bool(listening_pids(self.port))

    def _stopped(self):
        return not self.rest.answers() and not any(alive(pid) for pid in self.pids) and not listening_pids(self.port)

    def stop(self):
        """Stop Orthanc and wait until it is really gone; the watcher is armed first."""
        if self.unusable:
            raise self.unusable
        if self.manager == 'none':
            raise OrthancOpsError('Orthanc is running and service_manager is none, so it cannot be stopped. '
                                  'Stop Orthanc first or set service_manager.')
        self.pids = listening_pids(self.port)
        self._arm_watcher()
        rc, out, err = self.module.run_command(self.stop_argv)
        if rc != 0:
            raise OrthancOpsError('The stop command "%s" failed (%s). Fix the service setup '
                                  '(service_manager, service_name, stop_command).'
                                  % (' '.join(self.stop_argv), command_failure(rc, out, err)))
        deadline = time.monotonic() + self.stop_timeout
        while not self._stopped():
            if time.monotonic() >= deadline:
                raise OrthancOpsError('Orthanc did not stop within %d s after "%s" (still answering at %s or '
                                      'running as pids %s). Raise stop_timeout or check the stop command.'
                                      % (self.stop_timeout, ' '.join(self.stop_argv), self.rest.url,
                                         [pid for pid in self.pids if alive(pid)] or listening_pids(self.port)))
            time.sleep(POLL_INTERVAL)

    @contextmanager
    def stopped(self):
        """Orthanc stopped for the body of the ``with``, and started again whatever happens in it."""
        try:
            self.stop()
            yield
        except BaseException as exc:
            try:
                self.start()
            except OrthancDown as down:
                raise OrthancDown('%s It had been stopped for an operation that failed: %s' % (down, exc), down.reason)
            raise
        self.start()

    def start(self):
        """Start Orthanc (unless it answers already) and wait until its REST API answers.

        The watcher is dismissed either way: from here on this module reports the outcome.
        """
        try:
            if self.rest.answers():
                return
            if self.unusable:
                raise self.unusable
            rc, out, err = self.module.run_command(self.start_argv)
            if rc == 0 and self.rest.wait_until_answering(self.start_timeout):
                return
            detail = command_failure(rc, out, err) if rc != 0 else (
                'no answer at %s within %d s' % (self.rest.url, self.start_timeout))
            raise OrthancDown('ORTHANC IS DOWN: it was stopped for the operation and "%s" did not bring '
                              'it back (%s). Start it by hand and read its log.'
                              % (' '.join(self.start_argv), detail), '"%s": %s' % (' '.join(self.start_argv), detail))
        finally:
            self._dismiss_watcher()

    def _arm_watcher(self):
        # A private folder (mkdtemp: 0700, a new name) for the token and the watcher's log: nothing
        # planted in the temporary folder can redirect either.
        folder = tempfile.mkdtemp(prefix='orthanc-ops-watch-')
        token = os.path.join(folder, 'token')
        os.close(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        spec = {'pid': os.getpid(), 'token': token, 'start': self.start_argv, 'orthanc': self.pids,
                'stop_timeout': self.stop_timeout, 'log': os.path.join(folder, WATCHER_LOG)}
        # The one process not run through run_command: it must outlive this module.
        subprocess.Popen([sys.executable, '-c', WATCHER_SOURCE, json.dumps(spec)],  # pylint: disable=ansible-bad-function
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         close_fds=True, start_new_session=True)
        self._token = token

    def _dismiss_watcher(self):
        if self._token:
            for remove, path in ((os.unlink, self._token), (os.rmdir, os.path.dirname(self._token))):
                try:
                    remove(path)
                except OSError:    # the watcher acted: its log stays in the folder
                    pass
            self._token = None
