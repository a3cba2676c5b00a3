"""Loading configs: official YAML files (``_BASE_`` chains, safe tags) and ``KEY VALUE`` overrides.

Resolution order, as in the official ``train_net.py``: defaults → base YAML(s) → leaf YAML → command-line overrides.
"""
from __future__ import annotations

import ast
import copy
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml
from yacs.config import CfgNode

from gemseg.config.defaults import get_defaults
from gemseg.config.safe_eval import UnsafeExpression, safe_eval
from gemseg.errors import ConfigError

PathLike = Union[str, os.PathLike]
BASE_KEY = "_BASE_"


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that understands the ``!!python/object/apply:eval`` pattern of the official configs."""

    filename = "<string>"


def _python_tag(loader: _ConfigLoader, suffix: str, node: yaml.Node) -> Any:
    where = f"{loader.filename}, line {node.start_mark.line + 1}"
    if suffix == "object/apply:eval" and isinstance(node, yaml.SequenceNode) and len(node.value) == 1:
        expr_node = node.value[0]
        if isinstance(expr_node, yaml.ScalarNode):
            try:
                return safe_eval(expr_node.value)
            except UnsafeExpression as e:
                raise ConfigError(
                    f"{where}: refusing to evaluate {expr_node.value!r} ({e}); config files may only use simple "
                    "arithmetic/list expressions"
                ) from None
    raise ConfigError(
        f"{where}: unsafe YAML tag '!!python/{suffix}' — configs cannot execute code; replace it with a plain value"
    )


_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", _python_tag)


def _read_yaml(path: Path) -> Dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    loader = _ConfigLoader(text)
    loader.filename = str(path)
    try:
        data = loader.get_single_data()
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: {e.problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge_dicts(base: Dict[str, Any], child: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in child.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_dicts(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml_with_base(path: PathLike, _seen: Optional[List[Path]] = None) -> Dict[str, Any]:
    """Read a YAML config and recursively merge its ``_BASE_`` file(s) below it (paths relative to the file)."""
    path = Path(path).resolve()
    seen = list(_seen or [])
    if path in seen:
        chain = " -> ".join(str(p) for p in seen + [path])
        raise ConfigError(f"_BASE_ cycle: {chain}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    merged: Dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        base_path = Path(os.path.expanduser(str(base)))
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        merged = _merge_dicts(merged, load_yaml_with_base(base_path, seen + [path]))
    return _merge_dicts(merged, data)


def _decode_value(value: Any) -> Any:
    """Strings like "(384, 384)" or "2e-4" become Python literals (as detectron2/yacs do)."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _coerce(value: Any, default: Any, full_key: str, source: str) -> Any:
    value = _decode_value(value)
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return type(default)(value)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return type(default)([value])  # "MIN_SIZE_TEST 512" style single values
    else:
        return value
    raise ConfigError(
        f"{source}: {full_key} expects {type(default).__name__} (default {default!r}), got {value!r}"
    )


def _merge_into(cfg: CfgNode, data: Dict[str, Any], source: str, prefix: str = "") -> None:
    for key, value in data.items():
        full_key = f"{prefix}{key}"
        if key not in cfg:
            raise ConfigError(f"{source}: unknown config key {full_key}")
        if isinstance(cfg[key], CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {full_key} is a section; expected a mapping, got {value!r}")
            _merge_into(cfg[key], value, source, full_key + ".")
        else:
            cfg[key] = _coerce(value, cfg[key], full_key, source)


def merge_from_list(cfg: CfgNode, opts: Sequence[str], source: str = "command line") -> CfgNode:
    """Apply ``KEY VALUE`` pairs (``MODEL.WEIGHTS x SOLVER.BASE_LR 1e-4``) to ``cfg`` in place."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"{source}: overrides must be KEY VALUE pairs, got an odd number of items: {opts}")
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    for key, value in zip(opts[0::2], opts[1::2]):
        node = cfg
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if part not in node or not isinstance(node[part], CfgNode):
                raise ConfigError(f"{source}: unknown config key {'.'.join(parts[:i + 1])} (in {key})")
            node = node[part]
        if parts[-1] not in node or isinstance(node[parts[-1]], CfgNode):
            raise ConfigError(f"{source}: unknown config key {key}")
        node[parts[-1]] = _coerce(value, node[parts[-1]], key, source)
    if was_frozen:
        cfg.freeze()
    return cfg


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# short names for the shipped configs (``gem predict --config gem-tiny``)
CONFIG_ALIASES = {
    "gem-tiny": "gem_sam_tiny_bs32_iter1w_steplr.yaml",
    "gem-tiny-1024": "gem_sam_tiny_bs32_iter1w_steplr_1024.yaml",
    "gem-base": "gem_sam_base_bs16_iter2w_steplr.yaml",
    "gem-base-1024": "gem_sam_base_bs16_160k_steplr_1024.yaml",
    "gem-lite": "gem_lite_effnet.yaml",
}


def resolve_config_path(name: PathLike) -> Path:
    """A config file path, or the name of a shipped config (``gem-tiny``, ``gem-base``, their file names)."""
    p = Path(name)
    if p.exists():
        return p
    key = str(name)
    shipped = CONFIG_DIR / CONFIG_ALIASES.get(key, key if key.endswith(".yaml") else key + ".yaml")
    if shipped.exists():
        return shipped
    names = ", ".join(sorted(CONFIG_ALIASES))
    raise ConfigError(f"config file not found: {name} (shipped configs: {names})")


def get_config(
    config_file: Optional[PathLike] = None, opts: Optional[Sequence[str]] = None, freeze: bool = True
) -> CfgNode:
    """Build a config: defaults, then ``config_file`` (with its ``_BASE_`` chain), then ``opts`` overrides.

    ``config_file`` may be a path or the name of a shipped config (``gem-tiny``, ``gem-base``, …).
    Raises :class:`gemseg.errors.ConfigError` with the file (and line, for YAML problems) on any invalid input.
    """
    cfg = get_defaults()
    if config_file is not None:
        data = load_yaml_with_base(resolve_config_path(config_file))
        _merge_into(cfg, data, str(config_file))
    if opts:
        merge_from_list(cfg, opts)
    if freeze:
        cfg.freeze()
    return cfg
