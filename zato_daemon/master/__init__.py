"""The master process. Importing this package must never import gevent."""
