"""streamvid.tts."""
