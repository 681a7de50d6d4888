"""Capability providers: one package per provider, all the same shape.

Each provider is a process entry point (``python -m providers.<name>``) plus a provider class
that can also run embedded in a host. They arrive with the lattice and provider issues.
"""
