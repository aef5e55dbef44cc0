"""HTTP/1.1 for the worker: the pure protocol core and the gevent server glue."""
