from .pipeline import run_demo
from .world import EMOTIONS, generate_downstream, generate_posts

__all__ = ["run_demo", "EMOTIONS", "generate_downstream", "generate_posts"]
