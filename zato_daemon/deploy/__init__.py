"""Getting services into a worker: at start from the config, then from the pickup directory."""
