"""The public surface: names other code depends on, and native importability."""

from __future__ import annotations

import logging as stdlog
import subprocess
import sys

import lattice_actor


def test_public_names():
    for name in lattice_actor.__all__:
        assert hasattr(lattice_actor, name), name
    for module in ("actors", "blobstore", "httpclient", "keyvalue", "logging", "messaging",
                   "numbergen", "sqldb"):
        assert getattr(lattice_actor, module).__name__ == f"lattice_actor.{module}"
        assert module not in lattice_actor.__all__
    from lattice_actor import _dispatch, _guest, _host, testing

    assert callable(_dispatch.dispatch) and callable(_host.host_call)
    assert callable(_guest.Guest().guest_call)
    assert callable(testing.set_host) and callable(testing.clear_host)
    assert callable(testing.call) and callable(testing.reset)


def test_star_import_keeps_the_stdlib_logging():
    namespace: dict[str, object] = {"logging": stdlog}
    exec("from lattice_actor import *", namespace)
    assert namespace["logging"] is stdlog


def test_imports_natively_without_component_modules():
    code = ("import sys, lattice_actor, lattice_actor._guest, lattice_actor.testing; "
            "assert 'componentize_py_types' not in sys.modules; "
            "assert 'wit_world' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=lattice_actor.__path__[0]
                   + "/..")
