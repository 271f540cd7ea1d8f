"""Kubernetes name rules: DNS labels and subdomains, qualified (attribute) names.

Each `*_problem` function returns "" for a good name, else the real API
server's wording of what is wrong with it.
"""

from __future__ import annotations

import re

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def dns_subdomain_problem(value: str) -> str:
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not _DNS_SUBDOMAIN.match(value):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character"
        )
    return ""


def dns_label_problem(value: str) -> str:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _DNS_LABEL.match(value):
        return (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character"
        )
    return ""


def qualified_name_problem(name: str) -> str:
    domain, slash, ident = name.rpartition("/")
    if slash:
        if not domain:
            return "the domain must not be empty"
        if len(domain) > 63:
            return "the domain must be no more than 63 characters"
        problem = dns_subdomain_problem(domain.lower())
        if problem:
            return "the domain " + problem
    if not ident:
        return "the name must not be empty"
    if len(ident) > 32:
        return "the name must be no more than 32 characters"
    if not _C_IDENTIFIER.match(ident):
        return (
            "a valid C identifier must start with alphabetic character or '_', followed by "
            "a string of alphanumeric characters or '_'"
        )
    return ""
