from vise_plugin.demo.pipeline import run_demo
from vise_plugin.demo.world import EMOTIONS, generate_downstream, generate_posts

__all__ = ["run_demo", "EMOTIONS", "generate_downstream", "generate_posts"]
