"""Console entry points of streamvid.core."""
