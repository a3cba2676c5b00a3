"""Configuration: one defaults tree, official YAML loading (``_BASE_``, safe tags), ``KEY VALUE`` overrides."""
from gemseg.config.defaults import get_defaults
from gemseg.config.loader import CONFIG_ALIASES, get_config, load_yaml_with_base, merge_from_list, resolve_config_path

__all__ = ["CONFIG_ALIASES", "resolve_config_path", "get_config", "get_defaults", "load_yaml_with_base", "merge_from_list"]
