# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fleet on one machine: a private sshd listening on several loopback addresses, so that each
inventory host is reached over real SSH, and ansible-playbook runs against that inventory."""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import time

from harness import free_port


class Sshd:
    """``sshd -D`` as a child of the tests, key authentication only, on ``addresses`` and one port."""

    def __init__(self, root, addresses):
        self.root = root
        self.addresses = addresses
        self.port = free_port()
        os.makedirs(root, exist_ok=True)
        self.host_key = os.path.join(root, 'host_key')
        self.client_key = os.path.join(root, 'client_key')
        for key in (self.host_key, self.client_key):
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
        authorized = os.path.join(root, 'authorized_keys')
        with open(self.client_key + '.pub') as source, open(authorized, 'w') as target:
            target.write(source.read())
        self.config = os.path.join(root, 'sshd_config')
        with open(self.config, 'w') as handle:
            handle.write(''.join('ListenAddress %s:%d\n' % (address, self.port) for address in addresses))
            handle.write('HostKey %s\nAuthorizedKeysFile %s\nPidFile %s\n' % (
                self.host_key, authorized, os.path.join(root, 'sshd.pid')))
            handle.write('PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n'
                         'PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nLogLevel ERROR\n'
                         'Subsystem sftp /usr/lib/openssh/sftp-server\n')
            # Each address stands for a host of its own: keys a role lets into one are not let into the others.
            handle.write(''.join('Match LocalAddress %s\n    AuthorizedKeysFile %s %s\n' % (
                address, authorized, self.authorized_keys(address)) for address in addresses))
        os.makedirs('/run/sshd', mode=0o755, exist_ok=True)
        self.process = subprocess.Popen(['/usr/sbin/sshd', '-D', '-e', '-f', self.config],
                                        stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, 'sshd.log'), 'w'))
        deadline = time.monotonic() + 15
        for address in addresses:
            while True:
                try:
                    socket.create_connection((address, self.port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError('sshd did not start: %s' % open(os.path.join(root, 'sshd.log')).read())
                    time.sleep(0.1)

    def authorized_keys(self, address):
        """The authorized keys file of root on the host at ``address``, beside the controller's key."""
        return os.path.join(self.root, 'authorized_keys-' + address)

    @property
    def ssh_args(self):
        """SSH options for a client of this sshd (rsync's --rsh from one fleet host to another)."""
        return '-i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR' % self.client_key

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


class Fleet:
    """An inventory of hosts reached through an Sshd, and ansible-playbook runs against it."""

    def __init__(self, root, sshd, collections_root):
        self.root = root
        self.sshd = sshd
        self.collections_root = collections_root
        self.control_dir = os.path.join(root, 'cp')
        os.makedirs(self.control_dir, exist_ok=True)
        self.hosts = {}
        self.groups = {}

    def add_host(self, name, address, group, **variables):
        variables.update(ansible_host=address)
        self.hosts[name] = variables
        self.groups.setdefault(group, []).append(name)

    def add_orthanc(self, name, address, server, group='orthanc', **variables):
        """An Orthanc host whose roles drive ``server`` with its own commands (the restore and verify
        roles take the backup role's settings)."""
        for key, value in (('config', server.config), ('repository', os.path.join(self.root, name, 'repository')),
                           ('service_manager', 'command'), ('stop_command', server.stop_command),
                           ('start_command', server.start_command),
                           # The backup host's own key, let into this host's own authorized keys file.
                           ('repository_ssh_key', os.path.join(self.root, 'backup-host-ssh', 'orthanc_ops_repository')),
                           ('authorized_keys', self.sshd.authorized_keys(address)),
                           ('ssh_host_key', self.sshd.host_key + '.pub')):
            variables.setdefault('orthanc_backup_' + key, value)
        self.add_host(name, address, group, **variables)

    def write_inventory(self):
        inventory = {'all': {
            'vars': {'ansible_port': self.sshd.port, 'ansible_user': 'root',
                     'ansible_ssh_private_key_file': self.sshd.client_key,
                     'ansible_ssh_common_args': '-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR',
                     'ansible_python_interpreter': '/usr/bin/python3'},
            'children': dict((group, {'hosts': dict((name, self.hosts[name]) for name in names)})
                             for group, names in self.groups.items())}}
        path = os.path.join(self.root, 'inventory.yml')
        with open(path, 'w') as handle:
            json.dump(inventory, handle, indent=1)
        return path

    def env(self):
        env = dict(os.environ)
        env.update(ANSIBLE_COLLECTIONS_PATH=self.collections_root, ANSIBLE_NOCOLOR='1',
                   ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_RETRY_FILES_ENABLED='False',
                   ANSIBLE_SSH_CONTROL_PATH_DIR=self.control_dir, ANSIBLE_FORKS='10',
                   ANSIBLE_LOCAL_TEMP=os.path.join(self.root, '.ansible-tmp'),
                   ORTHANC_OPS_BACKUP_KEY_FILE=os.path.join(self.root, 'backup.key'))
        return env

    def write_vars(self, extra_vars):
        path = os.path.join(self.root, 'vars-%d.json' % time.monotonic_ns())
        with open(path, 'w') as handle:
            json.dump(extra_vars, handle)
        return path

    def run_playbook(self, name, extra_vars, timeout=900, check=False):
        """Run a playbook of the collection by FQCN over SSH: (exit code, everything printed, seconds)."""
        ansible_playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
        command = [ansible_playbook, '-i', self.write_inventory(), 'orthanc_ops.backup.' + name,
                   '-e', '@' + self.write_vars(extra_vars)] + (['--check'] if check else [])
        started = time.monotonic()
        process = subprocess.run(command, env=self.env(), cwd=self.root, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        with open(os.path.join(self.root, 'run-%s-%d.log' % (name, time.monotonic_ns())), 'w') as handle:
            handle.write(process.stdout)
        return process.returncode, process.stdout, time.monotonic() - started

    def close(self):
        """Stop Ansible's ControlPersist masters, then sshd."""
        for control in glob.glob(os.path.join(self.control_dir, '*')):
            subprocess.run(['ssh', '-O', 'exit', '-o', 'ControlPath=' + control, 'fleet'],
                           capture_output=True, check=False, timeout=10)
        self.sshd.stop()
