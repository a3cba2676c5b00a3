"""Configuration: one defaults tree, official YAML loading (``_BASE_``, safe tags), ``KEY VALUE`` overrides."""
from gemseg.config.defaults import get_defaults
from gemseg.config.loader import get_config, load_yaml_with_base, merge_from_list

__all__ = ["get_config", "get_defaults", "load_yaml_with_base", "merge_from_list"]
