from vise_plugin.demo.example_store import example_store
from vise_plugin.demo.pipeline import run_demo
from vise_plugin.demo.world import EMOTIONS, generate_downstream, generate_posts

__all__ = ["example_store", "run_demo", "EMOTIONS", "generate_downstream", "generate_posts"]
