from gateway.api import anthropic, docs, models, openai, ops, resume, stream, ui

# Included into the app one by one: a router of routers is one more level of matching that
# every request walks through.
ROUTERS = (
    stream.router,
    resume.router,
    openai.router,
    anthropic.router,
    models.router,
    ui.router,
    ops.router,
    docs.router,
)
