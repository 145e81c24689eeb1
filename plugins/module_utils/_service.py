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
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancDown, OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._proc import (
    Held, all_stopped, alive, is_orthanc, listening_pids, state)

POLL_INTERVAL = 0.05
# Seconds SIGSTOP may take to stop every thread of Orthanc (it takes well under a millisecond).
FREEZE_TIMEOUT = 5

WATCHER_LOG = 'watcher.log'


# Runs detached with the interpreter of the module; its JSON spec comes on stdin. Whoever
# removes the token first (the module when it is done, or this watcher when the
# module is gone) owns the restart, or the thaw of a frozen Orthanc. Orthanc's
# processes are waited for first, so that the start command does not meet an
# Orthanc that is still shutting down. Processes come as [pid, pidfd]: the watcher
# inherits the pidfds, which never name another process once theirs has ended
# (a pid may, pid_max is often 32768); [pid, null] where the kernel has no pidfds.
WATCHER_SOURCE = inspect.getsource(state) + inspect.getsource(alive) + r'''
import json, os, select, signal, subprocess, sys, time
spec = json.loads(sys.stdin.read())


def running(process):
    pid, fd = process
    return alive(pid) if fd is None else not select.select([fd], [], [], 0)[0]


def send(process, signum):
    pid, fd = process
    try:
        if fd is None:
            os.kill(pid, signum)
        else:
            signal.pidfd_send_signal(fd, signum)
    except OSError:
        pass


while os.path.exists(spec["token"]):
    if running(spec["module"]):
        time.sleep(0.02 if spec["thaw"] else 0.1)
        continue
    try:
        os.unlink(spec["token"])
    except OSError:
        break
    # The log sits in the module's private folder, created here and never through a link.
    with os.fdopen(os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600), "ab") as log:
        module = spec["module"][0]
        if spec["thaw"]:
            for process in spec["thaw"]:
                send(process, signal.SIGCONT)
            log.write(("module %d vanished while Orthanc was frozen; continued pids %s\n"
                       % (module, [pid for pid, fd in spec["thaw"]])).encode())
            break
        deadline = time.monotonic() + spec["stop_timeout"]
        while any(running(process) for process in spec["orthanc"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if any(running(process) for process in spec["orthanc"]):
            log.write(("module %d vanished; Orthanc (pids %s) still runs: nothing to do\n"
                       % (module, [pid for pid, fd in spec["orthanc"]])).encode())
            break
        log.write(("module %d vanished while Orthanc was stopped; running %s\n" % (module, spec["start"])).encode())
        log.flush()
        rc = subprocess.call(spec["start"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.write(("exit code %d\n" % rc).encode())
    break
'''


def host_manager(module, service_name):
    """What ``service_manager: auto`` finds on this host for the service ``service_name``: systemd when it runs the
    host, else an init script of that name; None when neither."""
    if os.path.isdir('/run/systemd/system') and module.get_bin_path('systemctl'):
        return 'systemd'
    if os.path.exists('/etc/init.d/%s' % service_name):
        return 'sysvinit'
    return None


class Pause:
    """How long Orthanc was frozen: ``seconds`` so far, or in all once it was continued."""

    def __init__(self):
        self.started = self.ended = None

    @property
    def seconds(self):
        if self.started is None:
            return 0.0
        return (self.ended or time.monotonic()) - self.started


def command_failure(rc, out, err):
    """'exit code N: what it printed' (or 'exit code N, no output') for an error message."""
    printed = (err or out).strip()
    return 'exit code %d: %s' % (rc, printed) if printed else 'exit code %d, no output' % rc


class Service:
    """Orthanc as a service: its commands, its state and the restart guarantee."""

    def __init__(self, module, rest, config):
        params = module.params
        self.module = module
        self.rest = rest
        self.port = config.host_http_port
        self.container = config.container
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
        self._token = self._held = None

    def _resolve_manager(self, manager):
        if self.container:
            return self.container.engine
        if manager != 'auto':
            return manager
        found = host_manager(self.module, self.name)
        if found:
            return found
        raise OrthancOpsError('Cannot tell how to stop and start Orthanc: no systemd and no /etc/init.d/%s. '
                              'Set service_manager (systemd, sysvinit, or command with stop_command and '
                              'start_command).' % self.name)

    def _commands(self, params):
        if self.container:
            return self.container.stop_argv(self.stop_timeout), self.container.start_argv()
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
        self._held = Held(listening_pids(self.port), lambda pid: True)
        self.pids = self._held.pids
        self._token = arm_watcher(self.start_argv, self._held, self.stop_timeout)
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
                self._refuse_impostor()
                return
            if self.unusable:
                raise self.unusable
            rc, out, err = self.module.run_command(self.start_argv)
            if rc == 0 and self.rest.wait_until_answering(self.start_timeout):
                self._refuse_impostor()
                return
            detail = command_failure(rc, out, err) if rc != 0 else (
                'no answer at %s within %d s' % (self.rest.url, self.start_timeout))
            raise OrthancDown('ORTHANC IS DOWN: it was stopped for the operation and "%s" did not bring '
                              'it back (%s). Start it by hand and read its log.'
                              % (' '.join(self.start_argv), detail), '"%s": %s' % (' '.join(self.start_argv), detail))
        finally:
            dismiss_watcher(self._token)
            self._token = None
            if self._held:
                self._held.close()
                self._held = None

    def impostor(self):
        """The pids listening on Orthanc's port when none of them is an Orthanc (see _proc.is_orthanc), else []: a
        local program took the port while Orthanc was stopped, to collect the credentials sent to it or to have
        Orthanc never started again. A container's port is published by the engine's proxy: not checked."""
        pids = [] if self.container else listening_pids(self.port)
        return pids if pids and not any(is_orthanc(pid) for pid in pids) else []

    def _refuse_impostor(self):
        """Refuse a port held by an impostor (see impostor) before any credential is sent."""
        pids = self.impostor()
        if pids:
            raise OrthancDown('ORTHANC IS DOWN: port %d, where it answers, is held by another program (pid %s), not '
                              'by Orthanc; no credential was sent to it. Stop that program, start Orthanc by hand, '
                              'and find out who started it.' % (self.port, ', '.join(map(str, pids))),
                              'port %d held by pid %s' % (self.port, ', '.join(map(str, pids))))

    def frozen(self):
        """Orthanc frozen for the body of the ``with`` (see the module-level ``frozen``)."""
        return frozen(self.port, self.container)


@contextmanager
def frozen(port, container=None):
    """Every Orthanc process stopped by the kernel (SIGSTOP) for the body of the ``with`` and continued
    (SIGCONT) whatever happens in it; the watcher continues them if this module dies meanwhile. The
    processes are those listening on ``port``, or the Orthanc processes of ``container``.

    Yields a Pause: its ``seconds`` from the moment every process is stopped.
    """
    if container:
        held = Held(container.orthanc_pids(), is_orthanc)
        where = 'runs in the %s container "%s"' % (container.engine, container.name)
    else:
        held = Held(listening_pids(port), is_orthanc)
        where = 'listens on port %d' % port
    pids = held.pids
    if not pids:
        held.close()
        raise OrthancOpsError('No Orthanc process %s, so there is nothing to freeze. Use mode=cold, or check the '
                              'configuration\'s HttpPort.' % where)
    token = arm_watcher(thaw=held)
    pause = Pause()
    try:
        held.signal(signal.SIGSTOP)
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while not all(all_stopped(pid) for pid in pids):
            if time.monotonic() >= deadline:
                raise OrthancOpsError('Orthanc (pids %s) did not stop within %g s of SIGSTOP; it was continued and '
                                      'nothing was backed up.' % (pids, FREEZE_TIMEOUT))
            time.sleep(0.0005)
        pause.started = time.monotonic()
        yield pause
    finally:
        held.signal(signal.SIGCONT)
        held.close()
        pause.ended = time.monotonic()
        dismiss_watcher(token)


def arm_watcher(start=None, orthanc=None, stop_timeout=0, thaw=None):
    """Start the detached watcher that runs ``start`` once the ``orthanc`` processes (a Held) are gone, or
    continues the ``thaw`` ones (a Held), if this module's process dies first; return its token for
    dismiss_watcher."""
    # A private folder (mkdtemp: 0700, a new name) for the token and the watcher's log: nothing
    # planted in the temporary folder can redirect either.
    folder = tempfile.mkdtemp(prefix='orthanc-ops-watch-')
    token = os.path.join(folder, 'token')
    os.close(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with Held([os.getpid()], lambda pid: True) as module:
        processes = dict((name, held.processes() if held else []) for name, held in
                         (('module', module), ('orthanc', orthanc), ('thaw', thaw)))
        spec = dict(processes, module=processes['module'][0], token=token, start=start, stop_timeout=stop_timeout,
                    log=os.path.join(folder, WATCHER_LOG))
        # The one process not run through run_command: it must outlive this module. Its orders go through a
        # pipe, not its argv, which every local user can read (the start command may hold a secret).
        watcher = subprocess.Popen([sys.executable, '-c', WATCHER_SOURCE],  # pylint: disable=ansible-bad-function
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   close_fds=True, start_new_session=True,
                                   pass_fds=[fd for held in processes.values() for dummy, fd in held if fd is not None])
    with watcher.stdin:
        watcher.stdin.write(json.dumps(spec).encode())
    return token


def dismiss_watcher(token):
    """Tell the watcher that this module is done (its folder stays only when the watcher acted)."""
    if token:
        for remove, path in ((os.unlink, token), (os.rmdir, os.path.dirname(token))):
            try:
                remove(path)
            except OSError:    # the watcher acted: its log stays in the folder
                pass
