"""Example services, deployed by the shipped server.conf and used by the docs and tests."""
