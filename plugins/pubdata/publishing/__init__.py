"""Publishing: export to parts, the atomic publish, the public metadata documents and catalog."""
