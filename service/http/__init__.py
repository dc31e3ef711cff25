"""The HTTP edge: routes, edge middleware (request id, body limit, metrics), auth, the error
answers, the request/response schemas and Idempotency-Key, around `service.runtime.Runtime`.

May import the runtime and everything below it; never `service.app`, `service.telegram` or
`service.__main__`. The app factory that mounts it is `service.app.create_app`.
"""
