"""Jobs: long AI work (images, video, next research) run without a broker, durable across pods."""
