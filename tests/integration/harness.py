# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Real Orthanc servers, synthetic DICOM and real ansible-playbook runs, for the tests and bench/."""

from __future__ import annotations

import base64
import fcntl
import glob
import gzip
import hashlib
import http.client
import io
import json
import os
import random
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._proc import process_tree, runs_orthanc
from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

ORTHANC = '/usr/sbin/Orthanc'
USER, PASSWORD = 'admin', 'orthanc-test-secret'
HERE = os.path.dirname(os.path.abspath(__file__))


# Below Linux's ephemeral range (32768-60999), so that no outgoing connection
# takes a port between our check and the server's bind, and never handed out
# twice: two quick binds to port 0 can return the same port. Each pytest-xdist
# worker draws from its own slice, so that two workers never pick the same port.
_PORTS_HANDED_OUT = set()
_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
_WORKER = int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0')[2:])
_PORTS = range(20000 + _WORKER * 12000 // _WORKERS, 20000 + (_WORKER + 1) * 12000 // _WORKERS)


def free_port():
    while True:
        port = random.choice(_PORTS)
        if port in _PORTS_HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(('', port))
            except OSError:
                continue
        _PORTS_HANDED_OUT.add(port)
        return port


def make_instance(patient, study, series, number, pixels=64, study_date='20260101'):
    """One small Secondary Capture instance as DICOM bytes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = 'P%04d' % patient
    ds.PatientName = 'Test^Patient%d' % patient
    ds.StudyInstanceUID = '1.2.826.0.1.3680043.10.1234.%d.%d' % (patient, study)
    ds.SeriesInstanceUID = '1.2.826.0.1.3680043.10.1234.%d.%d.%d' % (patient, study, series)
    ds.StudyDate = study_date
    ds.Modality = 'OT'
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = pixels
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME2'
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = os.urandom(pixels * pixels)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def seed(orthanc, count, pixels=96, threads=4):
    """Upload ``count`` synthetic instances (200 per patient) with a few parallel clients."""
    def upload(number):
        orthanc.api('POST', '/instances', make_instance(number // 200, number // 50 % 4, number // 10 % 5, number, pixels))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(upload, range(count)))


def make_instances(patients=3, studies=2, series=2, instances=2, pixels=64, study_date='20260101', first_patient=0):
    return [make_instance(p, st, se, n, pixels, study_date) for p in range(first_patient, first_patient + patients)
            for st in range(studies) for se in range(series) for n in range(instances)]


class Orthanc:
    """A real Orthanc with its own folders and ports, started by start-stop-daemon."""

    def __init__(self, root, layout='file', compression=False, relative=False, auth=True, separate_index=False,
                 database=None, settings=None, environment=None):
        self.root = root
        self.environment = environment or {}
        os.makedirs(root, exist_ok=True)
        self.port, self.dicom_port = free_port(), (settings or {}).get('DicomPort') or free_port()
        self.pidfile = os.path.join(root, 'orthanc.pid')
        self.logdir = os.path.join(root, 'logs')
        os.makedirs(self.logdir, exist_ok=True)
        self.auth = auth
        storage = 'OrthancStorage' if relative else os.path.join(root, 'storage')
        extra, settings = settings or {}, {
            'Name': 'test-%d' % self.port,
            'HttpPort': self.port,
            'DicomPort': self.dicom_port,
            'StorageDirectory': storage,
            'StorageCompression': compression,
            'RemoteAccessAllowed': False,
            'AuthenticationEnabled': auth,
            'RegisteredUsers': {USER: PASSWORD} if auth else {},
            'Plugins': [],
        }
        if database:
            settings.update(database.orthanc_settings())
        settings.update(extra)
        if separate_index:
            settings['IndexDirectory'] = 'OrthancIndex' if relative else os.path.join(root, 'index')
        if layout == 'folder':
            self.config = os.path.join(root, 'config')
            os.makedirs(self.config, exist_ok=True)
            network = dict((k, settings.pop(k)) for k in ('HttpPort', 'DicomPort', 'RemoteAccessAllowed'))
            security = dict((k, settings.pop(k)) for k in ('AuthenticationEnabled', 'RegisteredUsers'))
            self._write(os.path.join(self.config, 'orthanc.json'), settings, '// main settings\n/* storage */\n')
            self._write(os.path.join(self.config, 'network.json'), network, '// ports, from a second file\n')
            self._write(os.path.join(self.config, 'security.json'), security, '/* users */\n')
            base = self.config
        else:
            self.config = os.path.join(root, 'orthanc.json')
            self._write(self.config, settings, '// one commented file\n')
            base = root
        self.storage_dir = os.path.normpath(os.path.join(base, storage))
        self.index_dir = os.path.normpath(os.path.join(base, settings.get('IndexDirectory', storage)))
        self.url = 'http://127.0.0.1:%d' % self.port

    @staticmethod
    def _write(path, values, comment):
        with open(path, 'w') as handle:
            handle.write(comment + json.dumps(values, indent=2) + '\n')

    @property
    def start_command(self):
        variables = ''.join('%s=%s ' % (name, shlex.quote(value)) for name, value in sorted(self.environment.items()))
        return ('%sstart-stop-daemon --start --quiet --background --make-pidfile --pidfile %s --exec %s -- '
                '--logdir=%s %s' % ('env ' + variables if variables else '', self.pidfile, ORTHANC, self.logdir,
                                    self.config))

    @property
    def stop_command(self):
        # No --remove-pidfile: a stop still running when its module is killed would remove the pidfile
        # the watcher's restart has just written, and the next stop would find no Orthanc to stop.
        return 'start-stop-daemon --stop --quiet --retry TERM/30/KILL/5 --pidfile %s' % self.pidfile

    def module_params(self, **extra):
        params = {'config': self.config, 'service_manager': 'command',
                  'stop_command': self.stop_command, 'start_command': self.start_command,
                  'start_timeout': 30, 'stop_timeout': 30}
        params.update(extra)
        return params

    def start(self):
        subprocess.run(self.start_command, shell=True, check=True)
        self.wait()

    def wait(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return
            time.sleep(0.05)
        raise AssertionError('Orthanc on %d did not start; log: %s' % (self.port, self.log_tail()))

    def stop(self):
        subprocess.run(self.stop_command, shell=True, check=False)

    def pid(self):
        with open(self.pidfile) as handle:
            return int(handle.read())

    def answers(self):
        try:
            self.api('GET', '/system', timeout=2)
            return True
        except (OSError, http.client.HTTPException):
            # An Orthanc stopping while it answers cuts the response short (IncompleteRead).
            return False

    def log_tail(self):
        logs = sorted(os.listdir(self.logdir))
        if not logs:
            return ''
        with open(os.path.join(self.logdir, logs[-1]), errors='replace') as handle:
            return handle.read()[-2000:]

    def api(self, method, path, data=None, timeout=30, raw=False):
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if self.auth:
            token = base64.b64encode(('%s:%s' % (USER, PASSWORD)).encode()).decode()
            request.add_header('Authorization', 'Basic ' + token)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return body if raw else json.loads(body or b'null')

    def upload(self, instances):
        return [self.api('POST', '/instances', data)['ID'] for data in instances]

    def instances(self):
        return sorted(self.api('GET', '/instances'))

    def md5s(self):
        """{instance id: MD5 of its DICOM attachment} as Orthanc reports them."""
        return dict((iid, self.api('GET', '/instances/%s/attachments/dicom/md5' % iid, raw=True).decode())
                    for iid in self.instances())

    def statistics(self):
        return self.api('GET', '/statistics')

    def wipe(self):
        """Stop Orthanc and remove its storage and index: the disaster a restore repairs."""
        self.stop()
        shutil.rmtree(self.storage_dir, ignore_errors=True)
        shutil.rmtree(self.index_dir, ignore_errors=True)


# A local image of Debian's Orthanc packages (no registry is reachable): built once per machine.
CONTAINER_IMAGE = 'localhost/orthanc-ops-test:bookworm-2'
CONTAINERS_CONF = """[containers]
netns = "host"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


@contextmanager
def machine_lock(name):
    """Held by one of the suite's parallel workers at a time: for what the machine sets up once."""
    with open(os.path.join(tempfile.gettempdir(), 'orthanc-ops-%s.lock' % name), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# Debian releases whose Orthanc the tests run in containers: (Orthanc version, what the image holds beyond Orthanc
# and its plugins, mmdebstrap options). testing's Release files on the mirror are past their Valid-Until date.
RELEASES = {
    'bookworm': ('1.10', ',postgresql', []),     # PostgreSQL for a database in a second container
    'trixie': ('1.12', '', []),
    'forky': ('1.13', '', ['--aptopt=Acquire::Check-Valid-Until "false"']),
}


def container_image(release='bookworm'):
    """Build the test image of a Debian ``release`` (see RELEASES) unless the machine has it: a minbase system
    with Orthanc and its plugins."""
    image = CONTAINER_IMAGE if release == 'bookworm' else 'localhost/orthanc-ops-test:%s-1' % release
    dummy, extra, options = RELEASES[release]
    with machine_lock('image'):
        if not os.path.exists('/etc/containers/containers.conf'):
            # What the admin of such a host sets up: host networking, runc, cgroupfs, limits it may keep.
            os.makedirs('/etc/containers', exist_ok=True)
            with open('/etc/containers/containers.conf', 'w') as handle:
                handle.write(CONTAINERS_CONF)
        if subprocess.run(['podman', 'image', 'exists', image], check=False).returncode != 0:
            rootfs = subprocess.Popen(['mmdebstrap', '--quiet', '--variant=minbase'] + options + [
                '--include=orthanc,orthanc-postgresql,orthanc-mysql' + extra, release, '-'], stdout=subprocess.PIPE)
            imported = subprocess.run(['podman', 'import', '--quiet', '-', image], stdin=rootfs.stdout, check=False,
                                      stdout=subprocess.DEVNULL)
            rootfs.stdout.close()
            # A failed mmdebstrap still feeds the import an empty stream: that image must not stay.
            if rootfs.wait() != 0 or imported.returncode != 0:
                subprocess.run(['podman', 'rmi', '--force', image], check=False, capture_output=True)
                raise AssertionError('the %s image could not be built (mmdebstrap %d, podman import %d)'
                                     % (release, rootfs.returncode, imported.returncode))
    return image


class ContainerOrthanc(Orthanc):
    """A real Orthanc in a Podman container: configuration on a read-only bind mount, its storage folder
    and HTTP port given by the container's environment (${NAME} in the configuration), the storage on a
    bind mount unless ``volume`` is false; on the host's network, or on ``network`` with its HTTP port
    published and ``hosts`` ({name: address}) in its /etc/hosts, as Compose names its services. With
    ``generated``, an entrypoint writes the configuration to /tmp/orthanc.json and runs that, as
    orthancteam/orthanc's does; ``command``, another command line."""

    def __init__(self, root, image, settings=None, volume=True, environment=None, network=None, hosts=None,
                 generated=False, command=None):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.name = 'orthanc-ops-%s' % base64.b32encode(os.urandom(5)).decode().lower()
        self.port, self.dicom_port = free_port(), free_port()
        self.auth, self.environment = True, {}
        config_dir = os.path.join(root, 'config')
        os.makedirs(config_dir, exist_ok=True)
        values = {'Name': self.name, 'DicomPort': self.dicom_port, 'StorageDirectory': '${ORTHANC_STORAGE}',
                  'RemoteAccessAllowed': False, 'AuthenticationEnabled': True,
                  'RegisteredUsers': {USER: PASSWORD}, 'Plugins': []}
        values.update(settings or {})
        text = json.dumps(values, indent=2)
        # A number from the environment: the text is substituted before it is parsed, as Orthanc does.
        text = text.replace('{\n', '{\n  "HttpPort": ${ORTHANC_HTTP_PORT},\n', 1)
        with open(os.path.join(config_dir, 'orthanc.json'), 'w') as handle:
            handle.write('// mounted read-only at /etc/orthanc\n' + text + '\n')
        self.config = None    # what the container runs
        self.storage_dir = self.index_dir = os.path.join(root, 'data')
        os.makedirs(self.storage_dir, exist_ok=True)
        self.url = 'http://127.0.0.1:%d' % self.port
        self.logdir = None
        create = ['podman', 'create', '--name', self.name,
                  '-e', 'ORTHANC_STORAGE=/var/lib/orthanc/db', '-e', 'ORTHANC_HTTP_PORT=%d' % self.port,
                  '-v', '%s:/etc/orthanc:ro' % config_dir]
        if volume:
            create += ['-v', '%s:/var/lib/orthanc/db' % self.storage_dir]
        if network:
            create += ['--network', network, '--publish', '127.0.0.1:%d:%d' % (self.port, self.port)]
        for name, address in sorted((hosts or {}).items()):
            create += ['--add-host', '%s:%s' % (name, address)]
        for name, value in sorted((environment or {}).items()):
            create += ['-e', '%s=%s' % (name, value)]
        run = ['/bin/sh', '-c', 'cp /etc/orthanc/orthanc.json /tmp/orthanc.json && exec /usr/sbin/Orthanc '
               '/tmp/orthanc.json'] if generated else command or ['/usr/sbin/Orthanc', '/etc/orthanc/']
        subprocess.run(create + [image] + run, check=True, capture_output=True)

    def module_params(self, **extra):
        params = {'service_name': self.name, 'start_timeout': 30, 'stop_timeout': 30}
        params.update(extra)
        return params

    def start(self):
        subprocess.run(['podman', 'start', self.name], check=True, capture_output=True)
        self.wait()

    def stop(self):
        subprocess.run(['podman', 'stop', '--time', '10', self.name], check=False, capture_output=True)

    def remove(self):
        subprocess.run(['podman', 'rm', '--force', self.name], check=False, capture_output=True)

    def pid(self):
        return int(subprocess.run(['podman', 'inspect', '--format', '{{.State.Pid}}', self.name], check=True,
                                  capture_output=True, text=True).stdout)

    def log_tail(self):
        return subprocess.run(['podman', 'logs', '--tail', '20', self.name], capture_output=True, text=True,
                              check=False).stderr

    def wipe(self):
        """Stop the container and empty its storage folder (the volume stays)."""
        self.stop()
        for name in os.listdir(self.storage_dir):
            path = os.path.join(self.storage_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


class ContainerPostgres:
    """A PostgreSQL server in its own container (the image's PostgreSQL 15), on a port of its own, with an
    Orthanc database owned by a user with a password: what a Compose file puts beside Orthanc. On the
    host's network, or on ``network`` (then nothing is published: the host has no name for it)."""

    def __init__(self, image, network=None):
        self.name = 'orthanc-ops-pg-%s' % base64.b32encode(os.urandom(5)).decode().lower()
        self.port = free_port()
        self.user = self.database = 'orthanc'
        self.password = 'pg-' + base64.b32encode(os.urandom(10)).decode().lower()
        script = ('/usr/lib/postgresql/15/bin/initdb -D /tmp/pgdata -U postgres --auth-local=trust '
                  '--auth-host=scram-sha-256 >/dev/null && echo "host all all all scram-sha-256" >> '
                  '/tmp/pgdata/pg_hba.conf && exec /usr/lib/postgresql/15/bin/postgres -D /tmp/pgdata '
                  "-p %d -k /tmp -c listen_addresses='%s'" % (self.port, '*' if network else '127.0.0.1'))
        subprocess.run(['podman', 'run', '--detach', '--name', self.name, '--user', 'postgres']
                       + (['--network', network] if network else []) + [image, '/bin/sh', '-c', script],
                       check=True, capture_output=True)
        self.address = subprocess.run(
            ['podman', 'inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', self.name],
            check=True, capture_output=True, text=True).stdout.strip() or '127.0.0.1'
        deadline = time.monotonic() + 60
        while subprocess.run(['podman', 'exec', self.name, 'pg_isready', '-q', '-h', '/tmp', '-p', str(self.port)],
                             check=False).returncode:
            assert time.monotonic() < deadline, 'PostgreSQL did not start in its container'
            time.sleep(0.2)
        self.admin("CREATE ROLE orthanc LOGIN CREATEDB PASSWORD '%s'" % self.password)
        self.recreate()

    def admin(self, statement):
        subprocess.run(['podman', 'exec', self.name, 'psql', '-h', '/tmp', '-p', str(self.port), '-U', 'postgres',
                        '-v', 'ON_ERROR_STOP=1', '-qc', statement], check=True, capture_output=True)

    def recreate(self):
        """An empty Orthanc database (again)."""
        self.admin('DROP DATABASE IF EXISTS orthanc WITH (FORCE)')
        self.admin('CREATE DATABASE orthanc OWNER orthanc')

    def orthanc_settings(self, host='127.0.0.1'):
        """The configuration of the Orthanc container: the password from its environment."""
        return {'Plugins': [PLUGINS + 'libOrthancPostgreSQLIndex.so'], 'PostgreSQL': {
            'EnableIndex': True, 'EnableStorage': False, 'Host': host, 'Port': self.port,
            'Database': self.database, 'Username': self.user, 'Password': '${ORTHANC_DB_PASSWORD}', 'Lock': True}}

    def stop(self):
        subprocess.run(['podman', 'stop', '--time', '10', self.name], check=False, capture_output=True)

    def remove(self):
        subprocess.run(['podman', 'rm', '--force', self.name], check=False, capture_output=True)


def descendants(pid):
    """PIDs of every process below ``pid`` (its children, theirs, ...), from /proc."""
    return process_tree(pid)[1:]


def descendant_pids(process, mention):
    """PIDs of the processes below the Popen ``process`` whose command line holds ``mention`` (not another
    test's: the suite runs in parallel)."""
    found = []
    for pid in descendants(process.pid):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                if mention.encode() in handle.read().replace(b'\0', b' '):
                    found.append(pid)
        except OSError:
            continue
    return found


def module_pids(process, module):
    """PIDs of the module ``module`` that the ansible-playbook ``process`` runs."""
    return descendant_pids(process, 'AnsiballZ_%s' % module)


def sandbox_pids(folder):
    """Orthanc processes whose configuration is a throwaway Orthanc's (orthanc_recover, orthanc_drill) below
    ``folder`` (a test's own: other tests' sandboxes may run meanwhile)."""
    found = []
    for pid in [int(name) for name in os.listdir('/proc') if name.isdigit() and runs_orthanc(int(name))]:
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                command = handle.read()
        except OSError:
            continue
        if b'.orthanc-sandbox-' in command and os.path.join(folder, '').encode() in command:
            found.append(pid)
    return found


def watcher_logs(mention):
    """The watcher logs (in their private folders of the temporary folder) that mention ``mention``."""
    found = []
    for path in glob.glob(os.path.join(tempfile.gettempdir(), 'orthanc-ops-watch-*', 'watcher.log')):
        with open(path) as handle:
            if mention in handle.read():
                found.append(path)
    return found


def module_interpreter(process, module):
    """The Python process that runs ``module`` (not the shell that started it), or None yet."""
    for pid in module_pids(process, module):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                if b'python' in os.path.basename(handle.read().split(b'\0')[0]):
                    return pid
        except OSError:
            continue
    return None


def kill_module(process, module):
    """SIGKILL the module ``module`` that the ansible-playbook ``process`` runs."""
    killed = module_pids(process, module)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    return killed


def kill_while_stopped(ansible, orthanc, params, module='orthanc_backup'):
    """Run ``module``, SIGKILL it once Orthanc stops answering, wait for ansible-playbook; its Popen."""
    process, dummy = ansible.start(module, params)
    deadline = time.monotonic() + 60
    while orthanc.answers():
        assert time.monotonic() < deadline and process.poll() is None, 'the module never stopped Orthanc'
        time.sleep(0.02)
    assert kill_module(process, module)
    process.communicate(timeout=120)
    return process


def complete_backups(repository, instance='pacs'):
    folder = os.path.join(repository, instance)
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder) if not name.startswith('.') and not name.endswith('.partial'))


def partials(repository, instance='pacs'):
    folder = os.path.join(repository, instance)
    return sorted(name for name in os.listdir(folder) if name.endswith('.partial')) if os.path.isdir(folder) else []


def read_manifest(backup_path):
    """A backup's manifest.json as written, without its listing of files."""
    with open(os.path.join(backup_path, _manifest.NAME)) as handle:
        return json.load(handle)


def write_manifest(backup_path, values):
    with open(os.path.join(backup_path, _manifest.NAME), 'w') as handle:
        json.dump(values, handle)


def listed_files(backup_path):
    """{path: {'size', 'md5'}} of every file a backup's listings hold (format 2 or 3), read without the
    module's checks: the JSON lines, and the storage listing's records (uuid, MD5, little-endian size)."""
    with gzip.open(os.path.join(backup_path, _manifest.LISTING)) as listing:
        files = dict((relative, {'size': size, 'md5': md5}) for relative, size, md5 in map(json.loads, listing))
    records = os.path.join(backup_path, _manifest.STORAGE_LISTING)
    if os.path.exists(records):
        with gzip.open(records) as listing:
            for uuid, md5, size in struct.iter_unpack('<16s16sQ', listing.read()):
                uuid = uuid.hex()
                uuid = '-'.join((uuid[:8], uuid[8:12], uuid[12:16], uuid[16:20], uuid[20:]))
                files['storage/%s/%s/%s' % (uuid[:2], uuid[2:4], uuid)] = {'size': size, 'md5': md5.hex()}
    return files


def _remove_listings(backup_path, values):
    """Remove a backup's manifest and listings; its header (``values`` without what they describe)."""
    for name in (_manifest.NAME, _manifest.LISTING, _manifest.STORAGE_LISTING):
        if os.path.exists(os.path.join(backup_path, name)):
            os.unlink(os.path.join(backup_path, name))
    described = ('files', 'bytes', 'listing', 'storage_listing')
    return dict((key, value) for key, value in values.items() if key not in described)


def rewrite_listing(backup_path, change):
    """``change`` the {path: {'size', 'md5'}} a backup lists, and write the listings back with a manifest that
    names them (size, MD5, count): what an attacker who can write the whole backup folder does."""
    files = listed_files(backup_path)
    change(files)
    header = _remove_listings(backup_path, read_manifest(backup_path))
    _manifest.write(backup_path, header, [(relative, files[relative]['size'], files[relative]['md5'])
                                          for relative in sorted(files, key=_manifest.sort_key)])


def to_format_1(backup_path):
    """Turn a backup into what version 0.1.0 wrote: its files listed inside manifest.json (format 1)."""
    files = listed_files(backup_path)
    values = _remove_listings(backup_path, read_manifest(backup_path))
    values.update(format=1, files=files)
    write_manifest(backup_path, values)


def to_format_2(backup_path):
    """Turn a backup into what versions 0.2.x wrote: every file a JSON line of one gzip listing (format 2)."""
    files = listed_files(backup_path)
    values = _remove_listings(backup_path, read_manifest(backup_path))
    lines = ''.join(json.dumps([relative, files[relative]['size'], files[relative]['md5']], separators=(',', ':'))
                    + '\n' for relative in sorted(files, key=_manifest.sort_key))
    data = gzip.compress(lines.encode())
    with open(os.path.join(backup_path, _manifest.LISTING), 'wb') as handle:
        handle.write(data)
    values.update(format=2, files=len(files), bytes=sum(entry['size'] for entry in files.values()),
                  listing={'name': _manifest.LISTING, 'size': len(data), 'md5': hashlib.md5(data).hexdigest()})
    write_manifest(backup_path, values)


PLUGINS = '/usr/share/orthanc/plugins/'


def run_admin(argv):
    """The output of a database administrator's statement (the last argument); a failure shows the server's words."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, '%s: %s failed: %s' % (argv[0], argv[-1], result.stderr.strip())
    return result.stdout.strip()


class PostgresDatabase:
    """A database and its owner (LOGIN CREATEDB, not a superuser) on the local PostgreSQL server."""

    plugin = 'PostgreSQL'

    def __init__(self, name, enable_storage=False):
        self.name = self.user = name
        self.password = 'pg-' + base64.b32encode(os.urandom(10)).decode().lower()
        self.enable_storage = enable_storage
        self.admin('CREATE ROLE %s LOGIN CREATEDB PASSWORD \'%s\'' % (self.user, self.password))
        self.admin('CREATE DATABASE %s OWNER %s' % (self.name, self.user))

    @staticmethod
    def admin(statement, database='postgres'):
        return run_admin(['psql', '-h', '127.0.0.1', '-U', 'postgres', '-d', database, '-v', 'ON_ERROR_STOP=1',
                          '-qtAc', statement])

    def databases(self):
        return self.admin("SELECT datname FROM pg_database WHERE datname LIKE '%s%%' ORDER BY 1" % self.name).split()

    def recreate(self):
        """An empty Orthanc database again: the disaster a restore repairs."""
        self.admin('DROP DATABASE %s' % self.name)
        self.admin('CREATE DATABASE %s OWNER %s' % (self.name, self.user))

    def drop(self):
        for name in self.databases():
            self.admin('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
        self.admin('DROP ROLE IF EXISTS %s' % self.user)

    def orthanc_settings(self):
        plugins = [PLUGINS + 'libOrthancPostgreSQLIndex.so']
        if self.enable_storage:
            plugins.append(PLUGINS + 'libOrthancPostgreSQLStorage.so')
        return {'Plugins': plugins, 'PostgreSQL': {
            'EnableIndex': True, 'EnableStorage': self.enable_storage, 'Host': '127.0.0.1', 'Port': 5432,
            'Database': self.name, 'Username': self.user, 'Password': self.password, 'Lock': True}}


class MysqlDatabase:
    """A database and its user (all rights on databases named with it as prefix, nothing more) on MariaDB."""

    plugin = 'MySQL'

    def __init__(self, name, enable_storage=False):
        self.name = self.user = name
        self.password = 'my-' + base64.b32encode(os.urandom(10)).decode().lower()
        self.enable_storage = enable_storage
        self.admin("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'" % (self.user, self.password))
        self.admin("GRANT ALL ON `%s%%`.* TO '%s'@'%%'" % (self.name.replace('_', '\\_'), self.user))
        self.admin('CREATE DATABASE %s' % self.name)

    @staticmethod
    def admin(statement):
        return run_admin(['mariadb', '-h', '127.0.0.1', '-u', 'root', '-N', '-B', '-e', statement])

    def databases(self):
        return sorted(self.admin("SHOW DATABASES LIKE '%s%%'" % self.name.replace('_', '\\_')).split())

    def recreate(self):
        self.admin('DROP DATABASE %s' % self.name)
        self.admin('CREATE DATABASE %s' % self.name)

    def drop(self):
        for name in self.databases():
            self.admin('DROP DATABASE IF EXISTS `%s`' % name)
        self.admin("DROP USER IF EXISTS '%s'@'%%'" % self.user)

    def orthanc_settings(self):
        plugins = [PLUGINS + 'libOrthancMySQLIndex.so']
        if self.enable_storage:
            plugins.append(PLUGINS + 'libOrthancMySQLStorage.so')
        return {'Plugins': plugins, 'MySQL': {
            'EnableIndex': True, 'EnableStorage': self.enable_storage, 'Host': '127.0.0.1', 'Port': 3306,
            'UnixSocket': '', 'Database': self.name, 'Username': self.user, 'Password': self.password,
            'Lock': True}}


# Index (and storage) in a database server: the layouts the database tests run on.
LAYOUTS = {
    'postgresql-index': (PostgresDatabase, False),
    'postgresql-index-and-storage': (PostgresDatabase, True),
    'mysql-index': (MysqlDatabase, False),
    'mysql-index-and-storage': (MysqlDatabase, True),
}
SERVICES = {PostgresDatabase: 'postgresql', MysqlDatabase: 'mariadb'}


def server_answers(kind):
    command = {PostgresDatabase: ['pg_isready', '-h', '127.0.0.1', '-p', '5432'],
               MysqlDatabase: ['mariadb-admin', '-h', '127.0.0.1', '-u', 'root', 'ping']}[kind]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


class Ansible:
    """Runs one module of the collection through a real ansible-playbook run on localhost."""

    def __init__(self, collections_root, workdir):
        self.collections_root = collections_root
        self.workdir = workdir

    def env(self):
        env = dict(os.environ)
        env.update(ANSIBLE_COLLECTIONS_PATH=self.collections_root, ANSIBLE_NOCOLOR='1',
                   ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_RETRY_FILES_ENABLED='False',
                   ANSIBLE_LOCAL_TEMP=os.path.join(self.workdir, '.ansible-tmp'),
                   # The roles' backup key file on the controller: one per test, made by the backup role.
                   ORTHANC_OPS_BACKUP_KEY_FILE=os.path.join(self.workdir, 'backup.key'))
        return env

    def write_playbook(self, module, params, check=False, environment=None):
        out = os.path.join(self.workdir, 'result-%d.json' % time.monotonic_ns())
        playbook = [{
            'name': 'Run %s' % module,
            'hosts': 'localhost',
            'gather_facts': False,
            'tasks': [{'block': [{'name': 'Module under test', 'orthanc_ops.backup.%s' % module: params,
                                  'register': 'result', 'check_mode': check, 'environment': environment or {}}],
                       'always': [{'name': 'Save the result', 'ansible.builtin.copy': {
                           'content': '{{ result | to_json }}', 'dest': out, 'mode': '0600'},
                           'check_mode': False}]}],
        }]
        path = os.path.join(self.workdir, 'playbook-%d.yml' % time.monotonic_ns())
        with open(path, 'w') as handle:
            json.dump(playbook, handle)
        return path, out

    def command(self, playbook, verbosity=0):
        ansible_playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
        command = [ansible_playbook, '-i', 'localhost,', '-c', 'local',
                   '-e', 'ansible_python_interpreter=/usr/bin/python3', playbook]
        if verbosity:
            command.append('-' + 'v' * verbosity)
        return command

    def start(self, module, params, check=False, verbosity=0, environment=None, umask=None):
        """Start the run in the background: (Popen, path of the result file)."""
        playbook, out = self.write_playbook(module, params, check, environment)
        process = subprocess.Popen(self.command(playbook, verbosity), env=self.env(), cwd=self.workdir,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   preexec_fn=None if umask is None else lambda: os.umask(umask))
        return process, out

    def run(self, module, params, check=False, verbosity=0, timeout=600, environment=None, umask=None):
        """Run and return (module result, exit code, everything printed); ``environment`` for the module,
        ``umask`` for the whole run."""
        process, out = self.start(module, params, check, verbosity, environment, umask)
        output, dummy = process.communicate(timeout=timeout)
        result = self.result(out)
        return result, process.returncode, output

    def run_playbook(self, name, extra_vars, timeout=600, check=False):
        """Run one of the collection's playbooks by its FQCN on localhost: (exit code, everything printed)."""
        path = os.path.join(self.workdir, 'vars-%d.json' % time.monotonic_ns())
        with open(path, 'w') as handle:
            json.dump(extra_vars, handle)
        command = self.command('orthanc_ops.backup.' + name) + ['-e', '@' + path] + (['--check'] if check else [])
        process = subprocess.run(command, env=self.env(), cwd=self.workdir, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        return process.returncode, process.stdout

    def run_tasks(self, tasks, timeout=600):
        """Run ``tasks`` in a play on localhost: (exit code, everything printed)."""
        path = os.path.join(self.workdir, 'tasks-%d.yml' % time.monotonic_ns())
        with open(path, 'w') as handle:
            json.dump([{'name': 'Tasks under test', 'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}],
                      handle)
        process = subprocess.run(self.command(path), env=self.env(), cwd=self.workdir, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        return process.returncode, process.stdout

    @staticmethod
    def result(out):
        with open(out) as handle:
            return json.loads(handle.read())


def wait_for_port(port, process, name):
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError('%s did not start on port %d' % (name, port))
            time.sleep(0.1)


class RestServer:
    """A restic REST server: ``rclone serve restic`` on a folder; ``bwlimit`` slows its transfers, and
    ``append_only`` refuses every deletion but of locks. Two servers on one ``root`` serve the same repository."""

    def __init__(self, root, bwlimit=None, append_only=False):
        self.folder = os.path.join(root, 'rest-server')
        os.makedirs(self.folder, exist_ok=True)
        self.port = free_port()
        self.append_only = append_only
        self.params = {'offsite_repository': 'rest:http://127.0.0.1:%d/pacs/' % self.port}
        self.start(bwlimit)

    def start(self, bwlimit=None):
        command = ['rclone', 'serve', 'restic', '--addr', '127.0.0.1:%d' % self.port, self.folder] + (
            ['--append-only'] if self.append_only else [])
        self.process = subprocess.Popen(command + (['--bwlimit', bwlimit] if bwlimit else []),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process, 'rclone serve restic')

    def contents(self):
        return local_contents(self.folder)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def local_contents(folder):
    """(path, bytes) of every file below ``folder``."""
    for parent, dummy, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, 'rb') as handle:
                yield path, handle.read()


@contextmanager
def mounted(path, *arguments):
    """``mount arguments... path`` (a folder made for it) for the body of the ``with``, unmounted afterwards."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(['mount'] + list(arguments) + [path], check=True)
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', path], check=False)


def read_metrics(folder, kind, instance='pacs'):
    """{name: value} of the node_exporter textfile of ``kind`` for ``instance``, parsed by prometheus_client;
    every sample must carry the instance as its only label."""
    with open(os.path.join(folder, 'orthanc_%s_%s.prom' % (kind, instance))) as handle:
        text = handle.read()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels == {'orthanc_instance': instance}, sample
            found[sample.name] = sample.value
    return found


def backup_epoch(backup_id):
    """The Unix time a backup id (its UTC start, YYYYMMDDTHHMMSSZ) names."""
    return datetime.strptime(backup_id, '%Y%m%dT%H%M%SZ').replace(tzinfo=timezone.utc).timestamp()
