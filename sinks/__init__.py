"""Where a pipeline's items go: one sink per module, each meeting :class:`pipeline.sink.Sink`."""
