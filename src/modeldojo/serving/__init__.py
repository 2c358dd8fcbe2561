"""HTTP serving: dojo serve (FastAPI + uvicorn), dynamic batching, and the runtime dojo predict shares."""
