# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The Orthanc configuration and REST API.
    DOCUMENTATION = r'''
options:
  config:
    description:
      - The Orthanc configuration Orthanc is started with, a JSON file or a folder of C(*.json) files.
        Defaults to C(/etc/orthanc); for Orthanc in a container, to the configuration the container runs
        (its Orthanc command line; for a stopped container whose entrypoint generates the configuration, as
        C(orthancteam/orthanc) does, the C(/tmp/orthanc.json) it generated when it last ran), and a given
        path is a path inside the container.
      - Files are read as Orthanc reads them, with C(//) and C(/* */) comments; a top-level key defined
        in two files is an error, as in Orthanc. Relative paths resolve against the configuration folder.
      - C(${NAME}), C(${NAME:-default}) and C(${NAME:-'default'}) are expanded as Orthanc expands them, from
        the environment of the Orthanc process that runs the configuration (a container's environment for a
        container); when none runs, from the systemd unit's C(Environment=) and C(EnvironmentFile=), then
        from the module's own environment (a task's C(environment:)). A variable found nowhere is an error.
    type: path
  service_manager:
    description:
      - How Orthanc is deployed, stopped and started.
      - V(auto) takes a Docker or Podman container named O(service_name) when there is one, else V(systemd)
        when systemd runs, else V(sysvinit) when C(/etc/init.d/<service_name>) exists.
      - V(docker) and V(podman) act on the container O(service_name) through the engine's CLI; its data
        must be on volumes or bind mounts, which are mapped to host paths.
      - V(command) runs the module's C(stop_command) and C(start_command) with C(/bin/sh -c).
      - V(none) never stops or starts Orthanc; an operation that needs it stopped fails while it runs.
    type: str
    choices: [auto, systemd, sysvinit, command, none, docker, podman]
    default: auto
  service_name:
    description:
      - Name of the systemd unit, init script or container.
    type: str
    default: orthanc
  url:
    description:
      - URL of Orthanc's REST API.
      - Defaults to C(http://127.0.0.1:<HttpPort>) (C(https) when C(SslEnabled)) from the configuration.
    type: str
  url_username:
    description:
      - User for HTTP Basic authentication.
      - Defaults to the first user of C(RegisteredUsers) in the configuration, if any.
    type: str
  url_password:
    description:
      - Password of O(url_username). Defaults to that user's password in C(RegisteredUsers).
    type: str
  validate_certs:
    description:
      - Whether to validate the TLS certificate of O(url).
    type: bool
    default: true
'''

    # Stopping and starting Orthanc.
    SERVICE = r'''
options:
  stop_command:
    description:
      - Shell command that stops Orthanc, for O(service_manager=command).
    type: str
  start_command:
    description:
      - Shell command that starts Orthanc, for O(service_manager=command).
    type: str
  start_timeout:
    description:
      - Seconds to wait for the REST API to answer after Orthanc is started.
    type: int
    default: 60
  stop_timeout:
    description:
      - Seconds to wait, after the stop command, for Orthanc to stop answering and release its index.
    type: int
    default: 60
notes:
  - Before Orthanc is stopped, a small detached watcher process is started; if the module's process
    disappears (killed, out of memory, connection lost) before it has started Orthanc again, the
    watcher starts it and writes its log to C(watcher.log) in a private C(orthanc-ops-watch-*) folder of
    the temporary folder.
'''

    # The backup repository on the managed host.
    REPOSITORY = r'''
options:
  repository:
    description:
      - Folder of the backup repository on the managed host. Backups are in C(<repository>/<instance>/<backup_id>).
    type: path
  instance:
    description:
      - Name of this Orthanc in the repository (a folder name). Defaults to the host name.
    type: str
  backup_key:
    description:
      - Secret (at least 16 characters) that signs every backup's manifest with an HMAC-SHA256, and without
        which no backup is used. The manifest names its listings with their MD5s, and the listings every file
        with its MD5, so the signature covers the whole backup.
      - When given, only backups it signed are restored, verified, drilled, recovered from, copied, pushed,
        pulled, linked to by the next backup, counted by retention and pruned; any other folder named as a
        backup is reported in a warning and left alone. Whoever can write the repository (the Orthanc user, the
        account that receives fleet copies, a holder of the off-site password) then cannot make root use a backup
        of their own.
      - Without it, backups are neither signed nor checked and the module warns. A folder whose manifest names
        another backup id or another instance, or an id later than now, is never a backup, key or not.
      - The roles make one on the controller on their first run (O(backup_key) from Ansible Vault or an AWX
        credential is better); M(orthanc_ops.backup.orthanc_backup_verify) with O(orthanc_ops.backup.orthanc_backup_verify#module:sign=true)
        signs a backup made before.
    type: str
'''

    # The backup a module acts on (restores, drills, recoveries; others describe it in their own words).
    BACKUP = r'''
options:
  backup:
    description:
      - The backup of O(instance) in O(repository) to use, V(latest) for the newest complete backup that can be
        believed (see O(backup_key)), or a backup id (C(YYYYMMDDTHHMMSSZ)).
    type: str
    default: latest
'''

    # Database login for the PostgreSQL and MySQL/MariaDB backends.
    # The retention policy of orthanc_backup_prune and orthanc_offsite.
    RETENTION = r'''
options:
  keep_last:
    description: Number of newest backups to keep.
    type: int
    default: 0
  keep_daily:
    description: Number of days (the newest that have a backup) whose newest backup is kept.
    type: int
    default: 0
  keep_weekly:
    description: Number of ISO weeks whose newest backup is kept.
    type: int
    default: 0
  keep_monthly:
    description: Number of months whose newest backup is kept.
    type: int
    default: 0
'''

    DATABASE = r'''
options:
  login_host:
    description:
      - Database server host. Defaults to C(Host) of the plugin section (C(PostgreSQL) or C(MySQL)) of the configuration.
    type: str
  login_port:
    description:
      - Database server port. Defaults to C(Port) of the plugin section.
    type: int
  login_user:
    description:
      - Database user. Defaults to C(Username) of the plugin section (or the user of C(ConnectionUri)).
      - Backups need read access to the Orthanc database; restores need to own it and, on PostgreSQL,
        the C(CREATEDB) privilege (on MySQL, all rights on the databases whose names start with it).
    type: str
  login_password:
    description:
      - Password of O(login_user). Defaults to C(Password) of the plugin section.
      - Never put on a command line, returned, or written in the manifest.
    type: str
  login_db:
    description:
      - Name of the Orthanc database. Defaults to C(Database) of the plugin section.
      - A restore puts the backup into this database (disaster recovery onto another server or name).
    type: str
  login_unix_socket:
    description:
      - Unix socket (MySQL) or socket folder (PostgreSQL) to connect through instead of host and port.
    type: str
  database_container:
    description:
      - Name of the Docker or Podman container that runs the database, for a database this host cannot
        reach by the address or name Orthanc uses (a Compose network, a socket inside a container).
      - Connections and the host's client tools (C(pg_dump), C(mariadb-dump), ...) then start inside that
        container's network namespace and reach the database on its loopback (C(127.0.0.1), unless
        O(login_host) says otherwise) and the port of the plugin section; the container must run.
      - The engine is O(service_manager) when that is V(docker) or V(podman), else whichever has the container.
    type: str
'''

    # Database dumps and restores.
    DUMP = r'''
options:
  dump_jobs:
    description:
      - Parallel jobs for the dump and the restore (PostgreSQL; more than 1 makes a directory-format dump).
    type: int
    default: 1
'''
