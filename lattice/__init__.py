"""Lattice: a distributed WebAssembly actor platform, wire-compatible with wasmCloud 0.x.

The public surface of this package is small on purpose:

* :mod:`lattice.keys`    nkeys (ed25519 identities for every role)
* :mod:`lattice.claims`  wascap JWTs embedded in actor modules
* :mod:`lattice.runtime` running wasmbus actors in wasmtime
* :mod:`lattice.router`  deciding where an actor's host call goes
* :mod:`lattice.local`   an in-process host for ``lattice call``
"""

__version__ = "0.1.0"
