"""Serving a model to people: the chat web page (`xinstruct chat`). Batch inference is `xinstruct infer`."""
