# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Prometheus alerting rules on the metrics the roles write (orthanc_metrics), with the thresholds the fleet report
uses: each alert says what is wrong and what the person on call does about it (the runbook in the alerts guide
has the details)."""

from __future__ import annotations

GROUP = 'orthanc-ops'
# Where the runbook is when the site publishes no copy of its own.
RUNBOOK = 'the alerts guide of the orthanc_ops.backup collection (guide_alerts), section %s'
# How long a series may have been seen before it is missed (older ones are hosts that were retired).
SEEN_WITHIN = '8d'
INSTANCE = '{{ $labels.orthanc_instance }}'


def _rule(name, expr, severity, summary, description, wait='10m'):
    return {'alert': name, 'expr': expr, 'for': wait, 'labels': {'severity': severity},
            'annotations': {'summary': summary, 'description': description, 'runbook': RUNBOOK % name}}


def build(rpo_hours, drill_max_age_days=0, max_pause_seconds=1.0, runbook_url=''):
    """The rules file ({'groups': [...]}): a backup past the RPO, failed, missing live files or paused too long;
    an off-site copy past the RPO; a failed or overdue drill; a storage the audit found damaged; and metrics that
    stopped coming (the node, its node_exporter or the metrics folder gone: no other alert can then fire). With
    ``runbook_url`` (the site's copy of the alerts guide), each alert links to its section there."""
    rpo = int(float(rpo_hours) * 3600)
    rules = [
        _rule('OrthancBackupPastRPO', 'time() - orthanc_backup_last_success_timestamp_seconds > %d' % rpo, 'critical',
              'Orthanc %s has no good backup for {{ $value | humanizeDuration }}' % INSTANCE,
              'The newest complete backup of %s is older than the recovery point objective (%s h): studies received '
              'since then would be lost with the server. Run the backup playbook for this host and read its report; '
              'if it is not scheduled any more, schedule it again.' % (INSTANCE, _hours(rpo_hours))),
        _rule('OrthancBackupNotRunning', 'time() - orthanc_backup_last_run_timestamp_seconds > %d' % (2 * rpo),
              'critical', 'No backup of Orthanc %s has even been tried for {{ $value | humanizeDuration }}' % INSTANCE,
              'The backup metrics of %s have not changed for twice the recovery point objective: no backup run '
              'reached this host (its schedule or timer stopped, the controller cannot reach it) and its metrics '
              'file is stale. Run the backup playbook for this host, then find out why the schedule did not.'
              % INSTANCE),
        _rule('OrthancBackupFailed', 'orthanc_backup_success == 0', 'warning',
              'The last backup of Orthanc %s failed' % INSTANCE,
              'The last backup run of %s failed; the previous backups are kept and the newest good one is still '
              'used. Read the reason in the run\'s report (report.html) or its log, fix it, and run the backup '
              'playbook for this host again.' % INSTANCE, wait='0m'),
        _rule('OrthancLiveFilesMissing', 'orthanc_backup_live_missing_files > 0', 'critical',
              'Orthanc %s references {{ $value }} file(s) missing from its storage' % INSTANCE,
              'The last backup of %s found files that its index references but its storage folder does not hold: '
              'those instances cannot be read, now or from this backup. Run the audit playbook for this host (it '
              'names them and can repair them from earlier backups).' % INSTANCE, wait='0m'),
        _rule('OrthancBackupsDisappeared', 'orthanc_backup_disappeared_backups > 0', 'critical',
              '{{ $value }} backup(s) of Orthanc %s disappeared outside retention' % INSTANCE,
              'Backups of %s that the retention policy keeps are gone from a repository (the run\'s report names '
              'them): someone deleted them, which is what ransomware does before it encrypts. Find out who could '
              'before anything else (see the ransomware guide), and check the other copies (backup host, off '
              'site).' % INSTANCE, wait='0m'),
        _rule('OrthancBackupsChanged', 'orthanc_backup_changed_backups > 0', 'critical',
              '{{ $value }} backup(s) of Orthanc %s changed after they were taken' % INSTANCE,
              'Files of backups of %s no longer have the MD5 their listing holds (the run\'s report names the '
              'backups): someone who can write the repository rewrote them, as ransomware does, or the disk fails. '
              'Do not restore from them; find out who could write there (see the ransomware guide), and check the '
              'other copies (backup host, off site) with the verify playbook.' % INSTANCE, wait='0m'),
        _rule('OrthancBackupPauseTooLong', 'orthanc_backup_pause_seconds > %r' % float(max_pause_seconds),
              'warning', 'Orthanc %s paused {{ $value | humanizeDuration }} for its backup' % INSTANCE,
              'The backup of %s kept Orthanc frozen or stopped longer than %r s: modalities may have had stores '
              'refused. Look at the host\'s disk and load during the backup, or run it at a quieter hour.'
              % (INSTANCE, float(max_pause_seconds)), wait='0m'),
        _rule('OrthancOffsitePastRPO', 'time() - orthanc_offsite_last_success_timestamp_seconds > %d' % rpo,
              'critical', 'The newest off-site copy of Orthanc %s is {{ $value | humanizeDuration }} old' % INSTANCE,
              'No backup of %s reached the off-site repository within the recovery point objective (%s h): a site '
              'disaster would lose more. Check the off-site repository (space, credentials, network) and the '
              'off-site task of the last backup run.' % (INSTANCE, _hours(rpo_hours))),
        _rule('OrthancDrillFailed', 'orthanc_drill_passed == 0', 'critical',
              'The last restore drill of Orthanc %s failed' % INSTANCE,
              'A throwaway Orthanc could not be brought up on the newest backup of %s, or it did not hold what the '
              'backup says: a restore of it would likely fail too. Read the drill\'s reason in the verify run\'s '
              'output, then verify the backup and drill it again.' % INSTANCE, wait='0m'),
        _rule('OrthancStorageDamaged', 'orthanc_audit_missing_files > 0 or orthanc_audit_damaged_files > 0',
              'critical', 'The audit found missing or damaged files in Orthanc %s\'s storage' % INSTANCE,
              'The storage audit of %s found files the index references that are missing or whose MD5 differs. '
              'Run the audit playbook with repairs from the backups, and restore what it cannot repair.' % INSTANCE,
              wait='0m'),
        _rule('OrthancMetricsMissing', 'max_over_time(orthanc_backup_last_run_timestamp_seconds[%s]) unless '
              'orthanc_backup_last_run_timestamp_seconds' % SEEN_WITHIN, 'critical',
              'Orthanc %s stopped reporting its backups' % INSTANCE,
              'The backup metrics of %s were scraped before and are not any more: the host, its node_exporter or '
              'its textfile folder is gone, and no other alert about this host can fire. Check that the host is up '
              'and that node_exporter reads the folder the backup role writes (orthanc_backup_metrics_dir). A host '
              'retired on purpose stops alerting after %s.' % (INSTANCE, SEEN_WITHIN)),
    ]
    if float(drill_max_age_days) > 0:
        rules.insert(8, _rule(
            'OrthancDrillOverdue',
            'time() - orthanc_drill_last_success_timestamp_seconds > %d' % int(float(drill_max_age_days) * 86400),
            'warning', 'Orthanc %s has not passed a restore drill for {{ $value | humanizeDuration }}' % INSTANCE,
            'The last passed restore drill of %s is older than %s days: nobody knows whether its backups restore. '
            'Run the verify playbook with drills for this host.' % (INSTANCE, _hours(drill_max_age_days))))
    if runbook_url:
        for rule in rules:
            rule['annotations']['runbook_url'] = '%s#%s' % (runbook_url, rule['alert'].lower())
    return {'groups': [{'name': GROUP, 'rules': rules}]}


def _hours(value):
    """A number of hours or days as a person writes it: 26, 1.5."""
    return ('%f' % float(value)).rstrip('0').rstrip('.')
