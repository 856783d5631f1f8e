"""Scale-out on Ray Serve: engine replicas behind one HTTP front, one shared platform, prefix-affinity routing.

`routing` (pure: which replica holds a prompt's prefix), `calls` (the values that cross Ray between front and
replicas), `replica` (one engine per replica), `router` (Ray's request-router hook over `routing`),
`remote_engine` (the front's AsyncEngine over the replicas), `front` (the FastAPI app as a Serve ingress),
`app` (the Serve application and its `serve run` builder), `launch` (`qwen35 serve --replicas N`).
Only this package imports ray; the engine, serving core, API and platform stay as they are.
"""
