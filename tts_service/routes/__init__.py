"""The doors: HTTP blueprints, the WebSocket protocols and Wyoming, each a small adapter over the
speech core, and the HTTP edge they share (errors, keys and limits, disconnects, the API spec).
Nothing below this folder imports from it."""
