"""Step kinds, one module each; every kind registers itself by its YAML `type`."""
