"""edgeae subpackage."""
