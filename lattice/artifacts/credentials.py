"""Registry credentials and plain-HTTP permission for OCI pulls and pushes.

Credentials for a registry, first match wins:

1. given explicitly (the CLI's ``--user``/``--password``);
2. sent to the hosts with the control interface's ``registries.put`` (wasmCloud's body:
   ``{"<registry>": {"registryType": "oci", "username": …, "password": …}}``) and kept here
   with :func:`set_registry_credentials`;
3. ``LATTICE_OCI_USER`` / ``LATTICE_OCI_PASSWORD`` (for every registry, or only for
   ``LATTICE_OCI_REGISTRY`` when that is set);
4. the Docker config (``~/.docker/config.json``, read by the oras client), else anonymous.

Plain HTTP is used for loopback registries (``localhost``, ``127.*``, ``::1``), for those listed
in ``LATTICE_OCI_INSECURE`` (comma-separated ``host[:port]``, or ``*``) and with ``--insecure``;
everything else is HTTPS with certificate verification.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lattice.artifacts.refs import OciRef

log = logging.getLogger("lattice.artifacts.credentials")

USER_ENV = "LATTICE_OCI_USER"
PASSWORD_ENV = "LATTICE_OCI_PASSWORD"
REGISTRY_ENV = "LATTICE_OCI_REGISTRY"
INSECURE_ENV = "LATTICE_OCI_INSECURE"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


_registries: dict[str, Credentials] = {}


def _aliases(registry: str) -> list[str]:
    names = [registry]
    if "localhost" in registry:
        names.append(registry.replace("localhost", "127.0.0.1"))
    elif "127.0.0.1" in registry:
        names.append(registry.replace("127.0.0.1", "localhost"))
    return names


def set_registry_credentials(doc: Mapping[str, Any]) -> int:
    """Merge a ``registries.put`` body into this process's credentials; returns how many
    registries it set. Entries without a username and password (e.g. bearer tokens) are
    skipped."""
    count = 0
    for registry, entry in doc.items():
        if not isinstance(entry, Mapping):
            continue
        kind = str(entry.get("registryType") or entry.get("registry_type") or "oci").lower()
        user, password = entry.get("username"), entry.get("password")
        if kind != "oci" or not isinstance(user, str) or not isinstance(password, str):
            log.info("ignoring registry credentials we cannot use", extra={
                "registry": registry, "registry_type": kind})
            continue
        _registries[str(registry)] = Credentials(user, password)
        count += 1
    return count


def clear_registry_credentials() -> None:
    _registries.clear()


def credentials_for(ref: OciRef, explicit: Credentials | None = None) -> Credentials | None:
    if explicit is not None:
        return explicit
    for name in _aliases(ref.registry):
        if name in _registries:
            return _registries[name]
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    scope = os.environ.get(REGISTRY_ENV, "").strip()
    if user and password and (not scope or scope in _aliases(ref.registry)):
        return Credentials(user, password)
    return None


def plain_http(ref: OciRef, insecure: bool = False) -> bool:
    if insecure or ref.loopback:
        return True
    allowed = {v.strip() for v in os.environ.get(INSECURE_ENV, "").split(",") if v.strip()}
    return "*" in allowed or bool(allowed & {ref.registry, ref.host})
