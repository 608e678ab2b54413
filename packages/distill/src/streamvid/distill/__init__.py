"""streamvid.distill."""
