from fastapi import APIRouter

from gateway.api import anthropic, docs, models, openai, ops, resume, stream, ui

router = APIRouter()
router.include_router(stream.router)
router.include_router(resume.router)
router.include_router(openai.router)
router.include_router(anthropic.router)
router.include_router(models.router)
router.include_router(ui.router)
router.include_router(ops.router)
router.include_router(docs.router)
