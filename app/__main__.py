from .operations.server import serve

serve()
