from .compose import compose_config, config_dir, to_yaml

__all__ = ["compose_config", "config_dir", "to_yaml"]
