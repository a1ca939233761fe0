from gateway.api import (
    anthropic,
    docs,
    models,
    openai,
    ops,
    responses_api,
    resume,
    speech,
    stream,
    ui,
)

# Included into the app one by one: a router of routers is one more level of matching that
# every request walks through. Routes are matched in this order, so the streaming routes, the
# ones under load, come first (no two routers share a path).
ROUTERS = (
    stream.router,
    openai.router,
    anthropic.router,
    responses_api.router,
    speech.router,
    ui.router,
    resume.router,
    models.router,
    ops.router,
    docs.router,
)
