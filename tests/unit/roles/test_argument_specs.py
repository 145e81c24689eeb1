# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Each role's meta/argument_specs.yml documents exactly its defaults, with the same values."""

from __future__ import annotations

import os

import pytest
import yaml

ROLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'roles')
ROLE_NAMES = sorted(os.listdir(ROLES))


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
