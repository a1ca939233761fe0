from fastapi import APIRouter

from gateway.api import ops, stream

router = APIRouter()
router.include_router(stream.router)
router.include_router(ops.router)
