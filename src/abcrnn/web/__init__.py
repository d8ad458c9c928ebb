"""The local web page: a FastAPI app that composes, checks and renders tunes.

`abcrnn serve` starts it; `create_app` in `abcrnn.web.app` builds it for tests.
"""
