"""streamvid.core."""
