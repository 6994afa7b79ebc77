"""The project inside other frameworks. Each module here is imported explicitly (``vise_plugin.integrations.vissl``
needs VISSL); importing ``vise_plugin`` never imports them."""
