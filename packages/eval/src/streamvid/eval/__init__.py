"""streamvid.eval."""
