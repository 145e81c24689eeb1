# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Each public role's meta/argument_specs.yml documents exactly its defaults, with the same values; every include
of the private role _common passes exactly the options of the entry point it runs."""

from __future__ import annotations

import glob
import os

import pytest
import yaml

ROLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'roles')
ROLE_NAMES = sorted(name for name in os.listdir(ROLES) if not name.startswith('_'))
COMMON = 'orthanc_ops.backup._common'


def load(role, *path):
    with open(os.path.join(ROLES, role, *path)) as handle:
        return yaml.safe_load(handle)


def documents(option, value):
    """Whether ``option`` documents the default ``value``: as its ``default``, or, for a template that the
    option's type cannot hold (antsibull-docs checks a default against the type), in its description."""
    if isinstance(value, str) and '{{' in value and option.get('type') in ('bool', 'int', 'float', 'list', 'dict'):
        description = option.get('description')
        text = ' '.join(description) if isinstance(description, list) else description
        return 'default' not in option and 'Defaults to C(%s).' % value in text
    return option.get('default') == value


@pytest.mark.parametrize('role', ROLE_NAMES)
def test_main_entry_point_documents_every_default_with_its_value(role):
    defaults = load(role, 'defaults', 'main.yml')
    options = load(role, 'meta', 'argument_specs.yml')['argument_specs']['main']['options']
    assert sorted(options) == sorted(defaults)
    for name, value in defaults.items():
        assert documents(options[name], value), name
        assert options[name].get('description'), name


@pytest.mark.parametrize('role', ROLE_NAMES)
def test_public_variables_carry_the_role_prefix(role):
    prefix = 'orthanc_%s_' % role
    assert all(name.startswith(prefix) for name in load(role, 'defaults', 'main.yml'))


@pytest.mark.parametrize('role', ROLE_NAMES)
def test_every_entry_point_option_is_a_documented_default(role):
    defaults = load(role, 'defaults', 'main.yml')
    for entry_point, spec in load(role, 'meta', 'argument_specs.yml')['argument_specs'].items():
        for name, option in spec.get('options', {}).items():
            assert name in defaults, (entry_point, name)
            assert documents(option, defaults[name]), (entry_point, name)


def includes_of_common(tasks):
    """Every include_role of _common in a task list, nested blocks included."""
    for task in tasks or []:
        included = task.get('ansible.builtin.include_role')
        if included and included['name'] == COMMON:
            yield task
        for section in ('block', 'rescue', 'always'):
            yield from includes_of_common(task.get(section))


def test_every_include_of_common_passes_exactly_the_options_of_its_entry_point():
    specs = load('_common', 'meta', 'argument_specs.yml')['argument_specs']
    seen = set()
    for path in glob.glob(os.path.join(ROLES, '*', 'tasks', '*.yml')):
        with open(path) as handle:
            for task in includes_of_common(yaml.safe_load(handle)):
                entry_point = task['ansible.builtin.include_role']['tasks_from']
                assert sorted(task.get('vars', {})) == sorted(specs[entry_point]['options']), (path, task['name'])
                seen.add(entry_point)
    assert seen == set(specs), 'entry points nobody includes: %s' % sorted(set(specs) - seen)


def test_common_options_are_private_typed_and_required():
    """Roles apply no argument_specs default: every input of _common must be given, and says what it is."""
    for entry_point, spec in load('_common', 'meta', 'argument_specs.yml')['argument_specs'].items():
        assert os.path.isfile(os.path.join(ROLES, '_common', 'tasks', entry_point + '.yml')), entry_point
        for name, option in spec['options'].items():
            assert name.startswith('_common_'), (entry_point, name)
            assert option.get('required') and option.get('type') and option.get('description'), (entry_point, name)
