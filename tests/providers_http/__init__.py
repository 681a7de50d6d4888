"""Tests of the HTTP providers (httpserver, httpclient) against real sockets and a real lattice."""
