from vise_plugin.config.compose import compose_config, config_dir, search_path, to_yaml
from vise_plugin.config.imports import import_modules

__all__ = ["compose_config", "config_dir", "import_modules", "search_path", "to_yaml"]
