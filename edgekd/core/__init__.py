"""The runner's rooms: config, YAML/npz loading, the crash-safe runner, artifacts, registries, errors, files,
console, tracking."""
