"""Worker processes. Imported by the master only after fork: it monkey-patches with gevent."""
